"""The reference engine: IR blocks turned into Python functions.

Each IR block becomes the source of one Python function `blk(r)` over the state list `r`,
compiled once with `compile()` and cached by guest pc. The slots the block uses live in Python
locals (`s<slot>`), loaded on entry and written back before every return; single-use values
are inlined into their user, so most guest instructions are one Python statement. Loads and
stores inline the address space's page-table fast path and call its checked slow path otherwise.

Precise exceptions cost nothing on the fast path: each guest instruction occupies exactly one
source line, and IR keeps every faulting statement of an instruction before its first `put`.
When a load, store or helper raises, `_fault` finds the block's frame in the traceback, maps the
line to the instruction, copies the frame's slot locals back into `r` and fixes the pc and the
instruction count.

A block returns the next guest pc, or a negative number `~k` naming entry k of the engine's
exit table (syscalls, breakpoints, ...). A block that branches back to itself is compiled as a
`while` loop, and a loop header with its body blocks as one *region* function (a `while` over
an `if pc == ...` chain), which is where CPU-bound guests spend their time.

This engine is the ground truth that the JIT and AOT tiers are tested against, and it is the
single-step debugger (`step`).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Any

from polyvm.engine import GuestTrap, Stop
from polyvm.ir import Block, Insn, Stmt, Val, sdiv, srem
from polyvm.isa import SLOT_ICOUNT, SLOT_PC, Arch
from polyvm.memory import PAGE_MASK, PAGE_SHIFT, PAGE_SIZE, MemoryFault

_STRUCTS = {8: struct.Struct("<B"), 16: struct.Struct("<H"), 32: struct.Struct("<I"), 64: struct.Struct("<Q")}

LOOP_LIMIT = 512  # iterations of a self-looping block per dispatch (bounds time slices)
REGION_LIMIT = 2048  # blocks executed inside a region per dispatch
REGION_SPAN = 4096  # a backward branch at most this far marks a loop region
REGION_MAX_BLOCKS = 24


def _peephole(parts: list[str], uses_total: dict[str, int], prefix: str) -> None:
    """`tN = ld64(a)` then `sK = tN` (tN used once): assign the slot directly."""
    for j in range(len(parts) - 1):
        p0, p1 = parts[j], parts[j + 1]
        if p0.startswith("t") and " = " in p0 and p1.startswith("s") and " = " in p1 and ";" not in p0:
            tname, expr = p0.split(" = ", 1)
            sname, src = p1.split(" = ", 1)
            if src == tname and uses_total.get("t" + tname[len(prefix) :], 0) == 1:
                parts[j] = ""
                parts[j + 1] = f"{sname} = {expr}"


class HookStop(Exception):
    """Raised by a code hook (through `Engine.request_stop`) to stop before an instruction."""


def _ctz(a: int, w: int) -> int:
    return (a & -a).bit_length() - 1 if a else w


def _bswap(a: int, w: int) -> int:
    return int.from_bytes(a.to_bytes(w // 8, "little"), "big")


def _lit(x: int) -> str:
    return str(x) if x < 4096 else hex(x)


class _GenCtx:
    """Code generation state for one block (see Engine._stmt)."""

    def __init__(
        self, env: dict, helpers: Any, cached: set[int], flush: str, reload: str, uses: dict[int, int]
    ) -> None:
        self.env, self.helpers, self.cached, self.flush, self.reload = env, helpers, cached, flush, reload
        self.uses = uses  # temp id -> remaining uses
        # temp id -> (expression, slots it reads, is a plain alias of a slot local)
        self.pending: dict[int, tuple[str, frozenset[int], bool]] = {}
        self.out: list[str] = []
        self.untrunc: dict[int, tuple[str, int]] = {}  # pending trunc temp -> (wide expr, width)
        self.prefix = "t"
        self.inline_mem = False
        self.written: set[int] = set()
        self.icount = "r[1]"  # expression for the count at the start of the current block

    def defer(self, d: Val, expr: str, slots: frozenset[int], alias: bool = False) -> None:
        if self.uses.get(d.id, 0) == 0:
            return
        self.pending[d.id] = (expr, slots, alias)

    def _slots_of(self, x: Val) -> frozenset[int]:
        p = self.pending.get(x.id) if x.const is None else None
        return p[1] if p else frozenset()

    def assign(self, d: Val, expr: str, pure: bool = True, reads: frozenset[int] | None = None) -> None:
        """Define temp d as expr: inlined later if pure and used once, else assigned now."""
        if pure and self.uses.get(d.id, 0) == 1:
            self.pending[d.id] = (expr, self._last_reads, False)
        else:
            self.out.append(f"{self.prefix}{d.id} = {expr}")
        self._last_reads = frozenset()

    _last_reads: frozenset[int] = frozenset()

    def v_untrunc(self, x: Val, w: int) -> str:
        """x, or the wider value x truncates to w bits if x is a pending `trunc` to w."""
        if x.const is None and x.id in self.pending:
            u = self.untrunc.get(x.id)
            if u is not None and u[1] == w:
                self.v(x)  # consume the use
                return f"({u[0]})"
        return self.v(x)

    def v(self, x: Val) -> str:
        if x.const is not None:
            return _lit(x.const)
        p = self.pending.get(x.id)
        if p is None:
            return f"{self.prefix}{x.id}"
        expr, slots, alias = p
        self._last_reads = self._last_reads | slots
        n = self.uses[x.id] - 1
        self.uses[x.id] = n
        if n <= 0:
            del self.pending[x.id]
        return expr if alias else f"({expr})"

    def vn(self, x: Val) -> str:
        """x as a plain name or literal (for templates that mention an operand twice)."""
        if x.const is not None:
            return _lit(x.const)
        p = self.pending.get(x.id)
        if p is None:
            return f"{self.prefix}{x.id}"
        if p[2]:
            return self.v(x)
        del self.pending[x.id]
        self.out.append(f"{self.prefix}{x.id} = {p[0]}")
        self._last_reads = self._last_reads | p[1]
        return f"{self.prefix}{x.id}"

    def materialize_slot(self, slot: int) -> None:
        """Slot is about to change: pin pending expressions that read its old value."""
        for tid, (expr, slots, _alias) in list(self.pending.items()):
            if slot in slots:
                del self.pending[tid]
                self.out.append(f"{self.prefix}{tid} = {expr}")

    def materialize_all(self) -> None:
        for tid, (expr, _slots, _alias) in list(self.pending.items()):
            del self.pending[tid]
            self.out.append(f"{self.prefix}{tid} = {expr}")


class CompiledBlock:
    """A compiled block or region, with what `_fault` needs to map a traceback back."""

    __slots__ = ("fn", "code", "blocks", "line_insn", "kind", "pages", "written")

    def __init__(
        self, fn: Callable, blocks: list[Block], line_insn: dict[int, tuple[Insn, int]], kind: str
    ) -> None:
        self.fn = fn
        self.code = fn.__code__
        self.blocks = blocks
        self.line_insn = line_insn
        self.kind = kind  # "block", "loop" or "region"
        self.written: list[int] = []
        pages: set[int] = set()
        for b in blocks:
            first = b.pc >> PAGE_SHIFT
            last = (b.end - 1) >> PAGE_SHIFT if b.insns else first
            pages.update(range(first, last + 1))
        self.pages = sorted(pages)


class Engine:
    """Runs guest code from one address space; several CPU states (threads) may share it."""

    name = "interp"

    def __init__(self, arch: Arch, mem: Any, *, max_insns: int = 64, regions: bool = True) -> None:
        self.arch = arch
        self.regions = regions
        self.mem = mem
        self.max_insns = max_insns
        self.cache: dict[int, Callable[[list[int]], int]] = {}
        self.step_cache: dict[int, Callable[[list[int]], int]] = {}
        self.blocks: dict[object, CompiledBlock] = {}  # code object -> block (fault mapping)
        self.page_blocks: dict[int, list[tuple[dict, int]]] = {}
        self.exits: list[tuple[str, int, int, Any]] = []
        self._exit_ids: dict[tuple[str, int, int, Any], int] = {}
        self.code_hooks: list[tuple[int, int, Callable[[int, int], Any]]] = []
        self.blocks_compiled = 0
        self.compile_time = 0.0
        # Addresses to stop at before executing (emu_start's `until`, debugger breakpoints):
        # checked when the dispatcher finds no translation for the pc, so they are never
        # cached; the caller also puts a code hook on them for blocks that run through them.
        self.breakpoints: set[int] = set()
        # Set by `request_stop_after` (emu_stop in a memory hook): memory-hooked blocks check
        # it first and stop before their instruction.
        self._stop_next = [False]
        mem.on_code_write = self.invalidate_page

    # ---- cache management --------------------------------------------------------------
    def invalidate_page(self, pn: int) -> None:
        for cache, pc in self.page_blocks.pop(pn, ()):
            cache.pop(pc, None)

    def flush(self) -> None:
        self.cache.clear()
        self.step_cache.clear()
        self.page_blocks.clear()

    def add_code_hook(self, begin: int, end: int, cb: Callable[[int, int], Any]) -> None:
        """Call cb(pc, size) before each instruction in [begin, end]."""
        self.code_hooks.append((begin, end, cb))
        self._invalidate_range(begin, end)

    def remove_code_hook(self, cb: Callable[[int, int], Any]) -> None:
        for b, e, _ in [h for h in self.code_hooks if h[2] is cb]:
            self._invalidate_range(b, e)
        self.code_hooks = [h for h in self.code_hooks if h[2] is not cb]

    def _invalidate_range(self, begin: int, end: int) -> None:
        """Drop translations that may hold code in [begin, end] (all of them for a big range)."""
        first, last = begin >> PAGE_SHIFT, end >> PAGE_SHIFT
        if last - first > 64:
            self.flush()
            return
        # A block may start on the page before the one it runs into.
        for pn in range(max(first - 1, 0), last + 1):
            self.invalidate_page(pn)

    def request_stop(self) -> None:
        """From a hook: stop before the current instruction (Unicorn's emu_stop)."""
        raise HookStop()

    def request_stop_after(self, on: bool = True) -> None:
        """From a memory hook: let the accessing instruction complete, then stop (Unicorn's
        emu_stop there); False withdraws a request that did not take effect."""
        self._stop_next[0] = on

    # ---- running -----------------------------------------------------------------------
    def run(self, r: list[int], max_blocks: int) -> Stop:
        cache = self.cache
        pc = r[SLOT_PC]
        try:
            while max_blocks > 0:
                max_blocks -= 1
                fn = cache.get(pc)
                if fn is None:
                    if pc in self.breakpoints:
                        r[SLOT_PC] = pc
                        return Stop("stopped", pc)
                    fn = self._compile(pc, cache, self.max_insns)
                pc = fn(r)
                if pc < 0:
                    stop = self._exit(r, ~pc)
                    if stop is not None:
                        return stop
                    pc = r[SLOT_PC]
        except (MemoryFault, GuestTrap, HookStop) as e:
            return self._fault(r, e)
        r[SLOT_PC] = pc
        return Stop("budget", pc)

    def step(self, r: list[int]) -> Stop | None:
        """Execute one instruction; None if it completed normally."""
        pc = r[SLOT_PC]
        try:
            fn = self.step_cache.get(pc)
            if fn is None:
                fn = self._compile(pc, self.step_cache, 1)
            nxt = fn(r)
            if nxt < 0:
                return self._exit(r, ~nxt)
        except (MemoryFault, GuestTrap, HookStop) as e:
            return self._fault(r, e)
        r[SLOT_PC] = nxt
        return None

    def _exit(self, r: list[int], k: int) -> Stop | None:
        reason, pc, resume, info = self.exits[k]
        if reason == "sync_icache":
            # Stores into translated code already dropped stale blocks; nothing left to do.
            r[SLOT_PC] = resume
            return None
        r[SLOT_PC] = pc
        if reason == "fetch_fault":
            addr = info if info is not None else pc
            return Stop("fault", pc, addr=addr, access="x", mapped=self.mem.is_mapped(addr))
        return Stop(reason, pc, resume=resume, info=info)

    def _fault(self, r: list[int], e: Exception) -> Stop:
        tb = e.__traceback__
        cb = None
        while tb is not None:
            cb = self.blocks.get(tb.tb_frame.f_code)
            if cb is not None:
                break
            tb = tb.tb_next
        if cb is None or tb is None:
            raise RuntimeError("fault outside translated code") from e
        insn, idx = cb.line_insn[tb.tb_lineno]
        loc = tb.tb_frame.f_locals
        if not isinstance(e, HookStop):  # a hook runs after a write-back: r is current there
            for k in cb.written:
                val = loc.get(f"s{k}")
                if val is not None:
                    r[k] = val
        if cb.kind == "loop":
            idx += loc.get("c", 0) * len(cb.blocks[0].insns)
        elif cb.kind == "region":
            idx += loc.get("ic", 0)
        r[SLOT_PC] = insn.pc
        r[SLOT_ICOUNT] += idx
        if isinstance(e, MemoryFault):
            return Stop("fault", insn.pc, addr=e.addr, access=e.access, mapped=e.mapped)
        if isinstance(e, HookStop):
            return Stop("stopped", insn.pc)
        assert isinstance(e, GuestTrap)
        return Stop(e.reason, insn.pc, resume=insn.pc + insn.size, info=e.info)

    # ---- translation -------------------------------------------------------------------
    def _compile(self, pc: int, cache: dict, max_insns: int) -> Callable[[list[int]], int]:
        t0 = time.perf_counter()
        if getattr(self.mem, "hooks", None):
            # Memory hooks see the registers, pc and count as they are before the accessing
            # instruction, and what they write is what the next instruction reads: blocks of
            # one instruction (whose locals are loaded on entry), the pc stored at each.
            max_insns = 1
        block = self.arch.lift_block(self.mem.fetch, pc, max_insns, self._lift_stop())
        fn, cb = self.codegen(block, allow_loop=max_insns > 1)
        self._install(cache, pc, fn, cb)
        if max_insns > 1 and self.regions:
            region = self._region_for(block)
            if region is not None:
                rfn, rcb = self.codegen(region)
                self._install(cache, region[0].pc, rfn, rcb)
        self.compile_time += time.perf_counter() - t0
        return fn

    def _install(self, cache: dict, pc: int, fn: Callable, cb: CompiledBlock) -> None:
        if len(self.blocks) > 4 * (len(self.cache) + len(self.step_cache)) + 1024:
            # Forget translations no cache holds any more. Done here, between blocks, never
            # on invalidation: a block that invalidated itself may still fault afterwards.
            live = {f.__code__ for c in (self.cache, self.step_cache) for f in c.values()}
            self.blocks = {k: v for k, v in self.blocks.items() if k in live}
        self.blocks[cb.code] = cb
        self.blocks_compiled += 1
        b = cb.blocks[0]
        if b.term.kind == "exit" and b.term.reason == "fetch_fault" and not b.insns:
            return  # never cache a fetch fault: the page may be mapped later
        cache[pc] = fn
        for pn in cb.pages:
            self.mem.watch_code(pn << PAGE_SHIFT)
            self.page_blocks.setdefault(pn, []).append((cache, pc))

    def _exit_index(self, entry: tuple[str, int, int, Any]) -> int:
        """The exit table entry for `entry`, shared by every translation that exits the same way
        (so retranslating code does not grow the table)."""
        try:
            k = self._exit_ids.get(entry)
        except TypeError:  # unhashable info
            k = None
        if k is None:
            self.exits.append(entry)
            k = len(self.exits) - 1
            try:
                self._exit_ids[entry] = k
            except TypeError:
                pass
        return k

    def _hooks_for(self, pc: int, size: int) -> list[Callable]:
        return [cb for b, e, cb in self.code_hooks if b <= pc <= e]

    def _lift_stop(self) -> Callable[[int], bool] | None:
        """With code hooks: blocks end before hooked instructions (`Arch.lift_block`)."""
        return (lambda pc: bool(self._hooks_for(pc, 1))) if self.code_hooks else None

    def codegen(self, block: Block | list[Block], allow_loop: bool = True) -> tuple[Callable, CompiledBlock]:
        """Python source for a block (or a region of blocks), compiled.

        One guest instruction per source line. Slots the code touches live in locals
        `s<slot>` (loaded on entry, written back before every return, around state-accessing
        helpers and hooks, and by `_fault` from the frame's locals), so loops run on locals.

        Shapes: a plain block returns the next pc; a block that branches to itself is a
        `while` loop; a *region* (a loop header plus the blocks of its body, see
        `_region_for`) is a `while` loop over an `if pc == ...` chain.
        """
        blocks = block if isinstance(block, list) else [block]
        first = blocks[0]
        env: dict[str, Any] = {"_ctz": _ctz, "_bswap": _bswap, "_sdiv": sdiv, "_srem": srem}
        env.update(self.mem.access_functions())
        fast = getattr(self.mem, "fast_tables", None)
        tables = fast() if fast is not None else None
        if tables is not None:
            rget, wget = tables
            env["_RP"], env["_WP"] = rget, wget
            for w, st in _STRUCTS.items():
                env[f"_U{w}"], env[f"_P{w}"] = st.unpack_from, st.pack_into
        hooked = bool(self.code_hooks) and any(self._hooks_for(i.pc, i.size) for b in blocks for i in b.insns)
        if len(blocks) > 1:
            kind = "region"
        else:
            t, n = first.term, len(first.insns)
            kind = (
                "loop"
                if n > 0
                and allow_loop
                and not hooked
                and t.kind in ("jump", "branch")
                and t.target is not None
                and (t.target.const == first.pc or t.fallthrough == first.pc)
                else "block"
            )
        # Slots kept in locals: every get/put slot of 64 bits or fewer, except halves of
        # 128-bit values.
        wide: set[int] = set()
        cached: set[int] = set()
        written: set[int] = set()
        block_uses: list[dict[int, int]] = []

        def use(x: Any) -> None:
            if isinstance(x, Val) and x.const is None:
                uses[x.id] = uses.get(x.id, 0) + 1

        for b in blocks:
            uses: dict[int, int] = {}
            block_uses.append(uses)
            for insn in b.insns:
                for st in insn.stmts:
                    for x in st.args:
                        use(x)
                    if st.op == "get":
                        if st.dst.w == 128:
                            wide.update((st.args[0], st.args[0] + 1))
                        else:
                            cached.add(st.args[0])
                    elif st.op == "put":
                        if st.args[1].w == 128:
                            wide.update((st.args[0], st.args[0] + 1))
                        else:
                            cached.add(st.args[0])
                            written.add(st.args[0])
            use(b.term.target)
            use(b.term.cond)
        # The instruction count is kept by the generated code itself (r[1] plus the loop's or
        # region's local count): a `get` of it is computed, never cached.
        cached -= wide | {SLOT_ICOUNT}
        written -= wide | {SLOT_ICOUNT}
        flush = "; ".join(f"r[{k}] = s{k}" for k in sorted(written))
        reload = "; ".join(f"s{k} = r[{k}]" for k in sorted(cached))
        ctx = _GenCtx(env, self.arch.helpers, cached, flush, reload, {})
        ctx.written = written
        ctx.inline_mem = tables is not None
        pre = f"{flush}; " if flush else ""

        lines = ["def blk(r):"]
        if reload:
            lines.append("    " + reload)
        if kind == "block" and getattr(self.mem, "hooks", None):
            # (memory hooks: see _compile; and a hook's emu_stop takes effect here)
            env["_sn"] = self._stop_next
            k = self._exit_index(("stopped", first.pc, first.pc, None))
            lines.append(f"    if _sn[0]: _sn[0] = False; return ~{k}")
            lines.append(f"    r[{SLOT_PC}] = {first.pc}")
        if kind == "loop":
            lines += ["    c = 0", "    while True:"]
            ind = " " * 8
        elif kind == "region":
            lines += [
                f"    pc = {first.pc}; c = 0; ic = 0",
                f"    while c < {REGION_LIMIT}:",
                "        c += 1",
            ]
            ind = " " * 16
        else:
            ind = " " * 4
        line_insn: dict[int, tuple[Insn, int]] = {}
        hk = 0
        for bi, b in enumerate(blocks):
            n = len(b.insns)
            if kind == "region":
                lines.append(f"        {'if' if bi == 0 else 'elif'} pc == {b.pc}:")
            # Temps are numbered per block: rename them apart within a region.
            ctx.prefix = f"t{bi}_" if kind == "region" else "t"
            ctx.uses = dict(block_uses[bi])
            ctx.untrunc = {}
            ctx.icount = {
                "loop": f"(r[{SLOT_ICOUNT}] + c * {n})",
                "region": f"(r[{SLOT_ICOUNT}] + ic)",
            }.get(kind, f"r[{SLOT_ICOUNT}]")
            uses_total = {f"t{k}": c for k, c in block_uses[bi].items()}
            for idx, insn in enumerate(b.insns):
                parts: list[str] = []
                hooks = self._hooks_for(insn.pc, insn.size) if self.code_hooks else []
                if hooks:
                    hk += 1
                    env[f"_hk{hk}"] = self._make_hook_caller(hooks)
                    parts += [flush, f"r[{SLOT_PC}] = {insn.pc}; _hk{hk}(r, {insn.pc}, {insn.size})", reload]
                ctx.out = parts
                for st in insn.stmts:
                    self._stmt(st, ctx)
                if idx == n - 1:
                    parts.append(self._term_expr(b, ctx, n, kind, pre))
                _peephole(parts, uses_total, ctx.prefix)
                line_insn[len(lines) + 1] = (insn, idx)
                lines.append(ind + ("; ".join(p for p in parts if p) or "pass"))
            if n == 0:
                lines.append(ind + self._term_expr(b, ctx, n, kind, pre))
        if kind == "loop":
            lines.append(
                f"{ind}if _n != {first.pc} or c >= {LOOP_LIMIT}: "
                f"{pre}r[{SLOT_ICOUNT}] += {len(first.insns)} * (c + 1); return _n"
            )
            lines.append(f"{ind}c += 1")
        elif kind == "region":
            lines += ["        else:", "            break", f"    {pre}r[{SLOT_ICOUNT}] += ic; return pc"]
        src = "\n".join(lines) + "\n"
        code = compile(src, f"<block {first.pc:#x}>", "exec")
        exec(code, env)
        fn = env["blk"]
        cb = CompiledBlock(fn, blocks, line_insn, kind)
        cb.written = sorted(written)
        return fn, cb

    def _region_for(self, latch: Block) -> list[Block] | None:
        """The loop whose back edge ends `latch`: its header and the body blocks between.

        A direct branch or jump backwards from `latch` to a header within REGION_SPAN bytes
        marks a loop. The region is every block reachable from the header through direct
        edges whose start lies in [header, latch.end), at most REGION_MAX_BLOCKS of them; calls
        and indirect jumps leave it (to the dispatcher) and come back in at the header.
        """
        t = latch.term
        if t.kind not in ("jump", "branch") or t.target is None or t.target.const is None:
            return None
        header = t.target.const
        if t.kind == "branch" and t.fallthrough is not None and t.fallthrough < header:
            header = t.fallthrough
        if not (latch.pc - REGION_SPAN <= header < latch.pc):
            return None
        lo, hi = header, latch.end
        blocks: dict[int, Block] = {}
        work = [header]
        while work and len(blocks) < REGION_MAX_BLOCKS:
            pc = work.pop()
            if pc in blocks or not (lo <= pc < hi):
                continue
            try:
                b = (
                    latch
                    if pc == latch.pc
                    else self.arch.lift_block(self.mem.fetch, pc, self.max_insns, self._lift_stop())
                )
            except MemoryFault:
                continue
            if not b.insns:
                continue
            blocks[pc] = b
            bt = b.term
            if bt.kind == "branch":
                work += [bt.fallthrough, bt.target.const]
            elif bt.kind == "jump" and bt.target is not None and bt.target.const is not None:
                # A call (jal ra) goes elsewhere; only edges inside [lo, hi) are followed.
                work.append(bt.target.const)
        if len(blocks) < 2 or header not in blocks:
            return None
        return [blocks[header]] + [b for pc, b in sorted(blocks.items()) if pc != header]

    def _make_hook_caller(self, hooks: list[Callable]) -> Callable:
        def call(r: list[int], pc: int, size: int) -> None:
            for h in hooks:
                if h(pc, size) is False:
                    raise HookStop()

        return call

    def _term_expr(self, block: Block, ctx: _GenCtx, n: int, kind: str, pre: str) -> str:
        t = block.term
        v = ctx.v
        if t.kind == "exit":
            k = self._exit_index((t.reason, t.pc, t.target.const if t.target is not None else 0, t.info))
            done = f"r[{SLOT_ICOUNT}] += ic + {n}" if kind == "region" else f"r[{SLOT_ICOUNT}] += {n}"
            return f"{pre}{done}; return {~k}"
        if t.kind == "jump":
            assert t.target is not None
            expr = v(t.target)
        else:
            assert t.target is not None and t.cond is not None
            expr = f"({v(t.target)} if {v(t.cond)} else {_lit(t.fallthrough or 0)})"
        if kind == "loop":
            return f"_n = {expr}"
        if kind == "region":
            return f"ic += {n}; pc = {expr}"
        return f"{pre}r[{SLOT_ICOUNT}] += {n}; return {expr}"

    def _stmt(self, s: Stmt, ctx: _GenCtx) -> None:
        """Append the Python for one statement to ctx.out.

        Single-use pure results are not assigned but inlined into their user, and `get`s are
        aliases of the slot's local while the slot is unchanged (ctx.pending), so an `add`
        lifts to one line like `s12 = (s12 + s13) & 0xffffffffffffffff`.
        """
        op, d, a = s.op, s.dst, s.args
        v, vn, out = ctx.v, ctx.vn, ctx.out
        if op == "get":
            slot = a[0]
            if slot == SLOT_ICOUNT:
                out.append(f"{ctx.prefix}{d.id} = {ctx.icount}")
            elif d.w == 128:
                out.append(f"{ctx.prefix}{d.id} = r[{slot}] | (r[{slot + 1}] << 64)")
            elif slot in ctx.cached:
                ctx.defer(d, f"s{slot}", frozenset((slot,)), alias=True)
            else:
                out.append(f"{ctx.prefix}{d.id} = r[{slot}]")
            return
        if op == "put":
            slot, x = a
            val = v(x)
            if x.w == 128:
                out.append(f"t_w = {val}; r[{slot}] = t_w & 0xffffffffffffffff; r[{slot + 1}] = t_w >> 64")
                return
            if slot in ctx.cached:
                ctx.materialize_slot(slot)
                out.append(f"s{slot} = {val}")
            else:
                out.append(f"r[{slot}] = {val}")
            return
        if op == "load":
            addr = v(a[0])
            if ctx.inline_mem and d.w <= 64:
                # The address space's fast path, inlined: one dict lookup and one unpack.
                last = PAGE_SIZE - d.w // 8
                expr = (
                    f"(_U{d.w}(_p, _o)[0] if (_p := _RP((_a := {addr}) >> {PAGE_SHIFT})) is not None "
                    f"and (_o := _a & {PAGE_MASK}) <= {last} else ld{d.w}(_a))"
                )
                ctx.assign(d, expr, pure=False)
            else:
                ctx.assign(d, f"ld{d.w}({addr})", pure=False)
            return
        if op == "store":
            addr, val = v(a[0]), v(a[1])
            w = a[1].w
            if ctx.inline_mem and w <= 64:
                last = PAGE_SIZE - w // 8
                out.append(
                    f"_P{w}(_p, _o, {val}) if (_p := _WP((_a := {addr}) >> {PAGE_SHIFT})) is not None "
                    f"and (_o := _a & {PAGE_MASK}) <= {last} else st{w}(_a, {val})"
                )
            else:
                out.append(f"st{w}({addr}, {val})")
            return
        if op == "cstore":
            c, addr, val = v(a[0]), v(a[1]), v(a[2])
            out.append(f"st{a[2].w}({addr}, {val}) if {c} else None")
            return
        if op == "call":
            name = a[0]
            h = ctx.helpers[name]
            fname = "h_" + name.replace(".", "_")
            ctx.env[fname] = h.fn
            args = ", ".join(v(x) for x in a[1:])
            call = f"{fname}({args})"
            reload = ""
            if h.state:
                call = f"{fname}(r, {args})" if args else f"{fname}(r)"
                # The helper sees and may change the state: write back what it may read, then
                # re-read what it may write (everything, unless it declared its slots).
                if h.reads is None or h.writes is None:
                    ctx.materialize_all()
                    flush, reload = ctx.flush, ctx.reload
                else:
                    sync_in = sorted(h.writes & ctx.cached)
                    for k in sync_in:
                        ctx.materialize_slot(k)
                    flush = "; ".join(f"r[{k}] = s{k}" for k in sorted((h.reads | h.writes) & ctx.written))
                    reload = "; ".join(f"s{k} = r[{k}]" for k in sync_in)
                if flush:
                    out.append(flush)
            if d is not None:
                out.append(f"{ctx.prefix}{d.id} = {call}")
            else:
                out.append(call)
            if reload:
                out.append(reload)
            return
        w = d.w
        m = hex((1 << w) - 1)
        if op in ("zext", "sext", "trunc"):
            x = a[0]
            if op == "zext":
                # i1 values are Python bools inside a block; registers hold plain ints.
                ctx.assign(d, f"(1 if {v(x)} else 0)" if x.w == 1 else v(x))
            elif op == "trunc":
                inner = v(x)
                ctx.assign(d, f"{inner} & {m}")
                if d.id in ctx.pending:
                    ctx.untrunc[d.id] = (inner, w)
            else:
                sb = hex(1 << (x.w - 1))
                ctx.assign(d, f"(({v(x)} ^ {sb}) - {sb}) & {m}")
            return
        if op == "select":
            ctx.assign(d, f"({v(a[1])} if {v(a[0])} else {v(a[2])})")
            return
        if len(a) == 1:
            if op in ("not", "neg", "clz", "popcnt"):
                x = v(a[0])
            else:
                x = vn(a[0])
            expr = {
                "not": f"{x} ^ {m}",
                "neg": f"-{x} & {m}",
                "clz": f"{w} - {x}.bit_length()",
                "ctz": f"_ctz({x}, {w})",
                "popcnt": f"{x}.bit_count()",
                "bswap": f"_bswap({x}, {w})",
            }[op]
            ctx.assign(d, expr)
            return
        aw = a[0].w
        sb = hex(1 << (aw - 1))
        yc = a[1].const
        # Operands that the template uses twice must be plain names (vn), others may be inlined.
        if op in ("rotl", "rotr", "urem") or (op in ("shl", "ashr", "udiv") and yc is None):
            x, y = (vn(a[0]), vn(a[1])) if op in ("rotl", "rotr", "urem") else (v(a[0]), vn(a[1]))
        elif op in ("add", "sub", "mul"):
            # The low w bits of a sum or product depend only on the low w bits of its inputs:
            # an operand's own truncation to w is redundant under the final mask.
            x, y = ctx.v_untrunc(a[0], w), ctx.v_untrunc(a[1], w)
        else:
            x, y = v(a[0]), v(a[1])
        if op == "add":
            expr = f"({x} + {y}) & {m}"
        elif op == "sub":
            expr = f"({x} - {y}) & {m}"
        elif op == "mul":
            expr = f"({x} * {y}) & {m}"
        elif op == "and":
            expr = f"{x} & {y}"
        elif op == "or":
            expr = f"{x} | {y}"
        elif op == "xor":
            expr = f"{x} ^ {y}"
        elif op == "shl":
            expr = (
                (f"({x} << {yc}) & {m}" if yc < w else "0")
                if yc is not None
                else f"(({x} << {y}) & {m} if {y} < {w} else 0)"
            )
        elif op == "lshr":
            expr = f"{x} >> {y}"
        elif op == "ashr":
            amt = str(min(yc, w - 1)) if yc is not None else f"({y} if {y} < {w} else {w - 1})"
            expr = f"((({x} ^ {sb}) - {sb}) >> {amt}) & {m}"
        elif op in ("rotl", "rotr"):
            k = str(yc % w) if yc is not None else f"({y} % {w})"
            if op == "rotl":
                expr = f"(({x} << {k}) | ({x} >> ({w} - {k}))) & {m}"
            else:
                expr = f"(({x} >> {k}) | ({x} << ({w} - {k}))) & {m}"
        elif op == "udiv":
            expr = f"({x} // {y} if {y} else {m})"
        elif op == "urem":
            expr = f"({x} % {y} if {y} else {x})"
        elif op == "sdiv":
            expr = f"_sdiv({x}, {y}, {w})"
        elif op == "srem":
            expr = f"_srem({x}, {y}, {w})"
        elif op == "eq":
            expr = f"{x} == {y}"
        elif op == "ne":
            expr = f"{x} != {y}"
        elif op == "ult":
            expr = f"{x} < {y}"
        elif op == "ule":
            expr = f"{x} <= {y}"
        elif op == "slt":
            expr = f"({x} ^ {sb}) < ({y} ^ {sb})"
        elif op == "sle":
            expr = f"({x} ^ {sb}) <= ({y} ^ {sb})"
        else:
            raise ValueError(f"unknown IR op {op}")
        ctx.assign(d, expr)
