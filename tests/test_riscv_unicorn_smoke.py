"""A small differential smoke test against Unicorn (QEMU's RISC-V): random straight-line
sequences of RV64IMC, loads/stores and simple F/D arithmetic on finite values, all integer and FP
registers, fflags and the data page compared. (The full differential suite lives elsewhere.)"""

from __future__ import annotations

import random
import struct

import pytest

from polyvm.engine.reference import Engine
from polyvm.isa import SLOT_PC
from polyvm.isa.riscv import F0_SLOT, FFLAGS_SLOT, RISCV64, X0_SLOT
from polyvm.isa.riscv.asm import asm
from polyvm.memory import PROT_EXEC, PROT_READ, PROT_WRITE, AddressSpace

unicorn = pytest.importorskip("unicorn")
from unicorn import riscv_const as rc  # noqa: E402

CODE, DATA = 0x10000, 0x20000
M64 = (1 << 64) - 1
BASE = 8  # s0 holds DATA + 0x800 throughout

R_OPS = (
    "add sub sll slt sltu xor srl sra or and addw subw sllw srlw sraw "
    "mul mulh mulhsu mulhu div divu rem remu mulw divw divuw remw remuw"
).split()
I_OPS = "addi slti sltiu xori ori andi addiw".split()
SH_OPS = {"slli": 63, "srli": 63, "srai": 63, "slliw": 31, "srliw": 31, "sraiw": 31}
LD = "lb lh lw ld lbu lhu lwu".split()
ST = "sb sh sw sd".split()
FP = "fadd fsub fmul fmin fmax fsgnj fsgnjn fsgnjx".split()


def _reg(rnd: random.Random) -> int:
    r = rnd.randrange(32)
    return r if r != BASE else 9


def _insn(rnd: random.Random) -> int:
    k = rnd.random()
    rd, rs1, rs2 = _reg(rnd), rnd.randrange(32), rnd.randrange(32)
    if k < 0.35:
        return asm(f"{rnd.choice(R_OPS)} x{rd}, x{rs1}, x{rs2}")
    if k < 0.5:
        return asm(f"{rnd.choice(I_OPS)} x{rd}, x{rs1}, {rnd.randrange(-2048, 2048)}")
    if k < 0.58:
        op = rnd.choice(list(SH_OPS))
        return asm(f"{op} x{rd}, x{rs1}, {rnd.randrange(SH_OPS[op] + 1)}")
    if k < 0.66:
        return asm(f"lui x{rd}, {rnd.getrandbits(20)}")
    if k < 0.74:
        op = rnd.choice(LD)
        return asm(f"{op} x{rd}, {rnd.randrange(-2048, 2040) & ~7}(s0)")
    if k < 0.82:
        return asm(f"{rnd.choice(ST)} x{rs2}, {rnd.randrange(-2048, 2040)}(s0)")
    if k < 0.9:
        # a compressed instruction from the register-register and immediate subsets
        c = rnd.choice(["c.add", "c.mv", "c.addi", "c.li", "c.sub", "c.and", "c.addw", "c.slli", "c.srai"])
        rdc, rsc = rnd.randrange(1, 32), rnd.randrange(1, 32)
        if rdc == BASE:
            rdc = 9
        p3, q3 = rnd.randrange(8), rnd.randrange(8)
        if p3 == 0:
            p3 = 1  # x8 = s0 is the base: use x9..x15
        imm6 = rnd.randrange(64)
        return {
            "c.add": 0x9002 | rdc << 7 | rsc << 2,
            "c.mv": 0x8002 | rdc << 7 | rsc << 2,
            "c.addi": 0x0001 | (imm6 >> 5) << 12 | rdc << 7 | (imm6 & 31) << 2,
            "c.li": 0x4001 | (imm6 >> 5) << 12 | rdc << 7 | (imm6 & 31) << 2,
            "c.sub": 0x8C01 | p3 << 7 | q3 << 2,
            "c.and": 0x8C61 | p3 << 7 | q3 << 2,
            "c.addw": 0x9C21 | p3 << 7 | q3 << 2,
            "c.slli": 0x0002 | (imm6 >> 5) << 12 | rdc << 7 | (imm6 & 31) << 2 | (1 if imm6 == 0 else 0) << 2,
            "c.srai": 0x8401 | (imm6 >> 5) << 12 | p3 << 7 | (imm6 & 31) << 2 | (1 if imm6 == 0 else 0) << 2,
        }[c]
    # Singles live in f0-f15 and doubles in f16-f31: Unicorn (QEMU 5.0) does not check NaN-boxing.
    fmt = rnd.choice("sd")
    base = 0 if fmt == "s" else 16
    rd, rs1, rs2 = base + rnd.randrange(16), base + rnd.randrange(16), base + rnd.randrange(16)
    op = rnd.choice(FP)
    rm = (
        ""
        if op.startswith(("fmin", "fmax", "fsgnj"))
        else ", " + rnd.choice(["rne", "rtz", "rdn", "rup", "rmm"])
    )
    return asm(f"{op}.{fmt} f{rd}, f{rs1}, f{rs2}{rm}")


def _fp_value(rnd: random.Random, single: bool) -> int:
    if single:
        return 0xFFFF_FFFF_0000_0000 | struct.unpack("<I", struct.pack("<f", rnd.uniform(-1e6, 1e6)))[0]
    return struct.unpack("<Q", struct.pack("<d", rnd.uniform(-1e12, 1e12)))[0]


def _encode(words: list[int]) -> bytes:
    out = bytearray()
    for w in words:
        out += w.to_bytes(4 if w & 3 == 3 else 2, "little")
    return bytes(out)


@pytest.mark.parametrize("seed", range(40))
def test_random_sequences_match_unicorn(seed: int) -> None:
    rnd = random.Random(seed)
    words = [_insn(rnd) for _ in range(40)]
    code = _encode(words) + asm("ecall").to_bytes(4, "little")
    data = bytes(rnd.getrandbits(8) for _ in range(0x1000))
    xs = [0] + [rnd.choice([rnd.getrandbits(64), rnd.getrandbits(8), M64, 1 << 63, 0]) for _ in range(31)]
    xs[BASE] = DATA + 0x800
    fs = [_fp_value(rnd, i < 16) for i in range(32)]

    # polyvm
    mem = AddressSpace()
    mem.map(CODE, 0x1000, PROT_READ | PROT_EXEC, code)
    mem.map(DATA, 0x1000, PROT_READ | PROT_WRITE, data)
    st = RISCV64.new_state()
    st[SLOT_PC] = CODE
    st[X0_SLOT : X0_SLOT + 32] = xs
    st[F0_SLOT : F0_SLOT + 32] = fs
    stop = Engine(RISCV64, mem).run(st, 1000)
    assert stop.reason == "syscall" and stop.pc == CODE + len(code) - 4

    # unicorn
    uc = unicorn.Uc(unicorn.UC_ARCH_RISCV, unicorn.UC_MODE_RISCV64)
    uc.mem_map(CODE, 0x1000)
    uc.mem_map(DATA, 0x1000)
    uc.mem_write(CODE, code)
    uc.mem_write(DATA, data)
    uc.reg_write(rc.UC_RISCV_REG_MSTATUS, 0x6000)  # FS = dirty: FP enabled
    for i in range(1, 32):
        uc.reg_write(rc.UC_RISCV_REG_X0 + i, xs[i])
    for i in range(32):
        uc.reg_write(rc.UC_RISCV_REG_F0 + i, fs[i])
    uc.emu_start(CODE, CODE + len(code) - 4)

    for i in range(32):
        assert st[X0_SLOT + i] == uc.reg_read(rc.UC_RISCV_REG_X0 + i), f"x{i}"
    for i in range(32):
        ours, theirs = st[F0_SLOT + i], uc.reg_read(rc.UC_RISCV_REG_F0 + i)
        if i < 16:  # Unicorn (QEMU 5.0) leaves single results un-boxed: compare the single
            assert ours >> 32 == 0xFFFF_FFFF and ours & 0xFFFF_FFFF == theirs & 0xFFFF_FFFF, f"f{i}"
        else:
            assert ours == theirs, f"f{i}"
    assert st[FFLAGS_SLOT] == uc.reg_read(rc.UC_RISCV_REG_FFLAGS)
    assert mem.read(DATA, 0x1000) == bytes(uc.mem_read(DATA, 0x1000))
