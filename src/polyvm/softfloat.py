"""Exact IEEE 754 binary32/binary64 arithmetic on raw bit patterns.

Every engine calls these helpers for floating point so that guests see bit-exact results and
exception flags.  Values are raw bit patterns (Python ints, ``width`` bits, *not* NaN-boxed);
every arithmetic op returns ``(result_bits, flags)`` with RISC-V ``fflags`` bit values.

Design:

* The *exact path* turns finite operands into ``m * 2**x`` with integer ``m``, computes the exact
  result (or enough quotient/root bits plus a sticky bit) with Python big ints and rounds once in
  :func:`_round_pack`.  It is the reference.
* The *fast path* (``rm == RNE``, finite operands, result comfortably inside the normal range)
  uses host doubles.  It is only taken where the bits and the inexact flag are provably identical
  to the exact path; see the comments at each ``_fast_*`` function.  Everything else falls back.
* Architecture differences are carried by an :class:`FpEnv` (keyword ``env``).  Only the RISC-V
  environment (:data:`RISCV_ENV`, the default) is tested; the other knobs exist so AArch64/x86
  modes can be added without changing signatures.
"""

from __future__ import annotations

import math
import struct

from polyvm.record import FrozenRecord

__all__ = [
    "F32",
    "F64",
    "RNE",
    "RTZ",
    "RDN",
    "RUP",
    "RMM",
    "NX",
    "UF",
    "OF",
    "DZ",
    "NV",
    "FloatFormat",
    "FpEnv",
    "RISCV_ENV",
    "f_add",
    "f_sub",
    "f_mul",
    "f_div",
    "f_sqrt",
    "f_fma",
    "f_to_int",
    "int_to_f",
    "f_to_f",
    "f_eq",
    "f_lt",
    "f_le",
    "f_min",
    "f_max",
    "f_classify",
    "canonical_nan",
]

# Rounding modes, RISC-V ``rm`` encoding.  5/6 are reserved and 7 (DYN) must be resolved by the
# caller from ``frm`` before calling in here.
RNE, RTZ, RDN, RUP, RMM = 0, 1, 2, 3, 4

# Exception flags, RISC-V ``fflags`` bit positions.
NX, UF, OF, DZ, NV = 1, 2, 4, 8, 16


class FloatFormat:
    """An IEEE 754 binary interchange format, with the constants the algorithms need."""

    __slots__ = (
        "name",
        "exp_bits",
        "frac_bits",
        "width",
        "prec",
        "bias",
        "emin",
        "emax",
        "exp_max",
        "frac_mask",
        "hidden",
        "quiet_bit",
        "sign_shift",
        "sign_mask",
        "mag_mask",
        "inf",
        "max_finite",
        "canonical_nan",
    )

    def __init__(self, name: str, exp_bits: int, frac_bits: int) -> None:
        self.name = name
        self.exp_bits = exp_bits
        self.frac_bits = frac_bits
        self.width = 1 + exp_bits + frac_bits
        self.prec = frac_bits + 1  # significand precision p, hidden bit included
        self.bias = (1 << (exp_bits - 1)) - 1
        self.emin = 1 - self.bias  # exponent of the smallest normal
        self.emax = self.bias
        self.exp_max = (1 << exp_bits) - 1  # biased exponent field of inf/NaN
        self.frac_mask = (1 << frac_bits) - 1
        self.hidden = 1 << frac_bits
        self.quiet_bit = 1 << (frac_bits - 1)
        self.sign_shift = self.width - 1
        self.sign_mask = 1 << self.sign_shift
        self.mag_mask = self.sign_mask - 1
        self.inf = self.exp_max << frac_bits
        self.max_finite = self.inf - 1
        self.canonical_nan = self.inf | self.quiet_bit

    def __repr__(self) -> str:
        return f"FloatFormat({self.name!r}, exp_bits={self.exp_bits}, frac_bits={self.frac_bits})"


F32 = FloatFormat("binary32", 8, 23)
F64 = FloatFormat("binary64", 11, 52)


class FpEnv(FrozenRecord):
    """Architecture-specific corners of IEEE 754 that the standard leaves open.

    ``default_nan``: every NaN result is the default NaN (RISC-V).  When false, NaN operands
    propagate (quieted; a signalling NaN operand wins over a quiet one, then operand order - the
    AArch64 rule; x86 would need its own ordering).  ``default_nan_negative`` selects the sign of
    the default NaN (x86's "QNaN indefinite" is negative).  ``tininess_before_rounding``: x86
    detects tininess before rounding, RISC-V/AArch64 after.  ``cvt_nan``/``cvt_invalid`` select
    the float->int result for NaN and out-of-range inputs: ``"max"``/``"saturate"`` (RISC-V),
    ``"zero"``/``"saturate"`` (AArch64), ``"indefinite"``/``"indefinite"`` (x86: min signed).
    Only :data:`RISCV_ENV` is exercised by the tests.
    """

    _fields = (
        "name",
        "default_nan",
        "default_nan_negative",
        "tininess_before_rounding",
        "cvt_nan",
        "cvt_invalid",
    )
    __slots__ = _fields

    def __init__(
        self,
        name: str = "riscv",
        default_nan: bool = True,
        default_nan_negative: bool = False,
        tininess_before_rounding: bool = False,
        cvt_nan: str = "max",
        cvt_invalid: str = "saturate",
    ) -> None:
        self.name = name
        self.default_nan = default_nan
        self.default_nan_negative = default_nan_negative
        self.tininess_before_rounding = tininess_before_rounding
        self.cvt_nan = cvt_nan
        self.cvt_invalid = cvt_invalid


RISCV_ENV = FpEnv()

# Operand classes returned by _decode.
_ZERO, _FIN, _INF, _QNAN, _SNAN = 0, 1, 2, 3, 4


def canonical_nan(fmt: FloatFormat) -> int:
    """The RISC-V canonical NaN: positive, quiet, zero payload (0x7fc00000 / 0x7ff8000000000000)."""
    return fmt.canonical_nan


def _check_rm(rm: int) -> None:
    if not 0 <= rm <= 4:
        raise ValueError(f"invalid static rounding mode {rm} (DYN must be resolved by the caller)")


def _decode(fmt: FloatFormat, a: int) -> tuple[int, int, int, int]:
    """Split ``a`` into (class, sign, m, x); finite values equal ``(-1)**sign * m * 2**x``."""
    sign = (a >> fmt.sign_shift) & 1
    e = (a >> fmt.frac_bits) & fmt.exp_max
    f = a & fmt.frac_mask
    if e == fmt.exp_max:
        if f == 0:
            return _INF, sign, 0, 0
        return (_QNAN if f & fmt.quiet_bit else _SNAN), sign, f, 0
    if e == 0:
        # Subnormals share the exponent of the smallest normal, without the hidden bit.
        return (_ZERO if f == 0 else _FIN), sign, f, fmt.emin - fmt.frac_bits
    return _FIN, sign, f | fmt.hidden, e - fmt.bias - fmt.frac_bits


def _is_nan(fmt: FloatFormat, a: int) -> bool:
    return (a & fmt.mag_mask) > fmt.inf


def _is_snan(fmt: FloatFormat, a: int) -> bool:
    return (a & fmt.mag_mask) > fmt.inf and not a & fmt.quiet_bit


def _default_nan(fmt: FloatFormat, env: FpEnv) -> int:
    return fmt.canonical_nan | (fmt.sign_mask if env.default_nan_negative else 0)


def _nan_result(fmt: FloatFormat, env: FpEnv, *ops: int) -> int:
    """The NaN an operation returns when some operand is a NaN (or it is invalid)."""
    if env.default_nan:
        return _default_nan(fmt, env)
    for op in ops:
        if _is_snan(fmt, op):
            return op | fmt.quiet_bit
    for op in ops:
        if _is_nan(fmt, op):
            return op
    return _default_nan(fmt, env)


def _snan_flag(fmt: FloatFormat, *ops: int) -> int:
    for op in ops:
        if _is_snan(fmt, op):
            return NV
    return 0


def _shift_round(m: int, shift: int, sign: int, rm: int) -> tuple[int, bool]:
    """Return (round(m / 2**shift), inexact) under ``rm``; ``sign`` matters for RDN/RUP."""
    if shift <= 0:
        return m << -shift, False
    q = m >> shift
    rem = m & ((1 << shift) - 1)
    if rem == 0:
        return q, False
    if rm == RNE:
        half = 1 << (shift - 1)
        if rem > half or (rem == half and q & 1):
            q += 1
    elif rm == RMM:
        if rem >= 1 << (shift - 1):
            q += 1
    elif rm == RDN:
        if sign:
            q += 1
    elif rm == RUP:
        if not sign:
            q += 1
    elif rm != RTZ:
        raise ValueError(f"invalid rounding mode {rm}")
    return q, True


def _overflow(fmt: FloatFormat, sign: int, rm: int) -> tuple[int, int]:
    # IEEE 754 7.4: round-to-nearest goes to inf; directed modes stop at the largest finite
    # number when rounding towards zero.
    to_inf = rm == RNE or rm == RMM or (rm == RDN and sign) or (rm == RUP and not sign)
    return (sign << fmt.sign_shift) | (fmt.inf if to_inf else fmt.max_finite), OF | NX


def _round_pack(fmt: FloatFormat, sign: int, m: int, x: int, rm: int, env: FpEnv) -> tuple[int, int]:
    """Round the exact nonzero value ``(-1)**sign * m * 2**x`` into ``fmt``.

    Callers with a remainder append a sticky bit below at least p+2 significant bits, so the
    sticky never reaches the round bit.
    """
    p = fmt.prec
    emin = fmt.emin
    n = m.bit_length()
    top = x + n - 1  # unbiased exponent of the leading bit
    # Quantum (weight of the last kept bit): p bits for normals, fixed for subnormals.
    q = max(top - p + 1, emin - p + 1)
    r, inexact = _shift_round(m, q - x, sign, rm)
    flags = 0
    if inexact:
        flags = NX
        if top < emin:
            tiny = True
            if top == emin - 1 and not env.tininess_before_rounding:
                # Tininess after rounding: not tiny if rounding to p bits with an unbounded
                # exponent range already reaches 2**emin.
                r2, _ = _shift_round(m, n - p, sign, rm)
                tiny = r2 >> p == 0
            if tiny:
                flags |= UF
    if r == 0:
        return sign << fmt.sign_shift, flags
    bl = r.bit_length()
    if bl > p:  # rounding carried out to 2**p
        r >>= 1
        q += 1
        bl = p
    if bl < p:  # subnormal (only possible when q is the subnormal quantum)
        return (sign << fmt.sign_shift) | r, flags
    biased = q + p - 1 + fmt.bias
    if biased >= fmt.exp_max:
        return _overflow(fmt, sign, rm)
    return (sign << fmt.sign_shift) | (biased << fmt.frac_bits) | (r & fmt.frac_mask), flags


def _zero_sum_sign(za: bool, sa: int, zb: bool, sb: int, rm: int) -> int:
    """Sign of an exact zero sum (IEEE 754 6.3): (-0)+(-0) = -0, otherwise +0 except in RDN."""
    if za and zb and sa == sb:
        return sa
    return 1 if rm == RDN else 0


# ---------------------------------------------------------------------------------------------
# Host-float fast paths.  Only RNE, only finite operands, and only results whose magnitude lies
# in [2**(emin+1), 2**emax): there the result can neither be tiny (so UF and the tininess rule
# cannot matter, whatever the env) nor overflow.  Each returns None to request the exact path.
# The host must do IEEE 754 binary64 in round-to-nearest-even without flush-to-zero (CPython on
# x86-64 SSE2 / AArch64 does).
# ---------------------------------------------------------------------------------------------

_D = struct.Struct("<d")
_Q = struct.Struct("<Q")
_DD = struct.Struct("<dd")
_QQ = struct.Struct("<QQ")
_S = struct.Struct("<f")
_I = struct.Struct("<I")
_SS = struct.Struct("<ff")
_II = struct.Struct("<II")
_SSS = struct.Struct("<fff")
_III = struct.Struct("<III")

_F64_LO = 2.0**-1021  # 2 * smallest normal binary64
_F64_HI = 2.0**1023
_F32_LO = 2.0**-125  # 2 * smallest normal binary32
_F32_HI = 2.0**127
_M52 = (1 << 52) - 1
_H52 = 1 << 52


def _dbits(v: float) -> int:
    return _Q.unpack(_D.pack(v))[0]


def _fast_add64(a: int, b: int, negate_b: bool) -> tuple[int, int] | None:
    # Exponent fields below 0x7FD (|x|, |y| < 2**1022): finite, and no step of TwoSum can overflow.
    if (a >> 52) & 0x7FF >= 0x7FD or (b >> 52) & 0x7FF >= 0x7FD:
        return None
    x, y = _DD.unpack(_QQ.pack(a, b))
    if negate_b:
        y = -y
    z = x + y
    # Knuth's TwoSum: (x - av) + (y - bv) is exactly (x + y) - z, so it is zero iff z is exact.
    # A sum landing in the subnormal range is always exact (so no UF), and the host's RNE
    # signed-zero rule (x + -x = +0) is the IEEE one.
    bv = z - x
    av = z - bv
    return _Q.unpack(_D.pack(z))[0], (NX if (x - av) + (y - bv) else 0)


def _fast_add32(a: int, b: int, negate_b: bool) -> tuple[int, int] | None:
    if (a >> 23) & 0xFF == 0xFF or (b >> 23) & 0xFF == 0xFF:
        return None
    x, y = _SS.unpack(_II.pack(a, b))
    if negate_b:
        y = -y
    z = x + y
    bv = z - x
    av = z - bv
    # Only when TwoSum proves the double sum exact: then packing rounds once (C float cast, RNE).
    if (x - av) + (y - bv) or not _F32_LO <= abs(z) < _F32_HI:
        return None
    r = _S.pack(z)
    return _I.unpack(r)[0], (NX if _S.unpack(r)[0] != z else 0)


def _fast_mul64(a: int, b: int) -> tuple[int, int] | None:
    ea = (a >> 52) & 0x7FF
    eb = (b >> 52) & 0x7FF
    if not (0 < ea < 0x7FF and 0 < eb < 0x7FF):  # normal operands only
        return None
    x, y = _DD.unpack(_QQ.pack(a, b))
    z = x * y
    if not _F64_LO <= abs(z) < _F64_HI:
        return None
    # z is normal, i.e. the top 53 bits of the 105/106-bit significand product, rounded: it is
    # exact iff every bit below those is zero.
    prod = ((a & _M52) | _H52) * ((b & _M52) | _H52)
    return _Q.unpack(_D.pack(z))[0], (NX if prod & ((1 << (prod.bit_length() - 53)) - 1) else 0)


def _fast_mul32(a: int, b: int) -> tuple[int, int] | None:
    if (a >> 23) & 0xFF == 0xFF or (b >> 23) & 0xFF == 0xFF:
        return None
    x, y = _SS.unpack(_II.pack(a, b))
    z = x * y  # 24x24-bit product: exact in a double, exponent well inside its range
    if not _F32_LO <= abs(z) < _F32_HI:
        return None
    r = _S.pack(z)
    return _I.unpack(r)[0], (NX if _S.unpack(r)[0] != z else 0)


def _fast_div64(a: int, b: int) -> tuple[int, int] | None:
    ea = (a >> 52) & 0x7FF
    eb = (b >> 52) & 0x7FF
    if not (0 < ea < 0x7FF and 0 < eb < 0x7FF):
        return None
    x, y = _DD.unpack(_QQ.pack(a, b))
    z = x / y
    if not _F64_LO <= abs(z) < _F64_HI:
        return None
    # ma/mb (times a power of two) is a dyadic rational iff the odd part of mb divides ma, and then
    # ma/odd < 2**53 fits the 53 bits a normal z has; otherwise it is not representable at all.
    mb = (b & _M52) | _H52
    odd = mb >> ((mb & -mb).bit_length() - 1)
    return _Q.unpack(_D.pack(z))[0], (NX if ((a & _M52) | _H52) % odd else 0)


def _fast_div32(a: int, b: int) -> tuple[int, int] | None:
    if (a >> 23) & 0xFF == 0xFF or (b >> 23) & 0xFF == 0xFF or not b & 0x7FFFFFFF:
        return None
    x, y = _SS.unpack(_II.pack(a, b))
    # Double rounding through binary64 is innocuous for division since 53 >= 2*24 + 2
    # (Figueroa 1995); the quotient of two binary32 numbers is a normal double.
    z = x / y
    if not _F32_LO <= abs(z) < _F32_HI:
        return None
    r = _S.pack(z)
    q = _S.unpack(r)[0]
    # q*y is exact in a double (24x24 bits), so this is the exact test q == x/y.
    return _I.unpack(r)[0], (NX if q * y != x else 0)


def _fast_sqrt64(a: int) -> tuple[int, int] | None:
    e = a >> 52  # includes the sign: positive normals only
    if not 0 < e < 0x7FF:
        return None
    zb = _Q.unpack(_D.pack(math.sqrt(_D.unpack(_Q.pack(a))[0])))[0]  # correctly rounded
    # Exact iff z*z == a on integer significands: mz**2 * 2**(2 ez) == ma * 2**ea.
    d = (e - 1075) - 2 * ((zb >> 52) - 1075)
    sq = ((zb & _M52) | _H52) ** 2
    ma = (a & _M52) | _H52
    exact = (ma << d) == sq if d >= 0 else ma == (sq << -d)
    return zb, (0 if exact else NX)


def _fast_sqrt32(a: int) -> tuple[int, int] | None:
    if a == 0 or a >= 0x7F800000:  # zero, negative, inf, NaN
        return None
    x = _S.unpack(_I.pack(a))[0]
    # Double rounding is innocuous for sqrt too (53 >= 2*24 + 2); results are always normal.
    r = _S.pack(math.sqrt(x))
    q = _S.unpack(r)[0]
    return _I.unpack(r)[0], (NX if q * q != x else 0)


def _fast_fma32(a: int, b: int, c: int, neg_product: bool, neg_addend: bool) -> tuple[int, int] | None:
    if (a >> 23) & 0xFF == 0xFF or (b >> 23) & 0xFF == 0xFF or (c >> 23) & 0xFF == 0xFF:
        return None
    x, y, w = _SSS.unpack(_III.pack(a, b, c))
    p = x * y  # exact in a double
    if neg_product:
        p = -p
    if neg_addend:
        w = -w
    z = p + w
    bv = z - p
    av = z - bv
    # Inexact double sum: double-rounding risk; near/below the normal range: tininess; -> exact path.
    if (p - av) + (w - bv) or not _F32_LO <= abs(z) < _F32_HI:
        return None
    r = _S.pack(z)
    return _I.unpack(r)[0], (NX if _S.unpack(r)[0] != z else 0)


def _fast_fma64(a: int, b: int, c: int, neg_product: bool, neg_addend: bool) -> tuple[int, int] | None:
    """f64 fused multiply-add, RNE, for normal operands and a normal result: the exact sum of the
    106-bit product and the addend as one integer, rounded once. None -> the general path (zeros,
    subnormals, inf/NaN, exponents far apart, an exact zero, a result outside the normal range)."""
    ea, eb, ec = (a >> 52) & 0x7FF, (b >> 52) & 0x7FF, (c >> 52) & 0x7FF
    if not (0 < ea < 0x7FF and 0 < eb < 0x7FF and 0 < ec < 0x7FF):
        return None
    xp = ea + eb - 2 * 1075  # product = (ma*mb) * 2**xp
    xc = ec - 1075
    if abs(xp - xc) > 240:
        return None  # far apart: leave the sticky-bit bookkeeping to the general path
    vp = ((a & 0xFFFFFFFFFFFFF) | 0x10000000000000) * ((b & 0xFFFFFFFFFFFFF) | 0x10000000000000)
    vc = (c & 0xFFFFFFFFFFFFF) | 0x10000000000000
    if xp >= xc:
        vp <<= xp - xc
        x = xc
    else:
        vc <<= xc - xp
        x = xp
    if (a ^ b) >> 63 ^ neg_product:
        vp = -vp
    if c >> 63 ^ neg_addend:
        vc = -vc
    s = vp + vc
    if s == 0:
        return None  # the sign of an exact zero depends on the rounding mode
    sign = 0
    if s < 0:
        sign, s = 1, -s
    shift = s.bit_length() - 53
    inexact = 0
    if shift > 0:
        q = s >> shift
        rem = s & ((1 << shift) - 1)
        half = 1 << (shift - 1)
        if rem > half or (rem == half and q & 1):
            q += 1
            if q >> 53:
                q >>= 1
                shift += 1
        inexact = NX if rem else 0
    else:
        q = s << -shift
    biased = x + shift + 52 + 1023
    if not 0 < biased < 0x7FF:
        return None  # overflow or a tiny result: the general path sets OF/UF exactly
    return (sign << 63) | (biased << 52) | (q & 0xFFFFFFFFFFFFF), inexact


# ---------------------------------------------------------------------------------------------
# Arithmetic
# ---------------------------------------------------------------------------------------------


def _add(fmt: FloatFormat, a: int, b: int, rm: int, env: FpEnv, negate_b: bool) -> tuple[int, int]:
    _check_rm(rm)
    ka, sa, ma, xa = _decode(fmt, a)
    kb, sb, mb, xb = _decode(fmt, b)
    if ka >= _QNAN or kb >= _QNAN:
        return _nan_result(fmt, env, a, b), _snan_flag(fmt, a, b)
    if negate_b:
        sb ^= 1
    if ka == _INF:
        if kb == _INF and sa != sb:
            return _default_nan(fmt, env), NV  # inf - inf
        return (sa << fmt.sign_shift) | fmt.inf, 0
    if kb == _INF:
        return (sb << fmt.sign_shift) | fmt.inf, 0
    x = min(xa, xb)
    va = ma << (xa - x)
    vb = mb << (xb - x)
    s = (-va if sa else va) + (-vb if sb else vb)
    if s == 0:
        return _zero_sum_sign(ka == _ZERO, sa, kb == _ZERO, sb, rm) << fmt.sign_shift, 0
    if s < 0:
        return _round_pack(fmt, 1, -s, x, rm, env)
    return _round_pack(fmt, 0, s, x, rm, env)


def f_add(fmt: FloatFormat, a: int, b: int, rm: int, *, env: FpEnv = RISCV_ENV) -> tuple[int, int]:
    """a + b."""
    if rm == RNE:
        res = _fast_add64(a, b, False) if fmt is F64 else _fast_add32(a, b, False) if fmt is F32 else None
        if res is not None:
            return res
    return _add(fmt, a, b, rm, env, False)


def f_sub(fmt: FloatFormat, a: int, b: int, rm: int, *, env: FpEnv = RISCV_ENV) -> tuple[int, int]:
    """a - b."""
    if rm == RNE:
        res = _fast_add64(a, b, True) if fmt is F64 else _fast_add32(a, b, True) if fmt is F32 else None
        if res is not None:
            return res
    return _add(fmt, a, b, rm, env, True)


def _mul(fmt: FloatFormat, a: int, b: int, rm: int, env: FpEnv) -> tuple[int, int]:
    _check_rm(rm)
    ka, sa, ma, xa = _decode(fmt, a)
    kb, sb, mb, xb = _decode(fmt, b)
    if ka >= _QNAN or kb >= _QNAN:
        return _nan_result(fmt, env, a, b), _snan_flag(fmt, a, b)
    sign = sa ^ sb
    if ka == _INF or kb == _INF:
        if ka == _ZERO or kb == _ZERO:
            return _default_nan(fmt, env), NV  # 0 * inf
        return (sign << fmt.sign_shift) | fmt.inf, 0
    if ka == _ZERO or kb == _ZERO:
        return sign << fmt.sign_shift, 0
    return _round_pack(fmt, sign, ma * mb, xa + xb, rm, env)


def f_mul(fmt: FloatFormat, a: int, b: int, rm: int, *, env: FpEnv = RISCV_ENV) -> tuple[int, int]:
    """a * b."""
    if rm == RNE:
        res = _fast_mul64(a, b) if fmt is F64 else _fast_mul32(a, b) if fmt is F32 else None
        if res is not None:
            return res
    return _mul(fmt, a, b, rm, env)


def _div(fmt: FloatFormat, a: int, b: int, rm: int, env: FpEnv) -> tuple[int, int]:
    _check_rm(rm)
    ka, sa, ma, xa = _decode(fmt, a)
    kb, sb, mb, xb = _decode(fmt, b)
    if ka >= _QNAN or kb >= _QNAN:
        return _nan_result(fmt, env, a, b), _snan_flag(fmt, a, b)
    sign = sa ^ sb
    if ka == _INF:
        if kb == _INF:
            return _default_nan(fmt, env), NV  # inf / inf
        return (sign << fmt.sign_shift) | fmt.inf, 0  # inf / finite: exact, no DZ
    if kb == _INF:
        return sign << fmt.sign_shift, 0
    if kb == _ZERO:
        if ka == _ZERO:
            return _default_nan(fmt, env), NV  # 0 / 0
        return (sign << fmt.sign_shift) | fmt.inf, DZ
    if ka == _ZERO:
        return sign << fmt.sign_shift, 0
    # Scale so the integer quotient has at least p+2 bits, then fold the remainder into a sticky.
    k = max(0, fmt.prec + 3 + mb.bit_length() - ma.bit_length())
    q, r = divmod(ma << k, mb)
    return _round_pack(fmt, sign, (q << 1) | (r != 0), xa - xb - k - 1, rm, env)


def f_div(fmt: FloatFormat, a: int, b: int, rm: int, *, env: FpEnv = RISCV_ENV) -> tuple[int, int]:
    """a / b."""
    if rm == RNE:
        res = _fast_div64(a, b) if fmt is F64 else _fast_div32(a, b) if fmt is F32 else None
        if res is not None:
            return res
    return _div(fmt, a, b, rm, env)


def _sqrt(fmt: FloatFormat, a: int, rm: int, env: FpEnv) -> tuple[int, int]:
    _check_rm(rm)
    ka, sa, ma, xa = _decode(fmt, a)
    if ka >= _QNAN:
        return _nan_result(fmt, env, a), _snan_flag(fmt, a)
    if ka == _ZERO:
        return a, 0  # sqrt(-0) = -0
    if sa:
        return _default_nan(fmt, env), NV
    if ka == _INF:
        return a, 0
    # Make the exponent even and give the root at least p+2 bits, then take an integer sqrt.
    k = max(0, 2 * fmt.prec + 5 - ma.bit_length())
    if (xa - k) & 1:
        k += 1
    m = ma << k
    x = xa - k
    r = math.isqrt(m)
    return _round_pack(fmt, 0, (r << 1) | (r * r != m), x // 2 - 1, rm, env)


def f_sqrt(fmt: FloatFormat, a: int, rm: int, *, env: FpEnv = RISCV_ENV) -> tuple[int, int]:
    """sqrt(a)."""
    if rm == RNE:
        res = _fast_sqrt64(a) if fmt is F64 else _fast_sqrt32(a) if fmt is F32 else None
        if res is not None:
            return res
    return _sqrt(fmt, a, rm, env)


def _fma(
    fmt: FloatFormat, a: int, b: int, c: int, rm: int, neg_product: bool, neg_addend: bool, env: FpEnv
) -> tuple[int, int]:
    _check_rm(rm)
    ka, sa, ma, xa = _decode(fmt, a)
    kb, sb, mb, xb = _decode(fmt, b)
    kc, sc, mc, xc = _decode(fmt, c)
    # RISC-V: inf * 0 is invalid even when the addend is a quiet NaN.
    if (ka == _INF and kb == _ZERO) or (ka == _ZERO and kb == _INF):
        return _nan_result(fmt, env, a, b, c), NV
    if ka >= _QNAN or kb >= _QNAN or kc >= _QNAN:
        return _nan_result(fmt, env, a, b, c), _snan_flag(fmt, a, b, c)
    ps = sa ^ sb ^ int(neg_product)
    cs = sc ^ int(neg_addend)
    if ka == _INF or kb == _INF:
        if kc == _INF and cs != ps:
            return _default_nan(fmt, env), NV  # inf - inf
        return (ps << fmt.sign_shift) | fmt.inf, 0
    if kc == _INF:
        return (cs << fmt.sign_shift) | fmt.inf, 0
    mp = ma * mb
    xp = xa + xb
    x = min(xp, xc)
    vp = mp << (xp - x)
    vc = mc << (xc - x)
    s = (-vp if ps else vp) + (-vc if cs else vc)
    if s == 0:
        return _zero_sum_sign(mp == 0, ps, kc == _ZERO, cs, rm) << fmt.sign_shift, 0
    if s < 0:
        return _round_pack(fmt, 1, -s, x, rm, env)
    return _round_pack(fmt, 0, s, x, rm, env)


def f_fma(
    fmt: FloatFormat,
    a: int,
    b: int,
    c: int,
    rm: int,
    neg_product: bool = False,
    neg_addend: bool = False,
    *,
    env: FpEnv = RISCV_ENV,
) -> tuple[int, int]:
    """(±a*b) ± c with a single rounding.

    fmadd: (F, F); fmsub: neg_addend; fnmsub: neg_product; fnmadd: both.
    """
    if rm == RNE:
        if fmt is F64:
            res = _fast_fma64(a, b, c, neg_product, neg_addend)
        elif fmt is F32:
            res = _fast_fma32(a, b, c, neg_product, neg_addend)
        else:
            res = None
        if res is not None:
            return res
    return _fma(fmt, a, b, c, rm, neg_product, neg_addend, env)


# ---------------------------------------------------------------------------------------------
# Conversions
# ---------------------------------------------------------------------------------------------


def f_to_int(
    fmt: FloatFormat, a: int, rm: int, width: int, signed: bool, *, env: FpEnv = RISCV_ENV
) -> tuple[int, int]:
    """Float -> integer, result as an unsigned ``width``-bit pattern (the engine sign-extends,
    e.g. fcvt.wu.s on RV64 sign-extends bit 31).

    RISC-V: NaN -> max positive; out of range -> max/min, NV (and no NX); NX when inexact and in
    range.
    """
    _check_rm(rm)
    mask = (1 << width) - 1
    lo = -(1 << (width - 1)) if signed else 0
    hi = (1 << (width - 1)) - 1 if signed else mask
    indefinite = (1 << (width - 1)) if signed else mask  # x86 integer indefinite
    k, sign, m, x = _decode(fmt, a)
    if k >= _QNAN:
        if env.cvt_nan == "max":
            return hi & mask, NV
        if env.cvt_nan == "zero":
            return 0, NV
        return indefinite, NV
    if k == _INF:
        v, inexact, out = 0, False, True
    elif k == _ZERO:
        return 0, 0
    elif x + m.bit_length() > width + 1:  # |a| >= 2**(width+1): certainly out of range
        v, inexact, out = 0, False, True
    else:
        i, inexact = _shift_round(m, -x, sign, rm)
        v = -i if sign else i
        out = not lo <= v <= hi
    if out:
        if env.cvt_invalid == "indefinite":
            return indefinite, NV
        return (lo if sign else hi) & mask, NV
    return v & mask, (NX if inexact else 0)


def int_to_f(
    fmt: FloatFormat, value: int, width: int, signed: bool, rm: int, *, env: FpEnv = RISCV_ENV
) -> tuple[int, int]:
    """Integer (a ``width``-bit pattern, two's complement when ``signed``) -> float."""
    _check_rm(rm)
    value &= (1 << width) - 1
    if signed and value >> (width - 1):
        value -= 1 << width
    if value == 0:
        return 0, 0
    if rm == RNE and fmt is F64:
        # int -> float in CPython is correctly rounded (half to even); |value| < 2**128 so no
        # overflow, and integers are never tiny.
        z = float(value)
        return _dbits(z), (0 if int(z) == value else NX)
    if value < 0:
        return _round_pack(fmt, 1, -value, 0, rm, env)
    return _round_pack(fmt, 0, value, 0, rm, env)


def f_to_f(
    src_fmt: FloatFormat, dst_fmt: FloatFormat, a: int, rm: int, *, env: FpEnv = RISCV_ENV
) -> tuple[int, int]:
    """Format conversion (fcvt.s.d / fcvt.d.s)."""
    _check_rm(rm)
    k, sign, m, x = _decode(src_fmt, a)
    if k >= _QNAN:
        if env.default_nan:
            return _default_nan(dst_fmt, env), (NV if k == _SNAN else 0)
        # Propagate: keep the sign and the top payload bits, quieted.
        shift = dst_fmt.frac_bits - src_fmt.frac_bits
        payload = m << shift if shift >= 0 else m >> -shift
        return (sign << dst_fmt.sign_shift) | dst_fmt.inf | dst_fmt.quiet_bit | payload, (
            NV if k == _SNAN else 0
        )
    if k == _INF:
        return (sign << dst_fmt.sign_shift) | dst_fmt.inf, 0
    if k == _ZERO:
        return sign << dst_fmt.sign_shift, 0
    if src_fmt is F32 and dst_fmt is F64:
        return _dbits(_S.unpack(_I.pack(a))[0]), 0  # widening is always exact
    if rm == RNE and src_fmt is F64 and dst_fmt is F32:
        z = _D.unpack(_Q.pack(a))[0]
        if _F32_LO <= abs(z) < _F32_HI:  # normal binary32 result: no tininess question
            r = _S.pack(z)  # C float cast: RNE
            return _I.unpack(r)[0], (NX if _S.unpack(r)[0] != z else 0)
    return _round_pack(dst_fmt, sign, m, x, rm, env)


# ---------------------------------------------------------------------------------------------
# Comparisons, min/max, classify
# ---------------------------------------------------------------------------------------------


def _order_key(fmt: FloatFormat, a: int) -> int:
    """Integer key ordering non-NaN values numerically, with -0 == +0."""
    mag = a & fmt.mag_mask
    return -mag if a >> fmt.sign_shift else mag


def _total_key(fmt: FloatFormat, a: int) -> int:
    """Like _order_key but -0 < +0 (for fmin/fmax)."""
    mag = a & fmt.mag_mask
    return -mag - 1 if a >> fmt.sign_shift else mag


def f_eq(fmt: FloatFormat, a: int, b: int) -> tuple[int, int]:
    """Quiet equality (feq): NV only for signalling NaNs."""
    if _is_nan(fmt, a) or _is_nan(fmt, b):
        return 0, _snan_flag(fmt, a, b)
    return int(_order_key(fmt, a) == _order_key(fmt, b)), 0


def f_lt(fmt: FloatFormat, a: int, b: int) -> tuple[int, int]:
    """Signalling less-than (flt): NV for any NaN."""
    if _is_nan(fmt, a) or _is_nan(fmt, b):
        return 0, NV
    return int(_order_key(fmt, a) < _order_key(fmt, b)), 0


def f_le(fmt: FloatFormat, a: int, b: int) -> tuple[int, int]:
    """Signalling less-or-equal (fle): NV for any NaN."""
    if _is_nan(fmt, a) or _is_nan(fmt, b):
        return 0, NV
    return int(_order_key(fmt, a) <= _order_key(fmt, b)), 0


def _minmax(fmt: FloatFormat, a: int, b: int, want_max: bool) -> tuple[int, int]:
    # IEEE 754-2019 minimumNumber/maximumNumber as RISC-V F 2.2 specifies them.
    na = _is_nan(fmt, a)
    nb = _is_nan(fmt, b)
    if na or nb:
        flags = _snan_flag(fmt, a, b)
        if na and nb:
            return fmt.canonical_nan, flags
        return (b if na else a), flags
    ka = _total_key(fmt, a)
    kb = _total_key(fmt, b)
    if want_max:
        return (a if ka >= kb else b), 0
    return (a if ka <= kb else b), 0


def f_min(fmt: FloatFormat, a: int, b: int) -> tuple[int, int]:
    """fmin: -0 < +0; one NaN -> the other operand; two NaNs -> canonical NaN; NV on sNaN."""
    return _minmax(fmt, a, b, False)


def f_max(fmt: FloatFormat, a: int, b: int) -> tuple[int, int]:
    """fmax: see :func:`f_min`."""
    return _minmax(fmt, a, b, True)


def f_classify(fmt: FloatFormat, a: int) -> int:
    """RISC-V fclass mask: bit 0 -inf, 1 -normal, 2 -subnormal, 3 -0, 4 +0, 5 +subnormal,
    6 +normal, 7 +inf, 8 sNaN, 9 qNaN."""
    sign = (a >> fmt.sign_shift) & 1
    e = (a >> fmt.frac_bits) & fmt.exp_max
    f = a & fmt.frac_mask
    if e == fmt.exp_max:
        if f == 0:
            return 1 << 0 if sign else 1 << 7
        return 1 << 9 if f & fmt.quiet_bit else 1 << 8
    if e == 0:
        if f == 0:
            return 1 << 3 if sign else 1 << 4
        return 1 << 2 if sign else 1 << 5
    return 1 << 1 if sign else 1 << 6
