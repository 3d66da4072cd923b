"""The native tiers (polyvm.engine.jit) where a JIT is easy to get wrong.

Self-modifying and generated code, invalidation by munmap/mprotect, precise faults and traps
in the middle of a block, IEEE results and flags (rounding modes, frm, fflags, NaN boxing) on
random FP instruction sequences, code and memory hooks from the Python API, emu_stop, and time
slices (block budgets). Every test runs on the reference interpreter and on the native engines:
the JIT (`jit`), the tiered `auto` engine, the JIT forced to hand the state over to the
interpreter every N blocks (`switchN`) and the hot tier compiled in place with tiny thresholds
(`hot-sync`). Expected values are hand-computed where a test says so;
otherwise the interpreter's results, themselves checked against Unicorn (test_diff_unicorn.py)
and hand-written expectations elsewhere, are the reference.
"""

from __future__ import annotations

import importlib.util
import random
from typing import Any

import pytest

from polyvm.api import PROT_ALL, PROT_READ, PROT_WRITE, Emulator, EmulatorError, engine_factory
from polyvm.engine import Stop
from polyvm.isa.riscv.asm import asm, li, program

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llvmlite") is None, reason="the JIT needs llvmlite")

M64 = (1 << 64) - 1
BASE, DATA = 0x10000, 0x40000


def _jit(**kw):
    def make(arch, mem):
        from polyvm.engine.jit import JitEngine

        return JitEngine(arch, mem, **kw)

    return make


ENGINES: dict[str, Any] = {
    "interp": "interp",
    "jit": "jit",
    "auto": "auto",
    "switch1": _jit(tier="jit", switch_every=1),
    "switch3": _jit(tier="jit", switch_every=3),
    # the auto tier with tiny thresholds (see the fixture below): code turns hot after 2
    # dispatches and is recompiled in the hot tier after 40 blocks; and compiling on the
    # background thread, results installed whenever they are ready
    "auto-t2": "auto",
    "auto-bg": _jit(tier="auto", background=True),
    # the hot tier compiled in the run's own process, at once (tiny thresholds too): hot code
    # runs in every test, whatever the compile worker's speed
    "hot-sync": _jit(tier="jit", background=False),
}
ALL = list(ENGINES)
NATIVE = [e for e in ALL if e != "interp"]


@pytest.fixture(autouse=True)
def _tiny_tier_thresholds(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("engine") in ("auto-t2", "auto-bg", "hot-sync"):
        import polyvm.engine.jit as J

        monkeypatch.setattr(J, "HOT", 2)
        monkeypatch.setattr(J, "TIER2_INSNS", 200)


def emulator(engine: Any, code: bytes = b"", code_size: int = 0x4000) -> Emulator:
    """An Emulator on ENGINES[engine] (or on a factory) with code at BASE and data at DATA."""
    emu = Emulator("riscv64", engine=ENGINES[engine] if isinstance(engine, str) else engine)
    emu.mem_map(BASE, code_size, PROT_ALL)
    emu.mem_map(DATA, 0x4000, PROT_READ | PROT_WRITE)
    if code:
        emu.mem_write(BASE, code)
    return emu


def snapshot(emu: Emulator) -> dict[str, Any]:
    """Everything a guest can observe: registers, FP state, pc, count and the data pages."""
    st = {f"x{i}": emu.reg_read(f"x{i}") for i in range(1, 32)}
    st |= {f"f{i}": emu.reg_read(f"f{i}") for i in range(32)}
    st |= {
        "fflags": emu.reg_read("fflags"),
        "frm": emu.reg_read("frm"),
        "pc": emu.reg_read("pc"),
        "instructions": emu.instructions,
        "data": emu.mem_read(DATA, 0x4000),
    }
    return st


def run(emu: Emulator, begin: int, until: int | None = None, **kw: Any) -> Stop:
    """emu_start, with a guest fault or trap returned as its Stop instead of raised."""
    try:
        return emu.emu_start(begin, until=until, **kw)
    except EmulatorError as e:
        return e.stop


def stop_key(stop: Stop) -> tuple:
    return (stop.reason, stop.pc, stop.addr, stop.access, stop.mapped, stop.info)


# ---- self-modifying and generated code --------------------------------------------------------
W1, W100 = asm("addi a0, a0, 1"), asm("addi a0, a0, 100")


@pytest.mark.parametrize("engine", ALL)
def test_code_patched_between_calls_is_rerun(engine: str) -> None:
    """A loop calls a function on another page, then rewrites it (+1 <-> +100) and runs fence.i,
    all without leaving native code: the next call must run the new code. (The JIT used to keep
    calling the stale translation through its native dispatch table.)"""
    target = BASE + 0x1000
    code = program(
        li("a1", W1)
        + li("a3", W1 ^ W100)
        + li("a2", target)
        + [
            "addi s0, zero, 6",
            "jalr ra, 0(a2)",  # loop: call the target
            "xor a1, a1, a3",  # toggle the patch
            "sw a1, 0(a2)",  # patch the target's first instruction
            "fence.i",
            "addi s0, s0, -1",
            "bne s0, zero, -20",
            "addi zero, zero, 0",
        ]
    )
    emu = emulator(engine, code)
    emu.mem_write(target, program(["addi a0, a0, 1", "jalr zero, 0(ra)"]))
    emu.emu_start(BASE, until=BASE + len(code))
    # +1, +100, +1, +100, +1, +100; 5 setup instructions, 8 per iteration, the final nop
    assert emu.reg_read("a0") == 303
    assert emu.instructions == 5 + 6 * 8 + 1


@pytest.mark.parametrize("engine", ALL)
def test_loop_patching_its_own_body(engine: str) -> None:
    """Each iteration rewrites an instruction of the loop itself (in the block after fence.i)."""
    head = li("s0", 6) + li("a1", W1) + li("a3", W1 ^ W100)
    code = program(
        head
        + [
            "auipc a2, 0",
            "addi a2, a2, 20",  # a2 = the instruction after fence.i
            "xor a1, a1, a3",  # loop
            "sw a1, 0(a2)",
            "fence.i",
            "addi a0, a0, 1",  # patched to +100, +1, +100, ...
            "addi s0, s0, -1",
            "bne s0, zero, -20",
        ]
    )
    emu = emulator(engine, code)
    emu.emu_start(BASE, until=BASE + len(code))
    assert emu.reg_read("a0") == 3 * 100 + 3 * 1
    assert emu.instructions == len(head) + 2 + 6 * 6


@pytest.mark.parametrize("engine", ALL)
def test_generated_functions(engine: str) -> None:
    """A guest "JIT": for k = 1..30 it writes `addi a0, a0, k; ret` into a code page, runs
    fence.i and calls it 20 times (enough for the auto tier to compile each version)."""
    gen = BASE + 0x2000
    code = program(
        li("a2", gen)
        + li("a4", asm("addi a0, a0, 0"))  # the addi with a zero immediate
        + li("a5", asm("jalr zero, 0(ra)"))
        + [
            "addi s0, zero, 1",  # k
            "addi s2, zero, 31",
            # outer: write the function for k
            "slli t0, s0, 20",  # k in the immediate field
            "or t0, t0, a4",
            "sw t0, 0(a2)",
            "sw a5, 4(a2)",
            "fence.i",
            "addi s1, zero, 20",
            "jalr ra, 0(a2)",  # inner: call it
            "addi s1, s1, -1",
            "bne s1, zero, -8",
            "addi s0, s0, 1",
            "bne s0, s2, -40",
            "addi zero, zero, 0",
        ]
    )
    emu = emulator(engine, code)
    emu.emu_start(BASE, until=BASE + len(code))
    assert emu.reg_read("a0") == 20 * sum(range(1, 31))


def test_smc_guest_program(tmp_path) -> None:
    """guest/t_smc.c (generated code patched while hot, self-patching code, munmap and mmap again,
    mprotect without and with PROT_EXEC) on every engine: the hand-computed output, and the
    interpreter's instruction count."""
    from polyvm.linux import Process
    from polyvm.testing.guest import build_guest

    exe = build_guest("t_smc")
    expected = (
        "patched: 816400\n"  # sum over k = 1..40 of 20 * (1000 + k)
        "loops: 6090\n"  # sum over step 1..5, n 100..103 of step * n
        "self-patched: 105 12\n"
        "remapped: 93 same=1\n"
        "noexec faults: 1 at code: 1\n"
        "exec again: -2\n"
        "unmapped faults: 2 at code: 1\n"
    )
    counts = {}
    for engine in ("interp", "jit", "auto", "switch5"):
        factory = {"interp": None, "switch5": _jit(tier="jit", switch_every=5)}.get(engine, _jit(tier=engine))
        out = tmp_path / f"{engine}.out"
        with open(out, "wb") as fo, open(tmp_path / f"{engine}.err", "wb") as fe:
            p = Process.from_file(
                exe, ["t_smc"], env={}, stdout=fo.fileno(), stderr=fe.fileno(), engine_factory=factory
            )
            status = p.run(timeout=300)
        assert (status, out.read_text()) == (0, expected), engine
        counts[engine] = p.instructions
    assert len(set(counts.values())) == 1, counts


# ---- munmap / mprotect ------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ALL)
def test_unmap_and_protect_invalidate_translations(engine: str) -> None:
    """A function on its own page, called 20 times per run (so every tier compiles it); between
    runs its page is unmapped, mapped again with other code, made non-executable and executable
    again. Each run must see the page as it is now: the new code, or a precise fetch fault."""
    fn = BASE + 0x1000
    caller = program(
        li("a2", fn) + ["addi s0, zero, 20", "jalr ra, 0(a2)", "addi s0, s0, -1", "bne s0, zero, -8"]
    )
    end = BASE + len(caller)
    emu = emulator(engine, caller, code_size=0x1000)
    emu.mem_map(fn, 0x1000, PROT_ALL)
    emu.mem_write(fn, program(["addi a0, a0, 1", "jalr zero, 0(ra)"]))

    def call() -> Stop:
        emu.reg_write("a0", 0)
        return run(emu, BASE, end)

    assert call().reason == "stopped" and emu.reg_read("a0") == 20
    emu.mem_unmap(fn, 0x1000)
    n0 = emu.instructions
    st = call()
    assert (st.reason, st.pc, st.addr, st.access, st.mapped) == ("fault", fn, fn, "x", False)
    assert emu.instructions - n0 == 3 and emu.reg_read("pc") == fn  # li, addi, jalr
    emu.mem_map(fn, 0x1000, PROT_ALL)
    emu.mem_write(fn, program(["addi a0, a0, 5", "jalr zero, 0(ra)"]))
    assert call().reason == "stopped" and emu.reg_read("a0") == 100
    emu.mem_protect(fn, 0x1000, PROT_READ | PROT_WRITE)
    st = call()
    assert (st.reason, st.pc, st.addr, st.access, st.mapped) == ("fault", fn, fn, "x", True)
    emu.mem_protect(fn, 0x1000, PROT_READ | PROT_ALL)
    assert call().reason == "stopped" and emu.reg_read("a0") == 100
    # the caller's own page: rewritten by the host (mem_write) between runs
    emu.mem_write(BASE + 4 * len(li("a2", fn)), program(["addi s0, zero, 3"]))
    assert call().reason == "stopped" and emu.reg_read("a0") == 15


@pytest.mark.parametrize("tier", ["jit", "auto"])
def test_cached_translation_needs_an_executable_page(tmp_path, tier: str) -> None:
    """With the persistent translation cache: a page whose code is unchanged but that is no
    longer executable must fault, not run its cached translation; executable again, it runs.
    (No `until`: its code hook would keep translations out of the cache.)"""
    from polyvm.engine.jit import Compiler, JitEngine
    from polyvm.engine.tcache import TranslationCache

    cache = TranslationCache(str(tmp_path), Compiler.get().host_id)
    fn = BASE + 0x1000
    caller = program(
        li("a2", fn)
        + ["addi s0, zero, 20", "jalr ra, 0(a2)", "addi s0, s0, -1", "bne s0, zero, -8", "ebreak"]
    )
    emu = emulator(lambda arch, mem: JitEngine(arch, mem, tier=tier, cache=cache), caller, code_size=0x1000)
    emu.mem_map(fn, 0x1000, PROT_ALL)
    emu.mem_write(fn, program(["addi a0, a0, 1", "jalr zero, 0(ra)"]))
    for _ in range(2):
        emu.reg_write("a0", 0)
        st = run(emu, BASE)
        assert (st.reason, st.pc, emu.reg_read("a0")) == ("breakpoint", BASE + len(caller) - 4, 20)
        emu.mem_protect(fn, 0x1000, PROT_READ | PROT_WRITE)
        st = run(emu, BASE)
        assert (st.reason, st.pc, st.access, st.mapped) == ("fault", fn, "x", True)
        emu.mem_protect(fn, 0x1000, PROT_ALL)
    assert cache.enabled and emu.engine.regions_loaded > 0


# ---- precise faults and traps in the middle of a block ---------------------------------------
_PRE = [
    "addi a0, a0, 7",
    "slli a1, a0, 3",
    "sd a1, 8(s1)",  # DATA + 8
    "fadd.d fa0, fa1, fa2, rne",  # accrues NX (0.1 + 0.2)
    "addi a2, a2, 1",
]
_POST = ["addi a3, a3, 1", "addi a0, a0, 100", "sd a0, 16(s1)"]
FAULTS = {
    # name: (faulting instruction, setup (reg -> value), expected stop (reason, access, mapped, addr))
    "load-unmapped": ("ld a5, 0(a4)", {"a4": 0x900000}, ("fault", "r", False, 0x900000)),
    "load-crosses-out": ("lw a5, 0(a4)", {"a4": DATA + 0x3FFE}, ("fault", "r", False, DATA + 0x4000)),
    "store-readonly": ("sw a5, 0(a4)", {"a4": BASE + 0x3000}, ("fault", "w", True, BASE + 0x3000)),
    "fp-load-unmapped": ("fld fa5, 0(a4)", {"a4": 0x900008}, ("fault", "r", False, 0x900008)),
    "fp-store-unmapped": ("fsw fa5, 0(a4)", {"a4": 0x900010}, ("fault", "w", False, 0x900010)),
    "amo-unmapped": ("amoadd.d a5, a6, (a4)", {"a4": 0x900000}, ("fault", "r", False, 0x900000)),
    "amo-misaligned": ("amoadd.w a5, a6, (a4)", {"a4": DATA + 2}, ("misaligned", "", False, 0)),
    "lr-misaligned": ("lr.d a5, (a4)", {"a4": DATA + 4}, ("misaligned", "", False, 0)),
    "rm-reserved": ("fadd.d fa5, fa1, fa2, dyn", {"frm": 5}, ("illegal", "", False, 0)),
}


@pytest.mark.parametrize("engine", NATIVE)
@pytest.mark.parametrize("name", list(FAULTS))
def test_fault_in_the_middle_of_a_block_is_precise(name: str, engine: str) -> None:
    """Five instructions (registers, a store, an FP add), then one that faults or traps, then
    more: the stop is at the faulting instruction with exactly five retired and the state of
    the interpreter; run twice (the second time through translated code)."""
    insn, setup, (reason, access, mapped, addr) = FAULTS[name]
    code = program(_PRE + [insn] + _POST)
    pc = BASE + 4 * len(_PRE)
    results = {}
    for eng in ("interp", engine):
        emu = emulator(eng, code)
        emu.mem_protect(BASE + 0x3000, 0x1000, PROT_READ)
        for rnd in range(2):
            emu.reg_write("s1", DATA)
            for r, v in {
                "a0": 1,
                "a2": 0,
                "fa1": 0x3FB999999999999A,
                "fa2": 0x3FC999999999999A,
                **setup,
            }.items():
                emu.reg_write(r, v)
            emu.reg_write("fflags", 0)
            n0 = emu.instructions
            st = run(emu, BASE, BASE + len(code))
            assert (st.reason, st.pc) == (reason, pc), (eng, rnd, st)
            if reason == "fault":
                assert (st.access, st.mapped, st.addr) == (access, mapped, addr)
            assert emu.instructions - n0 == len(_PRE) and emu.reg_read("pc") == pc
            # hand-checked: the first five took effect, nothing after them did
            assert emu.reg_read("a0") == 8 and emu.reg_read("a1") == 64 and emu.reg_read("a2") == 1
            assert emu.mem_read(DATA + 8, 8) == (64).to_bytes(8, "little")
            assert emu.reg_read("fflags") == 1 and emu.reg_read("a3") == 0
            results[eng, rnd] = (stop_key(st), snapshot(emu))
    assert results["interp", 0] == results[engine, 0] and results["interp", 1] == results[engine, 1]


# ---- accesses at offsets from one base (the hot tier checks the TLB once for them) -----------
def _group_body(step: int) -> list[str]:
    return [
        "sd a2, 0(a1)",  # three stores and three loads at offsets from a1: one group
        "sd a3, 8(a1)",
        "sw a4, 16(a1)",
        "ld a5, 0(a1)",
        "ld a6, 8(a1)",
        "lwu a7, 16(a1)",
        "add s2, s2, a5",
        "add s2, s2, a6",
        "add s2, s2, a7",
        "addi a2, a2, 1",
        "addi a3, a3, 2",
        "addi a4, a4, 3",
        f"addi a1, a1, {step}",
        "addi s0, s0, -1",
        "bne s0, zero, -56",  # (14 instructions back)
    ]


def _walk(start: int, n: int, walks: int, step: int = 8, last_extra: int = 0) -> bytes:
    """`walks` times: a1 = start, then n iterations of `_group_body(step)` (a2, a3, a4 from
    10, 100, 1000); the last walk `last_extra` iterations more."""
    head = [*li("a1", start), *li("s0", n), "addi t0, s1, -1", "sltiu t0, t0, 1"]
    head += [f"addi t1, zero, {last_extra}", "mul t0, t0, t1", "add s0, s0, t0"]
    head += ["addi a2, zero, 10", "addi a3, zero, 100", *li("a4", 1000)]
    body = _group_body(step)
    back = -4 * (len(head) + len(body) + 1)
    return program([*li("s1", walks), "addi s2, zero, 0", *head, *body, "addi s1, s1, -1",
                    f"bne s1, zero, {back}"])  # fmt: skip


def _walk_sum(n: int) -> int:
    return sum((10 + i) + (100 + 2 * i) + (1000 + 3 * i) for i in range(n))


@pytest.fixture(params=[False, True], ids=["buffers", "direct"])
def direct_memory(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """The Emulator's memory as the Python API makes it (a host buffer per mapping), or as
    Linux user mode does (a window at one host offset: `direct_base`; native code then adds
    that offset, and its TLB entries only say whether an access may go ahead). (These runs
    stop at `until`, which instruments their code: LLVM's tiers; the emitted first tier's
    groups are tested in test_direct_memory.)"""
    if request.param:
        import polyvm.api as api
        from polyvm.memory import AddressSpace

        if AddressSpace(window=1 << 38).direct_base is None:
            pytest.skip("no direct guest memory on this host")
        monkeypatch.setattr(api, "AddressSpace", lambda: AddressSpace(window=1 << 38))
    return request.param


@pytest.mark.parametrize("engine", ALL)
def test_accesses_from_one_base_across_a_page_boundary(engine: str, direct_memory: bool) -> None:
    """A loop stores three values at a1+0, +8, +16 and loads them back while a1 walks down
    over a page boundary, so some iterations' bytes lie in two pages (two host buffers here):
    every iteration must read back what it wrote, and memory must hold what the stores left
    (the bytes just above the boundary were last written by the iterations that straddle it).
    Several walks, so that the later ones run on hot code (`hot-sync`). Expected values by
    hand: iteration i of a walk stores a2 = 10+i, a3 = 100+2i, a4 = 1000+3i (the sum of
    what it loads back); the memory image is the stores replayed in order."""
    n, walks = 300, 6
    start = DATA + 0x2000 + 8 * 150  # iterations 151-152 straddle DATA+0x2000
    code = _walk(start, n, walks, step=-8)
    emu = emulator(engine, code)
    # the page above the boundary in a host buffer of its own (a mapping of its own), so that
    # the page below's host address plus an offset does not reach it
    emu.mem_unmap(DATA + 0x2000, 0x2000)
    emu.mem_map(DATA + 0x2000, 0x2000, PROT_READ | PROT_WRITE)
    st = run(emu, BASE, BASE + len(code))
    assert emu.reg_read("pc") == BASE + len(code), st
    assert emu.reg_read("s2") == walks * _walk_sum(n)
    mem = bytearray(0x4000)
    for i in range(n):
        a = start - DATA - 8 * i
        mem[a : a + 20] = (
            (10 + i).to_bytes(8, "little")
            + (100 + 2 * i).to_bytes(8, "little")
            + (1000 + 3 * i).to_bytes(4, "little")
        )
    assert emu.mem_read(DATA + 0x1000, 0x2000) == bytes(mem[0x1000:0x3000])


@pytest.mark.parametrize("engine", ALL)
def test_a_fault_inside_a_group_of_accesses_is_precise(engine: str, direct_memory: bool) -> None:
    """The same walk up to a read-only page, one iteration further in the last of four walks
    (hot code by then on `hot-sync`): in that iteration a1+16 is the page's first byte, the
    two stores below it have happened, the word store at a1+16 faults, and nothing after it
    ran (the group's one TLB check fails; each access then goes on its own, in order)."""
    top = DATA + 0x3000
    n_ok = 200  # iterations below the page; the next one faults at its third store
    start = top - 16 - 8 * n_ok
    code = _walk(start, n_ok, 4, last_extra=1)
    body = BASE + len(code) - 4 * (len(_group_body(8)) + 2)
    emu = emulator(engine, code)
    emu.mem_protect(top, 0x1000, PROT_READ)
    st = run(emu, BASE, BASE + len(code))
    assert (st.reason, st.pc, st.access, st.mapped, st.addr) == ("fault", body + 8, "w", True, top), st
    i = n_ok  # the faulting iteration
    assert emu.reg_read("a1") == top - 16 and emu.reg_read("s0") == 1 and emu.reg_read("s1") == 1
    assert emu.mem_read(top - 16, 16) == (10 + i).to_bytes(8, "little") + (100 + 2 * i).to_bytes(8, "little")
    assert emu.reg_read("s2") == 3 * _walk_sum(n_ok) + _walk_sum(i)
    assert emu.reg_read("a5") == 10 + i - 1  # loaded by the iteration before
    assert emu.mem_read(top, 4) == bytes(4)


# ---- IEEE exactness: random FP instruction sequences -------------------------------------------
_D_SPECIAL = [
    0, 1 << 63, 0x7FF0000000000000, 0xFFF0000000000000, 0x7FF8000000000000, 0x7FF8000000000123,
    0xFFF8000000000000, 0x7FF0000000000001, 0x7FF4000000000000, 1, 0x000FFFFFFFFFFFFF,
    0x0010000000000000, 0x7FEFFFFFFFFFFFFF, 0x3FF0000000000000, 0xBFF0000000000000,
    0x3FB999999999999A, 0x43E0000000000000, 0xC3E0000000000000, 0x41DFFFFFFFC00000, 0x3FE0000000000000,
]  # fmt: skip
_S_SPECIAL = [
    0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0x7FC00123, 0x7F800001, 0x7FA00000, 1, 0x007FFFFF,
    0x00800000, 0x7F7FFFFF, 0x3F800000, 0xBF800000, 0x3DCCCCCD, 0x5F000000, 0xCF000000, 0x4F000000,
]  # fmt: skip
_X_SPECIAL = [
    0,
    1,
    M64,
    1 << 63,
    (1 << 63) - 1,
    0x80000000,
    0x7FFFFFFF,
    0xFFFFFFFF,
    0xFFFFFFFF80000000,
    12345,
]
RMS = ["rne", "rtz", "rdn", "rup", "rmm", "dyn"]
FREGS = [f"f{i}" for i in range(32)]
XDST = ["a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "t0", "t1", "t2", "t3", "t4", "t5", "t6", "s2", "s3"]


def _fval(rng: random.Random) -> int:
    k = rng.random()
    if k < 0.35:
        return rng.choice(_D_SPECIAL)
    if k < 0.6:
        return 0xFFFFFFFF00000000 | rng.choice(_S_SPECIAL)  # a NaN-boxed single
    if k < 0.7:
        return (rng.getrandbits(32) << 32) | rng.choice(_S_SPECIAL)  # a single, not boxed
    if k < 0.8:
        return 0xFFFFFFFF00000000 | rng.getrandbits(32)
    return rng.getrandbits(64)


def _fp_insn(rng: random.Random) -> str:
    f = lambda: rng.choice(FREGS)  # noqa: E731
    x = lambda: rng.choice(XDST)  # noqa: E731
    rm = rng.choice(RMS)
    t = rng.choice("sd")
    k = rng.randrange(16)
    if k == 0:
        return f"{rng.choice(['fadd', 'fsub', 'fmul', 'fdiv'])}.{t} {f()}, {f()}, {f()}, {rm}"
    if k == 1:
        return f"fsqrt.{t} {f()}, {f()}, {rm}"
    if k == 2:
        return f"{rng.choice(['fmadd', 'fmsub', 'fnmsub', 'fnmadd'])}.{t} {f()}, {f()}, {f()}, {f()}, {rm}"
    if k == 3:
        return f"{rng.choice(['fmin', 'fmax', 'fsgnj', 'fsgnjn', 'fsgnjx'])}.{t} {f()}, {f()}, {f()}"
    if k == 4:
        return f"{rng.choice(['feq', 'flt', 'fle'])}.{t} {x()}, {f()}, {f()}"
    if k == 5:
        return f"fclass.{t} {x()}, {f()}"
    if k == 6:
        return f"fcvt.{rng.choice(['w', 'wu', 'l', 'lu'])}.{t} {x()}, {f()}, {rm}"
    if k == 7:
        return f"fcvt.{t}.{rng.choice(['w', 'wu', 'l', 'lu'])} {f()}, {x()}, {rm}"
    if k == 8:
        return f"fcvt.{'s.d' if t == 's' else 'd.s'} {f()}, {f()}, {rm}"
    if k == 9:
        return rng.choice(
            [
                f"fmv.x.w {x()}, {f()}",
                f"fmv.x.d {x()}, {f()}",
                f"fmv.w.x {f()}, {x()}",
                f"fmv.d.x {f()}, {x()}",
            ]
        )
    if k == 10:
        off = 8 * rng.randrange(8)
        return rng.choice(
            [
                f"flw {f()}, {off}(s1)",
                f"fld {f()}, {off}(s1)",
                f"fsw {f()}, {off}(s1)",
                f"fsd {f()}, {off}(s1)",
            ]
        )
    if k == 11:
        # frm: mostly a valid mode; sometimes a reserved one, which makes a later dyn op trap
        return f"csrrwi zero, frm, {rng.choice([0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 7])}"
    if k == 12:
        return rng.choice(
            [f"csrrs {x()}, fflags, zero", "csrrw zero, fflags, zero", f"csrrs {x()}, fcsr, zero"]
        )
    if k == 13:
        return "jal zero, 4"  # a block boundary (forced switching happens at those)
    return f"{rng.choice(['fadd', 'fmul'])}.{t} {f()}, {f()}, {f()}, dyn"


def fp_program(seed: int, n: int = 28) -> tuple[bytes, dict[str, int]]:
    rng = random.Random(seed)
    code = program([_fp_insn(rng) for _ in range(n)] + ["addi zero, zero, 0"])
    regs = {r: _fval(rng) for r in FREGS}
    regs |= {r: rng.choice(_X_SPECIAL) if rng.random() < 0.7 else rng.getrandbits(64) for r in XDST}
    regs |= {"frm": rng.randrange(5), "fflags": rng.randrange(32), "s1": DATA}
    return code, regs


def run_fp(engine: str, code: bytes, regs: dict[str, int], data: bytes) -> tuple:
    emu = emulator(engine, code)
    emu.mem_write(DATA, data)
    for r, v in regs.items():
        emu.reg_write(r, v)
    st = run(emu, BASE, BASE + len(code))
    return stop_key(st), snapshot(emu)


def _check_fp_seeds(seeds: range, engines: list[str]) -> None:
    bad = []
    for seed in seeds:
        code, regs = fp_program(seed)
        data = random.Random(~seed).randbytes(64)
        want = run_fp("interp", code, regs, data)
        for engine in engines:
            got = run_fp(engine, code, regs, data)
            if got != want:
                diff = [k for k in want[1] if want[1][k] != got[1][k]]
                bad.append(f"seed {seed} on {engine}: stop {got[0]} vs {want[0]}, differ in {diff[:8]}")
    assert not bad, "\n".join(bad[:20])


@pytest.mark.parametrize("part", range(4))
def test_fp_sequences_are_exact(part: int) -> None:
    """Random FP instruction sequences over special values (NaNs with payloads, signaling NaNs,
    infinities, zeros, subnormals, extremes; singles boxed and not), every rounding mode static
    and dynamic, frm changed (sometimes to a reserved mode, so a dynamic op traps) and fflags
    read and cleared in between: registers, fflags, frm, memory, the stop and the instruction
    count equal the interpreter's (whose FP is checked against Unicorn)."""
    _check_fp_seeds(range(part, 160, 4), ["jit", "switch1"] if part % 2 else ["jit", "switch3"])


@pytest.mark.heavy
def test_fp_sequences_are_exact_soak() -> None:
    _check_fp_seeds(range(10_000, 12_000), ["jit", "switch1", "switch3"])


def test_fp_loops_compiled_hot(monkeypatch) -> None:
    """A loop of FP arithmetic (fused multiply-add, division, square root, conversions; static
    and dynamic rounding modes) turns hot and is compiled by the hot tier, whose fast paths are
    put into the module when it is compiled (`jit.resolve_native`); registers, fflags, memory
    and the count equal the interpreter's."""
    import polyvm.engine.jit as J

    monkeypatch.setattr(J, "HOT", 2)
    monkeypatch.setattr(J, "TIER2_INSNS", 200)
    code = program(
        [
            "addi s0, zero, 2000",
            "fmadd.d fa0, fa1, fa2, fa0, rne",  # loop
            "fdiv.d fa3, fa0, fa2, dyn",
            "fsqrt.d fa4, fa3, rtz",
            "fcvt.s.d fa5, fa4, dyn",
            "fadd.s fa6, fa6, fa5, rne",
            "fcvt.l.d a1, fa4, rtz",
            "add a2, a2, a1",
            "addi s0, s0, -1",
            "bne s0, zero, -32",
            "ebreak",
        ]
    )
    got = {}
    for engine in ("interp", "hot-sync"):
        emu = emulator(engine, code)
        for r, v in (("fa1", 0x3FF199999999999A), ("fa2", 0x4000CCCCCCCCCCCD), ("fa0", 0x3FF0000000000000)):
            emu.reg_write(r, v)  # 1.1, 2.1, 1.0
        emu.reg_write("fa6", 0xFFFFFFFF00000000)  # +0.0f, NaN-boxed
        st = run(emu, BASE)
        assert st.reason == "breakpoint"
        got[engine] = snapshot(emu)
    assert any(r.opt >= J.T2_OPT for r in emu.engine.regions.values()), "no hot code"
    assert got["hot-sync"] == got["interp"]


def test_the_first_tier_runs_fp_helpers_natively_out_of_line(tmp_path, monkeypatch) -> None:
    """The first tier calls an FP helper's native fast path through ctx's table: a loop of 300
    inexact `fadd.d` (0.1 added up, RNE) gives Python's double sum and NX, calling the Python
    helper at most once per engine — also in a second engine whose code comes from the
    translation cache, where the table is filled at the helper's first call."""
    import struct

    import polyvm.engine.jit as J
    from polyvm.engine.jit import Compiler, JitEngine
    from polyvm.engine.tcache import TranslationCache

    monkeypatch.setattr(J, "TIER2_INSNS", 10**12)  # first tier only
    calls = []
    orig = JitEngine._call

    def counted(self, *a):
        calls.append(a[2])
        return orig(self, *a)

    monkeypatch.setattr(JitEngine, "_call", counted)
    cache = TranslationCache(str(tmp_path), Compiler.get().host_id)
    code = program(
        ["addi s0, zero, 300", "fadd.d fa0, fa0, fa1, rne", "addi s0, s0, -1", "bne s0, zero, -8", "ebreak"]
    )
    want = 0.0
    for _ in range(300):
        want += 0.1
    for n in range(2):
        emu = emulator(
            lambda arch, mem: JitEngine(arch, mem, tier="jit", cache=cache, background=False), code
        )
        emu.reg_write("fa1", struct.unpack("<Q", struct.pack("<d", 0.1))[0])
        emu.reg_write("fa0", 0)
        calls.clear()
        st = run(emu, BASE)
        assert st.reason == "breakpoint"
        assert struct.unpack("<d", struct.pack("<Q", emu.reg_read("fa0")))[0] == want
        assert emu.reg_read("fflags") == 1  # NX
        assert len(calls) <= 1, f"engine {n}: {len(calls)} calls of the Python helper"
        eng = emu.engine
        idx = eng.helper_index["fadd.d"]
        assert eng.fpn[idx] not in (eng.ctx[J.L.CTX_CALL], 0)
    assert emu.engine.regions_loaded > 0


# ---- hooks --------------------------------------------------------------------------------------
# A loop summing a table through a helper function, with loads, stores and a call:
#   for (i = 0; i < 12; i++) { x = tbl[i]; out[i] = f(x); }   with f(x) = x * 3 + 1
HOOK_PROG = program(
    li("s1", DATA)
    + [
        "addi s2, zero, 12",
        "addi s3, zero, 0",  # i
        "ld a0, 0(s1)",  # loop
        "jal ra, 36",  # f
        "sd a0, 256(s1)",
        "add s4, s4, a0",
        "addi s1, s1, 8",
        "addi s3, s3, 1",
        "bne s3, s2, -24",
        "sd s4, 512(s1)",
        "jal zero, 24",  # to the end
        "addi zero, zero, 0",
        "slli t0, a0, 1",  # f
        "add a0, a0, t0",
        "addi a0, a0, 1",
        "jalr zero, 0(ra)",
        "addi zero, zero, 0",  # end
    ]
)
HOOK_END = BASE + len(HOOK_PROG)
F_ADDR = BASE + 4 * (len(li("s1", DATA)) + 12)


def hook_run(engine: str, stop_after: int | None = None, delete_after: int | None = None):
    emu = emulator(engine, HOOK_PROG)
    emu.mem_write(DATA, b"".join(((i * 7) % 11).to_bytes(8, "little") for i in range(12)))
    log: list[tuple] = []

    def code(e: Emulator, pc: int, size: int, data: Any) -> None:
        # (not e.instructions: inside a hook the interpreter's count is its block's start count)
        log.append(("code", data, pc, size, e.reg_read("a0"), e.reg_read("s3")))
        n = sum(1 for x in log if x[0] == "code")
        if stop_after is not None and n == stop_after:
            e.emu_stop()
        if (
            delete_after is not None
            and data == "all"
            and sum(1 for x in log if x[:2] == ("code", "all")) == delete_after
        ):
            e.hook_del(h_all)

    def mem(e: Emulator, access: str, addr: int, size: int, value: int, data: Any) -> None:
        log.append(("mem", data, access, addr, size, value))

    emu.hook_add("code", code, F_ADDR, F_ADDR + 15, user_data="f")  # the function only
    h_all = emu.hook_add("code", code, user_data="all")
    emu.hook_add("mem_read", mem, user_data="r")
    emu.hook_add("mem_write", mem, DATA + 256, DATA + 256 + 8 * 5, user_data="w")  # out[0..5]
    stops = [run(emu, BASE, HOOK_END)]
    if stops[0].reason == "stopped" and emu.reg_read("pc") != HOOK_END:
        stops.append(run(emu, emu.reg_read("pc"), HOOK_END))  # resume where it stopped
    return [stop_key(s) for s in stops], log, snapshot(emu)


@pytest.mark.parametrize("engine", NATIVE)
def test_hooks_fire_in_the_same_order(engine: str) -> None:
    """Code hooks (one on a range, one on everything) and memory hooks (reads anywhere, writes
    to a range) see the same calls, in the same order, with the same register values, as on
    the interpreter."""
    want = hook_run("interp")
    got = hook_run(engine)
    assert got == want
    stops, log, snap = want
    # hand-checked: 12 iterations; f hooked on its 4 instructions each time, before "all"
    n = snap["instructions"]
    assert len([x for x in log if x[:2] == ("code", "all")]) == n
    assert len([x for x in log if x[:2] == ("code", "f")]) == 12 * 4
    assert [x[3] for x in log if x[:2] == ("mem", "r")] == [DATA + 8 * i for i in range(12)]
    assert [(x[3], x[5]) for x in log if x[:2] == ("mem", "w")] == [
        (DATA + 256 + 8 * i, 3 * ((i * 7) % 11) + 1) for i in range(6)
    ]


@pytest.mark.parametrize("engine", NATIVE)
@pytest.mark.parametrize("stop_after", [1, 9, 10, 23, 50, 77])
def test_emu_stop_from_a_hook_and_resume(engine: str, stop_after: int) -> None:
    """emu_stop in the Nth hook call stops before that instruction, with the same state on
    every engine; resuming from there gives the same calls and end state."""
    want = hook_run("interp", stop_after=stop_after)
    got = hook_run(engine, stop_after=stop_after)
    assert got == want
    assert want[0][0][0] == "stopped"


@pytest.mark.parametrize("engine", NATIVE)
def test_hook_deleted_from_a_hook(engine: str) -> None:
    want = hook_run("interp", delete_after=30)
    got = hook_run(engine, delete_after=30)
    assert got == want
    assert len([x for x in want[1] if x[:2] == ("code", "all")]) == 30


@pytest.mark.parametrize("engine", NATIVE)
def test_hooks_added_from_a_hook(engine: str) -> None:
    """A code hook that adds a memory hook and another code hook at its 20th call: both see
    the same calls as on the interpreter, from the same instruction on."""

    def go(engine: str) -> list[tuple]:
        emu = emulator(engine, HOOK_PROG)
        emu.mem_write(DATA, b"".join(((i * 7) % 11).to_bytes(8, "little") for i in range(12)))
        log: list[tuple] = []
        calls = [0]

        def code(e: Emulator, pc: int, size: int, d: Any) -> None:
            calls[0] += 1
            if calls[0] == 20:
                e.hook_add("mem_read", lambda e, acc, addr, size, val, d: log.append(("mem", addr, val)))
                e.hook_add("code", lambda e, pc, size, d: log.append(("code", pc, e.reg_read("a0"))))

        emu.hook_add("code", code)
        run(emu, BASE, HOOK_END)
        return log

    want = go("interp")
    assert go(engine) == want
    # 3 instructions, then 11 per iteration: the 20th is in the 2nd iteration, after its load
    assert len([x for x in want if x[0] == "mem"]) == 12 - 2


@pytest.mark.parametrize("engine", ALL)
def test_register_written_by_a_code_hook_reaches_the_instruction(engine: str) -> None:
    """A code hook runs before its instruction, and a register it writes is what that
    instruction reads, as in Unicorn — even when the instruction before put a constant in that
    register (the IR reads a constant put earlier in a block back as the constant, so blocks
    end before hooked instructions). By hand: the loop runs 40 times, `addi a1, zero, 1` then
    the hook sets a1 = 7 before `add a0, a0, a1`: a0 = 40 * 7 = 280 (40 without the write)."""
    code = program(
        li("a0", 0)
        + li("t0", 40)
        + ["addi a1, zero, 1", "add a0, a0, a1", "addi t0, t0, -1", "bne t0, zero, -12", "addi s2, zero, 7"]
    )
    add_at = BASE + len(program(li("a0", 0) + li("t0", 40))) + 4
    emu = emulator(engine, code)

    def hook(e: Emulator, pc: int, size: int, d: Any) -> None:
        if pc == add_at:
            e.reg_write("a1", 7)

    emu.hook_add("code", hook, add_at, add_at)
    run(emu, BASE, BASE + len(code))
    assert emu.reg_read("a0") == 280
    assert emu.reg_read("s2") == 7 and emu.reg_read("pc") == BASE + len(code)


@pytest.mark.parametrize("engine", ALL)
def test_memory_hooks_see_and_set_the_registers_of_their_instruction(engine: str) -> None:
    """A memory hook sees the registers, pc and instruction count as they are before the
    accessing instruction, and a register it writes is what the next instruction reads (the
    accessing instruction's own result wins), as in Unicorn — on every engine, the hot tier
    included (`hot-sync`: most hooks run from hot code there). Until this was fixed every engine
    showed a hook the state at the start of the block or run (pc and count of the block's
    start, registers written since missing) and dropped its writes. By hand, i = 1..N: the
    store hook sees a1 = i at the `sd`, the load hook sees it at the `ld` and sets
    a4 = 1000 + i (read by the next `add`) and a2 = 5 (the `ld`'s own destination):
    a3 = N * 1000 + N (N + 1) / 2, a2 = N."""
    n = 3000
    head = program(li("s0", DATA) + li("t0", n))
    n0 = len(head) // 4
    body = ["addi a1, a1, 1", "sd a1, 0(s0)", "ld a2, 0(s0)", "add a3, a3, a4", "addi t0, t0, -1"]
    code = program(li("s0", DATA) + li("t0", n) + body + ["bne t0, zero, -20", "addi s2, zero, 7"])
    sd_pc, ld_pc = BASE + len(head) + 4, BASE + len(head) + 8
    emu = emulator(engine, code)
    seen: list[tuple[str, int, int, int, int]] = []

    def on_write(e: Emulator, acc: str, addr: int, size: int, value: int, d: Any) -> None:
        seen.append(("w", e.reg_read("pc"), e.instructions, e.reg_read("a1"), value))

    def on_read(e: Emulator, acc: str, addr: int, size: int, value: int, d: Any) -> None:
        seen.append(("r", e.reg_read("pc"), e.instructions, e.reg_read("a1"), value))
        e.reg_write("a4", 1000 + e.reg_read("a1"))
        e.reg_write("a2", 5)
        regions = getattr(e.engine, "regions", None)  # (the JIT's: a dict of regions)
        hot.append(isinstance(regions, dict) and any(reg.opt == T2_OPT for reg in regions.values()))

    from polyvm.engine.jit import T2_OPT

    hot: list[bool] = []

    emu.hook_add("mem_write", on_write)
    emu.hook_add("mem_read", on_read)
    run(emu, BASE, BASE + len(code))
    want = []
    for i in range(1, n + 1):
        want.append(("w", sd_pc, n0 + (i - 1) * 6 + 1, i, i))
        want.append(("r", ld_pc, n0 + (i - 1) * 6 + 2, i, i))
    assert seen == want
    assert emu.reg_read("a3") == n * 1000 + n * (n + 1) // 2
    assert emu.reg_read("a2") == n and emu.reg_read("s2") == 7
    if engine == "hot-sync":
        assert sum(hot) > n // 2  # (hot regions were installed for most of the run)


@pytest.mark.parametrize("engine", ALL)
def test_memory_hook_state_matches_unicorn(engine: str) -> None:
    """The same loop and hooks under Unicorn (the oracle): what the hooks see (pc, registers)
    and the registers at the end agree. (Unicorn passes 0 as a read hook's value: not compared.)"""
    unicorn = pytest.importorskip("unicorn")
    from unicorn import riscv_const as R

    code = program(
        li("s0", DATA)
        + li("t0", 50)
        + ["addi a1, a1, 3", "sd a1, 8(s0)", "ld a2, 8(s0)", "add a3, a3, a4", "addi t0, t0, -1"]
        + ["bne t0, zero, -20", "sub s2, a3, a2"]
    )
    regs = {
        "a1": R.UC_RISCV_REG_A1,
        "a2": R.UC_RISCV_REG_A2,
        "a3": R.UC_RISCV_REG_A3,
        "a4": R.UC_RISCV_REG_A4,
    }
    regs |= {"pc": R.UC_RISCV_REG_PC, "s2": R.UC_RISCV_REG_S2, "t0": R.UC_RISCV_REG_T0}

    def hooks(read, write):  # (read(name), write(name, value)) -> hook callbacks
        def on_write(*a: Any) -> None:
            seen.append(("w", read("pc"), read("a1"), read("a3"), a[4]))

        def on_read(*a: Any) -> None:
            seen.append(("r", read("pc"), read("a1"), read("a2"), read("a4")))
            write("a4", read("a1") * 7 + 1)
            write("a2", 99)

        return on_write, on_read

    seen: list[tuple] = []
    uc = unicorn.Uc(unicorn.UC_ARCH_RISCV, unicorn.UC_MODE_RISCV64)
    uc.mem_map(BASE, 0x4000)
    uc.mem_map(DATA, 0x4000)
    uc.mem_write(BASE, code)
    w, r = hooks(lambda k: uc.reg_read(regs[k]), lambda k, v: uc.reg_write(regs[k], v))
    uc.hook_add(unicorn.UC_HOOK_MEM_WRITE, w)
    uc.hook_add(unicorn.UC_HOOK_MEM_READ, r)
    uc.emu_start(BASE, BASE + len(code))
    want, want_regs = seen, {k: uc.reg_read(v) for k, v in regs.items()}

    seen = []
    emu = emulator(engine, code)
    w, r = hooks(emu.reg_read, emu.reg_write)
    emu.hook_add("mem_write", w)
    emu.hook_add("mem_read", r)
    run(emu, BASE, BASE + len(code))
    assert seen == want and len(seen) == 100
    assert {k: emu.reg_read(k) for k in regs} == want_regs


@pytest.mark.parametrize("engine", ALL)
def test_emu_stop_in_a_memory_hook_stops_after_the_instruction(engine: str) -> None:
    """emu_stop() in a memory hook: the accessing instruction completes and the next one does
    not start (it used to be ignored until the run's end); emu_start from there goes on. By
    hand: the store of iteration 2500 of 3000 stops with a1 = 2500, t0 = 3000 - 2499, the pc
    after the `sd`, n0 + 2499 * 4 + 2 instructions; resumed: a1 = 3000, n0 + 12000 + 1."""
    n = 3000
    head = program(li("s0", DATA) + li("t0", n))
    n0 = len(head) // 4
    body = ["addi a1, a1, 1", "sd a1, 0(s0)", "addi t0, t0, -1", "bne t0, zero, -12", "addi s2, zero, 7"]
    code = program(li("s0", DATA) + li("t0", n) + body)
    sd_pc = BASE + len(head) + 4
    emu = emulator(engine, code)
    emu.hook_add("mem_write", lambda e, acc, addr, size, value, d: e.emu_stop() if value == 2500 else None)
    st = run(emu, BASE, BASE + len(code))
    assert (st.reason, emu.reg_read("pc")) == ("stopped", sd_pc + 4)
    assert (emu.reg_read("a1"), emu.reg_read("t0"), emu.instructions) == (2500, n - 2499, n0 + 2499 * 4 + 2)
    # The stop was for that run only: a step runs the next instruction (it used to stop again).
    assert emu.step() is None and (emu.reg_read("pc"), emu.reg_read("t0")) == (sd_pc + 8, n - 2500)
    st = run(emu, sd_pc + 8, BASE + len(code))
    assert (st.reason, emu.reg_read("pc")) == ("stopped", BASE + len(code))
    assert (emu.reg_read("a1"), emu.reg_read("s2"), emu.instructions) == (n, 7, n0 + n * 4 + 1)


@pytest.mark.parametrize("engine", NATIVE)
def test_until_and_hook_ranges_change_between_runs(engine: str) -> None:
    """emu_start(until=...) at different addresses on the same (translated) code, then hooks
    on different ranges: each run stops where asked and calls the hooks it has. (The JIT used
    to reuse a translation instrumented for the previous run's addresses.)"""
    code = program(["addi a0, a0, 1"] * 6 + ["jal zero, -24"])
    emu = emulator(engine, code)
    for until, a0 in ((BASE + 8, 2), (BASE + 16, 6), (BASE + 4, 7), (BASE + 20, 12)):
        st = run(emu, BASE, until)
        assert (st.reason, emu.reg_read("pc"), emu.reg_read("a0")) == ("stopped", until, a0)
    seen: list[int] = []
    for lo in (BASE + 4, BASE + 12):
        h = emu.hook_add("code", lambda e, pc, size, d: seen.append(pc), lo, lo)
        run(emu, BASE, BASE + 24)
        emu.hook_del(h)
    assert seen == [BASE + 4, BASE + 12]


@pytest.mark.parametrize("engine", NATIVE)
def test_memory_hook_added_after_native_code_ran(engine: str) -> None:
    """Code that ran natively (its pages in the JIT's software TLB) calls a memory hook added
    later for every access: hooked accesses never take the TLB's fast path."""
    code = program(li("s1", DATA) + ["ld a0, 0(s1)", "addi a0, a0, 1", "sd a0, 0(s1)"])
    emu = emulator(engine, code)
    for _ in range(3):
        run(emu, BASE, BASE + len(code))
    log: list[tuple] = []
    emu.hook_add("mem_read", lambda e, acc, addr, size, val, d: log.append((acc, addr, val)))
    emu.hook_add("mem_write", lambda e, acc, addr, size, val, d: log.append((acc, addr, val)))
    run(emu, BASE, BASE + len(code))
    assert log == [("r", DATA, 3), ("w", DATA, 4)]


# ---- counters and time slices -------------------------------------------------------------------
@pytest.mark.parametrize("engine", ALL)
def test_instret_inside_a_block(engine: str) -> None:
    """rdinstret counts the instructions before it, in its block too (the JIT counted the
    block's earlier instructions twice)."""
    code = program(["addi a1, a1, 1", "addi a1, a1, 1", "csrrs a0, instret, zero", "addi a1, a1, 1"])
    emu = emulator(engine, code)
    emu.emu_start(BASE, until=BASE + len(code))
    assert (emu.reg_read("a0"), emu.instructions) == (2, 4)
    emu.emu_start(BASE, until=BASE + len(code))
    assert (emu.reg_read("a0"), emu.instructions) == (6, 8)


@pytest.mark.parametrize("engine", ALL)
@pytest.mark.parametrize("budget", [1, 3, 50])
def test_budget_stops_and_resumes(engine: str, budget: int) -> None:
    """engine.run(state, max_blocks) on a long loop with calls: time slices end with "budget"
    (state pc = the next instruction), the count is exact at each, and resuming reaches the
    hand-computed end state. Native engines must give control back: a slice runs a bounded
    number of blocks."""
    from polyvm.isa.riscv import RISCV64, X0_SLOT
    from polyvm.memory import AddressSpace

    code = program(
        [
            "addi s0, zero, 0",
            "lui s1, 1",  # 4096 iterations
            "jal ra, 20",  # loop: call f
            "addi s0, s0, 1",
            "bne s0, s1, -8",
            "ebreak",
            "addi zero, zero, 0",
            "add a0, a0, s0",  # f
            "jalr zero, 0(ra)",
        ]
    )
    mem = AddressSpace()
    mem.map(BASE, 0x1000, PROT_ALL)
    mem.write(BASE, code)
    eng = engine_factory(ENGINES[engine])(RISCV64, mem)
    st = RISCV64.new_state()
    st[0] = BASE
    slices = 0
    while True:
        stop = eng.run(st, budget)
        if stop.reason != "budget":
            break
        slices += 1
        assert stop.pc == st[0]
        i = st[X0_SLOT + 8]  # s0: 5 instructions per iteration, s0 counted up in the 4th
        assert 2 + 5 * i - 1 <= st[1] <= 2 + 5 * i + 3
    assert (stop.reason, stop.pc) == ("breakpoint", BASE + 20)
    assert st[X0_SLOT + 10] == sum(range(4096)) and st[1] == 2 + 4096 * 5 + 1
    if engine != "interp":
        assert slices >= 4096 * 2 // (budget * 64), slices  # time slices stay bounded


def test_hot_loops_keep_guest_registers_in_host_registers() -> None:
    """A hot region with a loop that loads from and stores to guest memory, a helper call
    after it, an indirect jump before it (whose switch may go to the loop's head) and enough
    other code that the state pointer has hundreds of uses: after LLVM's -O1 pipeline the
    loop's guest registers (a0 = slot 12, t0 = slot 7) are loaded once before it and stored
    at its exits (LICM's `.promoted` values), not loaded and stored on every iteration. That
    needs natural loops (every way in but the back edge through the loop's first block),
    time-slice checks after the body, a state pointer known writable and aligned, calls that
    do not unwind, and guest accesses and runtime calls marked `!noalias` to the state's alias
    scope (LLVM's capture tracking gives up on a pointer with that many uses)."""
    import polyvm.engine.jit as J

    # (blocks of their own: each loads and stores its register)
    filler = [x for i in range(80) for x in (f"addi x{18 + i % 9}, x{18 + i % 9}, 1", "beq zero, zero, 4")]
    code = program(
        [
            "beq a6, zero, 8",
            "jalr zero, 0(a5)",  # (a target unknown to LLVM: a switch over the entries)
            *filler,  # (many uses of the state pointer)
            "addi t0, zero, 100",
            "ld a2, 0(s1)",  # loop (guest memory, and calls on the slow paths)
            "add a0, a0, a2",
            "sd a0, 8(s1)",
            "addi t0, t0, -1",
            "bne t0, zero, -16",
            "fadd.d fa0, fa0, fa0, dyn",  # (a helper: its slow path is passed the state)
            "ebreak",
        ]
    )
    loop = BASE + 4 * (3 + len(filler))
    emu = emulator(_jit(tier="jit", background=False), code)
    emu.reg_write("s1", DATA)
    emu.mem_write(DATA, (3).to_bytes(8, "little"))
    eng = emu.engine
    blocks = eng._form_region([BASE], 200, whole=True, per_root=200)
    lw = eng.lower_region("pv_loop_test", "pv_loop_test", blocks, [BASE, loop], compact=False)
    assert lw is not None
    c = J.Compiler.get()
    mod = c.llvm.parse_assembly(J.resolve_native(c.module_text([lw.text], lw.decls)))
    pb = c.llvm.create_pass_builder(c.tms[2], c.llvm.create_pipeline_tuning_options(speed_level=1))
    pb.getModulePassManager().run(mod, pb)
    ir = str(mod)
    assert "%st12.promoted" in ir and "%st7.promoted" in ir, ir
    st = run(emu, BASE)
    assert (st.reason, st.pc, emu.reg_read("a0")) == ("breakpoint", BASE + len(code) - 4, 300)
    assert emu.mem_read(DATA + 8, 8) == (300).to_bytes(8, "little")


def test_a_fast_path_that_fails_to_compile_leaves_the_helper(monkeypatch) -> None:
    """If LLVM cannot make a helper's out-of-line fast path, the first tier calls the helper
    itself: same result (0.1 added up 50 times, RNE; NX), no error."""
    import struct

    import polyvm.engine.jit as J
    from polyvm.engine.jit import Compiler

    def broken(self, arch, names):
        raise RuntimeError("LLVM failed")

    monkeypatch.setattr(Compiler, "fast_paths", broken)
    monkeypatch.setattr(J, "TIER2_INSNS", 10**12)
    code = program(
        ["addi s0, zero, 50", "fadd.d fa0, fa0, fa1, rne", "addi s0, s0, -1", "bne s0, zero, -8", "ebreak"]
    )
    emu = emulator(_jit(tier="jit", background=False), code)
    emu.reg_write("fa1", struct.unpack("<Q", struct.pack("<d", 0.1))[0])
    st = run(emu, BASE)
    want = 0.0
    for _ in range(50):
        want += 0.1
    assert st.reason == "breakpoint"
    assert struct.unpack("<d", struct.pack("<Q", emu.reg_read("fa0")))[0] == want
    assert emu.reg_read("fflags") == 1
    eng = emu.engine
    assert eng.fpn[eng.helper_index["fadd.d"]] == eng.ctx[J.L.CTX_CALL]
