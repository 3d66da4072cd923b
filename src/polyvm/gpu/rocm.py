"""ROCm backend over AMD's ``hip-python`` (HIP runtime + hiprtc), imported lazily.

It mirrors :mod:`polyvm.gpu.cuda` call for call (hip-python returns ``(hipError_t, *outputs)``
tuples like cuda-bindings). No AMD GPU was available while writing it: only its "runtime not
found" path and the shared argument packing are tested here.
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

_state = threading.local()
_load_lock = threading.Lock()
_mods: tuple[Any, Any] | None = None

NOT_FOUND = "ROCm runtime not found"


def _load() -> tuple[Any, Any]:
    global _mods
    if _mods is not None:
        return _mods
    with _load_lock:
        if _mods is not None:
            return _mods
        try:
            from hip import hip, hiprtc
        except ImportError as exc:
            raise BackendUnavailableError(
                f"ROCm: {NOT_FOUND}: the hip-python package is not installed (pip install 'polyvm[rocm]'): {exc}"
            ) from None
        except Exception as exc:  # the package is there but libamdhip64 is not
            raise BackendUnavailableError(f"ROCm: {NOT_FOUND} ({exc})") from None
        try:
            res = hip.hipInit(0)
        except Exception as exc:
            raise BackendUnavailableError(f"ROCm: {NOT_FOUND} ({exc})") from None
        err = _first(res)
        if err:
            raise BackendUnavailableError(f"ROCm: hipInit failed: {_err_name(hip, err)}")
        _mods = (hip, hiprtc)
        return _mods


def _first(res: Any) -> Any:
    return res[0] if isinstance(res, tuple) else res


def _err_name(hip: Any, err: Any) -> str:
    try:
        r = hip.hipGetErrorName(err)
        s = r[-1] if isinstance(r, tuple) else r
        return s.decode() if isinstance(s, bytes) else str(s)
    except Exception:
        return f"hipError_t {int(err)}"


def _raise(hip: Any, call: str, err: Any) -> None:
    name = _err_name(hip, err)
    cls = OutOfMemoryError if name == "hipErrorOutOfMemory" else DriverError
    raise cls(call, int(err), name)


def device_count() -> int:
    hip, _ = _load()
    err, n = hip.hipGetDeviceCount()
    if err:
        _raise(hip, "hipGetDeviceCount", err)
    return int(n)


def open_driver(index: int = 0) -> RocmDriver:
    return RocmDriver(index)


class RocmDriver(DeviceDriver):
    backend = "rocm"

    def __init__(self, index: int) -> None:
        hip, hiprtc = _load()
        self._h = hip
        self._rtc = hiprtc
        self.index = index
        n = self._call("hipGetDeviceCount", hip.hipGetDeviceCount())
        if index >= n:
            raise GPUError(f"ROCm device {index} does not exist ({n} found)")
        self.ensure_current()
        props = hip.hipDeviceProp_t()
        self._call("hipGetDeviceProperties", hip.hipGetDeviceProperties(props, index))
        self._props = props
        arch = props.gcnArchName
        self.arch = (arch.decode() if isinstance(arch, bytes) else str(arch)).split(":")[0]
        self.cc = (int(props.major), int(props.minor))
        try:
            r = hiprtc.hiprtcVersion()
            self._rtc_version: tuple[int, int] | None = (int(r[1]), int(r[2])) if not r[0] else None
        except Exception:
            self._rtc_version = None
        self.compiler_version = (
            f"hiprtc {self._rtc_version[0]}.{self._rtc_version[1]}" if self._rtc_version else "hiprtc"
        )

    def _call(self, name: str, res: Any) -> Any:
        if not isinstance(res, tuple):
            res = (res,)
        if res[0]:
            _raise(self._h, name, res[0])
        if len(res) == 1:
            return None
        return res[1] if len(res) == 2 else res[1:]

    def _attr(self, name: str) -> int | None:
        a = getattr(self._h.hipDeviceAttribute_t, "hipDeviceAttribute" + name, None)
        if a is None:
            return None
        try:
            err, v = self._h.hipDeviceGetAttribute(a, self.index)
        except Exception:
            return None
        return None if err else int(v)

    def ensure_current(self) -> None:
        if getattr(_state, "device", None) != self.index:
            self._call("hipSetDevice", self._h.hipSetDevice(self.index))
            _state.device = self.index

    def limits(self) -> DeviceLimits:
        p = self._props
        return DeviceLimits(
            max_threads_per_block=int(p.maxThreadsPerBlock),
            max_block_dim=tuple(int(x) for x in p.maxThreadsDim[:3]),  # type: ignore[arg-type]
            max_grid_dim=tuple(int(x) for x in p.maxGridSize[:3]),  # type: ignore[arg-type]
            max_shared_per_block=int(p.sharedMemPerBlock),
            max_shared_per_block_optin=int(getattr(p, "sharedMemPerBlockOptin", 0) or 0),
            warp_size=int(p.warpSize),
        )

    def mem_info(self) -> tuple[int, int]:
        free, total = self._call("hipMemGetInfo", self._h.hipMemGetInfo())
        return int(free), int(total)

    def info(self) -> DeviceInfo:
        p = self._props
        name = p.name.decode() if isinstance(p.name, bytes) else str(p.name)
        try:
            free, total = self.mem_info()
            used: int | None = total - free
        except DriverError:
            free, total, used = None, int(p.totalGlobalMem), None  # type: ignore[assignment]
        try:
            pci: str | None = bytes(
                self._call("hipDeviceGetPCIBusId", self._h.hipDeviceGetPCIBusId(64, self.index))
            )
            pci = pci.split(b"\0", 1)[0].decode() or None  # type: ignore[union-attr]
        except Exception:
            pci = None
        try:
            dv = int(self._call("hipDriverGetVersion", self._h.hipDriverGetVersion()))
            driver_version: str | None = str(dv)
        except Exception:
            driver_version = None
        lim = self.limits()

        def b(name: str) -> bool | None:
            v = self._attr(name)
            return None if v is None else bool(v)

        try:
            import hip as hip_pkg

            bindings_version = getattr(hip_pkg, "__version__", None)
        except Exception:
            bindings_version = None
        return DeviceInfo(
            backend="rocm",
            index=self.index,
            name=name,
            vendor="AMD",
            arch=self.arch,
            compute_capability=None,
            total_memory=total,
            free_memory=free,
            used_memory=used,
            multiprocessor_count=int(p.multiProcessorCount),
            clock_rate_khz=int(p.clockRate) or None,
            memory_clock_rate_khz=int(p.memoryClockRate) or None,
            memory_bus_width_bits=int(p.memoryBusWidth) or None,
            l2_cache_bytes=int(p.l2CacheSize) or None,
            max_threads_per_block=lim.max_threads_per_block,
            max_shared_memory_per_block=lim.max_shared_per_block,
            max_shared_memory_per_block_optin=lim.max_shared_per_block_optin or None,
            warp_size=lim.warp_size,
            max_block_dim=lim.max_block_dim,
            max_grid_dim=lim.max_grid_dim,
            unified_addressing=b("UnifiedAddressing"),
            managed_memory=b("ManagedMemory"),
            concurrent_managed_access=b("ConcurrentManagedAccess"),
            ecc_enabled=b("EccEnabled"),
            pci_bus_id=pci,
            driver_version=driver_version,
            runtime_version=self.compiler_version if self._rtc_version else None,
            bindings_version=bindings_version,
        )

    def synchronize(self) -> None:
        self._call("hipDeviceSynchronize", self._h.hipDeviceSynchronize())

    def close(self) -> None:
        pass  # HIP's primary context lives as long as the process

    def mem_alloc(self, nbytes: int) -> int:
        return int(self._call("hipMalloc", self._h.hipMalloc(nbytes)))

    def mem_free(self, dptr: int) -> None:
        self._call("hipFree", self._h.hipFree(dptr))

    def host_alloc(self, nbytes: int) -> int:
        return int(self._call("hipHostMalloc", self._h.hipHostMalloc(nbytes, 0)))

    def host_free(self, hptr: int) -> None:
        self._call("hipHostFree", self._h.hipHostFree(hptr))

    def _copy(self, name: str, dst: int, src: int, n: int, kind: str, stream: Any) -> None:
        k = getattr(self._h.hipMemcpyKind, kind)
        if stream is None:
            self._call(name, self._h.hipMemcpy(dst, src, n, k))
        else:
            self._call(name + "Async", self._h.hipMemcpyAsync(dst, src, n, k, stream))

    def memcpy_htod(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        self._copy("hipMemcpy", dst, src, nbytes, "hipMemcpyHostToDevice", stream)

    def memcpy_dtoh(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        self._copy("hipMemcpy", dst, src, nbytes, "hipMemcpyDeviceToHost", stream)

    def memcpy_dtod(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        self._copy("hipMemcpy", dst, src, nbytes, "hipMemcpyDeviceToDevice", stream)

    def memset_d8(self, dst: int, value: int, nbytes: int, stream: Any) -> None:
        if stream is None:
            self._call("hipMemset", self._h.hipMemset(dst, value, nbytes))
        else:
            self._call("hipMemsetAsync", self._h.hipMemsetAsync(dst, value, nbytes, stream))

    def stream_create(self, non_blocking: bool) -> Any:
        return self._call(
            "hipStreamCreateWithFlags", self._h.hipStreamCreateWithFlags(1 if non_blocking else 0)
        )

    def stream_destroy(self, stream: Any) -> None:
        self._call("hipStreamDestroy", self._h.hipStreamDestroy(stream))

    def stream_synchronize(self, stream: Any) -> None:
        self._call("hipStreamSynchronize", self._h.hipStreamSynchronize(stream))

    def stream_query(self, stream: Any) -> bool:
        err = _first(self._h.hipStreamQuery(stream))
        if err == self._h.hipError_t.hipErrorNotReady:
            return False
        if err:
            _raise(self._h, "hipStreamQuery", err)
        return True

    def event_create(self, timing: bool) -> Any:
        return self._call("hipEventCreateWithFlags", self._h.hipEventCreateWithFlags(0 if timing else 2))

    def event_destroy(self, event: Any) -> None:
        self._call("hipEventDestroy", self._h.hipEventDestroy(event))

    def event_record(self, event: Any, stream: Any) -> None:
        self._call("hipEventRecord", self._h.hipEventRecord(event, stream))

    def event_synchronize(self, event: Any) -> None:
        self._call("hipEventSynchronize", self._h.hipEventSynchronize(event))

    def event_query(self, event: Any) -> bool:
        err = _first(self._h.hipEventQuery(event))
        if err == self._h.hipError_t.hipErrorNotReady:
            return False
        if err:
            _raise(self._h, "hipEventQuery", err)
        return True

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        return float(self._call("hipEventElapsedTime", self._h.hipEventElapsedTime(start, end)))

    def target_options(self, target: str) -> list[str]:
        if target == "ptx":
            raise CompileError("ROCm has no PTX target; use target='auto'")
        return [f"--offload-arch={self.arch}"]

    def compile(
        self,
        source: str,
        name: str,
        options: Sequence[str],
        headers: Mapping[str, str],
        name_expressions: Sequence[str],
    ) -> CacheEntry:
        rtc = self._rtc
        hnames = [n.encode() for n in headers]
        hsrcs = [headers[n].encode() for n in headers]
        err, prog = rtc.hiprtcCreateProgram(source.encode(), name.encode(), len(hnames), hsrcs, hnames)
        if err:
            raise CompileError(f"hiprtcCreateProgram failed for {name}: {err}", name=name)
        try:
            for expr in name_expressions:
                rtc.hiprtcAddNameExpression(prog, expr.encode())
            opts = [o.encode() for o in options]
            cerr = _first(rtc.hiprtcCompileProgram(prog, len(opts), opts))
            log = ""
            lerr, size = rtc.hiprtcGetProgramLogSize(prog)
            if not lerr and size > 1:
                buf = bytearray(size)
                rtc.hiprtcGetProgramLog(prog, buf)
                log = bytes(buf).rstrip(b"\0").decode(errors="replace")
            if cerr:
                raise CompileError(
                    f"hiprtc could not compile {name}: {cerr}", log, name=name, options=tuple(options)
                )
            err, size = rtc.hiprtcGetCodeSize(prog)
            code = bytearray(size)
            rtc.hiprtcGetCode(prog, code)
            lowered = {}
            for expr in name_expressions:
                e, low = rtc.hiprtcGetLoweredName(prog, expr.encode())
                if not e:
                    lowered[expr] = low.decode() if isinstance(low, bytes) else str(low)
        finally:
            rtc.hiprtcDestroyProgram(prog)
        return CacheEntry(image=bytes(code), image_kind="hsaco", log=log, lowered_names=lowered)

    def module_load(self, image: bytes, image_kind: str) -> Any:
        data = ctypes.create_string_buffer(image)
        return self._call("hipModuleLoadData", self._h.hipModuleLoadData(ctypes.addressof(data)))

    def module_unload(self, module: Any) -> None:
        self._call("hipModuleUnload", self._h.hipModuleUnload(module))

    def module_get_function(self, module: Any, name: str) -> Any:
        return self._call("hipModuleGetFunction", self._h.hipModuleGetFunction(module, name.encode()))

    def function_attributes(self, func: Any) -> KernelAttributes:
        A = self._h.hipFunction_attribute

        def get(n: str) -> int | None:
            a = getattr(A, "HIP_FUNC_ATTRIBUTE_" + n, None)
            if a is None:
                return None
            try:
                err, v = self._h.hipFuncGetAttribute(a, func)
            except Exception:
                return None
            return None if err else int(v)

        return KernelAttributes(
            num_regs=get("NUM_REGS"),
            max_threads_per_block=get("MAX_THREADS_PER_BLOCK"),
            shared_size_bytes=get("SHARED_SIZE_BYTES"),
            const_size_bytes=get("CONST_SIZE_BYTES"),
            local_size_bytes=get("LOCAL_SIZE_BYTES"),
            ptx_version=None,
            binary_version=get("BINARY_VERSION"),
            max_dynamic_shared_size_bytes=get("MAX_DYNAMIC_SHARED_SIZE_BYTES"),
        )

    def function_set_max_dynamic_shared(self, func: Any, nbytes: int) -> None:
        pass  # HIP grants up to the per-block limit without opting in

    def launch(
        self, func: Any, cfg: tuple[int, ...], stream: Any, params: int, packed: PackedArgs | None
    ) -> None:
        if getattr(_state, "device", None) != self.index:
            self.ensure_current()
        err = _first(self._h.hipModuleLaunchKernel(func, *cfg, stream, params or None, None))
        if err:
            _raise(self._h, "hipModuleLaunchKernel", err)
