"""Engines execute IR. They know no ISA, no device and no syscall.

Every engine runs a CPU state (a list of slots, see polyvm.isa) against an address space until
something the layer above must handle happens, and reports it as a `Stop`.
"""

from __future__ import annotations

from typing import Any

from polyvm.record import Record


class GuestTrap(Exception):
    """Raised by helpers for a synchronous guest exception (e.g. an illegal rounding mode)."""

    def __init__(self, reason: str, info: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.info = info


class Stop(Record):
    """Why an engine returned.

    reason:
      * "budget"       the block budget ran out (time slice, timeout check); state.pc is valid
      * "syscall", "breakpoint", "sync_icache", "wfi", "halt": an exit terminator; `pc` is the
        instruction, `resume` where to continue (state.pc is set to `pc`)
      * "fault"        memory fault: `addr`, `access` ("r"/"w"/"x"), `mapped`
      * "illegal"      undecodable or illegal instruction; `info` is the instruction word
      * "stopped"      an API hook asked to stop
    At every stop, state[SLOT_PC] is the pc of the instruction that stopped (or the next one
    to run for "budget"/"stopped") and the instruction count is exact.
    """

    _fields = ("reason", "pc", "resume", "addr", "access", "mapped", "info")
    __slots__ = _fields

    def __init__(
        self,
        reason: str,
        pc: int,
        resume: int = 0,
        addr: int = 0,
        access: str = "",
        mapped: bool = False,
        info: Any = None,
    ) -> None:
        self.reason = reason
        self.pc = pc
        self.resume = resume
        self.addr = addr
        self.access = access
        self.mapped = mapped
        self.info = info
