"""Scheduling, blocking, timeouts, stopping, strace and isolation of Linux processes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from polyvm.linux import Process
from polyvm.testing.guest import build_guest

ROOT = Path(__file__).resolve().parents[1]


def make(name: str, *args: str, tmp_path: Path, tag: str = "", **kw) -> tuple[Process, Path, Path]:
    out, err = tmp_path / f"{name}{tag}.out", tmp_path / f"{name}{tag}.err"
    with open(out, "wb") as fo, open(err, "wb") as fe:
        p = Process.from_file(
            build_guest(name), [name, *args], env={}, stdout=fo.fileno(), stderr=fe.fileno(), **kw
        )
    return p, out, err


def test_two_processes_interleaved(tmp_path: Path) -> None:
    a, out_a, _ = make("t_block", "alpha", tmp_path=tmp_path, tag="a")
    b, out_b, _ = make("t_block", "beta", tmp_path=tmp_path, tag="b")
    done: dict[str, int] = {}
    while len(done) < 2:
        for name, p in (("a", a), ("b", b)):
            if name not in done:
                st = p.run(max_slices=1)
                if st is not None:
                    done[name] = st
    assert done == {"a": 0, "b": 0}
    assert out_a.read_text() == "count alpha\n" + "".join(f"alpha {i}\n" for i in range(5))
    assert out_b.read_text() == "count beta\n" + "".join(f"beta {i}\n" for i in range(5))
    assert a.mem is not b.mem and a.engine is not b.engine


def test_two_processes_on_host_threads(tmp_path: Path) -> None:
    procs = [make("t_threads", tmp_path=tmp_path, tag=str(i)) for i in range(2)]
    results: list[int | None] = [None, None]

    def go(i: int) -> None:
        results[i] = procs[i][0].run(timeout=120)

    ths = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    assert results == [0, 0]
    for _, out, _ in procs:
        assert out.read_text().startswith("sum: 8004000 (expect 8004000)\n")


def test_deadlock_is_reported(tmp_path: Path) -> None:
    p, _, err = make("t_block", "futex", tmp_path=tmp_path)
    assert p.run(timeout=30) == 125
    assert "polyvm: deadlock: every guest thread is blocked forever" in err.read_text()


def test_timeout_while_sleeping_and_spinning(tmp_path: Path) -> None:
    for mode in ("sleep", "spin"):
        p, _, err = make("t_block", mode, tmp_path=tmp_path, tag=mode)
        assert p.run(timeout=0.5) == 124
        assert "polyvm: timeout" in err.read_text()


def test_request_stop_from_another_thread(tmp_path: Path) -> None:
    p, _, err = make("t_block", "spin", tmp_path=tmp_path)
    threading.Timer(0.3, p.request_stop).start()
    assert p.run(timeout=60) == 130
    assert "interrupted" in err.read_text()


def test_thread_blocked_on_pipe_does_not_stall_others(tmp_path: Path) -> None:
    p, out, _ = make("t_block", "pipe", tmp_path=tmp_path)
    assert p.run(timeout=60) == 0
    assert out.read_text() == "reader got: late data\n"


def test_stdin_from_host_pipe(tmp_path: Path) -> None:
    r, w = os.pipe()
    os.write(w, b"typed")
    os.close(w)
    p, out, _ = make("t_block", "stdin", tmp_path=tmp_path, stdin=r)
    os.close(r)
    assert p.run(timeout=60) == 0
    assert out.read_text() == "stdin: typed\n"


def test_strace(tmp_path: Path) -> None:
    p, out, err = make("hello", "x", tmp_path=tmp_path, strace=True)
    assert p.run(timeout=60) == 3
    lines = err.read_text().splitlines()
    pid = str(os.getpid())
    assert all(line.startswith(pid + " ") for line in lines), lines
    assert any(" writev(1," in line and line.endswith(" = 31") for line in lines), lines
    assert lines[-1] == f"{pid} exit_group(3)"
    assert p.instructions > 1000


def test_cli_run_and_load_error(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    hello = build_guest("hello")
    r = subprocess.run(
        [sys.executable, "-m", "polyvm", "run", str(hello), "z"], capture_output=True, env=env, timeout=120
    )
    assert r.returncode == 3 and r.stdout == b"hello from riscv64 with 2 args\narg[1]=z\n", r.stderr
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x7fELF" + bytes(10))
    r = subprocess.run(
        [sys.executable, "-m", "polyvm", "run", str(bad)], capture_output=True, env=env, timeout=120
    )
    assert r.returncode == 2
    assert len(r.stderr.decode().strip().splitlines()) == 1 and b"Traceback" not in r.stderr


def test_execve_replaces_the_program(tmp_path: Path) -> None:
    hello = str(build_guest("hello"))
    p, out, err = make("t_block", "exec", hello, tmp_path=tmp_path)
    assert p.run(timeout=60) == 3, err.read_text()
    assert out.read_text() == "hello from riscv64 with 2 args\narg[1]=from-exec\n"
    p, out, err = make("t_block", "exec", str(tmp_path / "missing"), tmp_path=tmp_path, tag="missing")
    assert p.run(timeout=60) == 1
    assert "No such file or directory" in err.read_text()
