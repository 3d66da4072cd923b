"""Directed programs: every rounded FP operation in every rounding mode, and instructions that
must trap. They complement the random programs with guaranteed coverage of each combination.
"""

from __future__ import annotations

import random

from . import encode as E
from .gen import (
    BASE_REGS,
    DATA_BASE,
    DATA_SIZE,
    Program,
    Unit,
    rand_f32,
    rand_f64,
    rand_int,
)

CSR_FFLAGS = 0x001


def _state(seed: int, single: bool) -> tuple[random.Random, list[int], list[int], list[str], bytes]:
    rng = random.Random(seed)
    xregs = [0] + [rand_int(rng) for _ in range(31)]
    for r in BASE_REGS:
        xregs[r] = DATA_BASE + 0x1000
    if single:
        fregs = [0xFFFFFFFF00000000 | rand_f32(rng) for _ in range(32)]
        kinds = ["sd"] * 32
    else:
        fregs = [rand_f64(rng) for _ in range(32)]
        kinds = ["d"] * 32
    return rng, xregs, fregs, kinds, rng.randbytes(DATA_SIZE)


# (name, kind, encoder(fd_or_rd, rs1, rs2, rs3, rm, fmt)); kind says what is read and written:
# "ff" FP -> FP, "fx" FP -> integer, "xf" integer -> FP.
def _op(f5: int):
    return lambda d, a, b, c, rm, fmt: E.r_type(0x53, d, rm, a, b, (f5 << 2) | fmt)


def _r4(opc: int):
    return lambda d, a, b, c, rm, fmt: E.r4_type(opc, d, rm, a, b, fmt, c)


def _cvt(f5: int, sel: int):
    return lambda d, a, b, c, rm, fmt: E.r_type(0x53, d, rm, a, sel, (f5 << 2) | fmt)


ROUNDED_OPS = [
    ("fadd", "ff", _op(0x00)),
    ("fsub", "ff", _op(0x01)),
    ("fmul", "ff", _op(0x02)),
    ("fdiv", "ff", _op(0x03)),
    ("fsqrt", "ff", lambda d, a, b, c, rm, fmt: E.r_type(0x53, d, rm, a, 0, (0x0B << 2) | fmt)),
    ("fmadd", "ff", _r4(0x43)),
    ("fmsub", "ff", _r4(0x47)),
    ("fnmsub", "ff", _r4(0x4B)),
    ("fnmadd", "ff", _r4(0x4F)),
    ("fcvt.w", "fx", _cvt(0x18, 0)),
    ("fcvt.wu", "fx", _cvt(0x18, 1)),
    ("fcvt.l", "fx", _cvt(0x18, 2)),
    ("fcvt.lu", "fx", _cvt(0x18, 3)),
    ("fcvt.from.w", "xf", _cvt(0x1A, 0)),
    ("fcvt.from.wu", "xf", _cvt(0x1A, 1)),
    ("fcvt.from.l", "xf", _cvt(0x1A, 2)),
    ("fcvt.from.lu", "xf", _cvt(0x1A, 3)),
    ("fcvt.s.d", "ff", None),  # only for fmt S: reads a double
]

RM_CONFIGS = [(rm, None) for rm in range(5)] + [(7, frm) for frm in range(5)]
PER_PROGRAM = 8


def rounding_sweep(programs_per_combo: int = 3) -> list[Program]:
    """Every rounded operation x {single, double} x {rm 0-4, dynamic with frm 0-4}.

    Each program runs the operation 8 times on different operands, reading and clearing fflags
    after each one (csrrw x18+i, fflags, x0), so every operation's flags are compared on their own.
    """
    out = []
    for oi, (name, kind, enc) in enumerate(ROUNDED_OPS):
        for single in (True, False):
            if name == "fcvt.s.d" and not single:
                continue
            for ci, (rm, frm) in enumerate(RM_CONFIGS):
                for k in range(programs_per_combo):
                    seed = ((oi * 2 + single) * len(RM_CONFIGS) + ci) * 100 + k
                    out.append(_sweep_program(seed, name, kind, enc, single, rm, frm))
    return out


def _sweep_program(seed: int, name: str, kind: str, enc, single: bool, rm: int, frm: int | None) -> Program:
    rng, xregs, fregs, kinds, data = _state(seed, single)
    fmt = 0 if single else 1
    if name == "fcvt.s.d":  # sources are doubles, results singles
        fregs = [rand_f64(rng) for _ in range(32)]
        kinds = ["d"] * 32
        enc = lambda d, a, b, c, rm_, fmt_: E.r_type(0x53, d, rm_, a, 1, (0x08 << 2) | 0)  # noqa: E731
    units = []
    for i in range(PER_PROGRAM):
        a, b, c = (rng.randrange(8, 32) for _ in range(3))
        if kind == "ff":
            word = enc(i, a, b, c, rm, fmt)
            writes = [(i, "s" if single else "d")]
        elif kind == "fx":
            word = enc(10 + i, a, b, c, rm, fmt)
            writes = []
        else:  # integer source: x26-x31, x1, x3-x7 hold interesting integers
            src = rng.choice([1, 3, 4, 5, 6, 7, 26, 27, 28, 29, 30, 31])
            word = enc(i, src, 0, 0, rm, fmt)
            writes = [(i, "s" if single else "d")]
        words = [word, E.csr(1, 18 + i, CSR_FFLAGS, 0)]
        units.append(Unit(name, words, fwrites=writes, dyn_rm=rm == 7))
    fmt_name = name.replace(".from", ".s" if single else ".d") if ".from" in name else name
    if ".from" not in name and name != "fcvt.s.d":
        fmt_name += ".s" if single else ".d"
    mode = f"rm={rm}" if frm is None else f"rm=dyn frm={frm}"
    return Program(
        seed, f"sweep {fmt_name} {mode}", units, xregs, fregs, kinds, 0, frm if frm is not None else 0, data
    )


# ---- instructions that must trap -----------------------------------------------------------


def _fadd(rm: int, fmt: int = 0) -> int:
    return E.r_type(0x53, 1, rm, 2, 3, fmt)


# (name, instruction words, frm, {xreg: value}); the last word must trap in both emulators,
# the ones before it must have run (precise exceptions).
TRAPS: list[tuple[str, list[int], int, dict[int, int]]] = [
    *[(f"fadd.s rm={rm}", [_fadd(rm)], 0, {}) for rm in (5, 6)],
    *[(f"fadd.d rm={rm}", [_fadd(rm, 1)], 0, {}) for rm in (5, 6)],
    *[(f"fadd.s dyn frm={frm}", [_fadd(7)], frm, {}) for frm in (5, 6, 7)],
    *[(f"fmadd.d dyn frm={frm}", [E.r4_type(0x43, 1, 7, 2, 3, 1, 4)], frm, {}) for frm in (5, 6, 7)],
    ("fsqrt.d rm=5", [E.r_type(0x53, 1, 5, 2, 0, (0x0B << 2) | 1)], 0, {}),
    ("fcvt.w.d rm=6", [E.r_type(0x53, 10, 6, 2, 0, (0x18 << 2) | 1)], 0, {}),
    ("fcvt.s.l dyn frm=7", [E.r_type(0x53, 1, 7, 10, 2, (0x1A << 2) | 0)], 7, {}),
    ("fcvt.s.d rm=5", [E.r_type(0x53, 1, 5, 2, 1, (0x08 << 2) | 0)], 0, {}),
    ("fcvt.w.s rs2=4 (reserved)", [E.r_type(0x53, 10, 0, 2, 4, (0x18 << 2) | 0)], 0, {}),
    ("fsgnj.s funct3=3", [E.r_type(0x53, 1, 3, 2, 3, (0x04 << 2) | 0)], 0, {}),
    ("fadd.q (no Q)", [_fadd(0, 3)], 0, {}),
    ("fmv.x.w funct3=2", [E.r_type(0x53, 10, 2, 2, 0, (0x1C << 2) | 0)], 0, {}),
    ("c.unimp (0x0000)", [0x0000], 0, {}),
    ("c.addi4spn nzuimm=0", [0x0004], 0, {}),
    ("c.addi16sp imm=0", [0x6101], 0, {}),
    ("c.lui imm=0", [0x6281], 0, {}),
    ("c.lwsp rd=0", [0x4002], 0, {}),
    ("c.ldsp rd=0", [0x6002], 0, {}),
    ("c.jr x0", [0x8002], 0, {}),
    ("all ones", [0xFFFFFFFF], 0, {}),
    ("amo funct5=0x05", [E.amo(0x05, 2, 5, 2, 6)], 0, {}),
    ("lr.w rs2!=0", [E.amo(0x02, 2, 5, 2, 6)], 0, {}),
    ("amoadd.b (width 0)", [E.amo(0x00, 0, 5, 2, 6)], 0, {}),
    ("mul funct7=2", [E.r_type(0x33, 5, 0, 6, 7, 2)], 0, {}),
    ("slliw shamt[5]=1", [E.r_type(0x1B, 5, 1, 6, 0, 1)], 0, {}),
    ("srai funct6=0x11", [E.shift_imm(0x13, 5, 5, 6, 3, 0x11, 64)], 0, {}),
    ("after addi: fadd.s rm=5", [E.i_type(0x13, 5, 0, 0, 7), _fadd(5)], 0, {}),
]

# Naturally misaligned atomics: the spec (A extension) requires an address-misaligned or
# access-fault exception (Linux then sends SIGBUS); QEMU/Unicorn raise it. x5 = data + offset.
# Not a failing SC: QEMU checks the reservation first and never touches memory then.
MISALIGNED_ATOMICS: list[tuple[str, list[int], int, dict[int, int]]] = [
    ("amoadd.w at +2", [E.amo(0x00, 2, 6, 5, 7)], 0, {5: DATA_BASE + 0x102}),
    ("amoswap.d at +4", [E.amo(0x01, 3, 6, 5, 7)], 0, {5: DATA_BASE + 0x104}),
    ("amomaxu.d at +1", [E.amo(0x1C, 3, 6, 5, 7)], 0, {5: DATA_BASE + 0x101}),
    ("lr.w at +1", [E.amo(0x02, 2, 6, 5, 0)], 0, {5: DATA_BASE + 0x101}),
    ("lr.d at +4", [E.amo(0x02, 3, 6, 5, 0)], 0, {5: DATA_BASE + 0x104}),
]


def trap_program(name: str, words: list[int], frm: int, xset: dict[int, int], seed: int = 1) -> Program:
    _, xregs, fregs, kinds, data = _state(seed, True)
    for r, v in xset.items():
        xregs[r] = v
    units = [Unit(name, [w]) for w in words]
    return Program(seed, f"trap {name}", units, xregs, fregs, kinds, 0, frm, data)


# ---- special operands, exhaustively ----------------------------------------------------------

SPECIAL_D = [
    0x0000000000000000,  # +0
    0x8000000000000000,  # -0
    0x7FF0000000000000,  # +inf
    0xFFF0000000000000,  # -inf
    0x7FF8000000000000,  # canonical qNaN
    0xFFF8000000000123,  # negative qNaN with payload
    0x7FF0000000000001,  # sNaN
    0xFFF4000000000000,  # negative sNaN
    0x0000000000000001,  # min subnormal
    0x800FFFFFFFFFFFFF,  # -max subnormal
    0x0010000000000000,  # min normal
    0x7FEFFFFFFFFFFFFF,  # max finite
    0xFFEFFFFFFFFFFFFF,  # -max finite
    0x3FF0000000000000,  # 1.0
    0xBFF8000000000000,  # -1.5
    0x4008000000000000,  # 3.0
]
SPECIAL_S = [
    0x00000000,
    0x80000000,
    0x7F800000,
    0xFF800000,
    0x7FC00000,
    0xFFC00123,
    0x7F800001,
    0xFFA00000,
    0x00000001,
    0x807FFFFF,
    0x00800000,
    0x7F7FFFFF,
    0xFF7FFFFF,
    0x3F800000,
    0xBFC00000,
    0x40400000,
]
# (name, funct5, funct3 or None for "rounded: use rm", writes an integer register)
BINARY_OPS = [
    ("fadd", 0x00, None, False),
    ("fsub", 0x01, None, False),
    ("fmul", 0x02, None, False),
    ("fdiv", 0x03, None, False),
    ("fsgnj", 0x04, 0, False),
    ("fsgnjn", 0x04, 1, False),
    ("fsgnjx", 0x04, 2, False),
    ("fmin", 0x05, 0, False),
    ("fmax", 0x05, 1, False),
    ("fle", 0x14, 0, True),
    ("flt", 0x14, 1, True),
    ("feq", 0x14, 2, True),
]
FMA_OPS = [("fmadd", 0x43), ("fmsub", 0x47), ("fnmsub", 0x4B), ("fnmadd", 0x4F)]


def _special_program(
    seed: int, title: str, single: bool, values: list[int], ops: list[tuple[int, bool]]
) -> Program:
    """`values` go into f16..f31 (at most 16); `ops` are (word, writes-int) pairs, at most 8, each
    writing f<i> or x<10+i> and followed by csrrw x<18+i>, fflags, x0."""
    _, xregs, fregs, kinds, data = _state(seed, single)
    for i, v in enumerate(values):
        fregs[16 + i] = (0xFFFFFFFF00000000 | v) if single else v
        kinds[16 + i] = "sd" if single else "d"
    units = []
    for i, (word, to_int) in enumerate(ops):
        writes = [] if to_int else [(i, "s" if single else "d")]
        units.append(Unit(title, [word, E.csr(1, 18 + i, CSR_FFLAGS, 0)], fwrites=writes))
    return Program(seed, f"special {title}", units, xregs, fregs, kinds, 0, 0, data)


def special_operands() -> list[Program]:
    """Every binary op on every pair of 16 special values, every unary op on each, and every
    fused multiply-add on every triple of 8 of them; single and double; flags per operation."""
    out: list[Program] = []
    seed = 0
    for single in (True, False):
        fmt = 0 if single else 1
        sp = SPECIAL_S if single else SPECIAL_D
        sfx = ".s" if single else ".d"
        for name, f5, f3, to_int in BINARY_OPS:
            for a in range(16):
                # One program per first operand: op(sp[a], sp[b]) for b in two halves.
                for half in (0, 1):
                    bs = range(8 * half, 8 * half + 8)
                    vals = [sp[a]] + [sp[b] for b in bs]
                    ops = []
                    for i, _b in enumerate(bs):
                        rm = f3 if f3 is not None else (0, 2)[(a + half) % 2]
                        rd = 10 + i if to_int else i
                        ops.append((E.r_type(0x53, rd, rm, 16, 17 + i, (f5 << 2) | fmt), to_int))
                    seed += 1
                    out.append(_special_program(seed, f"{name}{sfx} a={sp[a]:#x}", single, vals, ops))
        # unary: fsqrt, fclass, conversions to integers, to the other format
        for chunk in (0, 8):
            vals = sp[chunk : chunk + 8]
            # (name, funct5, rs2, fixed funct3 or None for rm, result in an integer register)
            unary = [
                ("fsqrt", 0x0B, 0, None, False),
                ("fclass", 0x1C, 0, 1, True),
                ("fcvt.w", 0x18, 0, None, True),
                ("fcvt.wu", 0x18, 1, None, True),
                ("fcvt.l", 0x18, 2, None, True),
                ("fcvt.lu", 0x18, 3, None, True),
            ]
            for uname, f5, rs2, f3, to_int in unary:
                for rm in (0, 1):
                    seed += 1
                    ops = [
                        (
                            E.r_type(
                                0x53,
                                (10 if to_int else 0) + i,
                                rm if f3 is None else f3,
                                16 + i,
                                rs2,
                                (f5 << 2) | fmt,
                            ),
                            to_int,
                        )
                        for i in range(8)
                    ]
                    out.append(_special_program(seed, f"{uname}{sfx} rm={rm} [{chunk}:]", single, vals, ops))
            if single:  # fcvt.d.s: single -> double (kind of the result: "d")
                seed += 1
                ops = [(E.r_type(0x53, i, 0, 16 + i, 0, (0x08 << 2) | 1), False) for i in range(8)]
                p = _special_program(seed, f"fcvt.d.s [{chunk}:]", single, vals, ops)
                for u in p.units:
                    u.fwrites = [(r, "d") for r, _ in u.fwrites]
                out.append(p)
            else:  # fcvt.s.d: double -> single
                seed += 1
                ops = [(E.r_type(0x53, i, 0, 16 + i, 1, (0x08 << 2) | 0), False) for i in range(8)]
                p = _special_program(seed, f"fcvt.s.d [{chunk}:]", single, vals, ops)
                for u in p.units:
                    u.fwrites = [(r, "s") for r, _ in u.fwrites]
                out.append(p)
        # fused multiply-add over triples of 8 specials: f16..f23 hold them
        few = [sp[i] for i in (0, 1, 2, 3, 4, 6, 13, 12)]  # ±0, ±inf, qNaN, sNaN, 1.0, -max
        for name, opc in FMA_OPS:
            for a in range(8):
                for b in range(8):
                    seed += 1
                    rm = (0, 2)[(a + b) % 2]
                    ops = [(E.r4_type(opc, i, rm, 16 + a, 16 + b, fmt, 16 + c), False) for c in range(8)]
                    out.append(
                        _special_program(seed, f"{name}{sfx} a={few[a]:#x} b={few[b]:#x}", single, few, ops)
                    )
    return out
