"""The `polyvm` command line. A thin layer over the Python API: parse, call, report.

Every failure ends as one line on stderr and a non-zero exit status, never a traceback
(set POLYVM_DEBUG=1 to see one).
"""

from __future__ import annotations

import argparse
import atexit
import gc
import math
import os
import signal
import sys
import time

from polyvm import __version__

GC_THRESHOLD = 20_000  # allocations between young-generation collections in `run` (Python: 700)


def _err(msg: str, status: int = 2) -> int:
    print(f"polyvm: error: {msg}", file=sys.stderr)
    return status


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="polyvm", description="multi-architecture virtual machine")
    p.add_argument("--version", action="version", version=f"polyvm {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="run a Linux program (user mode, like qemu-riscv64)")
    r.add_argument(
        "--engine",
        choices=["interp", "jit", "aot", "auto"],
        default="auto",
        help="execution tier: interp (reference interpreter), jit (compile everything with LLVM), "
        "aot (use what `polyvm aot` translated, JIT the rest), auto (the default: "
        "compile cold code at once where polyvm emits it itself, x86-64 Linux hosts, else "
        "interpret it until warm; compile hot code with LLVM)",
    )
    r.add_argument("--root", metavar="DIR", help="confine every guest path under DIR")
    r.add_argument("--strace", action="store_true", help="print each system call (like qemu -strace)")
    r.add_argument("--trace", action="store_true", help="print each executed instruction (capstone)")
    r.add_argument("--stats", action="store_true", help="print instructions executed, MIPS, time")
    r.add_argument("-q", "--quiet", action="store_true", help="silence unsupported-syscall warnings")
    r.add_argument(
        "--gpu",
        default="auto",
        choices=["auto", "cuda", "rocm", "fake", "none"],
        help="backend of the guest's paravirtual GPU (none: hide it; fake: pure Python)",
    )
    r.add_argument("--timeout", type=float, metavar="SECONDS", help="stop the guest after SECONDS")
    r.add_argument(
        "-E",
        dest="env",
        action="append",
        default=[],
        metavar="VAR=VALUE",
        help="set a guest environment variable",
    )
    r.add_argument(
        "-U",
        dest="unset",
        action="append",
        default=[],
        metavar="VAR",
        help="remove a variable from the guest environment",
    )
    r.add_argument("-0", dest="argv0", metavar="ARGV0", help="use ARGV0 as the guest's argv[0]")
    r.add_argument("program")
    r.add_argument("args", nargs=argparse.REMAINDER)

    t = sub.add_parser("aot", help="translate a program ahead of time into the translation cache")
    t.add_argument("program")
    t.add_argument("-j", "--jobs", type=int, help="worker processes (default: the host's cores)")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    c = sub.add_parser("cache", help="the persistent translation cache: info, clear, prepare")
    c.add_argument("cache_cmd", choices=["info", "clear", "prepare"])
    c.add_argument("--json", action="store_true", help="info as JSON")

    g = sub.add_parser("gpu", help="host GPU: info, selftest")
    g.add_argument("gpu_cmd", choices=["info", "selftest"])
    g.add_argument("gpu_args", nargs=argparse.REMAINDER)
    return p


def _engine_factory(kind: str):
    """A factory for Process: the engine named by --engine (see polyvm.engine.jit)."""
    if kind == "interp":
        return None

    def make(arch, mem):
        from polyvm.engine.jit import make_engine
        from polyvm.engine.tcache import default_cache

        return make_engine(arch, mem, kind, cache=default_cache())

    return make


def cmd_aot(a: argparse.Namespace) -> int:
    from polyvm.aot import aot
    from polyvm.engine.jit import JitUnavailable
    from polyvm.linux.loader import LoadError

    if a.jobs is not None and a.jobs < 1:
        return _err("--jobs must be at least 1")
    try:
        st = aot(a.program, jobs=a.jobs, out=None if a.quiet else sys.stderr)
    except LoadError as e:
        return _err(str(e))
    except JitUnavailable as e:
        return _err(str(e))
    except OSError as e:
        return _err(f"{a.program}: {e.strerror or e}")
    except RuntimeError as e:  # a translation worker failed
        return _err(f"{a.program}: {e}")
    print(
        f"polyvm aot: {a.program}: {st['functions']} functions, {st['regions']} regions "
        f"({st['blocks']} blocks) from {st['code_bytes']} bytes of code in {st['seconds']:.1f} s "
        f"-> {st['cache']}"
    )
    return 0


def cmd_cache(a: argparse.Namespace) -> int:
    from polyvm.engine import tcache

    if a.cache_cmd == "clear":
        n = tcache.clear()
        print(f"polyvm cache: cleared {tcache.cache_root()} ({n} bytes)")
        return 0
    if a.cache_cmd == "prepare":
        from polyvm.engine.jit import Compiler, JitUnavailable
        from polyvm.isa import ARCH_NAMES, get_arch

        t0 = time.perf_counter()
        try:
            n = Compiler.get().prepare([get_arch(name) for name in ARCH_NAMES])
        except JitUnavailable as e:
            return _err(str(e))
        print(
            f"polyvm cache: {n} host objects (the dispatcher, the FP helpers' fast paths) and the decode "
            f"tables ready in "
            f"{tcache.cache_root()} ({time.perf_counter() - t0:.2f} s)"
        )
        return 0
    st = tcache.info()
    if a.json:
        import json

        print(json.dumps(st))
    else:
        print(
            f"translation cache: {st['path']}\n  {st['entries']} entries, {st['objects']} objects, "
            f"{st['shared']} shared objects (the dispatcher, FP fast paths, decode tables), "
            f"{st['bytes']} bytes, {st['hosts']} host configuration(s)"
        )
    return 0


def cmd_run(a: argparse.Namespace) -> int:
    # Start-up makes many objects and no garbage cycles: no collections while loading; then
    # what loading made is left out of later collections (gc.freeze), which run less often.
    threshold, enabled = gc.get_threshold(), gc.isenabled()
    gc.disable()
    try:
        return _cmd_run(a)
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
        if enabled:
            gc.enable()


def _cmd_run(a: argparse.Namespace) -> int:
    from polyvm.linux.loader import LoadError
    from polyvm.linux.process import Process

    if a.root is not None and not os.path.isdir(a.root):
        return _err(f"--root {a.root}: not a directory")
    if a.timeout is not None and not (a.timeout > 0 and math.isfinite(a.timeout)):
        return _err(f"--timeout {a.timeout}: must be a positive number of seconds")
    env = dict(os.environ)
    for kv in a.env:
        k, _, v = kv.partition("=")
        env[k] = v
    for k in a.unset:
        env.pop(k, None)
    argv = [a.argv0 or a.program, *a.args]
    try:
        proc = Process.from_file(
            a.program,
            argv,
            env=[f"{k}={v}" for k, v in env.items()],
            root=a.root,
            strace=a.strace,
            quiet=a.quiet,
            gpu_backend=a.gpu,
            engine_factory=_engine_factory(a.engine),
            slice_blocks=2000 if a.engine == "interp" else 1_000_000,
        )
    except LoadError as e:
        return _err(str(e))
    except OSError as e:
        return _err(f"{a.program}: {e.strerror or e}")
    except RuntimeError as e:
        from polyvm.engine.jit import JitUnavailable

        if isinstance(e, JitUnavailable):  # --engine jit/aot without llvmlite
            return _err(str(e))
        raise
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD)
    gc.enable()
    if a.trace:
        _install_tracer(proc)
    t0 = time.perf_counter()
    try:
        status = proc.run(timeout=a.timeout)
    except KeyboardInterrupt:
        print("polyvm: interrupted", file=sys.stderr)
        status = 130
    elapsed = time.perf_counter() - t0
    if a.stats:
        n = proc.instructions
        mips = n / elapsed / 1e6 if elapsed > 0 else 0.0
        eng = proc.engine
        print(
            f"polyvm: {n} instructions in {elapsed:.3f} s ({mips:.2f} MIPS); engine {eng.name}: "
            + (
                eng.stats + f" ({100 * eng.compile_time / elapsed if elapsed else 0:.0f}% of the run)"
                if hasattr(eng, "stats")
                else f"{eng.blocks_compiled} blocks translated in {eng.compile_time:.3f} s"
            ),
            file=sys.stderr,
        )
    return status


def _install_tracer(proc) -> None:
    arch = proc.arch
    mem = proc.mem
    out = sys.stderr

    def trace(pc: int, size: int) -> None:
        try:
            code = mem.read_raw(pc, size)
        except Exception:
            code = b""
        out.write(f"{pc:#018x}: {code[::-1].hex():>8}  {arch.disasm(code, pc)}\n")

    proc.engine.add_code_hook(0, (1 << 64) - 1, trace)


def cmd_gpu(a: argparse.Namespace) -> int:
    from polyvm.gpu import cli as gcli

    if a.gpu_cmd == "info":
        return gcli.gpu_info_main(a.gpu_args)
    return gcli.gpu_selftest_main(a.gpu_args)


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    # Ctrl-C: a KeyboardInterrupt raised between guest blocks, reported as exit 130.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if args.cmd == "run":
            return cmd_run(args)
        if args.cmd == "gpu":
            return cmd_gpu(args)
        if args.cmd == "aot":
            return cmd_aot(args)
        if args.cmd == "cache":
            return cmd_cache(args)
    except KeyboardInterrupt:
        print("polyvm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141
    except Exception as e:  # noqa: BLE001 - the one place that turns bugs into one line
        if os.environ.get("POLYVM_DEBUG"):
            raise
        return _err(f"internal error: {type(e).__name__}: {e} (set POLYVM_DEBUG=1 for a traceback)", 70)
    return 2


def entry() -> None:
    """The `polyvm` command (and `python -m polyvm`): `main`, then a quick exit. The exit
    handlers still run (the translation cache's last writes, the hand-off to the compile
    worker) and the standard streams are flushed, but the interpreter's finalization is
    skipped: freeing every object a JIT run made (its IR, translations, tables) took tens of
    milliseconds after the guest had exited. (Tests call `main`, which returns.)"""
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = code or 141
    except (OSError, ValueError):
        pass
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    atexit._run_exitfuncs()
    os._exit(code & 0xFF)
