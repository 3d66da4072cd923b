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
compiled in the compact first-tier form (the run's own tiering recompiles what turns hot),
several regions per LLVM module. On hosts with `fork`, worker processes forked before
discovery share the work: each owns a range of code addresses, lifts the functions starting
there (discovery runs in rounds, each lifting the starts the previous round found) and then
translates them with the blocks it lifted; translation is handed out a batch at a time, and a
worker done with its range takes batches from the others. Modules go into the persistent
translation cache (`polyvm.engine.tcache`) with one entry per region entry pc, keyed by the
code's bytes as the run will map them; `polyvm run` then loads them on first execution and
JIT-compiles whatever was not discovered.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from bisect import bisect_right, insort
from typing import Any

from polyvm.engine import x64
from polyvm.memory import PROT_EXEC, PROT_READ, MemoryFault

MAX_REGION_BLOCKS = 256
BATCH = 24
# The first tier's compact form: what runs hot is recompiled by the run's own tiering.
AOT_OPT = 0


def _exec_ranges(mem: Any) -> list[tuple[int, int]]:
    return [(s, e) for s, e, p in mem.regions() if p & PROT_EXEC]


def _func_symbols(data: bytes, elfclass: int, little: bool) -> list[tuple[int, int]]:
    """(value, size) of the STT_FUNC symbols with a value in a symbol table's raw bytes.
    (Read with struct: pyelftools' per-symbol parsing took a second for 10,000 symbols.)"""
    import struct

    e = "<" if little else ">"
    if elfclass == 64:  # Elf64_Sym: name, info, other, shndx, value, size
        st, info_i, value_i, size_i = struct.Struct(e + "IBBHQQ"), 1, 4, 5
    else:  # Elf32_Sym: name, value, size, info, other, shndx
        st, info_i, value_i, size_i = struct.Struct(e + "IIIBBH"), 3, 1, 2
    n = len(data) // st.size
    return [
        (t[value_i], t[size_i])
        for t in st.iter_unpack(data[: n * st.size])
        if t[info_i] & 0xF == 2 and t[value_i]  # STT_FUNC
    ]


def discover(proc: Any, path: str) -> tuple[list[tuple[int, int]], Any]:
    """Function ranges (start, end) from the ELF symbols and the entry point alone."""
    from elftools.elf.elffile import ELFFile

    bias = proc.image.bias
    starts: set[int] = {proc.image.entry}
    sizes: dict[int, int] = {}
    with open(path, "rb") as f:
        elf = ELFFile(f)
        for name in (".symtab", ".dynsym"):
            sec = elf.get_section_by_name(name)
            if sec is None:
                continue
            for value, size in _func_symbols(sec.data(), elf.elfclass, elf.little_endian):
                a = value + bias
                starts.add(a)
                if size:
                    sizes[a] = max(sizes.get(a, 0), size)
    exec_ranges = _exec_ranges(proc.mem)
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
        texts, decls, made, emitted, made_x = [], {}, [], {}, []
        nonce = os.urandom(4).hex()
        for start, end in funcs[i : i + BATCH]:
            blocks, entries, _ = function_region(eng.arch, eng.mem, start, end, lifted=lifted)
            if not blocks:
                continue
            name = eng._region_name(blocks, AOT_OPT)
            sym = f"{name}_{nonce}"
            pages = sorted({p for b in blocks for p in range(b.pc >> 12, ((b.end - 1) >> 12) + 1)})
            er = eng.emit_region(name, blocks, entries)  # (the first tier without LLVM: `x64`)
            if er is not None:
                emitted[sym] = er
                made_x.append((sym, er.entry_pcs, pages, len(blocks)))
                continue
            lw = eng.lower_region(sym, name, blocks, entries, compact=True)
            if lw is None:
                continue
            texts.append(lw.text)
            decls.update(lw.decls)
            made.append((sym, lw.entry_pcs, pages, len(blocks)))
        objs = []
        if made_x:
            objs.append((x64.link(emitted), made_x))
        if made:
            objs.append((comp.compile(comp.module_text(texts, decls), AOT_OPT), made))
        for obj, regions in objs:
            obj_name = cache.store_object(obj)
            if obj_name is None:
                raise OSError("cannot write to the translation cache")
            for sym, entries, pages, nb in regions:
                cache.store_entry(eng.mem, entries, sym, obj_name, AOT_OPT, pages)
                nregions += 1
                nblocks += nb
    return nregions, nblocks


def _data_pointers(mem: Any, exec_ranges: list[tuple[int, int]], align: int) -> set[int]:
    """Aligned 64-bit words in readable, non-executable memory that point into code: function
    pointer tables, vtables, jump tables (the usual static-recompiler heuristic)."""
    import struct

    lo = min((a for a, _ in exec_ranges), default=0)
    hi = max((b for _, b in exec_ranges), default=0)
    out: set[int] = set()
    for s, e, prot in mem.regions():
        if not prot & PROT_READ or prot & PROT_EXEC or e - s > 64 << 20:
            continue
        try:
            data = mem.read_raw(s, e - s)
        except MemoryFault:
            continue
        words = {v for (v,) in struct.iter_unpack("<Q", data[: len(data) // 8 * 8]) if lo <= v < hi}
        out.update(v for v in words if v % align == 0 and any(a <= v < b for a, b in exec_ranges))
    return out


def _decodes(arch: Any, mem: Any, pcs: list[int], memo: dict[int, bool] | None = None) -> list[int]:
    """The pcs at which something decodes (candidate function starts worth keeping)."""
    memo = {} if memo is None else memo
    out = []
    for pc in pcs:
        ok = memo.get(pc)
        if ok is None:
            try:
                ok = bool(arch.lift_block(mem.fetch, pc, 4).insns)
            except MemoryFault:
                ok = False
            memo[pc] = ok
        if ok:
            out.append(pc)
    return out


def _targets(
    arch: Any,
    mem: Any,
    items: list[tuple[int, int]],
    exec_ranges: list[tuple[int, int]],
    lifted: dict[int, Any],
    memo: dict[int, bool] | None = None,
) -> list[int]:
    """Lift the functions `items` ((start, end) each) and return what they jump to or
    materialize outside themselves that lies in code and decodes: more function starts.
    `memo` keeps what decodes between calls (the same callees come up round after round)."""
    found: set[int] = set()
    for a, end in items:
        _, _, outside = function_region(arch, mem, a, end, limit=MAX_REGION_BLOCKS, lifted=lifted)
        found.update(t for t in outside if t % 2 == 0 and any(s <= t < e for s, e in exec_ranges))
    return _decodes(arch, mem, sorted(found), memo)


def find_functions(
    proc: Any, path: str, pool: Any = None
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Function ranges: ELF symbols and the entry, data words pointing into code, and (to a
    fixed point) direct jump targets found while lifting them, in rounds (each round lifts
    the starts the previous one found, on the `pool`'s workers when given). A function
    without a symbol size ends at the next known function start."""
    funcs, exec_ranges = discover(proc, path)
    starts = {a for a, _ in funcs}
    sized = dict(funcs)
    arch, mem = proc.isa, proc.mem
    if pool is None:
        pool = _LocalPool(_Work(arch, mem, exec_ranges))
    cands = sorted(_data_pointers(mem, exec_ranges, 2) - starts)
    starts.update(pool.run("decodes", cands))  # keep only pointers at something that decodes
    ordered = sorted(starts)  # a function without a size ends at the next start
    pool.partition(ordered)
    work = ordered
    while work:
        items = [(a, _end_of(a, ordered, sized, exec_ranges)) for a in work]
        new = sorted(set(pool.run("targets", items)) - starts)
        for t in new:
            starts.add(t)
            insort(ordered, t)
        work = new
    return [(a, _end_of(a, ordered, sized, exec_ranges)) for a in ordered], exec_ranges


def _end_of(a: int, ordered: list[int], sized: dict[int, int], exec_ranges: list[tuple[int, int]]) -> int:
    """Where function a ends: its symbol's end, else the next known start (`ordered` is the
    sorted starts), never past its segment."""
    seg_end = next((e for s, e in exec_ranges if s <= a < e), a + 4096)
    if a in sized and sized[a] > a:
        return min(sized[a], seg_end)
    i = bisect_right(ordered, a)
    return min(ordered[i] if i < len(ordered) else seg_end, seg_end)


class _Work:
    """What the workers of `polyvm aot` share (forked copies): the guest, the engine whose
    lowering they use, the cache they write and the blocks they lifted."""

    def __init__(
        self, arch: Any, mem: Any, exec_ranges: list[tuple[int, int]], eng: Any = None, cache: Any = None
    ) -> None:
        self.arch, self.mem, self.exec_ranges, self.eng, self.cache = arch, mem, exec_ranges, eng, cache
        self.lifted: dict[int, Any] = {}
        self.decoded: dict[int, bool] = {}

    def do(self, kind: str, items: list[Any], report: Any) -> list[int]:
        arch, mem = self.arch, self.mem
        if kind == "decodes":
            return _decodes(arch, mem, items, self.decoded)
        if kind == "targets":
            return _targets(arch, mem, items, self.exec_ranges, self.lifted, self.decoded)
        assert kind == "compile"
        for j in range(0, len(items), BATCH):
            nr, nb = _compile_chunk(self.eng, self.cache, items[j : j + BATCH], self.lifted)
            report((len(items[j : j + BATCH]), nr, nb))
        return []


class _LocalPool:
    """The work done in this process (one job, or a host without fork)."""

    def __init__(self, work: _Work) -> None:
        self.work = work

    def partition(self, starts: list[int]) -> None:
        pass

    def run(self, kind: str, items: list[Any], progress: Any = None) -> list[int]:
        return self.work.do(kind, items, progress or (lambda r: None))

    def close(self) -> None:
        pass


class _ForkPool:
    """Worker processes forked before discovery (so each holds only what it lifted). Each
    owns a contiguous range of code addresses: it lifts the functions that start there
    during discovery and then translates them, reusing its lifted blocks. Requests and
    replies are length-prefixed pickles over pipes; a thread per worker reads the replies."""

    def __init__(self, n: int, work: _Work) -> None:
        import queue

        from polyvm.engine.cworker import _recv, _send

        self._send = _send
        self.n = n
        self.bounds: list[int] = []
        self.q: Any = queue.SimpleQueue()
        fds: list[tuple[int, int, int]] = []  # (pid, to the worker, from the worker)
        try:
            for _ in range(n):
                fds.append(self._fork(work, fds, _recv, _send))
        except BaseException:
            for pid, w, r in fds:  # (EOF stops the workers forked so far)
                os.close(w)
                os.close(r)
                os.waitpid(pid, 0)
            raise
        # Threads only once every worker is forked (a fork copies no thread, only its locks).
        self.pids = [pid for pid, _, _ in fds]
        self.outs = [os.fdopen(w, "wb") for _, w, _ in fds]
        self.threads = [
            threading.Thread(target=self._read, args=(i, os.fdopen(r, "rb"), _recv), daemon=True)
            for i, (_, _, r) in enumerate(fds)
        ]
        for t in self.threads:
            t.start()

    @staticmethod
    def _fork(work: _Work, fds: list[tuple[int, int, int]], recv: Any, send: Any) -> tuple[int, int, int]:
        """Start one worker serving requests until EOF; (pid, fd to it, fd from it). `fds`:
        the workers started before (their pipes are closed in the new one)."""
        pipes: list[int] = []
        try:
            pipes += os.pipe()
            pipes += os.pipe()
            pid = os.fork()
        except BaseException:
            for fd in pipes:
                os.close(fd)
            raise
        r1, w1, r2, w2 = pipes
        if pid == 0:
            status = 1
            try:
                for _, a, b in fds:  # the other workers' pipes (raw fds: no locks)
                    os.close(a)
                    os.close(b)
                os.close(w1)
                os.close(r2)
                gc.disable()  # (see aot(): the lifted blocks stay until translated)
                with os.fdopen(r1, "rb") as fin, os.fdopen(w2, "wb") as fout:
                    while (msg := recv(fin)) is not None:
                        kind, items = msg
                        try:
                            out = work.do(kind, items, lambda r: send(fout, ("progress", r)))
                        except Exception as e:  # noqa: BLE001 - reported by the parent
                            send(fout, ("error", f"{type(e).__name__}: {e}"))
                            break
                        send(fout, ("end", out))
                status = 0
            finally:
                os._exit(status)
        os.close(r1)
        os.close(w2)
        return pid, w1, r2

    def _read(self, i: int, f: Any, recv: Any) -> None:
        with f:
            while (msg := recv(f)) is not None:
                self.q.put((i, msg))
        self.q.put((i, None))

    def partition(self, starts: list[int]) -> None:
        """Give each worker an equal share of the function starts, by address."""
        self.bounds = [starts[k * len(starts) // self.n] for k in range(1, self.n)] if starts else []

    def run(self, kind: str, items: list[Any], progress: Any = None) -> list[int]:
        """Do `kind` on items in the workers: each gets the items that start in its address
        range. Translation goes out a batch at a time, and a worker that has done its own
        takes batches from the end of the longest other queue (function sizes vary)."""
        from collections import deque

        parts: list[list[Any]] = [[] for _ in range(self.n)]
        for k, it in enumerate(items):
            a = it[0] if isinstance(it, tuple) else it
            parts[bisect_right(self.bounds, a) if self.bounds else k % self.n].append(it)
        step = BATCH if kind == "compile" else max(1, len(items))
        queues = [deque(p[j : j + step] for j in range(0, len(p), step)) for p in parts]

        def feed(i: int) -> bool:
            q = queues[i] if queues[i] else max(queues, key=len)
            if not q:
                return False
            try:
                self._send(self.outs[i], (kind, q.popleft() if q is queues[i] else q.pop()))
            except OSError:
                raise RuntimeError("a translation worker died") from None
            return True

        waiting = {i for i in range(self.n) if feed(i)}
        out: list[int] = []
        while waiting:
            i, msg = self.q.get()
            if msg is None:
                raise RuntimeError("a translation worker died")
            if msg[0] == "progress":
                if progress is not None:
                    progress(msg[1])
            elif msg[0] == "end":
                out.extend(msg[1])
                if not feed(i):
                    waiting.discard(i)
            else:
                raise RuntimeError(f"translation worker: {msg[1]}")
        return out

    def close(self) -> None:
        for f in self.outs:
            try:
                f.close()
            except OSError:
                pass
        for pid in self.pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        for t in self.threads:  # (each ends at its worker's EOF)
            t.join()


def aot(path: str, *, jobs: int | None = None, out: Any = sys.stderr, cache_dir: str | None = None) -> dict:
    """Translate the program at `path` into the translation cache; returns statistics."""
    from polyvm.engine.jit import JitEngine
    from polyvm.engine.tcache import TranslationCache, cache_root
    from polyvm.linux.process import Process

    t0 = time.perf_counter()
    proc = Process.from_file(path, [path], env=[], quiet=True)
    eng = JitEngine(proc.isa, proc.mem, tier="jit")
    cache = eng.cache_for(TranslationCache(cache_dir or cache_root(), eng.compiler.host_id))
    if not cache.enabled:
        raise OSError(f"cannot write to the translation cache at {cache.root}")
    if out is not None:
        out.write("polyvm aot: discovering code...")
        out.flush()
    jobs = jobs or min(os.cpu_count() or 1, 8)
    work = _Work(proc.isa, proc.mem, _exec_ranges(proc.mem), eng, cache)
    # The lifted blocks stay alive until translated: with the cycle collector on, each of its
    # full passes would walk all of them (discovery took 1.5x as long); what aot allocates is
    # freed by reference counting.
    gc_was = gc.isenabled()
    pool: Any = None
    try:
        gc.disable()
        pool = _ForkPool(jobs, work) if jobs > 1 and hasattr(os, "fork") else _LocalPool(work)
        funcs, exec_ranges = find_functions(proc, path, pool=pool)
        if out is not None:
            out.write("\r")
        progress = _Progress(len(funcs), t0, out)
        progress.add(0)
        counts = [0, 0]

        def done(r: tuple[int, int, int]) -> None:
            counts[0] += r[1]
            counts[1] += r[2]
            progress.add(r[0])

        pool.run("compile", funcs, done)
    finally:
        if pool is not None:
            pool.close()
        if gc_was:
            gc.enable()
    if out is not None:
        out.write("\n")
    return {
        "functions": len(funcs),
        "regions": counts[0],
        "blocks": counts[1],
        "code_bytes": sum(e - s for s, e in exec_ranges),
        "seconds": time.perf_counter() - t0,
        "cache": cache.dir,
    }
