"""RV64F and RV64D: single- and double-precision floating point.

IEEE arithmetic is done by helpers over polyvm.softfloat: each takes the operands as 64-bit
register patterns, the instruction's rm field and the instruction word, resolves the dynamic
rounding mode from `frm`, raises an illegal-instruction trap for a reserved one, ORs the
exception flags into `fflags` and returns the 64-bit result (singles NaN-boxed). Sign injection,
moves, loads and stores are plain IR.

A single-precision operand that is not properly NaN-boxed reads as the canonical NaN.
"""

from __future__ import annotations

from collections.abc import Callable

from polyvm import softfloat
from polyvm.ir import Val, helper
from polyvm.isa.decodetree import Args
from polyvm.isa.riscv.common import (
    CANONICAL_NAN_S,
    FFLAGS_SLOT,
    FRM_SLOT,
    HELPERS,
    M32,
    NAN_BOX,
    RVBuilder,
)

PATTERNS = r"""
flw        ............ ..... 010 ..... 0000111  @i
fsw        ....... ..... ..... 010 ..... 0100111  @s
fld        ............ ..... 011 ..... 0000111  @i
fsd        ....... ..... ..... 011 ..... 0100111  @s

fmadd.s    ..... 00 ..... ..... ... ..... 1000011  @r4_rm
fmsub.s    ..... 00 ..... ..... ... ..... 1000111  @r4_rm
fnmsub.s   ..... 00 ..... ..... ... ..... 1001011  @r4_rm
fnmadd.s   ..... 00 ..... ..... ... ..... 1001111  @r4_rm
fmadd.d    ..... 01 ..... ..... ... ..... 1000011  @r4_rm
fmsub.d    ..... 01 ..... ..... ... ..... 1000111  @r4_rm
fnmsub.d   ..... 01 ..... ..... ... ..... 1001011  @r4_rm
fnmadd.d   ..... 01 ..... ..... ... ..... 1001111  @r4_rm

fadd.s     0000000 ..... ..... ... ..... 1010011  @r_rm
fsub.s     0000100 ..... ..... ... ..... 1010011  @r_rm
fmul.s     0001000 ..... ..... ... ..... 1010011  @r_rm
fdiv.s     0001100 ..... ..... ... ..... 1010011  @r_rm
fsqrt.s    0101100 00000 ..... ... ..... 1010011  @r2_rm
fsgnj.s    0010000 ..... ..... 000 ..... 1010011  @r
fsgnjn.s   0010000 ..... ..... 001 ..... 1010011  @r
fsgnjx.s   0010000 ..... ..... 010 ..... 1010011  @r
fmin.s     0010100 ..... ..... 000 ..... 1010011  @r
fmax.s     0010100 ..... ..... 001 ..... 1010011  @r
fcvt.w.s   1100000 00000 ..... ... ..... 1010011  @r2_rm
fcvt.wu.s  1100000 00001 ..... ... ..... 1010011  @r2_rm
fcvt.l.s   1100000 00010 ..... ... ..... 1010011  @r2_rm
fcvt.lu.s  1100000 00011 ..... ... ..... 1010011  @r2_rm
fmv.x.w    1110000 00000 ..... 000 ..... 1010011  @r2
fclass.s   1110000 00000 ..... 001 ..... 1010011  @r2
feq.s      1010000 ..... ..... 010 ..... 1010011  @r
flt.s      1010000 ..... ..... 001 ..... 1010011  @r
fle.s      1010000 ..... ..... 000 ..... 1010011  @r
fcvt.s.w   1101000 00000 ..... ... ..... 1010011  @r2_rm
fcvt.s.wu  1101000 00001 ..... ... ..... 1010011  @r2_rm
fcvt.s.l   1101000 00010 ..... ... ..... 1010011  @r2_rm
fcvt.s.lu  1101000 00011 ..... ... ..... 1010011  @r2_rm
fmv.w.x    1111000 00000 ..... 000 ..... 1010011  @r2

fadd.d     0000001 ..... ..... ... ..... 1010011  @r_rm
fsub.d     0000101 ..... ..... ... ..... 1010011  @r_rm
fmul.d     0001001 ..... ..... ... ..... 1010011  @r_rm
fdiv.d     0001101 ..... ..... ... ..... 1010011  @r_rm
fsqrt.d    0101101 00000 ..... ... ..... 1010011  @r2_rm
fsgnj.d    0010001 ..... ..... 000 ..... 1010011  @r
fsgnjn.d   0010001 ..... ..... 001 ..... 1010011  @r
fsgnjx.d   0010001 ..... ..... 010 ..... 1010011  @r
fmin.d     0010101 ..... ..... 000 ..... 1010011  @r
fmax.d     0010101 ..... ..... 001 ..... 1010011  @r
fcvt.s.d   0100000 00001 ..... ... ..... 1010011  @r2_rm
fcvt.d.s   0100001 00000 ..... ... ..... 1010011  @r2_rm
feq.d      1010001 ..... ..... 010 ..... 1010011  @r
flt.d      1010001 ..... ..... 001 ..... 1010011  @r
fle.d      1010001 ..... ..... 000 ..... 1010011  @r
fclass.d   1110001 00000 ..... 001 ..... 1010011  @r2
fcvt.w.d   1100001 00000 ..... ... ..... 1010011  @r2_rm
fcvt.wu.d  1100001 00001 ..... ... ..... 1010011  @r2_rm
fcvt.l.d   1100001 00010 ..... ... ..... 1010011  @r2_rm
fcvt.lu.d  1100001 00011 ..... ... ..... 1010011  @r2_rm
fcvt.d.w   1101001 00000 ..... ... ..... 1010011  @r2_rm
fcvt.d.wu  1101001 00001 ..... ... ..... 1010011  @r2_rm
fcvt.d.l   1101001 00010 ..... ... ..... 1010011  @r2_rm
fcvt.d.lu  1101001 00011 ..... ... ..... 1010011  @r2_rm
fmv.x.d    1110001 00000 ..... 000 ..... 1010011  @r2
fmv.d.x    1111001 00000 ..... 000 ..... 1010011  @r2
"""

RM_DYN = 7
# What the FP helpers touch in the state: they read frm (dynamic rounding) and accrue fflags.
FP_READS = frozenset((FRM_SLOT, FFLAGS_SLOT))
FP_WRITES = frozenset((FFLAGS_SLOT,))


# ---- helpers (run time) --------------------------------------------------------------------------
def _illegal(word: int) -> Exception:
    from polyvm.engine import GuestTrap

    return GuestTrap("illegal", word)


def _rm(state: list[int], rm: int, word: int) -> int:
    if rm == RM_DYN:
        rm = state[FRM_SLOT]
    if rm > 4:
        raise _illegal(word)
    return rm


def _unbox(x: int) -> int:
    return x & M32 if x >> 32 == M32 else CANONICAL_NAN_S


def _flags(state: list[int], fl: int) -> None:
    if fl:
        state[FFLAGS_SLOT] |= fl


# Per format: (softfloat format name, unpack an operand, pack a result).
def _fmt(single: bool) -> tuple[str, Callable[[int], int], Callable[[int], int]]:
    if single:
        return "F32", _unbox, lambda r: r | NAN_BOX
    return "F64", lambda x: x, lambda r: r


def _def_arith(name: str, op: str, single: bool) -> None:
    fname, unpack, pack = _fmt(single)
    fn, fmt = getattr(softfloat, op), getattr(softfloat, fname)  # bound once, not per call

    def h(state: list[int], a: int, b: int, rm: int, word: int) -> int:
        r, fl = fn(fmt, unpack(a), unpack(b), _rm(state, rm, word))
        _flags(state, fl)
        return pack(r)

    h.__name__ = name.replace(".", "_")
    helper(HELPERS, name, (64, 64, 8, 32), 64, state=True, reads=FP_READS, writes=FP_WRITES)(h)


def _def_sqrt(name: str, single: bool) -> None:
    fname, unpack, pack = _fmt(single)

    fmt = getattr(softfloat, fname)

    def h(state: list[int], a: int, rm: int, word: int) -> int:
        r, fl = softfloat.f_sqrt(fmt, unpack(a), _rm(state, rm, word))
        _flags(state, fl)
        return pack(r)

    helper(HELPERS, name, (64, 8, 32), 64, state=True, reads=FP_READS, writes=FP_WRITES)(h)


def _def_fma(name: str, single: bool, neg_product: bool, neg_addend: bool) -> None:
    fname, unpack, pack = _fmt(single)

    fmt = getattr(softfloat, fname)

    def h(state: list[int], a: int, b: int, c: int, rm: int, word: int) -> int:
        rm = _rm(state, rm, word)
        r, fl = softfloat.f_fma(fmt, unpack(a), unpack(b), unpack(c), rm, neg_product, neg_addend)
        _flags(state, fl)
        return pack(r)

    helper(HELPERS, name, (64, 64, 64, 8, 32), 64, state=True, reads=FP_READS, writes=FP_WRITES)(h)


def _def_minmax(name: str, op: str, single: bool) -> None:
    fname, unpack, pack = _fmt(single)

    fn, fmt = getattr(softfloat, op), getattr(softfloat, fname)

    def h(state: list[int], a: int, b: int) -> int:
        r, fl = fn(fmt, unpack(a), unpack(b))
        _flags(state, fl)
        return pack(r)

    helper(HELPERS, name, (64, 64), 64, state=True, reads=FP_READS, writes=FP_WRITES)(h)


def _def_cmp(name: str, op: str, single: bool) -> None:
    fname, unpack, _ = _fmt(single)

    fn, fmt = getattr(softfloat, op), getattr(softfloat, fname)

    def h(state: list[int], a: int, b: int) -> int:
        r, fl = fn(fmt, unpack(a), unpack(b))
        _flags(state, fl)
        return r

    helper(HELPERS, name, (64, 64), 64, state=True, reads=FP_READS, writes=FP_WRITES)(h)


def _def_class(name: str, single: bool) -> None:
    fname, unpack, _ = _fmt(single)

    fmt = getattr(softfloat, fname)

    def h(a: int) -> int:
        return softfloat.f_classify(fmt, unpack(a))

    helper(HELPERS, name, (64,), 64, pure=True)(h)


def _def_to_int(name: str, single: bool, width: int, signed: bool) -> None:
    fname, unpack, _ = _fmt(single)
    fmt = getattr(softfloat, fname)

    def h(state: list[int], a: int, rm: int, word: int) -> int:
        r, fl = softfloat.f_to_int(fmt, unpack(a), _rm(state, rm, word), width, signed)
        _flags(state, fl)
        if width == 32 and r >> 31:  # RV64 sign-extends 32-bit results, unsigned ones too
            r |= 0xFFFF_FFFF_0000_0000
        return r

    helper(HELPERS, name, (64, 8, 32), 64, state=True, reads=FP_READS, writes=FP_WRITES)(h)


def _def_from_int(name: str, single: bool, width: int, signed: bool) -> None:
    fname, _, pack = _fmt(single)
    mask = (1 << width) - 1
    fmt = getattr(softfloat, fname)

    def h(state: list[int], a: int, rm: int, word: int) -> int:
        r, fl = softfloat.int_to_f(fmt, a & mask, width, signed, _rm(state, rm, word))
        _flags(state, fl)
        return pack(r)

    helper(HELPERS, name, (64, 8, 32), 64, state=True, reads=FP_READS, writes=FP_WRITES)(h)


def _def_cvt_ff(name: str, src_single: bool) -> None:
    sname, unpack, _ = _fmt(src_single)
    dname, _, pack = _fmt(not src_single)
    sfmt, dfmt = getattr(softfloat, sname), getattr(softfloat, dname)

    def h(state: list[int], a: int, rm: int, word: int) -> int:
        r, fl = softfloat.f_to_f(sfmt, dfmt, unpack(a), _rm(state, rm, word))
        _flags(state, fl)
        return pack(r)

    helper(HELPERS, name, (64, 8, 32), 64, state=True, reads=FP_READS, writes=FP_WRITES)(h)


for _s, _p in (("s", True), ("d", False)):
    for _op in ("add", "sub", "mul", "div"):
        _def_arith(f"f{_op}.{_s}", f"f_{_op}", _p)
    _def_sqrt(f"fsqrt.{_s}", _p)
    _def_fma(f"fmadd.{_s}", _p, False, False)
    _def_fma(f"fmsub.{_s}", _p, False, True)
    _def_fma(f"fnmsub.{_s}", _p, True, False)
    _def_fma(f"fnmadd.{_s}", _p, True, True)
    _def_minmax(f"fmin.{_s}", "f_min", _p)
    _def_minmax(f"fmax.{_s}", "f_max", _p)
    _def_cmp(f"feq.{_s}", "f_eq", _p)
    _def_cmp(f"flt.{_s}", "f_lt", _p)
    _def_cmp(f"fle.{_s}", "f_le", _p)
    _def_class(f"fclass.{_s}", _p)
    for _i, _w, _sg in (("w", 32, True), ("wu", 32, False), ("l", 64, True), ("lu", 64, False)):
        _def_to_int(f"fcvt.{_i}.{_s}", _p, _w, _sg)
        _def_from_int(f"fcvt.{_s}.{_i}", _p, _w, _sg)
_def_cvt_ff("fcvt.s.d", False)
_def_cvt_ff("fcvt.d.s", True)


# ---- lifts --------------------------------------------------------------------------------------
def _call_rm(b: RVBuilder, name: str, f: Args, *ops: Val) -> Val | None:
    """A helper call with a rounding mode, or None for a reserved static rm (illegal)."""
    if f.rm in (5, 6):
        return None
    return b.call(name, *ops, b.const(f.rm, 8), b.const(b.word, 32))


def _rm_op(b: RVBuilder, f: Args, name: str, nops: int) -> bool:
    regs = (f.rs1, f.rs2, f.rs3) if nops == 3 else (f.rs1, f.rs2) if nops == 2 else (f.rs1,)
    r = _call_rm(b, name, f, *(b.fr(n) for n in regs))
    if r is None:
        return False
    b.set_fr(f.rd, r)
    return True


def _to_x(b: RVBuilder, f: Args, name: str) -> bool:
    r = _call_rm(b, name, f, b.fr(f.rs1))
    if r is None:
        return False
    b.set_x(f.rd, r)
    return True


def _from_x(b: RVBuilder, f: Args, name: str) -> bool:
    r = _call_rm(b, name, f, b.x(f.rs1))
    if r is None:
        return False
    b.set_fr(f.rd, r)
    return True


def _nan_boxed(b: RVBuilder, v: Val) -> Val:
    return b.or_(b.zext(v, 64), b.c64(NAN_BOX))


# loads and stores (no NaN-box checks: they move bits)
def trans_flw(b: RVBuilder, f: Args, insn: int) -> None:
    v = b.load(b.addr(f.rs1, f.imm), 32)
    b.set_fr(f.rd, _nan_boxed(b, v))


def trans_fsw(b: RVBuilder, f: Args, insn: int) -> None:
    b.store(b.addr(f.rs1, f.imm), b.trunc(b.fr(f.rs2), 32))


def trans_fld(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_fr(f.rd, b.load(b.addr(f.rs1, f.imm), 64))


def trans_fsd(b: RVBuilder, f: Args, insn: int) -> None:
    b.store(b.addr(f.rs1, f.imm), b.fr(f.rs2))


# fused multiply-add
def trans_fmadd_s(b: RVBuilder, f: Args, insn: int) -> bool:
    return _rm_op(b, f, "fmadd.s", 3)


def trans_fmsub_s(b: RVBuilder, f: Args, insn: int) -> bool:
    return _rm_op(b, f, "fmsub.s", 3)


def trans_fnmsub_s(b: RVBuilder, f: Args, insn: int) -> bool:
    return _rm_op(b, f, "fnmsub.s", 3)


def trans_fnmadd_s(b: RVBuilder, f: Args, insn: int) -> bool:
    return _rm_op(b, f, "fnmadd.s", 3)


def trans_fmadd_d(b: RVBuilder, f: Args, insn: int) -> bool:
    return _rm_op(b, f, "fmadd.d", 3)


def trans_fmsub_d(b: RVBuilder, f: Args, insn: int) -> bool:
    return _rm_op(b, f, "fmsub.d", 3)


def trans_fnmsub_d(b: RVBuilder, f: Args, insn: int) -> bool:
    return _rm_op(b, f, "fnmsub.d", 3)


def trans_fnmadd_d(b: RVBuilder, f: Args, insn: int) -> bool:
    return _rm_op(b, f, "fnmadd.d", 3)


# arithmetic
def trans_fadd_s(b: RVBuilder, f: Args, insn: int) -> bool:
    return _rm_op(b, f, "fadd.s", 2)


def trans_fsub_s(b: RVBuilder, f: Args, insn: int) -> bool:
    return _rm_op(b, f, "fsub.s", 2)


def trans_fmul_s(b: RVBuilder, f: Args, insn: int) -> bool:
    return _rm_op(b, f, "fmul.s", 2)


def trans_fdiv_s(b: RVBuilder, f: Args, insn: int) -> bool:
    return _rm_op(b, f, "fdiv.s", 2)


def trans_fsqrt_s(b: RVBuilder, f: Args, insn: int) -> bool:
    return _rm_op(b, f, "fsqrt.s", 1)


def trans_fadd_d(b: RVBuilder, f: Args, insn: int) -> bool:
    return _rm_op(b, f, "fadd.d", 2)


def trans_fsub_d(b: RVBuilder, f: Args, insn: int) -> bool:
    return _rm_op(b, f, "fsub.d", 2)


def trans_fmul_d(b: RVBuilder, f: Args, insn: int) -> bool:
    return _rm_op(b, f, "fmul.d", 2)


def trans_fdiv_d(b: RVBuilder, f: Args, insn: int) -> bool:
    return _rm_op(b, f, "fdiv.d", 2)


def trans_fsqrt_d(b: RVBuilder, f: Args, insn: int) -> bool:
    return _rm_op(b, f, "fsqrt.d", 1)


# sign injection: plain bit operations
def _sgnj_s(b: RVBuilder, f: Args, sign: Callable[[Val, Val], Val]) -> None:
    a, c = b.fr_s(f.rs1), b.fr_s(f.rs2)
    mag = b.and_(a, b.c32(0x7FFF_FFFF))
    b.set_fr_s(f.rd, b.or_(mag, b.and_(sign(a, c), b.c32(0x8000_0000))))


def _sgnj_d(b: RVBuilder, f: Args, sign: Callable[[Val, Val], Val]) -> None:
    a, c = b.fr(f.rs1), b.fr(f.rs2)
    mag = b.and_(a, b.c64(0x7FFF_FFFF_FFFF_FFFF))
    b.set_fr(f.rd, b.or_(mag, b.and_(sign(a, c), b.c64(1 << 63))))


def trans_fsgnj_s(b: RVBuilder, f: Args, insn: int) -> None:
    _sgnj_s(b, f, lambda a, c: c)


def trans_fsgnjn_s(b: RVBuilder, f: Args, insn: int) -> None:
    _sgnj_s(b, f, lambda a, c: b.not_(c))


def trans_fsgnjx_s(b: RVBuilder, f: Args, insn: int) -> None:
    _sgnj_s(b, f, lambda a, c: b.xor(a, c))


def trans_fsgnj_d(b: RVBuilder, f: Args, insn: int) -> None:
    _sgnj_d(b, f, lambda a, c: c)


def trans_fsgnjn_d(b: RVBuilder, f: Args, insn: int) -> None:
    _sgnj_d(b, f, lambda a, c: b.not_(c))


def trans_fsgnjx_d(b: RVBuilder, f: Args, insn: int) -> None:
    _sgnj_d(b, f, lambda a, c: b.xor(a, c))


# min/max, comparisons, classification
def _fr_op(b: RVBuilder, f: Args, name: str) -> None:
    b.set_fr(f.rd, b.call(name, b.fr(f.rs1), b.fr(f.rs2)))  # type: ignore[arg-type]


def _cmp(b: RVBuilder, f: Args, name: str) -> None:
    b.set_x(f.rd, b.call(name, b.fr(f.rs1), b.fr(f.rs2)))  # type: ignore[arg-type]


def trans_fmin_s(b: RVBuilder, f: Args, insn: int) -> None:
    _fr_op(b, f, "fmin.s")


def trans_fmax_s(b: RVBuilder, f: Args, insn: int) -> None:
    _fr_op(b, f, "fmax.s")


def trans_fmin_d(b: RVBuilder, f: Args, insn: int) -> None:
    _fr_op(b, f, "fmin.d")


def trans_fmax_d(b: RVBuilder, f: Args, insn: int) -> None:
    _fr_op(b, f, "fmax.d")


def trans_feq_s(b: RVBuilder, f: Args, insn: int) -> None:
    _cmp(b, f, "feq.s")


def trans_flt_s(b: RVBuilder, f: Args, insn: int) -> None:
    _cmp(b, f, "flt.s")


def trans_fle_s(b: RVBuilder, f: Args, insn: int) -> None:
    _cmp(b, f, "fle.s")


def trans_feq_d(b: RVBuilder, f: Args, insn: int) -> None:
    _cmp(b, f, "feq.d")


def trans_flt_d(b: RVBuilder, f: Args, insn: int) -> None:
    _cmp(b, f, "flt.d")


def trans_fle_d(b: RVBuilder, f: Args, insn: int) -> None:
    _cmp(b, f, "fle.d")


def trans_fclass_s(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.call("fclass.s", b.fr(f.rs1)))  # type: ignore[arg-type]


def trans_fclass_d(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.call("fclass.d", b.fr(f.rs1)))  # type: ignore[arg-type]


# conversions
def trans_fcvt_w_s(b: RVBuilder, f: Args, insn: int) -> bool:
    return _to_x(b, f, "fcvt.w.s")


def trans_fcvt_wu_s(b: RVBuilder, f: Args, insn: int) -> bool:
    return _to_x(b, f, "fcvt.wu.s")


def trans_fcvt_l_s(b: RVBuilder, f: Args, insn: int) -> bool:
    return _to_x(b, f, "fcvt.l.s")


def trans_fcvt_lu_s(b: RVBuilder, f: Args, insn: int) -> bool:
    return _to_x(b, f, "fcvt.lu.s")


def trans_fcvt_w_d(b: RVBuilder, f: Args, insn: int) -> bool:
    return _to_x(b, f, "fcvt.w.d")


def trans_fcvt_wu_d(b: RVBuilder, f: Args, insn: int) -> bool:
    return _to_x(b, f, "fcvt.wu.d")


def trans_fcvt_l_d(b: RVBuilder, f: Args, insn: int) -> bool:
    return _to_x(b, f, "fcvt.l.d")


def trans_fcvt_lu_d(b: RVBuilder, f: Args, insn: int) -> bool:
    return _to_x(b, f, "fcvt.lu.d")


def trans_fcvt_s_w(b: RVBuilder, f: Args, insn: int) -> bool:
    return _from_x(b, f, "fcvt.s.w")


def trans_fcvt_s_wu(b: RVBuilder, f: Args, insn: int) -> bool:
    return _from_x(b, f, "fcvt.s.wu")


def trans_fcvt_s_l(b: RVBuilder, f: Args, insn: int) -> bool:
    return _from_x(b, f, "fcvt.s.l")


def trans_fcvt_s_lu(b: RVBuilder, f: Args, insn: int) -> bool:
    return _from_x(b, f, "fcvt.s.lu")


def trans_fcvt_d_w(b: RVBuilder, f: Args, insn: int) -> bool:
    return _from_x(b, f, "fcvt.d.w")


def trans_fcvt_d_wu(b: RVBuilder, f: Args, insn: int) -> bool:
    return _from_x(b, f, "fcvt.d.wu")


def trans_fcvt_d_l(b: RVBuilder, f: Args, insn: int) -> bool:
    return _from_x(b, f, "fcvt.d.l")


def trans_fcvt_d_lu(b: RVBuilder, f: Args, insn: int) -> bool:
    return _from_x(b, f, "fcvt.d.lu")


def trans_fcvt_s_d(b: RVBuilder, f: Args, insn: int) -> bool:
    return _rm_op(b, f, "fcvt.s.d", 1)


def trans_fcvt_d_s(b: RVBuilder, f: Args, insn: int) -> bool:
    return _rm_op(b, f, "fcvt.d.s", 1)


# moves between register files: bit patterns, no NaN-box checks
def trans_fmv_x_w(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x_sext(f.rd, b.trunc(b.fr(f.rs1), 32))


def trans_fmv_w_x(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_fr(f.rd, _nan_boxed(b, b.x32(f.rs1)))


def trans_fmv_x_d(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_x(f.rd, b.fr(f.rs1))


def trans_fmv_d_x(b: RVBuilder, f: Args, insn: int) -> None:
    b.set_fr(f.rd, b.x(f.rs1))
