"""RV64I base integer instructions (and Zifencei's fence.i)."""

from __future__ import annotations

from polyvm.ir import Val
from polyvm.isa.decodetree import Args
from polyvm.isa.riscv.common import RVBuilder

PATTERNS = r"""
lui      .................... ..... 0110111  @u
auipc    .................... ..... 0010111  @u
jal      .................... ..... 1101111  @j
jalr     ............ ..... 000 ..... 1100111  @i

beq      ....... ..... ..... 000 ..... 1100011  @b
bne      ....... ..... ..... 001 ..... 1100011  @b
blt      ....... ..... ..... 100 ..... 1100011  @b
bge      ....... ..... ..... 101 ..... 1100011  @b
bltu     ....... ..... ..... 110 ..... 1100011  @b
bgeu     ....... ..... ..... 111 ..... 1100011  @b

lb       ............ ..... 000 ..... 0000011  @i
lh       ............ ..... 001 ..... 0000011  @i
lw       ............ ..... 010 ..... 0000011  @i
ld       ............ ..... 011 ..... 0000011  @i
lbu      ............ ..... 100 ..... 0000011  @i
lhu      ............ ..... 101 ..... 0000011  @i
lwu      ............ ..... 110 ..... 0000011  @i
sb       ....... ..... ..... 000 ..... 0100011  @s
sh       ....... ..... ..... 001 ..... 0100011  @s
sw       ....... ..... ..... 010 ..... 0100011  @s
sd       ....... ..... ..... 011 ..... 0100011  @s

addi     ............ ..... 000 ..... 0010011  @i
slti     ............ ..... 010 ..... 0010011  @i
sltiu    ............ ..... 011 ..... 0010011  @i
xori     ............ ..... 100 ..... 0010011  @i
ori      ............ ..... 110 ..... 0010011  @i
andi     ............ ..... 111 ..... 0010011  @i
slli     000000 ...... ..... 001 ..... 0010011  @sh6
srli     000000 ...... ..... 101 ..... 0010011  @sh6
srai     010000 ...... ..... 101 ..... 0010011  @sh6

add      0000000 ..... ..... 000 ..... 0110011  @r
sub      0100000 ..... ..... 000 ..... 0110011  @r
sll      0000000 ..... ..... 001 ..... 0110011  @r
slt      0000000 ..... ..... 010 ..... 0110011  @r
sltu     0000000 ..... ..... 011 ..... 0110011  @r
xor      0000000 ..... ..... 100 ..... 0110011  @r
srl      0000000 ..... ..... 101 ..... 0110011  @r
sra      0100000 ..... ..... 101 ..... 0110011  @r
or       0000000 ..... ..... 110 ..... 0110011  @r
and      0000000 ..... ..... 111 ..... 0110011  @r

addiw    ............ ..... 000 ..... 0011011  @i
slliw    0000000 ..... ..... 001 ..... 0011011  @sh5
srliw    0000000 ..... ..... 101 ..... 0011011  @sh5
sraiw    0100000 ..... ..... 101 ..... 0011011  @sh5
addw     0000000 ..... ..... 000 ..... 0111011  @r
subw     0100000 ..... ..... 000 ..... 0111011  @r
sllw     0000000 ..... ..... 001 ..... 0111011  @r
srlw     0000000 ..... ..... 101 ..... 0111011  @r
sraw     0100000 ..... ..... 101 ..... 0111011  @r

# fm, pred, succ, rs1 and rd are ignored: every fence (fence.tso, pause) orders nothing here.
fence    ---- ---- ---- ----- 000 ----- 0001111
fence.i  ---- ---- ---- ----- 001 ----- 0001111
ecall    000000000000 00000 000 00000 1110011
ebreak   000000000001 00000 000 00000 1110011
"""


# ---- control transfer -------------------------------------------------------------------------
def trans_lui(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.c64(f.imm))


def trans_auipc(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.c64(b.ipc + f.imm))


def trans_jal(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.c64(b.next_pc))
    b.jump(b.c64(b.ipc + f.imm))


def trans_jalr(b: RVBuilder, f: Args, insn: int) -> None:
    target = b.and_(b.addr(f.rs1, f.imm), b.c64(~1))  # before rd is written: rd may be rs1
    b.set_x(f.rd, b.c64(b.next_pc))
    b.jump(target)


def _branch(b: RVBuilder, f: Args, cond: Val) -> None:
    b.branch(cond, (b.ipc + f.imm) & 0xFFFF_FFFF_FFFF_FFFF, b.next_pc)


def trans_beq(b: RVBuilder, f: Args, insn: int) -> None:
    _branch(b, f, b.eq(b.x(f.rs1), b.x(f.rs2)))


def trans_bne(b: RVBuilder, f: Args, insn: int) -> None:
    _branch(b, f, b.ne(b.x(f.rs1), b.x(f.rs2)))


def trans_blt(b: RVBuilder, f: Args, insn: int) -> None:
    _branch(b, f, b.slt(b.x(f.rs1), b.x(f.rs2)))


def trans_bge(b: RVBuilder, f: Args, insn: int) -> None:
    _branch(b, f, b.sle(b.x(f.rs2), b.x(f.rs1)))


def trans_bltu(b: RVBuilder, f: Args, insn: int) -> None:
    _branch(b, f, b.ult(b.x(f.rs1), b.x(f.rs2)))


def trans_bgeu(b: RVBuilder, f: Args, insn: int) -> None:
    _branch(b, f, b.ule(b.x(f.rs2), b.x(f.rs1)))


# ---- loads and stores ---------------------------------------------------------------------------
def _load(b: RVBuilder, f: Args, w: int, signed: bool) -> None:
    v = b.load(b.addr(f.rs1, f.imm), w)  # a load into x0 still faults
    if signed:
        b.set_x_sext(f.rd, v)
    else:
        b.set_x_zext(f.rd, v)


def trans_lb(b: RVBuilder, f: Args, insn: int) -> None:
    _load(b, f, 8, True)


def trans_lh(b: RVBuilder, f: Args, insn: int) -> None:
    _load(b, f, 16, True)


def trans_lw(b: RVBuilder, f: Args, insn: int) -> None:
    _load(b, f, 32, True)


def trans_ld(b: RVBuilder, f: Args, insn: int) -> None:
    _load(b, f, 64, True)


def trans_lbu(b: RVBuilder, f: Args, insn: int) -> None:
    _load(b, f, 8, False)


def trans_lhu(b: RVBuilder, f: Args, insn: int) -> None:
    _load(b, f, 16, False)


def trans_lwu(b: RVBuilder, f: Args, insn: int) -> None:
    _load(b, f, 32, False)


def _store(b: RVBuilder, f: Args, w: int) -> None:
    b.store(b.addr(f.rs1, f.imm), b.trunc(b.x(f.rs2), w))


def trans_sb(b: RVBuilder, f: Args, insn: int) -> None:
    _store(b, f, 8)


def trans_sh(b: RVBuilder, f: Args, insn: int) -> None:
    _store(b, f, 16)


def trans_sw(b: RVBuilder, f: Args, insn: int) -> None:
    _store(b, f, 32)


def trans_sd(b: RVBuilder, f: Args, insn: int) -> None:
    _store(b, f, 64)


# ---- integer computation --------------------------------------------------------------------------
def trans_addi(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.addr(f.rs1, f.imm))


def trans_slti(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x_bool(f.rd, b.slt(b.x(f.rs1), b.c64(f.imm)))


def trans_sltiu(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x_bool(f.rd, b.ult(b.x(f.rs1), b.c64(f.imm)))


def trans_xori(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.xor(b.x(f.rs1), b.c64(f.imm)))


def trans_ori(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.or_(b.x(f.rs1), b.c64(f.imm)))


def trans_andi(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.and_(b.x(f.rs1), b.c64(f.imm)))


def trans_slli(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.shl(b.x(f.rs1), b.c64(f.shamt)))


def trans_srli(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.lshr(b.x(f.rs1), b.c64(f.shamt)))


def trans_srai(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.ashr(b.x(f.rs1), b.c64(f.shamt)))


def trans_add(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.add(b.x(f.rs1), b.x(f.rs2)))


def trans_sub(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.sub(b.x(f.rs1), b.x(f.rs2)))


def _shamt64(b: RVBuilder, rs2: int):
    return b.and_(b.x(rs2), b.c64(63))


def trans_sll(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.shl(b.x(f.rs1), _shamt64(b, f.rs2)))


def trans_srl(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.lshr(b.x(f.rs1), _shamt64(b, f.rs2)))


def trans_sra(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.ashr(b.x(f.rs1), _shamt64(b, f.rs2)))


def trans_slt(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x_bool(f.rd, b.slt(b.x(f.rs1), b.x(f.rs2)))


def trans_sltu(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x_bool(f.rd, b.ult(b.x(f.rs1), b.x(f.rs2)))


def trans_xor(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.xor(b.x(f.rs1), b.x(f.rs2)))


def trans_or(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.or_(b.x(f.rs1), b.x(f.rs2)))


def trans_and(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.and_(b.x(f.rs1), b.x(f.rs2)))


# ---- the 32-bit (W) forms: compute on the low word, sign-extend the result --------------------------
def trans_addiw(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x_sext(f.rd, b.add(b.x32(f.rs1), b.c32(f.imm)))


def trans_slliw(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x_sext(f.rd, b.shl(b.x32(f.rs1), b.c32(f.shamt)))


def trans_srliw(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x_sext(f.rd, b.lshr(b.x32(f.rs1), b.c32(f.shamt)))


def trans_sraiw(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x_sext(f.rd, b.ashr(b.x32(f.rs1), b.c32(f.shamt)))


def trans_addw(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x_sext(f.rd, b.add(b.x32(f.rs1), b.x32(f.rs2)))


def trans_subw(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x_sext(f.rd, b.sub(b.x32(f.rs1), b.x32(f.rs2)))


def _shamt32(b: RVBuilder, rs2: int):
    return b.and_(b.x32(rs2), b.c32(31))


def trans_sllw(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x_sext(f.rd, b.shl(b.x32(f.rs1), _shamt32(b, f.rs2)))


def trans_srlw(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x_sext(f.rd, b.lshr(b.x32(f.rs1), _shamt32(b, f.rs2)))


def trans_sraw(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x_sext(f.rd, b.ashr(b.x32(f.rs1), _shamt32(b, f.rs2)))


# ---- system ---------------------------------------------------------------------------------------
def trans_fence(b: RVBuilder, f: Args, insn: int) -> None:
    """One hart, sequentially consistent memory: nothing to order."""


def trans_fence_i(b: RVBuilder, f: Args, insn: int) -> None:
    # Leave the block so that code written before the fence is fetched afresh.
    b.exit("sync_icache", b.ipc, b.next_pc)


def trans_ecall(b: RVBuilder, f: Args, insn: int) -> None:
    b.exit("syscall", b.ipc, b.next_pc)


def trans_ebreak(b: RVBuilder, f: Args, insn: int) -> None:
    b.exit("breakpoint", b.ipc, b.next_pc)
