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
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
import time
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

    __slots__ = ("done", "obj", "obj_name", "error", "seconds")

    def __init__(self) -> None:
        self.done = False
        self.obj: bytes | None = None
        self.obj_name: str | None = None  # the cache object it was stored as, if any
        self.error: str | None = None
        self.seconds = 0.0


class CompileWorker:
    """The main process's handle on its worker (started on first use; one per process)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.pid = 0
        self.jobs: dict[int, Job] = {}
        self._next = 0
        self._lock = threading.Lock()
        self._out: queue.SimpleQueue | None = None
        self._unsent = 0
        self._sent = threading.Condition(self._lock)
        self._atexit = False
        self.deaths = 0  # workers lost (crashed or killed) in this process

    def _start(self) -> None:
        if self.proc is not None and self.pid != os.getpid():
            # A forked child (a guest fork): the parent's pipes are not ours to use.
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    if f is not None:
                        f.close()
                except OSError:
                    pass
            self.jobs = {}
        import polyvm

        env = dict(os.environ)
        src = os.path.dirname(os.path.dirname(os.path.abspath(polyvm.__file__)))
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "polyvm.engine.cworker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        if not self._atexit:
            atexit.register(self.flush)
            self._atexit = True
        self.pid = os.getpid()
        self._unsent = 0
        self._out = queue.SimpleQueue()
        threading.Thread(target=self._writer, args=(self.proc, self._out), daemon=True).start()
        threading.Thread(target=self._reader, args=(self.proc,), daemon=True).start()

    def alive(self) -> bool:
        return self.proc is not None and self.pid == os.getpid() and self.proc.poll() is None

    @property
    def usable(self) -> bool:
        """False once workers keep dying (then the engine compiles in place)."""
        return self.deaths < 3

    def submit(self, text: str, opt: int, store: dict[str, Any] | None = None) -> Job:
        """Compile `text` at `opt`; with `store` (cache root, host id, regions and page
        hashes) the worker also writes the result to the translation cache. Raises OSError
        if no worker can be started."""
        if not self.alive():
            self._start()
        job = Job()
        with self._lock:
            self._next += 1
            jid = self._next
            self.jobs[jid] = job
            self._unsent += 1
        assert self._out is not None
        self._out.put({"id": jid, "text": text, "opt": opt, "store": store})
        return job

    def _writer(self, proc: subprocess.Popen, q: queue.SimpleQueue) -> None:
        # Its own thread: a big module fills the pipe while the worker is busy with the last.
        ok = True
        while True:
            msg = q.get()
            if ok:
                try:
                    assert proc.stdin is not None
                    _send(proc.stdin, msg)
                except (OSError, ValueError):
                    ok = False
            with self._lock:
                self._unsent -= 1
                self._sent.notify_all()

    def flush(self, timeout: float = 5.0) -> None:
        """Wait (at most `timeout` s) until every submission has reached the worker: at exit,
        so that what is still compiling ends up in the cache."""
        if self.pid != os.getpid():
            return
        with self._lock:
            self._sent.wait_for(lambda: self._unsent <= 0, timeout)

    def _reader(self, proc: subprocess.Popen) -> None:
        f = proc.stdout
        while True:
            try:
                msg = _recv(f) if f is not None else None
            except (OSError, ValueError, pickle.UnpicklingError, EOFError):
                msg = None
            if msg is None:
                break
            with self._lock:
                job = self.jobs.pop(msg["id"], None)
            if job is not None:
                job.obj, job.obj_name, job.error = msg["obj"], msg["obj_name"], msg["error"]
                job.seconds = msg["seconds"]
                job.done = True
        # The worker is gone: whatever it had is lost.
        with self._lock:
            lost, self.jobs = list(self.jobs.values()), {}
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


def main() -> None:
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but replies goes to the pipe
    from polyvm.engine.jit import Compiler

    comp = Compiler.get()
    reqs: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=_read_all, args=(inp, reqs), daemon=True).start()
    replying = True
    while True:
        req = reqs.get()
        if req is None:
            return
        t0 = time.perf_counter()
        obj = name = err = None
        try:
            obj = comp.compile(req["text"], req["opt"], account=False)
            if req.get("store") and os.path.isdir(req["store"]["root"]):
                try:
                    name = _store(req["store"], obj)
                except OSError:
                    name = None
        except Exception as e:  # noqa: BLE001 - reported to the engine, which stays on its code
            err = f"{type(e).__name__}: {e}"
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
