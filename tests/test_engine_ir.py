"""Every engine's code generation against the IR's documented semantics.

Each operation is compiled by an engine (the reference engine, and the LLVM JIT when llvmlite is
installed) and run on edge-case inputs; the expected values are the hand-checked cases below and
`polyvm.ir.eval_*`, the executable form of docs/ir.md, never another engine's output.
"""

from __future__ import annotations

import importlib.util
import itertools
import random

import pytest

from polyvm.engine import GuestTrap
from polyvm.engine.reference import Engine
from polyvm.ir import BINOPS, CMPOPS, UNOPS, Builder, HelperRegistry, eval_binop, eval_cmp, eval_unop, helper
from polyvm.isa import Arch
from polyvm.memory import PROT_ALL, PROT_READ, PROT_WRITE, AddressSpace

HELPERS = HelperRegistry()


@helper(HELPERS, "trap_if_odd", (64,), 64, state=True, reads=frozenset(), writes=frozenset())
def _trap_if_odd(r, x):
    if x & 1:
        raise GuestTrap("illegal", x)
    return x + 1


@helper(HELPERS, "trap_if_odd_any_slot", (64,), 64, state=True)
def _trap_if_odd_any_slot(r, x):
    """The same, declaring no slots: engines must assume it reads and writes every slot."""
    return _trap_if_odd(r, x)


@helper(HELPERS, "accrue", (64,), 64, state=True, reads=frozenset({5}), writes=frozenset({5}))
def _accrue(r, x):
    """Like an FP helper and fflags: ORs bits into slot 5 and returns a value."""
    r[5] = r[5] | (x & 0xF0)
    return (x * 3) & ((1 << 64) - 1)


class ToyArch(Arch):
    name = "toy"
    nslots = 8
    helpers = HELPERS


_ids = itertools.count()
HAVE_LLVM = importlib.util.find_spec("llvmlite") is not None
ENGINES = [
    "interp",
    pytest.param("jit", marks=pytest.mark.skipif(not HAVE_LLVM, reason="the JIT needs llvmlite")),
    # (the first tier through LLVM, where "jit" emits x86-64 code itself: `engine.x64`)
    pytest.param("jit-llvm", marks=pytest.mark.skipif(not HAVE_LLVM, reason="the JIT needs llvmlite")),
]


def new_engine(kind: str, arch: Arch, mem: AddressSpace):
    """An engine of `kind` for `arch`. The arch gets a name of its own: the JIT names compiled
    regions by the guest bytes they come from, which a toy arch does not lift from."""
    arch.name = f"toy{next(_ids)}"
    if kind == "interp":
        return Engine(arch, mem)
    from polyvm.engine.jit import JitEngine

    return JitEngine(arch, mem, tier="jit", baseline="llvm" if kind == "jit-llvm" else None)


def assert_native(eng, pc: int) -> None:
    """The JIT ran `pc` as native code (not through its interpreter fallback)."""
    if eng.__class__.__name__ == "JitEngine":
        assert pc in eng.table, f"{pc:#x} was not translated natively"


def run_to_stop(eng, r: list[int], budget: int = 100, limit: int = 10_000):
    """Run until something other than the block budget stops the engine (time slices)."""
    for _ in range(limit):
        stop = eng.run(r, budget)
        if stop.reason != "budget":
            return stop
        assert stop.pc == r[0]
    raise AssertionError("did not stop")


def edge_values(w: int) -> list[int]:
    m = (1 << w) - 1
    s = 1 << (w - 1)
    vals = {0, 1, 2, 3, m, m - 1, s, s - 1, s + 1, 7, w - 1, w, w + 1}
    rnd = random.Random(w)
    vals |= {rnd.getrandbits(w) for _ in range(6)}
    return sorted(v & m for v in vals)


class OneBlock(ToyArch):
    """One instruction at 0x1000 built by `build`, then a jump to 0x2000, which halts."""

    def __init__(self, build, nslots: int = 8) -> None:
        self.build = build
        self.nslots = nslots

    def lift_block(self, fetch, pc, max_insns, stop_before=None):
        b = Builder(pc, HELPERS)
        if pc != 0x1000:
            b.exit("halt", pc, pc)
            return b.finish()
        b.begin(pc, 4)
        self.build(b)
        b.jump(b.const(0x2000, 64))
        return b.finish()


def run_op(kind: str, build, nslots: int = 8, native: bool = True):
    """fn(r): run the block of `build` on state r (through the engine's run loop); `native`:
    the JIT must have compiled it (not left it to its interpreter)."""
    mem = AddressSpace()
    mem.map(0x1000, 0x1000, PROT_ALL)
    eng = new_engine(kind, OneBlock(build, nslots), mem)

    def fn(r: list[int]) -> int:
        r[0] = 0x1000
        stop = eng.run(r, 8)
        assert (stop.reason, stop.pc) == ("halt", 0x2000), stop
        if native:
            assert_native(eng, 0x1000)
        return r[0]

    return fn


@pytest.mark.parametrize("kind", ENGINES)
@pytest.mark.parametrize("w", [8, 16, 32, 64, 128])
@pytest.mark.parametrize("op", sorted(BINOPS | CMPOPS))
def test_binop_matches_semantics(op: str, w: int, kind: str) -> None:
    def build(b: Builder) -> None:
        # slots 2-3, 4-5, 6-7 so 128-bit values (two slots each) fit
        x, y = b.get(2, w), b.get(4, w)
        res = b.cmp(op, x, y) if op in CMPOPS else b.binop(op, x, y)
        b.put(6, b.zext(res, 64) if op in CMPOPS else res)

    # 128-bit division would need compiler-rt in the JIT, which leaves it to its interpreter.
    fn = run_op(kind, build, native=not (w > 64 and op in ("udiv", "urem", "sdiv", "srem")))
    m64 = (1 << 64) - 1
    for x in edge_values(w):
        for y in edge_values(w):
            r = [0, 0, x & m64, x >> 64, y & m64, y >> 64, 0, 0]
            fn(r)
            exp = eval_cmp(op, x, y, w) if op in CMPOPS else eval_binop(op, x, y, w)
            got = r[6] | (r[7] << 64) if w == 128 and op not in CMPOPS else r[6]
            assert got == exp, (op, w, hex(x), hex(y))


@pytest.mark.parametrize("kind", ENGINES)
@pytest.mark.parametrize("w", [8, 32, 64])
@pytest.mark.parametrize("op", sorted(BINOPS | CMPOPS))
def test_binop_with_constant_operand(op: str, w: int, kind: str) -> None:
    """The same with the second operand a constant (shift amounts >= w, division by 0 or -1):
    engines compile constant operands differently."""
    ys = edge_values(w)

    def build(b: Builder) -> None:
        x = b.get(2, w)
        for i, y in enumerate(ys):
            c = b.const(y, w)
            res = b.cmp(op, x, c) if op in CMPOPS else b.binop(op, x, c)
            b.put(3 + i, b.zext(res, 64) if res.w < 64 else res)

    fn = run_op(kind, build, nslots=3 + len(ys))
    for x in edge_values(w):
        r = [0, 0, x] + [0] * len(ys)
        fn(r)
        for i, y in enumerate(ys):
            exp = eval_cmp(op, x, y, w) if op in CMPOPS else eval_binop(op, x, y, w)
            assert r[3 + i] == exp, (op, w, hex(x), hex(y))


@pytest.mark.parametrize("kind", ENGINES)
@pytest.mark.parametrize("w", [8, 16, 32, 64])
@pytest.mark.parametrize("op", sorted(UNOPS))
def test_unop_matches_semantics(op: str, w: int, kind: str) -> None:
    fn = run_op(kind, lambda b: b.put(4, b.unop(op, b.get(2, w))))
    for x in edge_values(w):
        r = [0, 0, x, 0, 0, 0, 0, 0]
        fn(r)
        assert r[4] == eval_unop(op, x, w), (op, w, hex(x))


def test_hand_checked_cases() -> None:
    m64 = (1 << 64) - 1
    assert eval_binop("sdiv", (-7) & m64, 2, 64) == (-3) & m64
    assert eval_binop("srem", (-7) & m64, 2, 64) == (-1) & m64
    assert eval_binop("sdiv", 1 << 63, m64, 64) == 1 << 63  # overflow: INT_MIN / -1
    assert eval_binop("srem", 1 << 63, m64, 64) == 0
    assert eval_binop("udiv", 5, 0, 64) == m64
    assert eval_binop("urem", 5, 0, 64) == 5
    assert eval_binop("sdiv", 5, 0, 64) == m64
    assert eval_binop("ashr", 0x80, 9, 8) == 0xFF
    assert eval_binop("shl", 1, 64, 64) == 0
    assert eval_binop("rotr", 1, 1, 8) == 0x80
    assert eval_unop("clz", 1, 32) == 31
    assert eval_unop("ctz", 0, 32) == 32
    assert eval_unop("bswap", 0x11223344, 32) == 0x44332211
    assert eval_binop("rotl", 0x81, 1, 8) == 0x03 and eval_binop("rotl", 0x81, 9, 8) == 0x03
    assert eval_binop("rotr", 0x1234, 4, 16) == 0x4123
    assert eval_binop("ashr", 0x8000_0000, 4, 32) == 0xF800_0000
    assert eval_binop("ashr", 0x7000_0000, 31, 32) == 0
    assert eval_binop("lshr", 0x8000_0000, 32, 32) == 0
    m128 = (1 << 128) - 1
    assert eval_cmp("slt", 1 << 127, 1, 128) == 1 and eval_cmp("ult", 1 << 127, 1, 128) == 0
    assert eval_binop("sdiv", (-9) & m128, 2, 128) == (-4) & m128
    assert eval_binop("mul", 1 << 64, 1 << 64, 128) == 0


@pytest.mark.parametrize("kind", ENGINES)
def test_casts_and_select(kind: str) -> None:
    def build(b: Builder) -> None:
        x = b.get(2, 64)
        lo = b.trunc(x, 8)
        b.put(4, b.sext(lo, 64))
        b.put(5, b.zext(lo, 64))
        b.put(6, b.select(b.eq(lo, b.const(0x80, 8)), b.const(1, 64), b.const(2, 64)))

    fn = run_op(kind, build)
    r = [0, 0, 0x1234_5680, 0, 0, 0, 0, 0]
    fn(r)
    assert r[4] == 0xFFFF_FFFF_FFFF_FF80 and r[5] == 0x80 and r[6] == 1
    r = [0, 0, 0x1234_567F, 0, 0, 0, 0, 0]
    fn(r)
    assert r[4] == 0x7F and r[5] == 0x7F and r[6] == 2


class Insns(ToyArch):
    """A block at 0x1000 of instructions built by `builds` (one function per 4-byte
    instruction), ending in a jump to 0x2000; every other pc halts."""

    def __init__(self, *builds, nslots: int = 8) -> None:
        self.builds = builds
        self.nslots = nslots

    def lift_block(self, fetch, pc, max_insns, stop_before=None):
        b = Builder(pc, HELPERS)
        if pc != 0x1000:
            b.exit("halt", pc, pc)
            return b.finish()
        for i, build in enumerate(self.builds):
            b.begin(pc + 4 * i, 4)
            if build(b) is False:  # the build ended the block itself
                return b.finish()
        b.jump(b.const(0x2000, 64))
        return b.finish()


def insn_engine(kind: str, *builds, mem: AddressSpace | None = None, nslots: int = 8):
    if mem is None:
        mem = AddressSpace()
    mem.map(0x1000, 0x1000, PROT_ALL)
    return new_engine(kind, Insns(*builds, nslots=nslots), mem)


@pytest.mark.parametrize("kind", ENGINES)
def test_instruction_count_read_inside_a_block(kind: str) -> None:
    """`get 1` reads the count at the start of the block; the lift adds the index (RISC-V
    instret), and the count after the block includes all of it."""
    eng = insn_engine(
        kind,
        lambda b: b.put(2, b.add(b.get(2), b.const(1, 64))),
        lambda b: b.put(3, b.get(1)),
        lambda b: b.put(4, b.add(b.get(1), b.const(2, 64))),
    )
    r = [0x1000, 1000, 0, 0, 0, 0, 0, 0]
    stop = eng.run(r, 8)
    assert (stop.reason, stop.pc) == ("halt", 0x2000)
    assert_native(eng, 0x1000)
    assert r[1] == 1003 and r[3] == 1000 and r[4] == 1002


def _le(data: bytes, off: int, n: int) -> int:
    return int.from_bytes(data[off : off + n], "little")


@pytest.mark.parametrize("kind", ENGINES)
@pytest.mark.parametrize("w", [8, 16, 32, 64])
def test_loads_and_stores(kind: str, w: int) -> None:
    """Little-endian loads and stores at every alignment, across a page boundary inside a
    mapping, run twice (the JIT's software TLB is then warm)."""
    n = w // 8
    mem = AddressSpace()
    mem.map(0x10000, 0x2000, PROT_READ | PROT_WRITE)
    pattern = bytes((i * 37 + 11) & 0xFF for i in range(0x2000))
    mem.write(0x10000, pattern)
    addrs = [0x10000, 0x10001, 0x10003, 0x10FFF - n + 2, 0x10FFE, 0x10FF8, 0x11000]

    def build_loads(b: Builder) -> None:
        # slot 2 holds a base; each load's zero-extended value goes to slots 3.. as a sum
        base = b.get(2)
        for i, a in enumerate(addrs):
            v = b.load(b.add(base, b.const(a - 0x10000, 64)), w)
            b.put(3 + i, b.zext(v, 64) if w < 64 else v)

    def build_stores(b: Builder) -> None:
        base = b.get(2)
        for i, a in enumerate(addrs):
            v = b.get(3 + i)
            b.store(b.add(base, b.const(a - 0x10000 + 0x400, 64)), b.trunc(v, w) if w < 64 else v)

    eng = insn_engine(kind, build_loads, build_stores, mem=mem, nslots=3 + len(addrs))
    for rnd in range(2):
        r = [0x1000, 0, 0x10000] + [0] * len(addrs)
        stop = eng.run(r, 8)
        assert (stop.reason, stop.pc) == ("halt", 0x2000)
        assert_native(eng, 0x1000)
        img = bytearray(pattern) if rnd == 0 else bytearray(mem.read(0x10000, 0x2000))
        before = bytes(img)
        for i, a in enumerate(addrs):
            assert r[3 + i] == _le(before, a - 0x10000, n), (hex(a), rnd)
        # The stores, applied in order to the image by hand (they may overlap each other and
        # the loaded bytes of the second round).
        for i, a in enumerate(addrs):
            o = a - 0x10000 + 0x400
            img[o : o + n] = (r[3 + i] & ((1 << w) - 1)).to_bytes(n, "little")
        assert mem.read(0x10000, 0x2000) == bytes(img), rnd


@pytest.mark.parametrize("kind", ENGINES)
@pytest.mark.parametrize(
    "addr, w, store, fault_addr, mapped",
    [
        (0x20000, 64, False, 0x20000, False),  # unmapped
        (0x12FFC, 64, False, 0x13000, False),  # crosses out of the mapping at its end
        (0x14000, 32, False, 0x14000, True),  # a PROT_NONE page
        (0x12000, 16, True, 0x12000, True),  # store to the read-only page
        (0x11FFF, 16, True, 0x12000, True),  # a store that crosses into it
        (0x13000, 8, True, 0x13000, False),
    ],
)
def test_memory_fault_is_precise(
    kind: str, addr: int, w: int, store: bool, fault_addr: int, mapped: bool
) -> None:
    """The faulting access is the 3rd instruction: the first two have taken effect (a register
    and a store), the 3rd and 4th not; the count is 2 and the stop pc the 3rd instruction."""
    mem = AddressSpace()
    mem.map(0x10000, 0x2000, PROT_READ | PROT_WRITE)
    mem.map(0x12000, 0x1000, PROT_READ)
    mem.map(0x14000, 0x1000, 0)

    def access(b: Builder) -> None:
        a = b.get(3)
        if store:
            b.store(a, b.trunc(b.get(2), w))
            b.put(4, b.const(0xBAD, 64))
        else:
            b.put(4, b.zext(b.load(a, w), 64) if w < 64 else b.load(a, w))

    eng = insn_engine(
        kind,
        lambda b: b.put(2, b.add(b.get(2), b.const(1, 64))),
        lambda b: b.store(b.const(0x10008, 64), b.get(2)),
        access,
        lambda b: b.put(5, b.const(0xBAD, 64)),
        mem=mem,
    )
    for _ in range(2):  # a second time through the same (now translated, TLB-warm) code
        r = [0x1000, 0, 41, addr, 7, 9, 0, 0]
        stop = eng.run(r, 10)
        assert (stop.reason, stop.addr, stop.access, stop.mapped) == (
            "fault",
            fault_addr,
            "rw"[store],
            mapped,
        )
        assert stop.pc == 0x1008 and r[0] == 0x1008
        assert r[1] == 2 and r[2] == 42 and r[4] == 7 and r[5] == 9
        assert mem.read_u(0x10008, 8) == 42
        assert_native(eng, 0x1000)


@pytest.mark.parametrize("kind", ENGINES)
def test_cstore(kind: str) -> None:
    """A conditional store happens (and is checked) only when its condition holds."""
    mem = AddressSpace()
    mem.map(0x10000, 0x1000, PROT_READ | PROT_WRITE)

    def build(b: Builder) -> None:
        c = b.ne(b.get(4), b.const(0, 64))
        b.cstore(c, b.get(3), b.trunc(b.get(2), 32))
        b.put(5, b.const(1, 64))

    eng = insn_engine(kind, build, mem=mem)
    r = [0x1000, 0, 0x11223344AABBCCDD, 0x10010, 1, 0, 0, 0]
    assert eng.run(r, 8).reason == "halt"
    assert mem.read_u(0x10010, 8) == 0xAABBCCDD and r[5] == 1
    r = [0x1000, 0, 5, 0xDEAD0000, 0, 0, 0, 0]  # not taken: the unmapped address is not touched
    assert eng.run(r, 8).reason == "halt" and r[5] == 1
    r = [0x1000, 0, 5, 0xDEAD0000, 1, 0, 0, 0]
    stop = eng.run(r, 8)
    assert (stop.reason, stop.addr, stop.pc, r[1], r[5]) == ("fault", 0xDEAD0000, 0x1000, 0, 0)
    assert_native(eng, 0x1000)


@pytest.mark.parametrize("kind", ENGINES)
def test_state_helper_sees_and_updates_its_slots(kind: str) -> None:
    """A helper declaring slot 5 (like fflags) sees the value the block put there just before,
    and the block sees what it ORed in."""
    eng = insn_engine(
        kind,
        lambda b: b.put(5, b.or_(b.get(5), b.const(1, 64))),
        lambda b: b.put(2, b.call("accrue", b.get(2))),
        lambda b: b.put(5, b.or_(b.get(5), b.const(0x100, 64))),
        lambda b: b.put(3, b.get(5)),
    )
    r = [0x1000, 0, 0x35, 0, 0, 0x8000, 0, 0]
    assert eng.run(r, 8).reason == "halt"
    assert r[2] == 0x35 * 3 and r[5] == 0x8000 | 1 | 0x30 | 0x100 and r[3] == r[5]
    assert_native(eng, 0x1000)


@pytest.mark.parametrize("kind", ENGINES)
def test_exits_retire_as_documented(kind: str) -> None:
    """A syscall exit retires its instruction (state pc = the instruction, resume after it);
    an illegal instruction at the start of a block retires nothing; sync_icache continues."""

    class A(ToyArch):
        def lift_block(self, fetch, pc, max_insns, stop_before=None):
            b = Builder(pc, HELPERS)
            if pc == 0x1000:
                b.begin(pc, 4)
                b.put(2, b.add(b.get(2), b.const(1, 64)))
                b.begin(pc + 4, 4)
                b.exit("sync_icache", pc + 4, pc + 8)
            elif pc == 0x1008:
                b.begin(pc, 4)
                b.put(2, b.add(b.get(2), b.const(1, 64)))
                b.begin(pc + 4, 4)
                b.exit("syscall", pc + 4, pc + 8)
            elif pc == 0x1010:
                b.begin(pc, 2)
                b.put(3, b.const(5, 64))
                b.jump(b.const(pc + 2, 64))
            else:
                b.exit("illegal", pc, pc, info=0xFFFF)
            return b.finish()

    mem = AddressSpace()
    mem.map(0x1000, 0x1000, PROT_ALL)
    eng = new_engine(kind, A(), mem)
    r = [0x1000, 0, 0, 0, 0, 0, 0, 0]
    stop = eng.run(r, 10)
    assert (stop.reason, stop.pc, stop.resume, r[0], r[1], r[2]) == ("syscall", 0x100C, 0x1010, 0x100C, 4, 2)
    assert_native(eng, 0x1000)
    r[0] = stop.resume
    stop = eng.run(r, 10)
    assert (stop.reason, stop.pc, stop.info, r[0], r[1], r[3]) == ("illegal", 0x1012, 0xFFFF, 0x1012, 5, 5)


@pytest.mark.parametrize("kind", ENGINES)
def test_precise_fault_keeps_earlier_writes(kind: str) -> None:
    """A fault in the 2nd instruction leaves the 1st instruction's effects and the right pc."""

    class A(ToyArch):
        def lift_block(self, fetch, pc, max_insns, stop_before=None):
            b = Builder(pc, HELPERS)
            b.begin(pc, 4)
            b.put(2, b.add(b.get(2), b.const(1, 64)))
            b.store(b.const(0x10008, 64), b.get(2))
            b.begin(pc + 4, 4)
            v = b.load(b.get(3), 64)  # faults: slot 3 points at unmapped memory
            b.put(4, v)
            b.jump(b.const(pc + 8, 64))
            return b.finish()

    mem = AddressSpace()
    mem.map(0x10000, 0x1000, PROT_READ | PROT_WRITE)
    mem.map(0x1000, 0x1000, PROT_ALL)
    eng = new_engine(kind, A(), mem)
    r = [0x1000, 0, 41, 0xDEAD0000, 7, 0, 0, 0]
    stop = eng.run(r, 10)
    assert stop.reason == "fault" and stop.addr == 0xDEAD0000 and stop.access == "r" and not stop.mapped
    assert stop.pc == 0x1004 and r[0] == 0x1004
    assert r[1] == 1  # one instruction retired
    assert r[2] == 42 and r[4] == 7
    assert mem.read_u(0x10008, 8) == 42
    assert_native(eng, 0x1000)


def _loop_arch(helper_name: str, helpers: HelperRegistry = HELPERS):
    class A(ToyArch):
        def lift_block(self, fetch, pc, max_insns, stop_before=None):
            b = Builder(pc, HELPERS)
            if pc != 0x1000:
                b.exit("halt", pc, pc)
                return b.finish()
            b.begin(pc, 4)
            b.put(2, b.sub(b.get(2), b.const(1, 64)))
            b.begin(pc + 4, 4)
            b.put(3, b.call(helper_name, b.get(5)))
            b.begin(pc + 8, 4)
            b.branch(b.ne(b.get(2), b.const(0, 64)), pc, pc + 12)
            return b.finish()

    A.helpers = helpers
    return A()


@pytest.mark.parametrize("kind", ENGINES)
@pytest.mark.parametrize("helper_name", ["trap_if_odd", "trap_if_odd_any_slot"])
def test_loop_block_counts_and_trap_from_helper(kind: str, helper_name: str) -> None:
    """A self-looping block: exact instruction counts however the loop is split into time
    slices, and a helper trap mid-loop is precise. (A helper that declares no slots is one the
    JIT leaves to its interpreter.)"""
    mem = AddressSpace()
    mem.map(0x1000, 0x1000, PROT_ALL)
    eng = new_engine(kind, _loop_arch(helper_name), mem)
    r = [0x1000, 0, 1000, 0, 0, 0, 0, 0]
    stop = run_to_stop(eng, r, budget=100)
    # 1000 iterations of 3 instructions, however the loop was split into dispatches
    assert stop.reason == "halt" and stop.pc == 0x100C
    assert r[1] == 3000 and r[2] == 0 and r[3] == 1
    if helper_name == "trap_if_odd":
        assert_native(eng, 0x1000)

    # make the helper trap on the 4th call
    calls = []

    def trap_on_4th(rr, x):
        calls.append(x)
        if len(calls) == 4:
            raise GuestTrap("illegal", 0x1234)
        return 0

    helpers = HelperRegistry()
    declared = {"reads": frozenset(), "writes": frozenset()} if helper_name == "trap_if_odd" else {}
    helper(helpers, helper_name, (64,), 64, state=True, **declared)(trap_on_4th)
    eng = new_engine(kind, _loop_arch(helper_name, helpers), mem)
    r = [0x1000, 0, 10, 0, 0, 0, 0, 0]
    stop = run_to_stop(eng, r, budget=100)
    assert stop.reason == "illegal" and stop.info == 0x1234 and stop.pc == 0x1004
    assert stop.resume == 0x1008 and r[0] == 0x1004
    assert r[1] == 3 * 3 + 1  # three full iterations plus the first instruction of the 4th
    assert r[2] == 6


@pytest.mark.parametrize("kind", ENGINES)
@pytest.mark.parametrize("budget", [1, 2, 3, 7, 1000])
def test_budget_stops_resume_exactly(kind: str, budget: int) -> None:
    """A long loop under any block budget: each stop is "budget" with state pc the next
    instruction to run and an exact count; resuming reaches the same end state."""
    mem = AddressSpace()
    mem.map(0x1000, 0x1000, PROT_ALL)
    eng = new_engine(kind, _loop_arch("trap_if_odd"), mem)
    r = [0x1000, 0, 300, 0, 0, 0, 0, 0]
    stops = 0
    while True:
        stop = eng.run(r, budget)
        if stop.reason != "budget":
            break
        stops += 1
        assert stop.pc == r[0] in (0x1000, 0x100C)
        # the count is exact at every stop: 3 per finished iteration
        assert r[1] == 3 * (300 - r[2])
    assert (stop.reason, stop.pc, r[1], r[2]) == ("halt", 0x100C, 900, 0)


@pytest.mark.skipif(not HAVE_LLVM, reason="the JIT needs llvmlite")
def test_trap_resume_when_the_translation_is_reused() -> None:
    """A helper trap in a 2-byte instruction resumes 2 bytes on, also in a second engine that
    reuses the first one's translation of the same code (the JIT compiles it once per process)."""
    from polyvm.engine.jit import JitEngine

    class A(ToyArch):
        def lift_block(self, fetch, pc, max_insns, stop_before=None):
            b = Builder(pc, HELPERS)
            if pc not in (0x1000, 0x1004):
                b.exit("halt", pc, pc)
                return b.finish()
            if pc == 0x1000:
                b.begin(pc, 4)
                b.put(2, b.add(b.get(2), b.const(1, 64)))
            b.begin(0x1004, 2)
            b.put(3, b.call("trap_if_odd", b.get(5)))
            b.jump(b.const(0x1006, 64))
            return b.finish()

    arch = A()
    arch.name = f"toy{next(_ids)}"
    for _ in range(2):  # the second engine finds the region compiled
        mem = AddressSpace()
        mem.map(0x1000, 0x1000, PROT_ALL)
        eng = JitEngine(arch, mem, tier="jit")
        r = [0x1000, 0, 0, 0, 0, 7, 0, 0]
        stop = eng.run(r, 10)
        assert (stop.reason, stop.pc, stop.resume, stop.info, r[1], r[2]) == (
            "illegal",
            0x1004,
            0x1006,
            7,
            1,
            1,
        )
        assert_native(eng, 0x1000)


def test_the_builder_reads_a_register_once_per_block() -> None:
    """A 64-bit register read or written earlier in the block is that value: no second `get`
    (one statement fewer for every engine). Not after a helper that may write it, not for
    the pc or the count (slots 0 and 1, which every instruction moves), not a narrower read;
    an instruction dropped undecoded forgets what it read."""

    from polyvm import ir
    from polyvm.isa import SLOT_ICOUNT, SLOT_PC

    assert (SLOT_PC, SLOT_ICOUNT) == (0, ir._SLOT_ICOUNT)  # (ir's copy of the layout's constant)

    def gets(b: Builder) -> list[tuple[int, int]]:
        return [(s.args[0], s.dst.w) for i in b.insns for s in i.stmts if s.op == "get"]

    b = Builder(0x1000, HELPERS)
    b.begin(0x1000, 4)
    x = b.get(3)
    assert b.get(3) is x  # (the same instruction)
    b.put(4, b.add(x, b.const(1, 64)))
    b.begin(0x1004, 4)
    assert b.get(3) is x  # (the next one)
    y = b.get(4)
    assert y.const is None and y is b.insns[0].stmts[-1].args[1]  # what was put
    assert gets(b) == [(3, 64)]
    b.call("accrue", x)  # writes slot 5 alone
    assert b.get(3) is x and gets(b) == [(3, 64)]
    b.get(5)
    b.call("accrue", x)
    b.get(5)
    assert gets(b) == [(3, 64), (5, 64), (5, 64)]
    b.call("trap_if_odd_any_slot", x)  # (no slots declared: any of them)
    b.get(3)
    assert gets(b) == [(3, 64), (5, 64), (5, 64), (3, 64)]
    b.get(0), b.get(0), b.get(1), b.get(1), b.get(6, 32), b.get(6, 32)
    assert gets(b)[4:] == [(0, 64), (0, 64), (1, 64), (1, 64), (6, 32), (6, 32)]
    b.put(7, b.const(9, 64))  # (a constant put reads back as the constant)
    assert b.get(7).const == 9
    b.begin(0x1008, 4)
    b.get(2)
    b.drop_current()
    b.begin(0x1008, 4)
    b.get(2)
    assert gets(b)[-1] == (2, 64) and len(b.insns) == 3


@pytest.mark.parametrize("kind", ENGINES)
def test_a_register_a_helper_writes_is_read_again(kind: str) -> None:
    """Slot 5 read, a helper that writes it, read again: the second read sees the helper's
    write on every engine (hand-checked: 0x0F | 0x30 = 0x3F, minus 0x0F)."""

    def build(b: Builder) -> None:
        before = b.get(5)
        b.call("accrue", b.const(0x30, 64))  # slot 5 |= 0x30
        b.put(6, b.sub(b.get(5), before))
        b.put(7, b.get(5))

    fn = run_op(kind, build)
    r = [0, 0, 0, 0, 0, 0x0F, 0, 0]
    fn(r)
    assert r[5:] == [0x3F, 0x30, 0x3F], r
