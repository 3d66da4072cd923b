"""RV64M: integer multiplication and division.

Division by zero and signed overflow need no special cases: the IR's udiv/sdiv/urem/srem
define exactly the results RISC-V requires (all ones / the dividend; -2**63 / -1 = -2**63, rem 0).
"""

from __future__ import annotations

from polyvm.isa.decodetree import Args
from polyvm.isa.riscv.common import RVBuilder

PATTERNS = r"""
mul      0000001 ..... ..... 000 ..... 0110011  @r
mulh     0000001 ..... ..... 001 ..... 0110011  @r
mulhsu   0000001 ..... ..... 010 ..... 0110011  @r
mulhu    0000001 ..... ..... 011 ..... 0110011  @r
div      0000001 ..... ..... 100 ..... 0110011  @r
divu     0000001 ..... ..... 101 ..... 0110011  @r
rem      0000001 ..... ..... 110 ..... 0110011  @r
remu     0000001 ..... ..... 111 ..... 0110011  @r
mulw     0000001 ..... ..... 000 ..... 0111011  @r
divw     0000001 ..... ..... 100 ..... 0111011  @r
divuw    0000001 ..... ..... 101 ..... 0111011  @r
remw     0000001 ..... ..... 110 ..... 0111011  @r
remuw    0000001 ..... ..... 111 ..... 0111011  @r
"""


def trans_mul(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.mul(b.x(f.rs1), b.x(f.rs2)))


def _mul_high(b: RVBuilder, f: Args, signed1: bool, signed2: bool) -> None:
    a = b.sext(b.x(f.rs1), 128) if signed1 else b.zext(b.x(f.rs1), 128)
    c = b.sext(b.x(f.rs2), 128) if signed2 else b.zext(b.x(f.rs2), 128)
    b.set_x(f.rd, b.trunc(b.lshr(b.mul(a, c), b.const(64, 128)), 64))


def trans_mulh(b: RVBuilder, f: Args, insn: int) -> None:
    _mul_high(b, f, True, True)


def trans_mulhsu(b: RVBuilder, f: Args, insn: int) -> None:
    _mul_high(b, f, True, False)


def trans_mulhu(b: RVBuilder, f: Args, insn: int) -> None:
    _mul_high(b, f, False, False)


def trans_div(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.sdiv(b.x(f.rs1), b.x(f.rs2)))


def trans_divu(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.udiv(b.x(f.rs1), b.x(f.rs2)))


def trans_rem(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.srem(b.x(f.rs1), b.x(f.rs2)))


def trans_remu(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.urem(b.x(f.rs1), b.x(f.rs2)))


def trans_mulw(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x_sext(f.rd, b.mul(b.x32(f.rs1), b.x32(f.rs2)))


def trans_divw(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x_sext(f.rd, b.sdiv(b.x32(f.rs1), b.x32(f.rs2)))


def trans_divuw(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x_sext(f.rd, b.udiv(b.x32(f.rs1), b.x32(f.rs2)))


def trans_remw(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x_sext(f.rd, b.srem(b.x32(f.rs1), b.x32(f.rs2)))


def trans_remuw(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x_sext(f.rd, b.urem(b.x32(f.rs1), b.x32(f.rs2)))
