"""A tiny RV64GC + Zba/Zbb/Zbs assembler for tests: one instruction per call, numeric offsets.

    asm("add a0, a1, a2")          -> 0x00c58533
    asm("ld a0, -8(sp)")           branch and jump offsets are relative numbers: "beq a0, a1, -8"
    asm("fadd.d fa0, fa1, fa2, rtz")   an optional rounding mode (default dyn)
    program(["li ...", ...])       -> bytes (little-endian); compressed: see `c_*` encoders

The encodings are written out from the specification's opcode tables, independently of the
decoder tables, so tests can check one against the other.
"""

from __future__ import annotations

import re

from polyvm.isa.riscv import ABI_NAMES, FP_ABI_NAMES

XREG = {f"x{i}": i for i in range(32)} | {n: i for i, n in enumerate(ABI_NAMES)} | {"fp": 8}
FREG = {f"f{i}": i for i in range(32)} | {n: i for i, n in enumerate(FP_ABI_NAMES)}
RM = {"rne": 0, "rtz": 1, "rdn": 2, "rup": 3, "rmm": 4, "dyn": 7}
CSRS = {"fflags": 1, "frm": 2, "fcsr": 3, "cycle": 0xC00, "time": 0xC01, "instret": 0xC02}

OP, OP_IMM, OP_32, OP_IMM_32 = 0x33, 0x13, 0x3B, 0x1B
LOAD, STORE, BRANCH, LOAD_FP, STORE_FP, AMO, OP_FP, SYSTEM = 0x03, 0x23, 0x63, 0x07, 0x27, 0x2F, 0x53, 0x73

# name: (opcode, funct3, funct7) for rd, rs1, rs2 instructions
R_TYPE = {
    "add": (OP, 0, 0x00), "sub": (OP, 0, 0x20), "sll": (OP, 1, 0), "slt": (OP, 2, 0), "sltu": (OP, 3, 0),
    "xor": (OP, 4, 0), "srl": (OP, 5, 0), "sra": (OP, 5, 0x20), "or": (OP, 6, 0), "and": (OP, 7, 0),
    "addw": (OP_32, 0, 0), "subw": (OP_32, 0, 0x20), "sllw": (OP_32, 1, 0), "srlw": (OP_32, 5, 0),
    "sraw": (OP_32, 5, 0x20),
    "mul": (OP, 0, 1), "mulh": (OP, 1, 1), "mulhsu": (OP, 2, 1), "mulhu": (OP, 3, 1), "div": (OP, 4, 1),
    "divu": (OP, 5, 1), "rem": (OP, 6, 1), "remu": (OP, 7, 1), "mulw": (OP_32, 0, 1), "divw": (OP_32, 4, 1),
    "divuw": (OP_32, 5, 1), "remw": (OP_32, 6, 1), "remuw": (OP_32, 7, 1),
    "sh1add": (OP, 2, 0x10), "sh2add": (OP, 4, 0x10), "sh3add": (OP, 6, 0x10), "add.uw": (OP_32, 0, 0x04),
    "sh1add.uw": (OP_32, 2, 0x10), "sh2add.uw": (OP_32, 4, 0x10), "sh3add.uw": (OP_32, 6, 0x10),
    "andn": (OP, 7, 0x20), "orn": (OP, 6, 0x20), "xnor": (OP, 4, 0x20), "max": (OP, 6, 0x05),
    "maxu": (OP, 7, 0x05), "min": (OP, 4, 0x05), "minu": (OP, 5, 0x05), "rol": (OP, 1, 0x30),
    "ror": (OP, 5, 0x30), "rolw": (OP_32, 1, 0x30), "rorw": (OP_32, 5, 0x30),
    "bclr": (OP, 1, 0x24), "bext": (OP, 5, 0x24), "binv": (OP, 1, 0x34), "bset": (OP, 1, 0x14),
}  # fmt: skip
# name: (opcode, funct3, top bits of the immediate field) for rd, rs1 instructions with rs2 fixed
UNARY = {
    "clz": (OP_IMM, 1, 0x600), "ctz": (OP_IMM, 1, 0x601), "cpop": (OP_IMM, 1, 0x602),
    "sext.b": (OP_IMM, 1, 0x604), "sext.h": (OP_IMM, 1, 0x605), "clzw": (OP_IMM_32, 1, 0x600),
    "ctzw": (OP_IMM_32, 1, 0x601), "cpopw": (OP_IMM_32, 1, 0x602), "orc.b": (OP_IMM, 5, 0x287),
    "rev8": (OP_IMM, 5, 0x6B8), "zext.h": (OP_32, 4, 0x080),
}  # fmt: skip
I_TYPE = {
    "addi": (OP_IMM, 0), "slti": (OP_IMM, 2), "sltiu": (OP_IMM, 3), "xori": (OP_IMM, 4), "ori": (OP_IMM, 6),
    "andi": (OP_IMM, 7), "addiw": (OP_IMM_32, 0), "jalr": (0x67, 0),
}  # fmt: skip
# name: (opcode, funct3, funct6/7 placed at bit 26 or 25, shamt bits)
SHIFT = {
    "slli": (OP_IMM, 1, 0x00, 6), "srli": (OP_IMM, 5, 0x00, 6), "srai": (OP_IMM, 5, 0x10, 6),
    "slliw": (OP_IMM_32, 1, 0, 5), "srliw": (OP_IMM_32, 5, 0, 5), "sraiw": (OP_IMM_32, 5, 0x20, 5),
    "slli.uw": (OP_IMM_32, 1, 0x02, 6), "rori": (OP_IMM, 5, 0x18, 6), "roriw": (OP_IMM_32, 5, 0x30, 5),
    "bclri": (OP_IMM, 1, 0x12, 6), "bexti": (OP_IMM, 5, 0x12, 6), "binvi": (OP_IMM, 1, 0x1A, 6),
    "bseti": (OP_IMM, 1, 0x0A, 6),
}  # fmt: skip
LOADS = {"lb": 0, "lh": 1, "lw": 2, "ld": 3, "lbu": 4, "lhu": 5, "lwu": 6}
STORES = {"sb": 0, "sh": 1, "sw": 2, "sd": 3}
BRANCHES = {"beq": 0, "bne": 1, "blt": 4, "bge": 5, "bltu": 6, "bgeu": 7}
AMOS = {
    "amoadd": 0x00, "amoswap": 0x01, "lr": 0x02, "sc": 0x03, "amoxor": 0x04, "amoor": 0x08, "amoand": 0x0C,
    "amomin": 0x10, "amomax": 0x14, "amominu": 0x18, "amomaxu": 0x1C,
}  # fmt: skip
CSR_OPS = {"csrrw": 1, "csrrs": 2, "csrrc": 3, "csrrwi": 5, "csrrsi": 6, "csrrci": 7}
# FP: name (without .s/.d): (funct5, kind[, fixed rs2 or funct3])
FP_RM3 = {"fadd": 0x00, "fsub": 0x01, "fmul": 0x02, "fdiv": 0x03}
FP_R3 = {"fsgnj": (0x04, 0), "fsgnjn": (0x04, 1), "fsgnjx": (0x04, 2), "fmin": (0x05, 0), "fmax": (0x05, 1)}
FP_CMP = {"feq": 2, "flt": 1, "fle": 0}
FMA = {"fmadd": 0x43, "fmsub": 0x47, "fnmsub": 0x4B, "fnmadd": 0x4F}
INT_T = {"w": 0, "wu": 1, "l": 2, "lu": 3}


def _r(op: int, f3: int, f7: int, rd: int, rs1: int, rs2: int) -> int:
    return f7 << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op


def _i(op: int, f3: int, rd: int, rs1: int, imm: int) -> int:
    assert -2048 <= imm < 2048 or 0 <= imm < 4096, imm
    return (imm & 0xFFF) << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op


def _s(op: int, f3: int, rs1: int, rs2: int, imm: int) -> int:
    assert -2048 <= imm < 2048, imm
    imm &= 0xFFF
    return (imm >> 5) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | (imm & 31) << 7 | op


def _b(f3: int, rs1: int, rs2: int, off: int) -> int:
    assert -4096 <= off < 4096 and off % 2 == 0, off
    o = off & 0x1FFF
    return (
        (o >> 12) << 31 | ((o >> 5) & 0x3F) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12
        | ((o >> 1) & 0xF) << 8 | ((o >> 11) & 1) << 7 | BRANCH
    )  # fmt: skip


def _j(rd: int, off: int) -> int:
    assert -(1 << 20) <= off < (1 << 20) and off % 2 == 0, off
    o = off & 0x1FFFFF
    return (
        (o >> 20) << 31
        | ((o >> 1) & 0x3FF) << 21
        | ((o >> 11) & 1) << 20
        | ((o >> 12) & 0xFF) << 12
        | rd << 7
        | 0x6F
    )


def _int(s: str) -> int:
    return int(s, 0)


def _mem(s: str) -> tuple[int, int]:
    m = re.fullmatch(r"(.*)\((\w+)\)", s)
    if not m:
        raise ValueError(f"expected offset(reg): {s!r}")
    return (_int(m.group(1)) if m.group(1) else 0), XREG[m.group(2)]


def asm(text: str) -> int:
    """Assemble one (uncompressed) instruction into its 32-bit word."""
    text = text.split("#")[0].strip()
    mn, _, rest = text.partition(" ")
    ops = [o.strip() for o in rest.split(",")] if rest.strip() else []
    x = XREG.__getitem__
    fr = FREG.__getitem__
    if mn in R_TYPE:
        op, f3, f7 = R_TYPE[mn]
        return _r(op, f3, f7, x(ops[0]), x(ops[1]), x(ops[2]))
    if mn in UNARY:
        op, f3, top = UNARY[mn]
        return top << 20 | x(ops[1]) << 15 | f3 << 12 | x(ops[0]) << 7 | op
    if mn in I_TYPE:
        op, f3 = I_TYPE[mn]
        if mn == "jalr" and len(ops) == 2:
            imm, rs1 = _mem(ops[1])
            return _i(op, f3, x(ops[0]), rs1, imm)
        return _i(op, f3, x(ops[0]), x(ops[1]), _int(ops[2]))
    if mn in SHIFT:
        op, f3, top, bits = SHIFT[mn]
        sh = _int(ops[2])
        assert 0 <= sh < (1 << bits)
        return top << (20 + bits) | sh << 20 | x(ops[1]) << 15 | f3 << 12 | x(ops[0]) << 7 | op
    if mn in LOADS:
        imm, rs1 = _mem(ops[1])
        return _i(LOAD, LOADS[mn], x(ops[0]), rs1, imm)
    if mn in STORES:
        imm, rs1 = _mem(ops[1])
        return _s(STORE, STORES[mn], rs1, x(ops[0]), imm)
    if mn in BRANCHES:
        return _b(BRANCHES[mn], x(ops[0]), x(ops[1]), _int(ops[2]))
    if mn == "lui" or mn == "auipc":
        return (_int(ops[1]) & 0xFFFFF) << 12 | x(ops[0]) << 7 | (0x37 if mn == "lui" else 0x17)
    if mn == "jal":
        return _j(x(ops[0]), _int(ops[1]))
    if mn == "ecall":
        return 0x00000073
    if mn == "ebreak":
        return 0x00100073
    if mn == "fence":
        return 0x0FF0000F
    if mn == "fence.i":
        return 0x0000100F
    if mn in CSR_OPS:
        csr = CSRS[ops[1]] if ops[1] in CSRS else _int(ops[1])
        src = _int(ops[2]) if mn.endswith("i") else x(ops[2])
        return csr << 20 | src << 15 | CSR_OPS[mn] << 12 | x(ops[0]) << 7 | SYSTEM
    base, _, suffix = mn.rpartition(".")
    width = {"w": 2, "d": 3}.get(suffix)
    if base in AMOS and width:
        f5 = AMOS[base]
        if base == "lr":
            rd, rs2, addr = x(ops[0]), 0, ops[1]
        else:
            rd, rs2, addr = x(ops[0]), x(ops[1]), ops[2]
        _, rs1 = _mem(addr)
        return _r(AMO, width, f5 << 2, rd, rs1, rs2)
    # floating point
    if mn in ("flw", "fld"):
        imm, rs1 = _mem(ops[1])
        return _i(LOAD_FP, 2 if mn == "flw" else 3, fr(ops[0]), rs1, imm)
    if mn in ("fsw", "fsd"):
        imm, rs1 = _mem(ops[1])
        return _s(STORE_FP, 2 if mn == "fsw" else 3, rs1, fr(ops[0]), imm)
    parts = mn.split(".")
    fmt = {"s": 0, "d": 1}.get(parts[-1], None)
    name = parts[0]

    def rm(i: int) -> int:
        return RM[ops[i]] if len(ops) > i else 7

    if name in FP_RM3 and len(parts) == 2:
        return _r(OP_FP, rm(3), FP_RM3[name] << 2 | fmt, fr(ops[0]), fr(ops[1]), fr(ops[2]))
    if name in FP_R3 and len(parts) == 2:
        f5, f3 = FP_R3[name]
        return _r(OP_FP, f3, f5 << 2 | fmt, fr(ops[0]), fr(ops[1]), fr(ops[2]))
    if name in FP_CMP and len(parts) == 2:
        return _r(OP_FP, FP_CMP[name], 0x14 << 2 | fmt, x(ops[0]), fr(ops[1]), fr(ops[2]))
    if name == "fsqrt":
        return _r(OP_FP, rm(2), 0x0B << 2 | fmt, fr(ops[0]), fr(ops[1]), 0)
    if name in FMA:
        return fr(ops[3]) << 27 | fmt << 25 | _r(FMA[name], rm(4), 0, fr(ops[0]), fr(ops[1]), fr(ops[2]))
    if name == "fclass":
        return _r(OP_FP, 1, 0x1C << 2 | fmt, x(ops[0]), fr(ops[1]), 0)
    if mn in ("fmv.x.w", "fmv.x.d"):
        return _r(OP_FP, 0, 0x1C << 2 | (mn == "fmv.x.d"), x(ops[0]), fr(ops[1]), 0)
    if mn in ("fmv.w.x", "fmv.d.x"):
        return _r(OP_FP, 0, 0x1E << 2 | (mn == "fmv.d.x"), fr(ops[0]), x(ops[1]), 0)
    if name == "fcvt" and len(parts) == 3:
        dst, src = parts[1], parts[2]
        if dst in INT_T:  # float -> int
            return _r(OP_FP, rm(2), 0x18 << 2 | {"s": 0, "d": 1}[src], x(ops[0]), fr(ops[1]), INT_T[dst])
        if src in INT_T:  # int -> float
            return _r(OP_FP, rm(2), 0x1A << 2 | {"s": 0, "d": 1}[dst], fr(ops[0]), x(ops[1]), INT_T[src])
        if (dst, src) == ("s", "d"):
            return _r(OP_FP, rm(2), 0x08 << 2 | 0, fr(ops[0]), fr(ops[1]), 1)
        if (dst, src) == ("d", "s"):
            return _r(OP_FP, rm(2), 0x08 << 2 | 1, fr(ops[0]), fr(ops[1]), 0)
    raise ValueError(f"cannot assemble {text!r}")


def li(rd: str, value: int) -> list[str]:
    """Instructions loading a 64-bit constant (lui/addi/slli chain; any value)."""
    value &= (1 << 64) - 1
    sv = value - (1 << 64) if value >> 63 else value
    if -2048 <= sv < 2048:
        return [f"addi {rd}, zero, {sv}"]
    if -(1 << 31) <= sv < (1 << 31):
        lo = ((sv & 0xFFF) ^ 0x800) - 0x800
        hi = ((sv - lo) >> 12) & 0xFFFFF
        out = [f"lui {rd}, {hi}"]
        if lo:
            out.append(f"addiw {rd}, {rd}, {lo}")
        return out
    lo = ((sv & 0xFFF) ^ 0x800) - 0x800
    rest = (sv - lo) >> 12
    shift = 12
    while rest % 2 == 0:
        rest >>= 1
        shift += 1
    out = li(rd, rest) + [f"slli {rd}, {rd}, {shift}"]
    if lo:
        out.append(f"addi {rd}, {rd}, {lo}")
    return out


def program(lines: list[str | int]) -> bytes:
    """Assemble a list of instructions (text, or an int: a raw 16-bit compressed word)."""
    out = bytearray()
    for ln in lines:
        if isinstance(ln, int):
            out += ln.to_bytes(2 if ln < 0x10000 and ln & 3 != 3 else 4, "little")
        else:
            out += asm(ln).to_bytes(4, "little")
    return bytes(out)
