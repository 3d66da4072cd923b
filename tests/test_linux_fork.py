"""Processes: a guest fork is a host fork (guest/t_fork.c), as in qemu-user.

Expected outputs are written by hand from POSIX/Linux semantics (wait status layout, SIGCHLD's
siginfo, pipe EOF and SIGPIPE) and were checked against qemu-riscv64 where qemu can run the
mode (not for execve: qemu-user execs through the host, which needs binfmt_misc for riscv64).
Forked children live inside this pytest process's run(); they must end with os._exit and never
come back into pytest, which test_child_never_returns_into_caller checks.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from polyvm.linux import Process
from polyvm.linux import syscalls as sc
from polyvm.testing.guest import build_guest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the host has no fork")


def run_fork(mode: str, tmp_path: Path, *, timeout: float = 60, **kw) -> tuple[int, str, str]:
    exe = build_guest("t_fork")
    hello = build_guest("hello")
    out, err = tmp_path / f"{mode}.out", tmp_path / f"{mode}.err"
    me = os.getpid()
    with open(out, "wb") as fo, open(err, "wb") as fe:
        p = Process.from_file(
            exe,
            ["t_fork", mode, str(hello)],
            env={"PATH": "/bin"},
            stdout=fo.fileno(),
            stderr=fe.fileno(),
            **kw,
        )
        status = p.run(timeout=timeout)
    assert os.getpid() == me  # only the parent comes back here
    return status, out.read_text(), err.read_text()


def test_fork_exit_statuses(tmp_path: Path) -> None:
    status, out, err = run_fork("basic", tmp_path)
    assert (status, err) == (0, "")
    assert out == (
        "child: ppid ok 1, new pid 1\n"
        "exit 7: pid ok 1 exited 7\n"
        "sigkill: pid ok 1 signaled 9\n"
        "abort: pid ok 1 signaled 6\n"
        "segv: pid ok 1 signaled 11\n"
        "return 300: pid ok 1 exited 44\n"
        "no more children: -1 errno=10\n"
        "wait bad pid: -1 errno=10\n"
        "memory copied: parent x=1 child exit 2\n"
    )


def test_pipes_between_processes(tmp_path: Path) -> None:
    status, out, err = run_fork("pipe", tmp_path)
    assert (status, err) == (0, "")
    assert out == (
        "read 200000 bytes, content ok 1, eof 0\n"  # more than a pipe holds: both sides block in turn
        "writer: pid ok 1 exited 0\n"
        "sigpipe: pid ok 1 signaled 13\n"
        "answer: 9 PING PONG\n"
    )


def test_fork_execve_vfork_posix_spawn(tmp_path: Path) -> None:
    status, out, err = run_fork("exec", tmp_path)
    assert (status, err) == (0, "")
    assert out == (
        "hello from riscv64 with 3 args\narg[1]=x\narg[2]=y z\n"
        "exec hello: pid ok 1 exited 3\n"
        "execve failed: errno=2\n"
        "exec missing: pid ok 1 exited 127\n"
        "hello from riscv64 with 1 args\n"  # vfork: the parent waits for the child's execve
        "vfork exec: pid ok 1 exited 3\n"
        "hello from riscv64 with 2 args\narg[1]=spawned\n"
        "posix_spawn: 0\n"  # (printed after the wait: the spawned child's output comes first)
        "spawned: pid ok 1 exited 3\n"
        "posix_spawn missing: 2\n"  # musl reports the child's execve error through a pipe
    )


def test_wnohang_wait_any_waitid(tmp_path: Path) -> None:
    status, out, err = run_fork("wnohang", tmp_path)
    assert (status, err) == (0, "")
    assert out == (
        "wnohang at once: 0\n"
        "polled several times: 1\n"
        "wnohang: pid ok 1 exited 5\n"
        "wait any: 0xe, then -1\n"
        "waitid nowait: 0 code=1 status=33 pid ok 1 signo=17\n"  # CLD_EXITED
        "waitid: 0 code=1 status=33 pid ok 1\n"
        "waitid wnohang: 0 pid=0\n"
    )


def test_sigchld_handler_and_kill(tmp_path: Path) -> None:
    status, out, err = run_fork("sigchld", tmp_path)
    assert (status, err) == (0, "")
    assert out == (
        "sigchld: sig=17 code=1 status=9 pid ok 1\n"
        "reaped: pid ok 1 exited 9\n"
        "waitpid with handler: pid ok 1 exited 2\n"
        "handler ran: 1\n"
        "default sigchld: pid ok 1 exited 4\n"
        "kill usr1: 0\n"
        "usr1 handler: pid ok 1 exited 42\n"  # a host signal to the child runs its guest handler
        "kill 0: 0\n"
        "kill term: 0\n"
        "sigterm: pid ok 1 signaled 15\n"
        "kill reaped: -1 errno=3\n"
    )


def test_blocking_wait_keeps_other_threads_running(tmp_path: Path) -> None:
    status, out, err = run_fork("threads", tmp_path)
    assert (status, err) == (0, "")
    assert out == "thread ran during waitpid: 1\nchild of threaded: pid ok 1 exited 6\n"


def test_child_never_returns_into_caller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A child whose polyvm code raises (here: SystemExit from a syscall) still ends in os._exit."""
    parent = os.getpid()
    real = sc.IMPL["getppid"]

    def getppid(p, t, *a):
        if os.getpid() != parent:
            raise SystemExit(0)  # not an Exception: dispatch lets it through to run()
        return real(p, t, *a)

    monkeypatch.setitem(sc.IMPL, "getppid", getppid)
    marker = tmp_path / "marker"
    status, out, err = run_fork("basic", tmp_path)
    with open(marker, "a") as f:
        f.write(f"{os.getpid()}\n")
    assert marker.read_text() == f"{parent}\n"
    assert status == 0
    assert out.startswith("exit 7: pid ok 1 exited 125\n")
    assert "polyvm: internal error in forked child" in err


def test_timeout_kills_children(tmp_path: Path) -> None:
    t0 = time.monotonic()
    status, out, err = run_fork("hang", tmp_path, timeout=1.5)
    assert status == 124 and "timeout" in err
    assert time.monotonic() - t0 < 20
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("child ")
    child = int(lines[0].split()[1])
    with pytest.raises(ProcessLookupError):  # killed and reaped, no zombie left behind
        os.kill(child, 0)


def test_strace_names_the_child(tmp_path: Path) -> None:
    status, out, err = run_fork("threads", tmp_path, strace=True)
    assert status == 0
    pids = {line.split()[0] for line in err.splitlines() if line.split() and line.split()[0].isdigit()}
    assert len(pids) >= 2  # the parent's lines and the child's, each with its own pid
