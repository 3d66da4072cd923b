"""The command line: exit statuses, --trace, --stats, --timeout, Ctrl-C, bad input."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from polyvm.testing.guest import build_guest

POLYVM = [sys.executable, "-m", "polyvm"]


def polyvm(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*POLYVM, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def hello() -> str:
    return str(build_guest("hello"))


def test_run_passes_args_and_exit_status(hello: str) -> None:
    r = polyvm("run", hello, "one", "two words")
    assert r.returncode == 3  # hello.c returns 3
    assert r.stdout == "hello from riscv64 with 3 args\narg[1]=one\narg[2]=two words\n"
    assert r.stderr == ""


def test_the_installed_command_runs_a_guest(hello: str) -> None:
    """The `polyvm` console script (`cli.entry`: main, exit handlers, a quick exit) gives the
    guest's output and exit status, the statistics line written last on stderr included."""
    import shutil

    exe = shutil.which("polyvm", path=os.path.dirname(sys.executable)) or shutil.which("polyvm")
    if exe is None:
        pytest.skip("the polyvm command is not installed here")
    r = subprocess.run([exe, "run", "--stats", hello, "one"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 3
    assert r.stdout == "hello from riscv64 with 2 args\narg[1]=one\n"
    assert r.stderr.startswith("polyvm: ") and "instructions in" in r.stderr.splitlines()[-1]


def test_trace_and_stats_agree(hello: str) -> None:
    with open(hello, "rb") as f:
        entry = int.from_bytes(f.read(32)[24:32], "little")  # e_entry of an ELF64 header
    r = polyvm("run", "--trace", "--stats", hello)
    assert r.returncode == 3
    lines = r.stderr.splitlines()
    trace = [ln for ln in lines if re.match(r"0x[0-9a-f]{16}: ", ln)]
    assert trace[0].startswith(f"{entry:#018x}: ")
    stats = [ln for ln in lines if "instructions in" in ln]
    assert len(stats) == 1
    n = int(re.search(r"(\d+) instructions in", stats[0]).group(1))
    assert n == len(trace)  # one trace line per executed instruction
    assert "MIPS" in stats[0] and "blocks translated" in stats[0]
    # the last instruction executed is the ecall of exit_group
    assert trace[-1].split()[-1] == "ecall"


def test_bad_program_is_one_line_exit_2(tmp_path) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x7fELF" + b"\x02\x01\x01" + bytes(9) + b"\x02\x00\xf3\x00")  # truncated header
    for path in (str(bad), str(tmp_path / "missing")):
        r = polyvm("run", path)
        assert r.returncode == 2
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("polyvm: error: ")
        assert "Traceback" not in r.stderr


def test_timeout_stops_the_guest() -> None:
    spin = str(build_guest("spin"))
    t0 = time.monotonic()
    r = polyvm("run", "--timeout", "1", spin)
    assert r.returncode == 124 and r.stdout == "spinning\n"
    assert time.monotonic() - t0 < 30
    assert "Traceback" not in r.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_stops_the_guest_with_130() -> None:
    spin = str(build_guest("spin"))
    p = subprocess.Popen([*POLYVM, "run", spin], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None
    assert p.stdout.readline() == "spinning\n"
    os.kill(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 1


def _tiny_elf(vaddr: int) -> bytes:
    """A minimal static riscv64 ELF: one PT_LOAD of 4 bytes (an ecall) at vaddr."""
    import struct

    ehdr = b"\x7fELF\x02\x01\x01" + bytes(9)
    ehdr += struct.pack("<HHIQQQIHHHHHH", 2, 243, 1, vaddr, 64, 0, 0, 64, 56, 1, 64, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0x1000, vaddr, vaddr, 4, 4, 0x1000)
    return (ehdr + phdr).ljust(0x1000, b"\0") + struct.pack("<I", 0x00000073)


def test_bad_inputs_are_one_line(tmp_path) -> None:
    from polyvm.linux.loader import STACK_TOP

    stacky = tmp_path / "stacky"
    stacky.write_bytes(_tiny_elf(STACK_TOP - 0x2000))
    hello = str(build_guest("hello"))
    cases = [
        (["run", "/dev/zero"], "not a regular file"),
        (["run", str(tmp_path)], "Is a directory"),
        (["run", str(stacky)], "overlaps the stack"),
        (["run", "--root", str(tmp_path / "nope"), hello], "not a directory"),
        (["run", "--timeout", "0", hello], "positive number"),
    ]
    for args, text in cases:
        r = polyvm(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and text in r.stderr, (args, r.stderr)
