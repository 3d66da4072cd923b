/* Integer CPU benchmark (bench/cpu_suite.py): table CRC-32, a 64-bit multiply-rotate hash,
 * an int32 matrix product with int64 sums, and bit tricks (SWAR popcount, bit reversal,
 * count-leading-zeros, binary GCD, integer square root, 32-bit modular exponentiation).
 *
 *     bench_int [SCALE]     SCALE (default 1.0) multiplies every kernel's repetitions.
 *
 * Prints one line of checksums; everything is computed from a fixed-seed generator, so the
 * line is the same on every correct riscv64 implementation. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t rng = 0x243F6A8885A308D3ull;

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

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

/* ---- CRC-32 (IEEE 802.3, reflected, table-driven) ---- */
static uint32_t crc_table[256];

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc32(uint32_t crc, const uint8_t *p, long n) {
    crc = ~crc;
    for (long i = 0; i < n; i++) crc = crc_table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

/* ---- 64-bit hash over words (xxhash-like rounds, murmur3 finaliser) ---- */
static uint64_t hash_words(const uint64_t *w, long n, uint64_t seed) {
    uint64_t h = seed ^ ((uint64_t)n * 0x9E3779B185EBCA87ull);
    for (long i = 0; i < n; i++) {
        uint64_t k = w[i] * 0xC2B2AE3D27D4EB4Full;
        k = rotl64(k, 31) * 0x9E3779B185EBCA87ull;
        h ^= k;
        h = rotl64(h, 27) * 0x9E3779B185EBCA87ull + 0x85EBCA77C2B2AE63ull;
    }
    h ^= h >> 33;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ull;
    return h ^ (h >> 33);
}

/* ---- integer matrix product ---- */
#define MN 64
static int32_t ma[MN][MN], mb[MN][MN];
static int64_t mc[MN][MN];

static uint64_t int_matmul(int round) {
    for (int i = 0; i < MN; i++)
        for (int j = 0; j < MN; j++) {
            ma[i][j] = (int32_t)((i * 131 + j * 71 + round * 17) % 2001) - 1000;
            mb[i][j] = (int32_t)((i * 37 - j * 113 + round * 5) % 1999);
            mc[i][j] = 0;
        }
    for (int i = 0; i < MN; i++)
        for (int k = 0; k < MN; k++) {
            int64_t a = ma[i][k];
            for (int j = 0; j < MN; j++) mc[i][j] += a * mb[k][j];
        }
    uint64_t s = 0;
    for (int i = 0; i < MN; i++)
        for (int j = 0; j < MN; j++) s = s * 0x100000001B3ull + (uint64_t)mc[i][j];
    return s;
}

/* ---- bit tricks ---- */
static int popcount64(uint64_t x) {
    x = x - ((x >> 1) & 0x5555555555555555ull);
    x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0Full;
    return (int)((x * 0x0101010101010101ull) >> 56);
}

static uint64_t bitrev64(uint64_t x) {
    x = ((x >> 1) & 0x5555555555555555ull) | ((x & 0x5555555555555555ull) << 1);
    x = ((x >> 2) & 0x3333333333333333ull) | ((x & 0x3333333333333333ull) << 2);
    x = ((x >> 4) & 0x0F0F0F0F0F0F0F0Full) | ((x & 0x0F0F0F0F0F0F0F0Full) << 4);
    x = ((x >> 8) & 0x00FF00FF00FF00FFull) | ((x & 0x00FF00FF00FF00FFull) << 8);
    x = ((x >> 16) & 0x0000FFFF0000FFFFull) | ((x & 0x0000FFFF0000FFFFull) << 16);
    return (x >> 32) | (x << 32);
}

static int clz64(uint64_t x) {
    if (x == 0) return 64;
    int n = 0;
    if (!(x >> 32)) { n += 32; x <<= 32; }
    if (!(x >> 48)) { n += 16; x <<= 16; }
    if (!(x >> 56)) { n += 8; x <<= 8; }
    if (!(x >> 60)) { n += 4; x <<= 4; }
    if (!(x >> 62)) { n += 2; x <<= 2; }
    if (!(x >> 63)) { n += 1; }
    return n;
}

static uint64_t gcd64(uint64_t a, uint64_t b) {
    if (a == 0) return b;
    if (b == 0) return a;
    int shift = 0;
    while (((a | b) & 1) == 0) { a >>= 1; b >>= 1; shift++; }
    while ((a & 1) == 0) a >>= 1;
    do {
        while ((b & 1) == 0) b >>= 1;
        if (a > b) { uint64_t t = a; a = b; b = t; }
        b -= a;
    } while (b != 0);
    return a << shift;
}

static uint32_t isqrt64(uint64_t n) {
    uint64_t r = 0, bit = 1ull << 62;
    while (bit > n) bit >>= 2;
    while (bit) {
        if (n >= r + bit) { n -= r + bit; r = (r >> 1) + bit; }
        else r >>= 1;
        bit >>= 2;
    }
    return (uint32_t)r;
}

static uint32_t modpow32(uint32_t b, uint32_t e, uint32_t m) {
    uint64_t r = 1, x = b % m;
    while (e) {
        if (e & 1) r = r * x % m;
        x = x * x % m;
        e >>= 1;
    }
    return (uint32_t)r;
}

int main(int argc, char **argv) {
    double scale = argc > 1 ? strtod(argv[1], NULL) : 1.0;
    if (!(scale > 0)) scale = 1.0;

    enum { BUF = 1 << 16 };
    static uint8_t buf[BUF];
    static uint64_t words[BUF / 8];
    for (int i = 0; i < BUF / 8; i++) {
        uint64_t v = splitmix64();
        words[i] = v;
        for (int b = 0; b < 8; b++) buf[i * 8 + b] = (uint8_t)(v >> (8 * b));
    }

    crc_init();
    uint32_t crc = 0;
    long crc_rounds = scaled(scale, 150);
    for (long r = 0; r < crc_rounds; r++) {
        buf[r % BUF] ^= (uint8_t)r;
        crc = crc32(crc, buf, BUF);
    }

    uint64_t hash = 0;
    long hash_rounds = scaled(scale, 500);
    for (long r = 0; r < hash_rounds; r++) hash ^= hash_words(words, BUF / 8, hash + (uint64_t)r);

    uint64_t mat = 0;
    long mat_rounds = scaled(scale, 30);
    for (long r = 0; r < mat_rounds; r++) mat = rotl64(mat, 7) ^ int_matmul((int)r);

    uint64_t bits = 0;
    long bit_iters = scaled(scale, 1000000);
    for (long i = 0; i < bit_iters; i++) {
        uint64_t x = splitmix64();
        uint64_t y = splitmix64() | 1;
        bits += (uint64_t)popcount64(x) + (uint64_t)clz64(x >> (i & 63));
        bits ^= bitrev64(x);
        bits += gcd64(x >> 20, y >> 24);
        bits += isqrt64(x);
        bits = rotl64(bits, 5);
    }

    uint64_t mp = 0;
    long mp_iters = scaled(scale, 150000);
    for (long i = 0; i < mp_iters; i++) {
        uint32_t m = (uint32_t)(splitmix64() | 0x80000001u);
        mp = mp * 31 + modpow32((uint32_t)i + 2, (uint32_t)(m - 1), m);
    }

    printf("int: crc=%08x hash=%016llx matmul=%016llx bits=%016llx modpow=%016llx\n", crc,
           (unsigned long long)hash, (unsigned long long)mat, (unsigned long long)bits,
           (unsigned long long)mp);
    return 0;
}
