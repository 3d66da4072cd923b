/* Memory-bound benchmark (bench/cpu_suite.py): streaming sums, copies and a triad over a
 * 32 MiB array, cache-line strided reads, memcpy/memset, and random pointer chasing through a
 * single-cycle permutation of 4 Mi uint32 (16 MiB), 3 Mi hops.
 *
 *     bench_mem [SCALE]     SCALE (default 1.0) multiplies the passes; below 1 it also shrinks
 *                           the arrays (never below 64 KiB), so tiny scales run quickly.
 *
 * Prints one line of checksums; all data comes from a fixed-seed generator. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x13198A2E03707344ull;

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

static long elems(double scale, long full, long min) {
    if (scale >= 1) return full;
    long n = (long)(full * scale);
    return n < min ? min : n;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "bench_mem: out of memory (%zu bytes)\n", n);
        exit(2);
    }
    return p;
}

int main(int argc, char **argv) {
    double scale = argc > 1 ? strtod(argv[1], NULL) : 1.0;
    if (!(scale > 0)) scale = 1.0;

    long n = elems(scale, 4L << 20, 8192); /* uint64 elements: 32 MiB at full size */
    long passes = scaled(scale, 2);
    uint64_t *a = xmalloc(n * sizeof *a), *b = xmalloc(n * sizeof *b);

    for (long i = 0; i < n; i++) a[i] = (uint64_t)i * 0x9E3779B97F4A7C15ull ^ (uint64_t)(i >> 3);

    uint64_t sum = 0, copy = 0, triad = 0, stride = 0, mc = 0;
    for (long p = 0; p < passes; p++) {
        /* streaming read */
        uint64_t s0 = 0, s1 = 0;
        for (long i = 0; i < n; i += 2) { s0 += a[i]; s1 ^= a[i + 1]; }
        sum += s0 ^ (s1 << 1);

        /* streaming copy with a transform, then read back */
        for (long i = 0; i < n; i++) b[i] = a[i] ^ (a[i] >> 7);
        uint64_t c = 0;
        for (long i = 0; i < n; i += 8) c += b[i] + b[i + 5];
        copy = copy * 3 + c;

        /* triad: a = b + k * a */
        uint64_t k = 3 + (uint64_t)p;
        for (long i = 0; i < n; i++) a[i] = b[i] + k * a[i];
        triad += a[n / 3] ^ a[n - 1];

        /* one read per 64-byte line, at each of the 8 word offsets */
        for (long off = 0; off < 8; off++)
            for (long i = off; i < n; i += 8) stride += a[i] >> off;

        /* libc memcpy and memset over the whole array */
        memcpy(b, a, n * sizeof *a);
        memset(a + n / 2, (int)(p & 0xFF) + 1, (n / 2) * sizeof *a);
        mc += b[n / 2 + 1] + a[n / 2 + 1] + b[n - 2];
        memcpy(a + n / 2, b + n / 2, (n / 2) * sizeof *a);
    }
    free(b);

    /* pointer chasing: Sattolo's shuffle gives one cycle through every slot */
    long m = elems(scale, 4L << 20, 16384); /* uint32: 16 MiB at full size */
    uint32_t *next = xmalloc(m * sizeof *next);
    for (long i = 0; i < m; i++) next[i] = (uint32_t)i;
    for (long i = m - 1; i > 0; i--) {
        long j = (long)(splitmix64() % (uint64_t)i);
        uint32_t t = next[i];
        next[i] = next[j];
        next[j] = t;
    }
    long hops = scaled(scale, (3L << 20) + 12345);
    uint32_t at = 0;
    uint64_t chase = 0;
    for (long h = 0; h < hops; h++) {
        at = next[at];
        chase = chase * 31 + at;
    }
    /* a full lap must come back to the start */
    uint32_t lap = 0;
    long len = 0;
    do { lap = next[lap]; len++; } while (lap != 0);

    printf("mem: n=%ld sum=%016llx copy=%016llx triad=%016llx stride=%016llx memcpy=%016llx "
           "chase=%016llx cycle=%s\n",
           n, (unsigned long long)sum, (unsigned long long)copy, (unsigned long long)triad,
           (unsigned long long)stride, (unsigned long long)mc, (unsigned long long)chase,
           len == m ? "ok" : "BROKEN");
    free(next);
    free(a);
    return 0;
}
