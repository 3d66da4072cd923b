"""A compile worker process: the hot tier's LLVM work, off the guest's process.

llvmlite serializes LLVM calls process-wide, so a compiler *thread* cannot overlap the main
thread's own LLVM work; a worker process can, on its own core. The JIT sends it a module's
text (`submit`) and goes on running the guest on the code it has; when the object comes back
(`Job.done`), the engine installs it between two dispatches, if the guest code it was made
from is still what memory holds. The worker also writes the object and its entries to the
translation cache itself, so a run that ends before the result arrives still leaves it for
the next run (the worker finishes what it was sent, then exits when its input closes).

A worker that dies (an LLVM abort, a kill) only loses its jobs: the guest stays on the code
it has, and the next submission starts a new worker. Messages are length-prefixed pickles on
the worker's stdin/stdout, between a process and the child it started.
"""

from __future__ import annotations

import atexit
import itertools
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from typing import Any, BinaryIO

_HDR = struct.Struct("<Q")


def _send(f: BinaryIO, msg: Any) -> None:
    data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    f.write(_HDR.pack(len(data)) + data)
    f.flush()


def _recv(f: BinaryIO) -> Any:
    hdr = f.read(_HDR.size)
    if len(hdr) < _HDR.size:
        return None
    (n,) = _HDR.unpack(hdr)
    data = f.read(n)
    if len(data) < n:
        return None
    return pickle.loads(data)  # noqa: S301 - our own child process


class Job:
    """One module in flight; `done` turns True when `obj` (or `error`) is there."""

    __slots__ = ("done", "obj", "obj_name", "error", "seconds", "quick_obj")

    def __init__(self) -> None:
        self.done = False
        # (a hot module's quick version, compiled first: see `CompileWorker.submit`)
        self.quick_obj: bytes | None = None
        self.obj: bytes | None = None
        self.obj_name: str | None = None  # the cache object it was stored as, if any
        self.error: str | None = None
        self.seconds = 0.0


class _Proc:
    """One worker process and what is in flight to it (each worker has its own, so a worker
    that dies and its replacement never mix their jobs)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.lock = threading.Lock()
        self.sent = threading.Condition(self.lock)
        self.jobs: dict[int, Job] = {}
        self.unsent = 0  # submissions not yet written to the pipe
        self.dead = False  # its output ended (it exited, crashed or was killed)
        self.out: queue.SimpleQueue = queue.SimpleQueue()


# Worker handles inherited through a host fork, kept for ever: freeing them would close (and
# flush) pipe file objects whose locks a parent thread may have held at the fork.
_orphans: list[Any] = []


class CompileWorker:
    """The main process's handle on its worker (started on first use; one per process)."""

    def __init__(self) -> None:
        self.w: _Proc | None = None
        self._ids = itertools.count(1)  # (next() is atomic: engines of several threads)
        self._starting = threading.Lock()
        self._atexit = False
        self.deaths = 0  # workers lost (crashed or killed) in this process
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forked)

    def _forked(self) -> None:
        """In a forked child (a guest fork): the parent's worker, pipes and threads are not
        ours. Drop them without touching their file objects, and fail the inherited jobs."""
        self._starting = threading.Lock()  # (a parent thread may have held it)
        w, self.w = self.w, None
        if w is None:
            return
        _orphans.append(w)
        for f in (w.proc.stdin, w.proc.stdout):
            try:
                if f is not None:
                    os.close(f.fileno())
            except (OSError, ValueError):
                pass
        for job in list(w.jobs.values()):
            job.error = "made by the parent process's compile worker"
            job.done = True

    def _start(self) -> _Proc:
        import polyvm

        env = dict(os.environ)
        src = os.path.dirname(os.path.dirname(os.path.abspath(polyvm.__file__)))
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        proc = subprocess.Popen(
            # -P: never import from the current directory (a guest's --root may be there).
            [sys.executable, "-P", "-m", "polyvm.engine.cworker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=src,
            # Its own session: the terminal's Ctrl-C or a guest's kill(0, ...) is not for it.
            start_new_session=os.name == "posix",
        )
        if not self._atexit:
            atexit.register(self.flush)
            self._atexit = True
        w = self.w = _Proc(proc)
        threading.Thread(target=self._writer, args=(w,), daemon=True).start()
        threading.Thread(target=self._reader, args=(w,), daemon=True).start()
        return w

    @property
    def proc(self) -> subprocess.Popen | None:
        return self.w.proc if self.w is not None else None

    def alive(self) -> bool:
        w = self.w
        return w is not None and not w.dead and w.proc.poll() is None

    @property
    def usable(self) -> bool:
        """False once workers keep dying (then the engine compiles in place)."""
        return self.deaths < 3

    def start(self) -> None:
        """Start the worker now if it is not running (its Python and LLVM take about 0.2 s to
        come up, which the engine overlaps with its own first compiles). Raises OSError if it
        cannot be started."""
        with self._starting:
            if not self.alive():
                self._start()

    def submit(
        self,
        text: str,
        opt: int,
        store: dict[str, Any] | None = None,
        quick: list[str] | None = None,
        lower: dict[str, Any] | None = None,
    ) -> Job:
        """Compile `text` at `opt`; with `store` (cache root, host id, regions and page
        hashes) the worker also writes the result to the translation cache. With `quick` (the
        module's function names), the worker first compiles the same module the first tier's
        way (fast instruction selection, no IR passes: a tenth of the optimizing pipeline's
        time, code 1.4 to 3 times slower), its functions renamed `<name>q`, and sends that
        (`Job.quick_obj`, never cached) before the optimized object. With `lower` (hot regions
        as code, `jit.lower_remote`, and the module's other functions and declarations), the
        worker lowers those regions itself and makes the module (`text` is then empty). Raises
        OSError if no worker can be started."""
        return self._put({"text": text, "opt": opt, "store": store, "quick": quick, "lower": lower})

    def submit_job(self, path: str) -> Job:
        """Translate the job file at `path` into the cache (`jit.translate_job`): work that
        nobody waits for, done after everything submitted before it."""
        return self._put({"job": path})

    def submit_files(self, path: str) -> Job:
        """Write the bundle of cache files at `path` (`tcache.write_bundle`, a run's deferred
        writes): after everything submitted before it, leaving out entries the worker wrote
        itself (its hot code for the same pcs)."""
        return self._put({"files": path})

    def _put(self, msg: dict[str, Any]) -> Job:
        with self._starting:
            w = self.w if self.alive() else self._start()
        assert w is not None
        job = Job()
        jid = next(self._ids)
        with w.lock:
            w.jobs[jid] = job
            w.unsent += 1
        w.out.put({"id": jid, **msg})
        return job

    def _writer(self, w: _Proc) -> None:
        # Its own thread: a big module fills the pipe while the worker is busy with the last.
        ok = True
        while True:
            msg = w.out.get()
            if ok:
                try:
                    assert w.proc.stdin is not None
                    _send(w.proc.stdin, msg)
                except (OSError, ValueError):
                    ok = False
            with w.lock:
                w.unsent -= 1
                w.sent.notify_all()

    def flush(self, timeout: float = 5.0) -> None:
        """Wait (at most `timeout` s) until every submission has reached the worker: at exit,
        so that what is still compiling ends up in the cache."""
        w = self.w
        if w is None or w.dead:
            return
        with w.lock:
            w.sent.wait_for(lambda: w.unsent <= 0 or w.dead, timeout)

    def _reader(self, w: _Proc) -> None:
        f = w.proc.stdout
        while True:
            try:
                msg = _recv(f) if f is not None else None
            except (OSError, ValueError, pickle.UnpicklingError, EOFError):
                msg = None
            if msg is None:
                break
            if msg.get("quick"):
                with w.lock:
                    job = w.jobs.get(msg["id"])
                if job is not None and msg["obj"] is not None:
                    job.quick_obj = msg["obj"]
                continue
            with w.lock:
                job = w.jobs.pop(msg["id"], None)
            if job is not None:
                job.obj, job.obj_name, job.error = msg["obj"], msg["obj_name"], msg["error"]
                job.seconds = msg["seconds"]
                job.done = True
        # The worker is gone: whatever it had is lost.
        with w.lock:
            w.dead = True
            lost, w.jobs = list(w.jobs.values()), {}
            w.sent.notify_all()
        self.deaths += 1
        for job in lost:
            job.error = "the compile worker exited"
            job.done = True


_caches: dict[tuple[str, str], Any] = {}


def _store(store: dict[str, Any], obj: bytes) -> str | None:
    from polyvm.engine.tcache import TranslationCache

    key = (store["root"], store["host_id"])
    cache = _caches.get(key)
    if cache is None:
        # (the engine's process trims the cache when it opens it)
        cache = _caches[key] = TranslationCache(key[0], key[1], max_bytes=1 << 62)
    name = cache.store_object(obj)
    if name is None:
        return None
    for entries, sym, opt, hashes in store["regions"]:
        cache.store_entry_hashes(entries, sym, name, opt, hashes)
    return name


def _read_all(inp: BinaryIO, q: queue.SimpleQueue) -> None:
    # Requests are read as soon as they come (the engine's writes never wait for a compile);
    # None marks the end of the input.
    while True:
        try:
            req = _recv(inp)
        except (OSError, ValueError, pickle.UnpicklingError, EOFError):
            req = None
        q.put(req)
        if req is None:
            return


def _text(comp: Any, req: dict[str, Any]) -> str:
    """A module request's LLVM text: as sent, with the regions sent as code (`lower`) lowered
    here and added (once per request; a request whose lowering failed fails again, reported
    by the optimized compile)."""
    spec = req.get("lower")
    if spec:
        from polyvm.engine.jit import lower_remote

        texts, decls = lower_remote(spec)
        req["text"] = comp.module_text([*spec["funcs"], *texts], {**spec["decls"], **decls})
        del req["lower"]
    return req["text"]


def _quick(comp: Any, req: dict[str, Any]) -> bytes | None:
    """A hot module compiled the first tier's way, its functions renamed `<name>q`."""
    try:
        text = _text(comp, req)
    except Exception:  # noqa: BLE001 - the optimized compile reports it
        return None
    for sym in req["quick"]:
        text = text.replace(f"@{sym}(", f"@{sym}q(")
    try:
        return comp.compile(text, 0, account=False)
    except Exception:  # noqa: BLE001 - the optimized object still comes
        return None


def _full(comp: Any, req: dict[str, Any]) -> tuple[bytes | None, str | None, str | None]:
    """A request's real work: (object, cache object name, error)."""
    obj = name = err = None
    try:
        if "job" in req:
            from polyvm.engine.jit import translate_job

            translate_job(req["job"])  # (the reply only says it is done)
        elif "files" in req:
            from polyvm.engine.tcache import write_bundle

            written: set[str] = set().union(*(c.entries_written for c in _caches.values()))
            write_bundle(req["files"], skip=written)
        else:
            obj = comp.compile(_text(comp, req), req["opt"], account=False)
            if req.get("store") and os.path.isdir(req["store"]["root"]):
                try:
                    name = _store(req["store"], obj)
                except OSError:
                    name = None
    except Exception as e:  # noqa: BLE001 - reported to the engine, which stays on its code
        err = f"{type(e).__name__}: {e}"
    return obj, name, err


def configure_llvm(llvm: Any) -> None:
    """LLVM's process-wide options for the worker, which compiles nothing but polyvm's
    regions: LICM may assume one thread (`-licm-force-thread-model-single`). A region's guest
    state belongs to the thread running it, so keeping a hot loop's guest registers in host
    registers and storing them at the loop's exits (which inserts stores on paths that had
    none) is safe; without the option LICM does that only where capture tracking proves the
    state pointer uncaptured, which it gives up on past 100 uses: every region of real size.
    Guest memory is never promoted (every access has a slow-path call that may write it).
    Not set in the guest's own process, which may be embedded in a program using LLVM for
    code of its own. Fully warm bench runs at `--scale 4`, three alternating rounds: bench_int
    1.59-1.64 -> 1.54-1.57 s, bench_mem 2.53-2.64 -> 2.27-2.50 s, bench_float and
    bench_branch unchanged; hot compile time +26% on the bench programs' modules (cold runs
    unchanged within noise)."""
    llvm.set_option("", "-licm-force-thread-model-single")


def main() -> None:
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but replies goes to the pipe
    from polyvm.engine.jit import Compiler

    comp = Compiler.get()
    configure_llvm(comp.llvm)
    reqs: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=_read_all, args=(inp, reqs), daemon=True).start()
    replying = open_ = True
    # What is waiting, most urgent first: quick versions of hot modules (the guest runs on
    # slower code until they come; a tenth of an optimized compile each), then optimized
    # modules, then job files (work nobody waits for). A hot module that turns up while
    # another's optimized compile runs then gets its quick code after that compile, not after
    # every optimized compile queued before it.
    # Optimized modules go newest first while the engine is there.
    # A run's bundle of cache files (`submit_files`, sent as it exits) goes before all of
    # them: the next run may start at once and read them.
    files: deque[dict[str, Any]] = deque()
    quick: deque[dict[str, Any]] = deque()
    full: deque[dict[str, Any]] = deque()
    later: deque[dict[str, Any]] = deque()

    def take(block: bool) -> None:
        """Move what has come in to the queues (waiting for something if `block`)."""
        nonlocal open_
        while open_:
            try:
                req = reqs.get(block=block)
            except queue.Empty:
                return
            block = False
            if req is None:
                open_ = False
                quick.clear()  # (the engine is gone: quick code is never cached)
            elif "files" in req:
                files.append(req)
            elif "job" in req:
                later.append(req)
            else:
                if req.get("quick"):
                    quick.append(req)
                full.append(req)

    while True:
        take(block=not (files or quick or full or later))
        if quick and not files:
            req = quick.popleft()
            if replying:
                obj = _quick(comp, req)
                try:
                    _send(out, {"id": req["id"], "quick": True, "obj": obj})
                except OSError:
                    replying = False
            continue
        if files:
            req = files.popleft()
        elif full:
            # (the newest first while the engine waits: the code that turned hot last is the
            # program's current phase; a module sent earlier may be for a phase that is over)
            req = full.pop() if open_ else full.popleft()
        elif later:
            req = later.popleft()
        else:
            return  # (input closed and nothing left)
        t0 = time.perf_counter()
        obj, name, err = _full(comp, req)
        if replying:
            msg = {
                "id": req["id"],
                "obj": obj,
                "obj_name": name,
                "error": err,
                "seconds": time.perf_counter() - t0,
            }
            try:
                _send(out, msg)
            except OSError:
                replying = False  # the engine's process is gone: finish the rest for the cache


if __name__ == "__main__":
    main()
