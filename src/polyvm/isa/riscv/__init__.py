"""RISC-V 64 (RV64GC + Zba/Zbb/Zbs): decoder tables and lifts into the IR.

Each extension has its own file holding its encoding table (decodetree syntax, see
polyvm.isa.decodetree) and one `trans_<name>(b, f, insn)` per instruction, which lifts it with
`b` (an RVBuilder), its decoded fields `f` and the raw instruction word. A `trans_*` returning
False declines the instruction, which then raises an illegal-instruction exception.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from polyvm.ir import Block
from polyvm.isa import SLOT_PC, Arch
from polyvm.isa.decodetree import DecodeTable
from polyvm.isa.riscv import rv64a, rv64c, rv64fd, rv64i, rv64m, zb, zicsr
from polyvm.isa.riscv.common import (
    F0_SLOT,
    FFLAGS_SLOT,
    FORMATS32,
    FRM_SLOT,
    HELPERS,
    M64,
    NSLOTS,
    RES_ADDR_SLOT,
    RES_VALID_SLOT,
    X0_SLOT,
    RVBuilder,
)
from polyvm.memory import PAGE_SHIFT, PAGE_SIZE, MemoryFault

__all__ = [
    "RISCV64",
    "RiscV64",
    "X0_SLOT",
    "F0_SLOT",
    "FFLAGS_SLOT",
    "FRM_SLOT",
    "RES_ADDR_SLOT",
    "RES_VALID_SLOT",
    "NSLOTS",
    "ABI_NAMES",
    "FP_ABI_NAMES",
    "fcsr_read",
    "fcsr_write",
    "decode32",
    "decode16",
]

EXTENSIONS32 = (rv64i, rv64m, rv64a, rv64fd, zicsr, zb)

ABI_NAMES = (
    "zero ra sp gp tp t0 t1 t2 s0 s1 a0 a1 a2 a3 a4 a5 a6 a7 s2 s3 s4 s5 s6 s7 s8 s9 s10 s11 t3 t4 t5 t6"
).split()
FP_ABI_NAMES = (
    "ft0 ft1 ft2 ft3 ft4 ft5 ft6 ft7 fs0 fs1 fa0 fa1 fa2 fa3 fa4 fa5 fa6 fa7 "
    "fs2 fs3 fs4 fs5 fs6 fs7 fs8 fs9 fs10 fs11 ft8 ft9 ft10 ft11"
).split()


def _handlers() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mod in (*EXTENSIONS32, rv64c):
        for name, fn in vars(mod).items():
            if name.startswith("trans_"):
                if name in out and out[name] is not fn:
                    raise ValueError(f"{name} defined twice")
                out[name] = fn
    return out


_HANDLERS = _handlers()
# (built at their first decode: a run whose code all comes from the cache decodes nothing)
# (kept between runs where the cache keeps them: `decodetree.persist`)
decode32 = DecodeTable(
    FORMATS32 + "".join(m.PATTERNS for m in EXTENSIONS32),
    32,
    handlers=_HANDLERS,
    lazy=True,
    keep="riscv-decode32",
)
decode16 = DecodeTable(
    rv64c.FORMATS16 + rv64c.PATTERNS,
    16,
    functions=rv64c.FUNCTIONS,
    handlers=_HANDLERS,
    lazy=True,
    keep="riscv-decode16",
)


def fcsr_read(state: list[int]) -> int:
    """fcsr as the guest sees it: frm in bits 7:5, fflags in bits 4:0."""
    return (state[FRM_SLOT] & 7) << 5 | (state[FFLAGS_SLOT] & 0x1F)


def fcsr_write(state: list[int], value: int) -> None:
    state[FFLAGS_SLOT] = value & 0x1F
    state[FRM_SLOT] = (value >> 5) & 7


def _regs() -> dict[str, tuple[int, int]]:
    regs: dict[str, tuple[int, int]] = {"pc": (SLOT_PC, 64)}
    for i in range(32):
        regs[f"x{i}"] = (X0_SLOT + i, 64)
    for i, n in enumerate(ABI_NAMES):
        regs[n] = (X0_SLOT + i, 64)
    regs["fp"] = (X0_SLOT + 8, 64)
    for i in range(32):
        regs[f"f{i}"] = (F0_SLOT + i, 64)
    for i, n in enumerate(FP_ABI_NAMES):
        regs[n] = (F0_SLOT + i, 64)
    regs["fflags"] = (FFLAGS_SLOT, 5)
    regs["frm"] = (FRM_SLOT, 3)
    return regs


def _capstone() -> tuple[int, int] | None:
    try:
        import capstone
    except ImportError:  # only --trace needs it
        return None
    return (capstone.CS_ARCH_RISCV, capstone.CS_MODE_RISCV64 | capstone.CS_MODE_RISCVC)


class RiscV64(Arch):
    name = "riscv64"
    nslots = NSLOTS
    regs = _regs()
    helpers = HELPERS
    max_insn_size = 4

    @property
    def capstone(self) -> tuple[int, int] | None:  # type: ignore[override]
        # Imported on first use (--trace): capstone costs ~35 ms at startup otherwise.
        return _capstone()

    @staticmethod
    def native_emit(name, b, args, consts, get_slot):  # type: ignore[no-untyped-def]
        """Native (LLVM) fast paths of the FP helpers, for the JIT (see fpnative)."""
        from polyvm.isa.riscv import fpnative

        return fpnative.emit(name, b, args, consts, get_slot)

    @property
    def x64_shortcuts(self) -> dict[str, tuple[str, int, int, int, int, int]]:
        """For the x86-64 first tier: helper -> (kind, opcode, fflags slot, frm slot, NX bit,
        the dynamic rounding mode's rm) of `fptables.X64_NX_SHORTCUT`."""
        from polyvm.isa.riscv import fptables
        from polyvm.isa.riscv.common import FFLAGS_SLOT, FRM_SLOT

        return {
            n: (kind, op, FFLAGS_SLOT, FRM_SLOT, fptables.NX, 7)
            for n, (kind, op) in fptables.X64_NX_SHORTCUT.items()
        }

    @property
    def ir_shortcuts(self) -> dict[str, tuple[str, tuple[int, ...], int, int, int, int, int, str]]:
        """For the hot tier: helper -> (operation, operand signs, rm argument index, fflags
        slot, frm slot, NX bit, the dynamic rounding mode's rm, LLVM's FP type) of
        `fptables.IR_NX_SHORTCUT`."""
        from polyvm.isa.riscv import fptables
        from polyvm.isa.riscv.common import FFLAGS_SLOT, FRM_SLOT

        return {
            n: (op, signs, rm, FFLAGS_SLOT, FRM_SLOT, fptables.NX, 7, ty)
            for n, (op, signs, rm, ty) in fptables.IR_NX_SHORTCUT.items()
        }

    @property
    def native_names(self) -> frozenset[str]:
        """The helpers native_emit has a fast path for."""
        from polyvm.isa.riscv import fptables

        return fptables.NATIVE

    @staticmethod
    def native_consts(name, consts):  # type: ignore[no-untyped-def]
        from polyvm.isa.riscv import fptables

        return fptables.native_consts(name, consts)

    def prepare(self) -> None:
        decode32.build()
        decode16.build()

    def lift_block(
        self,
        fetch: Callable[[int, int], bytes],
        pc: int,
        max_insns: int,
        stop_before: Callable[[int], bool] | None = None,
    ) -> Block:
        b = RVBuilder(pc, HELPERS)
        page = pc >> PAGE_SHIFT
        addr = pc
        n = 0
        d16, d32 = decode16.decode, decode32.decode
        # Bytes from buf_at on, fetched 256 at a time but never past the page's end (access
        # rights are per page, so this faults exactly where 2-byte fetches would); at least
        # two, which at an odd page's last byte reaches into the next page as a 2-byte fetch.
        buf, buf_at = b"", addr

        def chunk(a: int) -> bytes:
            return fetch(a, max(2, min(256, PAGE_SIZE - (a & (PAGE_SIZE - 1)))))

        while True:
            # Halves of an instruction come from the buffer, refilled per halfword as needed,
            # so that a 32-bit instruction straddling into an unmapped page faults at the
            # address of its upper half.
            try:
                o = addr - buf_at
                if not 0 <= o <= len(buf) - 2:
                    buf, buf_at, o = chunk(addr), addr, 0
                word = buf[o] | buf[o + 1] << 8
                if word & 3 == 3:
                    o += 2
                    if o > len(buf) - 2:
                        a2 = (addr + 2) & M64
                        buf, buf_at, o = chunk(a2), a2, 0
                    word |= (buf[o] | buf[o + 1] << 8) << 16
                    size = 4
                else:
                    size = 2
            except MemoryFault as e:
                if n == 0:
                    b.exit("fetch_fault", pc, pc, info=e.addr)
                break
            m = d32(word) if size == 4 else d16(word)
            ok = False
            if m is not None:
                pat, f = m
                b.begin(addr, size, pat.name if size == 4 else "c." + pat.name)
                b.ipc, b.isize, b.word = addr, size, word
                ok = pat.handler(b, f, word) is not False
                if not ok:
                    b.drop_current()
                    b.term = None
            if not ok:
                if n == 0:
                    b.exit("illegal", pc, pc, info=word)
                break
            n += 1
            addr = (addr + size) & M64
            # A block may run on into the next page (the engine watches every page a block
            # spans), but not further: that bounds what one store must invalidate.
            if b.done or n >= max_insns or (addr >> PAGE_SHIFT) - page > 1:
                break
            if stop_before is not None and stop_before(addr):
                break
        return b.finish()


RISCV64 = RiscV64()
