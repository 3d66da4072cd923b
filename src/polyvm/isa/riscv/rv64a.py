"""RV64A: load-reserved/store-conditional and atomic memory operations.

One hart runs at a time, so an AMO is simply load, compute, store (the store faults before any
register changes). aq/rl order nothing here. Misaligned atomics are treated like plain accesses.
The reservation (slots RES_ADDR/RES_VALID) is cleared by every SC and, on a thread switch, by
the Linux layer.
"""

from __future__ import annotations

from collections.abc import Callable

from polyvm.engine import GuestTrap
from polyvm.ir import Val, helper
from polyvm.isa.decodetree import Args
from polyvm.isa.riscv.common import HELPERS, RES_ADDR_SLOT, RES_VALID_SLOT, RVBuilder


@helper(HELPERS, "rv.misaligned_check", (64, 64), None)
def _misaligned_check(addr: int, size: int) -> None:
    """LR/SC/AMOs need a naturally aligned address; otherwise an address-misaligned exception
    (Linux: SIGBUS, BUS_ADRALN)."""
    if addr & (size - 1):
        raise GuestTrap("misaligned", addr)


def _aligned(b: RVBuilder, addr: Val, w: int) -> None:
    b.call("rv.misaligned_check", addr, b.c64(w // 8))


PATTERNS = r"""
lr.w       00010 . . 00000 ..... 010 ..... 0101111  @atom_ld
sc.w       00011 . . ..... ..... 010 ..... 0101111  @atom_st
amoswap.w  00001 . . ..... ..... 010 ..... 0101111  @atom_st
amoadd.w   00000 . . ..... ..... 010 ..... 0101111  @atom_st
amoxor.w   00100 . . ..... ..... 010 ..... 0101111  @atom_st
amoand.w   01100 . . ..... ..... 010 ..... 0101111  @atom_st
amoor.w    01000 . . ..... ..... 010 ..... 0101111  @atom_st
amomin.w   10000 . . ..... ..... 010 ..... 0101111  @atom_st
amomax.w   10100 . . ..... ..... 010 ..... 0101111  @atom_st
amominu.w  11000 . . ..... ..... 010 ..... 0101111  @atom_st
amomaxu.w  11100 . . ..... ..... 010 ..... 0101111  @atom_st

lr.d       00010 . . 00000 ..... 011 ..... 0101111  @atom_ld
sc.d       00011 . . ..... ..... 011 ..... 0101111  @atom_st
amoswap.d  00001 . . ..... ..... 011 ..... 0101111  @atom_st
amoadd.d   00000 . . ..... ..... 011 ..... 0101111  @atom_st
amoxor.d   00100 . . ..... ..... 011 ..... 0101111  @atom_st
amoand.d   01100 . . ..... ..... 011 ..... 0101111  @atom_st
amoor.d    01000 . . ..... ..... 011 ..... 0101111  @atom_st
amomin.d   10000 . . ..... ..... 011 ..... 0101111  @atom_st
amomax.d   10100 . . ..... ..... 011 ..... 0101111  @atom_st
amominu.d  11000 . . ..... ..... 011 ..... 0101111  @atom_st
amomaxu.d  11100 . . ..... ..... 011 ..... 0101111  @atom_st
"""


def _lr(b: RVBuilder, f: Args, w: int) -> None:
    addr = b.x(f.rs1)
    _aligned(b, addr, w)
    v = b.load(addr, w)
    b.set_x_sext(f.rd, v)
    b.put(RES_ADDR_SLOT, addr)
    b.put(RES_VALID_SLOT, b.c64(1))


def _sc(b: RVBuilder, f: Args, w: int) -> None:
    addr = b.x(f.rs1)
    _aligned(b, addr, w)
    ok = b.and_(b.ne(b.get(RES_VALID_SLOT), b.c64(0)), b.eq(b.get(RES_ADDR_SLOT), addr))
    b.cstore(ok, addr, b.trunc(b.x(f.rs2), w))
    b.set_x_bool(f.rd, b.xor(ok, b.const(1, 1)))  # 0 on success, 1 on failure
    b.put(RES_VALID_SLOT, b.c64(0))


def _amo(b: RVBuilder, f: Args, w: int, op: Callable[[RVBuilder, Val, Val], Val]) -> None:
    addr = b.x(f.rs1)
    _aligned(b, addr, w)
    src = b.trunc(b.x(f.rs2), w)
    old = b.load(addr, w)
    b.store(addr, op(b, old, src))
    b.set_x_sext(f.rd, old)


def _swap(b: RVBuilder, old: Val, src: Val) -> Val:
    return src


def _min(b: RVBuilder, old: Val, src: Val) -> Val:
    return b.select(b.slt(old, src), old, src)


def _max(b: RVBuilder, old: Val, src: Val) -> Val:
    return b.select(b.slt(old, src), src, old)


def _minu(b: RVBuilder, old: Val, src: Val) -> Val:
    return b.select(b.ult(old, src), old, src)


def _maxu(b: RVBuilder, old: Val, src: Val) -> Val:
    return b.select(b.ult(old, src), src, old)


def trans_lr_w(b: RVBuilder, f: Args, insn: int) -> None:
    _lr(b, f, 32)


def trans_lr_d(b: RVBuilder, f: Args, insn: int) -> None:
    _lr(b, f, 64)


def trans_sc_w(b: RVBuilder, f: Args, insn: int) -> None:
    _sc(b, f, 32)


def trans_sc_d(b: RVBuilder, f: Args, insn: int) -> None:
    _sc(b, f, 64)


def trans_amoswap_w(b: RVBuilder, f: Args, insn: int) -> None:
    _amo(b, f, 32, _swap)


def trans_amoadd_w(b: RVBuilder, f: Args, insn: int) -> None:
    _amo(b, f, 32, RVBuilder.add)


def trans_amoxor_w(b: RVBuilder, f: Args, insn: int) -> None:
    _amo(b, f, 32, RVBuilder.xor)


def trans_amoand_w(b: RVBuilder, f: Args, insn: int) -> None:
    _amo(b, f, 32, RVBuilder.and_)


def trans_amoor_w(b: RVBuilder, f: Args, insn: int) -> None:
    _amo(b, f, 32, RVBuilder.or_)


def trans_amomin_w(b: RVBuilder, f: Args, insn: int) -> None:
    _amo(b, f, 32, _min)


def trans_amomax_w(b: RVBuilder, f: Args, insn: int) -> None:
    _amo(b, f, 32, _max)


def trans_amominu_w(b: RVBuilder, f: Args, insn: int) -> None:
    _amo(b, f, 32, _minu)


def trans_amomaxu_w(b: RVBuilder, f: Args, insn: int) -> None:
    _amo(b, f, 32, _maxu)


def trans_amoswap_d(b: RVBuilder, f: Args, insn: int) -> None:
    _amo(b, f, 64, _swap)


def trans_amoadd_d(b: RVBuilder, f: Args, insn: int) -> None:
    _amo(b, f, 64, RVBuilder.add)


def trans_amoxor_d(b: RVBuilder, f: Args, insn: int) -> None:
    _amo(b, f, 64, RVBuilder.xor)


def trans_amoand_d(b: RVBuilder, f: Args, insn: int) -> None:
    _amo(b, f, 64, RVBuilder.and_)


def trans_amoor_d(b: RVBuilder, f: Args, insn: int) -> None:
    _amo(b, f, 64, RVBuilder.or_)


def trans_amomin_d(b: RVBuilder, f: Args, insn: int) -> None:
    _amo(b, f, 64, _min)


def trans_amomax_d(b: RVBuilder, f: Args, insn: int) -> None:
    _amo(b, f, 64, _max)


def trans_amominu_d(b: RVBuilder, f: Args, insn: int) -> None:
    _amo(b, f, 64, _minu)


def trans_amomaxu_d(b: RVBuilder, f: Args, insn: int) -> None:
    _amo(b, f, 64, _maxu)
