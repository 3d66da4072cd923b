"""The Unicorn-style Emulator API on hand-assembled RISC-V code (expected values by hand).

Every Emulator test runs on each engine (`engine=`): the reference interpreter, the JIT, the
auto tier, and the JIT forced to hand over to the interpreter every 2 blocks.
"""

from __future__ import annotations

import importlib.util
import struct

import pytest

from polyvm.api import PROT_READ, Emulator, EmulatorError

_no_llvm = pytest.mark.skipif(importlib.util.find_spec("llvmlite") is None, reason="the JIT needs llvmlite")


def _switching(arch, mem):
    from polyvm.engine.jit import JitEngine

    return JitEngine(arch, mem, tier="jit", switch_every=2)


ENGINES = {"interp": "interp", "jit": "jit", "auto": "auto", "switch2": _switching}


@pytest.fixture(params=[pytest.param(k, marks=() if k == "interp" else _no_llvm) for k in ENGINES])
def engine(request: pytest.FixtureRequest):
    """What `Emulator(engine=...)` gets: a name or a factory."""
    return ENGINES[request.param]


def i_type(op: int, rd: int, f3: int, rs1: int, imm: int) -> int:
    return ((imm & 0xFFF) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op


def r_type(op: int, rd: int, f3: int, rs1: int, rs2: int, f7: int) -> int:
    return (f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op


def b_type(rs1: int, rs2: int, f3: int, off: int) -> int:
    return (
        (((off >> 12) & 1) << 31)
        | (((off >> 5) & 0x3F) << 25)
        | (rs2 << 20)
        | (rs1 << 15)
        | (f3 << 12)
        | (((off >> 1) & 0xF) << 8)
        | (((off >> 11) & 1) << 7)
        | 0x63
    )


def s_type(rs1: int, rs2: int, f3: int, imm: int) -> int:
    return (((imm >> 5) & 0x7F) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 0x1F) << 7) | 0x23


def asm(*words: int) -> bytes:
    return b"".join(struct.pack("<I", w) for w in words)


A0, A1, A2, SP = 10, 11, 12, 2
# sum = 0; for (n = 10; n != 0; n--) sum += n;   -> 55
SUM_LOOP = asm(
    i_type(0x13, A0, 0, 0, 0),  # li a0, 0
    i_type(0x13, A1, 0, 0, 10),  # li a1, 10
    r_type(0x33, A0, 0, A0, A1, 0),  # loop: add a0, a0, a1
    i_type(0x13, A1, 0, A1, -1),  # addi a1, a1, -1
    b_type(A1, 0, 1, -8),  # bnez a1, loop
)
BASE = 0x10000


def make(code: bytes, engine="interp") -> Emulator:
    emu = Emulator("riscv64", engine=engine)
    emu.mem_map(BASE, 0x1000)
    emu.mem_write(BASE, code)
    return emu


def test_run_until_and_registers(engine) -> None:
    emu = make(SUM_LOOP, engine)
    emu.emu_start(BASE, until=BASE + len(SUM_LOOP))
    assert emu.reg_read("a0") == 55 and emu.reg_read("x10") == 55
    assert emu.reg_read("pc") == BASE + len(SUM_LOOP)
    assert emu.instructions == 2 + 3 * 10


def test_code_hook_sees_every_instruction_and_can_stop(engine) -> None:
    emu = make(SUM_LOOP, engine)
    seen: list[int] = []

    def hook(e: Emulator, pc: int, size: int, data: object) -> None:
        seen.append(pc)
        if len(seen) == 7:
            e.emu_stop()

    emu.hook_add("code", hook)
    stop = emu.emu_start(BASE, until=BASE + len(SUM_LOOP))
    assert stop.reason == "stopped"
    # li, li, add, addi, bnez, add, addi(stopped before it ran)
    assert seen == [BASE, BASE + 4, BASE + 8, BASE + 12, BASE + 16, BASE + 8, BASE + 12]
    assert emu.reg_read("a0") == 10 + 9 and emu.reg_read("a1") == 9
    assert emu.reg_read("pc") == BASE + 12


def test_step_and_count(engine) -> None:
    emu = make(SUM_LOOP, engine)
    emu.reg_write("pc", BASE)
    assert emu.step() is None and emu.reg_read("pc") == BASE + 4
    emu.emu_start(BASE, count=4)
    assert emu.reg_read("a0") == 10 and emu.reg_read("a1") == 9


def test_memory_hooks_and_fault(engine) -> None:
    code = asm(
        s_type(SP, A0, 3, 8),  # sd a0, 8(sp)
        i_type(0x03, A1, 3, SP, 8),  # ld a1, 8(sp)
        i_type(0x03, A2, 3, 0, 0),  # ld a2, 0(zero) -> fault
    )
    emu = make(code, engine)
    emu.mem_map(0x20000, 0x1000)
    emu.reg_write("sp", 0x20000)
    emu.reg_write("a0", 0x1122334455667788)
    log: list[tuple[str, int, int, int]] = []
    emu.hook_add("mem_write", lambda e, acc, addr, size, val, d: log.append((acc, addr, size, val)))
    emu.hook_add("mem_read", lambda e, acc, addr, size, val, d: log.append((acc, addr, size, val)))
    with pytest.raises(EmulatorError) as ei:
        emu.emu_start(BASE, until=BASE + len(code))
    assert ei.value.stop.reason == "fault" and ei.value.stop.addr == 0
    assert emu.reg_read("pc") == BASE + 8  # precise: the faulting ld
    assert emu.reg_read("a1") == 0x1122334455667788
    assert log == [("w", 0x20008, 8, 0x1122334455667788), ("r", 0x20008, 8, 0x1122334455667788)]


def test_write_protection_fault_is_precise(engine) -> None:
    code = asm(i_type(0x13, A1, 0, 0, 7), s_type(SP, A1, 2, 0))  # li a1,7; sw a1,0(sp)
    emu = make(code, engine)
    emu.mem_map(0x20000, 0x1000, PROT_READ)
    emu.reg_write("sp", 0x20000)
    with pytest.raises(EmulatorError) as ei:
        emu.emu_start(BASE, until=BASE + len(code))
    st = ei.value.stop
    assert (st.reason, st.access, st.mapped, st.pc) == ("fault", "w", True, BASE + 4)
    assert emu.reg_read("a1") == 7 and emu.instructions == 1


def test_illegal_instruction(engine) -> None:
    emu = make(asm(i_type(0x13, A0, 0, 0, 1), 0xFFFFFFFF), engine)
    with pytest.raises(EmulatorError) as ei:
        emu.emu_start(BASE, until=BASE + 8)
    assert ei.value.stop.reason == "illegal" and ei.value.stop.pc == BASE + 4
    assert emu.reg_read("a0") == 1


def _smc_code() -> bytes:
    # The code rewrites its own `addi a0, a0, 1` (at BASE+8) into `addi a0, a0, 100`.
    new = i_type(0x13, A0, 0, A0, 100)
    assert new & 0x800 == 0
    return asm(
        (new & 0xFFFFF000) | (A1 << 7) | 0x37,  # lui a1, hi(new)
        i_type(0x13, A1, 0, A1, new & 0xFFF),  # addi a1, a1, lo(new)
        i_type(0x13, A0, 0, A0, 1),  # BASE+8: addi a0, a0, 1
        s_type(A2, A1, 2, 0),  # BASE+12: sw a1, 0(a2)
        0x0000100F,  # BASE+16: fence.i
        i_type(0x67, 0, 0, A2, 0),  # BASE+20: jalr x0, 0(a2)
    )


@pytest.mark.parametrize("mode", ["blocks", "step"])
def test_self_modifying_code_is_seen_after_fence_i(mode: str, engine) -> None:
    emu = make(_smc_code(), engine)
    emu.reg_write("a2", BASE + 8)
    if mode == "step":
        emu.emu_start(BASE, count=7)  # lui, addi, addi(+1), sw, fence.i, jalr, addi(+100)
    else:
        emu.emu_start(BASE, until=BASE + 20)
        assert emu.reg_read("a0") == 1
        emu.emu_start(BASE + 20, until=BASE + 12)  # jalr, then the patched addi
    assert emu.reg_read("a0") == 101


def test_two_emulators_do_not_interfere(engine) -> None:
    a, b = make(SUM_LOOP, engine), make(SUM_LOOP, engine)
    b.mem_write(BASE + 4, asm(i_type(0x13, A1, 0, 0, 4)))  # li a1, 4 in b only
    a.emu_start(BASE, until=BASE + len(SUM_LOOP))
    b.emu_start(BASE, until=BASE + len(SUM_LOOP))
    assert a.reg_read("a0") == 55 and b.reg_read("a0") == 10


A3, A4 = 13, 14
# sum = 0; for (n = 100; n; n--) { if (n & 1) sum += 3; sum += 1; }  -> 250
BRANCHY_LOOP = asm(
    i_type(0x13, A0, 0, 0, 0),  # li a0, 0
    i_type(0x13, A1, 0, 0, 100),  # li a1, 100
    i_type(0x13, A2, 7, A1, 1),  # loop: andi a2, a1, 1
    b_type(A2, 0, 0, 8),  # beqz a2, skip
    i_type(0x13, A0, 0, A0, 3),  # addi a0, a0, 3
    i_type(0x13, A0, 0, A0, 1),  # skip: addi a0, a0, 1
    i_type(0x13, A1, 0, A1, -1),  # addi a1, a1, -1
    b_type(A1, 0, 1, -20),  # bnez a1, loop
)


@pytest.mark.parametrize("regions", [True, False])
def test_multi_block_loop(regions: bool, engine) -> None:
    emu = make(BRANCHY_LOOP, engine)
    getattr(emu.engine, "interp", emu.engine).regions = regions  # (a JIT's own interpreter)
    emu.emu_start(BASE, until=BASE + len(BRANCHY_LOOP))
    assert emu.reg_read("a0") == 250
    assert emu.instructions == 2 + 50 * 6 + 50 * 5


# for (;;) { a3 += *(u64*)a4; a4 += 8; if (a4 & 8) a0++; }  -> faults reading past the page
FAULTING_LOOP = asm(
    i_type(0x03, A2, 3, A4, 0),  # loop: ld a2, 0(a4)
    r_type(0x33, A3, 0, A3, A2, 0),  # add a3, a3, a2
    i_type(0x13, A4, 0, A4, 8),  # addi a4, a4, 8
    i_type(0x13, A1, 7, A4, 8),  # andi a1, a4, 8
    b_type(A1, 0, 0, 8),  # beqz a1, skip
    i_type(0x13, A0, 0, A0, 1),  # addi a0, a0, 1
    b_type(0, 0, 0, -24),  # skip: beq zero, zero, loop
)


@pytest.mark.parametrize("regions", [True, False])
def test_fault_inside_loop_region_is_precise(regions: bool, engine) -> None:
    emu = make(FAULTING_LOOP, engine)
    getattr(emu.engine, "interp", emu.engine).regions = regions  # (a JIT's own interpreter)
    emu.mem_map(0x20000, 0x1000)
    emu.mem_write(0x20000, b"".join(struct.pack("<Q", i) for i in range(512)))
    emu.reg_write("a4", 0x20000)
    with pytest.raises(EmulatorError) as ei:
        emu.emu_start(BASE)
    st = ei.value.stop
    assert (st.reason, st.addr, st.pc) == ("fault", 0x21000, BASE)
    assert emu.reg_read("a3") == sum(range(512))
    assert emu.reg_read("a4") == 0x21000 and emu.reg_read("a0") == 256
    # per iteration: ld, add, addi, andi, beqz, [addi when a4 & 8: 256 times], beq
    assert emu.instructions == 256 * 7 + 256 * 6


def test_host_view_is_guest_memory() -> None:
    from polyvm.memory import PROT_READ, PROT_WRITE, AddressSpace

    mem = AddressSpace()
    mem.map(0x40000, 0x3000, PROT_READ | PROT_WRITE)
    mem.map(0x43000, 0x1000, PROT_READ | PROT_WRITE)  # a separate mapping right after
    view = mem.host_view(0x40FF8, 0x10)  # straddles a page boundary inside one mapping
    assert view is not None and len(view) == 0x10
    view[:] = bytes(range(16))
    assert mem.read(0x40FF8, 16) == bytes(range(16))
    mem.write(0x41000, b"\xaa")
    assert view[8] == 0xAA
    assert mem.host_view(0x42FF8, 0x10) is None  # crosses into another mapping
    mem.protect(0x41000, 0x1000, PROT_READ)
    assert mem.host_view(0x40FF8, 0x10) is None  # not writable any more
    assert mem.host_view(0x50000, 4) is None  # unmapped


def test_store_into_second_page_of_a_block_invalidates_it(engine) -> None:
    # A block that starts near a page end and runs on into the next page is dropped when
    # code in its second page is written.
    start = BASE + 0xFF8
    code = asm(
        i_type(0x13, A0, 0, A0, 1),  # BASE+0xFF8
        i_type(0x13, A0, 0, A0, 1),  # BASE+0xFFC
        i_type(0x13, A0, 0, A0, 1),  # BASE+0x1000: patched to +100 below
        b_type(0, 0, 0, 8),  # beq zero, zero, +8 (ends the block)
    )
    emu = Emulator("riscv64", engine=engine)
    emu.mem_map(BASE, 0x2000)
    emu.mem_write(start, code)
    emu.emu_start(start, until=start + 20)
    assert emu.reg_read("a0") == 3
    emu.mem_write(BASE + 0x1000, asm(i_type(0x13, A0, 0, A0, 100)))
    emu.emu_start(start, until=start + 20)
    assert emu.reg_read("a0") == 3 + 102


# ---- Linux programs through the same API ---------------------------------------------------
NR_WRITEV, NR_EXIT_GROUP = 66, 94  # asm-generic numbers (riscv64)


@pytest.fixture(scope="module")
def hello_path() -> str:
    from polyvm.testing.guest import build_guest

    return str(build_guest("hello"))


def test_program_syscall_hook_observes_and_answers(hello_path: str, tmp_path, engine) -> None:
    from polyvm.api import load

    out = tmp_path / "out"
    with open(out, "wb") as f:
        prog = load(hello_path, ["hello", "x"], stdout=f.fileno(), engine=engine)
        seen: list[tuple[int, list[int]]] = []

        def on_syscall(p, nr: int, args: list[int], data: object) -> int | None:
            seen.append((nr, args))
            if nr == NR_WRITEV:  # swallow the output: pretend every byte was written
                iov, cnt = args[1], args[2]  # struct iovec { void *base; size_t len; }
                return sum(int.from_bytes(p.mem_read(iov + 16 * i + 8, 8), "little") for i in range(cnt))
            return None

        prog.hook_add("syscall", on_syscall)
        assert prog.run(timeout=60) == 3
    assert out.read_bytes() == b""  # the hook answered every writev
    nrs = [nr for nr, _ in seen]
    assert NR_WRITEV in nrs and nrs[-1] == NR_EXIT_GROUP and seen[-1][1][0] == 3


def test_program_step_and_registers(hello_path: str, tmp_path) -> None:
    from polyvm.api import Program

    with open(hello_path, "rb") as f:
        entry = int.from_bytes(f.read(32)[24:32], "little")
    with open(tmp_path / "out", "wb") as f:
        prog = Program(hello_path, ["hello"], stdout=f.fileno())
        assert prog.reg_read("pc") == entry
        assert prog.reg_read("sp") % 16 == 0
        first: list[int] = []
        h = prog.hook_add("code", lambda p, pc, size, d: first.append(pc))
        steps = 0
        status = None
        while status is None:
            status = prog.step()
            steps += 1
            if steps == 3:
                prog.hook_del(h)
        assert status == 3
    assert first == [entry, entry + 4, entry + 8]  # _start: auipc, addi (4 bytes each), then c.li
    assert steps == prog.instructions  # one instruction per step, the ecalls included


def test_step_of_a_self_loop_is_one_instruction(engine) -> None:
    emu = make(asm(0x0000006F), engine)  # j . (jal x0, 0)
    emu.reg_write("pc", BASE)
    assert emu.step() is None
    assert emu.instructions == 1 and emu.reg_read("pc") == BASE
    emu.emu_start(BASE, count=5)
    assert emu.instructions == 6


def test_hook_register_write_then_stop_is_kept(engine) -> None:
    emu = make(SUM_LOOP, engine)

    def hook(e: Emulator, pc: int, size: int, data: object) -> None:
        if pc == BASE + 8:  # before the first add
            e.reg_write("a0", 1000)
            e.emu_stop()

    emu.hook_add("code", hook)
    emu.emu_start(BASE, until=BASE + len(SUM_LOOP))
    assert emu.reg_read("a0") == 1000 and emu.reg_read("pc") == BASE + 8


def test_retranslation_does_not_grow_the_engine(engine) -> None:
    emu = make(SUM_LOOP, engine)
    for _ in range(50):
        emu.mem_write(BASE, SUM_LOOP)  # a write to the code page drops its translations
        emu.emu_start(BASE, until=BASE + len(SUM_LOOP))
    assert emu.reg_read("a0") == 55
    interp = getattr(emu.engine, "interp", emu.engine)  # a JIT's own interpreter
    assert len(interp.exits) <= 2
