"""Start-up and ahead-of-time translation times, against qemu-riscv64 in the same run.

    python bench/startup.py                 # hello: cold run, warm runs (best of 5), qemu
    python bench/startup.py --aot PROGRAM   # also: `polyvm aot PROGRAM` time, then a run on it

Every polyvm run uses a fresh temporary translation cache (POLYVM_CACHE_DIR), so "cold" means
nothing compiled before and "warm" means the cache filled by the cold run. Times are wall-clock
seconds of the whole command (Python start-up included). The targets of the JIT issue: a warm
hello under 0.3 s; `polyvm aot` of a 1 MB static binary under 30 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time


def _time(cmd: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    return time.perf_counter() - t0, p


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", default="jit", help="engine for the runs (default jit)")
    ap.add_argument("--repeat", type=int, default=5, help="warm runs; the best is kept")
    ap.add_argument("--aot", metavar="PROGRAM", help="also time `polyvm aot PROGRAM` and a run after it")
    ap.add_argument("--args", default="", help="arguments for the --aot program's run (one string)")
    a = ap.parse_args()

    from polyvm.testing import byte_compile
    from polyvm.testing.guest import build_guest

    byte_compile()  # (polyvm timed as installed, not compiling its own sources)

    hello = build_guest("hello")
    qemu = shutil.which("qemu-riscv64")
    cache = tempfile.mkdtemp(prefix="polyvm-startup-")
    env = dict(os.environ, POLYVM_CACHE_DIR=cache)
    py = [sys.executable, "-m", "polyvm"]
    try:
        print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
        if qemu:
            tq = min(_time([qemu, hello], env)[0] for _ in range(a.repeat))
            print(f"qemu-riscv64 hello: {tq:.3f} s")
        cold, p = _time([*py, "run", "--engine", a.engine, hello], env)
        if p.returncode not in (0, 3):  # hello exits with argc + 2
            print(f"polyvm failed: {p.stderr.strip()}", file=sys.stderr)
            return 1
        warm = min(_time([*py, "run", "--engine", a.engine, hello], env)[0] for _ in range(a.repeat))
        print(f"polyvm --engine {a.engine} hello: cold {cold:.3f} s, warm {warm:.3f} s (best of {a.repeat})")
        print(f"warm start target < 0.3 s: {'met' if warm < 0.3 else 'NOT met'}")
        if a.aot:
            shutil.rmtree(cache, ignore_errors=True)
            size = os.path.getsize(a.aot)
            t, p = _time([*py, "aot", "-q", a.aot], env)
            print(p.stdout.strip() or p.stderr.strip())
            print(f"polyvm aot: {size / 1e6:.2f} MB file in {t:.1f} s")
            args = a.args.split()
            tr, p = _time([*py, "run", "--stats", "--engine", "aot", a.aot, *args], env)
            print(
                f"run after aot: {tr:.3f} s; {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ''}"
            )
            if qemu:
                tq, _ = _time([qemu, a.aot, *args], env)
                print(f"qemu-riscv64 same run: {tq:.3f} s")
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
