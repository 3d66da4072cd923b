"""polyvm's IR: the one language every ISA is lifted into and every engine executes.

A *block* is a straight-line list of guest instructions, each a list of statements in SSA form
over fixed-width integers, ended by one terminator. See docs/ir.md for the full reference; the
short version:

* Values are `Val`: a temporary (defined exactly once) or a constant, each with a width in bits
  (1, 8, 16, 32, 64 or 128). Integers carry no sign; operations say how they read their inputs.
* Guest state is a vector of *slots* (`get`/`put`), each at most 64 bits wide; a 128-bit value
  occupies two consecutive slots (low half first). The ISA decides what the slots mean.
* Memory is little-endian and byte addressed (`load`/`store`/`cstore`), addresses are 64-bit.
* Everything with a side effect is ordered: within one guest instruction, all memory accesses
  and helper calls that can fault come before the first `put`, so a fault leaves the state as
  it was before the instruction (precise exceptions for free in every engine).
* Complex operations (IEEE arithmetic, CSR access) are `call`s of *helpers*: named Python
  functions registered once, which an engine may call directly or lower natively.

Every operation has a defined result for every input (no undefined behaviour): shifts by the
width or more, division by zero and signed overflow are all spelled out in docs/ir.md, so an
engine never needs to know which ISA it is running.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from polyvm.record import FrozenRecord, Record

_SLOT_ICOUNT = 1  # (`polyvm.isa`: slot 0 the pc, 1 the count; the registers after them)

WIDTHS = (1, 8, 16, 32, 64, 128)


def mask(w: int) -> int:
    return (1 << w) - 1


def to_signed(x: int, w: int) -> int:
    s = 1 << (w - 1)
    return (x ^ s) - s


class Val:
    """An SSA value: a temporary (`const is None`) or a constant."""

    __slots__ = ("id", "w", "const")

    def __init__(self, id: int, w: int, const: int | None = None) -> None:
        self.id = id
        self.w = w
        self.const = const

    @property
    def is_const(self) -> bool:
        return self.const is not None

    def __repr__(self) -> str:
        if self.const is not None:
            return f"{self.const:#x}:i{self.w}"
        return f"t{self.id}:i{self.w}"


# Binary operations whose inputs and result all have the same width.
BINOPS = frozenset("add sub mul and or xor shl lshr ashr rotl rotr udiv sdiv urem srem".split())
# Comparisons: two inputs of one width, a 1-bit result.
CMPOPS = frozenset("eq ne ult ule slt sle".split())
UNOPS = frozenset("not neg clz ctz popcnt bswap".split())


class Stmt(Record):
    """`dst = op(args)`; `dst` is None for statements without a result.

    `args` holds Vals, except for: get (slot number), put (slot number, Val), call (helper name
    then Vals), casts (Val only; the target width is `dst.w`).
    """

    _fields = ("op", "dst", "args")
    __slots__ = _fields

    def __init__(self, op: str, dst: Val | None, args: tuple[Any, ...]) -> None:
        self.op = op
        self.dst = dst
        self.args = args

    def __repr__(self) -> str:
        lhs = f"{self.dst!r} = " if self.dst is not None else ""
        return f"{lhs}{self.op} {', '.join(map(repr, self.args))}"


class Insn(Record):
    """One guest instruction: its address, its length in bytes and its statements."""

    _fields = ("pc", "size", "stmts", "text")
    __slots__ = _fields

    def __init__(self, pc: int, size: int, stmts: list[Stmt] | None = None, text: str = "") -> None:
        self.pc = pc
        self.size = size
        self.stmts: list[Stmt] = [] if stmts is None else stmts
        self.text = text


class Terminator(Record):
    """How a block ends.

    kind:
      * "jump": continue at `target` (a Val; constant for direct jumps).
      * "branch": `cond` (i1) ? `target` : `fallthrough` (both constant addresses).
      * "exit": leave the engine with `reason` (e.g. "syscall", "breakpoint", "illegal",
        "sync_icache", "wfi", "halt"); `target` is the address to resume at, `pc` the address
        of the instruction that caused it.
    """

    _fields = ("kind", "target", "cond", "fallthrough", "reason", "pc", "info")
    __slots__ = _fields

    def __init__(
        self,
        kind: str,
        target: Val | None = None,
        cond: Val | None = None,
        fallthrough: int | None = None,
        reason: str = "",
        pc: int = 0,
        info: Any = None,
    ) -> None:
        self.kind = kind
        self.target = target
        self.cond = cond
        self.fallthrough = fallthrough
        self.reason = reason
        self.pc = pc
        self.info = info


class Block(Record):
    _fields = ("pc", "insns", "term", "ntemps")
    __slots__ = _fields

    def __init__(self, pc: int, insns: list[Insn], term: Terminator, ntemps: int = 0) -> None:
        self.pc = pc
        self.insns = insns
        self.term = term
        self.ntemps = ntemps

    @property
    def size(self) -> int:
        return sum(i.size for i in self.insns)

    @property
    def end(self) -> int:
        return self.pc + self.size

    def dump(self) -> str:
        out = [f"block {self.pc:#x}:"]
        for insn in self.insns:
            out.append(f"  ; {insn.pc:#x} {insn.text}")
            out.extend(f"    {s!r}" for s in insn.stmts)
        t = self.term
        out.append(f"  {t.kind} target={t.target!r} cond={t.cond!r} ft={t.fallthrough} {t.reason}")
        return "\n".join(out)


class Helper(FrozenRecord):
    """A named operation too complex for plain IR (IEEE arithmetic, CSR access).

    `fn(state, *args)` when `state` is true (it may read and write slots and raise a guest
    trap), else `fn(*args)`. Arguments and result are unsigned integers of the given widths.
    `pure` helpers have no effect but their result and may be folded or removed.
    A state helper may declare the slots it `reads` and `writes` (None: any slot), so engines
    that keep slots elsewhere (locals, host registers) need only sync those around the call.
    """

    _fields = ("name", "fn", "arg_widths", "result_width", "state", "pure", "reads", "writes")
    __slots__ = _fields

    def __init__(
        self,
        name: str,
        fn: Callable[..., Any],
        arg_widths: tuple[int, ...],
        result_width: int | None,
        state: bool = False,
        pure: bool = False,
        reads: frozenset[int] | None = None,
        writes: frozenset[int] | None = None,
    ) -> None:
        self.name = name
        self.fn = fn
        self.arg_widths = arg_widths
        self.result_width = result_width
        self.state = state
        self.pure = pure
        self.reads = reads
        self.writes = writes


class HelperRegistry:
    def __init__(self) -> None:
        self._helpers: dict[str, Helper] = {}

    def register(self, helper: Helper) -> Helper:
        if helper.name in self._helpers and self._helpers[helper.name] is not helper:
            raise ValueError(f"helper {helper.name!r} registered twice")
        self._helpers[helper.name] = helper
        return helper

    def __getitem__(self, name: str) -> Helper:
        return self._helpers[name]

    def __contains__(self, name: str) -> bool:
        return name in self._helpers

    def items(self):
        return self._helpers.items()


def helper(
    registry: HelperRegistry,
    name: str,
    arg_widths: tuple[int, ...],
    result_width: int | None,
    *,
    state: bool = False,
    pure: bool = False,
    reads: frozenset[int] | None = None,
    writes: frozenset[int] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register `fn` as helper `name` in `registry`."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        registry.register(Helper(name, fn, arg_widths, result_width, state, pure, reads, writes))
        return fn

    return deco


class Builder:
    """Builds one block. Lifters call `begin(pc, size)` per instruction, then emit statements.

    Constant operands are folded here, so lifters can be written plainly (`x0` reads as the
    constant 0 and folds away).
    """

    def __init__(self, pc: int, helpers: HelperRegistry) -> None:
        self.pc = pc
        self.helpers = helpers
        self.insns: list[Insn] = []
        self.term: Terminator | None = None
        self._n = 0
        self._cur: Insn | None = None
        self._known: dict[int, int] = {}  # slot -> constant put earlier in this block
        self._have: dict[int, Val] = {}  # slot -> a 64-bit value read or put earlier in it

    # ---- structure -------------------------------------------------------------------
    def begin(self, pc: int, size: int, text: str = "") -> Insn:
        self._cur = Insn(pc, size, [], text)
        self.insns.append(self._cur)
        return self._cur

    def drop_current(self) -> None:
        """Forget the instruction being lifted (it turned out not to decode)."""
        if self._cur is not None:
            self.insns.pop()
            self._cur = self.insns[-1] if self.insns else None
            # (what it read or put is forgotten with what came before: reading again is
            # always right, and a lifter ends the block here anyway)
            self._known.clear()
            self._have.clear()

    @property
    def done(self) -> bool:
        return self.term is not None

    def finish(self) -> Block:
        if self.term is None:
            self.term = Terminator("jump", target=self.const(self.end, 64))
        return Block(self.pc, self.insns, self.term, self._n)

    @property
    def end(self) -> int:
        last = self.insns[-1] if self.insns else None
        return last.pc + last.size if last else self.pc

    # ---- values ------------------------------------------------------------------------
    def const(self, x: int, w: int) -> Val:
        return Val(-1, w, x & ((1 << w) - 1))

    def _tmp(self, w: int) -> Val:
        self._n += 1
        return Val(self._n, w)

    def _emit(self, op: str, w: int | None, *args: Any) -> Val | None:
        assert self._cur is not None, "begin() an instruction first"
        dst = self._tmp(w) if w is not None else None
        self._cur.stmts.append(Stmt(op, dst, args))
        return dst

    # ---- state -------------------------------------------------------------------------
    def get(self, slot: int, w: int = 64) -> Val:
        # A constant put earlier in this block reads back as that constant (so `auipc ra` +
        # `jalr ra` is a direct call and address arithmetic on it folds).
        k = self._known.get(slot) if w <= 64 else None
        if k is not None:
            return self.const(k, w)
        if w == 64 and slot > _SLOT_ICOUNT:
            # A register read or written earlier in this block is that value (no second read
            # of the state: every engine would otherwise load it again or find it the same).
            # Not the pc or the count, which every instruction moves.
            v = self._have.get(slot)
            if v is None:
                v = self._have[slot] = self._emit("get", 64, slot)  # type: ignore[assignment]
            return v  # type: ignore[return-value]
        return self._emit("get", w, slot)  # type: ignore[return-value]

    def put(self, slot: int, v: Val) -> None:
        if v.const is not None and v.w <= 64:
            self._known[slot] = v.const
            self._have.pop(slot, None)
        else:
            self._known.pop(slot, None)
            if v.w == 64 and slot > _SLOT_ICOUNT:
                self._have[slot] = v
            else:
                self._have.pop(slot, None)
                if v.w > 64:
                    self._known.pop(slot + 1, None)
                    self._have.pop(slot + 1, None)
        self._emit("put", None, slot, v)

    # ---- memory ------------------------------------------------------------------------
    def load(self, addr: Val, w: int) -> Val:
        return self._emit("load", w, addr)  # type: ignore[return-value]

    def store(self, addr: Val, v: Val) -> None:
        self._emit("store", None, addr, v)

    def cstore(self, cond: Val, addr: Val, v: Val) -> None:
        """Store `v` only when `cond` (i1) is 1; the access is checked only then."""
        if cond.is_const:
            if cond.const:
                self.store(addr, v)
            return
        self._emit("cstore", None, cond, addr, v)

    # ---- helpers -----------------------------------------------------------------------
    def call(self, name: str, *args: Val) -> Val | None:
        h = self.helpers[name]
        assert len(args) == len(h.arg_widths), f"{name}: {len(args)} args"
        if h.pure and all(a.is_const for a in args):
            return self.const(h.fn(*[a.const for a in args]), h.result_width or 64)
        if h.state:  # the helper may write slots: forget what it could overwrite
            if h.writes is None:
                self._known.clear()
                self._have.clear()
            else:
                for k in h.writes:
                    self._known.pop(k, None)
                    self._have.pop(k, None)
        return self._emit("call", h.result_width, name, *args)

    # ---- arithmetic (with constant folding) ------------------------------------------
    def binop(self, op: str, a: Val, b: Val) -> Val:
        w = a.w
        if a.const is not None and b.const is not None:
            return self.const(eval_binop(op, a.const, b.const, w), w)
        # Identities that matter for lifted code (x0 reads, zero offsets).
        if b.const == 0 and op in ("add", "sub", "or", "xor", "shl", "lshr", "ashr", "rotl", "rotr"):
            return a
        if a.const == 0 and op in ("add", "or", "xor"):
            return b
        if (a.const == 0 or b.const == 0) and op in ("and", "mul"):
            return self.const(0, w)
        return self._emit(op, w, a, b)  # type: ignore[return-value]

    def add(self, a: Val, b: Val) -> Val:
        return self.binop("add", a, b)

    def sub(self, a: Val, b: Val) -> Val:
        return self.binop("sub", a, b)

    def mul(self, a: Val, b: Val) -> Val:
        return self.binop("mul", a, b)

    def and_(self, a: Val, b: Val) -> Val:
        return self.binop("and", a, b)

    def or_(self, a: Val, b: Val) -> Val:
        return self.binop("or", a, b)

    def xor(self, a: Val, b: Val) -> Val:
        return self.binop("xor", a, b)

    def shl(self, a: Val, b: Val) -> Val:
        return self.binop("shl", a, b)

    def lshr(self, a: Val, b: Val) -> Val:
        return self.binop("lshr", a, b)

    def ashr(self, a: Val, b: Val) -> Val:
        return self.binop("ashr", a, b)

    def rotl(self, a: Val, b: Val) -> Val:
        return self.binop("rotl", a, b)

    def rotr(self, a: Val, b: Val) -> Val:
        return self.binop("rotr", a, b)

    def udiv(self, a: Val, b: Val) -> Val:
        return self.binop("udiv", a, b)

    def sdiv(self, a: Val, b: Val) -> Val:
        return self.binop("sdiv", a, b)

    def urem(self, a: Val, b: Val) -> Val:
        return self.binop("urem", a, b)

    def srem(self, a: Val, b: Val) -> Val:
        return self.binop("srem", a, b)

    def cmp(self, op: str, a: Val, b: Val) -> Val:
        if a.const is not None and b.const is not None:
            return self.const(eval_cmp(op, a.const, b.const, a.w), 1)
        return self._emit(op, 1, a, b)  # type: ignore[return-value]

    def eq(self, a: Val, b: Val) -> Val:
        return self.cmp("eq", a, b)

    def ne(self, a: Val, b: Val) -> Val:
        return self.cmp("ne", a, b)

    def ult(self, a: Val, b: Val) -> Val:
        return self.cmp("ult", a, b)

    def ule(self, a: Val, b: Val) -> Val:
        return self.cmp("ule", a, b)

    def slt(self, a: Val, b: Val) -> Val:
        return self.cmp("slt", a, b)

    def sle(self, a: Val, b: Val) -> Val:
        return self.cmp("sle", a, b)

    def unop(self, op: str, a: Val) -> Val:
        if a.const is not None:
            return self.const(eval_unop(op, a.const, a.w), a.w)
        return self._emit(op, a.w, a)  # type: ignore[return-value]

    def not_(self, a: Val) -> Val:
        return self.unop("not", a)

    def neg(self, a: Val) -> Val:
        return self.unop("neg", a)

    def clz(self, a: Val) -> Val:
        return self.unop("clz", a)

    def ctz(self, a: Val) -> Val:
        return self.unop("ctz", a)

    def popcnt(self, a: Val) -> Val:
        return self.unop("popcnt", a)

    def bswap(self, a: Val) -> Val:
        return self.unop("bswap", a)

    def zext(self, a: Val, w: int) -> Val:
        if a.w == w:
            return a
        assert w > a.w
        if a.const is not None:
            return self.const(a.const, w)
        return self._emit("zext", w, a)  # type: ignore[return-value]

    def sext(self, a: Val, w: int) -> Val:
        if a.w == w:
            return a
        assert w > a.w
        if a.const is not None:
            return self.const(to_signed(a.const, a.w), w)
        return self._emit("sext", w, a)  # type: ignore[return-value]

    def trunc(self, a: Val, w: int) -> Val:
        if a.w == w:
            return a
        assert w < a.w
        if a.const is not None:
            return self.const(a.const, w)
        return self._emit("trunc", w, a)  # type: ignore[return-value]

    def select(self, c: Val, a: Val, b: Val) -> Val:
        if c.const is not None:
            return a if c.const else b
        return self._emit("select", a.w, c, a, b)  # type: ignore[return-value]

    # ---- terminators -------------------------------------------------------------------
    def jump(self, target: Val) -> None:
        self.term = Terminator("jump", target=target)

    def branch(self, cond: Val, target: int, fallthrough: int) -> None:
        if cond.const is not None:
            self.jump(self.const(target if cond.const else fallthrough, 64))
        else:
            self.term = Terminator(
                "branch", target=self.const(target, 64), cond=cond, fallthrough=fallthrough
            )

    def exit(self, reason: str, pc: int, resume: int, info: Any = None) -> None:
        self.term = Terminator("exit", target=self.const(resume, 64), reason=reason, pc=pc, info=info)


# ---- reference semantics of the pure operations (used for folding and by the tests) ---


def eval_binop(op: str, a: int, b: int, w: int) -> int:
    m = (1 << w) - 1
    if op == "add":
        return (a + b) & m
    if op == "sub":
        return (a - b) & m
    if op == "mul":
        return (a * b) & m
    if op == "and":
        return a & b
    if op == "or":
        return a | b
    if op == "xor":
        return a ^ b
    if op == "shl":
        return (a << b) & m if b < w else 0
    if op == "lshr":
        return a >> b if b < w else 0
    if op == "ashr":
        return (to_signed(a, w) >> min(b, w - 1)) & m
    if op == "rotl":
        b %= w
        return ((a << b) | (a >> (w - b))) & m
    if op == "rotr":
        b %= w
        return ((a >> b) | (a << (w - b))) & m
    if op == "udiv":
        return a // b if b else m
    if op == "urem":
        return a % b if b else a
    if op == "sdiv":
        return sdiv(a, b, w)
    if op == "srem":
        return srem(a, b, w)
    raise ValueError(op)


def sdiv(a: int, b: int, w: int) -> int:
    """Signed division rounding toward zero; x/0 = all ones, MIN/-1 = MIN (docs/ir.md)."""
    m = (1 << w) - 1
    s = 1 << (w - 1)
    sa, sb = (a ^ s) - s, (b ^ s) - s
    if sb == 0:
        return m
    q = abs(sa) // abs(sb)
    return (-q if (sa < 0) != (sb < 0) else q) & m


def srem(a: int, b: int, w: int) -> int:
    """Remainder with the sign of the dividend; x rem 0 = x, MIN rem -1 = 0 (docs/ir.md)."""
    s = 1 << (w - 1)
    sa, sb = (a ^ s) - s, (b ^ s) - s
    if sb == 0:
        return a
    r = abs(sa) % abs(sb)
    return (-r if sa < 0 else r) & ((1 << w) - 1)


def eval_cmp(op: str, a: int, b: int, w: int) -> int:
    if op == "eq":
        return int(a == b)
    if op == "ne":
        return int(a != b)
    if op == "ult":
        return int(a < b)
    if op == "ule":
        return int(a <= b)
    if op == "slt":
        return int(to_signed(a, w) < to_signed(b, w))
    if op == "sle":
        return int(to_signed(a, w) <= to_signed(b, w))
    raise ValueError(op)


def eval_unop(op: str, a: int, w: int) -> int:
    m = (1 << w) - 1
    if op == "not":
        return a ^ m
    if op == "neg":
        return (-a) & m
    if op == "clz":
        return w - a.bit_length()
    if op == "ctz":
        return (a & -a).bit_length() - 1 if a else w
    if op == "popcnt":
        return a.bit_count()
    if op == "bswap":
        return int.from_bytes(a.to_bytes(w // 8, "little"), "big")
    raise ValueError(op)
