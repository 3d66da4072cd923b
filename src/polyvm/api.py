"""The embeddable API, in the shape Unicorn users know.

    from polyvm.api import Emulator, PROT_ALL
    emu = Emulator("riscv64")
    emu.mem_map(0x10000, 0x1000)
    emu.mem_write(0x10000, code)
    emu.reg_write("a0", 5)
    emu.hook_add("code", lambda emu, pc, size: print(hex(pc)))
    emu.emu_start(0x10000, until=0x10000 + len(code))
    print(emu.reg_read("a0"))

`Emulator` is a bare CPU plus an address space. Linux programs are run with
`polyvm.linux.Process` (see `load`), which offers the same register, memory and hook calls.

`engine=` (both) picks what runs the guest code, as `polyvm run --engine` does: "interp" (the
reference engine, the default), "jit", "auto" or "aot" (polyvm.engine.jit), or a factory
`f(arch, mem)` returning an engine. Every engine gives the same results.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from polyvm.engine import Stop
from polyvm.engine.reference import Engine
from polyvm.isa import SLOT_ICOUNT, SLOT_PC, Arch, get_arch
from polyvm.memory import PROT_ALL, PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE, AddressSpace, MemoryFault

__all__ = [
    "Emulator",
    "Program",
    "EmulatorError",
    "PROT_ALL",
    "PROT_EXEC",
    "PROT_NONE",
    "PROT_READ",
    "PROT_WRITE",
    "load",
]

HOOK_KINDS = ("code", "mem_read", "mem_write", "syscall")


class EmulatorError(Exception):
    """A guest stopped on something the caller did not handle (fault, illegal instruction)."""

    def __init__(self, stop: Stop) -> None:
        self.stop = stop
        msg = f"{stop.reason} at pc {stop.pc:#x}"
        if stop.reason == "fault":
            msg += f" ({stop.access} {stop.addr:#x}, {'protection' if stop.mapped else 'unmapped'})"
        elif stop.info is not None:
            msg += f" ({stop.info:#x})" if isinstance(stop.info, int) else f" ({stop.info})"
        super().__init__(msg)


EngineSpec = str | Callable[[Arch, AddressSpace], Any]
DEFAULT_ENGINE: EngineSpec = "interp"  # what engine=None means


def engine_factory(engine: EngineSpec) -> Callable[[Arch, AddressSpace], Any]:
    """A factory (arch, mem) -> engine for `engine=`: a name ("interp", "jit", "auto", "aot") or
    a factory already. "auto" falls back to the interpreter without llvmlite; "jit" and "aot"
    raise polyvm.engine.jit.JitUnavailable then."""
    if callable(engine):
        return engine
    if engine == "interp":
        return Engine
    if engine not in ("jit", "auto", "aot"):
        raise ValueError(f"engine must be interp, jit, auto or aot (or a factory), not {engine!r}")

    def make(arch: Arch, mem: AddressSpace) -> Any:
        from polyvm.engine.jit import make_engine

        return make_engine(arch, mem, engine)

    return make


def reg_slots(arch: Arch, name: str) -> tuple[int, int]:
    try:
        return arch.regs[name.lower()]
    except KeyError:
        raise KeyError(f"no register {name!r} on {arch.name}") from None


class _Hook:
    __slots__ = ("kind", "cb", "begin", "end", "user_data", "wrapped", "live")

    def __init__(self, kind: str, cb: Callable, begin: int, end: int, user_data: Any) -> None:
        self.kind, self.cb, self.begin, self.end, self.user_data = kind, cb, begin, end, user_data
        self.wrapped: Callable | None = None
        # False once deleted: an engine may still be running code instrumented for it (the
        # rest of the current block), which must not call it any more.
        self.live = True


class _Machine:
    """Registers, memory and hooks, shared by Emulator (a bare CPU) and Program (a Linux
    process). Subclasses provide `arch`, `mem`, `engine` and the `state` of the current CPU."""

    arch: Arch
    mem: AddressSpace
    engine: Any  # the reference Engine or a JitEngine
    _hooks: list[_Hook]
    _stop: bool

    @property
    def state(self) -> list[int]:
        raise NotImplementedError

    # ---- memory ------------------------------------------------------------------------
    def mem_map(self, addr: int, size: int, perms: int = PROT_ALL) -> None:
        self.mem.map(addr, size, perms)

    def mem_unmap(self, addr: int, size: int) -> None:
        self.mem.unmap(addr, size)

    def mem_protect(self, addr: int, size: int, perms: int) -> None:
        self.mem.protect(addr, size, perms)

    def mem_read(self, addr: int, size: int) -> bytes:
        return self.mem.read_raw(addr, size)

    def mem_write(self, addr: int, data: bytes) -> None:
        self.mem.write_raw(addr, bytes(data))

    def mem_regions(self) -> list[tuple[int, int, int]]:
        """(begin, end_inclusive, perms), like Unicorn."""
        return [(b, e - 1, p) for b, e, p in self.mem.regions()]

    # ---- registers ---------------------------------------------------------------------
    def reg_read(self, name: str) -> int:
        if name.lower() == "pc":
            return self.state[SLOT_PC]
        slot, w = reg_slots(self.arch, name)
        if w == 128:
            return self.state[slot] | (self.state[slot + 1] << 64)
        return int(self.state[slot]) & ((1 << w) - 1)

    def reg_write(self, name: str, value: int) -> None:
        if name.lower() == "pc":
            self.state[SLOT_PC] = value & ((1 << 64) - 1)
            return
        slot, w = reg_slots(self.arch, name)
        value &= (1 << w) - 1
        if w == 128:
            self.state[slot], self.state[slot + 1] = value & ((1 << 64) - 1), value >> 64
        else:
            self.state[slot] = value

    @property
    def instructions(self) -> int:
        """Guest instructions executed so far."""
        return self.state[SLOT_ICOUNT]

    # ---- hooks -------------------------------------------------------------------------
    def _stop_after(self, on: bool) -> None:
        """Ask the engine to stop before the next instruction (emu_stop in a memory hook), or
        withdraw the request (engines without `request_stop_after` stop at slice ends)."""
        request = getattr(self.engine, "request_stop_after", None)
        if request is not None:
            request(on)

    def hook_add(self, kind: str, cb: Callable, begin: int = 1, end: int = 0, user_data: Any = None) -> _Hook:
        """kind: "code" cb(emu, pc, size, user_data); "mem_read"/"mem_write"
        cb(emu, access, addr, size, value, user_data); "syscall" cb(emu, user_data).
        begin > end means the whole address space, as in Unicorn."""
        if kind not in HOOK_KINDS:
            raise ValueError(f"hook kind must be one of {HOOK_KINDS}")
        if begin > end:
            begin, end = 0, (1 << 64) - 1
        h = _Hook(kind, cb, begin, end, user_data)
        if kind == "code":

            def code(pc: int, size: int, h: _Hook = h) -> bool | None:
                if not h.live:
                    return False if self._stop else None
                self.state[SLOT_PC] = pc
                h.cb(self, pc, size, h.user_data)
                return False if self._stop else None

            h.wrapped = code
            self.engine.add_code_hook(begin, end, code)
        elif kind in ("mem_read", "mem_write"):
            want = "r" if kind == "mem_read" else "w"

            def mem(access: str, addr: int, size: int, value: int, h: _Hook = h, want: str = want) -> None:
                if access == want and h.live and h.begin <= addr <= h.end:
                    h.cb(self, access, addr, size, value, h.user_data)
                    if self._stop:
                        # emu_stop: the accessing instruction completes, the next does not start.
                        self._stop_after(True)

            h.wrapped = mem
            self.mem.hooks.append(mem)
            self.engine.flush()
        self._hooks.append(h)
        return h

    def hook_del(self, h: _Hook) -> None:
        self._hooks.remove(h)
        h.live = False
        if h.kind == "code":
            self.engine.remove_code_hook(h.wrapped)  # type: ignore[arg-type]
        elif h.kind in ("mem_read", "mem_write"):
            self.mem.hooks.remove(h.wrapped)  # type: ignore[arg-type]
            self.engine.flush()


class Emulator(_Machine):
    """One CPU and one address space. Several Emulators in a process never share state."""

    def __init__(self, arch: str | Arch = "riscv64", *, engine: EngineSpec | None = None) -> None:
        self.arch = get_arch(arch) if isinstance(arch, str) else arch
        self.mem = AddressSpace()
        self.engine = engine_factory(DEFAULT_ENGINE if engine is None else engine)(self.arch, self.mem)
        self._state = self.arch.new_state()
        self._hooks = []
        self._stop = False

    @property
    def state(self) -> list[int]:
        return self._state

    # ---- running -----------------------------------------------------------------------
    def emu_stop(self) -> None:
        self._stop = True

    def emu_start(
        self, begin: int, until: int | None = None, timeout: float | None = None, count: int = 0
    ) -> Stop:
        """Run from `begin` until pc == `until`, `count` instructions, `timeout` seconds or
        emu_stop(). Faults and illegal instructions raise EmulatorError with the state kept."""
        self.state[SLOT_PC] = begin
        self._stop = False
        self._stop_after(False)  # (a request a previous run ended before)
        deadline = time.monotonic() + timeout if timeout else None
        until_hook = None
        if until is not None:

            def until_hook(pc: int, size: int) -> bool:
                return False

            self.engine.breakpoints.add(until)
            self.engine.add_code_hook(until, until, until_hook)
        try:
            executed = 0
            while True:
                if count:
                    if executed >= count:
                        return Stop("count", self.state[SLOT_PC])
                    before = self.state[SLOT_ICOUNT]
                    stop = self.engine.step(self.state)
                    executed += max(1, self.state[SLOT_ICOUNT] - before)
                    if stop is None:
                        if self._stop:
                            return Stop("stopped", self.state[SLOT_PC])
                        continue
                else:
                    stop = self.engine.run(self.state, 1000)
                if stop.reason == "budget":
                    if self._stop:
                        return Stop("stopped", self.state[SLOT_PC])
                    if deadline is not None and time.monotonic() > deadline:
                        return Stop("timeout", self.state[SLOT_PC])
                    continue
                if stop.reason == "stopped":
                    return stop
                if stop.reason == "syscall" and any(h.kind == "syscall" for h in self._hooks):
                    for h in [h for h in self._hooks if h.kind == "syscall"]:
                        h.cb(self, h.user_data)
                    self.state[SLOT_PC] = stop.resume
                    if self._stop:
                        return Stop("stopped", self.state[SLOT_PC])
                    continue
                raise EmulatorError(stop)
        finally:
            self._stop_after(False)  # (a request the run ended before taking)
            if until_hook is not None:
                self.engine.breakpoints.discard(until)
                self.engine.remove_code_hook(until_hook)

    def step(self) -> Stop | None:
        """Execute one instruction (the single-step debugger). None when it completed."""
        self._stop = False  # (an emu_stop of an earlier run is not for this step)
        self._stop_after(False)
        return self.engine.step(self.state)


class Program(_Machine):
    """A Linux program (polyvm.linux.Process) with the same calls as Emulator: registers of
    the current thread, memory, hooks on code, memory accesses and syscalls, step and run.

        prog = Program("./prog", ["prog", "arg"])
        prog.hook_add("syscall", lambda prog, nr, args, data: None)   # observe every syscall
        while prog.step() is None: ...                                 # or: status = prog.run()
    """

    def __init__(
        self, path: str, argv: list[str] | None = None, *, engine: EngineSpec | None = None, **kwargs: Any
    ) -> None:
        """kwargs go to polyvm.linux.Process (stdout=, env=, ...); `engine` as for Emulator."""
        from polyvm.linux.process import Process

        engine = DEFAULT_ENGINE if engine is None else engine
        if engine != "interp":
            kwargs.setdefault("engine_factory", engine_factory(engine))
        self.process = Process.from_file(path, argv or [path], **kwargs)
        self.arch = self.process.arch
        self.mem = self.process.mem
        self.engine = self.process.engine
        self._hooks = []
        self._stop = False

    @property
    def state(self) -> list[int]:
        p = self.process
        t = p._last_thread if p._last_thread in p.threads else p.main_thread
        if t is None:
            raise EmulatorError(Stop("exited", 0))
        return t.regs

    def hook_add(self, kind: str, cb: Callable, begin: int = 1, end: int = 0, user_data: Any = None) -> _Hook:
        """As Emulator.hook_add; a "syscall" hook is cb(prog, nr, args, user_data) and is
        called before the syscall runs: returning an int answers it with that value instead."""
        if kind != "syscall":
            return super().hook_add(kind, cb, begin, end, user_data)
        h = _Hook(kind, cb, 0, 0, user_data)
        h.wrapped = lambda nr, args, h=h: h.cb(self, nr, list(args), h.user_data)
        self.process.syscall_hooks.append(h.wrapped)
        self._hooks.append(h)
        return h

    def hook_del(self, h: _Hook) -> None:
        if h.kind == "syscall":
            self._hooks.remove(h)
            h.live = False
            self.process.syscall_hooks.remove(h.wrapped)  # type: ignore[arg-type]
        else:
            super().hook_del(h)

    @property
    def instructions(self) -> int:
        return self.process.instructions

    def step(self) -> int | None:
        """One instruction of the current thread; the exit status once the program has exited."""
        return self.process.step()

    def run(self, timeout: float | None = None) -> int:
        """Run to the end; the exit status (128+N when killed by signal N)."""
        status = self.process.run(timeout=timeout)
        assert status is not None
        return status

    def emu_stop(self) -> None:
        self.process.request_stop()


def load(path: str, argv: list[str] | None = None, **kwargs: Any) -> Program:
    """Load a Linux program (not yet running); kwargs as for Program (engine=, stdout=, ...)."""
    return Program(path, argv, **kwargs)


__all__ += ["MemoryFault"]
