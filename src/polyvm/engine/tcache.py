"""The persistent translation cache: native code kept on disk between runs.

Layout under the cache directory (`$POLYVM_CACHE_DIR`, else `$XDG_CACHE_HOME/polyvm/tcache`,
else `~/.cache/polyvm/tcache`):

    v1/<host>/obj/<sha256>.o      a compiled module (one or more regions), with a checksum header
    v1/<host>/ent/<key>           a region entry: which object, which symbol, which code pages

`<host>` is a hash of polyvm's version, the host triple, CPU name and features and the LLVM
version: code made by another polyvm, CPU or LLVM is never looked at. An entry's `<key>` hashes
the region's entry pc and the contents of the guest page holding it; the entry lists every
page the region's code lies on with the hash of its contents, and is used only if they all
still match (the guest code bytes are the key). Files are written to a temporary name and
renamed into place, so concurrent processes see whole files or nothing; a file whose checksum
or format is wrong is ignored (and replaced by the next translation), never loaded.
The objects are kept under $POLYVM_CACHE_MAX_MB (default 1 GiB) per host part: opening the cache
deletes the oldest ones beyond it, and the parts (and `aux` objects) no run has used for
$POLYVM_CACHE_STALE_DAYS (default 30).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import marshal
import os
import shutil
import tempfile
import threading
import time
import weakref
from typing import Any

from polyvm import __version__

MAGIC = b"POLYVM-TC1\n"


def _max_bytes() -> int:
    """The cache's size bound: $POLYVM_CACHE_MAX_MB (default 1024 MiB)."""
    try:
        return max(1, int(os.environ.get("POLYVM_CACHE_MAX_MB", "1024"))) << 20
    except ValueError:
        return 1024 << 20


def _stale_seconds() -> float:
    """How long a part of the cache no run opened is kept: $POLYVM_CACHE_STALE_DAYS (default
    30)."""
    try:
        return max(0.0, float(os.environ.get("POLYVM_CACHE_STALE_DAYS", "30"))) * 86400
    except ValueError:
        return 30 * 86400


def _last_use(e: os.DirEntry[str]) -> float:
    st = e.stat(follow_symlinks=False)
    return max(st.st_atime, st.st_mtime)


def cache_root() -> str:
    d = os.environ.get("POLYVM_CACHE_DIR")
    if d:
        return d
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "polyvm", "tcache")


def _atomic_write(path: str, data: bytes) -> None:
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _seal(payload: bytes) -> bytes:
    return MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def _unseal(data: bytes) -> bytes | None:
    """The payload if `data` is a whole, uncorrupted sealed file, else None."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 65:
        return None
    digest = data[len(MAGIC) : len(MAGIC) + 64]
    payload = data[len(MAGIC) + 65 :]
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        return None
    return payload


_OBJ_MEMO_BYTES = 64 << 20  # objects kept in memory after a lookup read them (per cache)


class TranslationCache:
    """One host's part of the on-disk cache (see the module docstring)."""

    def __init__(
        self, root: str, host_id: str, max_bytes: int | None = None, background_writes: bool = False
    ) -> None:
        self.root = root = os.path.abspath(root)  # (the compile worker runs elsewhere)
        self.host_id = host_id
        # background_writes: files are written by a thread of this process (`_write`), so a
        # run does not wait for the file system (a cold bench_branch writes 438 files: 0.23 s
        # here, under cProfile); what is not on disk yet is read from memory, and `flush`
        # waits for it.
        self._bg = background_writes
        self._max_bytes = max_bytes
        self._variants: dict[str, TranslationCache] = {}
        self._pending: dict[str, bytes] = {}  # path -> data not yet written
        self._queue: Any = None  # (a queue.Queue of paths, with the writer thread)
        # Deferred writes (`defer`): kept in memory until the run ends, then handed to the
        # compile worker as one bundle (`take_deferred`, `write_bundle`) or written by `flush`.
        self._defer = False
        self._deferred: list[str] = []
        self.entries_written: set[str] = set()  # entry files this process wrote itself
        self.host = hashlib.sha256(f"polyvm {__version__}|{host_id}".encode()).hexdigest()[:20]
        self.dir = os.path.join(root, "v1", self.host)
        self.obj_dir = os.path.join(self.dir, "obj")
        self.ent_dir = os.path.join(self.dir, "ent")
        self.enabled = True
        try:
            os.makedirs(self.obj_dir, exist_ok=True)
            os.makedirs(self.ent_dir, exist_ok=True)
            self._index = set(os.listdir(self.ent_dir))
        except OSError:
            self.enabled = False  # read-only or broken home: run without a cache
            self._index = set()
        self.rejected = 0  # corrupt or stale entries seen
        self.evicted = 0
        # Objects read (and checked) in this process, by name: a module holds many regions,
        # each looked up on its own.
        self._objs: dict[str, bytes] = {}
        if self.enabled:
            with contextlib.suppress(OSError):
                os.utime(self.dir)  # (when a run last opened this part: see `_drop_stale_parts`)
            self._trim(max_bytes if max_bytes is not None else _max_bytes())
            self._drop_stale_jobs()
            self._drop_stale_parts()

    def variant(self, tag: str) -> TranslationCache:
        """The part of the cache for code made another way on this host (host id + "|" + tag;
        e.g. for direct guest memory): its own entries, never confused with this part's."""
        if self.host_id.endswith(f"|{tag}"):
            return self
        v = self._variants.get(tag)
        if v is None:
            v = self._variants[tag] = TranslationCache(
                self.root, f"{self.host_id}|{tag}", self._max_bytes, self._bg
            )
        return v

    def _drop_stale_parts(self) -> None:
        """Delete the parts of the cache no run has opened for $POLYVM_CACHE_STALE_DAYS (an
        older polyvm's, code made before a change of the generated code's conventions, a CPU
        or LLVM no longer used: their names never match again) and `aux` objects no run has
        loaded for as long. Each part's directory is touched when opened, each aux object's
        access time set when loaded; the bound of `_trim` is per part."""
        base = os.path.dirname(self.dir)
        if base in _swept:
            return  # (once per process and cache)
        _swept.add(base)
        old = time.time() - _stale_seconds()
        try:
            with os.scandir(base) as it:
                parts = [e for e in it if e.is_dir(follow_symlinks=False)]
        except OSError:
            return
        for e in parts:
            with contextlib.suppress(OSError):
                if e.name == "aux":
                    with os.scandir(e.path) as it:
                        for f in it:
                            if f.is_file(follow_symlinks=False) and _last_use(f) < old:
                                os.unlink(f.path)
                elif e.path != self.dir and _last_use(e) < old:
                    # (renamed first: a run opening it meanwhile makes a fresh one)
                    gone = os.path.join(base, f".stale-{e.name}-{os.getpid()}")
                    os.rename(e.path, gone)
                    shutil.rmtree(gone, ignore_errors=True)

    def _drop_stale_jobs(self) -> None:
        """Delete job files and bundles (`JitEngine.finish`) no compile worker took within an
        hour; read the fresh bundles (`_read_bundle`)."""
        old = time.time() - 3600
        bundles = []
        try:
            with os.scandir(self.dir) as it:
                for e in it:
                    if e.name.startswith(("job-", ".tmpjob-", "files-", ".tmpfiles-")):
                        with contextlib.suppress(OSError):
                            if e.stat().st_mtime < old:
                                os.unlink(e.path)
                            elif e.name.startswith("files-"):
                                bundles.append(e.path)
        except OSError:
            pass
        for path in bundles:
            if _owner_gone(os.path.basename(path)):
                write_bundle(path)  # (its worker died before writing it: nobody else will)
            else:
                self._read_bundle(path)
        if bundles:
            # The entries listed when the cache was opened may predate what a bundle's worker
            # (or this process, above) wrote since: a bundle is deleted only once all its files
            # are on disk, so listing again after reading the bundles misses none of them.
            with contextlib.suppress(OSError):
                self._index.update(os.listdir(self.ent_dir))

    def _read_bundle(self, path: str) -> None:
        """A bundle an earlier run left for its compile worker to write (`write_bundle`), which
        may not have written it yet: its files are read from memory here, where the disk has
        none (a file there is the bundle's own, or newer: the worker's hot code for that pc)."""
        for p, data in _load_bundle(path).items():  # (empty once gone: the worker wrote it all)
            if os.path.dirname(os.path.dirname(p)) != self.dir:
                continue
            if p not in self._pending and not os.path.exists(p):
                self._pending[p] = data
                if os.path.dirname(p) == self.ent_dir:
                    self._index.add(os.path.basename(p))

    def _trim(self, limit: int) -> None:
        """Keep this host's part of the cache under `limit` bytes: delete the least recently
        written objects (and then entries whose object is gone fail their lookup and are
        rebuilt). Run once per process, when the cache is opened."""
        files = []
        total = 0
        try:
            with os.scandir(self.obj_dir) as it:
                for e in it:
                    if e.is_file():
                        st = e.stat()
                        files.append((st.st_mtime, st.st_size, e.path))
                        total += st.st_size
        except OSError:
            return
        if total <= limit:
            return
        for _, size, path in sorted(files):  # oldest first
            try:
                os.unlink(path)
            except OSError:
                continue
            self.evicted += 1
            total -= size
            if total <= limit * 3 // 4:  # leave room, so trimming is rare
                break

    # ---- files -----------------------------------------------------------------------------
    def _read(self, path: str) -> bytes:
        data = self._pending.get(path)
        if data is not None:
            return data
        with open(path, "rb") as f:
            return f.read()

    @property
    def writes_in_background(self) -> bool:
        return self._bg

    def defer(self) -> None:
        """Keep what is stored from now on in memory until the run ends (`take_deferred`, or
        `flush`): a cold run's few hundred small files then cost it nothing while it runs (on
        two cores the writer thread's system calls competed with the guest and the compile
        worker: a cold bench_branch's guest loop, first tier only, 0.84-0.86 s with the files
        written as it went, 0.72-0.75 s without writing them)."""
        self._defer = True
        _writers.add(self)  # (flushed at exit; a fork's child leaves the parent's to the parent)

    def take_deferred(self) -> dict[str, bytes]:
        """The deferred files (path -> data), which are then the caller's to write."""
        out = {p: self._pending[p] for p in self._deferred if p in self._pending}
        self._deferred = []
        return out

    def _write(self, path: str, data: bytes) -> None:
        """Write a file whole (temporary name, then renamed): now, or by the writer thread,
        or (deferred) when the run ends."""
        if self._defer:
            if path not in self._pending:
                self._deferred.append(path)
            self._pending[path] = data
            return
        if not self._bg:
            _atomic_write(path, data)
            return
        self._pending[path] = data
        if self._queue is None:
            import queue  # (here: most runs never start the writer)

            self._queue = queue.Queue()
            threading.Thread(target=self._writer, args=(self._queue,), daemon=True).start()
            _writers.add(self)
        self._queue.put(path)

    def _writer(self, q: Any) -> None:
        while True:
            path = q.get()
            try:
                data = self._pending.get(path)
                if data is not None:
                    _atomic_write(path, data)
            except OSError:
                pass  # (a cache: the next run translates it again)
            finally:
                if self._pending.get(path) is data:
                    self._pending.pop(path, None)
                q.task_done()

    def flush(self) -> None:
        """Wait until every file stored so far is on disk (deferred ones written now)."""
        write_files(self.take_deferred())
        if self._queue is not None:
            self._queue.join()

    def _forked(self) -> None:
        """In a fork's child: the parent writes what it stored; the child keeps reading it
        from memory and starts a writer of its own for what it stores."""
        self._queue = None
        self._deferred = []

    # ---- keys ------------------------------------------------------------------------------
    @staticmethod
    def page_hash(mem: Any, pn: int) -> str | None:
        try:
            return hashlib.sha256(mem.read_raw(pn << 12, 4096)).hexdigest()[:32]
        except Exception:  # noqa: BLE001 - an unmapped page: no entry can match
            return None

    @staticmethod
    def entry_key(pc: int, page_hash: str) -> str:
        return hashlib.sha256(f"{pc:x}:{page_hash}".encode()).hexdigest()[:40]

    # ---- lookup ----------------------------------------------------------------------------
    def lookup(self, mem: Any, pc: int, hashes: dict[int, str | None]) -> tuple[dict, bytes] | None:
        """The entry and object bytes for a region entered at pc whose code is unchanged.
        `hashes` memoizes page hashes (page number -> hash) for the caller."""
        if not self.enabled:
            return None
        pn = pc >> 12
        if pn not in hashes:
            hashes[pn] = self.page_hash(mem, pn)
        h = hashes[pn]
        if h is None:
            return None
        key = self.entry_key(pc, h)
        if key not in self._index:
            return None
        bad = os.path.join(self.ent_dir, key)
        try:
            payload = _unseal(self._read(os.path.join(self.ent_dir, key)))
            if payload is None:
                raise ValueError("corrupt entry")
            ent = json.loads(payload)
            if ent.get("pc") != pc:
                raise ValueError("entry for another pc")
            for p, ph in ent["pages"]:
                if p not in hashes:
                    hashes[p] = self.page_hash(mem, p)
                if hashes[p] != ph:
                    return None  # the code changed: stale (a new translation replaces it)
            obj = self._objs.get(ent["obj"])
            if obj is None:
                bad = os.path.join(self.obj_dir, ent["obj"] + ".o")
                obj = _unseal(self._read(bad))
                if obj is None:
                    raise ValueError("corrupt object")
                if sum(map(len, self._objs.values())) > _OBJ_MEMO_BYTES:
                    self._objs.clear()
                self._objs[ent["obj"]] = obj
            return ent, obj
        except (OSError, ValueError, KeyError, TypeError):
            # Corrupt or unreadable: forget it; the next translation writes a good one.
            self.rejected += 1
            self._index.discard(key)
            for path in (bad, os.path.join(self.ent_dir, key)):
                try:
                    os.unlink(path)
                except OSError:
                    pass
            return None

    # ---- storing ---------------------------------------------------------------------------
    def store_object(self, obj: bytes, fresh: bool = False) -> str | None:
        """Store a compiled object; its name (None: not stored). `fresh`: made just now, with
        a nonce of its own in its symbols (no file can hold it yet: not looked for on disk,
        a system call per region of a cold run)."""
        if not self.enabled:
            return None
        name = hashlib.sha256(obj).hexdigest()[:40]
        path = os.path.join(self.obj_dir, name + ".o")
        try:
            good = False
            if path in self._pending or (not fresh and os.path.exists(path)):
                good = _unseal(self._read(path)) == obj
            if not good:
                self._write(path, _seal(obj))
        except OSError:
            return None
        return name

    def store_entry(
        self,
        mem: Any,
        entries: list[int],
        symbol: str,
        obj_name: str,
        opt: int,
        pages: list[int],
        known: dict[int, str | None] | None = None,
        only: list[int] | None = None,
        latent: list[int] | None = None,
    ) -> None:
        """Record region `symbol` of object `obj_name`, entered at each pc of `entries` (of
        `only`, those already recorded being there), its code enterable at `latent` too (see
        `JitEngine._latent`). `known`: page hashes already computed for pages whose contents
        have not changed since (the engine's, for pages of code whose stores it watches)."""
        if not self.enabled:
            return
        hashes = {}
        for p in sorted(set(pages) | {pc >> 12 for pc in entries}):
            h = known.get(p) if known is not None else None
            if h is None:
                h = self.page_hash(mem, p)
            if h is None:
                return
            hashes[p] = h
        self.store_entry_hashes(entries, symbol, obj_name, opt, hashes, only, latent)

    def store_entry_hashes(
        self,
        entries: list[int],
        symbol: str,
        obj_name: str,
        opt: int,
        hashes: dict[int, str],
        only: list[int] | None = None,
        latent: list[int] | None = None,
    ) -> None:
        """`store_entry` with the pages' hashes already known (every page of the region's code
        and of its entries): what the compile worker uses, which has no guest memory."""
        if not self.enabled or any(pc >> 12 not in hashes for pc in entries):
            return
        for pc in entries if only is None else only:
            ent = {
                "pc": pc,
                "entries": entries,
                "symbol": symbol,
                "obj": obj_name,
                "opt": opt,
                "pages": sorted(hashes.items()),
            }
            if latent:
                ent["latent"] = latent
            key = self.entry_key(pc, hashes[pc >> 12])
            path = os.path.join(self.ent_dir, key)
            try:
                self._write(path, _seal(json.dumps(ent).encode()))
                self._index.add(key)
                self.entries_written.add(path)
            except OSError:
                return


def write_files(files: dict[str, bytes]) -> int:
    """Write each file whole (`_atomic_write`); a failed one is skipped (a cache: the next run
    translates it again). Returns the number written."""
    n = 0
    for path, data in files.items():
        with contextlib.suppress(OSError):
            _atomic_write(path, data)
            n += 1
    return n


def _load_bundle(path: str) -> dict[str, bytes]:
    """A bundle's files (path -> data; `JitEngine.finish`), those of the right types; empty if
    it is gone or not a bundle."""
    try:
        with open(path, "rb") as f:
            files = marshal.load(f)
    except (OSError, EOFError, ValueError, TypeError):
        return {}
    if not isinstance(files, dict):
        return {}
    return {p: d for p, d in files.items() if isinstance(p, str) and isinstance(d, bytes)}


def bundle_owner(pid: int) -> str:
    """The part of a bundle's name that says which process writes it (`JitEngine.finish`):
    this host's name, hashed, and the compile worker's pid."""
    node = os.uname().nodename if hasattr(os, "uname") else os.environ.get("COMPUTERNAME", "")
    return f"{hashlib.sha256(node.encode()).hexdigest()[:8]}.{pid}"


def _owner_gone(name: str) -> bool:
    """A bundle (`files-<owner>-...`) whose writer, a process of this host, is no longer
    running; False where that cannot be told (another host's, an unnamed or a live one)."""
    parts = name.split("-")
    if len(parts) < 3 or "." not in parts[1]:
        return False
    host, _, pid = parts[1].partition(".")
    if os.name == "nt" or not pid.isdigit() or host != bundle_owner(0).partition(".")[0]:
        return False  # (on Windows, os.kill's signal 0 is not a probe)
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # (alive, another user's)
        return False
    return False


def write_bundle(path: str, skip: set[str] | frozenset[str] = frozenset()) -> int:
    """Write the files of a bundle (`JitEngine.finish`: a run's deferred cache files, marshaled
    path -> data, in the cache directory) and delete it; files in `skip` are left out (entries
    the compile worker wrote itself meanwhile: hot code that a run's first-tier entry for the
    same pc, stored earlier, must not replace). Returns the number written; a bad bundle is
    deleted and writes nothing. The bundle stays where it is until every file is written, so a
    run that opens the cache meanwhile reads it (`_read_bundle`) or finds the files on disk."""
    try:
        files = _load_bundle(path)
        root = os.path.realpath(os.path.dirname(path))
        # (only files of this cache directory, whole sealed ones)
        return write_files(
            {
                p: data
                for p, data in files.items()
                if p not in skip
                and os.path.commonpath([root, os.path.realpath(p)]) == root
                and _unseal(data) is not None
            }
        )
    except (OSError, ValueError):
        return 0
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


# ---- management (polyvm cache info|clear) --------------------------------------------------------
def info(root: str | None = None) -> dict[str, Any]:
    """What the cache holds: the host configurations, their entries and objects, the objects
    shared by every program of a host (`aux`: the dispatcher, FP fast paths, decode tables;
    host facts) and the bytes of all of them."""
    root = root or cache_root()
    out: dict[str, Any] = {"path": root, "hosts": 0, "entries": 0, "objects": 0, "shared": 0, "bytes": 0}
    base = os.path.join(root, "v1")
    if not os.path.isdir(base):
        return out
    dirs = [(os.path.join(base, "aux"), "shared")]
    for host in os.listdir(base):
        if host == "aux" or host.startswith("."):
            continue
        out["hosts"] += 1
        dirs += [(os.path.join(base, host, "ent"), "entries"), (os.path.join(base, host, "obj"), "objects")]
    for d, key in dirs:
        try:
            names = [n for n in os.listdir(d) if not n.startswith(".tmp-")]
        except OSError:
            continue
        out[key] += len(names)
        for n in names:
            try:
                out["bytes"] += os.path.getsize(os.path.join(d, n))
            except OSError:
                pass
    return out


def clear(root: str | None = None) -> int:
    """Delete the cache; returns the bytes freed."""
    root = root or cache_root()
    n = info(root)["bytes"]
    base = os.path.join(root, "v1")
    if os.path.isdir(base):
        shutil.rmtree(base, ignore_errors=True)
    return n


def _aux_path(host_id: str, name: str, source: str) -> str:
    h = hashlib.sha256(f"polyvm {__version__}|{host_id}|{source}".encode()).hexdigest()[:32]
    return os.path.join(cache_root(), "v1", "aux", f"{name}-{h}.o")


def load_aux(host_id: str, name: str, source: str) -> bytes | None:
    """A cached object compiled from LLVM IR `source` (the dispatcher), if present and whole."""
    if os.environ.get("POLYVM_CACHE", "1") == "0":
        return None
    path = _aux_path(host_id, name, source)
    try:
        with open(path, "rb") as f:
            data = f.read()
            # (last used, as its access time: see `TranslationCache._drop_stale_parts`)
            with contextlib.suppress(OSError):
                os.utime(f.fileno(), ns=(time.time_ns(), os.fstat(f.fileno()).st_mtime_ns))
    except OSError:
        return None
    return _unseal(data)


def store_aux(host_id: str, name: str, source: str, obj: bytes) -> None:
    if os.environ.get("POLYVM_CACHE", "1") == "0":
        return
    path = _aux_path(host_id, name, source)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _atomic_write(path, _seal(obj))
    except OSError:
        pass


_default: dict[str, TranslationCache | None] = {}
_swept: set[str] = set()  # cache directories `_drop_stale_parts` looked at in this process
_writers: weakref.WeakSet[TranslationCache] = weakref.WeakSet()  # caches with a writer thread


def _flush_all() -> None:
    for c in list(_writers):
        c.flush()


def _after_fork() -> None:
    for c in list(_writers):
        c._forked()
    _writers.clear()


atexit.register(_flush_all)
os.register_at_fork(after_in_child=_after_fork)


def default_cache() -> TranslationCache | None:
    """The cache the CLI uses (None when POLYVM_CACHE=0 or the JIT is unavailable)."""
    if os.environ.get("POLYVM_CACHE", "1") == "0":
        return None
    root = cache_root()
    if root not in _default:
        try:
            from polyvm.engine.jit import Compiler

            _default[root] = TranslationCache(root, Compiler.get().host_id, background_writes=True)
        except Exception:  # noqa: BLE001 - no llvmlite: no native code to cache
            _default[root] = None
    return _default[root]
