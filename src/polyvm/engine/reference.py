"""The reference engine: IR blocks turned into Python functions.

Each IR block becomes the source of one Python function `blk(r)` over the state list `r`,
compiled once with `compile()` and cached by guest pc. Guest registers are written through to
`r` as they are assigned (and forwarded from locals when read again within the block), so when
a load, store or helper raises, `r` holds exactly the state before the faulting instruction.
Each guest instruction occupies exactly one source line, so the traceback's line number tells
which instruction faulted: precise exceptions cost nothing on the fast path.

A block returns the next guest pc, or a negative number `~k` naming entry k of the engine's
exit table (syscalls, breakpoints, ...). A block that branches back to itself is compiled as a
`while` loop, which is where CPU-bound guests spend their time.

This engine is the ground truth that the JIT and AOT tiers are tested against, and it is the
single-step debugger (`step`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from polyvm.engine import GuestTrap, Stop
from polyvm.ir import Block, Stmt, Val
from polyvm.isa import SLOT_ICOUNT, SLOT_PC, Arch
from polyvm.memory import PAGE_SHIFT, MemoryFault

LOOP_LIMIT = 512  # iterations of a self-looping block per dispatch (bounds time slices)


class HookStop(Exception):
    """Raised by a code hook (through `Engine.request_stop`) to stop before an instruction."""


def _ctz(a: int, w: int) -> int:
    return (a & -a).bit_length() - 1 if a else w


def _bswap(a: int, w: int) -> int:
    return int.from_bytes(a.to_bytes(w // 8, "little"), "big")


def _sdiv(a: int, b: int, w: int) -> int:
    m = (1 << w) - 1
    s = 1 << (w - 1)
    sa, sb = (a ^ s) - s, (b ^ s) - s
    if sb == 0:
        return m
    q = abs(sa) // abs(sb)
    return (-q if (sa < 0) != (sb < 0) else q) & m


def _srem(a: int, b: int, w: int) -> int:
    m = (1 << w) - 1
    s = 1 << (w - 1)
    sa, sb = (a ^ s) - s, (b ^ s) - s
    if sb == 0:
        return a
    r = abs(sa) % abs(sb)
    return (-r if sa < 0 else r) & m


def _lit(x: int) -> str:
    return str(x) if x < 4096 else hex(x)


class _GenCtx:
    __slots__ = ("env", "helpers", "cached", "flush", "reload")

    def __init__(self, env: dict, helpers: Any, cached: set[int], flush: str, reload: str) -> None:
        self.env, self.helpers, self.cached, self.flush, self.reload = env, helpers, cached, flush, reload

    @staticmethod
    def v(x: Val) -> str:
        return _lit(x.const) if x.const is not None else f"t{x.id}"


class CompiledBlock:
    __slots__ = ("fn", "code", "block", "line_insn", "ninsns", "pages", "loop", "written")

    def __init__(self, fn: Callable, block: Block, line_insn: dict[int, int], loop: bool) -> None:
        self.fn = fn
        self.code = fn.__code__
        self.block = block
        self.line_insn = line_insn
        self.ninsns = len(block.insns)
        self.loop = loop
        self.written: list[int] = []
        first = block.pc >> PAGE_SHIFT
        last = (block.end - 1) >> PAGE_SHIFT if block.insns else first
        self.pages = range(first, last + 1)


class Engine:
    """Runs guest code from one address space; several CPU states (threads) may share it."""

    name = "interp"

    def __init__(self, arch: Arch, mem: Any, *, max_insns: int = 64) -> None:
        self.arch = arch
        self.mem = mem
        self.max_insns = max_insns
        self.cache: dict[int, Callable[[list[int]], int]] = {}
        self.step_cache: dict[int, Callable[[list[int]], int]] = {}
        self.blocks: dict[object, CompiledBlock] = {}  # code object -> block (fault mapping)
        self.page_blocks: dict[int, list[tuple[dict, int]]] = {}
        self.exits: list[tuple[str, int, int, Any]] = []
        self.code_hooks: list[tuple[int, int, Callable[[int, int], Any]]] = []
        self.blocks_compiled = 0
        self.compile_time = 0.0
        self._stop_requested = False
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
        self.flush()

    def remove_code_hook(self, cb: Callable[[int, int], Any]) -> None:
        self.code_hooks = [h for h in self.code_hooks if h[2] is not cb]
        self.flush()

    def request_stop(self) -> None:
        """From a hook: stop before the current instruction (Unicorn's emu_stop)."""
        raise HookStop()

    # ---- running -----------------------------------------------------------------------
    def run(self, r: list[int], max_blocks: int) -> Stop:
        cache = self.cache
        pc = r[SLOT_PC]
        try:
            while max_blocks > 0:
                max_blocks -= 1
                fn = cache.get(pc)
                if fn is None:
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
        if reason == "fence_i":
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
        idx = cb.line_insn[tb.tb_lineno]
        loc = tb.tb_frame.f_locals
        for k in cb.written:
            val = loc.get(f"s{k}")
            if val is not None:
                r[k] = val
        iters = loc.get("c", 0) if cb.loop else 0
        insn = cb.block.insns[idx]
        r[SLOT_PC] = insn.pc
        r[SLOT_ICOUNT] += iters * cb.ninsns + idx
        if isinstance(e, MemoryFault):
            return Stop("fault", insn.pc, addr=e.addr, access=e.access, mapped=e.mapped)
        if isinstance(e, HookStop):
            return Stop("stopped", insn.pc)
        assert isinstance(e, GuestTrap)
        return Stop(e.reason, insn.pc, resume=insn.pc + insn.size, info=e.info)

    # ---- translation -------------------------------------------------------------------
    def _compile(self, pc: int, cache: dict, max_insns: int) -> Callable[[list[int]], int]:
        t0 = time.perf_counter()
        block = self.arch.lift_block(self.mem.fetch, pc, max_insns)
        fn, cb = self.codegen(block)
        self.blocks[cb.code] = cb
        self.blocks_compiled += 1
        t = block.term
        if not (t.kind == "exit" and t.reason == "fetch_fault" and not block.insns):
            # Never cache a fetch fault: the page may be mapped later.
            cache[pc] = fn
            for pn in cb.pages:
                self.mem.watch_code(pn << PAGE_SHIFT)
                self.page_blocks.setdefault(pn, []).append((cache, pc))
        self.compile_time += time.perf_counter() - t0
        return fn

    def _hooks_for(self, pc: int, size: int) -> list[Callable]:
        return [cb for b, e, cb in self.code_hooks if b <= pc <= e]

    def codegen(self, block: Block) -> tuple[Callable, CompiledBlock]:
        """Python source for `block`, compiled. One guest instruction per source line.

        Slots the block touches live in locals `s<slot>` (loaded on entry, written back before
        every return, around state-accessing helpers and hooks, and by `_fault` from the
        frame's locals), so a self-looping block runs entirely on locals.
        """
        env: dict[str, Any] = {"_ctz": _ctz, "_bswap": _bswap, "_sdiv": _sdiv, "_srem": _srem}
        env.update(self.mem.access_functions())
        helpers = self.arch.helpers
        term = block.term
        n = len(block.insns)
        loop = (
            n > 0
            and not self.code_hooks
            and term.kind in ("jump", "branch")
            and term.target is not None
            and (term.target.const == block.pc or term.fallthrough == block.pc)
        )
        # Which slots to keep in locals: all 64-bit-or-narrower get/put slots, except those
        # also touched as halves of a 128-bit value.
        wide: set[int] = set()
        cached: set[int] = set()
        written: set[int] = set()
        for insn in block.insns:
            for st in insn.stmts:
                if st.op == "get":
                    (wide.update((st.args[0], st.args[0] + 1)) if st.dst.w == 128 else cached.add(st.args[0]))
                elif st.op == "put":
                    if st.args[1].w == 128:
                        wide.update((st.args[0], st.args[0] + 1))
                    else:
                        cached.add(st.args[0])
                        written.add(st.args[0])
        cached -= wide
        written -= wide
        order = sorted(cached)
        flush = "; ".join(f"r[{k}] = s{k}" for k in sorted(written))
        reload = "; ".join(f"s{k} = r[{k}]" for k in order)
        ctx = _GenCtx(env, helpers, cached, flush, reload)

        head = ["def blk(r):"]
        if reload:
            head.append("    " + reload)
        ind = "        " if loop else "    "
        if loop:
            head += ["    c = 0", "    while True:"]
        body: list[str] = []
        line_insn: dict[int, int] = {}

        for idx, insn in enumerate(block.insns):
            parts: list[str] = []
            hooks = self._hooks_for(insn.pc, insn.size) if self.code_hooks else []
            if hooks:
                env[f"_hk{idx}"] = self._make_hook_caller(hooks)
                parts += [flush, f"r[{SLOT_PC}] = {insn.pc}; _hk{idx}(r, {insn.pc}, {insn.size})", reload]
            for st in insn.stmts:
                parts.append(self._stmt(st, ctx))
            if idx == n - 1:
                parts.append(self._term_expr(block, ctx, n, loop))
            line_insn[len(head) + len(body) + 1] = idx
            body.append(ind + ("; ".join(p for p in parts if p) or "pass"))
        if n == 0:
            body.append(ind + self._term_expr(block, ctx, n, loop))
        if loop:
            done = f"{flush}; " if flush else ""
            body.append(
                f"{ind}if _n != {block.pc} or c >= {LOOP_LIMIT}: "
                f"{done}r[{SLOT_ICOUNT}] += {n} * (c + 1); return _n"
            )
            body.append(f"{ind}c += 1")
        src = "\n".join(head + body) + "\n"
        code = compile(src, f"<block {block.pc:#x}>", "exec")
        exec(code, env)
        fn = env["blk"]
        cb = CompiledBlock(fn, block, line_insn, loop)
        cb.written = sorted(written)
        return fn, cb

    def _make_hook_caller(self, hooks: list[Callable]) -> Callable:
        def call(r: list[int], pc: int, size: int) -> None:
            for h in hooks:
                if h(pc, size) is False:
                    raise HookStop()

        return call

    def _term_expr(self, block: Block, ctx: _GenCtx, n: int, loop: bool) -> str:
        t = block.term
        v = ctx.v
        pre = f"{ctx.flush}; " if ctx.flush else ""
        if t.kind == "exit":
            self.exits.append((t.reason, t.pc, t.target.const if t.target is not None else 0, t.info))
            k = len(self.exits) - 1
            return f"{pre}r[{SLOT_ICOUNT}] += {n}; return {~k}" if n else f"{pre}return {~k}"
        if t.kind == "jump":
            assert t.target is not None
            expr = v(t.target)
        else:
            assert t.target is not None and t.cond is not None
            expr = f"({v(t.target)} if {v(t.cond)} else {_lit(t.fallthrough or 0)})"
        if loop:
            return f"_n = {expr}"
        return f"{pre}r[{SLOT_ICOUNT}] += {n}; return {expr}"

    def _stmt(self, s: Stmt, ctx: _GenCtx) -> str:
        op, d, a = s.op, s.dst, s.args
        v = ctx.v
        if op == "get":
            slot = a[0]
            if d.w == 128:
                return f"{v(d)} = r[{slot}] | (r[{slot + 1}] << 64)"
            return f"{v(d)} = s{slot}" if slot in ctx.cached else f"{v(d)} = r[{slot}]"
        if op == "put":
            slot, x = a
            if x.w == 128:
                return f"r[{slot}] = {v(x)} & 0xffffffffffffffff; r[{slot + 1}] = {v(x)} >> 64"
            return f"s{slot} = {v(x)}" if slot in ctx.cached else f"r[{slot}] = {v(x)}"
        if op == "load":
            return f"{v(d)} = ld{d.w}({v(a[0])})"
        if op == "store":
            return f"st{a[1].w}({v(a[0])}, {v(a[1])})"
        if op == "cstore":
            return f"st{a[2].w}({v(a[1])}, {v(a[2])}) if {v(a[0])} else None"
        if op == "call":
            name = a[0]
            h = ctx.helpers[name]
            fname = "h_" + name.replace(".", "_")
            ctx.env[fname] = h.fn
            args = ", ".join(v(x) for x in a[1:])
            call = f"{fname}({args})"
            if h.state:
                call = f"{fname}(r, {args})" if args else f"{fname}(r)"
            line = f"{v(d)} = {call}" if d is not None else call
            if h.state:
                # The helper sees and may change the state: write back, then re-read.
                line = "; ".join(p for p in (ctx.flush, line, ctx.reload) if p)
            return line
        w = d.w
        m = hex((1 << w) - 1)
        if op in ("zext", "sext", "trunc"):
            x = a[0]
            if op == "zext":
                # i1 values are Python bools inside a block; registers hold plain ints.
                return f"{v(d)} = (1 if {v(x)} else 0)" if x.w == 1 else f"{v(d)} = {v(x)}"
            if op == "trunc":
                return f"{v(d)} = {v(x)} & {m}"
            sb = hex(1 << (x.w - 1))
            return f"{v(d)} = (({v(x)} ^ {sb}) - {sb}) & {m}"
        if op == "select":
            return f"{v(d)} = {v(a[1])} if {v(a[0])} else {v(a[2])}"
        if len(a) == 1:
            x = v(a[0])
            expr = {
                "not": f"{x} ^ {m}",
                "neg": f"-{x} & {m}",
                "clz": f"{w} - {x}.bit_length()",
                "ctz": f"_ctz({x}, {w})",
                "popcnt": f"{x}.bit_count()",
                "bswap": f"_bswap({x}, {w})",
            }[op]
            return f"{v(d)} = {expr}"
        x, y = v(a[0]), v(a[1])
        aw = a[0].w
        sb = hex(1 << (aw - 1))
        yc = a[1].const
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
        return f"{v(d)} = {expr}"
