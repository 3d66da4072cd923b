"""Native (LLVM IR) fast paths for the RISC-V floating-point helpers of :mod:`rv64fd`.

The JIT calls :func:`emit` for each FP helper call it lowers.  The emitted code computes the
result with host IEEE arithmetic and the exception flags with exact tests, and yields an ``ok``
bit that is true only where both are provably bit-identical to the Python helper (the
:mod:`polyvm.softfloat` reference); when ``ok`` is false the caller runs the helper instead.

Assumptions about the code generator: no fast-math flags and no FP contraction beyond what the IR
asks for (LLVM's defaults), host binary32/binary64 arithmetic in round-to-nearest-even with
gradual underflow (the x86-64 SSE/AVX default MXCSR).  The host's NaN payloads never matter: every
NaN result is replaced by the RISC-V canonical NaN.

What is native (only under round-to-nearest-even: rm 0, or rm 7 with frm 0; any other rm gives
ok = false and the helper raises or rounds):

* fadd/fsub/fmul/fdiv/fsqrt/fmadd/fmsub/fnmsub/fnmadd .s: every input, except an fma whose
  double-precision sum lands exactly on the tininess threshold with a nonzero error term.
  The binary32 operation is done by the host (single rounding); the flags come from the exact
  binary64 image of the operation (a product of two singles, a quotient check q*y == x, a
  TwoSum error term), which also decides tininess after rounding exactly.
* the same for .d: NaN/inf/zero operands everywhere; finite results when the exactness test is
  valid (see each function: tiny results and some extreme exponents fall back).
* fcvt between float and int in both directions, fcvt.s.d/fcvt.d.s, feq/flt/fle, fmin/fmax,
  fclass: every input.

The accrued-NX shortcut (QEMU's "hardfloat" idea): when the accrued fflags already has NX, as
in nearly every FP program after its first inexact operation, add/sub/mul/div/sqrt/fma under
RNE branch to a block that does only the host operation and a range test of its result; a
finite, non-tiny result (or an exactly-zero case) can have raised NX alone, which changes
nothing, so it is the answer with no flags.  Everything else takes the exact path above.
"""

from __future__ import annotations

from collections.abc import Callable

from llvmlite import ir

from polyvm.isa.riscv.common import FFLAGS_SLOT, FRM_SLOT
from polyvm.isa.riscv.fptables import DZ, NATIVE, NV, NX, OF, UF

__all__ = ["emit", "NATIVE"]

I1 = ir.IntType(1)
I8 = ir.IntType(8)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
F32 = ir.FloatType()
F64 = ir.DoubleType()

NAN_BOX = 0xFFFF_FFFF_0000_0000

# Tininess after rounding for binary32: RN_24(|v|) < 2**-126  <=>  |v| < 2**-126 - 2**-151 (the
# midpoint below 2**-126 rounds up to it, ties to even).  Exact as a double.
_T32 = 2.0**-126 - 2.0**-151
_DBL_MIN = 2.0**-1022


class _Fmt:
    __slots__ = ("ity", "fty", "frac_bits", "exp_max", "sign_mask", "mag_mask", "inf", "quiet", "cnan")

    def __init__(self, ity: ir.IntType, fty: ir.Type, exp_bits: int, frac_bits: int) -> None:
        width = 1 + exp_bits + frac_bits
        self.ity = ity
        self.fty = fty
        self.frac_bits = frac_bits
        self.exp_max = (1 << exp_bits) - 1
        self.sign_mask = 1 << (width - 1)
        self.mag_mask = self.sign_mask - 1
        self.inf = self.exp_max << frac_bits
        self.quiet = 1 << (frac_bits - 1)
        self.cnan = self.inf | self.quiet


S = _Fmt(I32, F32, 8, 23)
D = _Fmt(I64, F64, 11, 52)


class _Cls:
    """Integer classification of an operand's bit pattern."""

    __slots__ = ("bits", "nan", "snan", "inf", "zero", "normal", "neg")

    def __init__(self, em: _Em, f: _Fmt, bits: ir.Value) -> None:
        b = em.b
        mag = b.and_(bits, em.ic(f.ity, f.mag_mask))
        self.bits = bits
        self.nan = b.icmp_unsigned(">", mag, em.ic(f.ity, f.inf))
        self.snan = b.and_(
            self.nan, b.icmp_unsigned("==", b.and_(bits, em.ic(f.ity, f.quiet)), em.ic(f.ity, 0))
        )
        self.inf = b.icmp_unsigned("==", mag, em.ic(f.ity, f.inf))
        self.zero = b.icmp_unsigned("==", mag, em.ic(f.ity, 0))
        min_normal = 1 << f.frac_bits
        self.normal = b.and_(
            b.icmp_unsigned(">=", mag, em.ic(f.ity, min_normal)),
            b.icmp_unsigned("<", mag, em.ic(f.ity, f.inf)),
        )
        self.neg = b.icmp_signed("<", bits, em.ic(f.ity, 0))


class _Em:
    """Thin conveniences over an IRBuilder."""

    def __init__(self, b: ir.IRBuilder) -> None:
        self.b = b

    # constants
    @staticmethod
    def ic(ty: ir.IntType, v: int) -> ir.Constant:
        return ir.Constant(ty, v & ((1 << ty.width) - 1))

    @staticmethod
    def fc(ty: ir.Type, v: float) -> ir.Constant:
        return ir.Constant(ty, v)

    TRUE = ir.Constant(I1, 1)
    FALSE = ir.Constant(I1, 0)

    def intrinsic(self, name: str, ret: ir.Type, argtys: list[ir.Type]) -> ir.Function:
        mod = self.b.module
        fn = mod.globals.get(name)
        if fn is None:
            fn = ir.Function(mod, ir.FunctionType(ret, argtys), name=name)
        return fn

    def _fsuffix(self, ty: ir.Type) -> str:
        return "f32" if ty == F32 else "f64"

    def fabs(self, x: ir.Value) -> ir.Value:
        # The sign bit cleared through the integer view: what llvm.fabs does, which LLVM's
        # fast instruction selector (the first tier) cannot lower without falling back.
        it = I32 if x.type == F32 else I64
        w = 32 if x.type == F32 else 64
        return self.b.bitcast(self.b.and_(self.b.bitcast(x, it), ir.Constant(it, (1 << (w - 1)) - 1)), x.type)

    def sqrt(self, x: ir.Value) -> ir.Value:
        return self.b.call(self.intrinsic(f"llvm.sqrt.{self._fsuffix(x.type)}", x.type, [x.type]), [x])

    def fma(self, x: ir.Value, y: ir.Value, z: ir.Value) -> ir.Value:
        t = x.type
        return self.b.call(self.intrinsic(f"llvm.fma.{self._fsuffix(t)}", t, [t, t, t]), [x, y, z])

    def roundeven(self, x: ir.Value) -> ir.Value:
        return self.b.call(self.intrinsic(f"llvm.roundeven.{self._fsuffix(x.type)}", x.type, [x.type]), [x])

    def ctlz(self, x: ir.Value) -> ir.Value:
        t = x.type
        return self.b.call(self.intrinsic(f"llvm.ctlz.i{t.width}", t, [t, I1]), [x, self.FALSE])

    def cttz(self, x: ir.Value) -> ir.Value:
        t = x.type
        return self.b.call(self.intrinsic(f"llvm.cttz.i{t.width}", t, [t, I1]), [x, self.FALSE])

    # logic
    def all(self, *cs: ir.Value) -> ir.Value:
        r = cs[0]
        for c in cs[1:]:
            r = self.b.and_(r, c)
        return r

    def any(self, *cs: ir.Value) -> ir.Value:
        r = cs[0]
        for c in cs[1:]:
            r = self.b.or_(r, c)
        return r

    def sel(self, c: ir.Value, x: ir.Value, y: ir.Value) -> ir.Value:
        return self.b.select(c, x, y)

    def flag(self, c: ir.Value, bits: int, other: ir.Value | int = 0) -> ir.Value:
        """c ? bits : other, as i64 flags."""
        o = other if isinstance(other, ir.Value) else self.ic(I64, other)
        return self.sel(c, self.ic(I64, bits), o)

    # floating point predicates
    def flt(self, op: str, x: ir.Value, y: ir.Value | float) -> ir.Value:
        if not isinstance(y, ir.Value):
            y = self.fc(x.type, y)
        return self.b.fcmp_ordered(op, x, y)

    def is_nan(self, x: ir.Value) -> ir.Value:
        return self.b.fcmp_unordered("uno", x, x)

    def is_inf(self, x: ir.Value) -> ir.Value:
        return self.flt("==", self.fabs(x), float("inf"))

    def two_sum_err(self, x: ir.Value, y: ir.Value, s: ir.Value) -> ir.Value:
        """Knuth's TwoSum error term: x + y == s + err exactly when no step overflows (any
        overflow leaves err infinite or NaN)."""
        b = self.b
        bv = b.fsub(s, x)
        av = b.fsub(s, bv)
        return b.fadd(b.fsub(x, av), b.fsub(y, bv))


# ---- operands and results ------------------------------------------------------------------------
def _unbox(em: _Em, a: ir.Value) -> ir.Value:
    b = em.b
    boxed = b.icmp_unsigned("==", b.lshr(a, em.ic(I64, 32)), em.ic(I64, 0xFFFF_FFFF))
    return em.sel(boxed, b.trunc(a, I32), em.ic(I32, S.cnan))


def _operand(em: _Em, f: _Fmt, a: ir.Value) -> ir.Value:
    """A helper argument (i64 register pattern) as the format's integer bits."""
    return _unbox(em, a) if f is S else a


def _to_reg(em: _Em, f: _Fmt, bits: ir.Value) -> ir.Value:
    """Format bits -> the 64-bit register pattern (singles NaN-boxed)."""
    if f is S:
        return em.b.or_(em.b.zext(bits, I64), em.ic(I64, NAN_BOX))
    return bits


# ---- arithmetic ----------------------------------------------------------------------------------
def _arith(em: _Em, f: _Fmt, op: str, regs: list[ir.Value], neg_p: bool = False, neg_c: bool = False):
    """(ok, result, flags) for add/sub/mul/div/sqrt/fma, rounding mode aside."""
    b = em.b
    bits = [_operand(em, f, r) for r in regs]
    cls = [_Cls(em, f, v) for v in bits]
    xs = [b.bitcast(v, f.fty) for v in bits]
    in_nan = em.any(*(c.nan for c in cls))
    in_inf = em.any(*(c.inf for c in cls))
    snan = em.any(*(c.snan for c in cls))
    nv_extra = em.FALSE
    if op == "fma":
        a, c2 = cls[0], cls[1]
        # RISC-V: inf * 0 is invalid even with a quiet NaN addend.
        nv_extra = em.any(em.all(a.inf, c2.zero), em.all(a.zero, c2.inf))
    z, ok_fin, fl_fin = (_ARITH32 if f is S else _ARITH64)[op](em, xs, cls, neg_p, neg_c)
    z_nan = em.is_nan(z)
    # A NaN result: NV for a signalling operand, an invalid operation (no NaN operand) or inf*0.
    nan_nv = em.any(snan, b.not_(in_nan), nv_extra)
    # A non-NaN result with an infinite operand is exact (inf, or 0 for x/inf).
    flags = em.sel(z_nan, em.flag(nan_nv, NV), em.sel(in_inf, em.ic(I64, 0), fl_fin))
    ok = em.any(z_nan, in_inf, ok_fin)
    res = em.sel(z_nan, em.ic(f.ity, f.cnan), b.bitcast(z, f.ity))
    return ok, _to_reg(em, f, res), flags


# Singles: the host does the binary32 operation (one rounding); the flags come from an exact
# binary64 image.  For add/fma it is s + e with s = RN64(v) and the TwoSum error e (no overflow
# or underflow trouble: every binary32 sum/product is far inside binary64's range).  Then
#   inexact  <=>  e != 0 or z != s   (e != 0: v is not even a double),
#   tiny     <=>  |v| < T32, decided from s except when |s| == T32 and e != 0 (-> ok = false),
#   overflow <=>  z = inf from finite operands (RNE).
def _flags32(em: _Em, z: ir.Value, s: ir.Value, e: ir.Value | None) -> tuple[ir.Value, ir.Value]:
    b = em.b
    zd = b.fpext(z, F64)
    z_inf = em.is_inf(zd)
    nx = em.flt("!=", zd, s)
    abs_s = em.fabs(s)
    ok = em.TRUE
    if e is not None:
        e_nz = em.flt("!=", e, 0.0)
        nx = em.any(nx, e_nz)
        ok = b.not_(em.all(em.flt("==", abs_s, _T32), e_nz))
    tiny = em.flt("<", abs_s, _T32)
    fl = em.flag(nx, NX, 0)
    fl = em.sel(em.all(nx, tiny), em.ic(I64, NX | UF), fl)
    fl = em.flag(z_inf, OF | NX, fl)
    return ok, fl


def _s_addsub(neg: bool):
    def f(em: _Em, xs, cls, neg_p, neg_c):
        b = em.b
        x, y = xs
        xd, yd = b.fpext(x, F64), b.fpext(y, F64)
        if neg:
            y, yd = b.fneg(y), b.fneg(yd)
        z = b.fadd(x, y)
        s = b.fadd(xd, yd)
        ok, fl = _flags32(em, z, s, em.two_sum_err(xd, yd, s))
        return z, ok, fl

    return f


def _s_mul(em: _Em, xs, cls, neg_p, neg_c):
    b = em.b
    x, y = xs
    z = b.fmul(x, y)
    p = b.fmul(b.fpext(x, F64), b.fpext(y, F64))  # 24x24-bit product: exact
    ok, fl = _flags32(em, z, p, None)
    return z, ok, fl


def _s_div(em: _Em, xs, cls, neg_p, neg_c):
    b = em.b
    x, y = xs
    z = b.fdiv(x, y)
    xd, yd, zd = b.fpext(x, F64), b.fpext(y, F64), b.fpext(z, F64)
    # z*y is exact in a double, so it equals x iff z is the exact quotient (z = 0 or inf: never).
    nx = em.flt("!=", b.fmul(zd, yd), xd)
    # |x/y| < T32  <=>  |x| < T32*|y|, and T32*|y| (25 x 24 bits) is exact.
    tiny = em.flt("<", em.fabs(xd), b.fmul(em.fabs(yd), em.fc(F64, _T32)))
    fl = em.flag(nx, NX, 0)
    fl = em.sel(em.all(nx, tiny), em.ic(I64, NX | UF), fl)
    fl = em.flag(em.is_inf(zd), OF | NX, fl)
    fl = em.flag(cls[1].zero, DZ, fl)  # finite nonzero / 0 (0/0 is a NaN result)
    return z, em.TRUE, fl


def _s_sqrt(em: _Em, xs, cls, neg_p, neg_c):
    b = em.b
    (x,) = xs
    z = em.sqrt(x)
    zd = b.fpext(z, F64)
    # Roots of binary32 numbers are normal: no UF/OF.  z*z is exact in a double.
    nx = em.flt("!=", b.fmul(zd, zd), b.fpext(x, F64))
    return z, em.TRUE, em.flag(nx, NX, 0)


def _s_fma(em: _Em, xs, cls, neg_p, neg_c):
    b = em.b
    x, y, w = xs
    xd, yd, wd = b.fpext(x, F64), b.fpext(y, F64), b.fpext(w, F64)
    if neg_p:
        x, xd = b.fneg(x), b.fneg(xd)
    if neg_c:
        w, wd = b.fneg(w), b.fneg(wd)
    z = em.fma(x, y, w)
    p = b.fmul(xd, yd)  # exact
    s = b.fadd(p, wd)
    ok, fl = _flags32(em, z, s, em.two_sum_err(p, wd, s))
    return z, ok, fl


_ARITH32 = {
    "add": _s_addsub(False),
    "sub": _s_addsub(True),
    "mul": _s_mul,
    "div": _s_div,
    "sqrt": _s_sqrt,
    "fma": _s_fma,
}


# Doubles: the host result is correctly rounded; each function gives (z, ok, flags) for finite
# operands and a non-NaN z.  Inexact results are only claimed where tininess cannot arise
# (|z| > 2**-1022 strictly: then the exact value is above 2**-1022 too) or cannot matter.
def _d_addsub(neg: bool):
    def f(em: _Em, xs, cls, neg_p, neg_c):
        b = em.b
        x, y = xs
        if neg:
            y = b.fneg(y)
        z = b.fadd(x, y)
        e = em.two_sum_err(x, y, z)
        # An inexact sum of binary64 numbers is >= 2**-1022 (below that every sum of multiples
        # of 2**-1074 is representable), so never tiny; a finite e is the exact error.
        z_inf = em.is_inf(z)
        ok = em.any(z_inf, em.flt("<", em.fabs(e), float("inf")))
        fl = em.flag(z_inf, OF | NX, em.flag(em.flt("!=", e, 0.0), NX, 0))
        return z, ok, fl

    return f


def _d_mul(em: _Em, xs, cls, neg_p, neg_c):
    b = em.b
    x, y = xs
    z = b.fmul(x, y)
    # The error x*y - z is a multiple of 2**(qx+qy) (quanta: 2**(max(e,1) - 1075) for biased
    # exponent e) and at most 2**53 such units in magnitude, so with qx + qy >= -1074 it is
    # representable and fma(x, y, -z) computes it exactly: zero iff the product is exact.
    r = em.fma(x, y, b.fneg(z))
    z_inf = em.is_inf(z)
    zero_op = em.any(cls[0].zero, cls[1].zero)
    exact = em.flt("==", r, 0.0)
    valid = b.icmp_unsigned(">=", b.add(_qexp(em, cls[0]), _qexp(em, cls[1])), em.ic(I64, 1076))
    # Inexact results only above 2**-1022 (never tiny); exact ones anywhere.
    ranged = em.all(valid, em.any(exact, em.flt(">", em.fabs(z), _DBL_MIN)))
    fl = em.flag(exact, 0, NX)
    fl = em.flag(zero_op, 0, fl)
    fl = em.flag(z_inf, OF | NX, fl)
    return z, em.any(z_inf, zero_op, ranged), fl


def _qexp(em: _Em, c: _Cls) -> ir.Value:
    """max(biased exponent, 1): the operand's quantum is 2**(that - 1075)."""
    b = em.b
    e = b.and_(b.lshr(c.bits, em.ic(I64, 52)), em.ic(I64, 0x7FF))
    return em.sel(b.icmp_unsigned("==", e, em.ic(I64, 0)), em.ic(I64, 1), e)


def _d_div(em: _Em, xs, cls, neg_p, neg_c):
    b = em.b
    x, y = xs
    z = b.fdiv(x, y)
    # x - z*y is a multiple of 2**min(qx, qz+qy); |x| >= 2**-967 with z normal gives ez+ey >=
    # -969, so a nonzero residual is >= 2**-1073: fma(-z, y, x) == 0 iff the quotient is exact.
    r = em.fma(b.fneg(z), y, x)
    z_inf = em.is_inf(z)
    x_zero, y_zero = cls[0].zero, cls[1].zero
    ranged = em.all(em.flt(">=", em.fabs(x), 2.0**-967), em.flt(">", em.fabs(z), _DBL_MIN))
    fl = em.flag(em.flt("!=", r, 0.0), NX, 0)
    fl = em.flag(z_inf, OF | NX, fl)
    fl = em.flag(x_zero, 0, fl)
    fl = em.flag(y_zero, DZ, fl)
    return z, em.any(y_zero, x_zero, z_inf, ranged), fl


def _d_sqrt(em: _Em, xs, cls, neg_p, neg_c):
    b = em.b
    (x,) = xs
    z = em.sqrt(x)
    # Exact iff z*z == x.  Scale tiny x by 2**200 (and z by 2**100; both exact) so that the
    # residual x - z*z, a multiple of 2**min(qx, 2qz) >= 2**-1006, cannot flush to zero.
    small = em.flt("<", x, 2.0**-900)
    xs_ = em.sel(small, b.fmul(x, em.fc(F64, 2.0**200)), x)
    zs = em.sel(small, b.fmul(z, em.fc(F64, 2.0**100)), z)
    r = em.fma(b.fneg(zs), zs, xs_)
    fl = em.flag(em.flt("!=", r, 0.0), NX, 0)
    fl = em.flag(cls[0].zero, 0, fl)
    return z, em.TRUE, fl


def _d_fma(em: _Em, xs, cls, neg_p, neg_c):
    """(±a*b) ± c.  With x = ±a and w = ±c, the host gives r = RN(x*b + w); it is exact iff
    x*b == r - w.  Both sides are split error-free into normalized pairs (hi == RN(hi + lo)):
    TwoProd x*b = u1 + u2 (u2 = fma(x, b, -u1)) and TwoSum r - w = h + l.  Two such pairs of
    the same value are equal (hi = RN(value), lo = value - hi), so r is exact iff u1 == h and
    u2 == l."""
    b = em.b
    x, y, w = xs
    ca, cb, _ = cls
    if neg_p:
        x = b.fneg(x)
    if neg_c:
        w = b.fneg(w)
    z = em.fma(x, y, w)
    z_inf = em.is_inf(z)
    zero_op = em.any(ca.zero, cb.zero)  # product 0: the result is the addend (or a signed 0)
    u1 = b.fmul(x, y)
    u2 = em.fma(x, y, b.fneg(u1))
    nw = b.fneg(w)
    h = b.fadd(z, nw)
    l_ = em.two_sum_err(z, nw, h)

    # TwoProd is exact when qa + qb >= -1074 (see _d_mul) and u1 does not overflow.
    prod_ok = em.all(
        b.icmp_unsigned(">=", b.add(_qexp(em, ca), _qexp(em, cb)), em.ic(I64, 1076)),
        em.flt("<", em.fabs(u1), float("inf")),  # no overflow in the product's high part
    )
    sum_ok = em.flt("<", em.fabs(l_), float("inf"))  # no overflow inside TwoSum
    exact = em.all(em.flt("==", u1, h), em.flt("==", u2, l_))
    # Inexact results only above 2**-1022 (never tiny); exact ones anywhere.
    ranged = em.all(prod_ok, sum_ok, em.any(exact, em.flt(">", em.fabs(z), _DBL_MIN)))
    fl = em.flag(exact, 0, NX)
    fl = em.flag(zero_op, 0, fl)
    fl = em.flag(z_inf, OF | NX, fl)
    return z, em.any(z_inf, zero_op, ranged), fl


_ARITH64 = {
    "add": _d_addsub(False),
    "sub": _d_addsub(True),
    "mul": _d_mul,
    "div": _d_div,
    "sqrt": _d_sqrt,
    "fma": _d_fma,
}


# ---- conversions ---------------------------------------------------------------------------------
_INT_RANGE = {  # (signed, width) -> (lo, hi as floats for the range test, hi inclusive?)
    (True, 32): (-(2.0**31), 2.0**31 - 1, True),
    (False, 32): (0.0, 2.0**32 - 1, True),
    (True, 64): (-(2.0**63), 2.0**63, False),
    (False, 64): (0.0, 2.0**64, False),
}


def _f_to_int(em: _Em, f: _Fmt, reg: ir.Value, width: int, signed: bool):
    b = em.b
    bits = _operand(em, f, reg)
    c = _Cls(em, f, bits)
    x = b.bitcast(bits, f.fty)
    xd = b.fpext(x, F64) if f is S else x
    r = em.roundeven(xd)
    lo, hi, hi_incl = _INT_RANGE[(signed, width)]
    # Range of the rounded value (RISC-V: -0.4 -> 0 is fine for unsigned, -0.6 -> -1 is not).
    in_range = em.all(em.flt(">=", r, lo), em.flt("<=" if hi_incl else "<", r, hi))
    rc = em.sel(in_range, r, em.fc(F64, 0.0))
    ity = ir.IntType(width)
    v = b.fptosi(rc, ity) if signed else b.fptoui(rc, ity)
    v = b.sext(v, I64) if width == 32 else v  # RV64 sign-extends 32-bit results, unsigned too
    lo_i = -(1 << (width - 1)) if signed else 0
    hi_i = (1 << (width - 1)) - 1 if signed else (1 << width) - 1
    if width == 32:
        lo_i = lo_i & 0xFFFF_FFFF
        hi_i = hi_i & 0xFFFF_FFFF
        lo_i = lo_i | (NAN_BOX if lo_i >> 31 else 0)
        hi_i = hi_i | (NAN_BOX if hi_i >> 31 else 0)
    sat = em.sel(em.all(c.neg, b.not_(c.nan)), em.ic(I64, lo_i), em.ic(I64, hi_i))
    res = em.sel(in_range, v, sat)
    fl = em.flag(in_range, 0, NV)  # out of range, inf, NaN: NV (no NX)
    fl = em.sel(em.all(in_range, em.flt("!=", r, xd)), em.ic(I64, NX), fl)
    return em.TRUE, res, fl


def _int_to_f(em: _Em, f: _Fmt, reg: ir.Value, width: int, signed: bool):
    b = em.b
    ity = ir.IntType(width)
    v = b.trunc(reg, ity) if width == 32 else reg
    z = b.sitofp(v, f.fty) if signed else b.uitofp(v, f.fty)  # correctly rounded (RNE)
    # Inexact iff |v| has more significant bits than the precision.
    mag = b.zext(v, I64) if width == 32 else v
    if signed:
        vs = b.sext(v, I64) if width == 32 else v
        mag = em.sel(b.icmp_signed("<", vs, em.ic(I64, 0)), b.neg(vs), vs)  # -2**63 -> 2**63
    span = b.sub(em.ic(I64, 64), b.add(em.ctlz(mag), em.cttz(mag)))
    prec = 24 if f is S else 53
    nx = em.all(b.icmp_unsigned("!=", mag, em.ic(I64, 0)), b.icmp_signed(">", span, em.ic(I64, prec)))
    return em.TRUE, _to_reg(em, f, b.bitcast(z, f.ity)), em.flag(nx, NX, 0)


def _s_from_d(em: _Em, reg: ir.Value):
    b = em.b
    c = _Cls(em, D, reg)
    x = b.bitcast(reg, F64)
    z = b.fptrunc(x, F32)  # one correct rounding, subnormals included
    zd = b.fpext(z, F64)
    finite = b.not_(em.any(c.nan, c.inf))
    nx = em.all(finite, em.flt("!=", zd, x))
    tiny = em.flt("<", em.fabs(x), _T32)  # x is the exact value
    fl = em.flag(nx, NX, 0)
    fl = em.sel(em.all(nx, tiny), em.ic(I64, NX | UF), fl)
    fl = em.sel(em.all(finite, em.is_inf(zd)), em.ic(I64, OF | NX), fl)
    fl = em.flag(c.nan, 0, fl)
    fl = em.flag(c.snan, NV, fl)
    res = em.sel(c.nan, em.ic(I32, S.cnan), b.bitcast(z, I32))
    return em.TRUE, _to_reg(em, S, res), fl


def _d_from_s(em: _Em, reg: ir.Value):
    b = em.b
    bits = _unbox(em, reg)
    c = _Cls(em, S, bits)
    z = b.fpext(b.bitcast(bits, F32), F64)  # exact
    res = em.sel(c.nan, em.ic(I64, D.cnan), b.bitcast(z, I64))
    return em.TRUE, res, em.flag(c.snan, NV, 0)


# ---- comparisons, min/max, classify --------------------------------------------------------------
def _cmp(em: _Em, f: _Fmt, op: str, regs: list[ir.Value]):
    b = em.b
    bits = [_operand(em, f, r) for r in regs]
    ca, cb = (_Cls(em, f, v) for v in bits)
    x, y = (b.bitcast(v, f.fty) for v in bits)
    r = b.zext(b.fcmp_ordered(op, x, y), I64)  # ordered: false with a NaN
    nan = em.any(ca.nan, cb.nan)
    if op == "==":  # quiet: NV only for signalling NaNs
        fl = em.flag(em.any(ca.snan, cb.snan), NV, 0)
    else:  # signalling: NV for any NaN
        fl = em.flag(nan, NV, 0)
    return em.TRUE, r, fl


def _minmax(em: _Em, f: _Fmt, want_max: bool, regs: list[ir.Value]):
    b = em.b
    a, c = (_operand(em, f, r) for r in regs)
    ca, cc = _Cls(em, f, a), _Cls(em, f, c)
    # Total-order key with -0 < +0: negative x -> ~mag as a signed integer.
    shift = em.ic(f.ity, f.ity.width - 1)

    def key(v: ir.Value) -> ir.Value:
        return b.xor(v, b.lshr(b.ashr(v, shift), em.ic(f.ity, 1)))

    ka, kc = key(a), key(c)
    pick_a = b.icmp_signed(">=" if want_max else "<=", ka, kc)
    r = em.sel(pick_a, a, c)
    r = em.sel(cc.nan, a, r)
    r = em.sel(ca.nan, c, r)
    r = em.sel(em.all(ca.nan, cc.nan), em.ic(f.ity, f.cnan), r)
    return em.TRUE, _to_reg(em, f, r), em.flag(em.any(ca.snan, cc.snan), NV, 0)


def _classify(em: _Em, f: _Fmt, reg: ir.Value):
    b = em.b
    bits = _operand(em, f, reg)
    c = _Cls(em, f, bits)
    i = lambda v: em.ic(I64, v)  # noqa: E731
    quiet = b.icmp_unsigned("!=", b.and_(bits, em.ic(f.ity, f.quiet)), em.ic(f.ity, 0))
    sub = b.not_(em.any(c.normal, c.zero, c.inf, c.nan))
    idx = em.sel(c.neg, i(1), i(6))  # normal
    idx = em.sel(sub, em.sel(c.neg, i(2), i(5)), idx)
    idx = em.sel(c.zero, em.sel(c.neg, i(3), i(4)), idx)
    idx = em.sel(c.inf, em.sel(c.neg, i(0), i(7)), idx)
    idx = em.sel(c.nan, em.sel(quiet, i(9), i(8)), idx)
    return em.TRUE, b.shl(i(1), idx), None


# ---- the accrued-NX shortcut ---------------------------------------------------------------------
# As QEMU's "hardfloat": once the accrued fflags has NX, an operation that can raise nothing but
# NX needs no exactness test at all.  Under RNE with finite operands, a host result z that is
# finite and not tiny raises at most NX:
#   NV  needs a NaN operand, inf-inf, 0*inf, 0/0, inf/inf or sqrt(<0): the result would be NaN
#       (or the operands not finite);
#   DZ  finite/0 gives inf;  OF  under RNE an overflowing result is inf;
#   UF  needs the exact value v tiny (after rounding) and inexact.  |z| > MIN (the smallest
#       normal) gives |v| > MIN (rounding is monotone and MIN is representable), so v is not
#       tiny.  |z| == MIN is not enough: v in [MIN - u/2, MIN - u/4) (u: the subnormal quantum)
#       rounds to MIN but is tiny after rounding (its unbounded-exponent rounding is MIN - u/2).
# and z is the correctly rounded result (never a NaN, so no canonicalization).  The tests, per
# operation, look at z alone: a NaN or infinite operand gives a NaN or infinite z, except x/inf
# (z = ±0, exact) and sqrt(+inf) (+inf, exact), so no operand test is needed:
#   add/sub  z finite.  Tiny sums are exact (every sum of multiples of the format's quantum u
#            below MIN is representable), so a finite z of any size raises at most NX.
#   mul      z finite and (MIN < |z| or an operand is 0: then z = ±0 exactly).
#   div      z finite and (MIN < |z| or x == 0: then z = ±0 exactly; 0/0 is a NaN).
#   fma      z finite and (MIN < |z| or a product operand is 0: then z = w exactly, or ±0).
#   sqrt     z not a NaN: the root of x >= -0 is never tiny nor huge; sqrt(-0) = -0 and
#            sqrt(+inf) = +inf are exact.
# For singles every operand must also be NaN-boxed (else it is the canonical NaN, which takes the
# exact path): the AND of the registers has its upper 32 bits all ones.
class _Shortcut:
    __slots__ = ("f", "op", "nregs", "neg_p", "neg_c")

    def __init__(self, f: _Fmt, op: str, nregs: int, neg_p: bool = False, neg_c: bool = False) -> None:
        self.f, self.op, self.nregs, self.neg_p, self.neg_c = f, op, nregs, neg_p, neg_c


def _shortcuts() -> dict[str, _Shortcut]:
    t: dict[str, _Shortcut] = {}
    for sfx, f in (("s", S), ("d", D)):
        for op in ("add", "sub", "mul", "div"):
            t[f"f{op}.{sfx}"] = _Shortcut(f, op, 2)
        t[f"fsqrt.{sfx}"] = _Shortcut(f, "sqrt", 1)
        for nm, np_, nc in (
            ("fmadd", False, False),
            ("fmsub", False, True),
            ("fnmsub", True, False),
            ("fnmadd", True, True),
        ):
            t[f"{nm}.{sfx}"] = _Shortcut(f, "fma", 3, np_, nc)
    return t


_SHORTCUT = _shortcuts()


def _cheap(
    em: _Em, sc: _Shortcut, regs: list[ir.Value]
) -> tuple[ir.Value, ir.Value, Callable[[], ir.Value] | None]:
    """The shortcut's host operation and tests (the NX and rounding-mode tests aside):
    (z as the 64-bit register pattern, i1 'z is the result and only NX can be raised' from the
    range of z, and for mul/div/fma a function that emits the same claim from an exactly-zero
    operand, at the builder's position (in a block that this one dominates), else None).
    The range tests are integer compares on z's bits (a NaN's magnitude is above inf's)."""
    b, f = em.b, sc.f
    boxed: ir.Value | None = None
    if f is S:
        bits = [b.trunc(r, I32) for r in regs]
        boxed_all = regs[0]
        for r in regs[1:]:
            boxed_all = b.and_(boxed_all, r)
        boxed = b.icmp_unsigned(">=", boxed_all, em.ic(I64, NAN_BOX))
    else:
        bits = list(regs)
    xs = [b.bitcast(v, f.fty) for v in bits]
    op = sc.op
    if op == "add":
        z = b.fadd(xs[0], xs[1])
    elif op == "sub":
        z = b.fsub(xs[0], xs[1])
    elif op == "mul":
        z = b.fmul(xs[0], xs[1])
    elif op == "div":
        z = b.fdiv(xs[0], xs[1])
    elif op == "sqrt":
        z = em.sqrt(xs[0])
    else:
        x, y, w = xs
        z = em.fma(b.fneg(x) if sc.neg_p else x, y, b.fneg(w) if sc.neg_c else w)
    zb = b.bitcast(z, f.ity)
    mag = b.and_(zb, em.ic(f.ity, f.mag_mask))
    zero_test: Callable[[], ir.Value] | None = None
    if op == "sqrt":
        main = b.icmp_unsigned("<=", mag, em.ic(f.ity, f.inf))  # not a NaN
    elif op in ("add", "sub"):
        main = b.icmp_unsigned("<", mag, em.ic(f.ity, f.inf))
    else:
        # MIN < |z| < inf: mag - (MIN_bits + 1) < inf_bits - (MIN_bits + 1), unsigned.
        lo = (1 << f.frac_bits) + 1
        main = b.icmp_unsigned("<", b.sub(mag, em.ic(f.ity, lo)), em.ic(f.ity, f.inf - lo))

        def zero_test() -> ir.Value:
            finite = b.icmp_unsigned("<", mag, em.ic(f.ity, f.inf))
            zero_op = em.any(*(em.flt("==", v, 0.0) for v in xs[: 1 if op == "div" else 2]))
            return em.all(finite, zero_op) if boxed is None else em.all(boxed, finite, zero_op)

    if boxed is not None:
        main = em.all(boxed, main)
    return _to_reg(em, f, zb), main, zero_test


def _with_nx_shortcut(
    em: _Em,
    sc: _Shortcut,
    build: Callable[[_Em, list[ir.Value]], tuple[ir.Value, ir.Value, ir.Value | None]],
    args: list[ir.Value],
    rne: ir.Value,
    get_slot: Callable[[int], ir.Value],
) -> tuple[ir.Value, ir.Value, dict[int, ir.Value]]:
    """Branch to the shortcut (accrued NX set, RNE, _cheap's tests) or to the exact path; join.

    entry: accrued NX set and RNE? -> check | exact
    check: host op, range test of z -> fast | zero (mul/div/fma; else exact)
    zero:  exactly-zero test (an operand is 0) -> fast | exact
    fast:  nothing more: ok, result z, flags 0 -> join
    exact: a call of the straight-line exact path (ok, result, flags as without the shortcut;
           `_exact_call`) -> join
    Testing NX first keeps the shortcut's cost to a bit test where NX is clear (code that never
    rounds), and no branch weights: the exact path must not be treated as cold (its spills)."""
    b = em.b
    fn = b.function
    nx_set = b.trunc(get_slot(FFLAGS_SLOT), I1)  # bit 0 of the accrued flags (read in the entry)
    gate = nx_set if rne is em.TRUE else em.all(nx_set, rne)
    check = fn.append_basic_block("fpn_nx_check")
    fast = fn.append_basic_block("fpn_nx_fast")
    exact = fn.append_basic_block("fpn_exact")
    join = fn.append_basic_block("fpn_join")
    b.cbranch(gate, check, exact)
    b.position_at_end(check)
    z, main, zero_test = _cheap(em, sc, args[: sc.nregs])
    if zero_test is None:
        b.cbranch(main, fast, exact)
    else:
        zero = fn.append_basic_block("fpn_nx_zero")
        b.cbranch(main, fast, zero)
        b.position_at_end(zero)
        b.cbranch(zero_test(), fast, exact)
    b.position_at_end(fast)
    b.branch(join)
    b.position_at_end(exact)
    ok_e, res_e, fl_e = _exact_call(em, build, args)
    if rne is not em.TRUE:
        ok_e = b.and_(rne, ok_e)
    assert fl_e is not None
    exact_end = b.block
    b.branch(join)
    b.position_at_end(join)
    ok = b.phi(I1)
    ok.add_incoming(em.TRUE, fast)
    ok.add_incoming(ok_e, exact_end)
    res = b.phi(I64)
    res.add_incoming(z, fast)
    res.add_incoming(res_e, exact_end)
    flags = b.phi(I64)
    flags.add_incoming(em.ic(I64, 0), fast)
    flags.add_incoming(fl_e, exact_end)
    return ok, res, {FFLAGS_SLOT: flags}


_EXACT_IDS: dict[tuple[object, tuple[str, ...]], int] = {}  # (builder, arg types) -> its number


def _exact_call(
    em: _Em,
    build: Callable[[_Em, list[ir.Value]], tuple[ir.Value, ir.Value, ir.Value | None]],
    args: list[ir.Value],
) -> tuple[ir.Value, ir.Value, ir.Value]:
    """The exact path as a call of a function of its own (internal, never inlined) in the
    builder's module: `{i1 ok, i64 result, i64 flags} <function>.xN(args)`, made on first use.
    The shortcut covers nearly every operation once NX is set; the exact path is a hundred
    instructions or more, which every call site inlined used to repeat (InstCombine over those
    copies took a third of LLVM's time on bench_float's largest hot module)."""
    b = em.b
    key = (build, tuple(str(a.type) for a in args))
    name = f"{b.function.name}.x{_EXACT_IDS.setdefault(key, len(_EXACT_IDS))}"
    fn = b.module.globals.get(name)
    if fn is None:
        ret = ir.LiteralStructType([I1, I64, I64])
        fn = ir.Function(b.module, ir.FunctionType(ret, [a.type for a in args]), name=name)
        fn.linkage = "internal"
        fn.attributes.add("noinline")
        xb = ir.IRBuilder(fn.append_basic_block("entry"))
        ok, res, fl = build(_Em(xb), list(fn.args))
        assert fl is not None
        agg = xb.insert_value(ir.Constant(ret, ir.Undefined), ok, 0)
        agg = xb.insert_value(agg, res, 1)
        xb.ret(xb.insert_value(agg, fl, 2))
    r = b.call(fn, list(args))
    return b.extract_value(r, 0), b.extract_value(r, 1), b.extract_value(r, 2)


# ---- the table -----------------------------------------------------------------------------------
# name -> (builder(em, regs) -> (ok, result, flags or None), takes rm)
_Spec = tuple[Callable[[_Em, list[ir.Value]], tuple[ir.Value, ir.Value, ir.Value | None]], bool]


def _table() -> dict[str, _Spec]:
    t: dict[str, _Spec] = {}
    for sfx, f in (("s", S), ("d", D)):
        for op in ("add", "sub", "mul", "div"):
            t[f"f{op}.{sfx}"] = (lambda em, r, f=f, op=op: _arith(em, f, op, r[:2]), True)
        t[f"fsqrt.{sfx}"] = (lambda em, r, f=f: _arith(em, f, "sqrt", r[:1]), True)
        for nm, np_, nc in (
            ("fmadd", False, False),
            ("fmsub", False, True),
            ("fnmsub", True, False),
            ("fnmadd", True, True),
        ):
            t[f"{nm}.{sfx}"] = (lambda em, r, f=f, np_=np_, nc=nc: _arith(em, f, "fma", r[:3], np_, nc), True)
        for nm, op in (("feq", "=="), ("flt", "<"), ("fle", "<=")):
            t[f"{nm}.{sfx}"] = (lambda em, r, f=f, op=op: _cmp(em, f, op, r[:2]), False)
        t[f"fmin.{sfx}"] = (lambda em, r, f=f: _minmax(em, f, False, r[:2]), False)
        t[f"fmax.{sfx}"] = (lambda em, r, f=f: _minmax(em, f, True, r[:2]), False)
        t[f"fclass.{sfx}"] = (lambda em, r, f=f: _classify(em, f, r[0]), False)
        for it, w, sg in (("w", 32, True), ("wu", 32, False), ("l", 64, True), ("lu", 64, False)):
            t[f"fcvt.{it}.{sfx}"] = (lambda em, r, f=f, w=w, sg=sg: _f_to_int(em, f, r[0], w, sg), True)
            t[f"fcvt.{sfx}.{it}"] = (lambda em, r, f=f, w=w, sg=sg: _int_to_f(em, f, r[0], w, sg), True)
    t["fcvt.s.d"] = (lambda em, r: _s_from_d(em, r[0]), True)
    t["fcvt.d.s"] = (lambda em, r: _d_from_s(em, r[0]), True)
    return t


_TABLE = _table()


def _rne(em: _Em, rm: ir.Value, rm_const: int | None, get_slot: Callable[[int], ir.Value]) -> ir.Value | None:
    """i1 'the effective rounding mode is RNE', or None when it statically is not."""
    b = em.b
    if rm_const is not None:
        if rm_const == 0:
            return em.TRUE
        if rm_const == 7:
            return b.icmp_unsigned("==", get_slot(FRM_SLOT), em.ic(I64, 0))
        return None
    rm = b.zext(rm, I64) if rm.type.width < 64 else b.trunc(rm, I64) if rm.type.width > 64 else rm
    frm0 = b.icmp_unsigned("==", get_slot(FRM_SLOT), em.ic(I64, 0))
    return em.any(
        b.icmp_unsigned("==", rm, em.ic(I64, 0)), em.all(b.icmp_unsigned("==", rm, em.ic(I64, 7)), frm0)
    )


def emit(
    name: str,
    b: ir.IRBuilder,
    args: list[ir.Value],
    consts: list[int | None],
    get_slot: Callable[[int], ir.Value],
) -> tuple[ir.Value, ir.Value, dict[int, ir.Value]] | None:
    """Native fast path for helper `name`, emitted at b's position.

    args: the helper's arguments as LLVM integers of the helper's declared arg widths (e.g.
    i64,i64,i8,i32 for fadd.d); consts: the same arguments' constant values when known at
    translation time (rm and word always are), else None; get_slot(k): the current i64 value of
    state slot k (read for FRM_SLOT when rm == 7).

    Returns (ok, result, or_slots): ok is an i1 that is true when `result` (an i64) and the flags
    are bit-identical to the Python helper's; or_slots maps slot -> i64 value to OR into that
    slot on the fast path ({FFLAGS_SLOT: flags}; {} for fclass, which has no flags).  When ok is
    false the caller discards result and calls the exact Python helper instead.  Returns None when
    there is no native version of `name`.  Straight-line code (selects only), except for the
    arithmetic helpers (add/sub/mul/div/sqrt/fma): they branch between the NX shortcut and the
    exact path (see _with_nx_shortcut) and leave b at the end of the join block.
    """
    spec = _TABLE.get(name)
    if spec is None:
        return None
    build, takes_rm = spec
    em = _Em(b)
    rne: ir.Value | None = em.TRUE
    if takes_rm:
        k = len(args) - 2  # (..., rm, word)
        rne = _rne(em, args[k], consts[k] if k < len(consts) else None, get_slot)
        if rne is None:  # a static non-RNE or reserved rounding mode: always the helper
            return em.FALSE, em.ic(I64, 0), {FFLAGS_SLOT: em.ic(I64, 0)}
    shortcut = _SHORTCUT.get(name)
    if shortcut is not None:
        return _with_nx_shortcut(em, shortcut, build, list(args), rne, get_slot)
    ok, res, flags = build(em, list(args))
    if rne is not em.TRUE:
        ok = b.and_(rne, ok)
    return ok, res, ({} if flags is None else {FFLAGS_SLOT: flags})
