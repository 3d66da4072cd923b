"""Check polyvm.gpu on a real NVIDIA GPU against NumPy and measure it against raw cuda-bindings.

Run by hand on a machine with a CUDA GPU (CI has none):

    PYTHONPATH=src python bench/gpu_check.py [--json out.json] [--quick]

Every result is checked against NumPy on fresh random inputs (never zeros); a wrong result makes
the exit status 1. The table compares: cold NVRTC compile vs cache hits; empty-kernel launch
cost through polyvm vs calling cuLaunchKernel directly (goal: ratio < 1.2); host<->device
bandwidth vs direct cuMemcpy; a 1 GiB-scale kernel vs direct; the guest ABI's overhead on a
SAXPY round trip.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from polyvm import gpu  # noqa: E402
from polyvm.gpu import guest as G  # noqa: E402
from polyvm.gpu.kernels import EMPTY, MATMUL, SAXPY  # noqa: E402

ROWS: list[dict] = []
FAILURES: list[str] = []


def row(what: str, polyvm: float | None, direct: float | None, unit: str, note: str = "") -> None:
    ratio = polyvm / direct if polyvm is not None and direct else None
    ROWS.append(
        {"what": what, "polyvm": polyvm, "direct": direct, "unit": unit, "ratio": ratio, "note": note}
    )
    print(
        f"  {what:<44} {_f(polyvm):>11} {_f(direct):>11} {unit:<6} {'' if ratio is None else f'{ratio:5.2f}x':>7}  {note}",
        flush=True,
    )


def _f(v: float | None) -> str:
    return "-" if v is None else (f"{v:.3f}" if v < 100 else f"{v:.1f}")


def check(what: str, got: np.ndarray, want: np.ndarray, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    if not np.allclose(got, want, rtol=rtol, atol=atol):
        bad = int(np.sum(~np.isclose(got, want, rtol=rtol, atol=atol)))
        FAILURES.append(f"{what}: {bad} of {want.size} wrong")
        print(f"  CHECK FAILED: {what}: {bad} of {want.size} wrong", flush=True)
    else:
        print(f"  check ok: {what} ({want.size} values)", flush=True)


class Direct:
    """The same work through cuda-bindings with nothing in between: the baseline."""

    def __init__(self, arch: str) -> None:
        from cuda.bindings import driver, nvrtc

        self.d, self.nv, self.arch = driver, nvrtc, arch
        self.stream0 = driver.CUstream(0)

    def ok(self, res):
        if res[0]:
            raise RuntimeError(f"direct call failed: {res[0]}")
        return res[1] if len(res) == 2 else res[1:]

    def compile(self, src: str, name: str):
        nv = self.nv
        prog = self.ok(nv.nvrtcCreateProgram(src.encode(), b"direct.cu", 0, [], []))
        opts = [f"--gpu-architecture={self.arch}".encode()]
        (err,) = nv.nvrtcCompileProgram(prog, len(opts), opts)
        if err:
            raise RuntimeError(f"direct NVRTC failed: {err}")
        size = self.ok(nv.nvrtcGetCUBINSize(prog))
        buf = b" " * (size + 1)
        nv.nvrtcGetCUBIN(prog, buf)
        nv.nvrtcDestroyProgram(prog)
        image = ctypes.create_string_buffer(buf[:size])
        module = self.ok(self.d.cuModuleLoadData(ctypes.addressof(image)))
        return self.ok(self.d.cuModuleGetFunction(module, name.encode()))


def best_and_median(fn, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def bench_compile(dev: gpu.Device, direct: Direct) -> None:
    print("compile (NVRTC -> cubin, load):", flush=True)
    src = SAXPY + MATMUL + f"\n// fresh {os.urandom(8).hex()}\n"  # never in any cache
    with tempfile.TemporaryDirectory() as tmp:
        cache = gpu.KernelCache(tmp)
        dev.cache = cache
        t0 = time.perf_counter()
        m = dev.compile(src)
        cold = time.perf_counter() - t0
        assert not m.from_cache
        cache.clear_memory()
        t0 = time.perf_counter()
        m2 = dev.compile(src)
        disk = time.perf_counter() - t0
        assert m2.from_cache
        t0 = time.perf_counter()
        m3 = dev.compile(src)
        memory = time.perf_counter() - t0
        assert m3.from_cache
        t0 = time.perf_counter()
        direct.compile(src + "// direct\n", "saxpy")
        dcold = time.perf_counter() - t0
    row("cold compile (cache miss)", cold * 1e3, dcold * 1e3, "ms", "direct = NVRTC + cuModuleLoadData")
    row("compile, disk cache hit", disk * 1e3, dcold * 1e3, "ms", "fresh memory layer; cuModuleLoadData only")
    row("compile, memory cache hit", memory * 1e3, dcold * 1e3, "ms")


def bench_launch(dev: gpu.Device, direct: Direct, quick: bool) -> None:
    print("launch latency (empty kernel, 1x1, default stream):", flush=True)
    k = dev.compile(EMPTY).get_kernel("empty")
    df = direct.compile(EMPTY, "empty")
    launch = direct.d.cuLaunchKernel
    s0 = direct.stream0
    sync = direct.d.cuCtxSynchronize
    n = 5000 if quick else 20000

    def via_polyvm():
        for _ in range(n):
            k.launch(1, 1)
        dev.synchronize()

    def via_direct():
        for _ in range(n):
            (err,) = launch(df, 1, 1, 1, 1, 1, 1, 0, s0, 0, 0)
            if err:
                raise RuntimeError(err)
        sync()

    def rt_polyvm():
        for _ in range(n // 10):
            k.launch(1, 1)
            dev.synchronize()

    def rt_direct():
        for _ in range(n // 10):
            (err,) = launch(df, 1, 1, 1, 1, 1, 1, 0, s0, 0, 0)
            if err:
                raise RuntimeError(err)
            sync()

    via_polyvm()
    via_direct()  # warm up
    p, d = [], []
    for _ in range(7):  # interleaved, so drift hits both sides alike
        p.append(best_and_median(via_polyvm, 1)[0] / n)
        d.append(best_and_median(via_direct, 1)[0] / n)
    row(
        "launch, queued back to back",
        statistics.median(p) * 1e6,
        statistics.median(d) * 1e6,
        "us",
        "median of 7 x launches",
    )
    p, d = [], []
    for _ in range(5):
        p.append(best_and_median(rt_polyvm, 1)[0] / (n // 10))
        d.append(best_and_median(rt_direct, 1)[0] / (n // 10))
    row("launch + synchronize round trip", statistics.median(p) * 1e6, statistics.median(d) * 1e6, "us")

    # with 4 typed arguments: polyvm packs them on every launch, the baseline reuses a prebuilt array
    ks = dev.compile(SAXPY).get_kernel("saxpy", "i32, f32, ptr, ptr")
    dfs = direct.compile(SAXPY, "saxpy")
    bx, by = dev.alloc(4 * 256), dev.alloc(4 * 256)
    vals = [
        np.array([256], np.int32),
        np.array([1.0], np.float32),
        np.array([bx.device_ptr], np.uint64),
        np.array([by.device_ptr], np.uint64),
    ]
    params = np.array([v.ctypes.data for v in vals], dtype=np.uint64)
    pp = params.ctypes.data
    m = n // 2

    def args_polyvm():
        for _ in range(m):
            ks.launch(1, 256, (256, 1.0, bx, by))
        dev.synchronize()

    def args_direct():
        for _ in range(m):
            (err,) = launch(dfs, 1, 1, 1, 256, 1, 1, 0, s0, pp, 0)
            if err:
                raise RuntimeError(err)
        sync()

    args_polyvm()
    args_direct()
    p, d = [], []
    for _ in range(5):
        p.append(best_and_median(args_polyvm, 1)[0] / m)
        d.append(best_and_median(args_direct, 1)[0] / m)
    row(
        "launch with 4 args (packed per launch)",
        statistics.median(p) * 1e6,
        statistics.median(d) * 1e6,
        "us",
        "direct reuses one params array",
    )


def bench_bandwidth(dev: gpu.Device, direct: Direct, quick: bool) -> None:
    print("host <-> device bandwidth:", flush=True)
    size = (64 if quick else 256) << 20
    rng = np.random.default_rng()
    host = rng.integers(1, 256, size, dtype=np.uint8)
    pinned = dev.alloc_pinned(size)
    pinned.numpy()[:] = host
    back = np.empty_like(host)
    pinned_back = dev.alloc_pinned(size)
    buf = dev.alloc(size)
    d = direct.d
    gb = size / 1e9

    cases = [
        (
            "H2D pinned",
            lambda: buf.copy_from_host(pinned),
            lambda: d.cuMemcpyHtoD(buf.device_ptr, pinned.host_ptr, size),
        ),
        (
            "D2H pinned",
            lambda: buf.copy_to_host(pinned_back),
            lambda: d.cuMemcpyDtoH(pinned_back.host_ptr, buf.device_ptr, size),
        ),
        (
            "H2D pageable",
            lambda: buf.copy_from_host(host),
            lambda: d.cuMemcpyHtoD(buf.device_ptr, host.ctypes.data, size),
        ),
        (
            "D2H pageable",
            lambda: buf.copy_to_host(back),
            lambda: d.cuMemcpyDtoH(back.ctypes.data, buf.device_ptr, size),
        ),
    ]
    for name, fp, fd in cases:
        fp()
        fd()
        tp = min(best_and_median(fp, 5)[0], best_and_median(fp, 5)[0])
        td = min(best_and_median(fd, 5)[0], best_and_median(fd, 5)[0])
        # a higher bandwidth is better: report the ratio of times (polyvm / direct)
        row(f"{name} {size >> 20} MiB", gb / tp, gb / td, "GB/s", f"time ratio {tp / td:.3f}")
    buf.copy_from_host(host)
    buf.copy_to_host(back)
    check("H2D+D2H pageable round trip", back, host, 0, 0)
    buf.copy_from_host(pinned)
    buf.copy_to_host(pinned_back)
    check("H2D+D2H pinned round trip", pinned_back.numpy(), host, 0, 0)
    for b in (pinned, pinned_back, buf):
        b.free()


def bench_big_kernel(dev: gpu.Device, direct: Direct, quick: bool) -> None:
    n = (1 << 26) if quick else (1 << 28)  # 2^28 float32 = 1 GiB per array
    print(f"big kernel: saxpy over {n * 4 >> 20} MiB per array (reads 2, writes 1):", flush=True)
    rng = np.random.default_rng()
    x = rng.standard_normal(n, dtype=np.float32)
    y = rng.standard_normal(n, dtype=np.float32)
    a = np.float32(rng.uniform(0.5, 2.0))
    k = dev.compile(SAXPY).get_kernel("saxpy", "i32, f32, ptr, ptr")
    df = direct.compile(SAXPY, "saxpy")
    bx, by, by0 = dev.to_device(x), dev.to_device(y), dev.to_device(y)
    grid = (n + 255) // 256
    vals = [
        np.array([n], np.int32),
        np.array([a], np.float32),
        np.array([bx.device_ptr], np.uint64),
        np.array([by.device_ptr], np.uint64),
    ]
    params = np.array([v.ctypes.data for v in vals], dtype=np.uint64)
    d = direct.d

    k.launch(grid, 256, (n, a, bx, by))
    out = by.copy_to_host(np.empty_like(y))
    check("saxpy 1 GiB-scale (polyvm)", out, a * x + y)
    by.copy_from(by0)
    (err,) = d.cuLaunchKernel(df, grid, 1, 1, 256, 1, 1, 0, direct.stream0, params.ctypes.data, 0)
    assert not err, err
    out = by.copy_to_host(np.empty_like(y))
    check("saxpy 1 GiB-scale (direct)", out, a * x + y)

    e0, e1 = dev.event(), dev.event()

    def timed(fn):
        wall, gpu_ms = [], []
        for _ in range(7):
            dev.synchronize()
            t0 = time.perf_counter()
            e0.record()
            fn()
            e1.record()
            e1.synchronize()
            wall.append(time.perf_counter() - t0)
            gpu_ms.append(e0.elapsed_ms(e1))
        return statistics.median(wall) * 1e3, statistics.median(gpu_ms)

    wp, gp = timed(lambda: k.launch(grid, 256, (n, a, bx, by)))
    wd, gd = timed(
        lambda: d.cuLaunchKernel(df, grid, 1, 1, 256, 1, 1, 0, direct.stream0, params.ctypes.data, 0)
    )
    row(f"saxpy {n * 4 >> 20} MiB x3 traffic, wall", wp, wd, "ms", "launch to completion")
    row(
        f"saxpy {n * 4 >> 20} MiB x3 traffic, GPU events",
        gp,
        gd,
        "ms",
        f"~{3 * n * 4 / (gp * 1e-3) / 1e9:.0f} GB/s via polyvm",
    )
    for b in (bx, by, by0):
        b.free()


class ArrayMemory:
    """A guest address space in one bytearray (what a user-mode VM's flat memory looks like)."""

    def __init__(self, size: int, base: int = 0x10000) -> None:
        self.base, self.data, self.brk = base, bytearray(size), base

    def read_bytes(self, addr: int, size: int) -> bytes:
        o = addr - self.base
        if o < 0 or o + size > len(self.data):
            raise G.GuestFault(addr)
        return bytes(self.data[o : o + size])

    def write_bytes(self, addr: int, data: bytes) -> None:
        o = addr - self.base
        if o < 0 or o + len(data) > len(self.data):
            raise G.GuestFault(addr)
        self.data[o : o + len(data)] = data

    def host_view(self, addr: int, size: int) -> memoryview:
        o = addr - self.base
        if o < 0 or o + size > len(self.data):
            raise G.GuestFault(addr)
        return memoryview(self.data)[o : o + size]

    def put(self, data: bytes) -> int:
        self.brk = (self.brk + 63) & ~63
        a = self.brk
        self.write_bytes(a, data)
        self.brk += max(1, len(data))
        return a


def bench_guest(dev: gpu.Device, quick: bool) -> None:
    n = 1 << 20
    print(f"guest ABI: saxpy round trip, n={n} (2 copies in, launch, sync, 1 copy out):", flush=True)
    rng = np.random.default_rng()
    x = rng.standard_normal(n, dtype=np.float32)
    y = rng.standard_normal(n, dtype=np.float32)
    a = np.float32(1.75)
    mem = ArrayMemory(64 << 20)
    vm = G.GuestGPU(dev)
    src = SAXPY.encode()
    cp = mem.put(G.COMPILE.pack(mem.put(src), len(src), 0, 0, 0, 0, 0, 0, 0, 0, 0))
    assert vm.syscall(mem, G.OP_COMPILE, cp) == 0, vm.last_error
    module = struct.unpack_from("<Q", mem.data, cp + 80 - mem.base)[0]
    fp = mem.put(G.FUNCTION.pack(module, mem.put(b"saxpy\0"), 0, 0, 0))
    assert vm.syscall(mem, G.OP_GET_FUNCTION, fp) == 0
    fn = struct.unpack_from("<Q", mem.data, fp + 16 - mem.base)[0]
    gx, gy, gout = mem.put(x.tobytes()), mem.put(y.tobytes()), mem.put(bytes(4 * n))
    hs = []
    for _ in range(2):
        mp = mem.put(G.MALLOC.pack(4 * n, 0))
        assert vm.syscall(mem, G.OP_MALLOC, mp) == 0
        hs.append(struct.unpack_from("<Q", mem.data, mp + 8 - mem.base)[0])
    abits = struct.unpack("<I", struct.pack("<f", a))[0]
    args = mem.put(
        b"".join(
            G.ARG.pack(*t)
            for t in [
                (G.ARG_I32, 4, n, 0),
                (G.ARG_F32, 4, abits, 0),
                (G.ARG_BUFFER, 8, hs[0], 0),
                (G.ARG_BUFFER, 8, hs[1], 0),
            ]
        )
    )
    c1 = mem.put(G.COPY.pack(hs[0], 0, gx, 4 * n))
    c2 = mem.put(G.COPY.pack(hs[1], 0, gy, 4 * n))
    lp = mem.put(G.LAUNCH.pack(fn, (n + 255) // 256, 1, 1, 256, 1, 1, 0, args, 4))
    c3 = mem.put(G.COPY.pack(hs[1], 0, gout, 4 * n))

    def via_guest():
        for op, p in (
            (G.OP_COPY_HTOD, c1),
            (G.OP_COPY_HTOD, c2),
            (G.OP_LAUNCH, lp),
            (G.OP_SYNCHRONIZE, 0),
            (G.OP_COPY_DTOH, c3),
        ):
            rc = vm.syscall(mem, op, p)
            if rc:
                raise RuntimeError(f"guest op {op} -> {rc}: {vm.last_error}")

    k = dev.compile(SAXPY).get_kernel("saxpy", "i32, f32, ptr, ptr")
    bx, by = dev.alloc(4 * n), dev.alloc(4 * n)
    out = np.empty_like(y)

    def via_api():
        bx.copy_from_host(x)
        by.copy_from_host(y)
        k.launch((n + 255) // 256, 256, (n, a, bx, by))
        by.copy_to_host(out)

    via_guest()
    got = np.frombuffer(bytes(mem.data[gout - mem.base : gout - mem.base + 4 * n]), np.float32)
    check("guest saxpy", got, a * x + y)
    via_api()
    check("API saxpy", out, a * x + y)
    tg = statistics.median(best_and_median(via_guest, 1)[0] for _ in range(9))
    ta = statistics.median(best_and_median(via_api, 1)[0] for _ in range(9))
    row(
        f"guest saxpy round trip ({4 * n >> 20} MiB x3)",
        tg * 1e3,
        ta * 1e3,
        "ms",
        "host_view accessor; direct = host API",
    )
    hv = ArrayMemory.host_view
    try:
        del ArrayMemory.host_view  # read_bytes/write_bytes only: the copying path
        mem.data[gout - mem.base : gout - mem.base + 4 * n] = b"\xff" * (4 * n)  # NaNs until overwritten
        tc = statistics.median(best_and_median(via_guest, 1)[0] for _ in range(5))
    finally:
        ArrayMemory.host_view = hv
    got = np.frombuffer(bytes(mem.data[gout - mem.base : gout - mem.base + 4 * n]), np.float32)
    check("guest saxpy (copying accessor)", got, a * x + y)
    row("  same, accessor without host_view", tc * 1e3, ta * 1e3, "ms", "read_bytes/write_bytes copies")
    vm.close()


def bench_guest_program(dev: gpu.Device, exe: str, n: int) -> None:
    """guest/gpu_saxpy.c (riscv64) in polyvm's user mode, its 0x4750 syscalls served by GuestGPU."""
    from polyvm.linux import Process
    from polyvm.linux import syscalls as linux_syscalls

    print(f"guest program: {exe} {n} in riscv64 user mode:", flush=True)
    vm = G.GuestGPU(dev)
    spent = [0.0, 0]

    def serve(proc, t, op, argp, *rest):
        t0 = time.perf_counter()
        rc = vm.syscall(proc.mem, op, argp)
        spent[0] += time.perf_counter() - t0
        spent[1] += 1
        return rc

    with tempfile.TemporaryFile() as f:
        p = Process.from_file(exe, [exe, str(n)], stdout=f.fileno(), quiet=True)
        names = type(p.abi).syscall_names
        names[G.SYSCALL_NR] = "polyvm_gpu"
        linux_syscalls.IMPL["polyvm_gpu"] = serve
        try:
            t0 = time.perf_counter()
            status = p.run(timeout=240)
            wall = time.perf_counter() - t0
        finally:
            names.pop(G.SYSCALL_NR, None)
            linux_syscalls.IMPL.pop("polyvm_gpu", None)
        f.seek(0)
        text = f.read().decode(errors="replace")
    print("  " + text.strip().replace("\n", "\n  "), flush=True)
    if status != 0 or not text.rstrip().endswith("OK"):
        FAILURES.append(f"guest program: status {status}")
    row(f"guest gpu_saxpy n={n}: whole run", wall * 1e3, None, "ms", "interpreted RISC-V CPU work included")
    row(f"  in {spent[1]} GPU syscalls", spent[0] * 1e3, None, "ms", "compile, copies, launches, sync")
    vm.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="also write the table as JSON here")
    ap.add_argument("--quick", action="store_true", help="smaller sizes")
    ap.add_argument("--device", type=int, default=0)
    ap.add_argument("--guest-exe", help="guest/gpu_saxpy.c built for riscv64: run it in polyvm user mode")
    ap.add_argument("--guest-n", type=int, default=100000, help="SAXPY length for --guest-exe")
    a = ap.parse_args()
    dev = gpu.open_device("cuda", a.device)
    info = dev.info()
    direct = Direct(dev.arch)
    print(
        f"card: {info.name}, {info.arch}, {info.total_memory / 2**30:.1f} GiB, driver {info.driver_version}, {info.runtime_version}, cuda-bindings {info.bindings_version}"
    )
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}")
    print(f"  {'':<44} {'polyvm':>11} {'direct':>11} {'unit':<6} {'ratio':>7}")
    bench_compile(dev, direct)
    bench_launch(dev, direct, a.quick)
    bench_bandwidth(dev, direct, a.quick)
    bench_big_kernel(dev, direct, a.quick)
    bench_guest(dev, a.quick)
    if a.guest_exe:
        bench_guest_program(dev, a.guest_exe, a.guest_n)
    dev.close()
    if a.json:
        Path(a.json).write_text(
            json.dumps({"card": info.to_dict(), "rows": ROWS, "failures": FAILURES}, indent=2)
        )
    print("RESULT:", "all checks passed" if not FAILURES else f"{len(FAILURES)} check(s) FAILED: {FAILURES}")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
