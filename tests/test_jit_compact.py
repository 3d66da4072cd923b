"""The compact first tier stays on LLVM's fast instruction selector, and `polyvm aot`'s
worker pool finds what one process finds and reports a dead worker.

The fast-isel checks run in a child process with LLVM's `-fast-isel-abort=3`: any
instruction, call or terminator that fast isel cannot lower aborts that process with
"LLVM ERROR: FastISel missed ..." instead of silently falling back to the slow selector.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llvmlite") is None, reason="the JIT needs llvmlite")

_PRELUDE = """
import llvmlite.binding as llvm
from polyvm.engine.jit import Compiler
Compiler.get().runtime()  # (the dispatcher is made by the optimizing code generator)
llvm.set_option("", "-fast-isel-abort=3")
"""


def _child(body: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, POLYVM_CACHE="0", POLYVM_JIT_BACKGROUND="0")
    code = _PRELUDE + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_compact_region_compiles_without_fallback() -> None:
    """Loads and stores of every width, a rotate, a loop (backward edge, budget), a call and
    its return (an indirect jump: a compare chain over the return sites), all in first-tier
    regions. Expected values by hand: the low byte of a1 rotated right by 8 each time round,
    0x88, 0x77, ..., 0x11, 0x88, 0x77: 0x264 + 0xff = 0x363; ten calls."""
    r = _child(
        """
        from polyvm.api import Emulator, PROT_ALL, PROT_READ, PROT_WRITE
        from polyvm.isa.riscv.asm import li, program
        BASE, DATA = 0x10000, 0x40000
        code = program(li("a0", DATA) + li("a1", 0x1122334455667788) + li("t0", 10) + [
            "sd a1, 0(a0)", "ld a2, 0(a0)", "sw a2, 8(a0)", "lw a3, 8(a0)",       # loop:
            "sh a3, 12(a0)", "lhu a4, 12(a0)", "sb a4, 14(a0)", "lbu a5, 14(a0)",
            "rori a1, a1, 8", "add s0, s0, a5", "jal ra, 16", "addi t0, t0, -1",
            "bne t0, zero, -48", "jal zero, 12",
            "addi s1, s1, 1", "jalr zero, 0(ra)",                                             # f:
            "addi s2, zero, 7",                                                     # end
        ])
        emu = Emulator("riscv64", engine="jit")
        emu.mem_map(BASE, 0x4000, PROT_ALL)
        emu.mem_map(DATA, 0x4000, PROT_READ | PROT_WRITE)
        emu.mem_write(BASE, code)
        emu.emu_start(BASE, until=BASE + len(code))
        print(emu.reg_read("s0"), emu.reg_read("s1"), emu.reg_read("s2"))
        """
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == [str(0x363), "10", "7"]


def test_return_to_many_call_sites() -> None:
    """A function called from six places: its return is an indirect jump over six return
    sites (a binary search of compares in the compact form), each return must come back to
    its own site (all six calls counted, then the end reached)."""
    r = _child(
        """
        from polyvm.api import Emulator, PROT_ALL
        from polyvm.isa.riscv.asm import program
        BASE = 0x10000
        calls = [f"jal ra, {(7 - k) * 4}" for k in range(6)]
        code = program(calls + ["jal zero, 12", "addi s1, s1, 1", "jalr zero, 0(ra)", "addi s2, zero, 7"])
        emu = Emulator("riscv64", engine="jit")
        emu.mem_map(BASE, 0x4000, PROT_ALL)
        emu.mem_write(BASE, code)
        emu.emu_start(BASE, until=BASE + len(code))
        print(emu.reg_read("s1"), emu.reg_read("s2"), emu.instructions)
        """
    )
    assert r.returncode == 0, r.stderr[-2000:]
    # 6 calls + 6 x (addi, ret) + the jump + the last addi = 20 instructions
    assert r.stdout.split() == ["6", "7", "20"]


def test_the_check_catches_a_fallback() -> None:
    """The harness itself: a `switch` (what the compact form avoids) makes fast isel give up,
    and the child aborts."""
    r = _child(
        """
        c = Compiler.get()
        fn = '''define i64 @pv_switch(i64 %x) {
        entry:
          switch i64 %x, label %a [i64 1, label %b]
        a:
          ret i64 0
        b:
          ret i64 1
        }'''
        c.compile(c.module_text([fn], {}), 0)
        print("compiled")
        """
    )
    assert r.returncode != 0 and "compiled" not in r.stdout
    assert "FastISel missed terminator" in r.stderr


def _load(path: str):
    from polyvm.linux.process import Process

    return Process.from_file(path, [path], env=[], quiet=True)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the worker pool needs fork")
def test_aot_pool_finds_what_one_process_finds() -> None:
    from polyvm import aot as A
    from polyvm.testing.guest import build_guest

    path = build_guest("t_misc")
    proc = _load(path)
    alone, ranges = A.find_functions(proc, path)
    assert len(alone) > 50  # libc and the program: enough to share out
    proc2 = _load(path)
    pool = A._ForkPool(2, A._Work(proc2.isa, proc2.mem, A._exec_ranges(proc2.mem)))
    try:
        shared, ranges2 = A.find_functions(proc2, path, pool=pool)
    finally:
        pool.close()
    assert shared == alone and ranges2 == ranges


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the worker pool needs fork")
def test_aot_pool_reports_a_dead_worker() -> None:
    from polyvm import aot as A
    from polyvm.testing.guest import build_guest

    path = build_guest("hello")
    proc = _load(path)
    pool = A._ForkPool(2, A._Work(proc.isa, proc.mem, A._exec_ranges(proc.mem)))
    try:
        os.kill(pool.pids[1], signal.SIGKILL)
        with pytest.raises(RuntimeError, match="worker died"):
            pool.run("decodes", [proc.image.entry + 2 * i for i in range(8)])
    finally:
        pool.close()


@pytest.mark.parametrize("next_page", [True, False])
def test_lift_at_a_pages_last_bytes(next_page: bool) -> None:
    """Lifting fetches up to 256 bytes at a time, never past the page: a 4-byte instruction at
    an odd address whose upper half starts on the page's last byte still decodes when the next
    page is there, and faults at the next page's first byte when it is not (what fetching two
    bytes at a time gives)."""
    from polyvm.isa.riscv import RISCV64
    from polyvm.isa.riscv.asm import asm
    from polyvm.memory import PROT_ALL, AddressSpace

    mem = AddressSpace()
    mem.map(0x10000, 0x2000 if next_page else 0x1000, PROT_ALL)
    pc = 0x10FFD
    word = asm("addi a0, a0, 1")
    if next_page:
        mem.write(pc, word.to_bytes(4, "little"))
    else:
        mem.write(pc, word.to_bytes(4, "little")[:3])
    b = RISCV64.lift_block(mem.fetch, pc, 4)
    if next_page:
        assert b.insns and b.insns[0].pc == pc and b.insns[0].size == 4
    else:
        assert not b.insns and b.term.kind == "exit" and b.term.reason == "fetch_fault"
        assert b.term.info == 0x11000
