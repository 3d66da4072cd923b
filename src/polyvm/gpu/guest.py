"""Paravirtual GPU for guests: the host side of the ``0x4750`` syscall.

A guest asks with ``syscall(0x4750, op, argp)`` (RISC-V: a7 = 0x4750, a0 = op, a1 = argp); the
result is >= 0 on success or -errno. ``argp`` points to an op-specific struct in guest memory;
every field is little-endian and every guest pointer in it is read through the VM's memory
accessor, so a bad pointer ends as -EFAULT, never as a host fault. The guest only ever sees
opaque handles from this VM's own tables (never device addresses), so one VM cannot name
another's buffers. The ABI is documented in docs/gpu.md and guest/polyvm_gpu.h.

One :class:`GuestGPU` per VM; it holds no global state.
"""

from __future__ import annotations

import logging
import struct
import threading
from collections.abc import Callable
from typing import Any, Protocol

from .args import Arg
from .errors import (
    ArgumentError,
    CompileError,
    DriverError,
    GPUError,
    LaunchConfigError,
    OutOfMemoryError,
    ResourceClosedError,
)

log = logging.getLogger(__name__)

SYSCALL_NR = 0x4750
ABI_VERSION = 1

# ops
OP_VERSION = 0
OP_INFO = 1
OP_COMPILE = 2
OP_GET_FUNCTION = 3
OP_MALLOC = 4
OP_FREE = 5
OP_COPY_HTOD = 6
OP_COPY_DTOH = 7
OP_COPY_DTOD = 8
OP_MEMSET = 9
OP_LAUNCH = 10
OP_SYNCHRONIZE = 11
OP_MODULE_UNLOAD = 12

# argument kinds of struct pvgpu_arg
ARG_BUFFER = 1
ARG_I32 = 2
ARG_U32 = 3
ARG_I64 = 4
ARG_U64 = 5
ARG_F32 = 6
ARG_F64 = 7
ARG_BYTES = 8

# Linux errno values (the guest's, whatever the host OS is)
ENOENT = 2
EIO = 5
E2BIG = 7
ENOEXEC = 8
EBADF = 9
ENOMEM = 12
EFAULT = 14
ENODEV = 19
EINVAL = 22
ENOSPC = 28
ENOSYS = 38

VENDOR_UNKNOWN, VENDOR_NVIDIA, VENDOR_AMD = 0, 1, 2

# struct layouts (little-endian, natural alignment, no implicit padding)
INFO = struct.Struct("<IIIIQQIIII3I3III64s16s")  # 160 bytes
COMPILE = struct.Struct("<11Q")  # 88
FUNCTION = struct.Struct("<QQQII")  # 32
MALLOC = struct.Struct("<QQ")  # 16
HANDLE = struct.Struct("<Q")  # 8
COPY = struct.Struct("<QQQQ")  # 32
COPY_DTOD = struct.Struct("<QQQQQ")  # 40
MEMSET = struct.Struct("<QQQQ")  # 32
LAUNCH = struct.Struct("<Q3I3IQQQ")  # 56
ARG = struct.Struct("<IIQQ")  # 24

# per-call bounds, so a guest cannot make the host allocate without limit
MAX_SOURCE = 4 << 20
MAX_STRING = 4096
MAX_NAME = 1024
MAX_OPTIONS = 64
MAX_HEADERS = 64
MAX_ARGS = 256
MAX_BYTES_ARG = 4096
COPY_CHUNK = 4 << 20
MAX_PENDING = 64 << 20
MAX_HANDLES = 1 << 16

_TAG_MODULE, _TAG_FUNCTION, _TAG_BUFFER = 0x4D, 0x46, 0x42  # 'M', 'F', 'B'
_OFF_BITS = 48


class GuestMemory(Protocol):
    """What GuestGPU needs of a VM's memory. Both raise MemoryFault for unmapped/forbidden memory.

    An accessor may also offer ``host_view(addr, size) -> memoryview | None``: a writable view of
    a guest range that is contiguous in host memory (None where it is not); copies then go
    straight between guest memory and the device.
    """

    def read_bytes(self, addr: int, size: int) -> bytes: ...

    def write_bytes(self, addr: int, data: bytes) -> None: ...


class _ReadWriteAdapter:
    """``read``/``write`` accessors (polyvm.memory.AddressSpace) seen as ``read_bytes``/``write_bytes``."""

    __slots__ = ("read_bytes", "write_bytes", "host_view")

    def __init__(self, mem: Any) -> None:
        self.read_bytes = mem.read
        self.write_bytes = mem.write
        view = getattr(mem, "host_view", None)
        if view is not None:
            self.host_view = view


class GuestFault(Exception):
    """Raised by a guest memory accessor for a bad address when polyvm.memory is not available."""


class _Errno(Exception):
    def __init__(self, errno: int, why: str = "") -> None:
        super().__init__(why)
        self.errno = errno


def _memory_fault_types() -> tuple[type[BaseException], ...]:
    try:
        from polyvm.memory import MemoryFault  # type: ignore[attr-defined]
    except ImportError:
        return (GuestFault,)
    return (MemoryFault, GuestFault)


class GuestGPU:
    """The paravirtual GPU of one VM.

    ``device``: an opened :class:`~polyvm.gpu.Device` to share (not closed by this object), or
    None to open ``backend``/``index`` on first use (closed by :meth:`close`). ``max_memory``
    caps the device memory this VM may hold.
    """

    def __init__(
        self,
        device: Any = None,
        *,
        backend: str = "auto",
        index: int = 0,
        opener: Callable[[], Any] | None = None,
        max_memory: int | None = None,
        fault_exceptions: tuple[type[BaseException], ...] | None = None,
    ) -> None:
        self._device = device
        self._owns_device = device is None
        self._opener = opener or (lambda: _open(backend, index))
        self._open_error: str | None = None
        self._faults = fault_exceptions if fault_exceptions is not None else _memory_fault_types()
        self.max_memory = max_memory
        self._lock = threading.RLock()
        self._next = 0
        self._modules: dict[int, Any] = {}
        self._functions: dict[int, Any] = {}
        self._buffers: dict[int, Any] = {}
        self._stream: Any = None
        self._pending = 0
        self.bytes_allocated = 0
        self.last_error: str | None = None
        """A one-line description of the last failure, for the VM's log / debugger."""

    # entry point
    def syscall(self, mem: GuestMemory, op: int, argp: int) -> int:
        """Run one guest request; returns >= 0 or -errno. Never raises for guest input.

        ``mem`` offers ``read_bytes``/``write_bytes`` (or ``read``/``write``, as
        :class:`polyvm.memory.AddressSpace` does), raising MemoryFault for bad guest memory.
        """
        if not hasattr(mem, "read_bytes"):
            mem = _ReadWriteAdapter(mem)
        op &= 0xFFFFFFFFFFFFFFFF
        argp &= 0xFFFFFFFFFFFFFFFF
        with self._lock:
            try:
                return self._dispatch(mem, op, argp)
            except _Errno as e:
                self.last_error = str(e) or None
                return -e.errno
            except self._faults as e:
                self.last_error = f"guest memory fault: {e}"
                return -EFAULT
            except CompileError as e:  # pragma: no cover - handled in _compile
                self.last_error = str(e)
                return -ENOEXEC
            except (LaunchConfigError, ArgumentError) as e:
                self.last_error = str(e)
                return -EINVAL
            except OutOfMemoryError as e:
                self.last_error = str(e)
                return -ENOMEM
            except ResourceClosedError as e:
                self.last_error = str(e)
                return -EBADF
            except (DriverError, GPUError) as e:
                self.last_error = str(e)
                return -EIO
            except Exception as e:  # a host bug must not take the VM down
                log.exception("GPU guest call op=%d failed", op)
                self.last_error = f"internal error: {type(e).__name__}: {e}"
                return -EIO

    def close(self) -> None:
        """Free everything this VM holds on the GPU (and the device, if this object opened it)."""
        with self._lock:
            dev = self._device
            try:
                if self._stream is not None:
                    self._stream.close()
            except GPUError:
                pass
            for table in (self._buffers, self._modules):
                for obj in list(table.values()):
                    try:
                        if hasattr(obj, "free"):
                            obj.free()
                        else:
                            obj.unload()
                    except GPUError:
                        pass
                table.clear()
            self._functions.clear()
            self._stream = None
            self.bytes_allocated = 0
            if dev is not None and self._owns_device:
                dev.close()
                self._device = None

    def __enter__(self) -> GuestGPU:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # plumbing
    def _dev(self) -> Any:
        if self._device is None:
            if self._open_error is not None:
                raise _Errno(ENODEV, self._open_error)
            try:
                self._device = self._opener()
            except GPUError as e:
                self._open_error = str(e)
                raise _Errno(ENODEV, str(e)) from None
        return self._device

    def _vm_stream(self) -> Any:
        if self._stream is None:
            self._stream = self._dev().stream(non_blocking=True)
        return self._stream

    def _new_handle(self, tag: int, table: dict[int, Any], obj: Any) -> int:
        if len(self._modules) + len(self._functions) + len(self._buffers) >= MAX_HANDLES:
            raise _Errno(ENOSPC, "too many GPU handles in this VM")
        self._next += 1
        h = (tag << _OFF_BITS) | self._next
        table[h] = obj
        return h

    @staticmethod
    def _lookup(table: dict[int, Any], handle: int, what: str) -> Any:
        obj = table.get(handle)
        if obj is None:
            raise _Errno(EBADF, f"no {what} with handle {handle:#x} in this VM")
        return obj

    @staticmethod
    def _check_ptr(addr: int, size: int) -> None:
        if addr == 0 and size:
            raise _Errno(EFAULT, "NULL guest pointer")
        if addr < 0 or size < 0 or addr + size > 1 << 64:
            raise _Errno(EFAULT, f"guest range {addr:#x}+{size} is outside the address space")

    def _read(self, mem: GuestMemory, addr: int, size: int) -> bytes:
        self._check_ptr(addr, size)
        if size == 0:
            return b""
        data = mem.read_bytes(addr, size)
        if len(data) != size:
            raise _Errno(EFAULT, f"short read at {addr:#x}")
        return bytes(data)

    def _write(self, mem: GuestMemory, addr: int, data: bytes) -> None:
        self._check_ptr(addr, len(data))
        if data:
            mem.write_bytes(addr, data)

    def _host_view(self, mem: GuestMemory, addr: int, size: int) -> memoryview | None:
        """A writable view of guest memory when the accessor offers one (``host_view``): no copies."""
        fn = getattr(mem, "host_view", None)
        if fn is None or size == 0:
            return None
        view = fn(addr, size)
        if view is None:
            return None
        mv = memoryview(view)
        if mv.readonly or mv.nbytes != size or not mv.c_contiguous:
            return None
        return mv

    def _read_struct(self, mem: GuestMemory, st: struct.Struct, addr: int) -> tuple[Any, ...]:
        return st.unpack(self._read(mem, addr, st.size))

    def _read_cstr(self, mem: GuestMemory, addr: int, limit: int) -> str:
        """A NUL-terminated string, read without crossing into pages past its end."""
        self._check_ptr(addr, 1)
        out = bytearray()
        pos = addr
        while len(out) <= limit:
            chunk = min(4096 - (pos % 4096), limit + 1 - len(out))
            data = self._read(mem, pos, chunk)
            nul = data.find(b"\0")
            if nul >= 0:
                out += data[:nul]
                return out.decode("utf-8", "replace")
            out += data
            pos += chunk
        raise _Errno(E2BIG, f"string at {addr:#x} is longer than {limit} bytes")

    def _read_ptr_array(self, mem: GuestMemory, addr: int, n: int) -> list[int]:
        if n == 0:
            return []
        return list(struct.unpack(f"<{n}Q", self._read(mem, addr, 8 * n)))

    # dispatch
    def _dispatch(self, mem: GuestMemory, op: int, argp: int) -> int:
        if op == OP_VERSION:
            return ABI_VERSION
        handler = _OPS.get(op)
        if handler is None:
            raise _Errno(ENOSYS, f"unknown GPU op {op}")
        return handler(self, mem, argp)

    def _op_info(self, mem: GuestMemory, argp: int) -> int:
        self._check_ptr(argp, INFO.size)
        info = self._dev().info()
        vendor = {"NVIDIA": VENDOR_NVIDIA, "AMD": VENDOR_AMD}.get(info.vendor, VENDOR_UNKNOWN)
        cc = info.compute_capability or (0, 0)
        bd = info.max_block_dim or (0, 0, 0)
        gd = info.max_grid_dim or (0, 0, 0)

        def u32(v: int | None) -> int:
            return 0 if v is None else min(int(v), 0xFFFFFFFF)

        data = INFO.pack(
            ABI_VERSION,
            vendor,
            cc[0],
            cc[1],
            info.total_memory or 0,
            info.free_memory or 0,
            u32(info.multiprocessor_count),
            u32(info.warp_size),
            u32(info.max_threads_per_block),
            u32(info.max_shared_memory_per_block),
            *(u32(x) for x in bd),
            *(u32(x) for x in gd),
            u32(info.clock_rate_khz),
            u32(info.memory_clock_rate_khz),
            info.name.encode()[:63],
            info.arch.encode()[:15],
        )
        self._write(mem, argp, data)
        return 0

    def _op_compile(self, mem: GuestMemory, argp: int) -> int:
        src, src_len, opts, nopts, hsrcs, hnames, nhdr, log_p, log_cap, _, _ = self._read_struct(
            mem, COMPILE, argp
        )
        if src_len == 0:
            source = self._read_cstr(mem, src, MAX_SOURCE)
        elif src_len > MAX_SOURCE:
            raise _Errno(E2BIG, f"kernel source of {src_len} bytes is over the {MAX_SOURCE} limit")
        else:
            source = self._read(mem, src, src_len).decode("utf-8", "replace")
        if nopts > MAX_OPTIONS or nhdr > MAX_HEADERS:
            raise _Errno(E2BIG, "too many compiler options or headers")
        options = [self._read_cstr(mem, p, MAX_STRING) for p in self._read_ptr_array(mem, opts, nopts)]
        headers: dict[str, str] = {}
        if nhdr:
            srcs = self._read_ptr_array(mem, hsrcs, nhdr)
            names = self._read_ptr_array(mem, hnames, nhdr)
            for sp, np_ in zip(srcs, names, strict=True):
                headers[self._read_cstr(mem, np_, MAX_NAME)] = self._read_cstr(mem, sp, MAX_SOURCE)
        if log_cap:
            self._check_ptr(log_p, log_cap)
        dev = self._dev()
        try:
            module = dev.compile(source, name="guest.cu", options=options, headers=headers)
        except CompileError as e:
            self._put_log(mem, argp, log_p, log_cap, e.log or str(e))
            self.last_error = str(e).splitlines()[0]
            return -ENOEXEC
        try:
            h = self._new_handle(_TAG_MODULE, self._modules, module)
        except _Errno:
            module.unload()
            raise
        self._put_log(mem, argp, log_p, log_cap, module.log)
        self._write(mem, argp + 80, HANDLE.pack(h))
        return 0

    def _put_log(self, mem: GuestMemory, argp: int, log_p: int, log_cap: int, text: str) -> None:
        data = text.encode("utf-8", "replace")
        if log_cap and log_p:
            n = min(len(data), log_cap - 1)
            self._write(mem, log_p, data[:n] + b"\0")
        self._write(mem, argp + 72, HANDLE.pack(len(data)))

    def _op_get_function(self, mem: GuestMemory, argp: int) -> int:
        mh, name_p, _, _, _ = self._read_struct(mem, FUNCTION, argp)
        module = self._lookup(self._modules, mh, "module")
        name = self._read_cstr(mem, name_p, MAX_NAME)
        try:
            kernel = module.get_kernel(name)
        except DriverError as e:
            if e.name in ("CUDA_ERROR_NOT_FOUND", "hipErrorNotFound"):
                raise _Errno(ENOENT, f"no kernel {name!r} in module {mh:#x}") from None
            raise
        attrs = kernel.attributes
        fh = self._new_handle(_TAG_FUNCTION, self._functions, kernel)
        self._write(
            mem,
            argp + 16,
            struct.pack("<QII", fh, attrs.num_regs or 0, attrs.max_threads_per_block or 0),
        )
        return 0

    def _op_malloc(self, mem: GuestMemory, argp: int) -> int:
        (size, _) = self._read_struct(mem, MALLOC, argp)
        if size == 0:
            raise _Errno(EINVAL, "zero-sized allocation")
        if self.max_memory is not None and self.bytes_allocated + size > self.max_memory:
            raise _Errno(ENOMEM, f"VM GPU memory limit of {self.max_memory} bytes reached")
        buf = self._dev().alloc(size)
        try:
            h = self._new_handle(_TAG_BUFFER, self._buffers, buf)
        except _Errno:
            buf.free()
            raise
        self.bytes_allocated += size
        self._write(mem, argp + 8, HANDLE.pack(h))
        return 0

    def _op_free(self, mem: GuestMemory, argp: int) -> int:
        (h,) = self._read_struct(mem, HANDLE, argp)
        buf = self._lookup(self._buffers, h, "buffer")
        if self._stream is not None:
            self._sync()  # work queued on the VM's stream may still use it
        del self._buffers[h]
        self.bytes_allocated -= buf.nbytes
        buf.free()
        return 0

    def _op_module_unload(self, mem: GuestMemory, argp: int) -> int:
        (h,) = self._read_struct(mem, HANDLE, argp)
        module = self._lookup(self._modules, h, "module")
        if self._stream is not None:
            self._sync()
        del self._modules[h]
        for fh in [fh for fh, k in self._functions.items() if k.module is module]:
            del self._functions[fh]
        module.unload()
        return 0

    def _range(self, h: int, offset: int, size: int) -> Any:
        buf = self._lookup(self._buffers, h, "buffer")
        if offset > buf.nbytes or size > buf.nbytes - offset:
            raise _Errno(EINVAL, f"{size} bytes at offset {offset} overrun the buffer of {buf.nbytes} bytes")
        return buf

    def _op_copy_htod(self, mem: GuestMemory, argp: int) -> int:
        h, offset, gaddr, size = self._read_struct(mem, COPY, argp)
        buf = self._range(h, offset, size)
        self._check_ptr(gaddr, size)
        stream = self._vm_stream()
        view = self._host_view(mem, gaddr, size)
        if view is not None:
            # The copy must take the guest's bytes as they are now (the guest may reuse its memory
            # as soon as the call returns), and the view must not stay exported: wait for it.
            buf.copy_from_host(view, offset=offset, stream=stream)
            self._sync()
            return 0
        done = 0
        while done < size:
            n = min(COPY_CHUNK, size - done)
            chunk = self._read(mem, gaddr + done, n)
            buf.copy_from_host(chunk, offset=offset + done, stream=stream)
            self._pending += n
            if self._pending >= MAX_PENDING:
                self._sync()
            done += n
        return 0

    def _op_copy_dtoh(self, mem: GuestMemory, argp: int) -> int:
        h, offset, gaddr, size = self._read_struct(mem, COPY, argp)
        buf = self._range(h, offset, size)
        self._check_ptr(gaddr, size)
        stream = self._vm_stream()
        view = self._host_view(mem, gaddr, size)
        if view is not None:
            buf.copy_to_host(view, offset=offset, nbytes=size, stream=stream)
            self._sync()
            return 0
        done = 0
        while done < size:
            n = min(COPY_CHUNK, size - done)
            host = bytearray(n)
            buf.copy_to_host(host, offset=offset + done, stream=stream)
            self._sync()
            self._write(mem, gaddr + done, bytes(host))
            done += n
        return 0

    def _op_copy_dtod(self, mem: GuestMemory, argp: int) -> int:
        dh, doff, sh, soff, size = self._read_struct(mem, COPY_DTOD, argp)
        dst = self._range(dh, doff, size)
        src = self._range(sh, soff, size)
        if size:
            dst.copy_from(src, nbytes=size, dst_offset=doff, src_offset=soff, stream=self._vm_stream())
        return 0

    def _op_memset(self, mem: GuestMemory, argp: int) -> int:
        h, offset, value, size = self._read_struct(mem, MEMSET, argp)
        if value > 255:
            raise _Errno(EINVAL, f"memset value {value} is not a byte")
        buf = self._range(h, offset, size)
        if size:
            buf.memset(value, offset=offset, nbytes=size, stream=self._vm_stream())
        return 0

    def _op_launch(self, mem: GuestMemory, argp: int) -> int:
        fh, gx, gy, gz, bx, by, bz, shmem, args_p, nargs = self._read_struct(mem, LAUNCH, argp)
        kernel = self._lookup(self._functions, fh, "function")
        if nargs > MAX_ARGS:
            raise _Errno(E2BIG, f"{nargs} kernel arguments (limit {MAX_ARGS})")
        raw = self._read(mem, args_p, ARG.size * nargs) if nargs else b""
        args = [self._guest_arg(mem, i, *ARG.unpack_from(raw, i * ARG.size)) for i in range(nargs)]
        kernel.launch((gx, gy, gz), (bx, by, bz), args, shmem=shmem, stream=self._vm_stream())
        return 0

    def _guest_arg(self, mem: GuestMemory, i: int, kind: int, size: int, value: int, aux: int) -> Arg:
        if kind == ARG_BUFFER:
            buf = self._lookup(self._buffers, value, "buffer")
            if aux > buf.nbytes:
                raise _Errno(EINVAL, f"argument {i}: offset {aux} is past the buffer's {buf.nbytes} bytes")
            return Arg("ptr", buf.device_ptr + aux)
        scalar = _SCALAR_KINDS.get(kind)
        if scalar is not None:
            k, width, fmt = scalar
            if size not in (0, width):
                raise _Errno(EINVAL, f"argument {i}: size {size} does not match its kind ({width})")
            bits = value & ((1 << (8 * width)) - 1)
            v = struct.unpack(fmt, bits.to_bytes(width, "little"))[0]
            return Arg(k, v)
        if kind == ARG_BYTES:
            if size == 0 or size > MAX_BYTES_ARG:
                raise _Errno(EINVAL, f"argument {i}: struct size {size} (1..{MAX_BYTES_ARG})")
            align = aux or 8
            if align & (align - 1) or align > 256:
                raise _Errno(EINVAL, f"argument {i}: alignment {align} is not a power of two <= 256")
            return Arg("bytes", self._read(mem, value, size), align)
        raise _Errno(EINVAL, f"argument {i}: unknown kind {kind}")

    def _sync(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()
        self._pending = 0

    def _op_synchronize(self, mem: GuestMemory, argp: int) -> int:
        self._dev()
        self._sync()
        return 0

    # introspection for tests and debuggers
    @property
    def handles(self) -> dict[str, int]:
        return {
            "modules": len(self._modules),
            "functions": len(self._functions),
            "buffers": len(self._buffers),
        }


_SCALAR_KINDS = {
    ARG_I32: ("i32", 4, "<i"),
    ARG_U32: ("u32", 4, "<I"),
    ARG_I64: ("i64", 8, "<q"),
    ARG_U64: ("u64", 8, "<Q"),
    ARG_F32: ("f32", 4, "<f"),
    ARG_F64: ("f64", 8, "<d"),
}

_OPS: dict[int, Callable[[GuestGPU, GuestMemory, int], int]] = {
    OP_INFO: GuestGPU._op_info,
    OP_COMPILE: GuestGPU._op_compile,
    OP_GET_FUNCTION: GuestGPU._op_get_function,
    OP_MALLOC: GuestGPU._op_malloc,
    OP_FREE: GuestGPU._op_free,
    OP_COPY_HTOD: GuestGPU._op_copy_htod,
    OP_COPY_DTOH: GuestGPU._op_copy_dtoh,
    OP_COPY_DTOD: GuestGPU._op_copy_dtod,
    OP_MEMSET: GuestGPU._op_memset,
    OP_LAUNCH: GuestGPU._op_launch,
    OP_SYNCHRONIZE: GuestGPU._op_synchronize,
    OP_MODULE_UNLOAD: GuestGPU._op_module_unload,
}


def _open(backend: str, index: int) -> Any:
    from .api import open_device

    return open_device(backend, index)
