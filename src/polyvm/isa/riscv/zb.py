"""Zba, Zbb and Zbs: address generation, basic bit manipulation, single-bit instructions."""

from __future__ import annotations

from polyvm.ir import Val
from polyvm.isa.decodetree import Args
from polyvm.isa.riscv.common import RVBuilder

PATTERNS = r"""
# ---- Zba ----
sh1add     0010000 ..... ..... 010 ..... 0110011  @r
sh2add     0010000 ..... ..... 100 ..... 0110011  @r
sh3add     0010000 ..... ..... 110 ..... 0110011  @r
add.uw     0000100 ..... ..... 000 ..... 0111011  @r
sh1add.uw  0010000 ..... ..... 010 ..... 0111011  @r
sh2add.uw  0010000 ..... ..... 100 ..... 0111011  @r
sh3add.uw  0010000 ..... ..... 110 ..... 0111011  @r
slli.uw    000010 ...... ..... 001 ..... 0011011  @sh6

# ---- Zbb ----
andn       0100000 ..... ..... 111 ..... 0110011  @r
orn        0100000 ..... ..... 110 ..... 0110011  @r
xnor       0100000 ..... ..... 100 ..... 0110011  @r
clz        0110000 00000 ..... 001 ..... 0010011  @r2
ctz        0110000 00001 ..... 001 ..... 0010011  @r2
cpop       0110000 00010 ..... 001 ..... 0010011  @r2
sext.b     0110000 00100 ..... 001 ..... 0010011  @r2
sext.h     0110000 00101 ..... 001 ..... 0010011  @r2
clzw       0110000 00000 ..... 001 ..... 0011011  @r2
ctzw       0110000 00001 ..... 001 ..... 0011011  @r2
cpopw      0110000 00010 ..... 001 ..... 0011011  @r2
max        0000101 ..... ..... 110 ..... 0110011  @r
maxu       0000101 ..... ..... 111 ..... 0110011  @r
min        0000101 ..... ..... 100 ..... 0110011  @r
minu       0000101 ..... ..... 101 ..... 0110011  @r
orc.b      0010100 00111 ..... 101 ..... 0010011  @r2
rev8       0110101 11000 ..... 101 ..... 0010011  @r2
zext.h     0000100 00000 ..... 100 ..... 0111011  @r2
rol        0110000 ..... ..... 001 ..... 0110011  @r
ror        0110000 ..... ..... 101 ..... 0110011  @r
rori       011000 ...... ..... 101 ..... 0010011  @sh6
rolw       0110000 ..... ..... 001 ..... 0111011  @r
rorw       0110000 ..... ..... 101 ..... 0111011  @r
roriw      0110000 ..... ..... 101 ..... 0011011  @sh5

# ---- Zbs ----
bclr       0100100 ..... ..... 001 ..... 0110011  @r
bext       0100100 ..... ..... 101 ..... 0110011  @r
binv       0110100 ..... ..... 001 ..... 0110011  @r
bset       0010100 ..... ..... 001 ..... 0110011  @r
bclri      010010 ...... ..... 001 ..... 0010011  @sh6
bexti      010010 ...... ..... 101 ..... 0010011  @sh6
binvi      011010 ...... ..... 001 ..... 0010011  @sh6
bseti      001010 ...... ..... 001 ..... 0010011  @sh6
"""


# ---- Zba --------------------------------------------------------------------------------------------
def _uw(b: RVBuilder, n: int) -> Val:
    """ZEXT.W(x[n]): the low word, zero-extended."""
    return b.zext(b.x32(n), 64)


def _shadd(b: RVBuilder, f: Args, base: Val, k: int) -> None:
    b.set_x(f.rd, b.add(b.x(f.rs2), b.shl(base, b.c64(k))))


def trans_sh1add(b: RVBuilder, f: Args, insn: int) -> None:
    _shadd(b, f, b.x(f.rs1), 1)


def trans_sh2add(b: RVBuilder, f: Args, insn: int) -> None:
    _shadd(b, f, b.x(f.rs1), 2)


def trans_sh3add(b: RVBuilder, f: Args, insn: int) -> None:
    _shadd(b, f, b.x(f.rs1), 3)


def trans_add_uw(b: RVBuilder, f: Args, insn: int) -> None:
    _shadd(b, f, _uw(b, f.rs1), 0)


def trans_sh1add_uw(b: RVBuilder, f: Args, insn: int) -> None:
    _shadd(b, f, _uw(b, f.rs1), 1)


def trans_sh2add_uw(b: RVBuilder, f: Args, insn: int) -> None:
    _shadd(b, f, _uw(b, f.rs1), 2)


def trans_sh3add_uw(b: RVBuilder, f: Args, insn: int) -> None:
    _shadd(b, f, _uw(b, f.rs1), 3)


def trans_slli_uw(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.shl(_uw(b, f.rs1), b.c64(f.shamt)))


# ---- Zbb: logic with negate ------------------------------------------------------------------------
def trans_andn(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.and_(b.x(f.rs1), b.not_(b.x(f.rs2))))


def trans_orn(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.or_(b.x(f.rs1), b.not_(b.x(f.rs2))))


def trans_xnor(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.not_(b.xor(b.x(f.rs1), b.x(f.rs2))))


# ---- Zbb: counting ------------------------------------------------------------------------------
def trans_clz(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.clz(b.x(f.rs1)))


def trans_ctz(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.ctz(b.x(f.rs1)))


def trans_cpop(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.popcnt(b.x(f.rs1)))


def trans_clzw(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x_zext(f.rd, b.clz(b.x32(f.rs1)))


def trans_ctzw(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x_zext(f.rd, b.ctz(b.x32(f.rs1)))


def trans_cpopw(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x_zext(f.rd, b.popcnt(b.x32(f.rs1)))


# ---- Zbb: min/max, extension -----------------------------------------------------------------------
def trans_max(b: RVBuilder, f: Args, insn: int) -> None:
    x, y = b.x(f.rs1), b.x(f.rs2)
    b.set_x(f.rd, b.select(b.slt(x, y), y, x))


def trans_maxu(b: RVBuilder, f: Args, insn: int) -> None:
    x, y = b.x(f.rs1), b.x(f.rs2)
    b.set_x(f.rd, b.select(b.ult(x, y), y, x))


def trans_min(b: RVBuilder, f: Args, insn: int) -> None:
    x, y = b.x(f.rs1), b.x(f.rs2)
    b.set_x(f.rd, b.select(b.slt(x, y), x, y))


def trans_minu(b: RVBuilder, f: Args, insn: int) -> None:
    x, y = b.x(f.rs1), b.x(f.rs2)
    b.set_x(f.rd, b.select(b.ult(x, y), x, y))


def trans_sext_b(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x_sext(f.rd, b.trunc(b.x(f.rs1), 8))


def trans_sext_h(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x_sext(f.rd, b.trunc(b.x(f.rs1), 16))


def trans_zext_h(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x_zext(f.rd, b.trunc(b.x(f.rs1), 16))


# ---- Zbb: bytes ---------------------------------------------------------------------------------
def trans_orc_b(b: RVBuilder, f: Args, insn: int) -> None:
    # Bit 7 of each byte of t is set iff the byte of x is non-zero (the low 7 bits can carry
    # into bit 7 but never beyond it); then spread each such bit over its byte.
    x = b.x(f.rs1)
    low7 = b.c64(0x7F7F_7F7F_7F7F_7F7F)
    t = b.or_(b.add(b.and_(x, low7), low7), x)
    ones = b.lshr(b.and_(t, b.c64(0x8080_8080_8080_8080)), b.c64(7))
    b.set_x(f.rd, b.mul(ones, b.c64(0xFF)))


def trans_rev8(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.bswap(b.x(f.rs1)))


# ---- Zbb: rotations ---------------------------------------------------------------------------
def trans_rol(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.rotl(b.x(f.rs1), b.and_(b.x(f.rs2), b.c64(63))))


def trans_ror(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.rotr(b.x(f.rs1), b.and_(b.x(f.rs2), b.c64(63))))


def trans_rori(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.rotr(b.x(f.rs1), b.c64(f.shamt)))


def trans_rolw(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x_sext(f.rd, b.rotl(b.x32(f.rs1), b.and_(b.x32(f.rs2), b.c32(31))))


def trans_rorw(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x_sext(f.rd, b.rotr(b.x32(f.rs1), b.and_(b.x32(f.rs2), b.c32(31))))


def trans_roriw(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x_sext(f.rd, b.rotr(b.x32(f.rs1), b.c32(f.shamt)))


# ---- Zbs ---------------------------------------------------------------------------------------
def _bit(b: RVBuilder, index: Val) -> Val:
    return b.shl(b.c64(1), b.and_(index, b.c64(63)))


def trans_bclr(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.and_(b.x(f.rs1), b.not_(_bit(b, b.x(f.rs2)))))


def trans_bext(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.and_(b.lshr(b.x(f.rs1), b.and_(b.x(f.rs2), b.c64(63))), b.c64(1)))


def trans_binv(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.xor(b.x(f.rs1), _bit(b, b.x(f.rs2))))


def trans_bset(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.or_(b.x(f.rs1), _bit(b, b.x(f.rs2))))


def trans_bclri(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.and_(b.x(f.rs1), b.c64(~(1 << f.shamt))))


def trans_bexti(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.and_(b.lshr(b.x(f.rs1), b.c64(f.shamt)), b.c64(1)))


def trans_binvi(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.xor(b.x(f.rs1), b.c64(1 << f.shamt)))


def trans_bseti(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.or_(b.x(f.rs1), b.c64(1 << f.shamt)))
