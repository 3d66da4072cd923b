"""Real-GPU tests (CUDA). Skipped with the reason when no CUDA device can be opened."""

import ctypes
import re
import struct

import pytest

from polyvm import gpu
from polyvm.gpu import guest as G
from polyvm.gpu.kernels import MATMUL, SAXPY, SELFTEST

pytestmark = pytest.mark.gpu

np = pytest.importorskip("numpy", reason="the GPU tests check results with NumPy")


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    try:
        d = gpu.open_device("cuda", cache=gpu.KernelCache(tmp_path_factory.mktemp("gpucache")))
    except gpu.BackendUnavailableError as e:
        pytest.skip(f"no CUDA device: {e}")
    yield d
    d.close()


@pytest.fixture(scope="module")
def mod(dev):
    return dev.compile(SELFTEST, options=["-lineinfo"])


def rng():
    return np.random.default_rng()


def test_info_is_real(dev):
    info = dev.info()
    assert info.vendor == "NVIDIA" and info.name
    assert info.compute_capability and info.compute_capability[0] >= 3
    assert info.arch == f"sm_{info.compute_capability[0]}{info.compute_capability[1]}"
    assert info.total_memory > 1 << 30 and 0 < info.free_memory <= info.total_memory
    assert info.used_memory == info.total_memory - info.free_memory
    assert info.multiprocessor_count > 0 and info.warp_size == 32
    assert info.max_threads_per_block >= 512 and info.l2_cache_bytes > 0
    assert info.max_shared_memory_per_block_optin >= info.max_shared_memory_per_block
    assert re.fullmatch(r"[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-9a-fA-F]", info.pci_bus_id)
    assert re.fullmatch(r"\d+\.\d+", info.driver_version)
    assert info.runtime_version.startswith("NVRTC ")
    assert isinstance(info.unified_addressing, bool) and isinstance(info.ecc_enabled, bool)
    free, total = dev.mem_info()
    assert total == info.total_memory


def test_saxpy_matches_numpy(dev, mod):
    n = 1_000_003
    r = rng()
    x = r.standard_normal(n, dtype=np.float32)
    y = r.standard_normal(n, dtype=np.float32)
    a = np.float32(r.uniform(-3, 3))
    bx, by = dev.to_device(x), dev.to_device(y)
    mod.get_kernel("saxpy").launch((n + 255) // 256, 256, (np.int32(n), a, bx, by))
    out = by.copy_to_host(np.empty_like(y))
    np.testing.assert_allclose(out, a * x + y, rtol=1e-5, atol=1e-6)


def test_matmul_2d_grid(dev, mod):
    r = rng()
    M, N, K = 70, 50, 33
    A = r.standard_normal((M, K), dtype=np.float32)
    B = r.standard_normal((K, N), dtype=np.float32)
    dA, dB, dC = dev.to_device(A), dev.to_device(B), dev.alloc(4 * M * N)
    k = mod.get_kernel("matmul", "ptr, ptr, ptr, i32, i32, i32")
    k.launch(((N + 15) // 16, (M + 15) // 16), (16, 16), (dA, dB, dC, M, N, K))
    C = dC.copy_to_host(np.empty((M, N), np.float32))
    np.testing.assert_allclose(C, A @ B, rtol=1e-4, atol=1e-4)


def test_cubin_and_ptx_targets(dev):
    m = dev.compile(SAXPY, target="cubin", cache=False)
    assert m.image_kind == "cubin" and m.image[:4] == b"\x7fELF"
    p = dev.compile(SAXPY, target="ptx", cache=False)
    assert p.image_kind == "ptx" and ".entry saxpy" in p.ptx
    for module in (m, p):
        x = np.arange(256, dtype=np.float32)
        by = dev.to_device(np.ones(256, np.float32))
        module.get_kernel("saxpy", "i32, f32, ptr, ptr").launch(1, 256, (256, 2.0, dev.to_device(x), by))
        np.testing.assert_array_equal(by.copy_to_host(np.empty(256, np.float32)), 2 * x + 1)


def test_headers_options_and_name_expressions(dev):
    src = r"""
    #include "scale.h"
    template <typename T> __global__ void fill(T* out, T v) { out[threadIdx.x] = v * SCALE + OFFSET; }
    """
    m = dev.compile(
        src,
        headers={"scale.h": "#define SCALE 3\n"},
        options=["-DOFFSET=7", "--std=c++17"],
        name_expressions=["fill<int>", "fill<double>"],
    )
    bi, bd = dev.alloc(4 * 32), dev.alloc(8 * 32)
    m.get_kernel("fill<int>").launch(1, 32, (bi, gpu.i32(5)))
    m.get_kernel("fill<double>").launch(1, 32, (bd, gpu.f64(0.5)))
    assert list(np.frombuffer(bi.copy_to_host(), np.int32)) == [22] * 32
    assert list(np.frombuffer(bd.copy_to_host(), np.float64)) == [8.5] * 32


def test_compile_error_has_nvrtc_log(dev):
    with pytest.raises(gpu.CompileError) as ei:
        dev.compile(
            'extern "C" __global__ void broken(float* p) { p[0] = undeclared_thing; }', name="broken.cu"
        )
    assert "undeclared_thing" in ei.value.log and "broken.cu" in ei.value.log
    assert "NVRTC_ERROR_COMPILATION" in str(ei.value)


def test_cache_hit_on_second_compile(dev):
    src = SAXPY + "// cache probe\n"
    first = dev.compile(src)
    second = dev.compile(src)
    assert not first.from_cache and second.from_cache
    dev.cache.clear_memory()
    assert dev.compile(src).from_cache  # from disk


def test_memory_ops_streams_events_pinned(dev):
    r = rng()
    n = 1 << 22
    data = r.integers(0, 256, n, dtype=np.uint8)
    a, b = dev.alloc(n), dev.alloc(n)
    s = dev.stream(non_blocking=True)
    pin_in, pin_out = dev.alloc_pinned(n), dev.alloc_pinned(n)
    pin_in.numpy()[:] = data
    e0, e1 = dev.event(), dev.event()
    e0.record(s)
    a.copy_from_host(pin_in, stream=s)
    b.copy_from(a, stream=s)
    b.memset(0xAB, offset=10, nbytes=5, stream=s)
    b.copy_to_host(pin_out, stream=s)
    e1.record(s)
    s.synchronize()
    assert s.query() and e1.query()
    expect = data.copy()
    expect[10:15] = 0xAB
    np.testing.assert_array_equal(pin_out.numpy(), expect)
    assert e0.elapsed_ms(e1) > 0
    with pytest.raises(gpu.GPUError):
        dev.event(timing=False).elapsed_ms(e1)
    s.close()


def test_3d_launch_dynamic_shared_memory_and_typed_args(dev):
    src = r"""
    struct Params { int a; double b; };
    extern "C" __global__ void idx(unsigned* out, Params p, long long big, unsigned u, float f) {
        extern __shared__ unsigned char smem[];
        unsigned tid = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
        unsigned bid = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
        unsigned nthreads = blockDim.x * blockDim.y * blockDim.z;
        smem[tid] = (unsigned char)tid;
        smem[100 * 1024 - 1] = 1;
        __syncthreads();
        out[bid * nthreads + tid] = bid * 1000 + smem[tid] + p.a + (unsigned)p.b + (unsigned)(big >> 40) + u + (unsigned)f;
    }
    """

    class Params(ctypes.Structure):
        _fields_ = [("a", ctypes.c_int32), ("b", ctypes.c_double)]

    k = dev.compile(src).get_kernel("idx")
    grid, block = (2, 3, 2), (4, 2, 3)
    total = 12 * 24
    out = dev.alloc(4 * total)
    k.launch(
        grid, block, (out, Params(1, 2.0), gpu.i64(5 << 40), gpu.u32(10), gpu.f32(100.0)), shmem=100 * 1024
    )
    got = np.frombuffer(out.copy_to_host(), np.uint32).reshape(12, 24)
    expect = np.arange(12)[:, None] * 1000 + np.arange(24)[None, :] + 1 + 2 + 5 + 10 + 100
    np.testing.assert_array_equal(got, expect)
    attrs = k.attributes
    assert attrs.num_regs > 0 and 0 < attrs.max_threads_per_block <= 1024
    assert attrs.max_dynamic_shared_size_bytes >= 100 * 1024


def test_limits_refused_before_the_driver(dev, mod):
    k = mod.get_kernel("empty")
    with pytest.raises(gpu.LaunchConfigError, match="block.x = 2048 exceeds"):
        k.launch(1, 2048)
    with pytest.raises(gpu.LaunchConfigError, match="2048 threads"):
        k.launch(1, (64, 32))
    with pytest.raises(gpu.LaunchConfigError, match="shared memory"):
        k.launch(1, 1, shmem=dev.limits.max_shared_per_block_optin + 1)
    with pytest.raises(gpu.LaunchConfigError, match="grid.y"):
        k.launch((1, 1 << 20), 1)


def test_driver_errors_name_the_cuda_error(dev):
    with pytest.raises(gpu.OutOfMemoryError, match="CUDA_ERROR_OUT_OF_MEMORY"):
        dev.alloc(1 << 50)
    with pytest.raises(gpu.DriverError, match="CUDA_ERROR_NOT_FOUND"):
        dev.compile(SAXPY).get_kernel("no_such_kernel")
    b = dev.alloc(16)
    b.copy_from_host(b"x" * 16)
    b.free()
    with pytest.raises(gpu.ResourceClosedError):
        b.copy_to_host()


def test_close_releases_everything(dev):
    d = gpu.open_device("cuda", cache=False)
    free0, _ = d.mem_info()
    bufs = [d.alloc(64 << 20) for _ in range(4)]
    d.stream()
    free1, _ = d.mem_info()
    assert free0 - free1 >= 256 << 20
    d.close()
    assert all(b._ptr is None for b in bufs)
    d2 = gpu.open_device("cuda", cache=False)
    assert d2.mem_info()[0] >= free1 + (200 << 20)
    d2.close()


class _Mem:
    def __init__(self, size=1 << 24, base=0x100000):
        self.base, self.data, self.brk = base, bytearray(size), base

    def read_bytes(self, addr, size):
        if addr < self.base or addr + size > self.base + len(self.data):
            raise G.GuestFault(addr)
        return bytes(self.data[addr - self.base : addr - self.base + size])

    def write_bytes(self, addr, data):
        if addr < self.base or addr + len(data) > self.base + len(self.data):
            raise G.GuestFault(addr)
        self.data[addr - self.base : addr - self.base + len(data)] = data

    def put(self, data):
        self.brk = (self.brk + 15) & ~15
        a = self.brk
        self.write_bytes(a, data)
        self.brk += max(1, len(data))
        return a


def test_guest_interface_on_the_real_gpu(dev):
    vm = G.GuestGPU(dev)
    mem = _Mem()
    src = (SAXPY + MATMUL).encode()
    log = mem.put(bytes(4096))
    cp = mem.put(G.COMPILE.pack(mem.put(src), len(src), 0, 0, 0, 0, 0, log, 4096, 0, 0))
    assert vm.syscall(mem, G.OP_COMPILE, cp) == 0, vm.last_error
    module = struct.unpack("<Q", mem.read_bytes(cp + 80, 8))[0]
    fp = mem.put(G.FUNCTION.pack(module, mem.put(b"saxpy\0"), 0, 0, 0))
    assert vm.syscall(mem, G.OP_GET_FUNCTION, fp) == 0
    fn, regs, maxthr = struct.unpack("<QII", mem.read_bytes(fp + 16, 16))
    assert regs > 0 and maxthr > 0
    n = 100_000
    r = rng()
    x, y = r.standard_normal(n, dtype=np.float32), r.standard_normal(n, dtype=np.float32)
    hs = []
    for arr in (x, y):
        mp = mem.put(G.MALLOC.pack(4 * n, 0))
        assert vm.syscall(mem, G.OP_MALLOC, mp) == 0
        h = struct.unpack("<Q", mem.read_bytes(mp + 8, 8))[0]
        assert vm.syscall(mem, G.OP_COPY_HTOD, mem.put(G.COPY.pack(h, 0, mem.put(arr.tobytes()), 4 * n))) == 0
        hs.append(h)
    a_bits = struct.unpack("<I", struct.pack("<f", 1.5))[0]
    args = b"".join(
        G.ARG.pack(*t)
        for t in [
            (G.ARG_I32, 4, n, 0),
            (G.ARG_F32, 4, a_bits, 0),
            (G.ARG_BUFFER, 8, hs[0], 0),
            (G.ARG_BUFFER, 8, hs[1], 0),
        ]
    )
    lp = mem.put(G.LAUNCH.pack(fn, (n + 255) // 256, 1, 1, 256, 1, 1, 0, mem.put(args), 4))
    assert vm.syscall(mem, G.OP_LAUNCH, lp) == 0, vm.last_error
    assert vm.syscall(mem, G.OP_SYNCHRONIZE, 0) == 0
    out = mem.put(bytes(4 * n))
    assert vm.syscall(mem, G.OP_COPY_DTOH, mem.put(G.COPY.pack(hs[1], 0, out, 4 * n))) == 0
    got = np.frombuffer(mem.read_bytes(out, 4 * n), np.float32)
    np.testing.assert_allclose(got, np.float32(1.5) * x + y, rtol=1e-5, atol=1e-6)
    # a bad launch is an error code, and the VM (and device) go on working
    bad = mem.put(G.LAUNCH.pack(fn, 1, 1, 1, 4096, 1, 1, 0, mem.put(args), 4))
    assert vm.syscall(mem, G.OP_LAUNCH, bad) == -G.EINVAL
    assert vm.syscall(mem, G.OP_SYNCHRONIZE, 0) == 0
    vm.close()


def test_cli_on_the_gpu(dev, capsys):
    from polyvm.gpu import cli

    assert cli.gpu_info_main(["--backend", "cuda", "--json"]) == 0
    assert '"vendor": "NVIDIA"' in capsys.readouterr().out
    assert cli.gpu_selftest_main(["--backend", "cuda", "--n", "100000"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("PASS")
