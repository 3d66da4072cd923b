#!/usr/bin/env python3
"""CPU benchmark suite: polyvm against qemu-riscv64 on four riscv64 guest programs.

    python bench/cpu_suite.py [--engine jit|interp|interp,jit] [--scale F] [--repeat N]
                              [--cache DIR] [--cold | --cold-and-warm] [--timeout S]
                              [--programs bench_int,...] [--json FILE]

The programs (guest/bench_*.c, built for riscv64 with ziglang and cached):

  bench_int     CRC-32, a 64-bit hash, an integer matrix product, bit tricks, modular powers
  bench_float   n-body, double and float matrix products (fmadd), a float polynomial/sqrt
                kernel (fdiv, fsqrt), Mandelbrot
  bench_mem     streaming sum/copy/triad over 32 MiB, strided reads, memcpy/memset, pointer
                chasing through a 16 MiB single-cycle permutation
  bench_branch  a switch-dispatched bytecode interpreter, binary search, quicksort, a lexer
                state machine

Each takes an optional scale (default 1.0: about 0.5-2 s under qemu-riscv64 on a 2-core x86-64
box; below 1 the arrays shrink too, so `--scale 0.001` runs in seconds under the interpreter).
Every program runs under `qemu-riscv64` and under `python -m polyvm run -q --stats --engine E`
for each engine, in rounds (QEMU, then each engine and mode once; --repeat rounds); wall-clock
times are the best of the rounds (and "loop s", polyvm's own --stats time of that run's guest
loop: translation included, Python's start-up and the ELF's loading not, against QEMU's whole
wall time in "loop/QEMU"). "per round" is the median (and range) of each round's polyvm time
over that round's QEMU time: on a machine whose speed drifts between minutes, runs seconds
apart are compared. polyvm's stdout and exit status must equal QEMU's: a difference is
reported as MISMATCH and the exit status is 1.

--cache DIR sets POLYVM_CACHE_DIR for the polyvm runs (the JIT's persistent translation cache).
--cold deletes the programs' translations from that directory before every polyvm run;
--cold-and-warm times each engine cold and then warm (the cache left by that round's cold run). What
polyvm compiles once per machine whatever the program (`polyvm cache prepare`: the dispatcher
and the FP helpers' fast paths, timed and printed) is made before the timed runs and kept, as a
machine that has run polyvm before has it; --fresh-host deletes it too (cold: an empty cache
directory, as on a machine polyvm never ran on). Without --cache, --cold/--cold-and-warm use a
temporary directory, removed at exit. A polyvm run's time
ends when the process exits; the hot-tier compiles its compile worker is still finishing then
(they go to the cache) are waited for outside the timing, before the next run starts.

Exit status: 0 all outputs match, 1 a mismatch, failure or timeout, 2 a setup error (no QEMU,
build failure).
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from polyvm import testing  # noqa: E402
from polyvm.testing.guest import GuestBuildError, build_guest  # noqa: E402

PROGRAMS = ("bench_int", "bench_float", "bench_mem", "bench_branch")
STATS_RE = re.compile(r"polyvm: (\d+) instructions in ([\d.]+) s \(([\d.]+) MIPS\)")


@dataclass
class Run:
    seconds: float  # best wall-clock time
    stdout: bytes
    stderr: bytes
    returncode: int


@dataclass
class Row:
    program: str
    engine: str
    mode: str  # "", "cold" or "warm"
    qemu_s: float
    polyvm_s: float | None
    instructions: int | None
    guest_s: float | None  # polyvm's own --stats time for the guest loop
    status: str  # "ok", "MISMATCH", "FAILED", "TIMEOUT"
    # polyvm's time over QEMU's in each round (the QEMU run just before it): on a machine
    # whose speed drifts, a round's ratio compares runs made within seconds of each other
    round_ratios: list[float] = field(default_factory=list)

    @property
    def round_ratio(self) -> float | None:
        """The median of the per-round ratios."""
        r = sorted(self.round_ratios)
        if not r:
            return None
        return r[len(r) // 2] if len(r) % 2 else (r[len(r) // 2 - 1] + r[len(r) // 2]) / 2

    @property
    def ratio(self) -> float | None:
        return self.polyvm_s / self.qemu_s if self.polyvm_s and self.qemu_s > 0 else None

    @property
    def loop_ratio(self) -> float | None:
        """polyvm's guest loop (`--stats`: from the first guest instruction to the exit, its
        translation included, Python's start-up and the ELF's loading not) against QEMU's
        whole wall time."""
        return self.guest_s / self.qemu_s if self.guest_s and self.qemu_s > 0 else None


class Timeout(Exception):
    pass


def timed(cmd: list[str], *, env: dict[str, str], timeout: float, before=None) -> tuple[float, Run]:
    if before is not None:
        before()
    t0 = time.perf_counter()
    try:
        res = subprocess.run(cmd, capture_output=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise Timeout(f"{' '.join(cmd)} ran past {timeout:g} s") from e
    dt = time.perf_counter() - t0
    wait_for_compile_workers()
    return dt, Run(dt, res.stdout, res.stderr, res.returncode)


def clear_translations(cache: Path, keep_host_objects: bool = True) -> None:
    """Empty a polyvm cache directory (POLYVM_CACHE_DIR) but for its per-host objects (v1/aux:
    `polyvm cache prepare`'s, the same for every program) if keep_host_objects."""
    if not keep_host_objects:
        shutil.rmtree(cache, ignore_errors=True)
        return
    for top in cache.glob("*"):
        for d in [top] if top.name != "v1" else [p for p in top.glob("*") if p.name != "aux"]:
            if d.is_dir():
                shutil.rmtree(d, ignore_errors=True)
            else:
                d.unlink(missing_ok=True)


# Set in the environment of every polyvm run of this script: their compile workers inherit it,
# so that `wait_for_compile_workers` waits for those and for no other process's.
RUN_TAG = "POLYVM_BENCH_RUN"


def wait_for_compile_workers(limit: float = 120.0) -> None:
    """polyvm's compile worker finishes the hot-tier compiles it was sent after the run exits
    (writing them to the cache): wait for it (untimed), so the next run neither competes with
    it for a core nor misses what it was about to cache. The workers are this script's runs'
    (their environment holds RUN_TAG with this process's id): another process's polyvm, a
    test suite's next door, is not waited for. Linux only (/proc); elsewhere no-op."""
    testing.wait_for_compile_workers(f"{RUN_TAG}={os.getpid()}", limit)


def tail(b: bytes, lines: int = 15) -> str:
    text = b.decode(errors="replace").rstrip("\n").splitlines()
    return "\n".join("    " + line for line in text[-lines:]) or "    (empty)"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _per_round(r: Row) -> str:
    m = r.round_ratio
    if m is None:
        return "-"
    if len(r.round_ratios) == 1:
        return f"{m:.2f}x"
    return f"{m:.2f}x ({min(r.round_ratios):.2f}-{max(r.round_ratios):.2f})"


def _geomean(xs: list[float]) -> float:
    return math.exp(sum(map(math.log, xs)) / len(xs))


def print_table(rows: list[Row]) -> None:
    head = (
        "program",
        "engine",
        "QEMU s",
        "polyvm s",
        "polyvm/QEMU",
        "QEMU/polyvm",
        "loop s",
        "loop/QEMU",
        "guest insns",
        "MIPS",
        "per round",
        "status",
    )
    left = {0, 1, 11}  # left-aligned columns
    body = []
    for r in rows:
        mips = r.instructions / r.polyvm_s / 1e6 if r.instructions and r.polyvm_s else None
        ratio = r.ratio
        body.append(
            (
                r.program,
                f"{r.engine} ({r.mode})" if r.mode else r.engine,
                f"{r.qemu_s:.3f}",
                fmt(r.polyvm_s, ".3f"),
                fmt(ratio, ".2f") + ("x" if ratio else ""),
                fmt(1 / ratio if ratio else None, ".3f") + ("x" if ratio else ""),
                fmt(r.guest_s, ".3f"),
                fmt(r.loop_ratio, ".2f") + ("x" if r.loop_ratio else ""),
                "-" if r.instructions is None else f"{r.instructions:,}",
                fmt(mips, ".1f"),
                _per_round(r),
                r.status,
            )
        )
    # geometric mean of the ratios per engine (and mode), over the programs that matched QEMU
    groups: dict[str, list[tuple[float, float | None, float | None]]] = {}
    for r in rows:
        if r.ratio and r.status == "ok":
            groups.setdefault(f"{r.engine} ({r.mode})" if r.mode else r.engine, []).append(
                (r.ratio, r.loop_ratio, r.round_ratio)
            )
    for engine, pairs in groups.items():
        g = _geomean([a for a, _, _ in pairs])
        loops = [b for _, b, _ in pairs if b]
        gl = _geomean(loops) if len(loops) == len(pairs) else None
        rounds = [c for _, _, c in pairs if c]
        gr = _geomean(rounds) if len(rounds) == len(pairs) else None
        body.append(
            (
                "geomean",
                engine,
                "",
                "",
                f"{g:.2f}x",
                f"{1 / g:.3f}x",
                "",
                fmt(gl, ".2f") + ("x" if gl else ""),
                "",
                "",
                fmt(gr, ".2f") + ("x" if gr else ""),
                f"{len(pairs)} program{'s' * (len(pairs) > 1)}",
            )
        )
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    print(line(head))
    print("-" * len(line(head)))
    for b in body:
        print(line(b))
    print(
        "polyvm/QEMU: wall-time ratio (lower is better); QEMU/polyvm: polyvm's throughput relative to QEMU;"
    )
    print("MIPS: polyvm guest instructions per wall-clock second of the whole run (startup included).")
    print("per round: the median of each round's polyvm/QEMU (that round's QEMU run), with their range;")
    print("the geomean row: of those medians.")
    print("loop s: polyvm's own --stats time of the guest loop (its translation included; Python's start-up")
    print("and loading the ELF not); loop/QEMU: that against QEMU's whole wall time (lower is better).")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    ap.add_argument("--engine", default="jit", help="polyvm engine(s), comma-separated (default: jit)")
    ap.add_argument(
        "--scale", type=float, help="scale factor passed to every program (default: the programs' 1.0)"
    )
    ap.add_argument(
        "--repeat", type=int, default=1, help="timed runs of each command; the best is kept (default 1)"
    )
    ap.add_argument("--cache", metavar="DIR", help="POLYVM_CACHE_DIR for the polyvm runs")
    ap.add_argument("--cold", action="store_true", help="delete the cache dir before each polyvm run")
    ap.add_argument("--cold-and-warm", action="store_true", help="time each engine cold, then warm")
    ap.add_argument(
        "--fresh-host",
        action="store_true",
        help="cold runs start from an empty cache dir (no `polyvm cache prepare` objects either)",
    )
    ap.add_argument("--timeout", type=float, default=600, help="seconds allowed for one run (default 600)")
    ap.add_argument(
        "--programs", default=",".join(PROGRAMS), help=f"comma-separated subset of {','.join(PROGRAMS)}"
    )
    ap.add_argument("--qemu", default=None, help="path of qemu-riscv64 (default: found on PATH)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    a = ap.parse_args(argv)
    testing.byte_compile()  # (polyvm timed as installed, not compiling its own sources)

    engines = [e.strip() for e in a.engine.split(",") if e.strip()]
    programs = [p.strip() for p in a.programs.split(",") if p.strip()]
    if not engines:
        ap.error("--engine: no engine given")
    if unknown := [p for p in programs if p not in PROGRAMS]:
        ap.error(f"--programs: unknown {', '.join(unknown)} (choose from {', '.join(PROGRAMS)})")
    if a.repeat < 1:
        ap.error("--repeat must be at least 1")
    if a.scale is not None and not a.scale > 0:
        ap.error("--scale must be positive")

    qemu = a.qemu or shutil.which("qemu-riscv64")
    if qemu is None or not os.access(qemu, os.X_OK):
        log(
            "cpu_suite: error: qemu-riscv64 not found"
            + (f" at {a.qemu}" if a.qemu else " on PATH")
            + ": install QEMU user-mode emulation (Debian/Ubuntu: apt-get install qemu-user) or pass --qemu PATH"
        )
        return 2

    modes = ["cold", "warm"] if a.cold_and_warm else ["cold"] if a.cold else [""]
    cache = a.cache
    if (a.cold or a.cold_and_warm) and cache is None:
        cache = tempfile.mkdtemp(prefix="polyvm-bench-cache-")
        atexit.register(shutil.rmtree, cache, True)
        log(f"cpu_suite: no --cache given: using {cache} as POLYVM_CACHE_DIR (removed at exit)")

    def clear_cache() -> None:
        assert cache is not None
        clear_translations(Path(cache), keep_host_objects=not a.fresh_host)

    base_env = dict(os.environ)
    base_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))
    vm_env = dict(base_env)
    vm_env[RUN_TAG] = str(os.getpid())  # (see wait_for_compile_workers)
    if cache is not None:
        vm_env["POLYVM_CACHE_DIR"] = str(Path(cache).resolve())

    qver = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout.splitlines()
    print(
        f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs, python {platform.python_version()}"
    )
    print(f"qemu: {qemu} ({qver[0] if qver else 'version unknown'})")
    print(
        f"engines: {','.join(engines)}  scale: {a.scale if a.scale is not None else 'default (1.0)'}  "
        f"repeat: best of {a.repeat}  cache: {vm_env.get('POLYVM_CACHE_DIR', '(polyvm default)')}"
        + (f"  modes: {'/'.join(modes)}" if modes != [""] else "")
    )

    if (a.cold or a.cold_and_warm) and not a.fresh_host and any(e != "interp" for e in engines):
        t0 = time.perf_counter()
        p = subprocess.run(
            [sys.executable, "-m", "polyvm", "cache", "prepare"], env=vm_env, capture_output=True, text=True
        )
        print(
            f"host objects: `polyvm cache prepare` {time.perf_counter() - t0:.2f} s (once per machine; kept)"
            if p.returncode == 0
            else f"host objects: `polyvm cache prepare` failed: {p.stderr.strip()}"
        )

    binaries: dict[str, Path] = {}
    for name in programs:
        try:
            binaries[name] = build_guest(name)
        except (GuestBuildError, FileNotFoundError) as e:
            log(f"cpu_suite: error: cannot build guest/{name}.c: {e}")
            return 2

    scale_args = [] if a.scale is None else [repr(a.scale)]
    rows: list[Row] = []
    failed = False
    for name in programs:
        exe = str(binaries[name])
        # Rounds: QEMU, then every engine and mode once, again for each --repeat, the best
        # run of each kept: a machine whose speed drifts (memory bandwidth on a shared host
        # moved bench_mem's QEMU time from 2.0 to 3.0 s within minutes) then weighs on both
        # sides of a ratio alike, not on whichever side ran during the slow minute.
        jobs: list[tuple[str, str]] = [(e, m) for e in engines for m in modes]
        best: dict[tuple[str, str], Run] = {}
        per_round: dict[tuple[str, str], list[float]] = {}
        bad: dict[tuple[str, str], str] = {}  # job -> why it stopped (a mismatch, a failure)
        q: Run | None = None
        for _ in range(a.repeat):
            try:
                run = timed([qemu, exe, *scale_args], env=base_env, timeout=a.timeout)[1]
            except Timeout as e:
                log(f"{name}: QEMU TIMEOUT: {e}")
                q = None
                break
            if q is not None and (run.stdout, run.returncode) != (q.stdout, q.returncode):
                log(f"{name}: QEMU's output differs between rounds: no reference to compare with")
                q = None
                break
            if q is None or run.seconds < q.seconds:
                q = run
            if q.returncode != 0:
                break
            for engine, mode in jobs:
                if (engine, mode) in bad:
                    continue
                cmd = [
                    sys.executable,
                    "-m",
                    "polyvm",
                    "run",
                    "-q",
                    "--stats",
                    "--engine",
                    engine,
                    exe,
                    *scale_args,
                ]
                label = f"{name}: polyvm --engine {engine}" + (f" ({mode})" if mode else "")
                try:
                    v = timed(
                        cmd, env=vm_env, timeout=a.timeout, before=clear_cache if mode == "cold" else None
                    )[1]
                except Timeout as e:
                    log(f"{label}: TIMEOUT: {e}")
                    bad[engine, mode] = "TIMEOUT"
                    continue
                if v.returncode != q.returncode and not v.stdout:
                    log(f"{label}: FAILED (exit status {v.returncode}); stderr:\n{tail(v.stderr)}")
                    bad[engine, mode] = "FAILED"
                    continue
                if (v.stdout, v.returncode) != (q.stdout, q.returncode):
                    log(
                        f"{label}: MISMATCH with QEMU\n  qemu   (exit {q.returncode}): {q.stdout[:2000]!r}\n"
                        f"  polyvm (exit {v.returncode}): {v.stdout[:2000]!r}\n  polyvm stderr:\n{tail(v.stderr)}"
                    )
                    bad[engine, mode] = "MISMATCH"
                    continue
                log(f"{label}: {v.seconds:.3f} s (QEMU this round: {run.seconds:.3f} s), same output")
                per_round.setdefault((engine, mode), []).append(v.seconds / run.seconds)
                if (engine, mode) not in best or v.seconds < best[engine, mode].seconds:
                    best[engine, mode] = v
        if q is None:
            failed = True
            continue
        if q.returncode != 0:
            log(f"{name}: QEMU exited with {q.returncode}; its stderr:\n{tail(q.stderr)}")
            failed = True
            continue
        log(f"{name}: qemu {q.seconds:.3f} s (best): {q.stdout.decode(errors='replace').strip()}")
        for engine, mode in jobs:
            row = Row(name, engine, mode, q.seconds, None, None, None, bad.get((engine, mode), "ok"))
            row.round_ratios = per_round.get((engine, mode), [])
            rows.append(row)
            v = best.get((engine, mode))
            if row.status != "ok" or v is None:
                failed = True
                continue
            if m := STATS_RE.search(v.stderr.decode(errors="replace")):
                row.instructions, row.guest_s = int(m.group(1)), float(m.group(2))
            row.polyvm_s = v.seconds

    print()
    print_table(rows)
    if a.json:
        data = {
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "qemu": qver[0] if qver else None,
            "scale": a.scale,
            "repeat": a.repeat,
            "rows": [asdict(r) | {"ratio": r.ratio, "round_ratio": r.round_ratio} for r in rows],
        }
        Path(a.json).write_text(json.dumps(data, indent=2) + "\n")
    bad = [r for r in rows if r.status != "ok"]
    if bad or failed:
        print(
            "FAILED: "
            + (
                ", ".join(f"{r.program}/{r.engine}{'/' + r.mode if r.mode else ''}: {r.status}" for r in bad)
                or "see above"
            ),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
