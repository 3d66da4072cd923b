"""Differential testing of the RISC-V 64 lifter + reference engine against Unicorn.

Random straight-line (forward-branching) programs of 10-30 instruction groups covering RV64I,
M, A (LR/SC, every AMO in .w and .d), F and D (every rounding mode, static and dynamic through
frm), C and Zicsr (fflags/frm/fcsr) run in Unicorn and in polyvm; every integer and FP register,
fflags, frm, the final pc and the data region must agree. See difftest/gen.py for how programs
are built and typed, difftest/runners.py for the comparison and the Unicorn (QEMU 5.0) deviations
from the spec that it corrects narrowly (no NaN boxing; fmin/fmax with one signaling NaN; no NV
for 0 x inf + quiet NaN in fused multiply-add; the pc seen at a trap). Besides registers, fflags,
frm and memory, the number of instructions retired is compared (polyvm's exact count against a
Unicorn code hook), and polyvm runs each seed in one of several engine modes (single-step, small
blocks, no loop regions) so block boundaries fall everywhere.

The native tiers get the same treatment: `test_random_programs_jit` runs 2,000 more programs
(seeds from difftest.gen.JIT_SEED_BASE; `POLYVM_DIFF_JIT_COUNT` / `--diff-jit-count` for more) on
the LLVM JIT, on the JIT forced to switch to the interpreter and back every 3 or 7 blocks, and on
the auto tier; the rounding-mode sweep, the special-operand programs and the traps run on the
JIT as well, so IEEE results and flags are checked against Unicorn on native code too.

The default run is 10,000 programs (seeds 0-9999) in 20 shards; a failing shard prints each
failing seed, shrunk to the fewest instruction groups that still differ, with a disassembly and
the initial registers. `POLYVM_DIFF_COUNT=N` (or `--diff-count N`, see difftest/plugin.py) runs
more, `POLYVM_DIFF_BASE` moves the seed range, and `POLYVM_DIFF_SEED=S pytest
tests/test_diff_unicorn.py -k seed` reruns one seed and prints its report.
"""

from __future__ import annotations

import importlib.util

import pytest

pytest.importorskip("unicorn")
pytest.importorskip("capstone")

from difftest import encode as E  # noqa: E402
from difftest.driver import Checker  # noqa: E402
from difftest.gen import CODE_BASE, JIT_SEED_BASE, PROFILES, make_program  # noqa: E402
from difftest.options import diff_base, diff_count, diff_jit_count, diff_seed  # noqa: E402

SHARDS = 20
JIT_SHARDS = 10
MAX_REPORTS = 3  # failing seeds shrunk and printed in full per shard; the rest are listed

HAVE_LLVM = importlib.util.find_spec("llvmlite") is not None
needs_llvm = pytest.mark.skipif(not HAVE_LLVM, reason="the JIT needs llvmlite")
# Directed programs run on the reference engine and on the JIT.
DIRECTED_MODES = ["default", pytest.param("jit", marks=needs_llvm)]


@pytest.fixture(scope="module")
def checker() -> Checker:
    return Checker()


@pytest.mark.parametrize("shard", range(SHARDS), ids=[f"shard{i:02d}" for i in range(SHARDS)])
def test_random_programs(checker: Checker, shard: int, request: pytest.FixtureRequest) -> None:
    total = diff_count(request.config)
    base = diff_base(request.config)
    _check_seeds(checker, range(base + shard, base + total, SHARDS))


@needs_llvm
@pytest.mark.parametrize("shard", range(JIT_SHARDS), ids=[f"jit{i:02d}" for i in range(JIT_SHARDS)])
def test_random_programs_jit(checker: Checker, shard: int, request: pytest.FixtureRequest) -> None:
    """Random programs on the native tiers (difftest.gen.JIT_MODES: jit, switch=3, switch=7,
    auto)."""
    total = diff_jit_count(request.config)
    base = JIT_SEED_BASE + diff_base(request.config)
    _check_seeds(checker, range(base + shard, base + total, JIT_SHARDS))


def _check_seeds(checker: Checker, seeds: range) -> None:
    reports: list[str] = []
    failing: list[int] = []
    for seed in seeds:
        fail = checker.check(seed, shrink=len(reports) < MAX_REPORTS)
        if fail is not None:
            failing.append(seed)
            if len(reports) < MAX_REPORTS:
                reports.append(fail.report())
    if failing:
        pytest.fail(
            f"{len(failing)} of {len(seeds)} programs differ; seeds {failing[:40]}\n\n"
            + "\n\n".join(reports),
            pytrace=False,
        )


HEAVY_BASE, HEAVY_COUNT = 1_000_000, 40_000
JIT_HEAVY_BASE, JIT_HEAVY_COUNT = JIT_SEED_BASE + 1_000_000, 20_000


@pytest.mark.heavy
@pytest.mark.parametrize("shard", range(SHARDS), ids=[f"heavy{i:02d}" for i in range(SHARDS)])
def test_random_programs_soak(checker: Checker, shard: int) -> None:
    """40,000 more programs on seeds no default run uses (pytest -m heavy; CI when time allows)."""
    seeds = range(HEAVY_BASE + shard, HEAVY_BASE + HEAVY_COUNT, SHARDS)
    failing = [seed for seed in seeds if checker.check(seed, shrink=False) is not None]
    if failing:
        fail = checker.check(failing[0])
        pytest.fail(
            f"{len(failing)} of {len(seeds)} programs differ; seeds {failing[:40]}\n\n"
            + (fail.report() if fail else ""),
            pytrace=False,
        )


@pytest.mark.heavy
@needs_llvm
@pytest.mark.parametrize("shard", range(JIT_SHARDS), ids=[f"heavyjit{i:02d}" for i in range(JIT_SHARDS)])
def test_random_programs_jit_soak(checker: Checker, shard: int) -> None:
    """20,000 more programs on the native tiers (pytest -m heavy)."""
    seeds = range(JIT_HEAVY_BASE + shard, JIT_HEAVY_BASE + JIT_HEAVY_COUNT, JIT_SHARDS)
    failing = [seed for seed in seeds if checker.check(seed, shrink=False) is not None]
    if failing:
        fail = checker.check(failing[0])
        pytest.fail(
            f"{len(failing)} of {len(seeds)} programs differ; seeds {failing[:40]}\n\n"
            + (fail.report() if fail else ""),
            pytrace=False,
        )


def test_seed(checker: Checker, request: pytest.FixtureRequest) -> None:
    """Rerun one seed (POLYVM_DIFF_SEED / --diff-seed) and print its shrunk report."""
    seed = diff_seed(request.config)
    if seed is None:
        pytest.skip("set POLYVM_DIFF_SEED=N (or --diff-seed N) to rerun one program")
    fail = checker.check(seed)
    if fail is not None:
        pytest.fail(fail.report(), pytrace=False)
    prog = make_program(seed)
    from difftest.runners import disasm

    print(f"seed {seed} ({prog.profile}) agrees:\n" + "\n".join(disasm(prog.code())))


# Capstone prints the spec's pseudo-instructions where the operands make one.
_ALIASES = {
    "addi": {"mv", "nop", "li"},
    "addiw": {"sext.w"},
    "slt": {"sltz", "sgtz"},
    "sltiu": {"seqz"},
    "sltu": {"snez"},
    "sub": {"neg"},
    "subw": {"negw"},
    "xori": {"not"},
    "fsgnj.s": {"fmv.s"},
    "fsgnj.d": {"fmv.d"},
    "fsgnjn.s": {"fneg.s"},
    "fsgnjn.d": {"fneg.d"},
    "fsgnjx.s": {"fabs.s"},
    "fsgnjx.d": {"fabs.d"},
    "csrr fflags": {"frflags"},
    "csrr frm": {"frrm"},
    "csrr fcsr": {"frcsr"},
    "csrrwi fflags": {"fsflagsi"},
    "csrrwi frm": {"fsrmi"},
}
# LLVM (capstone) only decodes these exact conversions with rm = 000; the spec allows any rm.
_CAPSTONE_RM0_ONLY = {"fcvt.d.s", "fcvt.d.w", "fcvt.d.wu"}


def test_encoders_agree_with_capstone() -> None:
    """The hand-written encoders produce the instructions their names say (capstone decodes them)."""
    import capstone

    md = capstone.Cs(capstone.CS_ARCH_RISCV, capstone.CS_MODE_RISCV64 | capstone.CS_MODE_RISCVC)
    seen: set[str] = set()
    bad: list[str] = []
    for seed in range(600):
        for u in make_program(seed).units:
            if u.build is not None or len(u.words) != 1:
                continue
            word = u.words[0]
            insn = next(md.disasm(E.to_bytes(word), 0x1000, 1), None)
            if insn is None:
                if u.name in _CAPSTONE_RM0_ONLY and (word >> 12) & 7:
                    continue
                bad.append(f"{u.name}: {word:#x} does not decode")
                continue
            key = u.name.split()[0] if u.name.startswith("csr") and not u.name.startswith("csrr ") else u.name
            ok = {u.name, key} | _ALIASES.get(u.name, set())
            if u.name.startswith("csr"):
                ok |= {key[:3] + key[4:]}  # csrrsi -> csrsi when rd = x0
            if insn.mnemonic not in ok:
                bad.append(f"{u.name}: {word:#x} decodes as {insn.mnemonic} {insn.op_str}")
            seen.add(u.name)
    assert not bad, "\n".join(bad[:30])
    assert len(seen) > 150, sorted(seen)


def test_profiles_cover_every_extension() -> None:
    names: set[str] = set()
    for seed in range(400):
        names |= {u.name for u in make_program(seed).units}
    for must in [
        "mulhsu", "divuw", "remw",  # M
        "lr.w/sc.w", "lr.d/sc.d", "amominu.w", "amomaxu.d", "amoswap.d",  # A
        "fmadd.s", "fnmsub.d", "fsqrt.d", "fcvt.lu.s", "fcvt.s.d", "fcvt.d.s", "fclass.s", "fmv.x.w",  # F/D
        "c.addi4spn", "c.addi16sp", "c.lwsp", "c.sdsp", "c.fld", "c.fsdsp", "c.beqz", "c.jalr",  # C
        "csrrw fcsr", "csrrsi frm", "csrr fflags",  # Zicsr
        "fence.i", "auipc/jalr", "jal", "bltu", "lwu", "sraiw",  # I, Zifencei
    ]:  # fmt: skip
        assert must in names, must
    assert set(PROFILES) == {"int", "fp", "amo", "mix"}


@pytest.mark.parametrize("mode", DIRECTED_MODES)
def test_rounding_sweep(checker: Checker, mode: str) -> None:
    """Every rounded FP operation, single and double, in rm 0-4 and dynamic with frm 0-4 (on the
    JIT one program per combination instead of three: each costs a native compile)."""
    from difftest.directed import rounding_sweep

    progs = rounding_sweep(3 if mode == "default" else 1)
    for p in progs:
        p.engine_mode = mode
    fails = [f for p in progs if (f := checker.check_program(p, shrink=False)) is not None]
    if fails:
        pytest.fail(
            f"{len(fails)} of {len(progs)} sweep programs differ: {[f.prog.profile for f in fails][:30]}\n\n"
            + "\n\n".join(f.report() for f in fails[:MAX_REPORTS]),
            pytrace=False,
        )


def _trap_params():
    from difftest.directed import MISALIGNED_ATOMICS, TRAPS

    out = [pytest.param(*t, id=t[0]) for t in TRAPS]
    for t in MISALIGNED_ATOMICS:
        out.append(pytest.param(*t, id="misaligned " + t[0]))
    return out


@pytest.mark.parametrize("mode", DIRECTED_MODES)
@pytest.mark.parametrize("name, words, frm, xset", _trap_params())
def test_trap(
    checker: Checker, name: str, words: list[int], frm: int, xset: dict[int, int], mode: str
) -> None:
    """Reserved rounding modes, reserved encodings, misaligned atomics: both must trap, precisely."""
    from difftest.directed import trap_program

    prog = trap_program(name, words, frm, xset)
    prog.engine_mode = mode
    code = prog.code()
    uni = checker.uni.run(prog, code)
    last_pc = CODE_BASE + len(code) - E.size_of(words[-1])
    assert uni.trap is not None and uni.trap[1] == last_pc, (
        f"Unicorn did not trap at {last_pc:#x}: {uni.trap}"
    )
    fail = checker.check_program(prog, shrink=False)
    if fail is not None:
        pytest.fail(fail.report(), pytrace=False)


@pytest.mark.parametrize("mode", DIRECTED_MODES)
def test_special_operands(checker: Checker, mode: str) -> None:
    """Every FP op on every combination of special values (±0, ±inf, NaNs, subnormals, extremes)."""
    from difftest.directed import special_operands

    progs = special_operands()
    for p in progs:
        p.engine_mode = mode
    fails = [f for p in progs if (f := checker.check_program(p, shrink=False)) is not None]
    if fails:
        pytest.fail(
            f"{len(fails)} of {len(progs)} special-operand programs differ: "
            f"{[f.prog.profile for f in fails][:30]}\n\n"
            + "\n\n".join(f.report() for f in fails[:MAX_REPORTS]),
            pytrace=False,
        )
