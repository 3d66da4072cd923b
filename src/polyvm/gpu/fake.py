"""A pure-Python GPU backend for tests and for machines without a GPU (``backend="fake"``).

Never chosen by ``backend="auto"``. Device memory is host memory; "compiling" finds the
``__global__`` function names in the source, and launching runs a Python implementation
registered under the kernel's name (see :data:`BUILTIN_KERNELS`). It lets the guest interface
and the neutral API be exercised end to end, e.g. in CI.
"""

from __future__ import annotations

import ctypes
import re
import struct
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .args import PackedArgs
from .backend import DeviceDriver, DeviceInfo, KernelAttributes
from .cache import CacheEntry
from .errors import CompileError, DriverError, GPUError, OutOfMemoryError
from .limits import DeviceLimits

_BASE = 0x7F00_0000_0000
_ALIGN = 256


@dataclass
class FakeLaunch:
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shmem: int
    mem: FakeDriver

    def read_f32(self, ptr: int, n: int) -> list[float]:
        return list(struct.unpack(f"<{n}f", self.mem.read(ptr, 4 * n)))

    def write_f32(self, ptr: int, values: Sequence[float]) -> None:
        self.mem.write(ptr, struct.pack(f"<{len(values)}f", *values))


def _f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _saxpy(ctx: FakeLaunch, n: int, a: float, x: int, y: int) -> None:
    threads = ctx.grid[0] * ctx.block[0]
    n_eff = min(n, threads)
    xs, ys = ctx.read_f32(x, n_eff), ctx.read_f32(y, n_eff)
    ctx.write_f32(y, [_f32(_f32(a * xi) + yi) for xi, yi in zip(xs, ys, strict=True)])


def _matmul(ctx: FakeLaunch, a: int, b: int, c: int, m: int, n: int, k: int) -> None:
    A, B = ctx.read_f32(a, m * k), ctx.read_f32(b, k * n)
    out = []
    for i in range(m):
        for j in range(n):
            s = 0.0
            for t in range(k):
                s = _f32(s + _f32(A[i * k + t] * B[t * n + j]))
            out.append(s)
    ctx.write_f32(c, out)


def _empty(ctx: FakeLaunch, *args: Any) -> None:
    return None


BUILTIN_KERNELS: dict[str, Callable[..., None]] = {"saxpy": _saxpy, "matmul": _matmul, "empty": _empty}
"""name -> Python implementation: ``f(launch: FakeLaunch, *decoded_args)``; ptr args arrive as ints."""

# Options NVRTC accepts (by prefix), so code tested on the fake backend does not fail on a GPU.
_NVRTC_OPTION_PREFIXES = (
    "-D",
    "-U",
    "-I",
    "--include-path",
    "--pre-include",
    "-include",
    "--define-macro",
    "--undefine-macro",
    "--gpu-architecture",
    "-arch",
    "--std",
    "-std",
    "--use_fast_math",
    "-use_fast_math",
    "-lineinfo",
    "--generate-line-info",
    "-G",
    "--device-debug",
    "--fmad",
    "-fmad",
    "--ftz",
    "-ftz",
    "--prec-div",
    "-prec-div",
    "--prec-sqrt",
    "-prec-sqrt",
    "--maxrregcount",
    "-maxrregcount",
    "--relocatable-device-code",
    "-rdc",
    "--extensible-whole-program",
    "-ewp",
    "--dopt",
    "-dopt",
    "--extra-device-vectorization",
    "-extra-device-vectorization",
    "-default-device",
    "--device-as-default-execution-space",
    "--disable-warnings",
    "-w",
    "--restrict",
    "-restrict",
    "--builtin-move-forward",
    "--builtin-initializer-list",
    "--device-int128",
    "-Xptxas",
    "--ptxas-options",
    "--fake-target",
)

_GLOBAL_RE = re.compile(r"__global__\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?void\s+([A-Za-z_]\w*)\s*\(")


def device_count() -> int:
    return 1


def open_driver(
    index: int = 0, *, kernels: Mapping[str, Callable[..., None]] | None = None, total_memory: int = 1 << 30
) -> FakeDriver:
    if index != 0:
        raise GPUError(f"fake device {index} does not exist (1 device found)")
    return FakeDriver(kernels=kernels, total_memory=total_memory)


class FakeDriver(DeviceDriver):
    backend = "fake"
    wants_packed_args = True

    def __init__(
        self, *, kernels: Mapping[str, Callable[..., None]] | None = None, total_memory: int = 1 << 30
    ):
        self.index = 0
        self.arch = "fake_1"
        self.compiler_version = "fake 1"
        self.kernels = dict(BUILTIN_KERNELS)
        self.kernels.update(kernels or {})
        self.total_memory = total_memory
        self._allocs: dict[int, bytearray] = {}
        self._next = _BASE
        self._lock = threading.Lock()
        self._modules: dict[int, dict[str, str]] = {}
        self._handles = 0
        self.launches: list[tuple[str, tuple[int, int, int], tuple[int, int, int], int, tuple[Any, ...]]] = []
        self.fail: set[str] = set()
        """Method names that raise a DriverError on their next call (for error-path tests)."""
        self.closed = False

    def _maybe_fail(self, call: str) -> None:
        if call in self.fail:
            self.fail.discard(call)
            raise DriverError(call, 999, "FAKE_ERROR_INJECTED", "injected failure")

    def _new_handle(self) -> int:
        self._handles += 1
        return self._handles

    # memory model
    def _find(self, ptr: int, n: int) -> tuple[bytearray, int]:
        for base, buf in self._allocs.items():
            if base <= ptr and ptr + n <= base + len(buf):
                return buf, ptr - base
        raise DriverError("fake access", 700, "CUDA_ERROR_ILLEGAL_ADDRESS", f"{n} bytes at {ptr:#x}")

    def read(self, ptr: int, n: int) -> bytes:
        buf, off = self._find(ptr, n)
        return bytes(buf[off : off + n])

    def write(self, ptr: int, data: bytes) -> None:
        buf, off = self._find(ptr, len(data))
        buf[off : off + len(data)] = data

    # queries
    def limits(self) -> DeviceLimits:
        return DeviceLimits(1024, (1024, 1024, 64), (2**31 - 1, 65535, 65535), 48 * 1024, 99 * 1024, 32)

    def mem_info(self) -> tuple[int, int]:
        used = sum(len(b) for b in self._allocs.values())
        return self.total_memory - used, self.total_memory

    def info(self) -> DeviceInfo:
        free, total = self.mem_info()
        lim = self.limits()
        return DeviceInfo(
            backend="fake",
            index=0,
            name="polyvm fake GPU",
            vendor="polyvm",
            arch=self.arch,
            compute_capability=None,
            total_memory=total,
            free_memory=free,
            used_memory=total - free,
            multiprocessor_count=None,
            clock_rate_khz=None,
            memory_clock_rate_khz=None,
            memory_bus_width_bits=None,
            l2_cache_bytes=None,
            max_threads_per_block=lim.max_threads_per_block,
            max_shared_memory_per_block=lim.max_shared_per_block,
            max_shared_memory_per_block_optin=lim.max_shared_per_block_optin,
            warp_size=lim.warp_size,
            max_block_dim=lim.max_block_dim,
            max_grid_dim=lim.max_grid_dim,
            unified_addressing=None,
            managed_memory=None,
            concurrent_managed_access=None,
            ecc_enabled=None,
            pci_bus_id=None,
            driver_version=None,
            runtime_version=None,
            bindings_version=None,
        )

    def synchronize(self) -> None:
        self._maybe_fail("synchronize")

    def close(self) -> None:
        self.closed = True
        self._allocs.clear()

    def mem_alloc(self, nbytes: int) -> int:
        self._maybe_fail("mem_alloc")
        with self._lock:
            if nbytes > self.mem_info()[0]:
                raise OutOfMemoryError("cuMemAlloc", 2, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory")
            base = self._next
            self._next += (nbytes + _ALIGN - 1) // _ALIGN * _ALIGN + _ALIGN  # a gap between allocations
            self._allocs[base] = bytearray(nbytes)
            return base

    def mem_free(self, dptr: int) -> None:
        self._maybe_fail("mem_free")
        if self._allocs.pop(dptr, None) is None:
            raise DriverError("cuMemFree", 1, "CUDA_ERROR_INVALID_VALUE", f"{dptr:#x} is not an allocation")

    def host_alloc(self, nbytes: int) -> int:
        buf = ctypes.create_string_buffer(nbytes)
        addr = ctypes.addressof(buf)
        self._allocs_host = getattr(self, "_allocs_host", {})
        self._allocs_host[addr] = buf
        return addr

    def host_free(self, hptr: int) -> None:
        getattr(self, "_allocs_host", {}).pop(hptr, None)

    def memcpy_htod(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        self._maybe_fail("memcpy_htod")
        self.write(dst, ctypes.string_at(src, nbytes))

    def memcpy_dtoh(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        self._maybe_fail("memcpy_dtoh")
        ctypes.memmove(dst, self.read(src, nbytes), nbytes)

    def memcpy_dtod(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        self.write(dst, self.read(src, nbytes))

    def memset_d8(self, dst: int, value: int, nbytes: int, stream: Any) -> None:
        self._maybe_fail("memset_d8")
        self.write(dst, bytes([value]) * nbytes)

    def stream_create(self, non_blocking: bool) -> Any:
        return self._new_handle()

    def stream_destroy(self, stream: Any) -> None:
        pass

    def stream_synchronize(self, stream: Any) -> None:
        self._maybe_fail("stream_synchronize")

    def stream_query(self, stream: Any) -> bool:
        return True

    def event_create(self, timing: bool) -> Any:
        return [self._new_handle(), 0.0]

    def event_destroy(self, event: Any) -> None:
        pass

    def event_record(self, event: Any, stream: Any) -> None:
        import time

        event[1] = time.perf_counter()

    def event_synchronize(self, event: Any) -> None:
        pass

    def event_query(self, event: Any) -> bool:
        return True

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        return (end[1] - start[1]) * 1000.0

    def target_options(self, target: str) -> list[str]:
        return [f"--fake-target={target}"]

    def compile(
        self,
        source: str,
        name: str,
        options: Sequence[str],
        headers: Mapping[str, str],
        name_expressions: Sequence[str],
    ) -> CacheEntry:
        for opt in options:
            if not opt.startswith(_NVRTC_OPTION_PREFIXES):
                # Like NVRTC, which knows no -O3 and the like: catch such options without a GPU.
                log = f"nvrtc: error: unrecognized option {opt} found\n"
                raise CompileError(
                    f"fake compiler could not compile {name}", log, name=name, options=tuple(options)
                )
        m = re.search(r"#\s*error\s+(.*)", source)
        if m:
            log = f'{name}(1): error: #error directive: {m.group(1).strip()}\n1 error detected in the compilation of "{name}".'
            raise CompileError(
                f"fake compiler could not compile {name}", log, name=name, options=tuple(options)
            )
        names = _GLOBAL_RE.findall(source)
        return CacheEntry(image=("\n".join(names)).encode(), image_kind="ptx", ptx=source, log="")

    def module_load(self, image: bytes, image_kind: str) -> Any:
        self._maybe_fail("module_load")
        h = self._new_handle()
        self._modules[h] = {n: n for n in image.decode().split("\n") if n}
        return h

    def module_unload(self, module: Any) -> None:
        self._modules.pop(module, None)

    def module_get_function(self, module: Any, name: str) -> Any:
        if name not in self._modules.get(module, {}):
            raise DriverError("cuModuleGetFunction", 500, "CUDA_ERROR_NOT_FOUND", f"no kernel named {name!r}")
        return name

    def function_attributes(self, func: Any) -> KernelAttributes:
        return KernelAttributes(16, 1024, 0, 0, 0, None, None, 48 * 1024)

    def function_set_max_dynamic_shared(self, func: Any, nbytes: int) -> None:
        pass

    def launch(
        self, func: Any, cfg: tuple[int, ...], stream: Any, params: int, packed: PackedArgs | None
    ) -> None:
        self._maybe_fail("launch")
        grid, block, shmem = (cfg[0], cfg[1], cfg[2]), (cfg[3], cfg[4], cfg[5]), cfg[6]
        values = tuple(a.value for a in packed.args) if packed is not None else ()
        self.launches.append((func, grid, block, shmem, values))
        impl = self.kernels.get(func)
        if impl is None:
            return  # compiles and launches, does nothing: like a kernel without side effects
        impl(FakeLaunch(grid, block, shmem, self), *values)
