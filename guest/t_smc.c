/* Generated and self-modifying code: machine code written at run time and made visible with
 * fence.i, patched while it is hot, unmapped and mapped again with other code, and made
 * non-executable. Every engine must run the code that is there now. */
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

typedef long (*fn_t)(long, long);

static uint32_t addi(int rd, int rs, int imm) {
    return ((uint32_t)(imm & 0xfff) << 20) | (uint32_t)rs << 15 | (uint32_t)rd << 7 | 0x13;
}
static uint32_t bne_back(int rs1, int rs2, int bytes) { /* bne rs1, rs2, -bytes */
    int off = -bytes;
    return ((uint32_t)((off >> 12) & 1) << 31) | ((uint32_t)((off >> 5) & 0x3f) << 25) |
           (uint32_t)rs2 << 20 | (uint32_t)rs1 << 15 | 1u << 12 | ((uint32_t)((off >> 1) & 0xf) << 8) |
           ((uint32_t)((off >> 11) & 1) << 7) | 0x63;
}
#define RET 0x00008067u /* jalr x0, 0(ra) */
#define A0 10
#define A1 11

static void sync_code(void) { __asm__ volatile("fence.i" ::: "memory"); }

static sigjmp_buf jb;
static volatile int faults;
static volatile uintptr_t fault_addr;
static void on_segv(int sig, siginfo_t *si, void *uc) {
    (void)sig, (void)uc;
    faults++;
    fault_addr = (uintptr_t)si->si_addr;
    siglongjmp(jb, 1);
}

int main(void) {
    uint32_t *code = mmap(0, 8192, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (code == MAP_FAILED) return 1;
    fn_t f = (fn_t)(void *)code;

    /* 1. a0 += k; ret -- rewritten 40 times, each version called 20 times (hot enough for
     * every tier to compile it). */
    long total = 0;
    for (int k = 1; k <= 40; k++) {
        code[0] = addi(A0, A0, k);
        code[1] = RET;
        sync_code();
        for (int r = 0; r < 20; r++) total += f(1000, 0);
    }
    printf("patched: %ld\n", total);

    /* 2. a loop in generated code: for (a1 = n; a1; a1--) a0 += step; its step patched. */
    long loops = 0;
    for (int step = 1; step <= 5; step++) {
        code[0] = addi(A0, A0, step);
        code[1] = addi(A1, A1, -1);
        code[2] = bne_back(A1, 0, 8);
        code[3] = RET;
        sync_code();
        for (int r = 0; r < 4; r++) loops += f(0, 100 + r);
    }
    printf("loops: %ld\n", loops);

    /* 3. the code patches the instruction it will run next (a0 += 1 becomes a0 += 100). */
    code[0] = 0x00b62023; /* sw a1, 0(a2): store the new instruction over code[2] */
    code[1] = 0x0000100f; /* fence.i */
    code[2] = addi(A0, A0, 1);
    code[3] = RET;
    sync_code();
    long (*g)(long, long, uint32_t *) = (long (*)(long, long, uint32_t *))(void *)code;
    long self1 = g(5, addi(A0, A0, 100), &code[2]);
    long self2 = g(5, addi(A0, A0, 7), &code[2]);
    printf("self-patched: %ld %ld\n", self1, self2);

    /* 4. unmapped, then mapped again at the same address with other code. */
    munmap(code, 8192);
    uint32_t *c2 = mmap(code, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    c2[0] = addi(A0, A0, -7);
    c2[1] = RET;
    sync_code();
    printf("remapped: %ld same=%d\n", f(100, 0), c2 == code);

    /* 5. without PROT_EXEC a call faults; with it again, the same code runs. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &sa, 0);
    mprotect(code, 4096, PROT_READ | PROT_WRITE);
    if (!sigsetjmp(jb, 1)) printf("noexec ran: %ld\n", f(1, 0));
    printf("noexec faults: %d at code: %d\n", faults, fault_addr == (uintptr_t)code);
    mprotect(code, 4096, PROT_READ | PROT_EXEC);
    printf("exec again: %ld\n", f(5, 0));

    /* 6. unmapped: a call faults. */
    munmap(code, 4096);
    if (!sigsetjmp(jb, 1)) printf("unmapped ran: %ld\n", f(1, 0));
    printf("unmapped faults: %d at code: %d\n", faults, fault_addr == (uintptr_t)code);
    return 0;
}
