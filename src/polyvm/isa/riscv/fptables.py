"""What the FP helpers' native fast paths (`fpnative`) cover, without building any of them:
the helper names, which take a rounding mode, and the accrued-NX shortcut's tables for the
x86-64 first tier and the hot tier. Kept apart from `fpnative` (which builds LLVM IR with
llvmlite's IR builder) so that translating code, cached or emitted by the first tier, does not
import it: the tables are all it needs. `test_fpnative` checks them against `fpnative`'s own.
"""

from __future__ import annotations

NX, UF, OF, DZ, NV = 1, 2, 4, 8, 16


def _takes_rm() -> dict[str, bool]:
    """helper name -> whether its fast path takes a rounding mode (as fpnative's table)."""
    t: dict[str, bool] = {}
    for sfx in ("s", "d"):
        for op in ("add", "sub", "mul", "div"):
            t[f"f{op}.{sfx}"] = True
        t[f"fsqrt.{sfx}"] = True
        for nm in ("fmadd", "fmsub", "fnmsub", "fnmadd"):
            t[f"{nm}.{sfx}"] = True
        for nm in ("feq", "flt", "fle", "fmin", "fmax", "fclass"):
            t[f"{nm}.{sfx}"] = False
        for it in ("w", "wu", "l", "lu"):
            t[f"fcvt.{it}.{sfx}"] = True
            t[f"fcvt.{sfx}.{it}"] = True
    t["fcvt.s.d"] = True
    t["fcvt.d.s"] = True
    return t


TAKES_RM = _takes_rm()
NATIVE: frozenset[str] = frozenset(TAKES_RM)
"""The helper names that have a native version."""


def native_consts(name: str, consts: tuple[int | None, ...]) -> tuple[int | None, ...]:
    """The constant arguments the fast path of `name` depends on: the instruction word (the
    last argument of the helpers that take a rounding mode) is only for the exact helper's
    illegal-instruction trap, so native code built for one word serves every word."""
    if TAKES_RM.get(name) and consts:
        return (*consts[:-1], None)
    return consts


# The accrued-NX shortcut (above) for the x86-64 first tier (`polyvm.engine.x64`), which emits
# it inline before the helper's out-of-line fast path: helper -> (kind, opcode): "sse" the SSE2
# scalar forms (F2 0F op xmm0, xmm1), "sqrt" sqrtsd, "fma" FMA3's 231 forms (VEX 0F38), each
# with "_s" for binary32 (F3 prefix, VEX.W0; the operands are checked NaN-boxed, the result
# boxed). A finite result above the smallest normal (not equal to it: a result rounded up to
# it can be tiny before rounding, with UF) can only have raised NX, which is set already.
_X64_BINARY64 = {
    "fadd.d": ("sse", 0x58),  # addsd
    "fsub.d": ("sse", 0x5C),  # subsd
    "fmul.d": ("sse", 0x59),  # mulsd
    "fdiv.d": ("sse", 0x5E),  # divsd
    "fsqrt.d": ("sqrt", 0x51),  # sqrtsd
    "fmadd.d": ("fma", 0xB9),  # vfmadd231sd: a*b + c (FMA3 hosts)
    "fmsub.d": ("fma", 0xBB),  # vfmsub231sd: a*b - c
    "fnmsub.d": ("fma", 0xBD),  # vfnmadd231sd: -(a*b) + c
    "fnmadd.d": ("fma", 0xBF),  # vfnmsub231sd: -(a*b) - c
}
# binary32 likewise (the operands NaN-boxed, the result boxed): addss ... vfnmsub231ss
X64_NX_SHORTCUT = {
    **_X64_BINARY64,
    **{n.replace(".d", ".s"): (kind + "_s", op) for n, (kind, op) in _X64_BINARY64.items()},
}
# The hot tier's version of the same shortcut (LLVM IR, `lower.RegionLowering`): helper ->
# (operation, the operands' signs, the index of its rm argument, LLVM's FP type). fma(-a, b, c)
# is fnmsub's -(a*b) + c: under RNE, negating an operand rounds the same as negating the
# result. binary32 likewise (operands NaN-boxed, the result boxed).
_IR_BINARY64 = {
    "fadd.d": ("fadd", (1, 1), 2),
    "fsub.d": ("fsub", (1, 1), 2),
    "fmul.d": ("fmul", (1, 1), 2),
    "fdiv.d": ("fdiv", (1, 1), 2),
    "fsqrt.d": ("sqrt", (1,), 1),
    "fmadd.d": ("fma", (1, 1, 1), 3),
    "fmsub.d": ("fma", (1, 1, -1), 3),
    "fnmsub.d": ("fma", (-1, 1, 1), 3),
    "fnmadd.d": ("fma", (-1, 1, -1), 3),
}
IR_NX_SHORTCUT = {
    **{n: (*v, "double") for n, v in _IR_BINARY64.items()},
    **{n.replace(".d", ".s"): (*v, "float") for n, v in _IR_BINARY64.items()},
}
