"""Support for polyvm's own tests and benchmarks (guest builds, fixtures)."""


def byte_compile() -> None:
    """Write polyvm's bytecode caches (`__pycache__`), as installing a wheel does: a benchmark
    that times polyvm's start-up must not time Python compiling polyvm's sources (an editable
    install under PYTHONDONTWRITEBYTECODE=1 would, on every start)."""
    import compileall
    import os

    compileall.compile_dir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), quiet=1)


def wait_for_compile_workers(mark: str, limit: float = 120.0) -> None:
    """Wait (at most `limit` s) until no polyvm compile worker whose environment holds the
    entry `mark` ("NAME=value") is left. A worker finishes the compiles and the cache files it
    was sent after its run exits (an orphan by then, so no parent says when): a benchmark's
    next run should not compete with it for a core, a test counting cache files should not
    count while it writes. Runs tagged with a mark of their own are waited for, no other
    process's. Linux only (/proc); elsewhere it returns at once."""
    import os
    import time

    if not os.path.isdir("/proc/self"):
        return
    want = mark.encode()
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        busy = False
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"polyvm.engine.cworker" not in f.read():
                        continue
                with open(f"/proc/{pid}/environ", "rb") as f:
                    busy = want in f.read().split(b"\0")
            except OSError:
                continue
            if busy:
                break
        if not busy:
            return
        time.sleep(0.05)
