"""The backend-neutral GPU API: Device, Buffer, PinnedBuffer, Stream, Event, Module, Kernel.

Asynchronous work is the default for launches; copies are synchronous unless given a stream.
Every resource belongs to one :class:`Device` and is freed by ``close()``/``free()``, by the
device's ``close()``, or at interpreter exit, whichever comes first.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import importlib
import os
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from .args import ArgPacker, kind_of, pack, parse_signature
from .backend import DeviceDriver, DeviceInfo, KernelAttributes
from .cache import CacheEntry, KernelCache, cache_key
from .errors import ArgumentError, BackendUnavailableError, CompileError, GPUError, ResourceClosedError
from .limits import DeviceLimits, check_launch

BACKENDS = ("cuda", "rocm", "fake")
AUTO_ORDER = ("cuda", "rocm")

_BACKEND_MODULES = {"cuda": "polyvm.gpu.cuda", "rocm": "polyvm.gpu.rocm", "fake": "polyvm.gpu.fake"}


def _backend_module(name: str) -> Any:
    if name not in _BACKEND_MODULES:
        raise GPUError(f"unknown GPU backend {name!r}; choose one of: auto, {', '.join(BACKENDS)}")
    return importlib.import_module(_BACKEND_MODULES[name])


def probe_backends() -> dict[str, str | None]:
    """For each real backend: ``None`` if it has a usable device, else why not."""
    out: dict[str, str | None] = {}
    for name in AUTO_ORDER:
        try:
            n = _backend_module(name).device_count()
            out[name] = None if n > 0 else "no device found"
        except BackendUnavailableError as exc:
            out[name] = str(exc)
    return out


def open_device(
    backend: str = "auto", index: int = 0, *, cache: KernelCache | bool | None = True, **options: Any
) -> Device:
    """Open GPU ``index`` of ``backend`` ("auto": CUDA, then ROCm).

    Raises :class:`BackendUnavailableError` ("no GPU backend available: ...") when none can be used.
    """
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise GPUError(f"device index must be a non-negative int, got {index!r}")
    names = AUTO_ORDER if backend == "auto" else (backend,)
    reasons = []
    for name in names:
        mod = _backend_module(name)
        try:
            drv = mod.open_driver(index, **options)
        except BackendUnavailableError as exc:
            reasons.append(str(exc))
            continue
        return Device(drv, cache=cache)
    if backend == "auto":
        raise BackendUnavailableError("no GPU backend available: " + "; ".join(reasons))
    raise BackendUnavailableError(reasons[0])


def _host_readable(obj: Any) -> tuple[int, int, Any]:
    """(address, nbytes, keep-alive) of a C-contiguous host object to copy from."""
    if isinstance(obj, PinnedBuffer):
        return obj.host_ptr, obj.nbytes, obj
    mv = memoryview(obj)
    if not mv.c_contiguous:
        raise ArgumentError("host data must be C-contiguous")
    n = mv.nbytes
    if n == 0:
        return 0, 0, None
    if not mv.readonly:
        c = (ctypes.c_char * n).from_buffer(mv)
        return ctypes.addressof(c), n, (c, mv)
    ai = getattr(obj, "__array_interface__", None)
    if ai is not None:
        return int(ai["data"][0]), n, obj
    data = obj if type(obj) is bytes else mv.tobytes()
    p = ctypes.c_char_p(data)
    return ctypes.cast(p, ctypes.c_void_p).value or 0, n, (data, p)


def _host_writable(obj: Any) -> tuple[int, int, Any]:
    if isinstance(obj, PinnedBuffer):
        return obj.host_ptr, obj.nbytes, obj
    mv = memoryview(obj)
    if mv.readonly:
        raise ArgumentError(f"cannot copy into read-only {type(obj).__name__}")
    if not mv.c_contiguous:
        raise ArgumentError("host destination must be C-contiguous")
    n = mv.nbytes
    if n == 0:
        return 0, 0, None
    c = (ctypes.c_char * n).from_buffer(mv)
    return ctypes.addressof(c), n, (c, mv)


def _range(what: str, offset: int, nbytes: int | None, size: int) -> int:
    if offset < 0 or offset > size:
        raise ArgumentError(f"{what}: offset {offset} is outside the buffer of {size} bytes")
    if nbytes is None:
        nbytes = size - offset
    if nbytes < 0 or offset + nbytes > size:
        raise ArgumentError(f"{what}: {nbytes} bytes at offset {offset} overrun the buffer of {size} bytes")
    return nbytes


class _Resource:
    __slots__ = ("device", "__weakref__")

    def __init__(self, device: Device) -> None:
        self.device = device
        device._resources.add(self)

    def _release(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self._release()

    def __del__(self) -> None:
        try:
            if not self.device._closed:
                self._release()
        except Exception:
            pass


class Buffer(_Resource):
    """Device memory. ``device_ptr`` is the device address; ``int(buf)`` gives it too."""

    __slots__ = ("_ptr", "nbytes")

    def __init__(self, device: Device, ptr: int, nbytes: int) -> None:
        self._ptr: int | None = ptr
        self.nbytes = nbytes
        super().__init__(device)

    @property
    def device_ptr(self) -> int:
        if self._ptr is None:
            raise ResourceClosedError("buffer was freed")
        return self._ptr

    def __int__(self) -> int:
        return self.device_ptr

    def __len__(self) -> int:
        return self.nbytes

    def __repr__(self) -> str:
        state = "freed" if self._ptr is None else hex(self._ptr)
        return f"<polyvm.gpu.Buffer {self.nbytes} bytes at {state}>"

    def copy_from_host(self, src: Any, *, offset: int = 0, stream: Stream | None = None) -> None:
        """Copy a bytes-like / NumPy / pinned object into the buffer at ``offset``."""
        addr, n, keep = _host_readable(src)
        _range("copy_from_host", offset, n, self.nbytes)
        if n == 0:
            return
        dev = self.device
        dev._driver.ensure_current()
        if stream is None:
            dev._driver.memcpy_htod(self.device_ptr + offset, addr, n, None)
        else:
            dev._driver.memcpy_htod(self.device_ptr + offset, addr, n, stream._live_handle())
            stream._keep(keep)

    def copy_to_host(
        self, dst: Any = None, *, offset: int = 0, nbytes: int | None = None, stream: Stream | None = None
    ) -> Any:
        """Copy into ``dst`` (writable, C-contiguous) or into a new bytearray; returns it.

        With a stream the copy is asynchronous: read ``dst`` only after the stream is synchronized.
        """
        if dst is None:
            n = _range("copy_to_host", offset, nbytes, self.nbytes)
            dst = bytearray(n)
        addr, n, keep = _host_writable(dst)
        if nbytes is not None and nbytes > n:
            raise ArgumentError(f"copy_to_host: destination holds {n} bytes, {nbytes} asked")
        n = nbytes if nbytes is not None else n
        _range("copy_to_host", offset, n, self.nbytes)
        if n == 0:
            return dst
        dev = self.device
        dev._driver.ensure_current()
        if stream is None:
            dev._driver.memcpy_dtoh(addr, self.device_ptr + offset, n, None)
        else:
            dev._driver.memcpy_dtoh(addr, self.device_ptr + offset, n, stream._live_handle())
            stream._keep(keep)
        return dst

    def copy_from(
        self,
        src: Buffer,
        *,
        nbytes: int | None = None,
        dst_offset: int = 0,
        src_offset: int = 0,
        stream: Stream | None = None,
    ) -> None:
        """Device-to-device copy."""
        if src.device is not self.device and src.device._driver is not self.device._driver:
            # Same-process peers would need cuMemcpyPeer; keep it explicit.
            if src.device.backend != self.device.backend:
                raise ArgumentError("cannot copy between buffers of different backends")
        n = _range("copy_from (source)", src_offset, nbytes, src.nbytes)
        _range("copy_from (destination)", dst_offset, n, self.nbytes)
        if n == 0:
            return
        self.device._driver.ensure_current()
        h = None if stream is None else stream._live_handle()
        self.device._driver.memcpy_dtod(self.device_ptr + dst_offset, src.device_ptr + src_offset, n, h)

    def memset(
        self, value: int = 0, *, offset: int = 0, nbytes: int | None = None, stream: Stream | None = None
    ) -> None:
        """Set bytes to ``value`` (0..255)."""
        if not 0 <= int(value) <= 255:
            raise ArgumentError(f"memset value must be a byte (0..255), got {value}")
        n = _range("memset", offset, nbytes, self.nbytes)
        if n == 0:
            return
        self.device._driver.ensure_current()
        h = None if stream is None else stream._live_handle()
        self.device._driver.memset_d8(self.device_ptr + offset, int(value), n, h)

    def free(self) -> None:
        self._release()

    def _release(self) -> None:
        p, self._ptr = self._ptr, None
        if p is not None:
            self.device._resources.discard(self)
            self.device._driver.ensure_current()
            self.device._driver.mem_free(p)


class PinnedBuffer(_Resource):
    """Page-locked host memory (fast and truly asynchronous copies). ``view`` is a writable memoryview."""

    __slots__ = ("_ptr", "nbytes", "_array")

    def __init__(self, device: Device, ptr: int, nbytes: int) -> None:
        self._ptr: int | None = ptr
        self.nbytes = nbytes
        self._array = (ctypes.c_char * nbytes).from_address(ptr)
        super().__init__(device)

    @property
    def host_ptr(self) -> int:
        if self._ptr is None:
            raise ResourceClosedError("pinned buffer was freed")
        return self._ptr

    @property
    def view(self) -> memoryview:
        if self._ptr is None:
            raise ResourceClosedError("pinned buffer was freed")
        return memoryview(self._array).cast("B")

    def __buffer__(self, flags: int) -> memoryview:  # Python 3.12+ buffer protocol
        return self.view

    def numpy(self, dtype: Any = "u1", shape: Any = None) -> Any:
        import numpy as np

        arr = np.frombuffer(self.view, dtype=dtype)
        return arr if shape is None else arr.reshape(shape)

    def free(self) -> None:
        self._release()

    def _release(self) -> None:
        p, self._ptr = self._ptr, None
        if p is not None:
            self.device._resources.discard(self)
            self._array = None
            self.device._driver.host_free(p)


class Stream(_Resource):
    """A queue of GPU work; ``synchronize()`` waits for it."""

    __slots__ = ("_handle", "_keepalive")

    def __init__(self, device: Device, handle: Any) -> None:
        self._handle = handle
        self._keepalive: list[Any] = []
        super().__init__(device)

    @property
    def handle(self) -> Any:
        return self._live_handle()

    def _live_handle(self) -> Any:
        if self._handle is None:
            raise ResourceClosedError("stream was closed")
        return self._handle

    def _keep(self, obj: Any) -> None:
        # Host memory of an async copy must outlive the copy; dropped at the next synchronize.
        if obj is not None:
            self._keepalive.append(obj)

    def synchronize(self) -> None:
        self.device._driver.ensure_current()
        self.device._driver.stream_synchronize(self._live_handle())
        self._keepalive.clear()

    def query(self) -> bool:
        """True when all work queued on the stream has completed."""
        self.device._driver.ensure_current()
        done = self.device._driver.stream_query(self._live_handle())
        if done:
            self._keepalive.clear()
        return done

    def record(self, event: Event | None = None) -> Event:
        ev = event if event is not None else self.device.event()
        ev.record(self)
        return ev

    def close(self) -> None:
        self._release()

    def _release(self) -> None:
        h, self._handle = self._handle, None
        if h is not None:
            self.device._resources.discard(self)
            self.device._driver.ensure_current()
            try:
                self.device._driver.stream_synchronize(h)
            finally:
                self._keepalive.clear()
                self.device._driver.stream_destroy(h)


class Event(_Resource):
    __slots__ = ("_handle", "timing")

    def __init__(self, device: Device, handle: Any, timing: bool) -> None:
        self._handle = handle
        self.timing = timing
        super().__init__(device)

    def _live_handle(self) -> Any:
        if self._handle is None:
            raise ResourceClosedError("event was closed")
        return self._handle

    def record(self, stream: Stream | None = None) -> Event:
        self.device._driver.ensure_current()
        self.device._driver.event_record(
            self._live_handle(), None if stream is None else stream._live_handle()
        )
        return self

    def synchronize(self) -> None:
        self.device._driver.event_synchronize(self._live_handle())

    def query(self) -> bool:
        return self.device._driver.event_query(self._live_handle())

    def elapsed_ms(self, end: Event) -> float:
        """Milliseconds from this event to ``end`` (both recorded and completed)."""
        if not (self.timing and end.timing):
            raise GPUError("elapsed time needs events created with timing=True")
        return self.device._driver.event_elapsed_ms(self._live_handle(), end._live_handle())

    def close(self) -> None:
        self._release()

    def _release(self) -> None:
        h, self._handle = self._handle, None
        if h is not None:
            self.device._resources.discard(self)
            self.device._driver.event_destroy(h)


class Module(_Resource):
    """Loaded GPU code. ``ptx``, ``image_kind`` and ``log`` tell what the compiler produced."""

    __slots__ = (
        "_handle",
        "image_kind",
        "image",
        "ptx",
        "log",
        "from_cache",
        "compile_seconds",
        "_names",
        "_kernels",
    )

    def __init__(
        self, device: Device, handle: Any, entry: CacheEntry, from_cache: bool, seconds: float
    ) -> None:
        self._handle = handle
        self.image_kind = entry.image_kind
        self.image = entry.image
        self.ptx = entry.ptx
        self.log = entry.log
        self._names = dict(entry.lowered_names)
        self.from_cache = from_cache
        self.compile_seconds = seconds
        self._kernels: dict[str, Kernel] = {}
        super().__init__(device)

    def _live_handle(self) -> Any:
        if self._handle is None:
            raise ResourceClosedError("module was unloaded")
        return self._handle

    def get_kernel(self, name: str, signature: str | Sequence[str] | None = None) -> Kernel:
        """The kernel ``name`` (an ``extern "C"`` name, or a name expression given at compile time).

        ``signature`` ("ptr, ptr, f32, i32") lets plain Python ints and floats be passed.
        """
        key = name if signature is None else f"{name}\0{signature!s}"
        k = self._kernels.get(key)
        if k is None:
            lowered = self._names.get(name, name)
            self.device._driver.ensure_current()
            fn = self.device._driver.module_get_function(self._live_handle(), lowered)
            k = Kernel(self, name, fn, parse_signature(signature))
            self._kernels[key] = k
        return k

    __getitem__ = get_kernel

    def unload(self) -> None:
        self._release()

    def _release(self) -> None:
        h, self._handle = self._handle, None
        if h is not None:
            self.device._resources.discard(self)
            for k in self._kernels.values():
                k._dead = True
                k._configs.clear()
            self._kernels.clear()
            self.device._driver.ensure_current()
            self.device._driver.module_unload(h)


class Kernel:
    """A function of a loaded module. ``launch`` (or calling it) queues it; it does not wait."""

    __slots__ = (
        "module",
        "name",
        "handle",
        "signature",
        "_attrs",
        "_configs",
        "_dyn_smem",
        "_launch",
        "_drv",
        "_sig_packer",
        "_packers",
        "_dead",
        "_general_only",
    )

    def __init__(self, module: Module, name: str, handle: Any, signature: tuple[str, ...] | None) -> None:
        self.module = module
        self.name = name
        self.handle = handle
        self.signature = signature
        self._attrs: KernelAttributes | None = None
        # (grid, block, shmem) as given -> (gx, gy, gz, bx, by, bz, shmem), checked once
        self._configs: dict[Any, tuple[int, ...]] = {}
        self._dyn_smem = 0
        self._drv = module.device._driver
        self._launch = self._drv.launch
        self._dead = False
        # Backends that want the decoded arguments (the fake one) always get PackedArgs.
        self._general_only = bool(getattr(self._drv, "wants_packed_args", False))
        self._sig_packer = (
            ArgPacker(signature, from_signature=True) if signature and not self._general_only else None
        )
        self._packers: dict[tuple[str, ...], ArgPacker] = {}

    @property
    def attributes(self) -> KernelAttributes:
        if self._attrs is None:
            self._drv.ensure_current()
            self._attrs = self._drv.function_attributes(self.handle)
        return self._attrs

    def check(
        self, grid: Any, block: Any, shmem: int = 0
    ) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """Validate a configuration against device and kernel limits; returns normalized (grid, block)."""
        if self._dead or self.module._handle is None:
            raise ResourceClosedError(f"kernel {self.name!r}: its module was unloaded")
        attrs = self.attributes
        cfg = check_launch(
            grid,
            block,
            shmem,
            self.module.device.limits,
            kernel_name=self.name,
            kernel_max_threads=attrs.max_threads_per_block,
            kernel_static_shared=attrs.shared_size_bytes or 0,
        )
        limits = self.module.device.limits
        if shmem + (attrs.shared_size_bytes or 0) > limits.max_shared_per_block and shmem > self._dyn_smem:
            # Above 48 KiB a kernel must opt in to more dynamic shared memory.
            self._drv.ensure_current()
            self._drv.function_set_max_dynamic_shared(self.handle, shmem)
            self._dyn_smem = shmem
            self._attrs = None
        return cfg

    def _configure(self, grid: Any, block: Any, shmem: int, remember: bool) -> tuple[int, ...]:
        g, b = self.check(grid, block, shmem)
        cfg = (*g, *b, shmem)
        if remember:
            if len(self._configs) >= 256:
                self._configs.clear()
            self._configs[(grid, block, shmem)] = cfg
        return cfg

    def launch(
        self, grid: Any, block: Any, args: Sequence[Any] = (), *, shmem: int = 0, stream: Stream | None = None
    ) -> None:
        """Queue the kernel on ``stream`` (default stream if None) with a 1-3-D grid and block.

        The configuration is checked against the device's and the kernel's limits first
        (:class:`LaunchConfigError`); ``args`` are packed per :mod:`polyvm.gpu.args`.
        """
        try:
            cfg = self._configs[(grid, block, shmem)]
        except KeyError:
            cfg = self._configure(grid, block, shmem, True)
        except TypeError:  # unhashable (a list): check every time
            cfg = self._configure(grid, block, shmem, False)
        s = None if stream is None else stream._live_handle()
        if not args and not self.signature:
            self._launch(self.handle, cfg, s, 0, None)
            return
        if type(args) is not tuple and type(args) is not list:
            args = tuple(args)
        if not self._general_only:
            packer = self._sig_packer if self.signature else self._packer_for(args)
            if packer is not None and packer.lock.acquire(False):
                try:
                    addr = packer.pack(args)
                    if addr:
                        self._launch(self.handle, cfg, s, addr, None)
                        return
                finally:
                    packer.lock.release()
        packed = pack(args, self.signature)  # the general path; explains what cannot be packed
        self._launch(self.handle, cfg, s, packed.kernel_params, packed)

    __call__ = launch

    def _packer_for(self, args: Sequence[Any]) -> ArgPacker | None:
        kinds = []
        for v in args:
            k = kind_of(v)
            if k is None:
                return None
            kinds.append(k)
        key = tuple(kinds)
        p = self._packers.get(key)
        if p is None:
            if len(self._packers) >= 16:
                self._packers.clear()
            p = self._packers[key] = ArgPacker(key, from_signature=False)
        return p

    def __repr__(self) -> str:
        return f"<polyvm.gpu.Kernel {self.name!r}>"


def _close_at_exit(ref: weakref.ref[Device]) -> None:
    dev = ref()
    if dev is not None:
        try:
            dev.close()
        except Exception:
            pass


class Device:
    """One opened GPU. Use as a context manager, or call ``close()``."""

    def __init__(self, driver: DeviceDriver, *, cache: KernelCache | bool | None = True) -> None:
        self._driver = driver
        self._closed = False
        self._lock = threading.Lock()
        self._resources: weakref.WeakSet[_Resource] = weakref.WeakSet()
        if cache is True:
            disk = os.environ.get("POLYVM_GPU_DISK_CACHE", "1") not in ("0", "no", "off")
            self.cache: KernelCache | None = KernelCache(disk=disk)
        elif isinstance(cache, KernelCache):
            self.cache = cache
        else:
            self.cache = None
        self._limits: DeviceLimits | None = None
        self._atexit = functools.partial(_close_at_exit, weakref.ref(self))
        atexit.register(self._atexit)

    # identity
    @property
    def backend(self) -> str:
        return self._driver.backend

    @property
    def index(self) -> int:
        return self._driver.index

    @property
    def arch(self) -> str:
        return self._driver.arch

    @property
    def compiler_version(self) -> str:
        return self._driver.compiler_version

    @property
    def driver(self) -> DeviceDriver:
        """The backend's own object (for code that needs the raw handles)."""
        return self._driver

    @property
    def name(self) -> str:
        return self.info().name

    def __repr__(self) -> str:
        return (
            f"<polyvm.gpu.Device {self.backend}:{self.index} {self.arch}{' closed' if self._closed else ''}>"
        )

    def _check_open(self) -> None:
        if self._closed:
            raise ResourceClosedError("device was closed")

    # queries
    def info(self) -> DeviceInfo:
        self._check_open()
        self._driver.ensure_current()
        return self._driver.info()

    @property
    def limits(self) -> DeviceLimits:
        if self._limits is None:
            self._check_open()
            self._limits = self._driver.limits()
        return self._limits

    def mem_info(self) -> tuple[int, int]:
        """(free, total) bytes of device memory."""
        self._check_open()
        self._driver.ensure_current()
        return self._driver.mem_info()

    # memory
    def alloc(self, nbytes: int) -> Buffer:
        self._check_open()
        if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes <= 0:
            raise ArgumentError(f"allocation size must be a positive int, got {nbytes!r}")
        self._driver.ensure_current()
        return Buffer(self, self._driver.mem_alloc(nbytes), nbytes)

    def alloc_pinned(self, nbytes: int) -> PinnedBuffer:
        self._check_open()
        if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes <= 0:
            raise ArgumentError(f"allocation size must be a positive int, got {nbytes!r}")
        self._driver.ensure_current()
        return PinnedBuffer(self, self._driver.host_alloc(nbytes), nbytes)

    def to_device(self, host: Any, stream: Stream | None = None) -> Buffer:
        """Allocate a buffer the size of ``host`` and copy ``host`` into it."""
        n = memoryview(host).nbytes if not isinstance(host, PinnedBuffer) else host.nbytes
        buf = self.alloc(max(n, 1))
        buf.copy_from_host(host, stream=stream)
        return buf

    def stream(self, *, non_blocking: bool = False) -> Stream:
        self._check_open()
        self._driver.ensure_current()
        return Stream(self, self._driver.stream_create(non_blocking))

    def event(self, *, timing: bool = True) -> Event:
        self._check_open()
        self._driver.ensure_current()
        return Event(self, self._driver.event_create(timing), timing)

    def synchronize(self) -> None:
        self._check_open()
        self._driver.ensure_current()
        self._driver.synchronize()

    # code
    def compile(
        self,
        source: str,
        *,
        name: str = "kernel.cu",
        options: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        target: str = "auto",
        name_expressions: Sequence[str] = (),
        cache: bool = True,
    ) -> Module:
        """Compile CUDA C++ (HIP C++ on ROCm) and load it.

        ``target``: "auto" (cubin for this device when the compiler knows its arch, else PTX), "cubin"
        or "ptx". ``headers`` maps include names to their text. Raises :class:`CompileError` with
        the compiler's full log.
        """
        self._check_open()
        if target not in ("auto", "cubin", "ptx"):
            raise ArgumentError(f"target must be 'auto', 'cubin' or 'ptx', got {target!r}")
        if isinstance(source, bytes):
            source = source.decode()
        hdrs = dict(headers or {})
        user_opts = [str(o) for o in options]
        all_opts = user_opts + self._driver.target_options(target)
        exprs = [str(e) for e in name_expressions]
        use_cache = cache and self.cache is not None
        key = ""
        entry: CacheEntry | None = None
        if use_cache:
            key = cache_key(
                backend=self.backend,
                source=source,
                headers=hdrs,
                options=all_opts,
                arch=self.arch,
                compiler_version=self.compiler_version,
                extra=["name:" + name, *("expr:" + e for e in exprs)],
            )
            entry = self.cache.get(key)  # type: ignore[union-attr]
        self._driver.ensure_current()
        if entry is not None:
            t0 = time.perf_counter()
            try:
                handle = self._driver.module_load(entry.image, entry.image_kind)
                return Module(self, handle, entry, True, time.perf_counter() - t0)
            except GPUError:
                pass  # a cached image this driver refuses (e.g. a newer driver's): rebuild it
        t0 = time.perf_counter()
        entry = self._driver.compile(source, name, all_opts, hdrs, exprs)
        seconds = time.perf_counter() - t0
        if use_cache:
            self.cache.put(key, entry)  # type: ignore[union-attr]
        handle = self._driver.module_load(entry.image, entry.image_kind)
        return Module(self, handle, entry, False, seconds)

    def load_module(self, image: bytes, image_kind: str = "cubin") -> Module:
        """Load a prebuilt cubin, PTX or code object."""
        self._check_open()
        if image_kind not in ("cubin", "ptx", "hsaco", "fatbin"):
            raise ArgumentError(f"unknown image kind {image_kind!r}")
        self._driver.ensure_current()
        entry = CacheEntry(image=bytes(image), image_kind=image_kind)
        return Module(self, self._driver.module_load(entry.image, image_kind), entry, False, 0.0)

    # lifetime
    def close(self) -> None:
        """Free every buffer, stream, event and module of this device, then release its context."""
        with self._lock:
            if self._closed:
                return
            try:
                self._driver.ensure_current()
                try:
                    self._driver.synchronize()
                except GPUError:
                    pass
                # Streams first (they may reference buffers), modules last.
                order = {Stream: 0, Event: 1, Buffer: 2, PinnedBuffer: 3, Module: 4}
                for r in sorted(list(self._resources), key=lambda r: order.get(type(r), 5)):
                    try:
                        r._release()
                    except GPUError:
                        pass
            finally:
                self._closed = True
                try:
                    self._driver.close()
                finally:
                    atexit.unregister(self._atexit)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "Buffer",
    "CompileError",
    "Device",
    "Event",
    "Kernel",
    "Module",
    "PinnedBuffer",
    "Stream",
    "open_device",
    "probe_backends",
]
