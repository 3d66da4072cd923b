"""Zicsr: the user-level CSRs fflags, frm, fcsr and the counters cycle, time, instret.

Any other CSR, and any write to a read-only counter, is an illegal instruction (decided when the
instruction is lifted, as the CSR number and the write/no-write choice are in the encoding).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from polyvm.ir import Val, helper
from polyvm.isa import SLOT_ICOUNT
from polyvm.isa.decodetree import Args
from polyvm.isa.riscv.common import FFLAGS_SLOT, FRM_SLOT, HELPERS, RVBuilder

PATTERNS = r"""
csrrw    ............ ..... 001 ..... 1110011  @csr
csrrs    ............ ..... 010 ..... 1110011  @csr
csrrc    ............ ..... 011 ..... 1110011  @csr
csrrwi   ............ ..... 101 ..... 1110011  @csr
csrrsi   ............ ..... 110 ..... 1110011  @csr
csrrci   ............ ..... 111 ..... 1110011  @csr
"""

CSR_FFLAGS = 0x001
CSR_FRM = 0x002
CSR_FCSR = 0x003
CSR_CYCLE = 0xC00
CSR_TIME = 0xC01
CSR_INSTRET = 0xC02

TIMEBASE_HZ = 10_000_000  # `time` ticks (what Linux reports as timebase-frequency on QEMU virt)


@helper(HELPERS, "rdtime", (), 64)
def rdtime() -> int:
    return time.monotonic_ns() // (1_000_000_000 // TIMEBASE_HZ)


def _read(b: RVBuilder, csr: int) -> Val:
    if csr == CSR_FFLAGS:
        return b.get(FFLAGS_SLOT)
    if csr == CSR_FRM:
        return b.get(FRM_SLOT)
    if csr == CSR_FCSR:
        return b.or_(b.shl(b.get(FRM_SLOT), b.c64(5)), b.get(FFLAGS_SLOT))
    if csr == CSR_TIME:
        return b.call("rdtime")  # type: ignore[return-value]
    # cycle = instret: one instruction per cycle. The engine adds a block's instructions to
    # SLOT_ICOUNT when the block ends, so add the ones retired before this one in the block.
    return b.add(b.get(SLOT_ICOUNT), b.c64(len(b.insns) - 1))


def _write(b: RVBuilder, csr: int, v: Val) -> None:
    if csr == CSR_FFLAGS:
        b.put(FFLAGS_SLOT, b.and_(v, b.c64(0x1F)))
    elif csr == CSR_FRM:
        b.put(FRM_SLOT, b.and_(v, b.c64(7)))
    else:
        b.put(FFLAGS_SLOT, b.and_(v, b.c64(0x1F)))
        b.put(FRM_SLOT, b.and_(b.lshr(v, b.c64(5)), b.c64(7)))


def _csr(b: RVBuilder, f: Args, src: Val, write: bool, op: Callable[[RVBuilder, Val, Val], Val]) -> bool:
    csr = f.csr
    if csr in (CSR_CYCLE, CSR_TIME, CSR_INSTRET):
        if write:
            return False
        b.set_x(f.rd, _read(b, csr))
        # End the block: a counter read inside a self-looping block would miss the iterations
        # the engine has not yet added to SLOT_ICOUNT.
        b.jump(b.c64(b.next_pc))
        return True
    if csr not in (CSR_FFLAGS, CSR_FRM, CSR_FCSR):
        return False
    old = _read(b, csr)
    if write:
        _write(b, csr, op(b, old, src))
    b.set_x(f.rd, old)
    return True


def _set(b: RVBuilder, old: Val, src: Val) -> Val:
    return b.or_(old, src)


def _clear(b: RVBuilder, old: Val, src: Val) -> Val:
    return b.and_(old, b.not_(src))


def _replace(b: RVBuilder, old: Val, src: Val) -> Val:
    return src


def trans_csrrw(b: RVBuilder, f: Args, insn: int) -> bool:
    return _csr(b, f, b.x(f.rs1), True, _replace)


def trans_csrrs(b: RVBuilder, f: Args, insn: int) -> bool:
    return _csr(b, f, b.x(f.rs1), f.rs1 != 0, _set)


def trans_csrrc(b: RVBuilder, f: Args, insn: int) -> bool:
    return _csr(b, f, b.x(f.rs1), f.rs1 != 0, _clear)


def trans_csrrwi(b: RVBuilder, f: Args, insn: int) -> bool:
    return _csr(b, f, b.c64(f.rs1), True, _replace)


def trans_csrrsi(b: RVBuilder, f: Args, insn: int) -> bool:
    return _csr(b, f, b.c64(f.rs1), f.rs1 != 0, _set)


def trans_csrrci(b: RVBuilder, f: Args, insn: int) -> bool:
    return _csr(b, f, b.c64(f.rs1), f.rs1 != 0, _clear)
