"""Typed kernel-argument packing.

A kernel's parameters are laid out like the fields of a C struct (each aligned to its natural
alignment), which is what both ``cuLaunchKernel`` and ``hipModuleLaunchKernel`` expect: either as
``kernelParams`` (an array of pointers, one per parameter) or as one ``extra`` buffer.

Python ints and floats are ambiguous (i32 or i64? f32 or f64?), so they need a type: wrap them
(``i32(5)``, ``f32(2.0)``) or give the kernel a signature (``"ptr, ptr, f32, i32"``). Objects with
a ``device_ptr`` attribute (polyvm buffers) and NumPy scalars carry their own type.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from .errors import ArgumentError

# kind -> (struct format, size, alignment)
_SCALARS: dict[str, tuple[str, int, int]] = {
    "ptr": ("<Q", 8, 8),
    "i8": ("<b", 1, 1),
    "u8": ("<B", 1, 1),
    "i16": ("<h", 2, 2),
    "u16": ("<H", 2, 2),
    "i32": ("<i", 4, 4),
    "u32": ("<I", 4, 4),
    "i64": ("<q", 8, 8),
    "u64": ("<Q", 8, 8),
    "f32": ("<f", 4, 4),
    "f64": ("<d", 8, 8),
}

_INT_RANGES: dict[str, tuple[int, int]] = {
    "ptr": (0, 2**64 - 1),
    "i8": (-(2**7), 2**7 - 1),
    "u8": (0, 2**8 - 1),
    "i16": (-(2**15), 2**15 - 1),
    "u16": (0, 2**16 - 1),
    "i32": (-(2**31), 2**31 - 1),
    "u32": (0, 2**32 - 1),
    "i64": (-(2**63), 2**63 - 1),
    "u64": (0, 2**64 - 1),
}

# Spellings accepted in signatures, mapped to kinds.
_ALIASES: dict[str, str] = {
    "p": "ptr",
    "pointer": "ptr",
    "void*": "ptr",
    "int": "i32",
    "int32": "i32",
    "int32_t": "i32",
    "unsigned": "u32",
    "uint": "u32",
    "uint32": "u32",
    "uint32_t": "u32",
    "long": "i64",
    "long long": "i64",
    "int64": "i64",
    "int64_t": "i64",
    "uint64": "u64",
    "uint64_t": "u64",
    "size_t": "u64",
    "unsigned long long": "u64",
    "float": "f32",
    "float32": "f32",
    "double": "f64",
    "float64": "f64",
    "char": "i8",
    "int8_t": "i8",
    "uint8_t": "u8",
    "bool": "u8",
    "short": "i16",
    "int16_t": "i16",
    "uint16_t": "u16",
}

KINDS = frozenset(_SCALARS) | {"bytes"}


class Arg(NamedTuple):
    """One typed kernel argument. ``kind`` is a scalar kind, ``"ptr"`` or ``"bytes"`` (a raw struct).

    A named tuple rather than a dataclass: launches create these on the hot path.
    """

    kind: str
    value: int | float | bytes
    align: int = 0

    @property
    def size(self) -> int:
        if self.kind == "bytes":
            assert isinstance(self.value, (bytes, bytearray))
            return len(self.value)
        return _SCALARS[self.kind][1]

    @property
    def alignment(self) -> int:
        if self.kind == "bytes":
            return self.align or 8
        return _SCALARS[self.kind][2]

    def encode(self) -> bytes:
        if self.kind == "bytes":
            return bytes(self.value)  # type: ignore[arg-type]
        return _encode_scalar(self.kind, self.value)


def ptr(value: object) -> Arg:
    """A device pointer (a polyvm buffer or an int address)."""
    if hasattr(value, "device_ptr"):
        return Arg("ptr", int(value.device_ptr))  # type: ignore[attr-defined]
    return _scalar("ptr", value)


def i8(v: int) -> Arg:
    return _scalar("i8", v)


def u8(v: int) -> Arg:
    return _scalar("u8", v)


def i16(v: int) -> Arg:
    return _scalar("i16", v)


def u16(v: int) -> Arg:
    return _scalar("u16", v)


def i32(v: int) -> Arg:
    return _scalar("i32", v)


def u32(v: int) -> Arg:
    return _scalar("u32", v)


def i64(v: int) -> Arg:
    return _scalar("i64", v)


def u64(v: int) -> Arg:
    return _scalar("u64", v)


def f32(v: float) -> Arg:
    return _scalar("f32", v)


def f64(v: float) -> Arg:
    return _scalar("f64", v)


def raw(data: bytes | bytearray | memoryview | ctypes.Structure, align: int = 0) -> Arg:
    """A by-value struct given as its bytes. ``align`` defaults to the ctypes alignment, else 8."""
    if isinstance(data, ctypes.Structure | ctypes.Union | ctypes.Array):
        if not align:
            align = ctypes.alignment(data)
        data = bytes(memoryview(data).cast("B"))
    elif isinstance(data, memoryview):
        data = data.tobytes()
    else:
        data = bytes(data)
    if align and (align & (align - 1)) != 0:
        raise ArgumentError(f"struct alignment must be a power of two, got {align}")
    if not data:
        raise ArgumentError("a struct argument must not be empty")
    return Arg("bytes", data, align)


def normalize_kind(name: str) -> str:
    key = " ".join(name.strip().lower().split())
    if key.endswith("*") and key not in _ALIASES:
        return "ptr"  # any pointer type, e.g. "float*"
    kind = _ALIASES.get(key, key)
    if kind not in _SCALARS:
        raise ArgumentError(f"unknown kernel argument type {name!r}; known: {', '.join(sorted(_SCALARS))}")
    return kind


def parse_signature(signature: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``"ptr, ptr, f32, i32"`` (or a list of names) -> tuple of kinds. ``None`` stays ``None``."""
    if signature is None:
        return None
    parts = signature.split(",") if isinstance(signature, str) else list(signature)
    parts = [p for p in (s.strip() for s in parts) if p]
    return tuple(normalize_kind(p) for p in parts)


def _scalar(kind: str, value: object) -> Arg:
    if kind in ("f32", "f64"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            value = _py_number(value, float, kind)
        return Arg(kind, float(value))
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, int):
        value = _py_number(value, int, kind)
    lo, hi = _INT_RANGES[kind]
    if not lo <= value <= hi:
        raise ArgumentError(f"value {value} is out of range for {kind} [{lo}, {hi}]")
    return Arg(kind, value)


def _py_number(value: object, typ: type, kind: str) -> int | float:
    # NumPy scalars and other number-likes; anything else is refused rather than guessed.
    if hasattr(value, "__index__") and typ is int:
        return value.__index__()  # type: ignore[attr-defined]
    if typ is float and hasattr(value, "__float__") and not isinstance(value, str | bytes):
        return float(value)  # type: ignore[arg-type]
    raise ArgumentError(f"cannot pass {type(value).__name__} {value!r} as {kind}")


def _encode_scalar(kind: str, value: object) -> bytes:
    fmt = _SCALARS[kind][0]
    try:
        return struct.pack(fmt, value)
    except struct.error as exc:  # pragma: no cover - ranges are checked earlier
        raise ArgumentError(f"cannot encode {value!r} as {kind}: {exc}") from None


_NUMPY_KINDS = {
    ("i", 1): "i8",
    ("i", 2): "i16",
    ("i", 4): "i32",
    ("i", 8): "i64",
    ("u", 1): "u8",
    ("u", 2): "u16",
    ("u", 4): "u32",
    ("u", 8): "u64",
    ("f", 4): "f32",
    ("f", 8): "f64",
    ("b", 1): "u8",
}


def to_arg(value: object, kind: str | None = None, index: int = 0) -> Arg:
    """Turn one Python value into an :class:`Arg`, using ``kind`` from a signature if given."""
    if isinstance(value, Arg):
        if kind is not None and kind != value.kind and not (kind == "ptr" and value.kind == "u64"):
            raise ArgumentError(f"argument {index} is {value.kind} but the kernel signature says {kind}")
        return value
    if kind is not None:
        if kind == "ptr":
            if value is None:
                return Arg("ptr", 0)
            return ptr(value)
        if hasattr(value, "device_ptr"):
            raise ArgumentError(f"argument {index} is a device buffer but the signature says {kind}")
        return _scalar(kind, value)
    if hasattr(value, "device_ptr"):
        return Arg("ptr", int(value.device_ptr))  # type: ignore[attr-defined]
    dtype = getattr(value, "dtype", None)
    if dtype is not None and getattr(value, "shape", None) == ():
        k = _NUMPY_KINDS.get((dtype.kind, dtype.itemsize))
        if k is None:
            raise ArgumentError(f"argument {index}: NumPy scalar of dtype {dtype} has no kernel type")
        return _scalar(k, value.item())  # type: ignore[attr-defined]
    if isinstance(value, ctypes.Structure | ctypes.Union):
        return raw(value)
    if isinstance(value, bytes | bytearray):
        return raw(value)
    if isinstance(value, int | float):
        raise ArgumentError(
            f"argument {index} is a plain Python {type(value).__name__} ({value!r}), which is ambiguous: "
            "wrap it (i32(), i64(), u32(), u64(), f32(), f64()) or give the kernel a signature"
        )
    raise ArgumentError(f"argument {index}: cannot pass {type(value).__name__} to a kernel")


def to_args(values: Iterable[object], signature: Sequence[str] | None = None) -> list[Arg]:
    values = list(values)
    if signature is not None:
        if len(signature) != len(values):
            raise ArgumentError(f"kernel takes {len(signature)} arguments, {len(values)} given")
        return [to_arg(v, k, i) for i, (v, k) in enumerate(zip(values, signature, strict=True))]
    return [to_arg(v, None, i) for i, v in enumerate(values)]


def layout(args: Sequence[Arg]) -> tuple[bytes, list[int]]:
    """Lay the arguments out like a C struct: returns (blob, offset of each argument).

    The blob is padded to its largest alignment, so it is also the ``extra`` launch buffer.
    """
    blob = bytearray()
    offsets: list[int] = []
    max_align = 1
    for a in args:
        al = a.alignment
        max_align = max(max_align, al)
        pad = (-len(blob)) % al
        blob += b"\0" * pad
        offsets.append(len(blob))
        blob += a.encode()
    blob += b"\0" * ((-len(blob)) % max_align)
    return bytes(blob), offsets


class PackedArgs:
    """Arguments materialized in host memory: ``kernel_params`` is the ``void**`` for the launch.

    Keep the object alive until the launch call returns (the driver copies the values at launch).
    """

    __slots__ = ("args", "blob", "offsets", "_storage", "_pointers", "kernel_params")

    def __init__(self, args: Sequence[Arg]) -> None:
        self.args = tuple(args)
        self.blob, self.offsets = layout(self.args)
        n = len(self.args)
        # 16-byte aligned storage: ctypes arrays of c_double are 8-aligned, over-allocate for 16.
        self._storage = ctypes.create_string_buffer(len(self.blob) + 16)
        base = ctypes.addressof(self._storage)
        shift = (-base) % 16
        ctypes.memmove(base + shift, self.blob, len(self.blob))
        self._pointers = (ctypes.c_void_p * max(n, 1))(*[base + shift + off for off in self.offsets])
        self.kernel_params = ctypes.addressof(self._pointers) if n else 0

    def __len__(self) -> int:
        return len(self.args)


def pack(values: Iterable[object], signature: Sequence[str] | None = None) -> PackedArgs:
    return PackedArgs(to_args(values, signature))


_STRUCT_CHARS = {
    "ptr": "Q",
    "i8": "b",
    "u8": "B",
    "i16": "h",
    "u16": "H",
    "i32": "i",
    "u32": "I",
    "i64": "q",
    "u64": "Q",
    "f32": "f",
    "f64": "d",
}


def _as_ptr(v: Any) -> Any:
    d = getattr(v, "device_ptr", None)
    return v if d is None else d


def _as_value(v: Any) -> Any:
    if type(v) is Arg:
        return v.value
    d = getattr(v, "device_ptr", None)
    return v if d is None else d


def _same(v: Any) -> Any:
    return v


def kind_of(value: Any) -> str | None:
    """The scalar kind a value carries by itself (typed Arg, device buffer, NumPy scalar), else None."""
    if type(value) is Arg:
        return None if value.kind == "bytes" else value.kind
    if hasattr(value, "device_ptr"):
        return "ptr"
    dtype = getattr(value, "dtype", None)
    if dtype is not None and getattr(value, "shape", None) == ():
        return _NUMPY_KINDS.get((dtype.kind, dtype.itemsize))
    return None


class ArgPacker:
    """Packing precompiled for one tuple of scalar kinds: one ``struct.pack_into`` per launch.

    It owns one parameter block, so it is used under ``lock`` (taken without blocking; a
    concurrent launch of the same kernel takes the general path instead). Any value it cannot
    pack exactly returns 0, and the caller falls back to :func:`pack`, which explains the error.
    """

    __slots__ = ("kinds", "n", "_struct", "_buf", "_shift", "_ptrs", "kernel_params", "pack", "lock")

    def __init__(self, kinds: Sequence[str], *, from_signature: bool) -> None:
        import threading

        self.kinds = tuple(kinds)
        self.n = len(self.kinds)
        fmt, size = "<", 0
        offsets = []
        for k in self.kinds:
            _, sz, al = _SCALARS[k]  # KeyError for anything but a known scalar kind
            pad = (-size) % al
            fmt += "x" * pad + _STRUCT_CHARS[k]
            size += pad
            offsets.append(size)
            size += sz
        self._struct = struct.Struct(fmt)
        self._buf = ctypes.create_string_buffer(size + 16)
        base = ctypes.addressof(self._buf)
        self._shift = (-base) % 16
        self._ptrs = (ctypes.c_void_p * max(self.n, 1))(*[base + self._shift + o for o in offsets])
        self.kernel_params = ctypes.addressof(self._ptrs) if self.n else 0
        self.pack = self._compile(from_signature)
        self.lock = threading.Lock()

    def _compile(self, from_signature: bool) -> Any:
        """Generate ``pack(values) -> int``: unpack, convert, one ``pack_into``; 0 when it does not fit.

        Generated because a launch is on the hot path: a loop over per-argument converter
        functions costs several times more than this straight-line code. Only names of a fixed
        set of kinds go into the text, never values.
        """
        names = [f"v{i}" for i in range(self.n)]
        lines = ["def pack(values):", "    try:"]
        lines.append(
            f"        {', '.join(names)}{',' if self.n == 1 else ''} = values"
            if self.n
            else "        if values: return 0"
        )
        for i, k in enumerate(self.kinds):
            v = names[i]
            if from_signature:
                if k == "ptr":
                    lines.append(f"        {v} = getattr({v}, 'device_ptr', {v})")
            else:
                lines.append(
                    f"        {v} = {v}.value if type({v}) is Arg else getattr({v}, 'device_ptr', {v})"
                )
        lines.append(f"        pack_into(buf, shift{''.join(', ' + n for n in names)})")
        lines.append("    except (struct.error, TypeError, OverflowError, ValueError):")
        lines.append("        return 0")
        lines.append("    return kernel_params")
        env = {
            "Arg": Arg,
            "struct": struct,
            "pack_into": self._struct.pack_into,
            "buf": self._buf,
            "shift": self._shift,
            "kernel_params": self.kernel_params,
        }
        exec("\n".join(lines), env)  # noqa: S102
        return env["pack"]
