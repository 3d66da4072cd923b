"""The reference engine's code generation against the IR's documented semantics.

Each operation is compiled by the engine and run on edge-case inputs; the expected values are
the hand-checked cases below and `polyvm.ir.eval_*`, the executable form of docs/ir.md.
"""

from __future__ import annotations

import random

import pytest

from polyvm.engine import GuestTrap
from polyvm.engine.reference import Engine
from polyvm.ir import BINOPS, CMPOPS, UNOPS, Builder, HelperRegistry, eval_binop, eval_cmp, eval_unop, helper
from polyvm.isa import Arch
from polyvm.memory import PROT_READ, PROT_WRITE, AddressSpace

HELPERS = HelperRegistry()


@helper(HELPERS, "trap_if_odd", (64,), 64, state=True)
def _trap_if_odd(r, x):
    if x & 1:
        raise GuestTrap("illegal", x)
    return x + 1


class ToyArch(Arch):
    name = "toy"
    nslots = 8
    helpers = HELPERS


def edge_values(w: int) -> list[int]:
    m = (1 << w) - 1
    s = 1 << (w - 1)
    vals = {0, 1, 2, 3, m, m - 1, s, s - 1, s + 1, 7, w - 1, w, w + 1}
    rnd = random.Random(w)
    vals |= {rnd.getrandbits(w) for _ in range(6)}
    return sorted(v & m for v in vals)


def run_op(build) -> list[int]:
    eng = Engine(ToyArch(), AddressSpace())
    b = Builder(0x1000, HELPERS)
    b.begin(0x1000, 4)
    build(b)
    b.jump(b.const(0x2000, 64))
    fn, _ = eng.codegen(b.finish())
    return fn


@pytest.mark.parametrize("w", [8, 16, 32, 64, 128])
@pytest.mark.parametrize("op", sorted(BINOPS | CMPOPS))
def test_binop_matches_semantics(op: str, w: int) -> None:
    def build(b: Builder) -> None:
        # slots 2-3, 4-5, 6-7 so 128-bit values (two slots each) fit
        x, y = b.get(2, w), b.get(4, w)
        res = b.cmp(op, x, y) if op in CMPOPS else b.binop(op, x, y)
        b.put(6, b.zext(res, 64) if op in CMPOPS else res)

    fn = run_op(build)
    m64 = (1 << 64) - 1
    for x in edge_values(w):
        for y in edge_values(w):
            r = [0, 0, x & m64, x >> 64, y & m64, y >> 64, 0, 0]
            assert fn(r) == 0x2000
            exp = eval_cmp(op, x, y, w) if op in CMPOPS else eval_binop(op, x, y, w)
            got = r[6] | (r[7] << 64) if w == 128 and op not in CMPOPS else r[6]
            assert got == exp, (op, w, hex(x), hex(y))


@pytest.mark.parametrize("w", [8, 16, 32, 64])
@pytest.mark.parametrize("op", sorted(UNOPS))
def test_unop_matches_semantics(op: str, w: int) -> None:
    fn = run_op(lambda b: b.put(4, b.unop(op, b.get(2, w))))
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


def test_casts_and_select() -> None:
    def build(b: Builder) -> None:
        x = b.get(2, 64)
        lo = b.trunc(x, 8)
        b.put(4, b.sext(lo, 64))
        b.put(5, b.zext(lo, 64))
        b.put(6, b.select(b.eq(lo, b.const(0x80, 8)), b.const(1, 64), b.const(2, 64)))

    fn = run_op(build)
    r = [0, 0, 0x1234_5680, 0, 0, 0, 0, 0]
    fn(r)
    assert r[4] == 0xFFFF_FFFF_FFFF_FF80 and r[5] == 0x80 and r[6] == 1


def make_mem_engine():
    mem = AddressSpace()
    mem.map(0x10000, 0x1000, PROT_READ | PROT_WRITE)
    return Engine(ToyArch(), mem), mem


def test_precise_fault_keeps_earlier_writes() -> None:
    """A fault in the 2nd instruction leaves the 1st instruction's effects and the right pc."""

    class A(ToyArch):
        def lift_block(self, fetch, pc, max_insns):
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
    eng = Engine(A(), mem)
    r = [0x1000, 0, 41, 0xDEAD0000, 7, 0, 0, 0]
    stop = eng.run(r, 10)
    assert stop.reason == "fault" and stop.addr == 0xDEAD0000 and stop.access == "r" and not stop.mapped
    assert stop.pc == 0x1004 and r[0] == 0x1004
    assert r[1] == 1  # one instruction retired
    assert r[2] == 42 and r[4] == 7
    assert mem.read_u(0x10008, 8) == 42


def test_loop_block_counts_and_trap_from_helper() -> None:
    """A self-looping block: exact instruction counts, and a helper trap mid-loop is precise."""

    class A(ToyArch):
        def lift_block(self, fetch, pc, max_insns):
            b = Builder(pc, HELPERS)
            if pc != 0x1000:
                b.exit("halt", pc, pc)
                return b.finish()
            b.begin(pc, 4)
            b.put(2, b.sub(b.get(2), b.const(1, 64)))
            b.begin(pc + 4, 4)
            b.put(3, b.call("trap_if_odd", b.get(5)))
            b.begin(pc + 8, 4)
            b.branch(b.ne(b.get(2), b.const(0, 64)), pc, pc + 12)
            return b.finish()

    eng = Engine(A(), AddressSpace())
    r = [0x1000, 0, 1000, 0, 0, 0, 0, 0]
    stop = eng.run(r, 100)
    # 1000 iterations of 3 instructions, however the loop was split into dispatches
    assert stop.reason == "halt" and stop.pc == 0x100C
    assert r[1] == 3000 and r[2] == 0

    class B(A):
        pass

    eng = Engine(B(), AddressSpace())
    r = [0x1000, 0, 10, 0, 0, 0, 0, 0]
    # make the helper trap on the 4th iteration: slot 5 becomes odd via the hook-free path
    calls = []

    def trap_on_4th(rr, x):
        calls.append(x)
        if len(calls) == 4:
            raise GuestTrap("illegal", 0x1234)
        return 0

    B.helpers = HelperRegistry()
    helper(B.helpers, "trap_if_odd", (64,), 64, state=True)(trap_on_4th)
    stop = eng.run(r, 100)
    assert stop.reason == "illegal" and stop.info == 0x1234 and stop.pc == 0x1004
    assert r[1] == 3 * 3 + 1  # three full iterations plus the first instruction of the 4th
    assert r[2] == 6
