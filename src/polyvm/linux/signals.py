"""Signal numbers, default actions and the per-process signal state (generic Linux numbering)."""

from __future__ import annotations

import signal as _host_signal
import struct
import sys

from polyvm.record import Record

NSIG = 64
SIGHUP, SIGINT, SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE = 1, 2, 3, 4, 5, 6, 7, 8
SIGKILL, SIGUSR1, SIGSEGV, SIGUSR2, SIGPIPE, SIGALRM, SIGTERM, SIGSTKFLT = 9, 10, 11, 12, 13, 14, 15, 16
SIGCHLD, SIGCONT, SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU, SIGURG, SIGXCPU = 17, 18, 19, 20, 21, 22, 23, 24
SIGXFSZ, SIGVTALRM, SIGPROF, SIGWINCH, SIGIO, SIGPWR, SIGSYS = 25, 26, 27, 28, 29, 30, 31

NAMES = {
    1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS",
    8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE",
    14: "SIGALRM", 15: "SIGTERM", 16: "SIGSTKFLT", 17: "SIGCHLD", 18: "SIGCONT", 19: "SIGSTOP",
    20: "SIGTSTP", 21: "SIGTTIN", 22: "SIGTTOU", 23: "SIGURG", 24: "SIGXCPU", 25: "SIGXFSZ",
    26: "SIGVTALRM", 27: "SIGPROF", 28: "SIGWINCH", 29: "SIGIO", 30: "SIGPWR", 31: "SIGSYS",
}  # fmt: skip


def name(sig: int) -> str:
    return NAMES.get(sig, f"SIGRT{sig - 32}" if 32 <= sig <= NSIG else f"signal {sig}")


# Default action "ignore"; stopping signals are out of scope and ignored too.
DEFAULT_IGNORE = frozenset({SIGCHLD, SIGWINCH, SIGURG, SIGCONT, SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU})
# Default action "core" (terminate with a core dump); the rest terminate.
DEFAULT_CORE = frozenset(
    {SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV, SIGXCPU, SIGXFSZ, SIGSYS}
)
UNBLOCKABLE = (1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1))

SIG_DFL = 0
SIG_IGN = 1

SA_NOCLDSTOP = 0x1
SA_SIGINFO = 0x4
SA_ONSTACK = 0x08000000
SA_RESTART = 0x10000000
SA_NODEFER = 0x40000000
SA_RESETHAND = 0x80000000
SA_RESTORER = 0x04000000

SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK = 0, 1, 2
SS_ONSTACK, SS_DISABLE = 1, 2
SS_AUTODISARM = 1 << 31
MINSIGSTKSZ = 2048

# si_code values
SI_USER = 0
SI_KERNEL = 0x80
SI_TKILL = -6
SEGV_MAPERR, SEGV_ACCERR = 1, 2
ILL_ILLOPC = 1
BUS_ADRALN = 1
TRAP_BRKPT = 1
BUS_ADRERR = 2
CLD_EXITED, CLD_KILLED, CLD_DUMPED, CLD_TRAPPED, CLD_STOPPED, CLD_CONTINUED = 1, 2, 3, 4, 5, 6


def bit(sig: int) -> int:
    return 1 << (sig - 1)


class SigAction(Record):
    _fields = ("handler", "flags", "restorer", "mask")

    def __init__(self, handler: int = SIG_DFL, flags: int = 0, restorer: int = 0, mask: int = 0) -> None:
        self.handler = handler
        self.flags = flags
        self.restorer = restorer
        self.mask = mask


def siginfo(signo: int, code: int, *, addr: int | None = None, pid: int = 0, uid: int = 0) -> bytes:
    """A 128-byte siginfo_t: si_signo, si_errno, si_code, then the union at offset 16."""
    head = struct.pack("<iii4x", signo, 0, code)
    if addr is not None:
        body = struct.pack("<Q", addr & ((1 << 64) - 1))
    else:
        body = struct.pack("<iI", pid, uid)
    out = head + body
    return out + bytes(128 - len(out))


def is_fatal_default(sig: int) -> bool:
    return sig not in DEFAULT_IGNORE


def sigchld_info(signo: int, code: int, pid: int, uid: int, status: int) -> bytes:
    """siginfo_t for a child's state change: si_pid, si_uid, si_status, si_utime, si_stime."""
    out = struct.pack("<iii4xiIi4xqq", signo, 0, code, pid, uid, status, 0, 0)
    return out + bytes(128 - len(out))


# Guest pids are host pids, so signals between guest processes are host signals. Linux hosts
# number them as the guest does; elsewhere they are matched by name.
_LINUX_HOST = sys.platform.startswith("linux")


def to_host(sig: int) -> int | None:
    if _LINUX_HOST or sig == 0:
        return sig
    n = NAMES.get(sig)
    v = getattr(_host_signal, n, None) if n else None
    return int(v) if v is not None else None


def from_host(hsig: int) -> int:
    if _LINUX_HOST or hsig == 0:
        return hsig
    try:
        n = _host_signal.Signals(hsig).name
    except ValueError:
        return hsig
    for sig, name_ in NAMES.items():
        if name_ == n:
            return sig
    return hsig


def wait_status(host_status: int) -> int:
    """A host wait status in Linux's layout (the same word on a Linux host)."""
    import os

    if _LINUX_HOST:
        return host_status & 0xFFFF
    if os.WIFEXITED(host_status):
        return (os.WEXITSTATUS(host_status) & 0xFF) << 8
    if os.WIFSIGNALED(host_status):
        return from_host(os.WTERMSIG(host_status)) | (0x80 if os.WCOREDUMP(host_status) else 0)
    if os.WIFSTOPPED(host_status):
        return (from_host(os.WSTOPSIG(host_status)) << 8) | 0x7F
    if os.WIFCONTINUED(host_status):
        return 0xFFFF
    return host_status & 0xFFFF


SIGRTMIN = 32


class Pending(dict):
    """A thread's or process's pending signals: number -> siginfo bytes, one entry per number.

    Standard signals merge while pending; real-time signals (SIGRTMIN and up) queue: a second
    instance waits behind the first and takes its place when the first is taken (`pop`).
    `discard` drops every instance (a signal set to be ignored).
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self._more: dict[int, list[bytes]] = {}

    def setdefault(self, sig: int, info: bytes) -> bytes:  # type: ignore[override]
        if sig in self and sig >= SIGRTMIN:
            self._more.setdefault(sig, []).append(info)
            return self[sig]
        return super().setdefault(sig, info)

    def pop(self, sig: int, *default: object) -> bytes:  # type: ignore[override]
        if sig not in self:
            return super().pop(sig, *default)
        info = super().pop(sig)
        more = self._more.get(sig)
        if more:
            self[sig] = more.pop(0)
            if not more:
                del self._more[sig]
        return info

    def discard(self, sig: int) -> None:
        super().pop(sig, None)
        self._more.pop(sig, None)

    def clear(self) -> None:
        super().clear()
        self._more.clear()

    def copy(self) -> Pending:
        new = Pending(self)
        new._more = {k: list(v) for k, v in self._more.items()}
        return new
