/* Branch-heavy benchmark (bench/cpu_suite.py): a switch-dispatched stack bytecode
 * interpreter, binary search over a sorted table, quicksort of random keys, and a lexer
 * state machine over generated text.
 *
 *     bench_branch [SCALE]     SCALE (default 1.0) multiplies every kernel's repetitions; below 1
 *                              it also shrinks the arrays, so tiny scales run quickly.
 *
 * Prints one line of checksums; all data comes from a fixed-seed generator. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t rng = 0xA4093822299F31D0ull;

static uint64_t splitmix64(void) {
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static long scaled(double scale, long base) {
    long n = (long)(base * scale + 0.5);
    return n < 1 ? 1 : n;
}

/* Array sizes: full size from scale 1 up, shrunk below 1 (never under min). */
static long elems(double scale, long full, long min) {
    if (scale >= 1) return full;
    long n = (long)(full * scale);
    return n < min ? min : n;
}

/* ---- bytecode interpreter ---- */
enum op { PUSH, LOAD, STORE, ADD, SUB, MUL, MOD, AND, SHR, LT, EQ, JZ, JNZ, JMP, DUP, POP, HALT };

/* Assembled at run time by build_prog so the jump targets stay right: the sum over i < n of
 * collatz_steps(i + 1) + ((i * i) & 255). Registers: r0 = i, r1 = n, r2 = acc, r3 = x. */
static int32_t code[256];

static int emit_at;
static void e(int32_t v) { code[emit_at++] = v; }

static void build_prog(void) {
    emit_at = 0;
    e(PUSH); e(0); e(STORE); e(0);
    e(PUSH); e(0); e(STORE); e(2);
    int loop = emit_at;
    e(LOAD); e(0); e(LOAD); e(1); e(LT); e(JZ); int jend = emit_at; e(0);
    e(LOAD); e(0); e(PUSH); e(1); e(ADD); e(STORE); e(3);
    int coll = emit_at;
    e(LOAD); e(3); e(PUSH); e(1); e(EQ); e(JNZ); int jdone = emit_at; e(0);
    e(LOAD); e(3); e(PUSH); e(1); e(AND); e(JZ); int jeven = emit_at; e(0);
    e(LOAD); e(3); e(PUSH); e(3); e(MUL); e(PUSH); e(1); e(ADD); e(STORE); e(3);
    e(JMP); int jstep = emit_at; e(0);
    code[jeven] = emit_at;
    e(LOAD); e(3); e(PUSH); e(1); e(SHR); e(STORE); e(3);
    code[jstep] = emit_at;
    e(LOAD); e(2); e(PUSH); e(1); e(ADD); e(STORE); e(2);
    e(JMP); e(coll);
    code[jdone] = emit_at;
    e(LOAD); e(0); e(DUP); e(MUL); e(PUSH); e(255); e(AND);
    e(LOAD); e(2); e(ADD); e(STORE); e(2);
    e(LOAD); e(0); e(PUSH); e(1); e(ADD); e(STORE); e(0);
    e(JMP); e(loop);
    code[jend] = emit_at;
    e(LOAD); e(2); e(HALT);
}

static int64_t run_vm(int64_t n, long *steps) {
    int64_t stack[64], reg[8] = {0};
    int sp = 0, pc = 0;
    long count = 0;
    reg[1] = n;
    for (;;) {
        count++;
        switch (code[pc++]) {
        case PUSH: stack[sp++] = code[pc++]; break;
        case LOAD: stack[sp++] = reg[code[pc++]]; break;
        case STORE: reg[code[pc++]] = stack[--sp]; break;
        case ADD: sp--; stack[sp - 1] += stack[sp]; break;
        case SUB: sp--; stack[sp - 1] -= stack[sp]; break;
        case MUL: sp--; stack[sp - 1] *= stack[sp]; break;
        case MOD: sp--; stack[sp - 1] %= stack[sp]; break;
        case AND: sp--; stack[sp - 1] &= stack[sp]; break;
        case SHR: sp--; stack[sp - 1] >>= stack[sp]; break;
        case LT: sp--; stack[sp - 1] = stack[sp - 1] < stack[sp]; break;
        case EQ: sp--; stack[sp - 1] = stack[sp - 1] == stack[sp]; break;
        case JZ: { int32_t t = code[pc++]; if (!stack[--sp]) pc = t; break; }
        case JNZ: { int32_t t = code[pc++]; if (stack[--sp]) pc = t; break; }
        case JMP: pc = code[pc]; break;
        case DUP: stack[sp] = stack[sp - 1]; sp++; break;
        case POP: sp--; break;
        case HALT: *steps += count; return stack[sp - 1];
        default: *steps = -1; return -1;
        }
    }
}

/* ---- binary search ---- */
#define TN_MAX (1 << 16)
static uint32_t table[TN_MAX];

static int cmp_u32(const void *x, const void *y) {
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return (a > b) - (a < b);
}

static long bsearch_u32(const uint32_t *t, long n, uint32_t key) {
    long lo = 0, hi = n - 1;
    while (lo <= hi) {
        long mid = lo + (hi - lo) / 2;
        if (t[mid] == key) return mid;
        if (t[mid] < key) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1 - lo;
}

/* ---- quicksort ---- */
static void insertion_sort(uint32_t *v, long n) {
    for (long i = 1; i < n; i++) {
        uint32_t x = v[i];
        long j = i - 1;
        while (j >= 0 && v[j] > x) { v[j + 1] = v[j]; j--; }
        v[j + 1] = x;
    }
}

static void quicksort(uint32_t *v, long n) {
    while (n > 16) {
        uint32_t a = v[0], b = v[n / 2], c = v[n - 1];
        uint32_t pivot = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        long i = 0, j = n - 1;
        for (;;) {
            while (v[i] < pivot) i++;
            while (v[j] > pivot) j--;
            if (i >= j) break;
            uint32_t t = v[i];
            v[i] = v[j];
            v[j] = t;
            i++;
            j--;
        }
        /* recurse into the smaller side, loop on the larger */
        if (j + 1 < n - j - 1) {
            quicksort(v, j + 1);
            v += j + 1;
            n -= j + 1;
        } else {
            quicksort(v + j + 1, n - j - 1);
            n = j + 1;
        }
    }
    insertion_sort(v, n);
}

/* ---- lexer state machine ---- */
enum { S_START, S_IDENT, S_NUMBER, S_HEX, S_STRING, S_ESCAPE, S_COMMENT, S_OP };
enum { T_IDENT, T_NUMBER, T_STRING, T_COMMENT, T_OP, T_NL, T_ERR, T_KINDS };

static const char alphabet[] =
    "abcdefghijklmnopqrstuvwxyz_ABCXYZ0123456789      \n\n\"\"\\#+-*/=<>(){};,.0x";

static void gen_text(char *t, long n) {
    for (long i = 0; i < n; i++) t[i] = alphabet[splitmix64() % (sizeof alphabet - 1)];
}

static uint64_t lex(const char *t, long n, long counts[T_KINDS]) {
    int state = S_START;
    uint64_t h = 0;
    for (long i = 0; i < n; i++) {
        char ch = t[i];
        switch (state) {
        case S_START:
        start:
            if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_') state = S_IDENT;
            else if (ch == '0' && i + 1 < n && t[i + 1] == 'x') { state = S_HEX; i++; }
            else if (ch >= '0' && ch <= '9') state = S_NUMBER;
            else if (ch == '"') state = S_STRING;
            else if (ch == '#') state = S_COMMENT;
            else if (ch == '\n') counts[T_NL]++;
            else if (ch == ' ') {}
            else switch (ch) {
                case '+': case '-': case '*': case '/': case '=': case '<': case '>':
                    state = S_OP; break;
                case '(': case ')': case '{': case '}': case ';': case ',': case '.':
                    counts[T_OP]++; h = h * 31 + (uint64_t)ch; break;
                default: counts[T_ERR]++; break;
            }
            break;
        case S_IDENT:
            if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' || (ch >= '0' && ch <= '9')) {
                h = h * 33 + (uint64_t)ch;
            } else { counts[T_IDENT]++; state = S_START; goto start; }
            break;
        case S_NUMBER:
            if (ch >= '0' && ch <= '9') h = h * 11 + (uint64_t)(ch - '0');
            else { counts[T_NUMBER]++; state = S_START; goto start; }
            break;
        case S_HEX:
            if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F')) h = h * 17 + (uint64_t)ch;
            else { counts[T_NUMBER]++; state = S_START; goto start; }
            break;
        case S_STRING:
            if (ch == '\\') state = S_ESCAPE;
            else if (ch == '"') { counts[T_STRING]++; state = S_START; }
            else if (ch == '\n') { counts[T_ERR]++; counts[T_NL]++; state = S_START; }
            else h ^= (uint64_t)ch << (i & 31);
            break;
        case S_ESCAPE: state = S_STRING; h += (uint64_t)ch; break;
        case S_COMMENT:
            if (ch == '\n') { counts[T_COMMENT]++; counts[T_NL]++; state = S_START; }
            break;
        case S_OP:
            if (ch == '=') { counts[T_OP]++; state = S_START; h = h * 7 + 1; }
            else { counts[T_OP]++; state = S_START; goto start; }
            break;
        }
    }
    return h;
}

int main(int argc, char **argv) {
    double scale = argc > 1 ? strtod(argv[1], NULL) : 1.0;
    if (!(scale > 0)) scale = 1.0;

    /* interpreter */
    build_prog();
    long vm_steps = 0;
    int64_t vm = run_vm(scaled(scale, 20000), &vm_steps);

    /* binary search: table of distinct sorted keys, random probes */
    long tn_keys = elems(scale, TN_MAX, 1024);
    for (long i = 0; i < tn_keys; i++) table[i] = (uint32_t)splitmix64() | 1;
    qsort(table, tn_keys, sizeof table[0], cmp_u32);
    long found = 0;
    uint64_t where = 0;
    long probes = scaled(scale, 600000);
    for (long q = 0; q < probes; q++) {
        uint32_t key = (q & 1) ? table[splitmix64() % (uint64_t)tn_keys] : (uint32_t)splitmix64();
        long at = bsearch_u32(table, tn_keys, key);
        if (at >= 0) found++;
        where = where * 17 + (uint64_t)at;
    }

    /* quicksort */
    long qn = elems(scale, 1 << 17, 1024);
    uint32_t *v = malloc(qn * sizeof *v);
    if (!v) return 2;
    long sorts = scaled(scale, 4);
    uint64_t qsum = 0;
    long unsorted = 0;
    for (long r = 0; r < sorts; r++) {
        for (long i = 0; i < qn; i++) v[i] = (uint32_t)splitmix64() % 1000003u;
        quicksort(v, qn);
        for (long i = 1; i < qn; i++) unsorted += v[i - 1] > v[i];
        qsum = qsum * 31 + v[qn / 7] + v[qn / 2] + v[qn - 1];
    }
    free(v);

    /* lexer */
    long tn = elems(scale, 1 << 18, 4096);
    char *text = malloc(tn);
    if (!text) return 2;
    gen_text(text, tn);
    long counts[T_KINDS] = {0};
    uint64_t lh = 0;
    long lexes = scaled(scale, 10);
    for (long r = 0; r < lexes; r++) {
        text[r % tn] = 'q';
        lh ^= lex(text, tn, counts) + (uint64_t)r;
    }
    free(text);

    printf("branch: vm=%lld/%ld bsearch=%ld,%016llx qsort=%016llx,%ld lex=%016llx,%ld,%ld,%ld,%ld,%ld,%ld,%ld\n",
           (long long)vm, vm_steps, found, (unsigned long long)where, (unsigned long long)qsum,
           unsorted, (unsigned long long)lh, counts[T_IDENT], counts[T_NUMBER], counts[T_STRING],
           counts[T_COMMENT], counts[T_OP], counts[T_NL], counts[T_ERR]);
    return 0;
}
