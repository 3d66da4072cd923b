"""Zba/Zbb/Zbs executed through the reference engine, against values worked out by hand from
the definitions in the RISC-V bit-manipulation specification (v1.0.0). Unicorn lacks these
extensions, so the expected values below are the oracle; none is computed by polyvm."""

from __future__ import annotations

import pytest

from polyvm.engine.reference import Engine
from polyvm.isa.riscv import RISCV64, X0_SLOT
from polyvm.isa.riscv.asm import li, program
from polyvm.memory import PROT_EXEC, PROT_READ, AddressSpace

CODE = 0x10000
M64 = (1 << 64) - 1


def run_op(insn: str, a: int, b: int = 0) -> int:
    """Run `insn` with a0 = a, a1 = b; return a2."""
    mem = AddressSpace()
    code = program([*li("a0", a), *li("a1", b), insn, "ecall"])
    mem.map(CODE, 0x1000, PROT_READ | PROT_EXEC, code)
    st = RISCV64.new_state()
    st[0] = CODE
    stop = Engine(RISCV64, mem).run(st, 100)
    assert stop.reason == "syscall", stop
    assert st[X0_SLOT + 10] == a & M64 and st[X0_SLOT + 11] == b & M64  # li sanity
    return st[X0_SLOT + 12]


CASES = [
    # ---- Zba: rd = rs2 + (rs1 << n), the .uw forms on ZEXT.W(rs1) ----
    ("sh1add a2, a0, a1", 0x1234, 0x10, 0x2478),
    ("sh2add a2, a0, a1", 0x1234, 0x10, 0x48E0),
    ("sh3add a2, a0, a1", 0x1234, 0x10, 0x91B0),
    ("sh3add a2, a0, a1", 0x2000_0000_0000_0001, 0, 0x0000_0000_0000_0008),  # bits shifted out
    ("add.uw a2, a0, a1", 0xFFFF_FFFF_FFFF_FFFF, 1, 0x1_0000_0000),
    ("sh1add.uw a2, a0, a1", 0xFFFF_FFFF_8000_0001, 1, 0x1_0000_0003),
    ("sh2add.uw a2, a0, a1", 0xFFFF_FFFF_8000_0001, 1, 0x2_0000_0005),
    ("sh3add.uw a2, a0, a1", 0xFFFF_FFFF_8000_0001, 1, 0x4_0000_0009),
    ("slli.uw a2, a0, 4", 0xFFFF_FFFF_8000_0001, 0, 0x8_0000_0010),
    ("slli.uw a2, a0, 63", 0xFFFF_FFFF_0000_0001, 0, 0x8000_0000_0000_0000),
    # ---- Zbb: logic with negate ----
    ("andn a2, a0, a1", 0xFF00_FF00_FF00_FF00, 0x0FF0_0FF0_0FF0_0FF0, 0xF000_F000_F000_F000),
    ("orn a2, a0, a1", 0, 0x0F, 0xFFFF_FFFF_FFFF_FFF0),
    ("xnor a2, a0, a1", 0xF0, 0x0F, 0xFFFF_FFFF_FFFF_FF00),
    ("xnor a2, a0, a1", 0x5555, 0x5555, M64),
    # ---- Zbb: counting ----
    ("clz a2, a0", 0, 0, 64),
    ("clz a2, a0", 1, 0, 63),
    ("clz a2, a0", 0x8000_0000_0000_0000, 0, 0),
    ("clz a2, a0", 0x00FF_0000_0000_0000, 0, 8),
    ("ctz a2, a0", 0, 0, 64),
    ("ctz a2, a0", 0x100, 0, 8),
    ("ctz a2, a0", 0x8000_0000_0000_0000, 0, 63),
    ("cpop a2, a0", 0xFFFF_FFFF_0000_0001, 0, 33),
    ("cpop a2, a0", M64, 0, 64),
    ("clzw a2, a0", 0xFFFF_FFFF_0000_0000, 0, 32),  # only the low word counts
    ("clzw a2, a0", 0xFFFF_FFFF_0001_0000, 0, 15),
    ("clzw a2, a0", 0x8000_0000, 0, 0),
    ("ctzw a2, a0", 0xFFFF_FFFF_0000_0000, 0, 32),
    ("ctzw a2, a0", 0x8000_0000, 0, 31),
    ("cpopw a2, a0", 0xFFFF_FFFF_0000_000F, 0, 4),
    # ---- Zbb: min/max (signed and unsigned) ----
    ("max a2, a0, a1", -1, 1, 1),
    ("maxu a2, a0, a1", -1, 1, M64),
    ("min a2, a0, a1", -1, 1, M64),
    ("minu a2, a0, a1", -1, 1, 1),
    ("min a2, a0, a1", 0x8000_0000_0000_0000, 0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000),
    # ---- Zbb: sign/zero extension ----
    ("sext.b a2, a0", 0x80, 0, 0xFFFF_FFFF_FFFF_FF80),
    ("sext.b a2, a0", 0x1234_567F, 0, 0x7F),
    ("sext.h a2, a0", 0x1234_8000, 0, 0xFFFF_FFFF_FFFF_8000),
    ("sext.h a2, a0", 0xFFFF_7FFF, 0, 0x7FFF),
    ("zext.h a2, a0", 0xFFFF_FFFF_FFFF_8001, 0, 0x8001),
    # ---- Zbb: bytes ----
    ("orc.b a2, a0", 0x0001_0200_0000_FF00, 0, 0x00FF_FF00_0000_FF00),
    ("orc.b a2, a0", 0x8080_8080_8080_8080, 0, M64),
    ("orc.b a2, a0", 0x0100_0000_0000_0001, 0, 0xFF00_0000_0000_00FF),
    ("orc.b a2, a0", 0, 0, 0),
    ("orc.b a2, a0", 0x7F01_0000_0000_0000, 0, 0xFFFF_0000_0000_0000),
    ("rev8 a2, a0", 0x0102_0304_0506_0708, 0, 0x0807_0605_0403_0201),
    # ---- Zbb: rotations (shift amounts masked to 6 / 5 bits) ----
    ("rol a2, a0, a1", 0x8000_0000_0000_0001, 1, 3),
    ("rol a2, a0, a1", 0x8000_0000_0000_0001, 65, 3),
    ("rol a2, a0, a1", 0x1234, 0, 0x1234),
    ("ror a2, a0, a1", 1, 1, 0x8000_0000_0000_0000),
    ("ror a2, a0, a1", 0x10, 68, 1),
    ("rori a2, a0, 63", 1, 0, 2),
    ("rori a2, a0, 0", 0xABC, 0, 0xABC),
    ("rolw a2, a0, a1", 0x8000_0001, 1, 3),
    ("rolw a2, a0, a1", 0xDEAD_BEEF_0000_0001, 31, 0xFFFF_FFFF_8000_0000),
    ("rolw a2, a0, a1", 0x1, 33, 2),
    ("rorw a2, a0, a1", 1, 1, 0xFFFF_FFFF_8000_0000),
    ("rorw a2, a0, a1", 0x0000_0000_0000_0002, 1, 1),
    ("roriw a2, a0, 4", 0xFFFF_FFFF_0000_0010, 0, 1),
    ("roriw a2, a0, 0", 0x8000_0000, 0, 0xFFFF_FFFF_8000_0000),  # sign-extends even at 0
    # ---- Zbs: bit index masked to 6 bits ----
    ("bclr a2, a0, a1", 0xFF, 3, 0xF7),
    ("bclr a2, a0, a1", 0xFF, 67, 0xF7),
    ("bext a2, a0, a1", 0x8000_0000_0000_0000, 63, 1),
    ("bext a2, a0, a1", 0x10, 4, 1),
    ("bext a2, a0, a1", 0x10, 3, 0),
    ("binv a2, a0, a1", 0, 63, 0x8000_0000_0000_0000),
    ("binv a2, a0, a1", 0x8000_0000_0000_0000, 127, 0),
    ("bset a2, a0, a1", 0, 69, 0x20),
    ("bclri a2, a0, 63", M64, 0, 0x7FFF_FFFF_FFFF_FFFF),
    ("bexti a2, a0, 5", 0x20, 0, 1),
    ("bexti a2, a0, 40", 0x20, 0, 0),
    ("binvi a2, a0, 0", 1, 0, 0),
    ("bseti a2, a0, 40", 0, 0, 0x100_0000_0000),
]


@pytest.mark.parametrize(
    "insn,a,b,expected", CASES, ids=[f"{c[0].split()[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_zb(insn: str, a: int, b: int, expected: int) -> None:
    assert run_op(insn, a, b) == expected & M64


def test_zb_writes_to_x0_are_dropped() -> None:
    mem = AddressSpace()
    mem.map(CODE, 0x1000, PROT_READ | PROT_EXEC, program([*li("a0", 5), "sh1add zero, a0, a0", "ecall"]))
    st = RISCV64.new_state()
    st[0] = CODE
    Engine(RISCV64, mem).run(st, 10)
    assert st[X0_SLOT] == 0
