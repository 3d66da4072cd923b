/*
 * SAXPY and a matrix product on the host GPU through polyvm's paravirtual GPU, each checked
 * against this program's own CPU result on random inputs. Prints OK or FAIL (exit 0 / 1).
 *
 *   python -m ziglang cc -target riscv64-linux-musl -O2 -static \
 *       guest/gpu_saxpy.c guest/polyvm_gpu.c -o gpu_saxpy
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "polyvm_gpu.h"

static const char *kSource =
    "extern \"C\" __global__ void saxpy(int n, float a, const float* __restrict__ x, float* __restrict__ y)\n"
    "{\n"
    "    int i = blockIdx.x * blockDim.x + threadIdx.x;\n"
    "    if (i < n) y[i] = a * x[i] + y[i];\n"
    "}\n"
    "extern \"C\" __global__ void matmul(const float* A, const float* B, float* C, int M, int N, int K)\n"
    "{\n"
    "    int row = blockIdx.y * blockDim.y + threadIdx.y;\n"
    "    int col = blockIdx.x * blockDim.x + threadIdx.x;\n"
    "    if (row < M && col < N) {\n"
    "        float s = 0.0f;\n"
    "        for (int t = 0; t < K; ++t) s += A[row * K + t] * B[t * N + col];\n"
    "        C[row * N + col] = s;\n"
    "    }\n"
    "}\n";

static uint64_t rng_state;

static float frand(void) /* uniform in [-1, 1), never all zeros */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}

#define CHECK(call)                                                                     \
    do {                                                                                \
        int rc_ = (call);                                                               \
        if (rc_ < 0) {                                                                  \
            printf("FAIL: %s -> %d (%s)\n", #call, rc_, pvgpu_strerror(rc_));           \
            return 1;                                                                   \
        }                                                                               \
    } while (0)

static int saxpy_test(uint64_t fn, int n)
{
    float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n), *out = malloc(sizeof(float) * n);
    if (!x || !y || !out) {
        printf("FAIL: out of guest memory\n");
        return 1;
    }
    float a = 2.0f * frand() + 0.5f;
    for (int i = 0; i < n; i++) {
        x[i] = frand();
        y[i] = frand();
    }
    uint64_t dx, dy;
    CHECK(pvgpu_malloc(sizeof(float) * n, &dx));
    CHECK(pvgpu_malloc(sizeof(float) * n, &dy));
    CHECK(pvgpu_copy_htod(dx, 0, x, sizeof(float) * n));
    CHECK(pvgpu_copy_htod(dy, 0, y, sizeof(float) * n));
    struct pvgpu_arg args[4] = {pvgpu_arg_i32(n), pvgpu_arg_f32(a), pvgpu_arg_buffer(dx, 0), pvgpu_arg_buffer(dy, 0)};
    uint32_t grid[3] = {(uint32_t)(n + 255) / 256, 1, 1}, block[3] = {256, 1, 1};
    CHECK(pvgpu_launch(fn, grid, block, 0, args, 4));
    CHECK(pvgpu_synchronize());
    CHECK(pvgpu_copy_dtoh(out, dy, 0, sizeof(float) * n));
    int bad = 0;
    for (int i = 0; i < n; i++) {
        float want = a * x[i] + y[i];
        if (!(fabsf(out[i] - want) <= 1e-5f * (fabsf(a * x[i]) + fabsf(y[i])) + 1e-6f)) {
            if (bad < 5)
                printf("  saxpy[%d]: got %g, want %g\n", i, out[i], want);
            bad++;
        }
    }
    printf("saxpy n=%d: %s\n", n, bad ? "FAIL" : "ok");
    CHECK(pvgpu_free(dx));
    CHECK(pvgpu_free(dy));
    free(x);
    free(y);
    free(out);
    return bad != 0;
}

static int matmul_test(uint64_t fn, int M, int N, int K)
{
    float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N), *C = malloc(sizeof(float) * M * N);
    if (!A || !B || !C) {
        printf("FAIL: out of guest memory\n");
        return 1;
    }
    for (int i = 0; i < M * K; i++)
        A[i] = frand();
    for (int i = 0; i < K * N; i++)
        B[i] = frand();
    uint64_t dA, dB, dC;
    CHECK(pvgpu_malloc(sizeof(float) * M * K, &dA));
    CHECK(pvgpu_malloc(sizeof(float) * K * N, &dB));
    CHECK(pvgpu_malloc(sizeof(float) * M * N, &dC));
    CHECK(pvgpu_copy_htod(dA, 0, A, sizeof(float) * M * K));
    CHECK(pvgpu_copy_htod(dB, 0, B, sizeof(float) * K * N));
    CHECK(pvgpu_memset(dC, 0, 0xFF, sizeof(float) * M * N)); /* NaNs: unwritten results fail */
    struct pvgpu_arg args[6] = {pvgpu_arg_buffer(dA, 0), pvgpu_arg_buffer(dB, 0), pvgpu_arg_buffer(dC, 0),
                                pvgpu_arg_i32(M),        pvgpu_arg_i32(N),        pvgpu_arg_i32(K)};
    uint32_t grid[3] = {(uint32_t)(N + 15) / 16, (uint32_t)(M + 15) / 16, 1}, block[3] = {16, 16, 1};
    CHECK(pvgpu_launch(fn, grid, block, 0, args, 6));
    CHECK(pvgpu_copy_dtoh(C, dC, 0, sizeof(float) * M * N));
    int bad = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double want = 0, mag = 0;
            for (int t = 0; t < K; t++) {
                want += (double)A[i * K + t] * B[t * N + j];
                mag += fabs((double)A[i * K + t] * B[t * N + j]);
            }
            float got = C[i * N + j];
            if (!(fabs(got - want) <= 1e-5 * K * (mag + 1.0))) {
                if (bad < 5)
                    printf("  C[%d][%d]: got %g, want %g\n", i, j, got, want);
                bad++;
            }
        }
    printf("matmul %dx%d @ %dx%d: %s\n", M, K, K, N, bad ? "FAIL" : "ok");
    CHECK(pvgpu_free(dA));
    CHECK(pvgpu_free(dB));
    CHECK(pvgpu_free(dC));
    free(A);
    free(B);
    free(C);
    return bad != 0;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 100000;
    rng_state = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull | 1;
    int version = pvgpu_version();
    if (version < 0) {
        printf("FAIL: no paravirtual GPU (%d: %s)\n", version, pvgpu_strerror(version));
        return 1;
    }
    struct pvgpu_info info;
    CHECK(pvgpu_info(&info));
    printf("polyvm GPU ABI %d: %s (%s), %llu MiB\n", version, info.name, info.arch,
           (unsigned long long)(info.total_mem >> 20));

    static char log[8192];
    const char *opts[] = {"--std=c++17"};
    uint64_t module;
    int rc = pvgpu_compile(kSource, opts, 1, log, sizeof log, &module);
    if (rc < 0) {
        printf("FAIL: compile -> %d (%s)\n%s\n", rc, pvgpu_strerror(rc), log);
        return 1;
    }
    uint64_t saxpy, matmul;
    CHECK(pvgpu_get_function(module, "saxpy", &saxpy));
    CHECK(pvgpu_get_function(module, "matmul", &matmul));

    int fails = saxpy_test(saxpy, n) + matmul_test(matmul, 70, 50, 33);
    CHECK(pvgpu_module_unload(module));
    printf("%s\n", fails ? "FAIL" : "OK");
    return fails ? 1 : 0;
}
