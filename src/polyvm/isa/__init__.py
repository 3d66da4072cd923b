"""Instruction sets: decoders and semantics, lifted into the IR. Engines know none of this."""

from __future__ import annotations

from collections.abc import Callable

from polyvm.ir import Block, HelperRegistry

# Slots every architecture's state starts with; the ISA's own registers follow.
SLOT_PC = 0
SLOT_ICOUNT = 1  # instructions retired by this CPU (all engines keep it exact)
FIRST_ISA_SLOT = 2


class Arch:
    """What an engine needs from an ISA: the state layout and a block lifter."""

    name: str = "?"
    nslots: int = FIRST_ISA_SLOT
    # Register name -> (slot, width); 128-bit registers take two slots (low first).
    regs: dict[str, tuple[int, int]] = {}
    helpers: HelperRegistry
    max_insn_size: int = 4
    capstone: tuple[int, int] | None = None  # (CS_ARCH_*, CS_MODE_*) for --trace

    def new_state(self) -> list[int]:
        return [0] * self.nslots

    def prepare(self) -> None:
        """Build what decoding needs now rather than at the first decode (`polyvm cache
        prepare`: tables kept between runs are then there for a program's first run)."""

    def lift_block(
        self,
        fetch: Callable[[int, int], bytes],
        pc: int,
        max_insns: int,
        stop_before: Callable[[int], bool] | None = None,
    ) -> Block:
        """Lift instructions from `pc` until a terminator or `max_insns`, or (`stop_before`)
        before an instruction whose address it accepts, other than the first: engines end
        blocks before code-hooked instructions, so that a hook's register writes reach the
        instruction (within a block, the IR reads back a constant put earlier as that
        constant, which would skip a write made by a hook in between).

        `fetch(addr, n)` returns instruction bytes or raises MemoryFault. A fetch fault or an
        undecodable instruction after the first ends the block before it; at the first one the
        block is a single `exit` terminator ("fetch_fault" or "illegal") at `pc`.
        """
        raise NotImplementedError

    def disasm(self, code: bytes, pc: int) -> str:
        if self.capstone is None:
            return code.hex()
        from capstone import Cs

        md = _capstone_cache.get(self.capstone)
        if md is None:
            md = _capstone_cache[self.capstone] = Cs(*self.capstone)
        for insn in md.disasm(code, pc, 1):
            return f"{insn.mnemonic} {insn.op_str}".strip()
        return f".word {code.hex()}"


_capstone_cache: dict[tuple[int, int], object] = {}


ARCH_NAMES = ("riscv64",)  # the guest ISAs polyvm has (`get_arch` takes these and their aliases)


def get_arch(name: str) -> Arch:
    if name in ("riscv64", "rv64"):
        from polyvm.isa.riscv import RISCV64

        return RISCV64
    raise ValueError(f"unsupported architecture: {name}")
