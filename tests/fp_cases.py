"""Operands for the tests of the binary64 FP shortcuts (tests/test_x64.py: the first tier's,
tests/test_jit_tiers.py: the hot tier's): values around every boundary (zeros, subnormals, the
smallest normal, huge, infinities, NaNs), results just around the smallest normal, one rounded
up to exactly it (tiny before rounding: UF), with NX accrued or not and every rounding mode."""

from __future__ import annotations

import random
import struct

FMA = ("fmadd.d", "fmsub.d", "fnmsub.d", "fnmadd.d")
SHORTCUT_OPS = ["fadd.d", "fsub.d", "fmul.d", "fdiv.d", "fsqrt.d", *FMA]


def f64(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def sources(op: str) -> int:
    """How many source registers op reads (fa1..)."""
    return 1 if op == "fsqrt.d" else 3 if op in FMA else 2


def values(rng: random.Random) -> list[int]:
    specials = [
        0.0,
        -0.0,
        5e-324,
        2.2250738585072014e-308,
        2.225073858507202e-308,
        1.0,
        1.5,
        3.0,
        0.1,
        1e308,
        1.7976931348623157e308,
        float("inf"),
        -float("inf"),
        -2.0,
        -(2.0**-1000),
    ]  # fmt: skip  (sqrt of a negative; an fma cancelling to a tiny result)
    vals = [f64(v) for v in specials] + [0x7FF8000000000000, 0x7FF0000000000001, 0xFFF4000000000000]
    return vals + [f64(rng.uniform(-4, 4)) for _ in range(8)] + [rng.getrandbits(64) for _ in range(8)]


def operands(rng: random.Random, vals: list[int], n: int, i: int) -> list[int]:
    """The n operands of case i."""
    xs = [rng.choice(vals) for _ in range(n)]
    if i % 3 == 0:  # (a result just around the smallest normal)
        xs[0] = f64(rng.uniform(1, 2) * 2.0**-1000)
        xs[1:] = [f64(rng.choice((2.0**22, 2.0**-22, -(2.0**22))))] + [f64(-(2.0**-1000))] * (n - 2)
    if i % 7 == 1 and n > 1:  # (rounded up to exactly the smallest normal: tiny before it, UF)
        xs[:2] = [0x3FEF_FFFF_FFFF_FFFF, 0x0010_0000_0000_0000]
    return xs


def flags_and_mode(rng: random.Random) -> tuple[int, int]:
    """Accrued flags (NX set or clear) and frm (RNE mostly; 5 is illegal: a trap)."""
    return rng.choice((0, 1, 1, 1, 0x1F, 0x10)), rng.choice((0, 0, 0, 1, 3, 5))


def states(arch, pc: int, xs: list[int], flags: int, mode: int) -> list[list[int]]:  # noqa: ANN001
    """Two equal states (one per engine) at pc with fa1.. = xs, fflags and frm set."""
    out = []
    for _ in range(2):
        s = arch.new_state()
        s[0] = pc
        for k, x in enumerate(xs):
            s[arch.regs[f"fa{k + 1}"][0]] = x
        s[arch.regs["fflags"][0]], s[arch.regs["frm"][0]] = flags, mode
        out.append(s)
    return out
