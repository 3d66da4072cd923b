"""The CPU benchmark suite's guest programs (guest/bench_{int,float,mem,branch}.c) at a tiny scale:
polyvm's interpreter prints exactly what qemu-riscv64 prints, and bench/cpu_suite.py runs end to end.

Skipped without qemu-riscv64 (it supplies the expected output) or ziglang (it builds the guests).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QEMU = shutil.which("qemu-riscv64")
PROGRAMS = ["bench_int", "bench_float", "bench_mem", "bench_branch"]
SCALE = "0.001"  # shrinks the arrays too: about 0.2-4 M guest instructions each

pytestmark = pytest.mark.skipif(
    QEMU is None, reason="qemu-riscv64 is not installed (it gives the expected output)"
)


def _env() -> dict[str, str]:
    return dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
    )


def _build(name: str) -> Path:
    try:
        import ziglang  # noqa: F401
    except ImportError:
        pytest.skip("ziglang is not installed")
    from polyvm.testing.guest import build_guest

    return build_guest(name)


@pytest.mark.parametrize("name", PROGRAMS)
def test_program_matches_qemu(name: str) -> None:
    exe = str(_build(name))
    assert QEMU is not None
    q = subprocess.run([QEMU, exe, SCALE], capture_output=True, timeout=60)
    assert q.returncode == 0, q.stderr
    line = q.stdout.decode()
    assert line.startswith(name.removeprefix("bench_") + ": ") and line.count("\n") == 1, line
    assert "BROKEN" not in line  # bench_mem's permutation must be a single cycle
    v = subprocess.run(
        [sys.executable, "-m", "polyvm", "run", "-q", "--stats", "--engine", "interp", exe, SCALE],
        capture_output=True,
        timeout=120,
        env=_env(),
    )
    assert (v.returncode, v.stdout.decode()) == (0, line), v.stderr.decode()
    assert b" instructions in " in v.stderr


def _suite(*args: str, timeout: float) -> subprocess.CompletedProcess:
    """bench/cpu_suite.py on bench_int at the tiny scale, with `args`."""
    _build("bench_int")
    cmd = [sys.executable, str(ROOT / "bench" / "cpu_suite.py"), *args, "--scale", SCALE]
    return subprocess.run(
        [*cmd, "--programs", "bench_int"], capture_output=True, text=True, timeout=timeout, env=_env()
    )


def test_suite_script_runs() -> None:
    res = _suite("--engine", "interp", timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    row = next(line for line in res.stdout.splitlines() if line.startswith("bench_int "))
    cells = row.split()
    assert cells[1] == "interp" and cells[-1] == "ok", res.stdout
    assert "geomean" in res.stdout
    # the guest loop's own time (--stats) is part of the whole run's, and its ratio to QEMU's
    # wall time is that time over QEMU's (columns: QEMU s, polyvm s, ..., loop s, loop/QEMU)
    qemu, whole, loop, loop_ratio = float(cells[2]), float(cells[3]), float(cells[6]), cells[7]
    assert 0 < loop < whole, res.stdout
    # (from the printed times, each rounded to the millisecond, QEMU's only about ten of them
    # here: the ratio lies between the bounds those roundings allow, itself rounded to 0.01)
    h = 0.0005
    lo, hi = (loop - h) / (qemu + h), (loop + h) / (qemu - h)
    assert lo - 0.005 <= float(loop_ratio.rstrip("x")) <= hi + 0.005, res.stdout


def test_repeats_run_in_rounds() -> None:
    """--repeat N: N rounds of QEMU, then each engine and mode once (a cold run, then a warm
    one on the cache that cold run left), the best of each kept."""
    pytest.importorskip("llvmlite")
    res = _suite("--engine", "jit", "--cold-and-warm", "--repeat", "2", timeout=240)
    assert res.returncode == 0, res.stdout + res.stderr
    runs = [line for line in res.stderr.splitlines() if "QEMU this round" in line]
    assert [("(cold)" in r, "(warm)" in r) for r in runs] == [(True, False), (False, True)] * 2, res.stderr
    rows = [line.split() for line in res.stdout.splitlines() if line.startswith("bench_int ")]
    assert [(r[1], r[2], r[-1]) for r in rows] == [("jit", "(cold)", "ok"), ("jit", "(warm)", "ok")], (
        res.stdout
    )
    # (each row's time is the best of its two runs, as logged; "per round" the median of the
    # two rounds' ratios to the QEMU run of the same round, and their range)
    for row, mode in zip(rows, ("cold", "warm"), strict=True):
        times = [float(r.split(f"({mode}): ")[1].split()[0]) for r in runs if f"({mode})" in r]
        assert float(row[4]) == pytest.approx(min(times), abs=0.0006), (row, times)
        qemus = [float(r.split("QEMU this round: ")[1].split()[0]) for r in runs if f"({mode})" in r]
        ratios = [t / q for t, q in zip(times, qemus, strict=True)]
        median, span = row[-3], row[-2]
        # (the logged times are rounded to the millisecond, QEMU's only tens of them here: the
        # bounds those roundings allow, and the printed ratio's own rounding)
        h = 0.0005
        tol = max(r * (h / t + h / q) for r, t, q in zip(ratios, times, qemus, strict=True)) + 0.006
        assert float(median.rstrip("x")) == pytest.approx(sum(ratios) / 2, abs=tol), (row, ratios)
        lo, hi = (float(x) for x in span.strip("()").split("-"))
        assert (lo, hi) == (pytest.approx(min(ratios), abs=tol), pytest.approx(max(ratios), abs=tol)), row


def test_cold_runs_keep_only_the_per_host_objects(tmp_path) -> None:
    """A cold run starts without any translation of the program; what `polyvm cache prepare`
    made (v1/aux, the same for every program) stays unless --fresh-host."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import cpu_suite
    finally:
        sys.path.pop(0)
    for keep in (True, False):
        c = tmp_path / str(keep)
        for f in ("v1/aux/runtime-1.o", "v1/0123/ent/abc", "v1/0123/obj/def.o", "v1/0123/job-1", "other"):
            (c / f).parent.mkdir(parents=True, exist_ok=True)
            (c / f).write_bytes(b"x")
        cpu_suite.clear_translations(c, keep_host_objects=keep)
        left = sorted(str(p.relative_to(c)) for p in c.rglob("*")) if c.exists() else []
        assert left == (["v1", "v1/aux", "v1/aux/runtime-1.o"] if keep else [])


def test_the_suite_waits_for_its_own_runs_compile_workers_only() -> None:
    """Between runs the suite waits for the compile workers its polyvm runs left (marked by
    RUN_TAG in their environment), not for another process's (a test suite running beside it)."""
    import time

    sys.path.insert(0, str(ROOT / "bench"))
    import cpu_suite

    if not os.path.isdir("/proc/self"):
        pytest.skip("no /proc: the suite does not wait")
    sleeper = [sys.executable, "-c", "import time; time.sleep(1.5)", "polyvm.engine.cworker"]

    def started(p: subprocess.Popen) -> subprocess.Popen:
        """p once it runs the sleeper (until its exec, /proc shows this process's command)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10:
            with open(f"/proc/{p.pid}/cmdline", "rb") as f:
                if b"polyvm.engine.cworker" in f.read():
                    return p
            time.sleep(0.01)
        raise AssertionError("the sleeper did not start")

    foreign = started(subprocess.Popen(sleeper))
    try:
        t0 = time.monotonic()
        cpu_suite.wait_for_compile_workers(limit=10)
        assert time.monotonic() - t0 < 1.0 and foreign.poll() is None
    finally:
        foreign.wait()
    own = started(subprocess.Popen(sleeper, env=dict(os.environ, **{cpu_suite.RUN_TAG: str(os.getpid())})))
    try:
        cpu_suite.wait_for_compile_workers(limit=10)
        # It was exiting when the wait ended: its memory (and so /proc's command line) gone,
        # though not always reapable yet, so a moment's grace; a wait that returned at once
        # would leave it more than a second of its sleep.
        own.wait(timeout=0.5)
    finally:
        own.wait()
