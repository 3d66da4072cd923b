"""Compiled-kernel cache, in memory and on disk.

The key is the sha256 of everything that decides the compiler's output: backend, source, named
headers, options, target architecture and compiler version. Entries are written to a temporary
file in the same folder and moved into place with ``os.replace``, so a reader sees either no
entry or a whole one, and concurrent processes never see each other's half-written files. Each
entry carries a checksum; a corrupt or foreign entry is ignored (and rebuilt by the caller).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import tempfile
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

MAGIC = b"POLYVM-GPUK\x01"
_FORMAT = 1


@dataclass(frozen=True)
class CacheEntry:
    image: bytes
    """What the driver loads: a cubin, PTX text (as bytes, NUL-terminated) or a code object."""
    image_kind: str
    """``"cubin"``, ``"ptx"`` or ``"hsaco"``."""
    ptx: str | None = None
    log: str = ""
    lowered_names: dict[str, str] = field(default_factory=dict)


def default_cache_dir() -> Path:
    """``$POLYVM_CACHE_DIR/gpu``, else ``$XDG_CACHE_HOME/polyvm/gpu``, else ``~/.cache/polyvm/gpu``."""
    base = os.environ.get("POLYVM_CACHE_DIR")
    if base:
        return Path(base) / "gpu"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "polyvm" / "gpu"


def cache_key(
    *,
    backend: str,
    source: str | bytes,
    headers: Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes]] = (),
    options: Iterable[str] = (),
    arch: str,
    compiler_version: str,
    extra: Iterable[str] = (),
) -> str:
    """sha256 hex digest of a canonical encoding of every input of a compilation.

    Header order does not matter (they are looked up by name); option order does (later options
    can override earlier ones).
    """
    items = headers.items() if isinstance(headers, Mapping) else headers
    hdrs = sorted((str(n), _text(s)) for n, s in items)
    doc = {
        "format": _FORMAT,
        "backend": backend,
        "source": _text(source),
        "headers": hdrs,
        "options": [str(o) for o in options],
        "arch": arch,
        "compiler": compiler_version,
        "extra": [str(e) for e in extra],
    }
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()


def _text(s: str | bytes) -> str:
    return s.decode("utf-8", "surrogateescape") if isinstance(s, bytes) else s


def encode_entry(key: str, entry: CacheEntry) -> bytes:
    meta = {
        "key": key,
        "image_kind": entry.image_kind,
        "ptx": entry.ptx,
        "log": entry.log,
        "lowered_names": entry.lowered_names,
    }
    mbytes = json.dumps(meta, sort_keys=True).encode()
    body = MAGIC + struct.pack("<I", len(mbytes)) + mbytes + struct.pack("<Q", len(entry.image)) + entry.image
    return body + hashlib.sha256(body).digest()


def decode_entry(key: str, data: bytes) -> CacheEntry | None:
    """The entry, or ``None`` when ``data`` is truncated, corrupt, or belongs to another key."""
    try:
        if len(data) < len(MAGIC) + 4 + 8 + 32 or not data.startswith(MAGIC):
            return None
        body, digest = data[:-32], data[-32:]
        if hashlib.sha256(body).digest() != digest:
            return None
        pos = len(MAGIC)
        (mlen,) = struct.unpack_from("<I", body, pos)
        pos += 4
        meta = json.loads(body[pos : pos + mlen])
        pos += mlen
        (ilen,) = struct.unpack_from("<Q", body, pos)
        pos += 8
        image = body[pos : pos + ilen]
        if len(image) != ilen or pos + ilen != len(body):
            return None
        if not isinstance(meta, dict) or meta.get("key") != key:
            return None
        kind = meta.get("image_kind")
        names = meta.get("lowered_names") or {}
        if kind not in ("cubin", "ptx", "hsaco") or not isinstance(names, dict):
            return None
        return CacheEntry(
            image=bytes(image),
            image_kind=kind,
            ptx=meta.get("ptx"),
            log=str(meta.get("log") or ""),
            lowered_names={str(k): str(v) for k, v in names.items()},
        )
    except (ValueError, struct.error, UnicodeDecodeError, TypeError):
        return None


class KernelCache:
    """Memory layer in front of a disk layer. ``directory=None`` means :func:`default_cache_dir`."""

    def __init__(
        self, directory: str | os.PathLike[str] | None = None, *, memory: bool = True, disk: bool = True
    ):
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.use_memory = memory
        self.use_disk = disk
        self._mem: dict[str, CacheEntry] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def path_for(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.bin"

    def get(self, key: str) -> CacheEntry | None:
        if self.use_memory:
            with self._lock:
                entry = self._mem.get(key)
            if entry is not None:
                self.hits += 1
                return entry
        if self.use_disk:
            try:
                data = self.path_for(key).read_bytes()
            except OSError:
                data = None
            if data is not None:
                entry = decode_entry(key, data)
                if entry is None:
                    log.warning("ignoring corrupt GPU kernel cache entry %s", self.path_for(key))
                else:
                    self.hits += 1
                    if self.use_memory:
                        with self._lock:
                            self._mem[key] = entry
                    return entry
        self.misses += 1
        return None

    def put(self, key: str, entry: CacheEntry) -> None:
        if self.use_memory:
            with self._lock:
                self._mem[key] = entry
        if self.use_disk:
            self._write(self.path_for(key), encode_entry(key, entry))

    def clear_memory(self) -> None:
        with self._lock:
            self._mem.clear()

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        # A cache that cannot be written (read-only home, full disk) only costs speed.
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".bin")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            tmp = None
        except OSError as exc:
            log.debug("could not write GPU kernel cache entry %s: %s", path, exc)
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
