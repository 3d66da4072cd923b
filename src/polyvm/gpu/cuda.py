"""CUDA backend over NVIDIA's ``cuda-bindings`` (driver API + NVRTC), imported lazily.

Every ``cuda.bindings.driver`` call returns ``(CUresult, *outputs)``; :func:`_check` turns a
non-zero result into :class:`~polyvm.gpu.errors.DriverError` carrying ``cuGetErrorName``.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from .args import PackedArgs
from .backend import DeviceDriver, DeviceInfo, KernelAttributes
from .cache import CacheEntry
from .errors import BackendUnavailableError, CompileError, DriverError, GPUError, OutOfMemoryError
from .limits import DeviceLimits

_state = threading.local()  # mirrors the driver's own per-thread "current context"
_load_lock = threading.Lock()
_mods: tuple[Any, Any] | None = None


def _load() -> tuple[Any, Any]:
    """Import cuda-bindings and initialize the driver once; raise BackendUnavailableError if impossible."""
    global _mods
    if _mods is not None:
        return _mods
    with _load_lock:
        if _mods is not None:
            return _mods
        try:
            from cuda.bindings import driver, nvrtc
        except ImportError as exc:
            raise BackendUnavailableError(
                f"CUDA: the cuda-bindings package is not installed (pip install 'polyvm[cuda]'): {exc}"
            ) from None
        try:
            res = driver.cuInit(0)
        except Exception as exc:  # cuda-pathfinder raises when libcuda.so cannot be found
            raise BackendUnavailableError(f"CUDA: the NVIDIA driver library was not found ({exc})") from None
        err = res[0]
        if err:
            name = _err_name(driver, err)
            if name == "CUDA_ERROR_NO_DEVICE":
                raise BackendUnavailableError("CUDA: no CUDA device found (CUDA_ERROR_NO_DEVICE)")
            raise BackendUnavailableError(f"CUDA: cuInit failed: {name}")
        _mods = (driver, nvrtc)
        return _mods


def _err_name(driver: Any, err: Any) -> str:
    try:
        r = driver.cuGetErrorName(err)
        if not r[0] and r[1]:
            return r[1].decode()
    except Exception:
        pass
    return f"CUresult {int(err)}"


def _err_string(driver: Any, err: Any) -> str:
    try:
        r = driver.cuGetErrorString(err)
        if not r[0] and r[1]:
            return r[1].decode()
    except Exception:
        pass
    return ""


def _raise(driver: Any, call: str, err: Any) -> None:
    name = _err_name(driver, err)
    cls = OutOfMemoryError if name == "CUDA_ERROR_OUT_OF_MEMORY" else DriverError
    raise cls(call, int(err), name, _err_string(driver, err))


def device_count() -> int:
    driver, _ = _load()
    err, n = driver.cuDeviceGetCount()
    if err:
        _raise(driver, "cuDeviceGetCount", err)
    return int(n)


def open_driver(index: int = 0) -> CudaDriver:
    return CudaDriver(index)


def _nvrtc_err(nvrtc: Any, err: Any) -> str:
    try:
        r = nvrtc.nvrtcGetErrorString(err)
        s = r[-1]
        return s.decode() if isinstance(s, bytes) else str(s)
    except Exception:
        return f"nvrtcResult {int(err)}"


def _dev_attr_names() -> dict[str, str]:
    return {
        "multiprocessor_count": "MULTIPROCESSOR_COUNT",
        "clock_rate_khz": "CLOCK_RATE",
        "memory_clock_rate_khz": "MEMORY_CLOCK_RATE",
        "memory_bus_width_bits": "GLOBAL_MEMORY_BUS_WIDTH",
        "l2_cache_bytes": "L2_CACHE_SIZE",
        "max_threads_per_block": "MAX_THREADS_PER_BLOCK",
        "max_shared_memory_per_block": "MAX_SHARED_MEMORY_PER_BLOCK",
        "max_shared_memory_per_block_optin": "MAX_SHARED_MEMORY_PER_BLOCK_OPTIN",
        "warp_size": "WARP_SIZE",
        "unified_addressing": "UNIFIED_ADDRESSING",
        "managed_memory": "MANAGED_MEMORY",
        "concurrent_managed_access": "CONCURRENT_MANAGED_ACCESS",
        "ecc_enabled": "ECC_ENABLED",
    }


class CudaDriver(DeviceDriver):
    backend = "cuda"

    def __init__(self, index: int) -> None:
        driver, nvrtc = _load()
        self._d = driver
        self._nvrtc = nvrtc
        self.index = index
        self._ctx = None
        n = self._call("cuDeviceGetCount", driver.cuDeviceGetCount())
        if index >= n:
            raise GPUError(f"CUDA device {index} does not exist ({n} device{'s' if n != 1 else ''} found)")
        self._dev = self._call("cuDeviceGet", driver.cuDeviceGet(index))
        self._ctx = self._call("cuDevicePrimaryCtxRetain", driver.cuDevicePrimaryCtxRetain(self._dev))
        self.ensure_current()
        major = self._attr("COMPUTE_CAPABILITY_MAJOR")
        minor = self._attr("COMPUTE_CAPABILITY_MINOR")
        self.cc = (int(major or 0), int(minor or 0))
        self.arch = f"sm_{self.cc[0]}{self.cc[1]}"
        self._null_stream = driver.CUstream(0)
        self._launch_fn = driver.cuLaunchKernel
        try:
            r = nvrtc.nvrtcVersion()
            self._nvrtc_version: tuple[int, int] | None = (int(r[1]), int(r[2])) if not r[0] else None
        except Exception:  # libnvrtc missing: the device still works for prebuilt code
            self._nvrtc_version = None
        self.compiler_version = (
            f"nvrtc {self._nvrtc_version[0]}.{self._nvrtc_version[1]}"
            if self._nvrtc_version
            else "nvrtc unavailable"
        )
        self._supported: list[int] | None = None

    # plumbing
    def _call(self, name: str, res: Any) -> Any:
        err = res[0]
        if err:
            _raise(self._d, name, err)
        if len(res) == 1:
            return None
        return res[1] if len(res) == 2 else res[1:]

    def _attr(self, name: str) -> int | None:
        a = getattr(self._d.CUdevice_attribute, "CU_DEVICE_ATTRIBUTE_" + name, None)
        if a is None:
            return None
        err, v = self._d.cuDeviceGetAttribute(a, self._dev)
        return None if err else int(v)

    def ensure_current(self) -> None:
        if getattr(_state, "ctx", None) is not self._ctx:
            self._call("cuCtxSetCurrent", self._d.cuCtxSetCurrent(self._ctx))
            _state.ctx = self._ctx

    def _s(self, stream: Any) -> Any:
        return self._null_stream if stream is None else stream

    # queries
    def limits(self) -> DeviceLimits:
        a = self._attr
        return DeviceLimits(
            max_threads_per_block=a("MAX_THREADS_PER_BLOCK") or 1024,
            max_block_dim=(
                a("MAX_BLOCK_DIM_X") or 1024,
                a("MAX_BLOCK_DIM_Y") or 1024,
                a("MAX_BLOCK_DIM_Z") or 64,
            ),
            max_grid_dim=(
                a("MAX_GRID_DIM_X") or 2**31 - 1,
                a("MAX_GRID_DIM_Y") or 65535,
                a("MAX_GRID_DIM_Z") or 65535,
            ),
            max_shared_per_block=a("MAX_SHARED_MEMORY_PER_BLOCK") or 48 * 1024,
            max_shared_per_block_optin=a("MAX_SHARED_MEMORY_PER_BLOCK_OPTIN") or 0,
            warp_size=a("WARP_SIZE") or 32,
        )

    def mem_info(self) -> tuple[int, int]:
        free, total = self._call("cuMemGetInfo", self._d.cuMemGetInfo())
        return int(free), int(total)

    def info(self) -> DeviceInfo:
        d = self._d
        raw = self._call("cuDeviceGetName", d.cuDeviceGetName(256, self._dev))
        name = bytes(raw).split(b"\0", 1)[0].decode(errors="replace")
        try:
            pci = bytes(self._call("cuDeviceGetPCIBusId", d.cuDeviceGetPCIBusId(64, self._dev)))
            pci_id: str | None = pci.split(b"\0", 1)[0].decode() or None
        except DriverError:
            pci_id = None
        try:
            free, total = self.mem_info()
            used: int | None = total - free
        except DriverError:
            free = total = used = None  # type: ignore[assignment]
        if total is None:
            try:
                total = int(self._call("cuDeviceTotalMem", d.cuDeviceTotalMem(self._dev)))
            except DriverError:
                total = None  # type: ignore[assignment]
        try:
            dv = int(self._call("cuDriverGetVersion", d.cuDriverGetVersion()))
            driver_version: str | None = f"{dv // 1000}.{(dv % 1000) // 10}"
        except DriverError:
            driver_version = None
        vals: dict[str, Any] = {}
        for field, attr in _dev_attr_names().items():
            v = self._attr(attr)
            if field in ("unified_addressing", "managed_memory", "concurrent_managed_access", "ecc_enabled"):
                vals[field] = None if v is None else bool(v)
            elif field in ("clock_rate_khz", "memory_clock_rate_khz", "memory_bus_width_bits") and v == 0:
                vals[field] = None  # reported as 0 where the driver does not know it
            else:
                vals[field] = v
        lim = self.limits()
        try:
            from cuda.bindings import __version__ as bindings_version
        except Exception:
            bindings_version = None
        rt = self._nvrtc_version
        return DeviceInfo(
            backend="cuda",
            index=self.index,
            name=name,
            vendor="NVIDIA",
            arch=self.arch,
            compute_capability=self.cc,
            total_memory=total,
            free_memory=free,
            used_memory=used,
            max_block_dim=lim.max_block_dim,
            max_grid_dim=lim.max_grid_dim,
            pci_bus_id=pci_id,
            driver_version=driver_version,
            runtime_version=f"NVRTC {rt[0]}.{rt[1]}" if rt else None,
            bindings_version=bindings_version,
            **vals,
        )

    def synchronize(self) -> None:
        self._call("cuCtxSynchronize", self._d.cuCtxSynchronize())

    def close(self) -> None:
        ctx, self._ctx = self._ctx, None
        if ctx is None:
            return
        if getattr(_state, "ctx", None) is ctx:
            _state.ctx = None
        try:
            self._call("cuDevicePrimaryCtxRelease", self._d.cuDevicePrimaryCtxRelease(self._dev))
        except Exception:
            pass  # at interpreter exit the driver may already be gone

    # memory
    def mem_alloc(self, nbytes: int) -> int:
        return int(self._call("cuMemAlloc", self._d.cuMemAlloc(nbytes)))

    def mem_free(self, dptr: int) -> None:
        self._call("cuMemFree", self._d.cuMemFree(dptr))

    def host_alloc(self, nbytes: int) -> int:
        return int(self._call("cuMemHostAlloc", self._d.cuMemHostAlloc(nbytes, 0)))

    def host_free(self, hptr: int) -> None:
        self._call("cuMemFreeHost", self._d.cuMemFreeHost(hptr))

    def memcpy_htod(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        if stream is None:
            self._call("cuMemcpyHtoD", self._d.cuMemcpyHtoD(dst, src, nbytes))
        else:
            self._call("cuMemcpyHtoDAsync", self._d.cuMemcpyHtoDAsync(dst, src, nbytes, stream))

    def memcpy_dtoh(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        if stream is None:
            self._call("cuMemcpyDtoH", self._d.cuMemcpyDtoH(dst, src, nbytes))
        else:
            self._call("cuMemcpyDtoHAsync", self._d.cuMemcpyDtoHAsync(dst, src, nbytes, stream))

    def memcpy_dtod(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        if stream is None:
            self._call("cuMemcpyDtoD", self._d.cuMemcpyDtoD(dst, src, nbytes))
        else:
            self._call("cuMemcpyDtoDAsync", self._d.cuMemcpyDtoDAsync(dst, src, nbytes, stream))

    def memset_d8(self, dst: int, value: int, nbytes: int, stream: Any) -> None:
        if stream is None:
            self._call("cuMemsetD8", self._d.cuMemsetD8(dst, value, nbytes))
        else:
            self._call("cuMemsetD8Async", self._d.cuMemsetD8Async(dst, value, nbytes, stream))

    # streams and events
    def stream_create(self, non_blocking: bool) -> Any:
        flags = int(self._d.CUstream_flags.CU_STREAM_NON_BLOCKING) if non_blocking else 0
        return self._call("cuStreamCreate", self._d.cuStreamCreate(flags))

    def stream_destroy(self, stream: Any) -> None:
        self._call("cuStreamDestroy", self._d.cuStreamDestroy(stream))

    def stream_synchronize(self, stream: Any) -> None:
        self._call("cuStreamSynchronize", self._d.cuStreamSynchronize(self._s(stream)))

    def stream_query(self, stream: Any) -> bool:
        (err,) = self._d.cuStreamQuery(self._s(stream))
        if err == self._d.CUresult.CUDA_ERROR_NOT_READY:
            return False
        if err:
            _raise(self._d, "cuStreamQuery", err)
        return True

    def event_create(self, timing: bool) -> Any:
        flags = 0 if timing else int(self._d.CUevent_flags.CU_EVENT_DISABLE_TIMING)
        return self._call("cuEventCreate", self._d.cuEventCreate(flags))

    def event_destroy(self, event: Any) -> None:
        self._call("cuEventDestroy", self._d.cuEventDestroy(event))

    def event_record(self, event: Any, stream: Any) -> None:
        self._call("cuEventRecord", self._d.cuEventRecord(event, self._s(stream)))

    def event_synchronize(self, event: Any) -> None:
        self._call("cuEventSynchronize", self._d.cuEventSynchronize(event))

    def event_query(self, event: Any) -> bool:
        (err,) = self._d.cuEventQuery(event)
        if err == self._d.CUresult.CUDA_ERROR_NOT_READY:
            return False
        if err:
            _raise(self._d, "cuEventQuery", err)
        return True

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        return float(self._call("cuEventElapsedTime", self._d.cuEventElapsedTime(start, end)))

    # code
    def _supported_archs(self) -> list[int]:
        if self._supported is None:
            try:
                r = self._nvrtc.nvrtcGetSupportedArchs()
                self._supported = [int(x) for x in r[1]] if not r[0] else []
            except Exception:
                self._supported = []
        return self._supported

    def target_options(self, target: str) -> list[str]:
        cc = self.cc[0] * 10 + self.cc[1]
        supported = self._supported_archs()
        if target in ("auto", "cubin") and cc in supported:
            return [f"--gpu-architecture=sm_{cc}"]
        if target == "cubin":
            raise CompileError(f"{self.compiler_version} cannot generate a cubin for {self.arch}")
        # PTX for the newest virtual arch both the compiler and the device know; the driver JITs it.
        usable = [a for a in supported if a <= cc]
        return [f"--gpu-architecture=compute_{max(usable) if usable else cc}"]

    def compile(
        self,
        source: str,
        name: str,
        options: Sequence[str],
        headers: Mapping[str, str],
        name_expressions: Sequence[str],
    ) -> CacheEntry:
        nv = self._nvrtc
        if self._nvrtc_version is None:
            raise CompileError("NVRTC (libnvrtc) is not available on this machine")
        hnames = [n.encode() for n in headers]
        hsrcs = [headers[n].encode() for n in headers]
        err, prog = nv.nvrtcCreateProgram(source.encode(), name.encode(), len(hnames), hsrcs, hnames)
        if err:
            raise CompileError(f"nvrtcCreateProgram failed for {name}: {_nvrtc_err(nv, err)}", name=name)
        try:
            for expr in name_expressions:
                (err,) = nv.nvrtcAddNameExpression(prog, expr.encode())
                if err:
                    raise CompileError(
                        f"nvrtcAddNameExpression({expr!r}) failed: {_nvrtc_err(nv, err)}", name=name
                    )
            opts = [o.encode() for o in options]
            (cerr,) = nv.nvrtcCompileProgram(prog, len(opts), opts)
            log = self._nvrtc_log(prog)
            if cerr:
                raise CompileError(
                    f"NVRTC could not compile {name}: {_nvrtc_err(nv, cerr)}",
                    log,
                    name=name,
                    options=tuple(options),
                )
            cubin = None
            if any(o.startswith("--gpu-architecture=sm_") or o.startswith("-arch=sm_") for o in options):
                cubin = self._nvrtc_blob(prog, nv.nvrtcGetCUBINSize, nv.nvrtcGetCUBIN)
            ptx_b = self._nvrtc_blob(prog, nv.nvrtcGetPTXSize, nv.nvrtcGetPTX)
            ptx = ptx_b.rstrip(b"\0").decode(errors="replace") if ptx_b else None
            lowered = {}
            for expr in name_expressions:
                err, low = nv.nvrtcGetLoweredName(prog, expr.encode())
                if not err:
                    lowered[expr] = low.decode()
        finally:
            nv.nvrtcDestroyProgram(prog)
        if cubin:
            return CacheEntry(image=cubin, image_kind="cubin", ptx=ptx, log=log, lowered_names=lowered)
        if not ptx_b:
            raise CompileError(f"NVRTC produced neither a cubin nor PTX for {name}", log, name=name)
        return CacheEntry(image=ptx_b, image_kind="ptx", ptx=ptx, log=log, lowered_names=lowered)

    def _nvrtc_log(self, prog: Any) -> str:
        nv = self._nvrtc
        err, size = nv.nvrtcGetProgramLogSize(prog)
        if err or size <= 1:
            return ""
        buf = b" " * (size + 1)  # a fresh object: NVRTC writes into it
        (err,) = nv.nvrtcGetProgramLog(prog, buf)
        return "" if err else buf[:size].rstrip(b"\0 ").decode(errors="replace")

    @staticmethod
    def _nvrtc_blob(prog: Any, size_fn: Any, get_fn: Any) -> bytes | None:
        try:
            err, size = size_fn(prog)
            if err or size == 0:
                return None
            buf = b" " * (size + 1)
            (err,) = get_fn(prog, buf)
            return None if err else bytes(buf[:size])
        except Exception:
            return None

    def module_load(self, image: bytes, image_kind: str) -> Any:
        data = ctypes.create_string_buffer(image)  # NUL-terminated, which PTX needs
        return self._call("cuModuleLoadData", self._d.cuModuleLoadData(ctypes.addressof(data)))

    def module_unload(self, module: Any) -> None:
        self._call("cuModuleUnload", self._d.cuModuleUnload(module))

    def module_get_function(self, module: Any, name: str) -> Any:
        try:
            return self._call("cuModuleGetFunction", self._d.cuModuleGetFunction(module, name.encode()))
        except DriverError as exc:
            if exc.name == "CUDA_ERROR_NOT_FOUND":
                raise DriverError(
                    "cuModuleGetFunction",
                    exc.code,
                    exc.name,
                    f'no kernel named {name!r} in the module (is it extern "C"?)',
                ) from None
            raise

    def function_attributes(self, func: Any) -> KernelAttributes:
        A = self._d.CUfunction_attribute

        def get(n: str) -> int | None:
            a = getattr(A, "CU_FUNC_ATTRIBUTE_" + n, None)
            if a is None:
                return None
            err, v = self._d.cuFuncGetAttribute(a, func)
            return None if err else int(v)

        return KernelAttributes(
            num_regs=get("NUM_REGS"),
            max_threads_per_block=get("MAX_THREADS_PER_BLOCK"),
            shared_size_bytes=get("SHARED_SIZE_BYTES"),
            const_size_bytes=get("CONST_SIZE_BYTES"),
            local_size_bytes=get("LOCAL_SIZE_BYTES"),
            ptx_version=get("PTX_VERSION"),
            binary_version=get("BINARY_VERSION"),
            max_dynamic_shared_size_bytes=get("MAX_DYNAMIC_SHARED_SIZE_BYTES"),
        )

    def function_set_max_dynamic_shared(self, func: Any, nbytes: int) -> None:
        a = self._d.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        self._call("cuFuncSetAttribute", self._d.cuFuncSetAttribute(func, a, nbytes))

    def launch(
        self, func: Any, cfg: tuple[int, ...], stream: Any, params: int, packed: PackedArgs | None
    ) -> None:
        if getattr(_state, "ctx", None) is not self._ctx:
            self.ensure_current()
        (err,) = self._launch_fn(func, *cfg, self._null_stream if stream is None else stream, params, 0)
        if err:
            _raise(self._d, "cuLaunchKernel", err)
