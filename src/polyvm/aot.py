"""Ahead-of-time translation: `polyvm aot PROG` fills the translation cache for a program.

Code is discovered from the ELF file without running it: the entry point and every function
symbol (`STT_FUNC` in `.symtab`/`.dynsym`) in an executable segment are *function entries*;
each function is lifted by following its direct branches and jumps that stay inside the
function (its symbol's size, or up to the next symbol), and the instruction after every call
(a direct jump whose block continues at a return site) is an extra entry of the function's
region, since returns come back there. Direct jump targets outside the function become
function entries too (recursively, to a fixed point), and so do aligned words in data segments
that point into code (function-pointer tables): together they find code in stripped binaries.
Code reached only through computed pointers that no data word holds stays undiscovered.

Each function becomes one native region (entered at the function entry or a return site),
compiled with the quick pipeline (the run's own tiering recompiles what turns hot at -O2),
several regions per LLVM module, in parallel worker processes on hosts with `fork`. Modules go into the persistent translation cache (`polyvm.engine.tcache`) with one
entry per region entry pc, keyed by the code's bytes as the run will map them; `polyvm run`
then loads them on first execution and JIT-compiles whatever was not discovered.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from bisect import bisect_right, insort
from typing import Any

from polyvm.memory import MemoryFault

MAX_REGION_BLOCKS = 256
BATCH = 24
# The quick pipeline: what runs hot is recompiled at -O2 by the run's own tiering.
AOT_OPT = 0


def discover(proc: Any, path: str) -> tuple[list[tuple[int, int]], Any]:
    """Function ranges (start, end) from the ELF symbols and the entry point alone."""
    from elftools.elf.elffile import ELFFile

    from polyvm.memory import PROT_EXEC

    bias = proc.image.bias
    starts: set[int] = {proc.image.entry}
    sizes: dict[int, int] = {}
    with open(path, "rb") as f:
        elf = ELFFile(f)
        for name in (".symtab", ".dynsym"):
            sec = elf.get_section_by_name(name)
            if sec is None:
                continue
            for sym in sec.iter_symbols():
                if sym["st_info"]["type"] == "STT_FUNC" and sym["st_value"]:
                    a = sym["st_value"] + bias
                    starts.add(a)
                    if sym["st_size"]:
                        sizes[a] = max(sizes.get(a, 0), sym["st_size"])
    mem = proc.mem
    exec_ranges = [(s, e) for s, e, p in mem.regions() if p & PROT_EXEC]
    starts = {a for a in starts if any(s <= a < e for s, e in exec_ranges)}
    order = sorted(starts)
    funcs = []
    for i, a in enumerate(order):
        nxt = order[i + 1] if i + 1 < len(order) else None
        end = a + sizes[a] if a in sizes else nxt if nxt is not None else a + 4096
        seg_end = next(e for s, e in exec_ranges if s <= a < e)
        funcs.append((a, min(end, seg_end)))
    return funcs, exec_ranges


def function_region(
    arch: Any,
    mem: Any,
    start: int,
    end: int,
    limit: int = MAX_REGION_BLOCKS,
    lifted: dict[int, Any] | None = None,
):
    """The blocks of the function [start, end), its entries (start and return sites) and the
    addresses outside it that it jumps to or materializes (candidate functions). `lifted`
    keeps blocks by pc between calls (discovery lifts what translation then lowers)."""
    blocks: dict[int, Any] = {}
    entries = [start]
    outside: set[int] = set()
    work = [start]
    while work and len(blocks) < limit:
        pc = work.pop()
        if pc in blocks or not start <= pc < end:
            continue
        b = lifted.get(pc) if lifted is not None else None
        if b is None:
            try:
                b = arch.lift_block(mem.fetch, pc, 64)
            except MemoryFault:
                continue
            if lifted is not None:
                lifted[pc] = b
        if not b.insns:
            continue
        blocks[pc] = b
        # Addresses the code materializes (`la a0, main`, a function pointer argument) are
        # candidate functions too; the caller keeps those that lie in executable memory.
        for insn in b.insns:
            for st in insn.stmts:
                if st.op in ("put", "store"):
                    v = st.args[-1]
                    if v.const is not None and v.w == 64 and not start <= v.const < end:
                        outside.add(v.const)
        t = b.term
        if t.kind == "branch":
            work += [t.target.const, t.fallthrough]
        elif t.kind == "jump" and t.target is not None and t.target.const is not None:
            tgt = t.target.const
            if start <= tgt < end:
                work.append(tgt)
            else:
                outside.add(tgt)
                ret = b.insns[-1].pc + b.insns[-1].size  # a call returns here
                if start <= ret < end and ret not in entries:
                    entries.append(ret)
                    work.append(ret)
        elif t.kind == "jump":
            # An indirect call (jalr through a register) returns to the next instruction.
            ret = b.insns[-1].pc + b.insns[-1].size
            if start <= ret < end:
                if ret not in entries:
                    entries.append(ret)
                work.append(ret)
        elif t.kind == "exit" and t.target is not None and t.target.const is not None:
            ret = t.target.const  # after a syscall: the run resumes here from outside
            if t.reason in ("syscall", "breakpoint", "sync_icache") and start <= ret < end:
                if ret not in entries:
                    entries.append(ret)
                work.append(ret)
    ordered = (
        [blocks[start]] + [b for pc, b in sorted(blocks.items()) if pc != start] if start in blocks else []
    )
    return ordered, [e for e in entries if e in blocks], outside


class _Progress:
    """The progress bar on `out` (None: quiet), redrawn at most every 0.2 s and at the end."""

    def __init__(self, total: int, t0: float, out: Any) -> None:
        self.total, self.t0, self.out, self.done, self.shown = total, t0, out, 0, 0.0

    def add(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if self.out is None or (now - self.shown < 0.2 and self.done < self.total):
            return
        self.shown = now
        width = 30
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(width * frac) + "-" * (width - int(width * frac))
        self.out.write(f"\rpolyvm aot: [{bar}] {self.done}/{self.total} functions, {now - self.t0:.1f} s")
        self.out.flush()


def _compile_chunk(
    eng: Any, cache: Any, funcs: list[tuple[int, int]], lifted: dict[int, Any] | None = None
) -> tuple[int, int]:
    """Compile functions in modules of BATCH regions; returns (regions, blocks) stored."""

    comp = eng.compiler
    nregions = nblocks = 0
    for i in range(0, len(funcs), BATCH):
        texts, decls, made = [], {}, []
        nonce = os.urandom(4).hex()
        for start, end in funcs[i : i + BATCH]:
            blocks, entries, _ = function_region(eng.arch, eng.mem, start, end, lifted=lifted)
            if not blocks:
                continue
            name = eng._region_name(blocks, AOT_OPT)
            sym = f"{name}_{nonce}"
            lw = eng.lower_region(sym, name, blocks, entries, compact=True)
            if lw is None:
                continue
            texts.append(lw.text)
            decls.update(lw.decls)
            pages = sorted({p for b in blocks for p in range(b.pc >> 12, ((b.end - 1) >> 12) + 1)})
            made.append((sym, lw.entry_pcs, pages, len(blocks)))
        if not made:
            continue
        obj = comp.compile(comp.module_text(texts, decls), AOT_OPT)
        obj_name = cache.store_object(obj)
        if obj_name is None:
            raise OSError("cannot write to the translation cache")
        for sym, entries, pages, nb in made:
            cache.store_entry(eng.mem, entries, sym, obj_name, AOT_OPT, pages)
            nregions += 1
            nblocks += nb
    return nregions, nblocks


def _data_pointers(mem: Any, exec_ranges: list[tuple[int, int]], align: int) -> set[int]:
    """Aligned 64-bit words in readable, non-executable memory that point into code: function
    pointer tables, vtables, jump tables (the usual static-recompiler heuristic)."""
    import struct

    from polyvm.memory import PROT_EXEC, PROT_READ

    out: set[int] = set()
    for s, e, prot in mem.regions():
        if not prot & PROT_READ or prot & PROT_EXEC or e - s > 64 << 20:
            continue
        try:
            data = mem.read_raw(s, e - s)
        except MemoryFault:
            continue
        for (v,) in struct.iter_unpack("<Q", data[: len(data) // 8 * 8]):
            if v % align == 0 and any(a <= v < b for a, b in exec_ranges):
                out.add(v)
    return out


def find_functions(
    proc: Any, path: str, lifted: dict[int, Any] | None = None
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Function ranges: ELF symbols and the entry, data words pointing into code, and (to a
    fixed point) direct jump targets found while lifting them. A function without a symbol
    size ends at the next known function start. `lifted` receives the blocks lifted."""
    funcs, exec_ranges = discover(proc, path)
    starts = {a for a, _ in funcs}
    sized = dict(funcs)
    arch, mem = proc.isa, proc.mem
    for ptr in _data_pointers(mem, exec_ranges, 2):
        if ptr not in starts:
            try:  # keep only pointers at something that decodes
                b = arch.lift_block(mem.fetch, ptr, 4)
            except MemoryFault:
                continue
            if b.insns:
                starts.add(ptr)
    work = sorted(starts)
    ordered = list(work)  # starts, sorted: a function without a size ends at the next one
    done: set[int] = set()
    while work:
        a = work.pop()
        if a in done:
            continue
        done.add(a)
        end = _end_of(a, ordered, sized, exec_ranges)
        _, _, outside = function_region(arch, mem, a, end, limit=MAX_REGION_BLOCKS, lifted=lifted)
        for t in outside:
            if t not in starts and t % 2 == 0 and any(s <= t < e for s, e in exec_ranges):
                try:  # keep only addresses of something that decodes
                    if not arch.lift_block(mem.fetch, t, 4).insns:
                        continue
                except MemoryFault:
                    continue
                starts.add(t)
                insort(ordered, t)
                work.append(t)
    return [(a, _end_of(a, ordered, sized, exec_ranges)) for a in ordered], exec_ranges


def _end_of(a: int, ordered: list[int], sized: dict[int, int], exec_ranges: list[tuple[int, int]]) -> int:
    """Where function a ends: its symbol's end, else the next known start (`ordered` is the
    sorted starts), never past its segment."""
    seg_end = next((e for s, e in exec_ranges if s <= a < e), a + 4096)
    if a in sized and sized[a] > a:
        return min(sized[a], seg_end)
    i = bisect_right(ordered, a)
    return min(ordered[i] if i < len(ordered) else seg_end, seg_end)


def aot(path: str, *, jobs: int | None = None, out: Any = sys.stderr, cache_dir: str | None = None) -> dict:
    """Translate the program at `path` into the translation cache; returns statistics."""
    from polyvm.engine.jit import JitEngine
    from polyvm.engine.tcache import TranslationCache, cache_root
    from polyvm.linux.process import Process

    t0 = time.perf_counter()
    proc = Process.from_file(path, [path], env=[], quiet=True)
    eng = JitEngine(proc.isa, proc.mem, tier="jit")
    cache = TranslationCache(cache_dir or cache_root(), eng.compiler.host_id)
    if not cache.enabled:
        raise OSError(f"cannot write to the translation cache at {cache.root}")
    if out is not None:
        out.write("polyvm aot: discovering code...")
        out.flush()
    lifted: dict[int, Any] = {}
    # The lifted blocks stay alive until translated: with the cycle collector on, each of its
    # full passes would walk all of them (discovery took 1.5x as long); what aot allocates is
    # freed by reference counting. Frozen, they also stay shared with the forked workers.
    gc_was = gc.isenabled()
    gc.disable()
    try:
        funcs, exec_ranges = find_functions(proc, path, lifted)
        gc.freeze()
        if out is not None:
            out.write("\r")
        progress = _Progress(len(funcs), t0, out)
        progress.add(0)
        nregions, nblocks = _translate_all(
            eng, cache, funcs, lifted, jobs or min(os.cpu_count() or 1, 8), progress
        )
    finally:
        gc.unfreeze()
        if gc_was:
            gc.enable()
    if out is not None:
        out.write("\n")
    code_bytes = sum(e - s for s, e in exec_ranges)
    return {
        "functions": len(funcs),
        "regions": nregions,
        "blocks": nblocks,
        "code_bytes": code_bytes,
        "seconds": time.perf_counter() - t0,
        "cache": cache.dir,
    }


def _translate_all(
    eng: Any, cache: Any, funcs: list[tuple[int, int]], lifted: dict[int, Any], jobs: int, progress: _Progress
) -> tuple[int, int]:
    """Compile every function: in `jobs` forked workers where the host has fork (each takes
    every jobs-th batch and reports counts through a pipe), else here. (regions, blocks)."""
    total = len(funcs)
    nregions = nblocks = 0
    if jobs <= 1 or not hasattr(os, "fork") or total <= BATCH:
        for j in range(0, total, BATCH):
            nr, nb = _compile_chunk(eng, cache, funcs[j : j + BATCH], lifted)
            nregions += nr
            nblocks += nb
            progress.add(len(funcs[j : j + BATCH]))
        return nregions, nblocks
    import selectors

    batches = [funcs[j : j + BATCH] for j in range(0, total, BATCH)]
    pids = []
    sel = selectors.DefaultSelector()
    for i in range(jobs):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # worker: compile its share, report counts through the pipe
            os.close(r)
            status = 1
            try:
                for batch in batches[i::jobs]:
                    nr, nb = _compile_chunk(eng, cache, batch, lifted)
                    os.write(w, f"{len(batch)} {nr} {nb}\n".encode())
                status = 0
            finally:
                os._exit(status)
        os.close(w)
        pids.append(pid)
        sel.register(r, selectors.EVENT_READ, [b""])
    while sel.get_map():
        for key, _ in sel.select():
            data = os.read(key.fd, 4096)
            if not data:
                sel.unregister(key.fd)
                os.close(key.fd)
                continue
            key.data[0] += data
            while b"\n" in key.data[0]:
                line, key.data[0] = key.data[0].split(b"\n", 1)
                nf, nr, nb = (int(x) for x in line.split())
                nregions += nr
                nblocks += nb
                progress.add(nf)
    failed = 0
    for pid in pids:
        _, st = os.waitpid(pid, 0)
        failed += st != 0
    if failed:
        raise RuntimeError(f"{failed} translation worker(s) failed")
    return nregions, nblocks
