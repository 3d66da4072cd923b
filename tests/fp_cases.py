"""Operands for the tests of the FP shortcuts (binary64; binary32 in the first tier) (tests/test_x64.py: the first tier's,
tests/test_jit_tiers.py: the hot tier's): values around every boundary (zeros, subnormals, the
smallest normal, huge, infinities, NaNs), results just around the smallest normal, one rounded
up to exactly it (tiny before rounding: UF), with NX accrued or not and every rounding mode."""

from __future__ import annotations

import random
import struct

FMA = ("fmadd.d", "fmsub.d", "fnmsub.d", "fnmadd.d")
SHORTCUT_OPS = ["fadd.d", "fsub.d", "fmul.d", "fdiv.d", "fsqrt.d", *FMA]
SINGLE_OPS = [op.replace(".d", ".s") for op in SHORTCUT_OPS]  # (the first tier's binary32 ones)
BOX = 0xFFFF_FFFF_0000_0000  # a NaN-boxed binary32's upper half


def f64(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def f32(x: float) -> int:
    """x rounded to binary32, NaN-boxed as an FP register holds it."""
    return BOX | struct.unpack("<I", struct.pack("<f", x))[0]


def sources(op: str) -> int:
    """How many source registers op reads (fa1..)."""
    return 1 if op.startswith("fsqrt") else 3 if op.replace(".s", ".d") in FMA else 2


def values(rng: random.Random, single: bool = False) -> list[int]:
    if single:  # (binary32 boundaries, boxed; values that are not boxed: the canonical NaN)
        specials = [0.0, -0.0, 1e-45, 1.1754942e-38, 1.1754944e-38, 1.0, 1.5, 3.0, 0.1, 3e38,
                    3.4028235e38, float("inf"), -float("inf"), -2.0, -(2.0**-120)]  # fmt: skip
        vals = [f32(v) for v in specials] + [BOX | 0x7FC00000, BOX | 0x7F800001, BOX | 0xFFA00000]
        vals += [0x3F80_0000, 0x7FFF_FFFF_3F80_0000]  # (1.0 not boxed)
        return vals + [f32(rng.uniform(-4, 4)) for _ in range(8)] + [rng.getrandbits(64) for _ in range(4)]
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


def operands(rng: random.Random, vals: list[int], n: int, i: int, single: bool = False) -> list[int]:
    """The n operands of case i."""
    xs = [rng.choice(vals) for _ in range(n)]
    f, e = (f32, 120) if single else (f64, 1000)
    if i % 3 == 0:  # (a result just around the smallest normal)
        xs[0] = f(rng.uniform(1, 2) * 2.0**-e)
        xs[1:] = [f(rng.choice((2.0**22, 2.0**-22, -(2.0**22))))] + [f(-(2.0**-e))] * (n - 2)
    if i % 7 == 1 and n > 1:  # (rounded up to exactly the smallest normal: tiny before it, UF)
        xs[:2] = (
            [BOX | 0x3F7F_FFFF, BOX | 0x0080_0000]
            if single
            else [0x3FEF_FFFF_FFFF_FFFF, 0x0010_0000_0000_0000]
        )
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
