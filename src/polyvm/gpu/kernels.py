"""Small CUDA C++ kernels shared by the self-test, the benchmark and the GPU tests.

Their names and signatures match :data:`polyvm.gpu.fake.BUILTIN_KERNELS`, so they also run on
the fake backend.
"""

SAXPY = r"""
extern "C" __global__ void saxpy(int n, float a, const float* __restrict__ x, float* __restrict__ y)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i] + y[i];
}
"""

MATMUL = r"""
extern "C" __global__ void matmul(const float* A, const float* B, float* C, int M, int N, int K)
{
    int row = blockIdx.y * blockDim.y + threadIdx.y;
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (row < M && col < N) {
        float s = 0.0f;
        for (int t = 0; t < K; ++t) s += A[row * K + t] * B[t * N + col];
        C[row * N + col] = s;
    }
}
"""

EMPTY = r"""
extern "C" __global__ void empty() {}
"""

SELFTEST = SAXPY + MATMUL + EMPTY
