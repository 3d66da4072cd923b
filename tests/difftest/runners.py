"""Run a generated program in Unicorn and in polyvm, and compare the results.

polyvm runs it in the program's `engine_mode` (difftest.gen): the reference engine in one of
its configurations, or a native tier (`jit`, `auto`, `switch=N`: the JIT handing over to the
interpreter every N blocks).

What is compared: x1-x31, f0-f31 (per the register's kind, see gen.py), fflags, frm, the pc
where the program stopped, the number of instructions retired (polyvm's exact count against a
Unicorn code hook) and the whole data region. Unicorn runs to the end address
(`emu_start(begin, until)`); polyvm runs the same bytes followed by an `ebreak`, and must stop
there with a "breakpoint".

Known Unicorn (QEMU 5.0 target/riscv) deviations from the RISC-V spec, handled narrowly:
  * No NaN boxing: single-precision instructions neither check that their inputs are boxed nor
    box their results. gen.py types FP registers so the programs never depend on it, and here a
    register last written by a single-precision instruction is compared on its low 32 bits, with
    polyvm additionally required to hold it boxed.
  * fmin/fmax implement IEEE 754-2008 minNum/maxNum (QEMU's float*_minnum): with one signaling
    NaN and one number they return the canonical NaN. Since version 2.2 of the F extension the
    spec (IEEE 754-2019 minimumNumber) returns the number, still raising NV. QEMU fixed this in
    6.1 (float*_minimum_number). A code hook watches every fmin/fmax: exactly in that case it
    replaces Unicorn's result with the number (NV is already right), before the next instruction.
  * fmadd/fmsub/fnmsub/fnmadd of 0 x infinity plus a quiet NaN: the F extension requires NV
    ("even when the addend is a quiet NaN"); QEMU 5.0 does not raise it. The same hook ORs NV
    into fflags after exactly those instructions.
  * A trap (illegal instruction, misaligned atomic) reaches UC_HOOK_INTR before mepc is written,
    with pc reading as the trapping instruction's address + 4 (for 16-bit instructions too).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import encode as E
from .gen import CODE_BASE, DATA_BASE, DATA_SIZE, MASK64, Program

SCRATCH = 0x80000  # Unicorn only: the reservation-clearing prelude
CODE_MAP = 0x4000


@dataclass
class Result:
    x: list[int]
    f: list[int]
    fflags: int
    frm: int
    pc: int
    data: bytes
    error: str = ""
    trap: tuple[str, int] | None = None  # ("illegal" | "misaligned" | "fault", pc)
    icount: int = -1  # instructions retired


class UnicornRunner:
    """One Unicorn instance, reused: code is rewritten and its translations dropped per run."""

    def __init__(self) -> None:
        import unicorn
        import unicorn.riscv_const as R

        self.U = unicorn
        self.R = R
        uc = unicorn.Uc(unicorn.UC_ARCH_RISCV, unicorn.UC_MODE_RISCV64)
        uc.mem_map(CODE_BASE, CODE_MAP)
        uc.mem_map(DATA_BASE, DATA_SIZE)
        uc.mem_map(SCRATCH, 0x1000)
        # sc.w x0, x0, (x1): every SC drops the reservation a previous program may have left.
        uc.mem_write(SCRATCH, E.to_bytes(E.amo(0x03, 2, 0, 1, 0)))
        uc.hook_add(unicorn.UC_HOOK_INTR, self._on_trap)
        self.trap: tuple[str, int] | None = None
        self.uc = uc
        self.xids = [R.UC_RISCV_REG_X0 + i for i in range(32)]
        self.fids = [R.UC_RISCV_REG_F0 + i for i in range(32)]

    # mcause -> what polyvm calls it
    _CAUSES = {2: "illegal", 4: "misaligned", 6: "misaligned", 5: "fault", 7: "fault"}

    def _on_trap(self, uc, cause: int, _user) -> None:
        # mepc is not yet written when the hook runs, and Unicorn's pc then reads as the
        # trapping instruction's address + 4, for 16-bit instructions too.
        self.trap = (self._CAUSES.get(cause, f"cause {cause}"), uc.reg_read(self.R.UC_RISCV_REG_PC) - 4)
        uc.emu_stop()

    def run(self, prog: Program, code: bytes) -> Result:
        uc, R = self.uc, self.R
        self.trap = None
        mstatus = uc.reg_read(R.UC_RISCV_REG_MSTATUS)
        uc.reg_write(R.UC_RISCV_REG_MSTATUS, mstatus | (3 << 13))  # FS = dirty: FPU on
        uc.reg_write(R.UC_RISCV_REG_X1, SCRATCH + 0x800)
        uc.emu_start(SCRATCH, SCRATCH + 4)
        uc.ctl_remove_cache(CODE_BASE, CODE_BASE + CODE_MAP)
        uc.mem_write(CODE_BASE, code + b"\0" * (CODE_MAP - len(code)))
        uc.mem_write(DATA_BASE, prog.data)
        for i in range(1, 32):
            uc.reg_write(self.xids[i], prog.xregs[i])
        for i, v in enumerate(prog.unicorn_fregs()):
            uc.reg_write(self.fids[i], v)
        uc.reg_write(R.UC_RISCV_REG_FFLAGS, prog.fflags)
        uc.reg_write(R.UC_RISCV_REG_FRM, prog.frm)
        end = CODE_BASE + len(code)
        error = ""
        fixer = _Fixer(uc, self.fids, R.UC_RISCV_REG_FFLAGS, _fixup_sites(code))
        hook = uc.hook_add(self.U.UC_HOOK_CODE, fixer.hook, begin=CODE_BASE, end=end)
        try:
            uc.emu_start(CODE_BASE, end, count=8 * len(code))
        except self.U.UcError as e:
            error = f"unicorn: {e}"
        fixer.apply()
        uc.hook_del(hook)
        # The code hook also counts instructions; a trapping one was hooked (except, in Unicorn,
        # an illegal 16-bit one) but did not retire.
        icount = fixer.count - (self.trap is not None and fixer.last == self.trap[1])
        return Result(
            x=[uc.reg_read(r) & MASK64 for r in self.xids],
            f=[uc.reg_read(r) & MASK64 for r in self.fids],
            fflags=uc.reg_read(R.UC_RISCV_REG_FFLAGS),
            frm=uc.reg_read(R.UC_RISCV_REG_FRM),
            pc=uc.reg_read(R.UC_RISCV_REG_PC),
            data=bytes(uc.mem_read(DATA_BASE, DATA_SIZE)),
            error=error,
            trap=self.trap,
            icount=icount,
        )


def _fixup_sites(code: bytes) -> dict[int, int]:
    """Address -> word of every fmin/fmax and fused multiply-add (.s or .d) in `code`."""
    out = {}
    pos = 0
    while pos < len(code):
        if code[pos] & 3 != 3:
            pos += 2
            continue
        w = int.from_bytes(code[pos : pos + 4], "little")
        fmt_ok = (w >> 25) & 3 in (0, 1)
        if w & 0x7F == 0x53 and w >> 27 == 0x05 and fmt_ok and (w >> 12) & 7 in (0, 1):
            out[CODE_BASE + pos] = w
        elif w & 0x7F in (0x43, 0x47, 0x4B, 0x4F) and fmt_ok:
            out[CODE_BASE + pos] = w
        pos += 4
    return out


def _is_nan(v: int, dbl: bool) -> bool:
    return (v & 0x7FFFFFFFFFFFFFFF) > 0x7FF0000000000000 if dbl else (v & 0x7FFFFFFF) > 0x7F800000


def _is_snan(v: int, dbl: bool) -> bool:
    quiet = 1 << 51 if dbl else 1 << 22
    return _is_nan(v, dbl) and not v & quiet


def _is_inf(v: int, dbl: bool) -> bool:
    return (v & 0x7FFFFFFFFFFFFFFF) == 0x7FF0000000000000 if dbl else (v & 0x7FFFFFFF) == 0x7F800000


def _is_zero(v: int, dbl: bool) -> bool:
    return not v & (0x7FFFFFFFFFFFFFFF if dbl else 0x7FFFFFFF)


class _Fixer:
    """Counts instructions, and corrects Unicorn where QEMU 5.0 breaks the current spec:

    * fmin/fmax with one signaling NaN and one number: the result must be the number.
    * fmadd & co. with multiplicands 0 and infinity and a quiet NaN addend: the spec requires
      NV ("even when the addend is a quiet NaN", F extension, FMA section; IEEE 754 leaves it
      to the implementation). QEMU 5.0 only raises NV there for a signaling NaN.
    The correction is made after the instruction ran: at the next instruction's hook, or after
    emu_start for the last one.
    """

    def __init__(self, uc, fids: list[int], fflags_id: int, sites: dict[int, int]) -> None:
        self.uc = uc
        self.fids = fids
        self.fflags_id = fflags_id
        self.sites = sites
        self.pending: tuple[int, int] | None = None  # (rd, value) or (-1, flags to OR in)
        self.count = 0
        self.last = -1  # address of the last instruction hooked

    def apply(self) -> None:
        if self.pending is not None:
            rd, v = self.pending
            if rd < 0:
                self.uc.reg_write(self.fflags_id, self.uc.reg_read(self.fflags_id) | v)
            else:
                self.uc.reg_write(self.fids[rd], v)
            self.pending = None

    def hook(self, uc, addr: int, size: int, _user) -> None:
        self.count += 1
        self.last = addr
        if self.pending is not None:
            self.apply()
        w = self.sites.get(addr)
        if w is None:
            return
        dbl = bool((w >> 25) & 1)
        m = MASK64 if dbl else 0xFFFFFFFF
        a = uc.reg_read(self.fids[(w >> 15) & 31]) & m
        b = uc.reg_read(self.fids[(w >> 20) & 31]) & m
        if w & 0x7F != 0x53:  # fused multiply-add
            c = uc.reg_read(self.fids[w >> 27]) & m
            inf_zero = (_is_inf(a, dbl) and _is_zero(b, dbl)) or (_is_zero(a, dbl) and _is_inf(b, dbl))
            if inf_zero and _is_nan(c, dbl) and not _is_snan(c, dbl):
                self.pending = (-1, 0x10)
        elif _is_snan(a, dbl) and not _is_nan(b, dbl):
            self.pending = ((w >> 7) & 31, b)
        elif _is_snan(b, dbl) and not _is_nan(a, dbl):
            self.pending = ((w >> 7) & 31, a)


class PolyvmRunner:
    def __init__(self) -> None:
        from polyvm.engine.reference import Engine
        from polyvm.isa.riscv import RISCV64
        from polyvm.memory import PROT_ALL, PROT_READ, PROT_WRITE, AddressSpace

        self.Engine = Engine
        self.arch = RISCV64
        self.AddressSpace = AddressSpace
        self.prot_code = PROT_ALL  # writable: programs may patch their own code (then fence.i)
        self.prot_data = PROT_READ | PROT_WRITE

    def run(self, prog: Program, code: bytes) -> Result:
        from polyvm.isa.riscv import F0_SLOT, FFLAGS_SLOT, FRM_SLOT, X0_SLOT

        mem = self.AddressSpace()
        mem.map(CODE_BASE, CODE_MAP, self.prot_code, code + E.to_bytes(E.EBREAK))
        mem.map(DATA_BASE, DATA_SIZE, self.prot_data, prog.data)
        mode = prog.engine_mode
        if mode.startswith("insns="):
            eng = self.Engine(self.arch, mem, max_insns=int(mode.split("=")[1].split()[0]))
        elif mode == "no-regions":
            eng = self.Engine(self.arch, mem, regions=False)
        elif mode in ("jit", "auto") or mode.startswith("switch="):
            from polyvm.engine.jit import JitEngine

            # switch=N: the JIT hands over to the interpreter every N blocks and back.
            every = int(mode.split("=")[1]) if mode.startswith("switch=") else 0
            eng = JitEngine(self.arch, mem, tier="auto" if mode == "auto" else "jit", switch_every=every)
        else:
            eng = self.Engine(self.arch, mem)
        st = self.arch.new_state()
        st[0] = CODE_BASE
        for i in range(1, 32):
            st[X0_SLOT + i] = prog.xregs[i]
        for i in range(32):
            st[F0_SLOT + i] = prog.fregs[i]
        st[FFLAGS_SLOT] = prog.fflags
        st[FRM_SLOT] = prog.frm
        end = CODE_BASE + len(code)
        error = ""
        trap = None
        try:
            if mode == "step":
                stop = None
                for _ in range(8 * len(code)):
                    stop = eng.step(st)
                    if stop is not None:
                        break
                assert stop is not None, "step: program did not end"
            else:
                stop = eng.run(st, 8 * len(code))
            if stop.reason == "illegal":
                trap = ("illegal", stop.pc)
            elif stop.reason == "fault":
                trap = ("misaligned" if stop.access == "misaligned" else "fault", stop.pc)
            elif stop.reason in ("misaligned", "bus"):
                trap = ("misaligned", stop.pc)
            elif stop.reason != "breakpoint" or stop.pc != end:
                error = f"polyvm stopped: {stop}"
        except Exception as e:  # a host exception is a polyvm bug worth seeing in the report
            error = f"polyvm raised {type(e).__name__}: {e}"
        return Result(
            x=[st[X0_SLOT + i] for i in range(32)],
            f=[st[F0_SLOT + i] for i in range(32)],
            fflags=st[FFLAGS_SLOT],
            frm=st[FRM_SLOT],
            pc=st[0],
            data=mem.read_raw(DATA_BASE, DATA_SIZE),
            error=error,
            trap=trap,
            # polyvm counts an exit terminator's instruction (ecall, ebreak) as retired when it
            # stops there, so that a syscall resumes after it; the harness's ebreak is not ours.
            icount=st[1] - (not error and trap is None),
        )


def compare(prog: Program, uni: Result, pv: Result, kinds: list[str]) -> list[str]:
    """Differences between the two runs, one line each (empty: they agree)."""
    out: list[str] = []
    if uni.error or pv.error:
        if uni.error != pv.error:
            out.append(f"stop: unicorn {uni.error or 'ok'!r}, polyvm {pv.error or 'ok'!r}")
        return out
    if uni.trap != pv.trap:
        fmt = lambda t: "no trap" if t is None else f"{t[0]} at {t[1]:#x}"  # noqa: E731
        out.append(f"trap: unicorn {fmt(uni.trap)}, polyvm {fmt(pv.trap)}")
        return out
    if uni.trap is None and uni.pc != pv.pc:
        out.append(f"pc: unicorn {uni.pc:#x}, polyvm {pv.pc:#x}")
    if uni.icount != pv.icount:
        out.append(f"instructions retired: unicorn {uni.icount}, polyvm {pv.icount}")
    for i in range(1, 32):
        if uni.x[i] != pv.x[i]:
            out.append(f"x{i}: unicorn {uni.x[i]:#018x}, polyvm {pv.x[i]:#018x} (initial {prog.xregs[i]:#x})")
    for i in range(32):
        u, p, k = uni.f[i], pv.f[i], kinds[i]
        if k in ("d", "sd"):
            ok = u == p
        elif k == "s":
            ok = (u & 0xFFFFFFFF) == (p & 0xFFFFFFFF) and p >> 32 == 0xFFFFFFFF
        else:  # "u": never written, so polyvm must still hold the initial bits
            ok = p == prog.fregs[i]
        if not ok:
            out.append(f"f{i} ({k}): unicorn {u:#018x}, polyvm {p:#018x} (initial {prog.fregs[i]:#x})")
    if uni.fflags != pv.fflags:
        out.append(f"fflags: unicorn {uni.fflags:#x}, polyvm {pv.fflags:#x} (initial {prog.fflags:#x})")
    if uni.frm != pv.frm:
        out.append(f"frm: unicorn {uni.frm}, polyvm {pv.frm} (initial {prog.frm})")
    if uni.data != pv.data:
        diffs = [i for i in range(DATA_SIZE) if uni.data[i] != pv.data[i]]
        a = diffs[0] & ~7
        out.append(
            f"memory: {len(diffs)} bytes differ, first at {DATA_BASE + diffs[0]:#x}: unicorn "
            f"{uni.data[a : a + 8].hex()}, polyvm {pv.data[a : a + 8].hex()} (8 bytes at {DATA_BASE + a:#x})"
        )
    return out


def disasm(code: bytes, base: int = CODE_BASE) -> list[str]:
    import capstone

    md = capstone.Cs(capstone.CS_ARCH_RISCV, capstone.CS_MODE_RISCV64 | capstone.CS_MODE_RISCVC)
    lines = []
    pos = 0
    while pos < len(code):
        insn = next(md.disasm(code[pos:], base + pos, 1), None)
        if insn is None:
            n = 2 if code[pos] & 3 != 3 else 4
            lines.append(f"{base + pos:#x}: {code[pos : pos + n][::-1].hex():>8}  .insn (capstone can't)")
            pos += n
            continue
        lines.append(f"{insn.address:#x}: {insn.bytes[::-1].hex():>8}  {insn.mnemonic} {insn.op_str}")
        pos += insn.size
    return lines
