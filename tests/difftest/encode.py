"""RISC-V instruction encoders, one per format, written from the unprivileged spec's tables.

Every function returns the instruction word (int). Compressed encoders return a 16-bit word;
`size_of(word)` tells them apart. Immediates are given as the architectural value (byte
offsets, signed where the spec says so); the encoders scatter the bits and check ranges, so a
generator bug shows up as an AssertionError here rather than as a silently different program.
"""

from __future__ import annotations


def _bits(v: int, hi: int, lo: int) -> int:
    return (v >> lo) & ((1 << (hi - lo + 1)) - 1)


def _check_simm(v: int, nbits: int, align: int = 1) -> None:
    assert -(1 << (nbits - 1)) <= v < (1 << (nbits - 1)), f"imm {v} out of range for {nbits} bits"
    assert v % align == 0, f"imm {v} not a multiple of {align}"


def _check_uimm(v: int, nbits: int, align: int = 1) -> None:
    assert 0 <= v < (1 << nbits), f"uimm {v} out of range for {nbits} bits"
    assert v % align == 0, f"uimm {v} not a multiple of {align}"


def _reg(r: int) -> int:
    assert 0 <= r < 32, r
    return r


# ---- 32-bit formats ------------------------------------------------------------------------


def r_type(opcode: int, rd: int, funct3: int, rs1: int, rs2: int, funct7: int) -> int:
    return (funct7 << 25) | (_reg(rs2) << 20) | (_reg(rs1) << 15) | (funct3 << 12) | (_reg(rd) << 7) | opcode


def r4_type(opcode: int, rd: int, rm: int, rs1: int, rs2: int, fmt: int, rs3: int) -> int:
    return (
        (_reg(rs3) << 27)
        | (fmt << 25)
        | (_reg(rs2) << 20)
        | (_reg(rs1) << 15)
        | (rm << 12)
        | (_reg(rd) << 7)
        | opcode
    )


def i_type(opcode: int, rd: int, funct3: int, rs1: int, imm: int) -> int:
    _check_simm(imm, 12)
    return ((imm & 0xFFF) << 20) | (_reg(rs1) << 15) | (funct3 << 12) | (_reg(rd) << 7) | opcode


def shift_imm(opcode: int, rd: int, funct3: int, rs1: int, shamt: int, funct6: int, width: int) -> int:
    """slli/srli/srai (6-bit shamt, funct6) and their W forms (5-bit shamt, funct7 = funct6 << 1)."""
    assert 0 <= shamt < width
    return (funct6 << 26) | (shamt << 20) | (_reg(rs1) << 15) | (funct3 << 12) | (_reg(rd) << 7) | opcode


def s_type(opcode: int, funct3: int, rs1: int, rs2: int, imm: int) -> int:
    _check_simm(imm, 12)
    imm &= 0xFFF
    return (
        (_bits(imm, 11, 5) << 25)
        | (_reg(rs2) << 20)
        | (_reg(rs1) << 15)
        | (funct3 << 12)
        | (_bits(imm, 4, 0) << 7)
        | opcode
    )


def b_type(opcode: int, funct3: int, rs1: int, rs2: int, imm: int) -> int:
    _check_simm(imm, 13, 2)
    imm &= 0x1FFF
    return (
        (_bits(imm, 12, 12) << 31)
        | (_bits(imm, 10, 5) << 25)
        | (_reg(rs2) << 20)
        | (_reg(rs1) << 15)
        | (funct3 << 12)
        | (_bits(imm, 4, 1) << 8)
        | (_bits(imm, 11, 11) << 7)
        | opcode
    )


def u_type(opcode: int, rd: int, imm20: int) -> int:
    """`imm20` is the 20-bit field (the value placed in bits 31:12)."""
    _check_uimm(imm20, 20)
    return (imm20 << 12) | (_reg(rd) << 7) | opcode


def j_type(opcode: int, rd: int, imm: int) -> int:
    _check_simm(imm, 21, 2)
    imm &= 0x1FFFFF
    return (
        (_bits(imm, 20, 20) << 31)
        | (_bits(imm, 10, 1) << 21)
        | (_bits(imm, 11, 11) << 20)
        | (_bits(imm, 19, 12) << 12)
        | (_reg(rd) << 7)
        | opcode
    )


def amo(funct5: int, width3: int, rd: int, rs1: int, rs2: int, aq: int = 0, rl: int = 0) -> int:
    return r_type(0x2F, rd, width3, rs1, rs2, (funct5 << 2) | (aq << 1) | rl)


def csr(funct3: int, rd: int, csr_no: int, rs1_or_uimm: int) -> int:
    _check_uimm(csr_no, 12)
    return (csr_no << 20) | (_reg(rs1_or_uimm) << 15) | (funct3 << 12) | (_reg(rd) << 7) | 0x73


# ---- compressed (RVC) ------------------------------------------------------------------------


def _creg(r: int) -> int:
    assert 8 <= r <= 15, f"x{r} is not a compressed register"
    return r - 8


def c_addi4spn(rd: int, nzuimm: int) -> int:
    _check_uimm(nzuimm, 10, 4)
    assert nzuimm
    f = (_bits(nzuimm, 5, 4) << 11) | (_bits(nzuimm, 9, 6) << 7) | (_bits(nzuimm, 2, 2) << 6)
    return (0b000 << 13) | f | (_bits(nzuimm, 3, 3) << 5) | (_creg(rd) << 2) | 0b00


def _cl_d(funct3: int, op: int, r_a: int, rs1: int, uimm: int) -> int:
    """CL/CS with 8-byte scaled offsets (c.ld, c.sd, c.fld, c.fsd)."""
    _check_uimm(uimm, 8, 8)
    return (
        (funct3 << 13)
        | (_bits(uimm, 5, 3) << 10)
        | (_creg(rs1) << 7)
        | (_bits(uimm, 7, 6) << 5)
        | (_creg(r_a) << 2)
        | op
    )


def _cl_w(funct3: int, op: int, r_a: int, rs1: int, uimm: int) -> int:
    """CL/CS with 4-byte scaled offsets (c.lw, c.sw)."""
    _check_uimm(uimm, 7, 4)
    return (
        (funct3 << 13)
        | (_bits(uimm, 5, 3) << 10)
        | (_creg(rs1) << 7)
        | (_bits(uimm, 2, 2) << 6)
        | (_bits(uimm, 6, 6) << 5)
        | (_creg(r_a) << 2)
        | op
    )


def c_fld(rd: int, rs1: int, uimm: int) -> int:
    return _cl_d(0b001, 0b00, rd, rs1, uimm)


def c_lw(rd: int, rs1: int, uimm: int) -> int:
    return _cl_w(0b010, 0b00, rd, rs1, uimm)


def c_ld(rd: int, rs1: int, uimm: int) -> int:
    return _cl_d(0b011, 0b00, rd, rs1, uimm)


def c_fsd(rs2: int, rs1: int, uimm: int) -> int:
    return _cl_d(0b101, 0b00, rs2, rs1, uimm)


def c_sw(rs2: int, rs1: int, uimm: int) -> int:
    return _cl_w(0b110, 0b00, rs2, rs1, uimm)


def c_sd(rs2: int, rs1: int, uimm: int) -> int:
    return _cl_d(0b111, 0b00, rs2, rs1, uimm)


def _ci(funct3: int, op: int, rd: int, imm6: int) -> int:
    return (funct3 << 13) | (_bits(imm6, 5, 5) << 12) | (_reg(rd) << 7) | (_bits(imm6, 4, 0) << 2) | op


def c_nop() -> int:
    return 0x0001


def c_addi(rd: int, imm: int) -> int:
    _check_simm(imm, 6)
    assert rd != 0 and imm != 0
    return _ci(0b000, 0b01, rd, imm & 0x3F)


def c_addiw(rd: int, imm: int) -> int:
    _check_simm(imm, 6)
    assert rd != 0
    return _ci(0b001, 0b01, rd, imm & 0x3F)


def c_li(rd: int, imm: int) -> int:
    _check_simm(imm, 6)
    assert rd != 0
    return _ci(0b010, 0b01, rd, imm & 0x3F)


def c_addi16sp(nzimm: int) -> int:
    _check_simm(nzimm, 10, 16)
    assert nzimm
    v = nzimm & 0x3FF
    return (
        (0b011 << 13)
        | (_bits(v, 9, 9) << 12)
        | (2 << 7)
        | (_bits(v, 4, 4) << 6)
        | (_bits(v, 6, 6) << 5)
        | (_bits(v, 8, 7) << 3)
        | (_bits(v, 5, 5) << 2)
        | 0b01
    )


def c_lui(rd: int, nzimm6: int) -> int:
    """`nzimm6` is imm[17:12] as a signed 6-bit value (the register gets sext(nzimm6 << 12))."""
    _check_simm(nzimm6, 6)
    assert rd not in (0, 2) and nzimm6 != 0
    return _ci(0b011, 0b01, rd, nzimm6 & 0x3F)


def _cb_alu(funct2: int, rd: int, imm6: int) -> int:
    return (
        (0b100 << 13)
        | (_bits(imm6, 5, 5) << 12)
        | (funct2 << 10)
        | (_creg(rd) << 7)
        | (_bits(imm6, 4, 0) << 2)
        | 0b01
    )


def c_srli(rd: int, shamt: int) -> int:
    assert 0 < shamt < 64
    return _cb_alu(0b00, rd, shamt)


def c_srai(rd: int, shamt: int) -> int:
    assert 0 < shamt < 64
    return _cb_alu(0b01, rd, shamt)


def c_andi(rd: int, imm: int) -> int:
    _check_simm(imm, 6)
    return _cb_alu(0b10, rd, imm & 0x3F)


_CA = {"sub": (0, 0), "xor": (0, 1), "or": (0, 2), "and": (0, 3), "subw": (1, 0), "addw": (1, 1)}


def c_arith(name: str, rd: int, rs2: int) -> int:
    hi, f2 = _CA[name]
    return (0b100 << 13) | (hi << 12) | (0b11 << 10) | (_creg(rd) << 7) | (f2 << 5) | (_creg(rs2) << 2) | 0b01


def c_j(imm: int) -> int:
    _check_simm(imm, 12, 2)
    v = imm & 0xFFF
    f = (
        (_bits(v, 11, 11) << 12)
        | (_bits(v, 4, 4) << 11)
        | (_bits(v, 9, 8) << 9)
        | (_bits(v, 10, 10) << 8)
        | (_bits(v, 6, 6) << 7)
        | (_bits(v, 7, 7) << 6)
        | (_bits(v, 3, 1) << 3)
        | (_bits(v, 5, 5) << 2)
    )
    return (0b101 << 13) | f | 0b01


def c_bz(ne: bool, rs1: int, imm: int) -> int:
    _check_simm(imm, 9, 2)
    v = imm & 0x1FF
    f = (
        (_bits(v, 8, 8) << 12)
        | (_bits(v, 4, 3) << 10)
        | (_creg(rs1) << 7)
        | (_bits(v, 7, 6) << 5)
        | (_bits(v, 2, 1) << 3)
        | (_bits(v, 5, 5) << 2)
    )
    return ((0b111 if ne else 0b110) << 13) | f | 0b01


def c_slli(rd: int, shamt: int) -> int:
    assert rd != 0 and 0 < shamt < 64
    return _ci(0b000, 0b10, rd, shamt)


def _c_lsp_d(funct3: int, rd: int, uimm: int) -> int:
    _check_uimm(uimm, 9, 8)
    return (
        (funct3 << 13)
        | (_bits(uimm, 5, 5) << 12)
        | (_reg(rd) << 7)
        | (_bits(uimm, 4, 3) << 5)
        | (_bits(uimm, 8, 6) << 2)
        | 0b10
    )


def c_fldsp(rd: int, uimm: int) -> int:
    return _c_lsp_d(0b001, rd, uimm)


def c_lwsp(rd: int, uimm: int) -> int:
    _check_uimm(uimm, 8, 4)
    assert rd != 0
    return (
        (0b010 << 13)
        | (_bits(uimm, 5, 5) << 12)
        | (_reg(rd) << 7)
        | (_bits(uimm, 4, 2) << 4)
        | (_bits(uimm, 7, 6) << 2)
        | 0b10
    )


def c_ldsp(rd: int, uimm: int) -> int:
    assert rd != 0
    return _c_lsp_d(0b011, rd, uimm)


def c_jr(rs1: int) -> int:
    assert rs1 != 0
    return (0b1000 << 12) | (_reg(rs1) << 7) | 0b10


def c_mv(rd: int, rs2: int) -> int:
    assert rd != 0 and rs2 != 0
    return (0b1000 << 12) | (_reg(rd) << 7) | (_reg(rs2) << 2) | 0b10


def c_jalr(rs1: int) -> int:
    assert rs1 != 0
    return (0b1001 << 12) | (_reg(rs1) << 7) | 0b10


def c_add(rd: int, rs2: int) -> int:
    assert rd != 0 and rs2 != 0
    return (0b1001 << 12) | (_reg(rd) << 7) | (_reg(rs2) << 2) | 0b10


def _c_ssp_d(funct3: int, rs2: int, uimm: int) -> int:
    _check_uimm(uimm, 9, 8)
    return (funct3 << 13) | (_bits(uimm, 5, 3) << 10) | (_bits(uimm, 8, 6) << 7) | (_reg(rs2) << 2) | 0b10


def c_fsdsp(rs2: int, uimm: int) -> int:
    return _c_ssp_d(0b101, rs2, uimm)


def c_swsp(rs2: int, uimm: int) -> int:
    _check_uimm(uimm, 8, 4)
    return (0b110 << 13) | (_bits(uimm, 5, 2) << 9) | (_bits(uimm, 7, 6) << 7) | (_reg(rs2) << 2) | 0b10


def c_sdsp(rs2: int, uimm: int) -> int:
    return _c_ssp_d(0b111, rs2, uimm)


def size_of(word: int) -> int:
    return 2 if word & 3 != 3 else 4


def to_bytes(word: int) -> bytes:
    return word.to_bytes(size_of(word), "little")


EBREAK = 0x00100073
NOP = 0x00000013
C_NOP = 0x0001
