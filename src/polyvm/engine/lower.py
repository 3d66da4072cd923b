"""IR regions lowered to LLVM IR text, for the JIT and AOT tiers.

A *region* is a list of IR blocks compiled into one native function
`i64 f(i64* ctx, i64* state)`, entered at its first block (`entries` may name more). Control
flow between blocks of the region stays native (direct branches; indirect jumps such as
returns `switch` over the region's blocks first), and anything else returns to the dispatcher
(`dispatcher_text`), which looks the next pc up in a native hash table and calls the next
region without leaving native code.

Guest registers live in the state array, in both tiers: a get loads its slot (once per guest
block: later gets in the block reuse the value) and every put stores it, so the state is always
current, an exit writes only the pc and the instruction count, and no guest register is live
at an exit. (Until CODEGEN_REV 5 the hot tier copied the slots a region uses into `alloca`s,
which SROA turned into values live across the whole region: for LLVM's greedy register
allocator and coalescer, dozens of live ranges over hundreds of blocks, half of the hot tier's
compile time, for no run-time difference measurable here — the allocator spilled most of them
in big regions anyway, and loads of the state hit the L1 cache. Before that, a write-back of
every slot at every exit made the coalescer and allocator quadratic.) The instruction count is
a local; each exit stores it exactly (a fault at the k-th instruction of a block stores the
block's start count + k, the IR's precise-exception rule guaranteeing that the slots then hold
the state before that instruction). A hot region gives each exit a block of its own; the
compact form shares one.

Time slices: the dispatcher and every backward edge compare the count with ctx's limit
(CTX_LIMIT) and return RET_BUDGET once it is reached, so the count is the only value a loop
carries for bookkeeping.

Memory goes through a software TLB in `ctx`: the inline fast path is an index, a tag compare
and a host load or store; a miss (or a store to a page holding code, or an access crossing a
page) calls the slow path back in Python, which performs the access with all checks and hooks
and refills the entry. In system mode the same miss path becomes the page-table walk.

The text is written directly (not through llvmlite's IR builder, which costs more Python time
than LLVM takes to compile the result). Helpers with a native fast path (`native_fn`) are
separate `alwaysinline` functions built once per process with llvmlite's builder.

Nothing in the generated code depends on the process it was made in: callbacks and tables are
reached through `ctx`, so an object file can be cached on disk and loaded by a later run.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import Any

from polyvm.ir import Block, Insn, Stmt, Val, to_signed
from polyvm.isa import SLOT_ICOUNT, SLOT_PC

# Revision of the generated code's conventions: part of the translation cache's host key, so
# objects made by an older lowering are never loaded.
CODEGEN_REV = 34  # (34: every block of an x64 first-tier region can be entered; 33: the kept registers' loops include blocks that call guest functions (a call goes on to its return site); 31: kept registers carried round a loop first; 30: three kept registers where only code outside the loops calls helpers; 29: shifts too; 28: read-modify-writes of kept guest registers in place; 27: the x64 first tier keeps up to three guest registers in host registers in a region that calls no helper; 26: 65536 tier-up counters; 25: the x64 first tier keeps temporaries in r8-r11 across memory accesses, saved in their slow paths; 24: the x64 first tier counts down what is left of the time slice too; 23: hot regions count down what is left of the time slice; 22: the x64 first tier leaves out puts overwritten in their block; 21: one grouping of accesses for both code generators, `mem_groups`; 20: the x64 first tier checks a group of accesses from one base in the TLB once; 19: LLVM's first tier marks relative to ctx too; 18: the x64 first tier's block mark relative to ctx; 17: jump threading in the hot pipeline; 16: the first tier marks the blocks it runs; 15: inner loops sharing a header)

# ---- ctx layout (uint64 words) -------------------------------------------------------------
CTX_TLB = 0  # pointer to the TLB: TLB_SIZE entries of 4 words {tag_r, tag_w, addend, 0}
CTX_LIMIT = 1  # the time slice: stop (RET_BUDGET) at a budget point once state[icount] reaches it
CTX_STATUS = 2  # set non-zero by a callback that failed (fault, trap, hook stop)
CTX_EXIT_REASON = 3  # exit reason id | (has_info << 8)
CTX_EXIT_RESUME = 4
CTX_EXIT_INFO = 5
CTX_TABLE = 6  # pointer to the pc -> function hash table (pairs of words)
CTX_TABLE_MASK = 7  # number of pairs - 1
CTX_SLOW_LD = 8  # u64 slow_ld(ctx, addr, size)
CTX_SLOW_ST = 9  # u64 slow_st(ctx, addr, size, value) -> 0 ok, else fault
CTX_CALL = 10  # u64 call(ctx, state, helper_index, args*)
CTX_HOOK = 11  # u64 hook(ctx, pc, size) -> 0 continue, else stop
CTX_COUNTERS = 12  # pointer to per-region counters (u64 each)
CTX_DISPATCHES = 13  # calls made by the dispatcher (statistics)
CTX_STOP_NEXT = 14  # non-zero: a memory hook asked to stop; checked before each instruction then
CTX_FPN = 15  # pointer to the first tier's helper table: u64 f(ctx, state, helper_index, args*) each
CTX_MEM_FN = 16  # 8 words: polyvm_ld8..ld64, polyvm_st8..st64 (the compact form's accesses)
CTX_GUEST_BASE = 24  # host address of guest address 0 where memory is direct (`memory.AddressSpace`)
# (word 25: free)
CTX_WORDS = 26
# The first tier's block marks (SEEN_SIZE bytes: `seen_index`) follow ctx's words, at ctx +
# SEEN_AT: both first tiers mark a block with one store relative to ctx (`x64.X64Region._mark`).
SEEN_AT = 8 * CTX_WORDS

# The first tier marks each block it runs (a byte set to 1 at its start, at `seen_index(pc)` in
# the table at ctx + SEEN_AT): hot regions are formed from blocks that ran (`JitEngine._form_region`).
# (A hash of the pc, so cached code agrees across runs; two pcs sharing a byte only make a block
# that never ran look as if it had.)
SEEN_BITS = 16
SEEN_SIZE = 1 << SEEN_BITS


def seen_index(pc: int) -> int:
    return ((pc >> 1) ^ (pc >> (SEEN_BITS + 1))) & (SEEN_SIZE - 1)


MEM_FNS = [f"{k}{w}" for k in ("ld", "st") for w in (8, 16, 32, 64)]

TLB_BITS = 16
TLB_SIZE = 1 << TLB_BITS
TLB_ENTRY_WORDS = 4
PAGE_SHIFT = 12
EMPTY_PC = (1 << 64) - 1  # hash-table key of an empty pair; a TLB tag that never matches

RET_CONTINUE = 0  # (regions only) continue at state[pc]
RET_BUDGET = 1
RET_FAULT = 2  # a callback failed: the engine holds the exception; state is before the insn
RET_MISS = 3  # no translation for state[pc] (the dispatcher; a region called at a non-entry)
RET_EXIT = 4  # an exit terminator: ctx holds reason, resume, info; state[pc] is the insn
RET_STOPPED = 5  # a code hook asked to stop before the instruction at state[pc]

EXIT_REASONS = ("syscall", "breakpoint", "illegal", "fetch_fault", "sync_icache", "wfi", "halt", "misaligned")
EXIT_IDS = {r: i for i, r in enumerate(EXIT_REASONS)}

_PAGE_TAG_MASK = -(1 << PAGE_SHIFT)
_DECL_NAME = re.compile(r'@"?([\w.$]+)"?\(')


def split_decls(text: str) -> tuple[dict[str, str], str]:
    """A native fast path's text (`polyvm.engine.jit.native_helper_text`) as its `declare`
    lines by the name they declare, and the rest (its functions)."""
    decls: dict[str, str] = {}
    body = []
    for line in text.splitlines():
        if line.startswith("declare"):
            m = _DECL_NAME.search(line)
            decls[m.group(1) if m else line] = line
        else:
            body.append(line)
    return decls, "\n".join(body)


def _is_call(b: Block) -> bool:
    """Does b end with a call: a jump after storing its own return address (b.end) into a
    register or to memory (RISC-V jal/jalr ra, AArch64 bl, x86 call)?"""
    if not b.insns or b.term.kind != "jump":
        return False
    for st in b.insns[-1].stmts:
        if st.op in ("put", "store"):
            v = st.args[-1]
            if v.const is not None and v.const == b.end:
                return True
    return False


def direct_targets(blk: Block) -> list[int]:
    """The pcs a block goes on to by its own branch or direct jump (none for an indirect jump
    or an exit)."""
    t = blk.term
    if t.kind == "branch":
        return [t.target.const, t.fallthrough]
    if t.kind == "jump" and t.target is not None and t.target.const is not None:
        return [t.target.const]
    return []


def region_shape(
    blocks: list[Block], entries: list[int] | None, compact: bool
) -> tuple[list[int], set[int], list[int]]:
    """(return sites, loop heads, entry pcs) of a region: return sites are the instructions
    after blocks that call (`_is_call`) inside the region, loop heads the targets of backward
    edges (an indirect jump's possible targets being the return sites); the entries are the
    given ones (every block's without), then the loop heads, and the return sites: all of them
    in the first tier (`compact`), in hot regions those of the calls that leave the region
    (see `RegionLowering._lower`)."""
    pcs = [b.pc for b in blocks]
    inside = set(pcs)
    calls = [b for b in blocks if b.end in inside and _is_call(b)]
    ret_sites = sorted({b.end for b in calls})
    heads: set[int] = set()
    for blk in blocks:
        t = blk.term
        indirect = t.kind == "jump" and t.target is not None and t.target.const is None
        targets = list(ret_sites) if indirect else direct_targets(blk)
        heads.update(x for x in targets if x in inside and x <= blk.pc)
    ents = pcs if entries is None else [p for p in entries if p in inside]
    # In hot regions, the return sites of calls that leave the region (a callee outside it, or
    # an indirect call) too: the callee comes back through the dispatcher, which would
    # otherwise go on in other (first-tier) code there. One inside a loop is entered through
    # the loop's header (`LoopNest`), so the loop stays one LLVM loop.
    away = {b.end for b in calls if b.term.target is None or b.term.target.const not in inside}
    for h in sorted(heads | set(ret_sites) if compact else heads | away):
        if h not in ents:
            ents.append(h)
    return ret_sites, heads, ents


def looping_blocks(blocks: Any) -> set[int]:
    """The pcs of the blocks (an iterable of `Block`s) that lie on a cycle of direct edges
    among them, a call's block going on to its return site as well as to its callee."""
    inside = {b.pc: b for b in blocks}
    succ: dict[int, list[int]] = {}
    for p, b in inside.items():
        nxt = [x for x in direct_targets(b) if x in inside]
        if _is_call(b) and b.end in inside:
            nxt.append(b.end)
        succ[p] = nxt
    out: set[int] = set()
    for comp in _sccs(set(succ), succ):
        if len(comp) > 1 or next(iter(comp)) in succ[next(iter(comp))]:
            out |= comp
    return out


def _sccs(nodes: set[int], succ: dict[int, list[int]]) -> list[set[int]]:
    """Strongly connected components of the graph `succ` restricted to `nodes` (Tarjan's
    algorithm, iterative)."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    on: set[int] = set()
    stack: list[int] = []
    out: list[set[int]] = []
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter([s for s in succ.get(root, ()) if s in nodes]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            n, it = work[-1]
            for s in it:
                if s not in index:
                    index[s] = low[s] = len(index)
                    stack.append(s)
                    on.add(s)
                    work.append((s, iter([x for x in succ.get(s, ()) if x in nodes])))
                    break
                if s in on:
                    low[n] = min(low[n], index[s])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[n])
                if low[n] == index[n]:
                    comp = set()
                    while True:
                        x = stack.pop()
                        on.discard(x)
                        comp.add(x)
                        if x == n:
                            break
                    out.append(comp)
    return out


class LoopNest:
    """The loops of a region and how a jump from outside one reaches a block inside it.

    Edges are direct (branches, direct jumps and calls: `direct`) or virtual (the region's
    entry switch, an indirect jump's switch over its likely targets: `virtual`). A loop is a
    strongly connected set of blocks with one header, the only block a direct edge from
    outside enters (found again inside it without the header: the nested loops). A virtual
    edge into a loop at another block than its header is *routed*: it sets the region's
    resume variable to its target and goes to the header of the outermost loop it enters,
    whose dispatch (before its own code) goes on to the next loop's header, down to the
    target. Every loop is then entered at its header only and stays a natural loop for LLVM
    (a nested loop's head that the entry switch reached directly made the loops around it
    irreducible, and LLVM left their guest registers in memory). A set of blocks that direct
    edges enter at several places is left as it is.

    A header can also head a smaller cycle of its own: a guest loop whose body ends in a
    branch back to its own first block, nested in an outer loop whose back edge comes to the
    same block (a compiler's rotated loops, where the block before the inner loop holds a
    copy of its first iteration; or a region entered at the inner loop's header). LLVM makes
    one loop of all cycles through a header, so the inner one would be no loop of its own and
    its guest registers would stay in memory. `split` names such headers with the blocks of
    their inner loop (the natural loops of the back edges that do not take in the whole
    outer one): the lowering gives the outer loop a header block of its own that every other
    way into the header goes through (`RegionLowering._head`)."""

    def __init__(self, direct: dict[int, list[int]], virtual: dict[int, list[int]]) -> None:
        succ = {n: list(direct.get(n, ())) + list(virtual.get(n, ())) for n in direct}
        dpred: dict[int, set[int]] = {n: set() for n in direct}
        for n, ss in direct.items():
            for s in ss:
                dpred.setdefault(s, set()).add(n)
        self._pred: dict[int, set[int]] = {n: set() for n in succ}
        for n, ss in succ.items():
            for s in ss:
                self._pred.setdefault(s, set()).add(n)
        self.loops: list[tuple[int, frozenset[int]]] = []  # (header, blocks), outer ones first
        self.split: dict[int, frozenset[int]] = {}  # header -> its inner loop's blocks
        self._find(set(direct), succ, dpred)
        self.chain: dict[int, list[int]] = {}  # block -> the loops it is in, outermost first
        for i, (_, body) in enumerate(self.loops):
            for n in body:
                self.chain.setdefault(n, []).append(i)
        self.dispatch: dict[int, list[int]] = {}  # header -> the targets routed through it

    def _find(
        self,
        nodes: set[int],
        succ: dict[int, list[int]],
        dpred: dict[int, set[int]],
        comps: list[set[int]] | None = None,
    ) -> None:
        for comp in _sccs(nodes, succ) if comps is None else comps:
            if len(comp) == 1 and next(iter(comp)) not in succ.get(next(iter(comp)), ()):
                continue  # (no cycle)
            ext = {n for n in comp if any(p not in comp for p in dpred.get(n, ()))}
            if len(ext) > 1:
                continue  # entered at several blocks by the guest's own jumps
            head = ext.pop() if ext else min(comp)  # (reached by virtual edges only: its top)
            self.loops.append((head, frozenset(comp)))
            rest = comp - {head}
            subs = _sccs(rest, succ)
            self._split(head, comp, subs, succ)
            self._find(rest, succ, dpred, subs)

    def _split(self, head: int, comp: set[int], subs: list[set[int]], succ: dict[int, list[int]]) -> None:
        """Record the inner loop at `head` if some of its back edges close smaller cycles than
        the loop `comp` (see the class). `subs`: the strongly connected sets of comp without
        its header. A back edge's natural loop (head and the blocks that reach its source
        without passing head) is all of comp exactly when its source lies in the one set of
        `subs` that no edge leaves for another (every block reaches that set; with several
        such sets, no back edge's loop is the whole); the others' natural loops, together, are
        the inner loop."""
        latches = [n for n in comp if head in succ.get(n, ())]
        if len(latches) < 2:
            return  # (one back edge: its natural loop is the whole loop)
        where = {n: i for i, c in enumerate(subs) for n in c}
        sinks = [
            c for i, c in enumerate(subs) if all(where.get(x, i) == i for n in c for x in succ.get(n, ()))
        ]
        if len(sinks) != 1:
            return
        todo = [n for n in latches if n != head and n not in sinks[0]]
        inner = {head, *todo}
        while todo:
            for p in self._pred.get(todo.pop(), ()):
                if p in where and p not in inner:
                    inner.add(p)
                    todo.append(p)
        if len(inner) < len(comp) and (len(inner) > 1 or head in latches):
            self.split[head] = frozenset(inner)

    def _path(self, src: int | None, target: int) -> list[int]:
        """The loops a virtual edge from src (None: the region's entry) into target enters
        other than at their header, outermost first."""
        return [
            i
            for i in self.chain.get(target, ())
            if self.loops[i][0] != target and (src is None or src not in self.loops[i][1])
        ]

    def route(self, src: int | None, target: int) -> int | None:
        """The header a virtual edge from src to target goes to (the resume variable set to
        target), or None if it goes to target itself; records the dispatch it needs."""
        path = self._path(src, target)
        for i in path:
            d = self.dispatch.setdefault(self.loops[i][0], [])
            if target not in d:
                d.append(target)
        return self.loops[path[0]][0] if path else None

    def next_hop(self, head: int, target: int) -> int:
        """Where the dispatch at `head` sends a jump resuming at target: the next header on
        its way, or target itself."""
        path = [self.loops[i][0] for i in self._path(None, target)]
        k = path.index(head)
        return path[k + 1] if k + 1 < len(path) else target


class Unsupported(Exception):
    """The region uses something the native tier does not lower; it stays interpreted."""


DBL_MIN_BITS = 0x0010_0000_0000_0000  # the smallest normal binary64, as bits
INF_BITS = 0x7FF0_0000_0000_0000
FLT_MIN_BITS, FLT_INF_BITS = 0x0080_0000, 0x7F80_0000  # binary32's
NAN_BOX = 0xFFFF_FFFF_0000_0000  # the upper half of a binary32 NaN-boxed in a 64-bit register


def _c(w: int, v: int) -> str:
    """An LLVM integer literal of width w (signed decimal)."""
    if w == 1:
        return "true" if v & 1 else "false"
    v &= (1 << w) - 1
    return str(v - (1 << w) if v >> (w - 1) else v)


# Native fast path of a helper: (function name, its LLVM text) or None; the function is
# `i1 @name(i64* args, i64* slots, i64* out)` (see polyvm.engine.jit.native_helper_text).
NativeFn = Callable[[str, tuple[int | None, ...]], tuple[str, str] | None]

# The runtime's functions and callbacks (memory accesses, helpers) neither unwind nor keep
# the caller from going on (Python callbacks catch everything and report it in ctx): LLVM may
# then keep guest registers in host registers across a loop that calls them (LICM's promotion
# needs both), and store them at the loop's exits.
_RT_CALL = "nounwind willreturn"

_BIN = {"add": "add", "sub": "sub", "mul": "mul", "and": "and", "or": "or", "xor": "xor"}
_CMP = {"eq": "eq", "ne": "ne", "ult": "ult", "ule": "ule", "slt": "slt", "sle": "sle"}


class RegionLowering:
    """Lowers one region (list of blocks) into the text of function `name`.

    After construction: `text` (the function), `decls` (declarations and helper functions it
    needs, name -> text) and `insn_sizes` (pc -> size, for traps raised by helpers).
    """

    def __init__(
        self,
        name: str,
        blocks: list[Block],
        helpers: Any,
        helper_index: dict[str, int],
        *,
        native_fn: NativeFn | None = None,
        hooked: Callable[[int, int], bool] | None = None,
        mem_hooks: bool = False,
        counter: int | None = None,
        entries: list[int] | None = None,
        nslots: int = 0,
        compact: bool = False,
        fast_paths: frozenset[str] = frozenset(),
        shortcuts: dict[str, tuple[str, tuple[int, ...], int, int, int, int, int, str]] | None = None,
        direct: bool = False,
    ) -> None:
        self.name = name
        # Guest memory is direct (the TLB's pages all at ctx's CTX_GUEST_BASE offset): a hit's
        # host address is the access's address plus that word, read once at entry, not plus
        # the addend the entry holds (a second load the access would wait on).
        self.direct = direct and not compact
        self.fast_paths = fast_paths if native_fn is not None else frozenset()
        self.shortcuts = shortcuts or {}
        self.blocks = [b for b in blocks if b.insns]
        if not self.blocks:
            raise Unsupported("empty region")
        self.helpers = helpers
        self.helper_index = helper_index
        self.native_fn = native_fn
        self.hooked = hooked
        self.mem_hooks = mem_hooks
        self.counter = counter
        self.entries = entries
        self.nslots = nslots
        self.compact = compact
        self.decls: dict[str, str] = {}
        self.fwd: dict[int, str] = {}  # slot -> its current value in this guest block
        self.dirty: dict[int, str] = {}  # slot -> value put and not yet stored (`flush_slots`)
        self._st_ptrs: set[int] = set()
        self.fpn_used: set[str] = set()  # helpers called through ctx's table (first tier)
        self._inline_native = False  # an inlined fast path was emitted (its allocas are needed)
        # Hot code without hooks: the state array is an alias scope (`PROF_META`) that guest
        # memory accesses, TLB loads and runtime calls are marked `!noalias` to, so LLVM knows
        # they never touch a guest register however many uses the state pointer has (past
        # about a hundred, its capture tracking gives up and the `noalias` argument alone no
        # longer separates them).
        self.scoped = not compact and hooked is None and not mem_hooks
        self.sa = ", !alias.scope !3" if self.scoped else ""
        self.nsa = ", !noalias !3" if self.scoped else ""
        self.out: list[str] = []
        self._n = 0
        self._lower()
        self.text = "\n".join(self.out) + "\n"

    # ---- text helpers ----------------------------------------------------------------------
    def t(self) -> str:
        self._n += 1
        return f"%v{self._n}"

    def newlabel(self) -> str:
        self._n += 1
        return f"L{self._n}"

    def e(self, line: str) -> None:
        self.out.append("  " + line)

    def label(self, lab: str) -> None:
        self.out.append(f"{lab}:")
        self.cur = lab

    def op(self, text: str) -> str:
        r = self.t()
        self.e(f"{r} = {text}")
        return r

    def ctx_ptr(self, k: int) -> str:
        if self.compact:  # (at the access: see `_mem_fn`)
            return self.op(f"getelementptr inbounds i64, i64* %ctx, i64 {k}")
        self._cx_used.add(k)
        return f"%cx{k}"  # (computed once in the entry block, for the words used)

    def ctx_load(self, k: int) -> str:
        return self.op(f"load i64, i64* {self.ctx_ptr(k)}")

    def state_ptr(self, k: int) -> str:
        if k in self._st_ptrs:
            return f"%st{k}"  # (computed once in the entry block)
        return self.op(f"getelementptr inbounds i64, i64* %state, i64 {k}")

    def fnptr(self, k: int, sig: str) -> str:
        return self.op(f"inttoptr i64 {self.ctx_load(k)} to {sig}*")

    def load_slot(self, k: int) -> str:
        v = self.fwd.get(k)
        if v is None:
            v = self.fwd[k] = self.op(f"load i64, i64* {self.state_ptr(k)}{self.sa}")
        return v

    def reload_slot(self, k: int) -> None:
        """The state's slot k changed behind the code's back (a helper or hook wrote it,
        possibly on a conditional path): later reads must load it again."""
        self.fwd.pop(k, None)

    def put_slot(self, k: int, v: str, *, forward: bool = True) -> None:
        """A guest-visible write, to the state: slots live there, not in locals, so no exit
        has anything to write back. Later reads in the same guest block use v directly (less
        text for LLVM to read). The store itself waits for the next point where the state can
        be seen (`flush_slots`: an access that may fault, a helper call, a hook, the block's
        end), so a slot written by several instructions in between is stored once (LLVM's
        -O1 pipeline has no dead-store elimination). A write on a conditional path (forward
        False) is stored at once."""
        if forward:
            self.fwd[k] = v
            self.dirty[k] = v
        else:
            self.dirty.pop(k, None)
            self.e(f"store i64 {v}, i64* {self.state_ptr(k)}{self.sa}")
            self.fwd.pop(k, None)

    def flush_slots(self) -> None:
        """Store the slots put since the last flush: before anything that can leave the
        region or read the state (precise faults: an instruction's accesses come before its
        first put, so the state then is the one before the instruction)."""
        for k, v in self.dirty.items():
            self.e(f"store i64 {v}, i64* {self.state_ptr(k)}{self.sa}")
        self.dirty.clear()

    def intrinsic(self, name: str, w: int, nargs: int) -> str:
        full = f"{name}.i{w}"
        if full not in self.decls:
            args = ", ".join([f"i{w}"] * nargs + (["i1"] if name in ("llvm.ctlz", "llvm.cttz") else []))
            self.decls[full] = f"declare i{w} @{full}({args})"
        return f"@{full}"

    # ---- structure -----------------------------------------------------------------------
    def _lower(self) -> None:
        used: set[int] = set()
        for blk in self.blocks:
            for insn in blk.insns:
                for st in insn.stmts:
                    if st.op == "get":
                        k = st.args[0]
                        if k == SLOT_PC:
                            raise Unsupported("get pc")
                        if k != SLOT_ICOUNT:
                            used.update((k, k + 1) if st.dst.w == 128 else (k,))
                    elif st.op == "put":
                        k = st.args[0]
                        if k in (SLOT_PC, SLOT_ICOUNT):
                            raise Unsupported("put pc/icount")
                        ks = (k, k + 1) if st.args[1].w == 128 else (k,)
                        used.update(ks)
                    elif st.op == "call":
                        h = self.helpers[st.args[0]]
                        if h.state:
                            if h.reads is None or h.writes is None:
                                raise Unsupported("state helper without declared slots")
                            used.update(h.reads | h.writes)
                        if any(w > 64 for w in h.arg_widths) or (h.result_width or 0) > 64:
                            raise Unsupported(f"helper {h.name} with 128-bit values")
                        if len(h.arg_widths) > 8:
                            raise Unsupported(f"helper {h.name} with more than 8 arguments")
                    elif st.op in ("load", "store", "cstore"):
                        w = st.dst.w if st.op == "load" else st.args[-1].w
                        if w > 64:
                            raise Unsupported("128-bit memory access")
        self.used = sorted(used)
        self.bbs = {blk.pc: f"B{blk.pc:x}" for blk in self.blocks}
        self.ret_sites, self.loop_heads, entries = region_shape(self.blocks, self.entries, self.compact)
        # Hot regions: jumps into loops through their headers (`LoopNest`).
        self.outer_heads: dict[int, str] = {}
        self.nest = None if self.compact else self._loop_nest(entries)
        self.lands: dict[int, str] = {}
        self.deferred: list[list[str]] = []  # landing blocks, emitted after the body
        o = self.out
        # Hooks (code hooks, memory hooks) read and write the state behind LLVM's back, through
        # callbacks that are not passed it: then the state pointer must not be `noalias`.
        alias = "" if self.hooked is not None or self.mem_hooks else "noalias "
        if alias:
            # (the state array is ours, whole, aligned and writable: LICM may then load a
            # guest register before a loop and store it at an exit the loop's own store did
            # not reach, such as a fault in an access before it)
            alias += f"writable dereferenceable({8 * max(self.nslots, 2)}) align 8 "
        o.append(f"define i64 @{self.name}(i64* noalias %ctx, i64* {alias}%state) {{")
        self.label("entry")
        self._cx_used: set[int] = set()
        self._mem_used: set[str] = set()
        self._gbase_used = False
        self.exits: list[tuple[str, str, int, int]] = []  # (block, pc, code, count delta)
        # The count: in the first tier `%icount`; in hot regions `%left`, what is left of the
        # time slice (ctx's limit minus the count, which is the limit minus it again): a block
        # subtracts its instructions and a backward edge's check is that it is still above 0,
        # one subtraction and a branch on its flags in a hot loop (where the count, and its
        # difference to the limit at each check, were two more instructions an iteration);
        # the count itself is computed where it is read (`_count`: exits, the count's slot).
        self.e("%icount = alloca i64" if self.compact else "%left = alloca i64")
        self.e("%args = alloca [8 x i64]")
        if self.nest is not None and self.nest.dispatch:
            self.e("%resume = alloca i64")  # (the block a routed jump goes on to; 0: none)
            self.e("store i64 0, i64* %resume")
        # Pointers to the state's slots and ctx's words, once (less IR for LLVM to read). Not
        # the slots' in the first tier: its fast register allocator keeps no value in a
        # register from one block to the next, so each would be reloaded from the stack before
        # every access, where a pointer made next to the access becomes part of its address
        # (one load: bench_branch's first-tier code ran about a fifth faster, compile +5%).
        self._st_ptrs = {SLOT_ICOUNT, SLOT_PC} | (set() if self.compact else set(self.used))
        for k in sorted(self._st_ptrs):
            self.e(f"%st{k} = getelementptr inbounds i64, i64* %state, i64 {k}")
        cx_at = len(o)  # the pointers to the ctx words used go here (known at the end)
        self.icount0 = self.op(f"load i64, i64* {self.state_ptr(SLOT_ICOUNT)}")
        pc0 = self.op(f"load i64, i64* {self.state_ptr(SLOT_PC)}")
        # The time slice's end, read once in hot regions (only the dispatcher sets it, between
        # calls of native code; read at every check, it was a load in every hot loop, which
        # LICM cannot hoist where the check is not reached on every iteration).
        self.limit = None if self.compact else self.ctx_load(CTX_LIMIT)
        if self.limit is None:
            self.e(f"store i64 {self.icount0}, i64* %icount")
        else:
            self.e(f"store i64 {self.op(f'sub i64 {self.limit}, {self.icount0}')}, i64* %left")
        # Loop heads (targets of backward edges) are entries too (`region_shape`): backward
        # edges are where the time slice is checked, so a slice that ends in a loop resumes at
        # an entry. In the first tier, return sites too: a callee compiled in another region
        # returns there (a miss would compile a near copy of this region from the return site
        # on). Not in hot regions, where a return site inside a loop would give the loop a
        # second entry (irreducible: LLVM's loop passes leave it alone).
        self.entry_pcs = entries
        self._switch(pc0, "miss", [(p, self._enter_at(None, p)) for p in entries])
        self.label("miss")
        # (a pc that is not an entry: the dispatcher returns it to the engine, which makes a
        # translation for it; RET_CONTINUE would send the dispatcher round again, no progress)
        self._leave(pc0, RET_MISS)
        for blk in self.blocks:
            self.src_pc = blk.pc
            outer = self.outer_heads.get(blk.pc)
            # (the outer loop's header, before the block: see `LoopNest.split`)
            self.label(outer or self.bbs[blk.pc])
            dispatch = self.nest.dispatch.get(blk.pc) if self.nest is not None else None
            if dispatch:
                self._dispatch(blk.pc, dispatch)
            if outer is not None:
                self.e(f"br label %{self.bbs[blk.pc]}")
                self.label(self.bbs[blk.pc])
            if self.compact:  # (the first tier: mark the block run, at ctx + SEEN_AT)
                tab = self.op("bitcast i64* %ctx to i8*")
                at = self.op(f"getelementptr i8, i8* {tab}, i64 {SEEN_AT + seen_index(blk.pc)}")
                self.e(f"store i8 1, i8* {at}")
            self._block(blk)
        for lines in self.deferred:
            o.extend(lines)
        if self.exits:
            self._shared_exit()
        o.append("}")
        pre = [f"  %cx{k} = getelementptr inbounds i64, i64* %ctx, i64 {k}" for k in sorted(self._cx_used)]
        if self._gbase_used:
            pre.append(f"  %gbase = load i64, i64* %cx{CTX_GUEST_BASE}")
        if self._inline_native:  # (what an inlined fast path reads and writes: `_call`)
            pre += [
                "  %nargs = alloca [8 x i64]",
                f"  %fslots = alloca [{max(self.nslots, 1)} x i64]",
                "  %fout = alloca i64",
            ]
        for k in sorted(self._mem_used):
            sig = "i64 (i64*, i64)*" if k.startswith("ld") else "i64 (i64*, i64, i64)*"
            i = MEM_FNS.index(k)
            pre += [
                f"  %mfp.{k} = getelementptr inbounds i64, i64* %ctx, i64 {CTX_MEM_FN + i}",
                f"  %mfi.{k} = load i64, i64* %mfp.{k}",
                f"  %mf.{k} = inttoptr i64 %mfi.{k} to {sig}",
            ]
        o[cx_at:cx_at] = pre

    def _shared_exit(self) -> None:
        """The compact form's one exit: the pc and the count (slots are in the state
        already). Which pc, return code and count adjustment: phis over the blocks that leave
        (the fast register allocator handles them cheaply; hot regions use `_exit_block`)."""
        self.label("exit")
        phis = []
        for i, nm in enumerate(("pc", "code", "dk")):
            if nm == "dk" and not any(x[3] for x in self.exits):
                continue
            ins = ", ".join(f"[{x[i + 1] if i == 0 else _c(64, x[i + 1])}, %{x[0]}]" for x in self.exits)
            self.e(f"%x.{nm} = phi i64 {ins}")
            phis.append(nm)
        icount = self._count()
        if "dk" in phis:
            icount = self.op(f"add i64 {icount}, %x.dk")
        self.e(f"store i64 {icount}, i64* {self.state_ptr(SLOT_ICOUNT)}")
        self.e(f"store i64 %x.pc, i64* {self.state_ptr(SLOT_PC)}")
        self._count_run(icount)
        self.e("ret i64 %x.code")

    def _count_run(self, icount: str) -> None:
        """Add the instructions run in this region (count now `icount`) to its counter, for
        tier-up decisions."""
        if self.counter is not None:
            base = self.op(f"inttoptr i64 {self.ctx_load(CTX_COUNTERS)} to i64*")
            cp = self.op(f"getelementptr i64, i64* {base}, i64 {self.counter}")
            spent = self.op(f"sub i64 {icount}, {self.icount0}")
            cur = self.op(f"load i64, i64* {cp}")
            self.e(f"store i64 {self.op(f'add i64 {cur}, {spent}')}, i64* {cp}")

    def _leave(self, pc: str, code: int, icount_add: int = 0) -> None:
        """Branch to the exit with state[pc] = pc and return code `code`. Slots are written
        through to the state as they are put, so the exit writes only the pc and the count:
        no guest register is live at an exit, which keeps big regions cheap for
        LLVM's register allocator (a write-back of every slot at the exit made it quadratic)."""
        self.e(f"br label %{self._exit_edge(pc, code, icount_add, cond=False)}")

    def _switch(self, v: str, default: str, cases: list[tuple[int, str]]) -> None:
        """Branch on the 64-bit value v. The compact form compares instead (a binary search,
        then in turn): LLVM's fast instruction selector cannot lower a `switch` (it falls back
        to the slow one)."""
        if not self.compact:
            arms = " ".join(f"i64 {_c(64, x)}, label %{lab}" for x, lab in cases)
            self.e(f"switch i64 {v}, label %{default} [{arms}]")
            return
        cases = sorted(cases)
        while len(cases) > 4:  # halve: O(log n) compares (a function's many return sites)
            mid = len(cases) // 2
            lo, hi = self.newlabel(), self.newlabel()
            self.e(f"br i1 {self.op(f'icmp ult i64 {v}, {_c(64, cases[mid][0])}')}, label %{lo}, label %{hi}")
            self.label(lo)
            self._switch(v, default, cases[:mid])
            self.label(hi)
            cases = cases[mid:]
        for i, (x, lab) in enumerate(cases):
            nxt = self.newlabel() if i < len(cases) - 1 else default
            self.e(f"br i1 {self.op(f'icmp eq i64 {v}, {_c(64, x)}')}, label %{lab}, label %{nxt}")
            if nxt != default:
                self.label(nxt)
        if not cases:
            self.e(f"br label %{default}")

    def _exit_edge(self, pc: str, code: int, icount_add: int = 0, cond: bool = True) -> str:
        """The exit's label, for the one branch the current block makes to it: state[pc] =
        pc, return code `code`, icount_add instructions run beyond the count so far."""
        if not self.compact:
            return self._exit_block(pc, code, icount_add)
        if not cond:
            self.exits.append((self.cur, pc, code, icount_add))
            return "exit"
        # A conditional branch out goes through a block of its own: the shared exit's phi
        # copies then run on the way out only, not before every fault and time-slice check
        # (three stores each in the fast register allocator's code).
        lab = self.newlabel()
        self.deferred.append([f"{lab}:", "  br label %exit"])
        self.exits.append((lab, pc, code, icount_add))
        return lab

    def _exit_block(self, pc: str, code: int, icount_add: int) -> str:
        """A block of its own for one exit of a hot region: it stores the pc and the count
        and returns. (One exit block shared by all, with phis of the pc and code over
        hundreds of edges, cost LLVM's register coalescer more than the small blocks do.)"""
        lab = self.newlabel()
        saved, cur, self.out = self.out, self.cur, []
        self.label(lab)
        icount = self._count()
        if icount_add:
            icount = self.op(f"add i64 {icount}, {icount_add}")
        self.e(f"store i64 {icount}, i64* {self.state_ptr(SLOT_ICOUNT)}")
        self.e(f"store i64 {pc}, i64* {self.state_ptr(SLOT_PC)}")
        self._count_run(icount)
        self.e(f"ret i64 {_c(64, code)}")
        self.deferred.append(self.out)
        self.out, self.cur = saved, cur
        return lab

    def _count(self) -> str:
        """The instruction count now (at the start of the current block)."""
        if self.limit is None:
            return self.op("load i64, i64* %icount")
        return self.op(f"sub i64 {self.limit}, {self.op('load i64, i64* %left')}")

    def _add_icount(self, n: int) -> None:
        if self.limit is None:
            cur = self.op("load i64, i64* %icount")
            self.e(f"store i64 {self.op(f'add i64 {cur}, {n}')}, i64* %icount")
        else:
            cur = self.op("load i64, i64* %left")
            self.e(f"store i64 {self.op(f'sub i64 {cur}, {n}')}, i64* %left")

    def _edge(self, target: int) -> None:
        """Continue at a constant target: natively when it is in the region."""
        land = self._to(target)
        if land is None:
            self._leave(_c(64, target), RET_CONTINUE)
        else:
            self.e(f"br label %{land}")

    def _to(self, target: int) -> str | None:
        """The label to branch to for `target` from the current block: a backward edge goes
        through the time-slice check, a forward one straight to the block (every cycle has a
        backward edge, so loops still end their time slice)."""
        if target not in self.bbs:
            return None
        return self._landing(target) if target <= self.src_pc else self._head(self.src_pc, target)

    def _landing(self, target: int) -> str | None:
        """The block that enters region block `target` from inside: it leaves (to the
        dispatcher, which returns RET_BUDGET) once the count has reached ctx's limit. In the
        first tier one per target, shared by the edges to it; in a hot region one per edge, at
        the end of the loop's body: then every way into a loop but its back edges goes to the
        loop's first block, so LLVM sees a natural loop (a shared check block reached from
        an indirect jump's switch too made every loop irreducible, and none was optimized as
        a loop), and the body's stores come before any exit of the loop, so LICM can keep
        guest registers in host registers across the loop and store them at its exits. The
        count is the only value the check needs (a block budget of its own, decremented at
        every backward edge, cost a fifth of bench_int's hot loops' time: one more value
        carried around every loop, which LLVM kept on the stack)."""
        if target not in self.bbs:
            return None
        land = self.lands.get(target) if self.compact else None
        if land is None:
            land = self.newlabel()
            if self.compact:
                self.lands[target] = land
            saved, cur, self.out = self.out, self.cur, []
            self.label(land)
            gt = self._slice_left()
            # (weighted: without it LLVM takes every loop for one that runs twice, and keeps
            # the count and the ctx and state pointers on the stack in the hot loops)
            ex = self._exit_edge(_c(64, target), RET_CONTINUE)
            self.e(f"br i1 {gt}, label %{self._head(self.src_pc, target)}, label %{ex}, !prof !0")
            self.deferred.append(self.out)
            self.out, self.cur = saved, cur
        return land

    def _slice_left(self) -> str:
        """i1: the time slice is not over (the count has not reached ctx's limit; a signed
        difference, so a count near 2**64 set through the API still stops)."""
        if self.limit is None:
            left = self.op(f"sub i64 {self.ctx_load(CTX_LIMIT)}, {self.op('load i64, i64* %icount')}")
        else:
            left = self.op("load i64, i64* %left")
        return self.op(f"icmp sgt i64 {left}, 0")

    def _fault_exit(self) -> str:
        """The label for the current block's one branch out on a fault at the current
        instruction: the exit, leaving with RET_FAULT there."""
        return self._exit_edge(_c(64, self.insn.pc), RET_FAULT, self.idx)

    def _check_status(self) -> None:
        st = self.ctx_load(CTX_STATUS)
        ok = self.newlabel()
        self.e(f"br i1 {self.op(f'icmp eq i64 {st}, 0')}, label %{ok}, label %{self._fault_exit()}, !prof !0")
        self.label(ok)

    # ---- blocks and instructions ------------------------------------------------------------
    def _loop_nest(self, entries: list[int]) -> LoopNest:
        """The region's loops (`LoopNest`), with the routes of its virtual edges: the entry
        switch's (to `entries`) and the indirect jumps' (to `_likely`)."""
        direct: dict[int, list[int]] = {}
        virtual: dict[int, list[int]] = {}
        likely = [p for p in self._likely(entries) if p in self.bbs]
        for blk in self.blocks:
            t = blk.term
            if t.kind == "jump" and t.target is not None and t.target.const is None:
                virtual[blk.pc] = likely
            direct[blk.pc] = [x for x in direct_targets(blk) if x in self.bbs]
        nest = LoopNest(direct, virtual)
        # (an inner loop that a virtual edge enters other than at its header stays part of
        # the outer one: a jump from the outer header into its middle would make it
        # irreducible)
        targets = set(entries) | {p for ts in virtual.values() for p in ts}
        for h, inner in list(nest.split.items()):
            if any(p in inner and p != h for p in targets):
                del nest.split[h]
        self.outer_heads = {h: f"H{h:x}" for h in nest.split}
        self._routes: dict[tuple[int | None, int], int | None] = {}
        for p in entries:
            self._routes[None, p] = nest.route(None, p)
        for src, targets in virtual.items():
            for p in targets:
                self._routes[src, p] = nest.route(src, p)
        self._resume_lab: dict[tuple[int, int], str] = {}
        return nest

    def _likely(self, entries: list[int]) -> list[int]:
        """An indirect jump's likely targets: return sites (the instruction after a block
        that jumps elsewhere, i.e. a call) and the region's entries (a hot region made from
        the targets of a jump table has them as entries); the rest goes through the
        dispatcher."""
        return sorted(set(self.ret_sites) | set(entries))

    def _enter_at(self, src: int | None, target: int) -> str:
        """The label a virtual edge from block src (None: the region's entry) to target
        branches to: the target's block, or a block that sets the resume variable and goes to
        the header of the loop it enters (`LoopNest.route`)."""
        head = self._routes.get((src, target)) if self.nest is not None else None
        if head is None:
            return self._head(src, target)
        return self._set_resume(target, self._head(src, head))

    def _head(self, src: int | None, target: int) -> str:
        """The label an edge from block src (None: the region's entry) to region block
        target branches to: the block, or the outer loop's header block before it where
        target heads an inner loop of its own (`LoopNest.split`) that src is not in."""
        lab = self.outer_heads.get(target)
        if lab is None or (src is not None and src in self.nest.split[target]):  # type: ignore[union-attr]
            return self.bbs[target]
        return lab

    def _set_resume(self, value: int, to: str) -> str:
        """A block (one per value and destination) that sets the resume variable to value
        and branches to label `to`."""
        key = (value, to)
        lab = self._resume_lab.get(key)
        if lab is None:
            lab = self._resume_lab[key] = self.newlabel()
            self.deferred.append(
                [f"{lab}:", f"  store i64 {_c(64, value)}, i64* %resume", f"  br label %{to}"]
            )
        return lab

    def _dispatch(self, head: int, targets: list[int]) -> None:
        """At the top of a loop's header: a routed jump (resume variable set) goes on to
        the next header on its way or to its target (clearing the variable); else the
        header's own code. (An unknown value cannot happen; it would leave for the
        dispatcher, which is still right.)"""
        assert self.nest is not None
        r = self.op("load i64, i64* %resume")
        go, disp, other = self.newlabel(), self.newlabel(), self.newlabel()
        self.e(f"br i1 {self.op(f'icmp eq i64 {r}, 0')}, label %{go}, label %{disp}, !prof !0")
        self.label(disp)
        cases = []
        for t in targets:
            nxt = self.nest.next_hop(head, t)
            cases.append((t, self._head(head, nxt) if nxt != t else self._set_resume(0, self._head(head, t))))
        self._switch(r, other, cases)
        self.label(other)
        self.e("store i64 0, i64* %resume")
        self._leave(r, RET_CONTINUE)
        self.label(go)

    def _block(self, blk: Block) -> None:
        self.vals: dict[int, str] = {}
        self.fwd = {}
        self.src_pc = blk.pc
        # (with code hooks a block ends before a hooked instruction, so a hook, which may
        # change the mappings, never runs between two accesses of a group)
        self.groups = {} if self.compact or self.mem_hooks else mem_groups(blk)
        n = len(blk.insns)
        self.dirty = {}
        for idx, insn in enumerate(blk.insns):
            self.insn, self.idx = insn, idx
            if self.mem_hooks:
                self._stop_check(insn, idx)  # (an emu_stop in a memory hook: before any hook)
            if self.hooked is not None and self.hooked(insn.pc, insn.size):
                self._hook(insn, idx)
            elif self.mem_hooks:
                # Memory hooks read the pc and the count from the state (blocks are of one
                # instruction then, so registers reach the state before it as they are).
                self._store_pc_count(insn, idx)
            for st in insn.stmts:
                self._stmt(st)
        self.flush_slots()
        t = blk.term
        self._add_icount(n)
        if t.kind == "exit":
            rid = EXIT_IDS.get(t.reason)
            if rid is None:
                raise Unsupported(f"exit {t.reason}")
            resume = t.target.const if t.target is not None and t.target.const is not None else 0
            if t.reason == "sync_icache":
                # Stores into code already dropped stale translations: continue via the dispatcher.
                self._leave(_c(64, resume), RET_CONTINUE)
                return
            info = t.info
            if info is not None and not isinstance(info, int):
                raise Unsupported("non-integer exit info")
            self.e(f"store i64 {rid | ((info is not None) << 8)}, i64* {self.ctx_ptr(CTX_EXIT_REASON)}")
            self.e(f"store i64 {_c(64, resume)}, i64* {self.ctx_ptr(CTX_EXIT_RESUME)}")
            self.e(f"store i64 {_c(64, info or 0)}, i64* {self.ctx_ptr(CTX_EXIT_INFO)}")
            self._leave(_c(64, t.pc), RET_EXIT)
            return
        if t.kind == "jump":
            assert t.target is not None
            if t.target.const is not None:
                self._edge(t.target.const)
                return
            v = self.v(t.target)
            default = self.newlabel()
            likely = self._likely(self.entry_pcs)
            if self.compact:
                self._switch(v, default, [(pc, self._to(pc)) for pc in likely])
            else:
                # (the time slice checked once, here: check blocks per case would be many,
                # and one shared by many jumps would be a second way into a loop)
                go = self.newlabel()
                ex = self._exit_edge(v, RET_CONTINUE)
                self.e(f"br i1 {self._slice_left()}, label %{go}, label %{ex}, !prof !0")
                self.label(go)
                self._switch(
                    v, default, [(pc, self._enter_at(blk.pc, pc)) for pc in likely if pc in self.bbs]
                )
            self.label(default)
            self._leave(v, RET_CONTINUE)
            return
        assert t.kind == "branch" and t.cond is not None and t.target is not None
        c = self.v(t.cond)
        yes, no = self.newlabel(), self.newlabel()
        self.e(f"br i1 {c}, label %{yes}, label %{no}")
        self.label(yes)
        self._edge(t.target.const)
        self.label(no)
        self._edge(t.fallthrough)

    def _store_pc_count(self, insn: Insn, idx: int) -> None:
        ic = self.op(f"add i64 {self._count()}, {idx}")
        self.e(f"store i64 {ic}, i64* {self.state_ptr(SLOT_ICOUNT)}")
        self.e(f"store i64 {_c(64, insn.pc)}, i64* {self.state_ptr(SLOT_PC)}")

    def _stop_check(self, insn: Insn, idx: int) -> None:
        """(Memory-hooked code) stop before this instruction if a hook asked to (emu_stop in
        a memory hook: the accessing instruction completes, the next one does not start)."""
        self.flush_slots()  # (it may leave)
        stop, go = self.newlabel(), self.newlabel()
        req = self.ctx_load(CTX_STOP_NEXT)
        self.e(f"br i1 {self.op(f'icmp eq i64 {req}, 0')}, label %{go}, label %{stop}, !prof !0")
        self.label(stop)
        self.e(f"store i64 0, i64* {self.ctx_ptr(CTX_STOP_NEXT)}")
        self._leave(_c(64, insn.pc), RET_STOPPED, idx)
        self.label(go)

    def _hook(self, insn: Insn, idx: int) -> None:
        self.flush_slots()  # (the hook sees the registers, and may stop)
        self._store_pc_count(insn, idx)
        f = self.fnptr(CTX_HOOK, "i64 (i64*, i64, i64)")
        r = self.op(f"call i64 {f}(i64* %ctx, i64 {_c(64, insn.pc)}, i64 {insn.size}) nounwind")
        stop, go = self.newlabel(), self.newlabel()
        self.e(f"br i1 {self.op(f'icmp eq i64 {r}, 0')}, label %{go}, label %{stop}, !prof !0")
        self.label(stop)
        # (the hook may have written registers: the state has them, and exits write no slot)
        self._leave(_c(64, insn.pc), RET_STOPPED, idx)
        self.label(go)
        self._reload_used()

    def _reload_used(self) -> None:
        for k in self.used:
            self.reload_slot(k)

    def v(self, x: Val) -> str:
        if x.const is not None:
            return _c(x.w, x.const)
        return self.vals[x.id]

    def _stmt(self, s: Stmt) -> None:
        op, d, a = s.op, s.dst, s.args
        if op == "get":
            k = a[0]
            if k == SLOT_ICOUNT:
                # The count at the start of the block (docs/ir.md): lifts add the
                # instruction's index themselves.
                r = self._count()
                if d.w != 64:
                    r = self.op(f"trunc i64 {r} to i{d.w}")
            elif d.w == 128:
                lo = self.op(f"zext i64 {self.load_slot(k)} to i128")
                hi = self.op(f"zext i64 {self.load_slot(k + 1)} to i128")
                r = self.op(f"or i128 {lo}, {self.op(f'shl i128 {hi}, 64')}")
            else:
                r = self.load_slot(k)
                if d.w != 64:
                    r = self.op(f"trunc i64 {r} to i{d.w}")
            self.vals[d.id] = r
            return
        if op == "put":
            k, x = a
            v = self.v(x)
            if x.w == 128:
                self.put_slot(k, self.op(f"trunc i128 {v} to i64"))
                self.put_slot(k + 1, self.op(f"trunc i128 {self.op(f'lshr i128 {v}, 64')} to i64"))
            else:
                if x.w < 64:
                    v = self.op(f"zext i{x.w} {v} to i64")
                self.put_slot(k, v)
            return
        if op in ("load", "store", "cstore", "call"):
            self.flush_slots()  # (it may fault or read the state)
        if op == "load":
            g = self.groups.get(id(s))
            if g is not None:
                self.vals[d.id] = self._grouped(g, s, self.v(a[0]), None, d.w)
            else:
                self.vals[d.id] = self._load(self.v(a[0]), d.w)
            return
        if op == "store":
            g = self.groups.get(id(s))
            if g is not None:
                self._grouped(g, s, self.v(a[0]), self.v(a[1]), a[1].w)
            else:
                self._store(self.v(a[0]), self.v(a[1]), a[1].w)
            return
        if op == "cstore":
            c = self.v(a[0])
            yes, after = self.newlabel(), self.newlabel()
            self.e(f"br i1 {c}, label %{yes}, label %{after}")
            self.label(yes)
            self._store(self.v(a[1]), self.v(a[2]), a[2].w)
            self.e(f"br label %{after}")
            self.label(after)
            return
        if op == "call":
            r = self._call(a[0], a[1:])
            if d is not None:
                self.vals[d.id] = r
            return
        self.vals[d.id] = self._pure(op, d, a)

    # ---- memory ----------------------------------------------------------------------------
    def _addend(self, ent: str) -> str:
        """What a TLB hit adds to the guest address: the direct offset, or the entry's addend."""
        if self.direct:
            self._cx_used.add(CTX_GUEST_BASE)
            self._gbase_used = True
            return "%gbase"
        return _tlb_addend(self.op, ent, self.nsa)

    def _host_ptr(self, addr: str, ent: str, w: int) -> str:
        return self.op(f"inttoptr i64 {self.op(f'add i64 {addr}, {self._addend(ent)}')} to i{w}*")

    def _tlb_hit(self, addr: str, w: int, field: int) -> tuple[str, str, str, str]:
        """The inline TLB lookup (`_tlb_probe`) and its branch: (entry, fast, slow, done)
        labels, the code going on in `fast`."""
        tlb = self.op(f"inttoptr i64 {self.ctx_load(CTX_TLB)} to i64*")
        ent, hit = _tlb_probe(self.op, tlb, addr, w, field, md=self.nsa)
        fast, slow, done = self.newlabel(), self.newlabel(), self.newlabel()
        self.e(f"br i1 {hit}, label %{fast}, label %{slow}, !prof !0")
        self.label(fast)
        return ent, fast, slow, done

    def _grouped(self, g: _Group, s: Stmt, addr: str, val: str | None, w: int) -> str | None:
        """A load (val None) or store of a group (`mem_groups`): the group's first access
        checks the software TLB once for the bytes all of them touch; each access then goes
        straight to host memory if that check passed, else through the runtime's access
        function (the TLB's fast path and the slow path, out of line), in program order either
        way, so a fault is still taken at its own instruction."""
        if g.first is s:
            # One probe for the span [base+lo, base+hi) as if it were one access: the entry of
            # its first byte's page must have its last byte's page as its tag; with at most a
            # page between them, that means one page, mapped for the access.
            base = self.v(g.base)
            lo = self.op(f"add i64 {base}, {g.lo}") if g.lo else base
            tlb = self.op(f"inttoptr i64 {self.ctx_load(CTX_TLB)} to i64*")
            fields = (0,) * g.loads + (1,) * g.stores
            ent, g.ok = _tlb_probe(self.op, tlb, lo, 8 * (g.hi - g.lo), *fields, md=self.nsa)
            g.addend = self._addend(ent)
        fast, slow, done = self.newlabel(), self.newlabel(), self.newlabel()
        self.e(f"br i1 {g.ok}, label %{fast}, label %{slow}, !prof !0")
        self.label(fast)
        ptr = self.op(f"inttoptr i64 {self.op(f'add i64 {addr}, {g.addend}')} to i{w}*")
        if val is None:
            fv = self.op(f"load i{w}, i{w}* {ptr}, align 1{self.nsa}")
        else:
            self.e(f"store i{w} {val}, i{w}* {ptr}, align 1{self.nsa}")
        fast_end = self.cur
        self.e(f"br label %{done}")
        self.label(slow)
        if val is None:
            sv = self._call_ld(addr, w)
        else:
            self._call_st(addr, val, w)
        slow_end = self.cur
        self.e(f"br label %{done}")
        self.label(done)
        if val is None:
            return self.op(f"phi i{w} [{fv}, %{fast_end}], [{sv}, %{slow_end}]")
        return None

    def _mem_fn(self, kind: str, w: int) -> str:
        """The compact form's out-of-line access function (`runtime_text`), called through
        its pointer in ctx (a direct call in the large code model would cost LLVM's fast
        instruction selector a fallback to the slow one at every access). The pointer is
        loaded once, in the entry block; in the first tier at the access (its fast register
        allocator would reload it from the stack there anyway, and a region is entered at
        every dispatch, where the loads of pointers it may not use cost time)."""
        k = f"{kind}{w}"
        if self.compact:
            sig = "i64 (i64*, i64)*" if kind == "ld" else "i64 (i64*, i64, i64)*"
            return self.op(f"inttoptr i64 {self.ctx_load(CTX_MEM_FN + MEM_FNS.index(k))} to {sig}")
        self._mem_used.add(k)
        return f"%mf.{k}"

    def _call_ld(self, addr: str, w: int) -> str:
        """A load through the runtime's access function, its fault branch after it."""
        r = self.op(f"call i64 {self._mem_fn('ld', w)}(i64* %ctx, i64 {addr}) {_RT_CALL}{self.nsa}")
        self._check_status()
        return self.op(f"trunc i64 {r} to i{w}") if w < 64 else r

    def _call_st(self, addr: str, val: str, w: int) -> None:
        """A store through the runtime's access function, its fault branch after it."""
        wide = self.op(f"zext i{w} {val} to i64") if w < 64 else val
        r = self.op(
            f"call i64 {self._mem_fn('st', w)}(i64* %ctx, i64 {addr}, i64 {wide}) {_RT_CALL}{self.nsa}"
        )
        done = self.newlabel()
        self.e(
            f"br i1 {self.op(f'icmp eq i64 {r}, 0')}, label %{done}, label %{self._fault_exit()}, !prof !0"
        )
        self.label(done)

    def _load(self, addr: str, w: int) -> str:
        if self.compact:
            return self._call_ld(addr, w)
        ent, fast, slow, done = self._tlb_hit(addr, w, 0)
        fv = self.op(f"load i{w}, i{w}* {self._host_ptr(addr, ent, w)}, align 1{self.nsa}")
        fast_end = self.cur
        self.e(f"br label %{done}")
        self.label(slow)
        f = self.fnptr(CTX_SLOW_LD, "i64 (i64*, i64, i64)")
        sv = self.op(f"call i64 {f}(i64* %ctx, i64 {addr}, i64 {w // 8}) {_RT_CALL}{self.nsa}")
        self._check_status()
        if w < 64:
            sv = self.op(f"trunc i64 {sv} to i{w}")
        slow_end = self.cur
        self.e(f"br label %{done}")
        self.label(done)
        return self.op(f"phi i{w} [{fv}, %{fast_end}], [{sv}, %{slow_end}]")

    def _store(self, addr: str, val: str, w: int) -> None:
        if self.compact:
            self._call_st(addr, val, w)
            return
        ent, fast, slow, done = self._tlb_hit(addr, w, 1)
        self.e(f"store i{w} {val}, i{w}* {self._host_ptr(addr, ent, w)}, align 1{self.nsa}")
        self.e(f"br label %{done}")
        self.label(slow)
        wide = self.op(f"zext i{w} {val} to i64") if w < 64 else val
        f = self.fnptr(CTX_SLOW_ST, "i64 (i64*, i64, i64, i64)")
        r = self.op(f"call i64 {f}(i64* %ctx, i64 {addr}, i64 {w // 8}, i64 {wide}) {_RT_CALL}{self.nsa}")
        self.e(
            f"br i1 {self.op(f'icmp eq i64 {r}, 0')}, label %{done}, label %{self._fault_exit()}, !prof !0"
        )
        self.label(done)

    # ---- helpers ---------------------------------------------------------------------------
    def _call(self, name: str, xs: list[Val]) -> str | None:
        h = self.helpers[name]
        args = [self.v(x) for x in xs]
        widths = [x.w for x in xs]
        if self.compact and name in self.fast_paths:
            # The first tier calls the helper's fast path out of line, through ctx's table
            # (`fpn_wrapper_text`), instead of inlining it at every call site.
            self.fpn_used.add(name)
            r = self._callback(name, h, args, widths, table=True)
            if h.result_width is None:
                return None
            return r if h.result_width == 64 else self.op(f"trunc i64 {r} to i{h.result_width}")
        if name in self.fast_paths and name in self.shortcuts and not self.compact:
            return self._hot_fp(name, h, args, widths, xs)
        native = self.native_fn(name, tuple(x.const for x in xs)) if self.native_fn is not None else None
        if native is None:
            r = self._callback(name, h, args, widths)
        else:
            # The inlined fast path reads its arguments from %nargs, which nothing else sees
            # (so SROA turns it into registers); the callback gets its own copy in %args.
            argp = self._args_array("%nargs", args, widths)
            fname, ftext = native
            fdecls, self.decls[fname] = split_decls(ftext)
            self.decls.update(fdecls)
            self._inline_native = True
            slots = sorted((h.reads or set()) | (h.writes or set())) if h.state else []
            fs = {}
            for k in slots:
                fs[k] = self.op(
                    f"getelementptr inbounds [{self.nslots} x i64], [{self.nslots} x i64]* %fslots, i64 0, i64 {k}"
                )
                self.e(f"store i64 {self.load_slot(k)}, i64* {fs[k]}")
            base = self.op(
                f"getelementptr inbounds [{self.nslots} x i64], [{self.nslots} x i64]* %fslots, i64 0, i64 0"
            )
            ok = self.op(f"call i1 @{fname}(i64* {argp}, i64* {base}, i64* %fout)")
            fast, slow, done = self.newlabel(), self.newlabel(), self.newlabel()
            self.e(f"br i1 {ok}, label %{fast}, label %{slow}, !prof !0")
            self.label(fast)
            for k in sorted(h.writes or ()) if h.state else ():
                self.put_slot(k, self.op(f"load i64, i64* {fs[k]}"), forward=False)
            fv = self.op("load i64, i64* %fout")
            fast_end = self.cur
            self.e(f"br label %{done}")
            self.label(slow)
            sv = self._callback(name, h, args, widths)
            slow_end = self.cur
            self.e(f"br label %{done}")
            self.label(done)
            if h.result_width is None:
                return None
            r = self.op(f"phi i64 [{fv}, %{fast_end}], [{sv}, %{slow_end}]")
        if h.result_width is None:
            return None
        if h.result_width < 64:
            r = self.op(f"trunc i64 {r} to i{h.result_width}")
        return r

    def _args_array(self, array: str, args: list[str], widths: list[int]) -> str:
        for i, (v, w) in enumerate(zip(args, widths, strict=True)):
            v64 = self.op(f"zext i{w} {v} to i64") if w < 64 else v
            p = self.op(f"getelementptr inbounds [8 x i64], [8 x i64]* {array}, i64 0, i64 {i}")
            self.e(f"store i64 {v64}, i64* {p}")
        return self.op(f"getelementptr inbounds [8 x i64], [8 x i64]* {array}, i64 0, i64 0")

    def _hot_fp(self, name: str, h: Any, args: list[str], widths: list[int], xs: list[Val]) -> str:
        """A binary64 or binary32 FP helper in a hot region: its accrued-NX shortcut inline
        (binary32's operands checked NaN-boxed, its result boxed; the host's
        operation under round-to-nearest-even, with NX already accrued, when the result is
        finite and above the smallest normal: the helper's result, no flag to add), else
        its fast path out of line through ctx's table, as in the first tier. (Inlining the
        whole fast path at every call site made a float-heavy hot module several times
        bigger: bench_float's 64-block region was 800 KB of IR, 1.3 s to compile.)"""
        op, signs, rm_i, fflags, frm, nx, dyn, ty = self.shortcuts[name]
        single = ty == "float"  # (binary32: operands NaN-boxed in 64-bit registers)
        rm = xs[rm_i].const
        rne = "true" if rm == 0 else None
        if rm == dyn:
            rne = self.op(f"icmp eq i64 {self.load_slot(frm)}, 0")
        self.fpn_used.add(name)
        if rne is None:  # (a static rounding mode other than RNE)
            return self._callback(name, h, args, widths, table=True)
        has_nx = self.op(f"icmp ne i64 {self.op(f'and i64 {self.load_slot(fflags)}, {nx}')}, 0")
        go = self.op(f"and i1 {rne}, {has_nx}")
        ops = args[: len(signs)]
        if single:  # every operand NaN-boxed: the upper halves, ANDed, all ones
            both = ops[0]
            for a in ops[1:]:
                both = self.op(f"and i64 {both}, {a}")
            boxed = self.op(f"icmp eq i64 {self.op(f'lshr i64 {both}, 32')}, 4294967295")
            go = self.op(f"and i1 {go}, {boxed}")
        fast, slow, done = self.newlabel(), self.newlabel(), self.newlabel()
        self.e(f"br i1 {go}, label %{fast}, label %{slow}, !prof !0")
        self.label(fast)
        t, it, sfx = ("float", "i32", "f32") if single else ("double", "i64", "f64")
        fs = []
        for a, sign in zip(ops, signs, strict=True):
            f = self.op(f"bitcast {it} {self.op(f'trunc i64 {a} to i32') if single else a} to {t}")
            fs.append(self.op(f"fneg {t} {f}") if sign < 0 else f)
        if op in ("fma", "sqrt"):
            fn = f"llvm.{op}.{sfx}"
            self.decls[fn] = f"declare {t} @{fn}({', '.join([t] * len(fs))})"
            r = self.op(f"call {t} @{fn}({', '.join(f'{t} {f}' for f in fs)})")
        else:
            r = self.op(f"{op} {t} {fs[0]}, {fs[1]}")
        ri = self.op(f"bitcast {t} {r} to {it}")
        # |result| in (MIN, inf): the magnitude (sign shifted out) minus just above the
        # smallest normal's, unsigned, below the span up to infinity's
        lo, inf = (FLT_MIN_BITS, FLT_INF_BITS) if single else (DBL_MIN_BITS, INF_BITS)
        w = 32 if single else 64
        off = self.op(f"sub {it} {self.op(f'shl {it} {ri}, 1')}, {_c(w, (lo + 1) << 1)}")
        ok = self.op(f"icmp ult {it} {off}, {_c(w, (inf - lo - 1) << 1)}")
        if single:  # (boxed)
            ri = self.op(f"or i64 {self.op(f'zext i32 {ri} to i64')}, {_c(64, NAN_BOX)}")
        fast_end = self.cur
        self.e(f"br i1 {ok}, label %{done}, label %{slow}, !prof !0")
        self.label(slow)
        sv = self._callback(name, h, args, widths, table=True)
        slow_end = self.cur
        self.e(f"br label %{done}")
        self.label(done)
        return self.op(f"phi i64 [{ri}, %{fast_end}], [{sv}, %{slow_end}]")

    def _callback(self, name: str, h: Any, args: list[str], widths: list[int], table: bool = False) -> str:
        argp = self._args_array("%args", args, widths)
        # (the state holds every slot already: writes go through)
        sig = "i64 (i64*, i64*, i64, i64*)"
        if table:
            tbl = self.op(f"inttoptr i64 {self.ctx_load(CTX_FPN)} to i64*")
            ep = self.op(f"getelementptr inbounds i64, i64* {tbl}, i64 {self.helper_index[name]}")
            f = self.op(f"inttoptr i64 {self.op(f'load i64, i64* {ep}')} to {sig}*")
        else:
            f = self.fnptr(CTX_CALL, sig)
        # (nocapture: the callback reads and writes the state only while it runs, so LLVM
        # may still keep slots in registers across loops elsewhere in the region)
        r = self.op(
            f"call i64 {f}(i64* %ctx, i64* nocapture %state, i64 {self.helper_index[name]}, i64* {argp}) {_RT_CALL}"
        )
        self._check_status()
        if h.state:
            for k in sorted(set(h.writes or ()) & set(self.used)):
                self.reload_slot(k)
        return r

    # ---- pure operations -------------------------------------------------------------------
    def _pure(self, op: str, d: Val, a: list[Any]) -> str:
        w = d.w
        if op in ("zext", "sext", "trunc"):
            x = self.v(a[0])
            if a[0].w == w:
                return x
            return self.op(f"{op} i{a[0].w} {x} to i{w}")
        if op == "select":
            return self.op(f"select i1 {self.v(a[0])}, i{w} {self.v(a[1])}, i{w} {self.v(a[2])}")
        if len(a) == 1:
            x = self.v(a[0])
            if op == "not":
                return self.op(f"xor i{w} {x}, -1")
            if op == "neg":
                return self.op(f"sub i{w} 0, {x}")
            if op in ("clz", "ctz"):
                f = self.intrinsic("llvm.ctlz" if op == "clz" else "llvm.cttz", w, 1)
                return self.op(f"call i{w} {f}(i{w} {x}, i1 false)")
            if op == "bswap" and w == 8:
                return x  # one byte (llvm.bswap.i8 is invalid IR: LLVM would abort)
            if op in ("popcnt", "bswap"):
                f = self.intrinsic("llvm.ctpop" if op == "popcnt" else "llvm.bswap", w, 1)
                return self.op(f"call i{w} {f}(i{w} {x})")
            raise Unsupported(op)
        aw = a[0].w
        x = self.v(a[0])
        if op in _CMP:
            return self.op(f"icmp {_CMP[op]} i{aw} {x}, {self.v(a[1])}")
        y = self.v(a[1])
        yw = a[1].w
        if yw != aw:
            if op in ("shl", "lshr", "ashr", "rotl", "rotr"):
                y = (
                    self.op(f"{'zext' if yw < aw else 'trunc'} i{yw} {y} to i{aw}")
                    if yw < aw or op in ("rotl", "rotr")
                    else y
                )
                if yw > aw and op not in ("rotl", "rotr"):
                    raise Unsupported("shift amount wider than value")
            else:
                raise Unsupported(f"{op} of mixed widths")
        if op in _BIN:
            return self.op(f"{_BIN[op]} i{aw} {x}, {y}")
        if op in ("shl", "lshr", "ashr"):
            k = a[1].const
            if k is not None:
                if k >= aw:
                    return _c(aw, 0) if op != "ashr" else self.op(f"ashr i{aw} {x}, {aw - 1}")
                return self.op(f"{op} i{aw} {x}, {k}")
            big = self.op(f"icmp uge i{aw} {y}, {aw}")
            if op == "ashr":
                return self.op(f"ashr i{aw} {x}, {self.op(f'select i1 {big}, i{aw} {aw - 1}, i{aw} {y}')}")
            amt = (
                self.op(f"and i{aw} {y}, {aw - 1}")
                if aw & (aw - 1) == 0
                else self.op(f"select i1 {big}, i{aw} 0, i{aw} {y}")
            )
            r = self.op(f"{op} i{aw} {x}, {amt}")
            return self.op(f"select i1 {big}, i{aw} 0, i{aw} {r}")
        if op in ("rotl", "rotr"):
            if self.compact and aw & (aw - 1) == 0:
                # Two shifts and an or (the funnel-shift intrinsic makes fast isel fall back).
                k = self.op(f"and i{aw} {y}, {aw - 1}")
                back = self.op(f"and i{aw} {self.op(f'sub i{aw} {aw}, {k}')}, {aw - 1}")
                first, second = ("shl", "lshr") if op == "rotl" else ("lshr", "shl")
                return self.op(
                    f"or i{aw} {self.op(f'{first} i{aw} {x}, {k}')}, {self.op(f'{second} i{aw} {x}, {back}')}"
                )
            f = self.intrinsic("llvm.fshl" if op == "rotl" else "llvm.fshr", aw, 3)
            return self.op(f"call i{aw} {f}(i{aw} {x}, i{aw} {x}, i{aw} {y})")
        if aw > 64:
            # LLVM lowers these to compiler-rt calls (__divti3, ...), which the JIT does not
            # link: the interpreter runs such regions.
            raise Unsupported(f"{aw}-bit {op}")
        zero = self.op(f"icmp eq i{aw} {y}, 0")
        if op in ("udiv", "urem"):
            safe = self.op(f"select i1 {zero}, i{aw} 1, i{aw} {y}")
            q = self.op(f"{op} i{aw} {x}, {safe}")
            return self.op(f"select i1 {zero}, i{aw} {-1 if op == 'udiv' else x}, i{aw} {q}")
        if op in ("sdiv", "srem"):
            ismin = self.op(f"icmp eq i{aw} {x}, {_c(aw, 1 << (aw - 1))}")
            ovf = self.op(f"and i1 {ismin}, {self.op(f'icmp eq i{aw} {y}, -1')}")
            safe = self.op(f"select i1 {self.op(f'or i1 {zero}, {ovf}')}, i{aw} 1, i{aw} {y}")
            q = self.op(f"{op} i{aw} {x}, {safe}")
            return self.op(f"select i1 {zero}, i{aw} {-1 if op == 'sdiv' else x}, i{aw} {q}")
        raise Unsupported(f"IR op {op}")


PROF_META = (
    '!0 = !{!"branch_weights", i32 2000, i32 1}\n'  # the first way is the likely one
    # The state array as an alias scope (hot tier, `RegionLowering.scoped`): guest memory
    # accesses, the TLB's loads and the runtime's calls are `!noalias` to it.
    '!1 = distinct !{!1, !"polyvm.state"}\n'
    '!2 = distinct !{!2, !1, !"state"}\n'
    "!3 = !{!2}"
)


class _Group:
    """Loads and stores of one guest block at constant offsets from one base value (`base`:
    the Val of the first access's base; a constant 0 for accesses at constant addresses), with
    no helper call between them: the bytes [base+lo, base+hi) they touch, at most a page, are
    checked in the TLB once. `offs`: each access's offset from the base (by id of its stmt)."""

    __slots__ = ("base", "first", "lo", "hi", "loads", "stores", "ok", "addend", "offs")

    def __init__(self, base: Val, first: Stmt, lo: int, hi: int) -> None:
        self.base, self.first, self.lo, self.hi = base, first, lo, hi
        self.loads = self.stores = False
        self.ok = self.addend = ""
        self.offs: dict[int, int] = {}


_ZERO = Val(0, 64, 0)  # (the base of a group of accesses at constant addresses)


def mem_groups(blk: Block) -> dict[int, _Group]:
    """Group a block's loads and stores by base (id(stmt) -> group): accesses whose address
    is the same value plus a constant (a register read before any write to it in between,
    or one temporary; or constant addresses in one page), 8 to 64 bits wide, between two
    helper calls (a helper may change the mappings), spanning at most a page; groups of one
    access are left out. A function's prologue and epilogue (a register saved or restored at
    each offset from sp), a structure's fields and `memcpy`'s byte stores then cost one TLB
    check instead of one each. Both code generators use it: LLVM's hot tier (`_grouped`) and
    the x86-64 first tier (`x64.X64Region._groups`)."""
    defs: dict[int, Stmt] = {}
    version: dict[int, int] = {}
    key_of: dict[int, tuple] = {}  # temp id -> ("slot", k, version) for slot reads
    found: dict[tuple, list[tuple[Stmt, Val, int, int, bool]]] = {}
    segment = 0
    for insn in blk.insns:
        for st in insn.stmts:
            op = st.op
            if st.dst is not None:
                defs[st.dst.id] = st
            if op == "get":
                k = st.args[0]
                key_of[st.dst.id] = ("slot", k, version.get(k, 0))
            elif op == "put":
                version[st.args[0]] = version.get(st.args[0], 0) + 1
            elif op == "call":
                segment += 1
            elif op in ("load", "store"):
                a = st.args[0]
                w = st.dst.w if op == "load" else st.args[1].w
                if w not in (8, 16, 32, 64):
                    continue
                if a.const is not None:  # (a global's address: a group per page)
                    base, off = _ZERO, to_signed(a.const, a.w)
                    key: tuple = (segment, ("page", a.const >> PAGE_SHIFT))
                else:
                    base, off = a, 0
                    d = defs.get(a.id)
                    if d is not None and d.op == "add":
                        x, y = d.args
                        if y.const is not None and x.const is None:
                            base, off = x, to_signed(y.const, a.w)
                        elif x.const is not None and y.const is None:
                            base, off = y, to_signed(x.const, a.w)
                    key = (segment, key_of.get(base.id, ("temp", base.id)))
                found.setdefault(key, []).append((st, base, off, w // 8, op == "store"))
    groups: dict[int, _Group] = {}
    for accesses in found.values():
        if len(accesses) < 2:
            continue
        first = accesses[0]
        # offsets relative to the first access's base value (the same value for all)
        lo = min(off for _, _, off, _, _ in accesses)
        hi = max(off + n for _, _, off, n, _ in accesses)
        if hi - lo > 1 << PAGE_SHIFT:
            continue
        g = _Group(first[1], first[0], lo, hi)
        for st, _, off, _, store in accesses:
            g.stores |= store
            g.loads |= not store
            g.offs[id(st)] = off
            groups[id(st)] = g
    return groups


def _tlb_probe(
    op: Callable[[str], str], tlb: str, addr: str, w: int, *fields: int, md: str = ""
) -> tuple[str, str]:
    """The software TLB lookup for a w-bit access at addr, emitted through `op` (text -> value
    name): (the entry's pointer, i1 hit). Index (addr >> 12) & (TLB_SIZE - 1); the entry's
    tag of each of `fields` (0 read, 1 write) must equal the page of the access's *last* byte,
    so an access that crosses a page misses. One text for the hot tier's inline accesses, its
    groups of accesses (one w-bit span) and the first tier's runtime functions."""
    idx = op(f"and i64 {op(f'lshr i64 {addr}, {PAGE_SHIFT}')}, {TLB_SIZE - 1}")
    ent = op(f"getelementptr inbounds i64, i64* {tlb}, i64 {op(f'shl i64 {idx}, 2')}")
    tags = []
    for field in fields:
        tagp = ent if field == 0 else op(f"getelementptr inbounds i64, i64* {ent}, i64 {field}")
        tags.append(op(f"load i64, i64* {tagp}{md}"))
    lastb = op(f"add i64 {addr}, {w // 8 - 1}") if w > 8 else addr
    last = op(f"and i64 {lastb}, {_PAGE_TAG_MASK}")
    hit = ""
    for tag in tags:
        h = op(f"icmp eq i64 {tag}, {last}")
        hit = op(f"and i1 {hit}, {h}") if hit else h
    return ent, hit


def _tlb_addend(op: Callable[[str], str], ent: str, md: str = "") -> str:
    """A TLB entry's host addend (host address = guest address + addend)."""
    return op(f"load i64, i64* {op(f'getelementptr inbounds i64, i64* {ent}, i64 2')}{md}")


def _tlb_host_ptr(op: Callable[[str], str], addr: str, ent: str, w: int, md: str = "") -> str:
    """The host pointer of a TLB hit: addr plus the entry's addend."""
    return op(f"inttoptr i64 {op(f'add i64 {addr}, {_tlb_addend(op, ent, md)}')} to i{w}*")


def mem_fn_text(kind: str, w: int) -> str:
    """`i64 polyvm_ld{w}(ctx, addr)` (the value, zero-extended; on a fault ctx's status is set) or
    `i64 polyvm_st{w}(ctx, addr, value)` (0, or non-zero on a fault): the software TLB's fast
    path and the call of the slow path, out of line (in the runtime module, `runtime_text`).
    The compact form calls these instead of repeating them at every access: a fifth of the
    text for LLVM to read, select and allocate, for a call per access (cold code: what
    `polyvm aot` translates)."""
    val = "" if kind == "ld" else ", i64 %v"
    lines = [f"define i64 @polyvm_{kind}{w}(i64* %ctx, i64 %a{val}) {{", "entry:"]
    names = itertools.count()

    def op(text: str) -> str:
        r = f"%t{next(names)}"
        lines.append(f"  {r} = {text}")
        return r

    tlb = op(f"inttoptr i64 {op('load i64, i64* %ctx')} to i64*")  # (CTX_TLB is word 0)
    ent, hit = _tlb_probe(op, tlb, "%a", w, 0 if kind == "ld" else 1)
    lines += [f"  br i1 {hit}, label %fast, label %slow, !prof !0", "fast:"]
    p = _tlb_host_ptr(op, "%a", ent, w)
    if kind == "ld":
        x = op(f"load i{w}, i{w}* {p}, align 1")
        lines.append(f"  ret i64 {op(f'zext i{w} {x} to i64') if w < 64 else x}")
    else:
        v = op(f"trunc i64 %v to i{w}") if w < 64 else "%v"
        lines += [f"  store i{w} {v}, i{w}* {p}, align 1", "  ret i64 0"]
    lines.append("slow:")
    cb, sig, extra = (
        (CTX_SLOW_LD, "i64 (i64*, i64, i64)*", "")
        if kind == "ld"
        else (CTX_SLOW_ST, "i64 (i64*, i64, i64, i64)*", ", i64 %v")
    )
    fp = op(f"getelementptr inbounds i64, i64* %ctx, i64 {cb}")
    f = op(f"inttoptr i64 {op(f'load i64, i64* {fp}')} to {sig}")
    r = op(f"call i64 {f}(i64* %ctx, i64 %a, i64 {w // 8}{extra})")
    lines += [f"  ret i64 {r}", "}"]
    return "\n".join(lines)


def runtime_text() -> str:
    """The functions native code reaches through ctx and that are compiled once per host:
    the dispatcher and the compact form's memory accesses."""
    return "\n".join([dispatcher_text(), *(mem_fn_text(k[:2], int(k[2:])) for k in MEM_FNS)])


def fpn_wrapper_text(sym: str, inline_name: str) -> str:
    """`i64 sym(ctx, state, helper_index, args*)`: a helper's native fast path out of line
    (the always-inline function `inline_name`, `polyvm.engine.jit.native_helper_text`, every
    argument read at run time), falling back to the helper itself through ctx's callback. The
    first tier calls it through ctx's table, as it would call the callback: one copy per
    process instead of one inlined at every call site."""
    return f"""
define i64 @{sym}(i64* %ctx, i64* %state, i64 %idx, i64* %args) {{
entry:
  %out = alloca i64
  %ok = call i1 @{inline_name}(i64* %args, i64* %state, i64* %out)
  br i1 %ok, label %yes, label %no, !prof !0
yes:
  %r = load i64, i64* %out
  ret i64 %r
no:
  %fp = getelementptr i64, i64* %ctx, i64 {CTX_CALL}
  %fi = load i64, i64* %fp
  %f = inttoptr i64 %fi to i64 (i64*, i64*, i64, i64*)*
  %r2 = call i64 %f(i64* %ctx, i64* %state, i64 %idx, i64* %args)
  ret i64 %r2
}}
"""


def dispatcher_text(name: str = "polyvm_dispatch") -> str:
    """`i64 dispatch(ctx, state)`: run translations until one returns non-zero, the count
    reaches ctx's limit (RET_BUDGET) or the next pc has no translation (RET_MISS)."""
    return f"""
define i64 @{name}(i64* %ctx, i64* %state) {{
entry:
  %bp = getelementptr i64, i64* %ctx, i64 {CTX_LIMIT}
  %icp = getelementptr i64, i64* %state, i64 {SLOT_ICOUNT}
  %tp = getelementptr i64, i64* %ctx, i64 {CTX_TABLE}
  %mp = getelementptr i64, i64* %ctx, i64 {CTX_TABLE_MASK}
  br label %loop
loop:
  %limit = load i64, i64* %bp
  %ic = load i64, i64* %icp
  %left = sub i64 %limit, %ic
  %pos = icmp sgt i64 %left, 0
  br i1 %pos, label %go, label %budget
go:
  %pc = load i64, i64* %state
  %ti = load i64, i64* %tp
  %table = inttoptr i64 %ti to i64*
  %mask = load i64, i64* %mp
  %a = lshr i64 %pc, 1
  %b = lshr i64 %pc, 13
  %x = xor i64 %a, %b
  %h0 = and i64 %x, %mask
  br label %probe
probe:
  %h = phi i64 [%h0, %go], [%h1, %next]
  %i2 = shl i64 %h, 1
  %kp = getelementptr i64, i64* %table, i64 %i2
  %key = load i64, i64* %kp
  %isit = icmp eq i64 %key, %pc
  br i1 %isit, label %found, label %check
check:
  %empty = icmp eq i64 %key, -1
  br i1 %empty, label %miss, label %next
next:
  %h2 = add i64 %h, 1
  %h1 = and i64 %h2, %mask
  br label %probe
found:
  %i3 = add i64 %i2, 1
  %fp = getelementptr i64, i64* %table, i64 %i3
  %fi = load i64, i64* %fp
  %f = inttoptr i64 %fi to i64 (i64*, i64*)*
  %r = call i64 %f(i64* %ctx, i64* %state)
  %cnp = getelementptr i64, i64* %ctx, i64 {CTX_DISPATCHES}
  %cn = load i64, i64* %cnp
  %cn1 = add i64 %cn, 1
  store i64 %cn1, i64* %cnp
  %cont = icmp eq i64 %r, 0
  br i1 %cont, label %loop, label %out
out:
  ret i64 %r
miss:
  ret i64 {RET_MISS}
budget:
  ret i64 {RET_BUDGET}
}}
"""
