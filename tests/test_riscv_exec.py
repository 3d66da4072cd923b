"""RISC-V lifting through the reference engine: RV64IMAFDC, Zicsr, Zifencei, block structure,
exits and precise faults. Expected values come from the specification, worked out by hand."""

from __future__ import annotations

import struct

import pytest

from polyvm.engine.reference import Engine
from polyvm.isa import SLOT_ICOUNT, SLOT_PC
from polyvm.isa.riscv import (
    F0_SLOT,
    FFLAGS_SLOT,
    FRM_SLOT,
    NSLOTS,
    RES_ADDR_SLOT,
    RES_VALID_SLOT,
    RISCV64,
    X0_SLOT,
    fcsr_read,
)
from polyvm.isa.riscv.asm import XREG, asm, li, program
from polyvm.memory import PROT_EXEC, PROT_READ, PROT_WRITE, AddressSpace

CODE = 0x10000
DATA = 0x20000
M64 = (1 << 64) - 1
BOX = 0xFFFF_FFFF_0000_0000


def f32(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", x))[0]


def f64(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


class Run:
    def __init__(
        self, lines: list, *, x: dict | None = None, f: dict | None = None, data: bytes = b""
    ) -> None:
        self.mem = AddressSpace()
        self.code = program(lines)
        self.mem.map(CODE, 0x2000, PROT_READ | PROT_EXEC, self.code)
        self.mem.map(DATA, 0x1000, PROT_READ | PROT_WRITE, data)
        self.st = RISCV64.new_state()
        self.st[SLOT_PC] = CODE
        for k, v in (x or {}).items():
            self.st[X0_SLOT + XREG[k]] = v & M64
        for k, v in (f or {}).items():
            self.st[F0_SLOT + int(k[1:])] = v
        self.eng = Engine(RISCV64, self.mem)

    def go(self, max_blocks: int = 100):
        self.stop = self.eng.run(self.st, max_blocks)
        return self.stop

    def x(self, name: str) -> int:
        return self.st[X0_SLOT + XREG[name]]

    def f(self, n: int) -> int:
        return self.st[F0_SLOT + n]


def run(lines: list, **kw) -> Run:
    r = Run([*lines, "ecall"], **kw)
    stop = r.go()
    assert stop.reason == "syscall", stop
    return r


# ---- state layout --------------------------------------------------------------------------------


def test_state_layout_and_register_names() -> None:
    assert NSLOTS == RISCV64.nslots == 70
    regs = RISCV64.regs
    assert regs["pc"] == (0, 64)
    assert regs["x0"] == regs["zero"] == (2, 64) and regs["x31"] == regs["t6"] == (33, 64)
    assert regs["sp"] == (4, 64) and regs["s0"] == regs["fp"] == (10, 64) and regs["a0"] == (12, 64)
    assert regs["f0"] == regs["ft0"] == (34, 64) and regs["fa0"] == (44, 64) and regs["ft11"] == (65, 64)
    assert regs["fflags"][0] == 66 and regs["frm"][0] == 67
    assert (RES_ADDR_SLOT, RES_VALID_SLOT) == (68, 69)


# ---- RV64I ---------------------------------------------------------------------------------------


def test_li_sequences_and_x0() -> None:
    vals = [
        0,
        1,
        -1,
        2047,
        -2048,
        0x7FFF_FFFF,
        -0x8000_0000,
        0x8000_0000,
        0x1234_5678_9ABC_DEF0,
        1 << 63,
        M64 >> 1,
    ]
    lines = []
    for i, v in enumerate(vals):
        lines += li(f"x{i + 5}", v)
    lines += ["addi zero, zero, 5", "lui zero, 0x12345"]
    r = run(lines)
    for i, v in enumerate(vals):
        assert r.st[X0_SLOT + i + 5] == v & M64
    assert r.st[X0_SLOT] == 0


def test_lui_auipc_jal_jalr() -> None:
    r = run(
        [
            "lui a0, 0x80000",  # sign-extended: 0xffffffff80000000
            "auipc a1, 1",  # pc + 0x1000
            "jal ra, 8",  # skips the next instruction
            "addi a2, zero, 1",
            "auipc t0, 0",
            "addi t0, t0, 17",  # odd target: jalr clears bit 0
            "jalr t0, 0(t0)",  # rd == rs1: target is computed from the old value
            "addi a3, zero, 1",
            "addi a4, zero, 2",
        ]
    )
    assert r.x("a0") == 0xFFFF_FFFF_8000_0000
    assert r.x("a1") == CODE + 4 + 0x1000
    assert r.x("ra") == CODE + 12 and r.x("a2") == 0
    assert r.x("t0") == CODE + 28  # link of the jalr at CODE+24
    assert r.x("a3") == 0 and r.x("a4") == 2  # jumped to CODE+32 (16+16 with bit 0 cleared)


@pytest.mark.parametrize(
    "op,a,b,taken",
    [
        ("beq", 5, 5, True),
        ("bne", 5, 5, False),
        ("blt", -1, 0, True),
        ("bltu", -1, 0, False),
        ("bge", 0, -1, True),
        ("bge", -1, -1, True),
        ("bgeu", 0, -1, False),
        ("bgeu", 7, 7, True),
    ],
)
def test_branches(op: str, a: int, b: int, taken: bool) -> None:
    r = run([f"{op} a0, a1, 8", "addi a2, zero, 1"], x={"a0": a, "a1": b})
    assert r.x("a2") == (0 if taken else 1)


def test_loads_extend_and_stores_truncate() -> None:
    data = bytes.fromhex("8081828384858687")
    rr = Run(
        [
            *li("s0", DATA),
            "lb a0, 0(s0)",
            "lbu a1, 0(s0)",
            "lh a2, 0(s0)",
            "lhu a3, 0(s0)",
            "lw a4, 4(s0)",
            "lwu a5, 4(s0)",
            "ld a6, 0(s0)",
            *li("t0", 0x1122_3344_5566_7788),
            "sb t0, 16(s0)",
            "sh t0, 24(s0)",
            "sw t0, 32(s0)",
            "sd t0, 40(s0)",
            "ld a7, -8(s0)",  # unmapped: faults precisely
            "addi a7, zero, 1",
        ],
        x={"a7": 99},
        data=data,
    )
    stop = rr.go()
    assert stop.reason == "fault" and stop.addr == DATA - 8 and stop.access == "r" and not stop.mapped
    assert rr.st[SLOT_PC] == stop.pc == CODE + rr.code.index(asm("ld a7, -8(s0)").to_bytes(4, "little"))
    assert rr.x("a7") == 99
    assert rr.x("a0") == 0xFFFF_FFFF_FFFF_FF80 and rr.x("a1") == 0x80
    assert rr.x("a2") == 0xFFFF_FFFF_FFFF_8180 and rr.x("a3") == 0x8180
    assert rr.x("a4") == 0xFFFF_FFFF_8786_8584 and rr.x("a5") == 0x8786_8584
    assert rr.x("a6") == 0x8786_8584_8382_8180
    m = rr.mem
    assert m.read(DATA + 16, 2) == b"\x88\x00" and m.read(DATA + 24, 3) == b"\x88\x77\x00"
    assert m.read_u(DATA + 32, 8) == 0x5566_7788 and m.read_u(DATA + 40, 8) == 0x1122_3344_5566_7788


def test_load_into_x0_still_faults() -> None:
    r = Run(["ld zero, 0(zero)", "ecall"])
    assert r.go().reason == "fault"


def test_store_fault_is_precise() -> None:
    r = Run([*li("s0", CODE), "sd s0, 0(s0)", "ecall"])  # code page is not writable
    stop = r.go()
    assert stop.reason == "fault" and stop.access == "w" and stop.mapped and stop.addr == CODE


def test_alu_and_shifts() -> None:
    r = run(
        [
            "slti t0, a0, 0",
            "sltiu t1, a0, 5",  # -1 unsigned is huge
            "slt t2, a0, a1",
            "sltu t3, a0, a1",
            "xori t4, a0, -1",
            "srai t5, a0, 63",
            "srli t6, a0, 60",
            "slli s1, a1, 63",
            "sll s2, a1, a2",  # shift amount masked to 6 bits: 65 -> 1
            "sra s3, a0, a2",
            "addiw s4, a3, 1",  # 0x7fffffff + 1 wraps to -2^31
            "slliw s5, a1, 31",
            "srliw s6, a0, 28",
            "sraiw s7, a3, 4",
            "sllw s8, a1, a2",  # masked to 5 bits: 65 -> 1
            "subw s9, zero, a3",
            "sraw s10, a0, a2",
        ],
        x={"a0": -1, "a1": 1, "a2": 65, "a3": 0x7FFF_FFFF},
    )
    assert (r.x("t0"), r.x("t1"), r.x("t2"), r.x("t3")) == (1, 0, 1, 0)
    assert r.x("t4") == 0 and r.x("t5") == M64 and r.x("t6") == 0xF and r.x("s1") == 1 << 63
    assert r.x("s2") == 2 and r.x("s3") == M64
    assert r.x("s4") == 0xFFFF_FFFF_8000_0000 and r.x("s5") == 0xFFFF_FFFF_8000_0000
    assert r.x("s6") == 0xF and r.x("s7") == 0x07FF_FFFF and r.x("s8") == 2
    assert r.x("s9") == 0xFFFF_FFFF_8000_0001 and r.x("s10") == M64


# ---- RV64M ---------------------------------------------------------------------------------------
MIN64 = 1 << 63


@pytest.mark.parametrize(
    "op,a,b,expected",
    [
        ("mul", 3, -5, -15),
        ("mulh", -1, -1, 0),
        ("mulh", MIN64, MIN64, 1 << 62),
        ("mulhu", -1, -1, 0xFFFF_FFFF_FFFF_FFFE),
        ("mulhsu", -1, -1, -1),  # -1 * (2^64-1) = -(2^64-1): high word all ones
        ("mulhsu", 2, -1, 1),
        ("div", 7, -2, -3),
        ("div", 5, 0, -1),
        ("div", MIN64, -1, MIN64),
        ("divu", 5, 0, M64),
        ("rem", -7, 2, -1),
        ("rem", 5, 0, 5),
        ("rem", MIN64, -1, 0),
        ("remu", 7, 0, 7),
        ("mulw", 0x1_0000_0001, 0x7FFF_FFFF, 0x7FFF_FFFF),
        ("mulw", 0x10000, 0x8000, 0xFFFF_FFFF_8000_0000),
        ("divw", -0x8000_0000, -1, -0x8000_0000),
        ("divw", 0x1_0000_0007, 0, -1),
        ("divuw", 0xFFFF_FFFF, 2, 0x7FFF_FFFF),
        ("divuw", 5, 0, M64),
        ("remw", -0x8000_0000, -1, 0),
        ("remw", 0x1_8000_0000, 0, 0xFFFF_FFFF_8000_0000),
        ("remuw", 0xFFFF_FFFF, 0, M64),
        ("remuw", 7, 4, 3),
    ],
)
def test_m_extension(op: str, a: int, b: int, expected: int) -> None:
    assert run([f"{op} a2, a0, a1"], x={"a0": a, "a1": b}).x("a2") == expected & M64


# ---- RV64A ---------------------------------------------------------------------------------------


def test_lr_sc_success_and_failure() -> None:
    data = (0x1111_2222_8000_0001).to_bytes(8, "little")
    r = run(
        [
            *li("s0", DATA),
            "lr.w a0, (s0)",
            "sc.w a1, a2, (s0)",  # succeeds: a1 = 0
            "sc.w a3, a2, (s0)",  # reservation gone: fails, a3 = 1
            "lr.d a4, (s0)",
            "addi s1, s0, 8",
            "sc.d a5, a2, (s1)",  # other address: fails
            "sc.d a6, a2, (s0)",  # the reservation was cleared by the failed sc
        ],
        x={"a2": 0x55},
        data=data,
    )
    assert r.x("a0") == 0xFFFF_FFFF_8000_0001
    assert r.x("a1") == 0 and r.x("a3") == 1 and r.x("a5") == 1 and r.x("a6") == 1
    assert r.x("a4") == 0x1111_2222_0000_0055
    assert r.mem.read_u(DATA, 8) == 0x1111_2222_0000_0055 and r.mem.read_u(DATA + 8, 8) == 0
    assert r.st[RES_VALID_SLOT] == 0


def test_sc_without_reservation_does_not_touch_memory() -> None:
    r = Run(["sc.d a0, a1, (zero)", "ecall"])  # address 0 unmapped, but nothing is stored
    assert r.go().reason == "syscall" and r.x("a0") == 1


@pytest.mark.parametrize(
    "op,old,src,new",
    [
        ("amoswap.w", 0x8000_0000, 5, 5),
        ("amoadd.w", 0xFFFF_FFFF, 1, 0),
        ("amoxor.w", 0xF0F0, 0xFF00, 0x0FF0),
        ("amoand.w", 0xF0F0, 0xFF00, 0xF000),
        ("amoor.w", 0xF0F0, 0xFF00, 0xFFF0),
        ("amomin.w", 0x8000_0000, 1, 0x8000_0000),
        ("amomax.w", 0x8000_0000, 1, 1),
        ("amominu.w", 0x8000_0000, 1, 1),
        ("amomaxu.w", 0x8000_0000, 0x1_0000_0001, 0x8000_0000),  # only the low word of rs2
        ("amoswap.d", 1 << 63, 5, 5),
        ("amoadd.d", M64, 2, 1),
        ("amomin.d", 1 << 63, 1, 1 << 63),
        ("amomax.d", 1 << 63, 1, 1),
        ("amominu.d", 1 << 63, 1, 1),
        ("amomaxu.d", 1 << 63, 1, 1 << 63),
    ],
)
def test_amo(op: str, old: int, src: int, new: int) -> None:
    w = 4 if op.endswith(".w") else 8
    data = old.to_bytes(w, "little") + b"\xaa" * 8
    r = run([*li("s0", DATA), f"{op} a0, a1, (s0)"], x={"a1": src}, data=data)
    sext_old = old - (1 << (8 * w)) if old >> (8 * w - 1) else old
    assert r.x("a0") == sext_old & M64
    assert r.mem.read_u(DATA, w) == new
    assert r.mem.read(DATA + w, 1) == b"\xaa"


def test_amo_fault_leaves_rd() -> None:
    r = Run([*li("s0", CODE), "amoadd.d a0, a1, (s0)", "ecall"], x={"a0": 7})
    stop = r.go()
    assert stop.reason == "fault" and stop.access == "w" and r.x("a0") == 7


# ---- RV64C ---------------------------------------------------------------------------------------


def test_compressed_program() -> None:
    r = Run(
        [
            0x4515,  # c.li a0, 5
            0x0505,  # c.addi a0, 1
            0x85AA,  # c.mv a1, a0
            0x95AA,  # c.add a1, a0      -> 12
            0x058E,  # c.slli a1, 3      -> 96
            0x8185,  # c.srli a1, 1      -> 48
            0x9D89,  # c.subw a1, a0     -> 42
            0xA011,  # c.j +4 (skips the next one)
            0x4605,  # c.li a2, 1
            0x76FD,  # c.lui a3, -1      -> 0xffff_ffff_ffff_f000
            "auipc t0, 0",
            "addi t0, t0, 10",  # t0 -> the c.ebreak below
            0x9282,  # c.jalr t0         ra = its pc + 2
            0x9002,  # c.ebreak
        ]
    )
    stop = r.go()
    assert stop.reason == "breakpoint"
    assert r.x("a0") == 6 and r.x("a1") == 42 and r.x("a2") == 0
    assert r.x("a3") == 0xFFFF_FFFF_FFFF_F000
    jalr_pc = CODE + 2 * 10 + 8
    assert r.x("ra") == jalr_pc + 2 and stop.pc == jalr_pc + 2 and stop.resume == jalr_pc + 4


def test_compressed_sp_loads_stores() -> None:
    r = run(
        [
            *li("sp", DATA + 0x100),
            *li("s0", DATA),
            *li("a0", 0x1234_5678_9ABC_DEF0),
            0xE42A,  # c.sdsp a0, 8(sp)
            0x65A2,  # c.ldsp a1, 8(sp)
            0x4622,  # c.lwsp a2, 8(sp)
            0xC00C,  # c.sw a1, 0(s0)
            0x6014,  # c.ld a3, 0(s0)
            0x2422,  # c.fldsp fs0, 8(sp)
            0xA400,  # c.fsd fs0, 8(s0)
            0x0074,  # c.addi4spn a3... (overwrites a3: a3 = sp + 12)
        ]
    )
    assert r.x("a1") == 0x1234_5678_9ABC_DEF0 and r.x("a2") == 0xFFFF_FFFF_9ABC_DEF0
    assert r.mem.read_u(DATA, 8) == 0x9ABC_DEF0
    assert r.f(8) == 0x1234_5678_9ABC_DEF0 and r.mem.read_u(DATA + 8, 8) == 0x1234_5678_9ABC_DEF0
    assert r.x("a3") == DATA + 0x100 + 12


def test_illegal_compressed_at_block_start() -> None:
    r = Run([0x0000])
    stop = r.go()
    assert stop.reason == "illegal" and stop.pc == CODE and stop.info == 0


# ---- exits ---------------------------------------------------------------------------------------


def test_ecall_ebreak_exits() -> None:
    r = Run(["addi a0, zero, 1", "ecall", "ebreak"])
    stop = r.go()
    assert (stop.reason, stop.pc, stop.resume) == ("syscall", CODE + 4, CODE + 8)
    assert r.st[SLOT_ICOUNT] == 2
    r.st[SLOT_PC] = stop.resume
    stop = r.go()
    assert (stop.reason, stop.pc, stop.resume) == ("breakpoint", CODE + 8, CODE + 12)


def test_fence_and_fence_i() -> None:
    r = run(["fence", "addi a0, zero, 1", "fence.i", "addi a0, a0, 1"])
    assert r.x("a0") == 2
    blk = RISCV64.lift_block(r.mem.fetch, CODE, 64)
    assert blk.term.kind == "exit" and blk.term.reason == "sync_icache" and blk.term.target.const == CODE + 12


def test_illegal_32bit() -> None:
    word = asm("csrrw a0, 0x300, a1")  # mstatus: not accessible
    r = Run(["addi a0, zero, 1", word])
    stop = r.go()
    assert stop.reason == "illegal" and stop.pc == CODE + 4 and stop.info == word
    assert r.x("a0") == 1


# ---- block structure -----------------------------------------------------------------------------


def test_block_ends_at_branch_and_max_insns() -> None:
    mem = AddressSpace()
    mem.map(
        CODE, 0x1000, PROT_READ | PROT_EXEC, program(["addi a0, a0, 1"] * 5 + ["beq a0, a1, -8", "ecall"])
    )
    blk = RISCV64.lift_block(mem.fetch, CODE, 64)
    assert len(blk.insns) == 6 and blk.term.kind == "branch" and blk.term.fallthrough == CODE + 24
    assert blk.term.target.const == CODE + 12
    blk = RISCV64.lift_block(mem.fetch, CODE, 3)
    assert len(blk.insns) == 3 and blk.term.kind == "jump" and blk.term.target.const == CODE + 12


def test_block_crosses_one_page_end_and_stops_before_illegal() -> None:
    mem = AddressSpace()
    mem.map(CODE, 0x3000, PROT_READ | PROT_EXEC)
    mem.write_raw(CODE + 0xFF8, program(["addi a0, a0, 1"] * 4 + [0x0000]))
    blk = RISCV64.lift_block(mem.fetch, CODE + 0xFF8, 64)
    assert len(blk.insns) == 4 and blk.end == CODE + 0x1008 and blk.term.kind == "jump"
    # ... but not into a third page
    mem.write_raw(CODE + 0x1000, program(["addi a0, a0, 1"] * 0x400))
    blk = RISCV64.lift_block(mem.fetch, CODE + 0xFFC, 4096)
    assert blk.end == CODE + 0x2000
    mem.write_raw(CODE + 0x1000, program(["addi a0, a0, 1"] * 2 + [0x0000]))
    blk = RISCV64.lift_block(mem.fetch, CODE + 0x1000, 64)
    assert len(blk.insns) == 2 and blk.term.kind == "jump" and blk.term.target.const == CODE + 0x1008
    blk = RISCV64.lift_block(mem.fetch, CODE + 0x1008, 64)
    assert blk.insns == [] and blk.term.kind == "exit" and blk.term.reason == "illegal" and blk.term.info == 0


def test_instruction_straddling_into_unmapped_page() -> None:
    mem = AddressSpace()
    mem.map(CODE, 0x1000, PROT_READ | PROT_EXEC)
    mem.write_raw(CODE + 0xFFA, program([0x0505, 0x0505]) + asm("addi a0, a0, 1").to_bytes(4, "little")[:2])
    blk = RISCV64.lift_block(mem.fetch, CODE + 0xFFA, 64)
    assert len(blk.insns) == 2  # the block ends before the straddling instruction
    blk = RISCV64.lift_block(mem.fetch, CODE + 0xFFE, 64)
    assert blk.insns == [] and blk.term.reason == "fetch_fault" and blk.term.info == CODE + 0x1000
    assert blk.term.pc == CODE + 0xFFE
    # and an unmapped block start
    blk = RISCV64.lift_block(mem.fetch, CODE + 0x1000, 64)
    assert blk.term.reason == "fetch_fault" and blk.term.info == CODE + 0x1000


def test_straddling_instruction_executes_when_both_pages_are_mapped() -> None:
    mem = AddressSpace()
    mem.map(CODE, 0x2000, PROT_READ | PROT_EXEC)
    mem.write_raw(CODE + 0xFFE, program(["addi a0, a0, 7", "ecall"]))
    st = RISCV64.new_state()
    st[SLOT_PC] = CODE + 0xFFE
    stop = Engine(RISCV64, mem).run(st, 10)
    assert stop.reason == "syscall" and st[X0_SLOT + 10] == 7


# ---- Zicsr ---------------------------------------------------------------------------------------


def test_fp_csrs() -> None:
    r = run(
        [
            "csrrwi a0, fcsr, 0x1f",  # a0 = old fcsr (0)
            "csrrsi a1, frm, 3",  # a1 = 0; frm = 3
            "csrrci a2, fflags, 1",  # a2 = 0x1f; fflags = 0x1e
            "csrrs a3, fcsr, zero",  # read only: a3 = 3 << 5 | 0x1e
            "csrrw a4, frm, t0",  # frm = t0 & 7 (= 7)
            "csrrc a5, fcsr, t1",  # clear bit 1 of fflags
            "csrrs a6, fflags, zero",
        ],
        x={"t0": 0xFF, "t1": 2},
    )
    assert (r.x("a0"), r.x("a1"), r.x("a2")) == (0, 0, 0x1F)
    assert r.x("a3") == 3 << 5 | 0x1E and r.x("a4") == 3
    assert r.x("a5") == 7 << 5 | 0x1E and r.x("a6") == 0x1C
    assert r.st[FRM_SLOT] == 7 and r.st[FFLAGS_SLOT] == 0x1C and fcsr_read(r.st) == 0xFC


def test_counters() -> None:
    r = Run(["addi a0, zero, 1"] * 3 + ["csrrs a1, instret, zero", "csrrs a2, cycle, zero"] + ["ecall"])
    r.st[SLOT_ICOUNT] = 100
    assert r.go().reason == "syscall"
    assert r.x("a1") == 103 and r.x("a2") == 104
    r = run(["csrrs a0, time, zero", "csrrs a1, time, zero"])
    assert 0 < r.x("a0") <= r.x("a1")


def test_counters_inside_a_loop() -> None:
    # instret read inside a loop must still be exact
    r = run(["addi t0, zero, 10", "addi t0, t0, -1", "csrrs a0, instret, zero", "bne t0, zero, -8"])
    # 1 + 10 * 3 instructions; the last csrrs is the 30th instruction (index 29)
    assert r.x("a0") == 29


@pytest.mark.parametrize(
    "text",
    [
        "csrrw a0, cycle, a1",  # write to a read-only counter
        "csrrs a0, instret, a1",  # rs1 != x0 writes, even if a1 is 0
        "csrrsi a0, time, 1",
        "csrrw a0, 0x300, a1",  # mstatus
        "csrrs a0, 0x004, zero",  # unassigned
        "csrrs a0, 0xC03, zero",  # hpmcounter3: not provided
    ],
)
def test_illegal_csr_accesses(text: str) -> None:
    r = Run([text, "ecall"], x={"a0": 5})
    stop = r.go()
    assert stop.reason == "illegal" and stop.info == asm(text) and r.x("a0") == 5


# ---- F and D -------------------------------------------------------------------------------------
CNAN_S = 0x7FC0_0000
CNAN_D = 0x7FF8_0000_0000_0000


def test_fp_arith_boxing_and_flags() -> None:
    r = run(
        [
            "fadd.s fa0, fa1, fa2",
            "fadd.s fa3, fa1, fa4",  # fa4 not NaN-boxed: reads as the canonical NaN
            "fdiv.d fa5, fa6, fa7, rne",  # 1.0 / 0.0: +inf, DZ
            "fmul.d ft0, ft1, ft1",  # exact
        ],
        f={
            "f11": BOX | f32(1.5),
            "f12": BOX | f32(2.25),
            "f14": f32(1.0),  # upper half zero
            "f16": f64(1.0),
            "f17": 0,
            "f1": f64(3.0),
        },
    )
    assert r.f(10) == BOX | f32(3.75)
    assert r.f(13) == BOX | CNAN_S
    assert r.f(15) == f64(float("inf"))
    assert r.f(0) == f64(9.0)
    assert r.st[FFLAGS_SLOT] == 8  # DZ only: NaN input was quiet, the rest exact


def test_fp_rounding_modes_static_and_dynamic() -> None:
    one_third = f64(1.0 / 3.0)
    lines = ["fdiv.d fa0, fa1, fa2, rup", "fdiv.d fa3, fa1, fa2, rdn", "fdiv.d fa4, fa1, fa2"]
    r = Run([*lines, "ecall"], f={"f11": f64(1.0), "f12": f64(3.0)})
    r.st[FRM_SLOT] = 1  # rtz for the dynamic one
    assert r.go().reason == "syscall"
    assert r.f(10) == one_third + 1 and r.f(13) == one_third and r.f(14) == one_third
    assert r.st[FFLAGS_SLOT] == 1  # NX


def test_reserved_static_rm_is_illegal() -> None:
    word = asm("fadd.d fa0, fa1, fa2") & ~(7 << 12) | 5 << 12
    r = Run([word])
    stop = r.go()
    assert stop.reason == "illegal" and stop.info == word


@pytest.mark.parametrize("frm", [5, 6, 7])
def test_invalid_dynamic_rm_traps_at_run_time(frm: int) -> None:
    r = Run(["addi a0, zero, 1", "fadd.s fa0, fa1, fa2", "addi a0, zero, 2", "ecall"], f={"f10": 123})
    r.st[FRM_SLOT] = frm
    stop = r.go()
    assert stop.reason == "illegal" and stop.pc == CODE + 4 and stop.info == asm("fadd.s fa0, fa1, fa2")
    assert r.x("a0") == 1 and r.f(10) == 123 and r.st[SLOT_PC] == CODE + 4
    assert r.st[SLOT_ICOUNT] == 1


def test_fp_conversions_and_moves() -> None:
    r = run(
        [
            "fcvt.wu.s a0, fa0, rtz",  # 3e9 fits in 32 unsigned bits; sign-extended on RV64
            "fcvt.w.s a1, fa1, rtz",  # -1.5 -> -1
            "fcvt.w.d a2, fa2",  # NaN -> 2^31-1, NV
            "fcvt.lu.d a3, fa3",  # -1.0 -> 0, NV
            "fcvt.s.w fa4, a4",  # -7
            "fcvt.d.lu fa5, a5",  # 2^64-1 rounds to 2^64
            "fcvt.s.d fa6, fa2",  # NaN -> canonical single NaN, boxed
            "fcvt.d.s fa7, fa1",  # exact
            "fmv.x.w a6, fa1",  # sign-extends bit 31
            "fmv.w.x ft0, a7",
            "fmv.x.d a7, fa3",
            "fmv.d.x ft1, t0",
        ],
        x={"a4": -7, "a5": -1, "a7": 0xDEAD_BEEF_8000_0000, "t0": 0x1234},
        f={"f10": BOX | f32(3e9), "f11": BOX | f32(-1.5), "f12": CNAN_D | 1, "f13": f64(-1.0)},
    )
    assert r.x("a0") == 0xFFFF_FFFF_B2D0_5E00
    assert r.x("a1") == M64
    assert r.x("a2") == 0x7FFF_FFFF
    assert r.x("a3") == 0
    assert r.f(14) == BOX | f32(-7.0)
    assert r.f(15) == f64(2.0**64)
    assert r.f(16) == BOX | CNAN_S
    assert r.f(17) == f64(-1.5)
    assert r.x("a6") == 0xFFFF_FFFF_0000_0000 | f32(-1.5)
    assert r.f(0) == BOX | 0x8000_0000
    assert r.x("a7") == f64(-1.0)
    assert r.f(1) == 0x1234
    assert r.st[FFLAGS_SLOT] == 16 | 1  # NV (NaN, negative to unsigned) | NX (2^64-1 -> double)


def test_fp_sign_injection_compare_classify() -> None:
    unboxed = f32(2.0)  # upper half zero
    r = run(
        [
            "fsgnj.s fa0, fa1, fa2",  # |1.0| with sign of -2 -> -1.0
            "fsgnjn.s fa3, fa1, fa1",  # fneg
            "fsgnjx.s fa4, fa2, fa2",  # fabs
            "fsgnj.s fa5, fa6, fa6",  # fmv.s of an unboxed value: canonical NaN
            "fsgnjn.d fa7, ft0, ft0",
            "feq.s a0, fa1, fa1",
            "flt.d a1, ft0, ft1",  # NaN operand: 0, NV
            "fle.s a2, fa2, fa1",
            "fclass.s a3, fa6",  # unboxed -> canonical NaN: quiet NaN class (bit 9)
            "fclass.d a4, ft0",  # +normal (bit 6)
            "fmin.d ft2, ft0, ft1",  # one quiet NaN: the other operand
            "fmax.s ft3, fa1, fa2",
        ],
        f={"f11": BOX | f32(1.0), "f12": BOX | f32(-2.0), "f16": unboxed, "f0": f64(2.0), "f1": CNAN_D},
    )
    assert r.f(10) == BOX | f32(-1.0)
    assert r.f(13) == BOX | f32(-1.0)
    assert r.f(14) == BOX | f32(2.0)
    assert r.f(15) == BOX | CNAN_S
    assert r.f(17) == f64(-2.0)
    assert (r.x("a0"), r.x("a1"), r.x("a2")) == (1, 0, 1)
    assert r.x("a3") == 1 << 9 and r.x("a4") == 1 << 6
    assert r.f(2) == f64(2.0) and r.f(3) == BOX | f32(1.0)
    assert r.st[FFLAGS_SLOT] == 16  # flt with a NaN operand signals invalid


def test_fma_variants() -> None:
    f = {"f1": f64(2.0), "f2": f64(3.0), "f3": f64(1.0)}
    r = run(
        ["fmadd.d fa0, ft1, ft2, ft3", "fmsub.d fa1, ft1, ft2, ft3", "fnmsub.d fa2, ft1, ft2, ft3",
         "fnmadd.d fa3, ft1, ft2, ft3", "fmadd.s fa4, fa5, fa5, fa5"],
        f=f | {"f15": BOX | f32(2.0)},
    )  # fmt: skip
    assert r.f(10) == f64(7.0) and r.f(11) == f64(5.0) and r.f(12) == f64(-5.0) and r.f(13) == f64(-7.0)
    assert r.f(14) == BOX | f32(6.0)


def test_fp_loads_stores_box() -> None:
    data = struct.pack("<f4xd", 1.5, 2.5)
    r = run(
        [*li("s0", DATA), "flw fa0, 0(s0)", "fld fa1, 8(s0)", "fsw fa2, 16(s0)", "fsd fa1, 24(s0)"],
        f={"f12": 0x1234_5678},  # not boxed: fsw stores the low bits anyway
        data=data,
    )
    assert r.f(10) == BOX | f32(1.5) and r.f(11) == f64(2.5)
    assert r.mem.read_u(DATA + 16, 4) == 0x1234_5678 and r.mem.read_u(DATA + 24, 8) == f64(2.5)
