#!/usr/bin/env python3
"""Reference-engine speed: guest MIPS on a CPU-bound riscv64 program, and QEMU side by side.

    python bench/mips.py [--scale N] [--engine interp]

Builds guest/bench_cpu.c (or --program bench_fp: floating-point heavy) with ziglang (cached), runs it under `polyvm run --stats` and, when
`qemu-riscv64` is installed, under QEMU in the same run, checks both print the same result and
prints the instruction count, polyvm's MIPS, both wall times and the ratio.
"""

from __future__ import annotations

import argparse
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from polyvm.testing.guest import build_guest  # noqa: E402


def timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    return time.perf_counter() - t0, res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--program", default="bench_cpu", help="guest/NAME.c to run (bench_cpu, bench_fp)")
    ap.add_argument("--scale", type=int, default=1, help="repetitions of bench_cpu's hashing kernel")
    ap.add_argument("--engine", default="interp")
    ap.add_argument("--repeat", type=int, default=3, help="QEMU runs (best is kept)")
    a = ap.parse_args()

    prog = str(build_guest(a.program))
    args = [prog, str(a.scale)] if a.program == "bench_cpu" else [prog]
    t_vm, res = timed([sys.executable, "-m", "polyvm", "run", "--stats", "--engine", a.engine, *args])
    if res.returncode != 0:
        print(f"polyvm failed ({res.returncode}):\n{res.stderr}", file=sys.stderr)
        return 1
    m = re.search(r"(\d+) instructions in ([\d.]+) s \(([\d.]+) MIPS\)", res.stderr)
    if not m:
        print(f"no --stats line in polyvm's output:\n{res.stderr}", file=sys.stderr)
        return 1
    insns, t_guest, mips = int(m.group(1)), float(m.group(2)), float(m.group(3))
    print(f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}")
    print(f"guest output: {res.stdout.strip()}")
    print(
        f"polyvm ({a.engine}): {insns} guest instructions, {t_guest:.3f} s in the guest loop, "
        f"{t_vm:.3f} s wall, {mips:.2f} MIPS"
    )
    qemu = shutil.which("qemu-riscv64")
    if qemu is None:
        print("qemu-riscv64 not installed: no QEMU comparison (apt-get install qemu-user)")
        return 0
    best = None
    for _ in range(a.repeat):
        t_q, qres = timed([qemu, *args])
        if qres.stdout != res.stdout or qres.returncode != res.returncode:
            print(f"output differs from QEMU's!\nqemu: {qres.stdout!r}\npolyvm: {res.stdout!r}")
            return 1
        best = t_q if best is None else min(best, t_q)
    assert best is not None
    print(f"qemu-riscv64: {best:.3f} s wall (best of {a.repeat}); same output")
    print(
        f"ratio polyvm/qemu wall time: {t_vm / best:.1f}x  (QEMU MIPS on this program: {insns / best / 1e6:.1f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
