#!/usr/bin/env python3
"""Cost of the JIT's native RISC-V FP fast paths (polyvm.isa.riscv.fpnative), per helper.

    python bench/fp_native.py [--ops fadd.d,fmul.s,...] [--n N] [--asm fadd.d] [--no-time]
                              [--against REV]

Each helper's always-inline function (exactly as the JIT builds it: jit.native_helper_text, rm
= RNE) is called from a small caller shaped like the lowered region code (arguments and state
slots in allocas, a likely-taken branch on ok, the Python helper replaced by an opaque call),
optimized at O2 and compiled for the host CPU.  Printed per helper:

  insns   x86 instructions of the whole caller (tm.emit_assembly), slow path included
  hot     instructions on the shortest path from the entry to a ret that does not call the
          slow helper, pushes and pops of callee-saved registers not counted (in the JIT they
          are paid once per region, not per helper call).  With the NX shortcut this is the
          shortcut's path; without it, a lower bound of the path nice inputs take
  ns/op   time per call in a loop over random "nice" operands (most results inexact) with the
          accrued fflags having NX set ("nx=1", the state of an FP program after its first
          inexact operation) and clear ("nx=0"); the loop's own overhead is included.
          thr: independent calls (throughput); lat: each result is the next call's first
          operand (a dependency chain; not for fsqrt).  Best of 7 runs.  The loops are
          compiled without the loop vectorizer, the slow path is an opaque call and every
          call's flags are ORed into a loop-carried value, so that, as in the JIT, nothing
          runs several calls at once in vector registers or drops the flag computation.
  ok%     calls that were ok (no slow path) with NX set

--against REV also builds every helper with fpnative.py as of git revision REV (e.g. HEAD~1)
and prints its row under the current one, the timing runs interleaved, so that one run of this
script compares before and after on the same machine.
"""

from __future__ import annotations

import argparse
import ctypes
import random
import re
import struct
import sys
import time
from array import array
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import llvmlite.binding as llvm  # noqa: E402

from polyvm.engine.jit import native_helper_text  # noqa: E402
from polyvm.isa.riscv import RiscV64  # noqa: E402
from polyvm.isa.riscv.common import FFLAGS_SLOT, FRM_SLOT, HELPERS, NSLOTS  # noqa: E402

WORD = 0x0220_F0D3
OPS = [
    f"{op}.{f}"
    for f in ("d", "s")
    for op in ("fadd", "fsub", "fmul", "fdiv", "fsqrt", "fmadd", "fmsub", "fnmsub", "fnmadd")
]
PROF = '!0 = !{!"branch_weights", i32 2000, i32 1}'


def nregs(name: str) -> int:
    return len(HELPERS[name].arg_widths) - 2


class _Arch:
    """RiscV64 as native_helper_text sees it, with another fpnative.emit."""

    helpers = HELPERS

    def __init__(self, name: str, emit) -> None:
        self.name = name
        self.native_emit = staticmethod(emit)


def fpnative_at(rev: str):
    """fpnative.py as of git revision rev, as a module."""
    import subprocess
    import types

    repo = Path(__file__).resolve().parents[1]
    src = subprocess.run(
        ["git", "show", f"{rev}:src/polyvm/isa/riscv/fpnative.py"],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    mod = types.ModuleType(f"fpnative_{rev}")
    exec(compile(src, f"fpnative.py@{rev}", "exec"), mod.__dict__)
    return mod


def caller_text(name: str, arch=RiscV64) -> tuple[str, str]:
    """The fast path and the callers: `one` (a single call, for the instruction counts),
    `loop` (n calls over an array of operand records) and `chain` (the same, each result the
    next first operand), for timing."""
    fname, ftext = native_helper_text(arch, name, (None,) * nregs(name) + (0, WORD))
    k = nregs(name)
    params = ", ".join(f"i64 %x{i}" for i in range(k))

    def call_seq(args: list[str], ff: str, pre: str) -> list[str]:
        o = [
            f"%{pre}na = alloca [8 x i64]",
            f"%{pre}fs = alloca [{NSLOTS} x i64]",
            f"%{pre}fo = alloca i64",
        ]
        for i, a in enumerate(args):
            o.append(f"%{pre}p{i} = getelementptr [8 x i64], [8 x i64]* %{pre}na, i64 0, i64 {i}")
            o.append(f"store i64 {a}, i64* %{pre}p{i}")
        for s, v in ((FFLAGS_SLOT, ff), (FRM_SLOT, "0")):
            o.append(
                f"%{pre}s{s} = getelementptr [{NSLOTS} x i64], [{NSLOTS} x i64]* %{pre}fs, i64 0, i64 {s}"
            )
            o.append(f"store i64 {v}, i64* %{pre}s{s}")
        o.append(f"%{pre}na0 = getelementptr [8 x i64], [8 x i64]* %{pre}na, i64 0, i64 0")
        o.append(f"%{pre}fs0 = getelementptr [{NSLOTS} x i64], [{NSLOTS} x i64]* %{pre}fs, i64 0, i64 0")
        o.append(f"%{pre}ok = call i1 @{fname}(i64* %{pre}na0, i64* %{pre}fs0, i64* %{pre}fo)")
        return o

    args = [f"%x{i}" for i in range(k)]
    tys = ", ".join(["i64"] * k)
    one = [f"define i64 @one({params}, i64* noalias %ffp, i64 ({tys})* %slow) {{", "entry:"]
    one.append("%ff = load i64, i64* %ffp")
    one += call_seq(args, "%ff", "")
    one += [
        "br i1 %ok, label %fast, label %cold, !prof !0",
        "fast:",
        f"%nf = load i64, i64* %s{FFLAGS_SLOT}",
        "store i64 %nf, i64* %ffp",
        "%r = load i64, i64* %fo",
        "ret i64 %r",
        "cold:",
        f"%rs = call i64 %slow({', '.join(f'i64 {a}' for a in args)})",
        "ret i64 %rs",
        "}",
    ]
    chain = name.split(".")[0] != "fsqrt"
    loops = []
    for fn, dep in (("loop", False), ("chain", True)):
        if dep and not chain:
            continue
        lp = [
            f"define void @{fn}(i64* noalias %in, i64* noalias %out, i64 %n, i64* noalias %ffp, i64 (i64)* %slow) {{",
            "entry:",
            "%ff0 = load i64, i64* %ffp",
            "%pin0 = getelementptr i64, i64* %in, i64 0",
            "%acc0 = load i64, i64* %pin0",
            "br label %body",
            "body:",
            "%i = phi i64 [0, %entry], [%i1, %next]",
            "%acc = phi i64 [%acc0, %entry], [%rv, %next]",
            "%fa = phi i64 [0, %entry], [%fa1, %next]",
            f"%base = mul i64 %i, {k}",
        ]
        for i in range(k):
            lp += [f"%ai{i} = add i64 %base, {i}", f"%pi{i} = getelementptr i64, i64* %in, i64 %ai{i}"]
            lp.append(f"%{'l' if dep and i == 0 else 'x'}{i} = load i64, i64* %pi{i}")
        # chain: the previous result is the first operand (a dependency chain: latency)
        lp += call_seq(["%acc" if dep and i == 0 else f"%x{i}" for i in range(k)], "%ff0", "")
        lp += [
            "br i1 %ok, label %fast, label %cold, !prof !0",
            "fast:",
            f"%nf = load i64, i64* %s{FFLAGS_SLOT}",
            "%r = load i64, i64* %fo",
            "br label %next",
            # The Python helper would run here (an opaque call, as in the JIT: the loop body
            # cannot become straight-line code that the SLP vectorizer packs); -1 marks it.
            "cold:",
            f"%sr = call i64 %slow(i64 %x{k - 1})",
            "br label %next",
            "next:",
            "%ff1 = phi i64 [%nf, %fast], [%ff0, %cold]",
            f"%rv = phi i64 [%r, %fast], [{'%l0' if dep else '%sr'}, %cold]",
            "%rm = phi i64 [%r, %fast], [%sr, %cold]",
            # Every call's flags are used, as the guest's accrued fflags would be (ORed into a
            # loop-carried value), while each call starts from the same accrued flags ff0.
            "%fa1 = or i64 %fa, %ff1",
            "%po = getelementptr i64, i64* %out, i64 %i",
            "store i64 %rm, i64* %po",
            "%i1 = add i64 %i, 1",
            "%more = icmp ult i64 %i1, %n",
            "br i1 %more, label %body, label %done",
            "done:",
            "store i64 %fa1, i64* %ffp",
            "ret void",
            "}",
        ]
        loops += lp
    return ftext, "\n".join(one) + "\n" + "\n".join(loops) + "\n" + PROF + "\n"


def host_tm() -> llvm.TargetMachine:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=2
    )


_INSN = re.compile(r"^\s+[a-z]")


def asm_of(asm: str, fn: str) -> list[str]:
    """The instruction lines (labels kept, directives and comments dropped) of function fn."""
    out, on = [], False
    for ln in asm.splitlines():
        if ln.startswith(f"{fn}:"):
            on = True
            continue
        if on:
            if ln.strip().startswith(".Lfunc_end") or ln.strip() == ".cfi_endproc":
                break
            s = ln.split("#")[0].rstrip()
            if _INSN.match(s) or (s.endswith(":") and not s.startswith("\t.")):
                out.append(s.strip())
    return out


_JCC = re.compile(r"^(j[a-z]+)\s+(\.\w+)$")


def counts(lines: list[str]) -> tuple[int, int]:
    """(all instructions, instructions on the shortest entry->ret path that does not call the
    slow helper (the indirect call/jump through %slow)).  After the NX shortcut that path is the
    shortcut; before it (one straight-line block plus the ok branch) it is a lower bound of the
    path nice inputs take (a few early-exit branches of the ok test may skip instructions)."""
    blocks: list[tuple[str, list[str]]] = [("entry", [])]
    for ln in lines:
        if ln.endswith(":"):
            blocks.append((ln[:-1], []))
        else:
            blocks[-1][1].append(ln)
    index = {nm: i for i, (nm, _) in enumerate(blocks)}
    total = sum(len(b) for _, b in blocks)
    best: dict[tuple[int, int], int] = {}
    # Dijkstra over (block, instruction) positions; edges cost one instruction.
    import heapq

    heap = [(0, 0, 0)]
    while heap:
        cost, bi, ii = heapq.heappop(heap)
        if best.get((bi, ii), 1 << 30) <= cost:
            continue
        best[(bi, ii)] = cost
        insns = blocks[bi][1]
        if ii >= len(insns):  # fall through
            if bi + 1 < len(blocks):
                heapq.heappush(heap, (cost, bi + 1, 0))
            continue
        ins = insns[ii]
        op = ins.split()[0]
        if "*%" in ins and op.startswith(("call", "jmp")):
            continue  # the slow helper
        if op.startswith("ret"):
            return total, cost + 1
        if op in ("pushq", "popq"):  # callee-saved registers: once per region in the JIT
            heapq.heappush(heap, (cost, bi, ii + 1))
            continue
        m = _JCC.match(ins)
        if m and m.group(2) in index:
            heapq.heappush(heap, (cost + 1, index[m.group(2)], 0))
            if op in ("jmp", "jmpq"):
                continue
        heapq.heappush(heap, (cost + 1, bi, ii + 1))
    return total, -1


def operands(name: str, rng: random.Random, n: int, chain: bool) -> list[float]:
    """n operand records, flattened.  For the chain, the multiplier of mul/div/fma comes in
    pairs y, 1/y (rounded) so that the chained value stays near its start (no overflow or
    subnormals over a million steps), and the fma addend is small."""
    op, k = name.split(".")[0], nregs(name)
    out: list[float] = []
    y = 1.0
    for i in range(n):
        for j in range(k):
            if chain and j == 1 and op in ("fmul", "fdiv", "fmadd", "fmsub", "fnmsub", "fnmadd"):
                y = rng.uniform(0.9, 1.1) if i % 2 == 0 else 1.0 / y
                out.append(y)
            elif chain and j == 2:
                out.append(rng.uniform(-1.0, 1.0))
            else:
                x = rng.choice(
                    (
                        rng.uniform(-100.0, 100.0),
                        rng.gauss(0.0, 1e3),
                        rng.random() * 10.0 ** rng.randint(-20, 20),
                    )
                )
                out.append(abs(x) if op == "fsqrt" else x)
    return out


def encode(name: str, x: float) -> int:
    if name.endswith(".s"):
        return struct.unpack("<I", struct.pack("<f", x))[0] | 0xFFFF_FFFF_0000_0000
    return struct.unpack("<Q", struct.pack("<d", x))[0]


_SLOW = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint64)(lambda x: (1 << 64) - 1)
_SLOW_ADDR = ctypes.cast(_SLOW, ctypes.c_void_p).value


def time_loop(eng, fn: str, name: str, n: int, nx: int, rng: random.Random) -> tuple[float, float]:
    """(ns per call, fraction of calls that were ok) with the accrued fflags = nx."""
    chain = fn == "chain"
    inp = array("Q", [encode(name, v) for v in operands(name, rng, n, chain)])
    out = array("Q", bytes(8 * n))
    f = ctypes.CFUNCTYPE(
        None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_void_p
    )(eng.get_function_address(fn))
    ff = array("Q", [nx])
    best = float("inf")
    for _ in range(7):
        ff[0] = nx
        t0 = time.perf_counter()
        f(inp.buffer_info()[0], out.buffer_info()[0], n, ff.buffer_info()[0], _SLOW_ADDR)
        best = min(best, time.perf_counter() - t0)
    ok = sum(1 for v in out if v != (1 << 64) - 1) / n
    return 1e9 * best / n, ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", default=",".join(OPS))
    ap.add_argument("--n", type=int, default=300_000, help="calls per timing run")
    ap.add_argument("--asm", default="", help="print the caller's assembly for these helpers")
    ap.add_argument("--no-time", action="store_true")
    ap.add_argument("--against", default="", help="git revision whose fpnative.py to compare with")
    a = ap.parse_args()
    variants = [("", RiscV64)]
    if a.against:
        variants.append((a.against, _Arch(f"riscv64@{a.against}", fpnative_at(a.against).emit)))
    tm = host_tm()
    rng = random.Random(1)
    keep = []
    print(f"host: {llvm.get_host_cpu_name()}")
    hdr = f"{'helper':14} {'insns':>6} {'hot':>5}"
    if not a.no_time:
        hdr += "   thr nx=1   thr nx=0   lat nx=1   lat nx=0  (ns/call; ok% nx=1 thr/lat)"
    print(hdr)
    for name in a.ops.split(","):
        rows, engines = [], []
        for tag, arch in variants:
            ftext, ctext = caller_text(name, arch)
            mod = llvm.parse_assembly(ftext + "\n" + ctext)
            mod.triple = llvm.get_default_triple()
            mod.verify()
            # -O2 as the JIT's hot tier, minus the loop vectorizer: the timing loops must not
            # run several calls at once in vector registers (guest code never loops like that).
            pto = llvm.PipelineTuningOptions(speed_level=2)
            pto.loop_vectorization = False
            pb = llvm.create_pass_builder(tm, pto)
            pb.getModulePassManager().run(mod, pb)
            lines = asm_of(tm.emit_assembly(mod), "one")
            total, hot = counts(lines)
            if name in a.asm.split(","):
                print(f"---- {name}{'@' + tag if tag else ''}")
                print("\n".join(lines))
            label = name + ("@" + tag if tag else "")
            rows.append(f"{label:14} {total:6d} {hot:5d}")
            if not a.no_time:
                eng = llvm.create_mcjit_compiler(mod, host_tm())  # owns that target machine
                eng.finalize_object()
                keep.append(eng)
                engines.append(eng)
        if not a.no_time:
            oks: list[list[str]] = [[] for _ in variants]
            for fn in ("loop", "chain"):
                for nx in (1, 0):
                    if fn == "chain" and name.startswith("fsqrt"):
                        for i in range(len(variants)):
                            rows[i] += f" {'-':>10}"
                        continue
                    seed = rng.random()
                    res = [time_loop(eng, fn, name, a.n, nx, random.Random(seed)) for eng in engines]
                    for i, (t, ok) in enumerate(res):
                        rows[i] += f" {t:10.2f}"
                        if nx:
                            oks[i].append(f"{100 * ok:.0f}")
            for i in range(len(variants)):
                rows[i] += "  " + "/".join(oks[i])
        for r in rows:
            print(r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
