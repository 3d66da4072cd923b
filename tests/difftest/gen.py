"""Random RISC-V 64 (IMAFDC + Zicsr + Zifencei) programs for differential testing.

A program is a list of *units*: one to four instructions that belong together (an `addi` that
makes an address and the AMO that uses it, an LR/SC pair, a forward branch). Units are what
the shrinker removes (by replacing them with NOPs of the same size, so branch offsets stay put).

The generator keeps every program safe to run in both emulators: loads, stores and AMOs only hit
the mapped, aligned data region (x2, x8 and x9 are base pointers that are never overwritten,
except sp by `c.addi16sp`, whose value the generator tracks), control flow only goes forward,
and dynamic-rounding FP instructions only run while `frm` holds a valid mode.

Floating-point registers carry a *kind*, because Unicorn (QEMU 5.0's RISC-V) predates NaN
boxing: its single-precision instructions neither box their results nor check their inputs.
  * "d":  both emulators hold the same 64 bits; not a boxed single (or not known to be one).
  * "sd": the same 64 bits in both, and a properly NaN-boxed single (initial values only).
  * "s":  written by a single-precision instruction: the low 32 bits agree, and polyvm must
          hold them NaN-boxed (upper 32 bits all ones); Unicorn's upper half is whatever.
  * "u":  an initial value that is *not* properly boxed. polyvm gets it as is; Unicorn gets the
          canonical NaN in its place, which is exactly what the spec says a single-precision
          instruction must see, so such registers are only read by single-precision arithmetic.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from . import encode as E

CODE_BASE = 0x10000
DATA_BASE = 0x40000
DATA_SIZE = 0x2000
DATA_END = DATA_BASE + DATA_SIZE
BASE_REGS = (2, 8, 9)
WRITABLE = tuple(r for r in range(32) if r not in BASE_REGS)
# Compressed destinations (x8-x15) that are not base pointers.
C_WRITABLE = tuple(r for r in range(10, 16))
C_REGS = tuple(range(8, 16))

CSR_FFLAGS, CSR_FRM, CSR_FCSR = 0x001, 0x002, 0x003
CANON_NAN_BOXED = 0xFFFFFFFF7FC00000
MASK64 = (1 << 64) - 1

READ_S = frozenset({"s", "sd", "u"})  # single-precision arithmetic operand
READ_RAW32 = frozenset({"s", "sd", "d"})  # fsw / fmv.x.w: the low 32 bits, no boxing check
READ_D = frozenset({"d", "sd"})  # double-precision operand, fsd, fmv.x.d


@dataclass
class Unit:
    name: str
    words: list[int]
    freads: list[tuple[int, frozenset[str]]] = field(default_factory=list)
    fwrites: list[tuple[int, str]] = field(default_factory=list)
    dyn_rm: bool = False
    frm_fn: Callable[[int], int] | None = None
    essential: bool = False  # never shrunk away (changes a base pointer)
    skip: int = 0  # forward control flow: jumps over the next `skip` units
    build: Callable[[int], list[int]] | None = None  # words for a byte distance to the target

    @property
    def size(self) -> int:
        return sum(E.size_of(w) for w in self.words)


@dataclass
class Program:
    seed: int
    profile: str
    units: list[Unit]
    xregs: list[int]
    fregs: list[int]
    fkinds: list[str]
    fflags: int
    frm: int
    data: bytes
    engine_mode: str = "default"  # how polyvm runs it: ENGINE_MODES or JIT_MODES below

    def code(self, drop: frozenset[int] = frozenset()) -> bytes:
        """Machine code; units whose index is in `drop` become NOPs of the same size."""
        out = bytearray()
        offsets = []
        pos = 0
        for u in self.units:
            offsets.append(pos)
            pos += u.size
        end = pos
        for i, u in enumerate(self.units):
            if i in drop:
                n = u.size
                words = [E.NOP] * (n // 4) + [E.C_NOP] * ((n % 4) // 2)
            elif u.build is not None:
                j = i + 1 + u.skip
                target = offsets[j] if j < len(self.units) else end
                words = u.build(target - offsets[i])
            else:
                words = u.words
            for w in words:
                out += E.to_bytes(w)
        return bytes(out)

    def unicorn_fregs(self) -> list[int]:
        return [CANON_NAN_BOXED if k == "u" else v for v, k in zip(self.fregs, self.fkinds, strict=True)]

    def valid(self, drop: frozenset[int]) -> bool:
        """Would the program still be well-typed (FP kinds, frm) with units `drop` removed?"""
        kinds = list(self.fkinds)
        frm = self.frm
        for i, u in enumerate(self.units):
            if i in drop:
                if u.essential:
                    return False
                continue
            if u.dyn_rm and frm > 4:
                return False
            for r, ok in u.freads:
                if kinds[r] not in ok:
                    return False
            for r, k in u.fwrites:
                kinds[r] = k
            if u.frm_fn is not None:
                frm = u.frm_fn(frm)
        return True

    def final_kinds(self, drop: frozenset[int] = frozenset()) -> list[str]:
        kinds = list(self.fkinds)
        for i, u in enumerate(self.units):
            if i not in drop:
                for r, k in u.fwrites:
                    kinds[r] = k
        return kinds


# ---- interesting values ----------------------------------------------------------------------


def _f64(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def _f32(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", x))[0]


INT_SPECIAL = [
    0,
    1,
    2,
    3,
    MASK64,
    MASK64 - 1,
    0x7F,
    0x80,
    0xFF,
    0x7FFF,
    0x8000,
    0xFFFF,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFF,
    0x100000000,
    0xFFFFFFFF80000000,
    0xFFFFFFFF7FFFFFFF,
    0x7FFFFFFFFFFFFFFF,
    0x8000000000000000,
    0x8000000000000001,
    (1 << 24) + 1,
    (1 << 53) + 1,
    (1 << 53) + 3,
    -((1 << 53) + 1) & MASK64,
    0xFFFFFFFFFFFFFFC0,
    63,
    64,
    31,
    32,
]

D_SPECIAL = [
    0,
    1 << 63,
    0x7FF0000000000000,
    0xFFF0000000000000,
    0x7FF8000000000000,
    0xFFF8000000000000,
    0x7FF8000000000123,
    0x7FF0000000000001,
    0xFFF4000000000000,
    0x7FF4000000000000,
    1,
    0x8000000000000001,
    0x000FFFFFFFFFFFFF,
    0x0010000000000000,
    0x8010000000000000,
    0x7FEFFFFFFFFFFFFF,
    0xFFEFFFFFFFFFFFFF,
    _f64(1.0),
    _f64(-1.0),
    _f64(0.5),
    _f64(-0.5),
    _f64(1.5),
    _f64(2.5),
    _f64(-2.5),
    _f64(3.0),
    _f64(0.1),
    _f64(2147483647.0),
    _f64(2147483647.5),
    _f64(2147483648.0),
    _f64(-2147483648.0),
    _f64(-2147483649.0),
    _f64(-2147483648.5),
    _f64(4294967295.0),
    _f64(4294967296.0),
    _f64(2.0**63),
    _f64(-(2.0**63)),
    _f64(2.0**64),
    _f64(2.0**63 - 1024),
    _f64(-1.0e-300),
    0x3FF0000000000001,
    0x3CA0000000000000,
    0x3CB0000000000000,
    0x36A0000000000000,  # 2**-149 (smallest single subnormal) as a double
    0x47EFFFFFE0000000,  # max single as a double
    0x47EFFFFFF0000000,  # halfway between max single and overflow
]

S_SPECIAL = [
    0,
    0x80000000,
    0x7F800000,
    0xFF800000,
    0x7FC00000,
    0xFFC00000,
    0x7FC00123,
    0x7F800001,
    0x7FA00000,
    0xFFA00000,
    1,
    0x80000001,
    0x007FFFFF,
    0x00800000,
    0x80800000,
    0x7F7FFFFF,
    0xFF7FFFFF,
    _f32(1.0),
    _f32(-1.0),
    _f32(0.5),
    _f32(1.5),
    _f32(2.5),
    _f32(-2.5),
    _f32(3.0),
    _f32(0.1),
    _f32(2147483648.0),
    _f32(-2147483648.0),
    _f32(4294967296.0),
    _f32(2.0**63),
    _f32(-(2.0**63)),
    _f32(2.0**64),
    _f32(16777216.0),
    _f32(16777217.0),
    0x3F800001,
    0x33800000,
]


def rand_int(rng: random.Random) -> int:
    c = rng.random()
    if c < 0.4:
        return rng.choice(INT_SPECIAL)
    if c < 0.55:
        return rng.randrange(-64, 64) & MASK64
    if c < 0.7:
        return rng.randrange(-(1 << 31), 1 << 31) & MASK64
    if c < 0.8:
        return rng.choice(D_SPECIAL) if rng.random() < 0.5 else rng.choice(S_SPECIAL)
    return rng.getrandbits(64)


def rand_f64(rng: random.Random) -> int:
    c = rng.random()
    sign = rng.getrandbits(1) << 63
    if c < 0.35:
        return rng.choice(D_SPECIAL)
    if c < 0.6:  # near one: additions and multiplications that round
        return sign | ((1023 + rng.randint(-6, 6)) << 52) | rng.getrandbits(52)
    if c < 0.7:  # double -> single rounding cases: low 29 bits at or next to the halfway point
        m = rng.getrandbits(52) & ~((1 << 29) - 1)
        m |= rng.choice([0, 1 << 28, (1 << 28) + 1, (1 << 28) - 1, (1 << 29) - 1])
        return sign | ((1023 + rng.randint(-30, 30)) << 52) | m
    if c < 0.8:  # x + k/4: float -> int conversions in every rounding mode
        return _f64(rng.randint(-(1 << 20), 1 << 20) + rng.choice([0.25, 0.5, 0.75, 0.0]))
    if c < 0.9:  # extreme exponents: overflow, underflow, subnormal results
        e = rng.choice([rng.randint(0, 60), rng.randint(1980, 2046), rng.randint(850, 900)])
        return sign | (e << 52) | rng.getrandbits(52)
    return rng.getrandbits(64)


def rand_f32(rng: random.Random) -> int:
    c = rng.random()
    sign = rng.getrandbits(1) << 31
    if c < 0.35:
        return rng.choice(S_SPECIAL)
    if c < 0.6:
        return sign | ((127 + rng.randint(-6, 6)) << 23) | rng.getrandbits(23)
    if c < 0.75:
        return _f32(rng.randint(-(1 << 12), 1 << 12) + rng.choice([0.25, 0.5, 0.75, 0.0]))
    if c < 0.9:
        e = rng.choice([rng.randint(0, 20), rng.randint(230, 254), rng.randint(100, 110)])
        return sign | (e << 23) | rng.getrandbits(23)
    return rng.getrandbits(32)


def rand_imm12(rng: random.Random) -> int:
    c = rng.random()
    if c < 0.3:
        return rng.choice([0, 1, -1, 2047, -2048, 31, 32, 63, 64, -2, 0x7FF, 0x555])
    if c < 0.6:
        return rng.randint(-16, 16)
    return rng.randint(-2048, 2047)


# ---- the generator ---------------------------------------------------------------------------


class Gen:
    def __init__(self, seed: int, profile: str) -> None:
        self.seed = seed
        self.profile = profile
        self.rng = random.Random(seed)
        rng = self.rng
        # Base pointers (never overwritten): sp in the middle of the data region, x8/x9 a little
        # below, so every 12-bit offset from any of them stays inside it.
        self.base = {2: DATA_BASE + 0x1000}
        for r in (8, 9):
            self.base[r] = DATA_BASE + 0x800 + 8 * rng.randrange(128)
        self.kinds: list[str] = []
        self.fregs: list[int] = []
        for _ in range(32):
            c = rng.random()
            if c < 0.45:
                self.kinds.append("sd")
                self.fregs.append(0xFFFFFFFF00000000 | rand_f32(rng))
            elif c < 0.85:
                self.kinds.append("d")
                self.fregs.append(rand_f64(rng))
            else:
                self.kinds.append("u")
                hi = rng.choice([0, 0xFFFFFFFE, 0x7FFFFFFF, rng.getrandbits(32) & 0xFFFFFFFE])
                self.fregs.append((hi << 32) | rand_f32(rng))
        self.init_kinds = list(self.kinds)
        self.frm = rng.randrange(5)
        self.init_frm = self.frm
        self.fflags = rng.choice([0, 0, rng.randrange(32)])

    # -- registers
    avoid: frozenset[int] = frozenset()  # not to be written (a loop counter)

    def rd(self) -> int:
        if self.rng.random() < 0.05:
            return 0
        while True:
            r = self.rng.choice(WRITABLE)
            if r not in self.avoid:
                return r

    def rs(self) -> int:
        return self.rng.randrange(32)

    def freg(self, ok: frozenset[str]) -> int | None:
        cands = [r for r in range(32) if self.kinds[r] in ok]
        return self.rng.choice(cands) if cands else None

    def rm(self) -> tuple[int, bool]:
        """A rounding-mode field: static 0-4, or 7 (dynamic) while frm is valid."""
        if self.frm <= 4 and self.rng.random() < 0.35:
            return 7, True
        return self.rng.randrange(5), False

    # -- memory
    def mem_addr(self, size: int, base: int, lo: int, hi: int, step: int) -> int | None:
        """An offset in [lo, hi] (multiple of `step`) from `base` that hits the data region."""
        b = self.base[base]
        first = max(lo, DATA_BASE - b)
        last = min(hi, DATA_END - size - b)
        first = -(-first // step) * step
        if first > last:
            return None
        off = first + step * self.rng.randrange((last - first) // step + 1)
        assert DATA_BASE <= b + off <= DATA_END - size
        return off

    def aligned_off(self, size: int, base: int) -> int:
        align = size if self.rng.random() < 0.96 else 1  # a few misaligned plain accesses
        if align == 1 and size > 1 and self.rng.random() < 0.5:
            # straddle the page boundary in the middle of the data region
            off = DATA_BASE + 0x1000 - self.rng.randrange(1, size) - self.base[base]
            if -2048 <= off <= 2047:
                return off
        off = self.mem_addr(size, base, -2048, 2047, align)
        assert off is not None
        if align != 1 and (self.base[base] + off) % size:
            off -= (self.base[base] + off) % size
        return off

    # -- templates: each returns a Unit or None (not applicable now)
    def t_alu_reg(self, avoid: frozenset[int] = frozenset()) -> Unit:
        rng = self.rng
        ops32 = [("add", 0, 0), ("sub", 0, 0x20), ("sll", 1, 0), ("slt", 2, 0), ("sltu", 3, 0)]
        ops32 += [("xor", 4, 0), ("srl", 5, 0), ("sra", 5, 0x20), ("or", 6, 0), ("and", 7, 0)]
        name, f3, f7 = rng.choice(ops32)
        word = rng.random() < 0.35 and name in ("add", "sub", "sll", "srl", "sra")
        rd = self._rd_avoid(avoid)
        return Unit(
            name + ("w" if word else ""), [E.r_type(0x3B if word else 0x33, rd, f3, self.rs(), self.rs(), f7)]
        )

    def _rd_avoid(self, avoid: frozenset[int]) -> int:
        while True:
            r = self.rd()
            if r not in avoid:
                return r

    def t_alu_imm(self, avoid: frozenset[int] = frozenset()) -> Unit:
        rng = self.rng
        rd, rs1 = self._rd_avoid(avoid), self.rs()
        c = rng.random()
        if c < 0.25:
            f3, f6, name = rng.choice([(1, 0, "slli"), (5, 0, "srli"), (5, 0x10, "srai")])
            if rng.random() < 0.4:
                return Unit(name + "w", [E.shift_imm(0x1B, rd, f3, rs1, rng.randrange(32), f6, 32)])
            return Unit(name, [E.shift_imm(0x13, rd, f3, rs1, rng.randrange(64), f6, 64)])
        if c < 0.35:
            return Unit("addiw", [E.i_type(0x1B, rd, 0, rs1, rand_imm12(rng))])
        if c < 0.45:
            opc = rng.choice([0x37, 0x17])
            return Unit("lui" if opc == 0x37 else "auipc", [E.u_type(opc, rd, rng.getrandbits(20))])
        name, f3 = rng.choice([("addi", 0), ("slti", 2), ("sltiu", 3), ("xori", 4), ("ori", 6), ("andi", 7)])
        return Unit(name, [E.i_type(0x13, rd, f3, rs1, rand_imm12(rng))])

    def t_muldiv(self) -> Unit:
        rng = self.rng
        if rng.random() < 0.4:
            f3 = rng.choice([0, 4, 5, 6, 7])
            name = {0: "mulw", 4: "divw", 5: "divuw", 6: "remw", 7: "remuw"}[f3]
            return Unit(name, [E.r_type(0x3B, self.rd(), f3, self.rs(), self.rs(), 1)])
        f3 = rng.randrange(8)
        name = ["mul", "mulh", "mulhsu", "mulhu", "div", "divu", "rem", "remu"][f3]
        return Unit(name, [E.r_type(0x33, self.rd(), f3, self.rs(), self.rs(), 1)])

    def t_load(self) -> Unit:
        rng = self.rng
        f3, size, name = rng.choice(
            [
                (0, 1, "lb"),
                (1, 2, "lh"),
                (2, 4, "lw"),
                (3, 8, "ld"),
                (4, 1, "lbu"),
                (5, 2, "lhu"),
                (6, 4, "lwu"),
            ]
        )
        base = rng.choice(BASE_REGS)
        return Unit(name, [E.i_type(0x03, self.rd(), f3, base, self.aligned_off(size, base))])

    def t_store(self) -> Unit:
        rng = self.rng
        f3, size, name = rng.choice([(0, 1, "sb"), (1, 2, "sh"), (2, 4, "sw"), (3, 8, "sd")])
        base = rng.choice(BASE_REGS)
        return Unit(name, [E.s_type(0x23, f3, base, self.rs(), self.aligned_off(size, base))])

    def t_fence(self) -> Unit:
        if self.rng.random() < 0.5:
            return Unit("fence.i", [0x0000100F])
        return Unit("fence", [0x0FF0000F])

    def _addr_reg(self, size: int) -> tuple[int, list[int], int]:
        """A temp register loaded with an aligned data address: (reg, [addi], address)."""
        base = self.rng.choice(BASE_REGS)
        off = self.mem_addr(size, base, -2048, 2047, 1)
        assert off is not None
        off -= (self.base[base] + off) % size
        ra = self.rng.choice([r for r in WRITABLE if r != 0 and r not in self.avoid])
        return ra, [E.i_type(0x13, ra, 0, base, off)], self.base[base] + off

    def t_amo(self) -> Unit:
        rng = self.rng
        w3, size = rng.choice([(2, 4), (3, 8)])
        ra, setup, _ = self._addr_reg(size)
        f5, name = rng.choice(
            [
                (0x00, "amoadd"),
                (0x01, "amoswap"),
                (0x04, "amoxor"),
                (0x08, "amoor"),
                (0x0C, "amoand"),
                (0x10, "amomin"),
                (0x14, "amomax"),
                (0x18, "amominu"),
                (0x1C, "amomaxu"),
            ]
        )
        word = E.amo(f5, w3, self.rd(), ra, self.rs(), rng.getrandbits(1), rng.getrandbits(1))
        return Unit(f"{name}.{'w' if size == 4 else 'd'}", setup + [word])

    def t_lrsc(self) -> Unit:
        rng = self.rng
        w3, size = rng.choice([(2, 4), (3, 8)])
        sfx = "w" if size == 4 else "d"
        ra, setup, _ = self._addr_reg(size)
        aq, rl = rng.getrandbits(1), rng.getrandbits(1)
        sc = E.amo(0x03, w3, self.rd(), ra, self.rs(), aq, rl)
        if rng.random() < 0.2:  # an SC without a reservation fails
            return Unit(f"sc.{sfx}", setup + [sc])
        lr_rd = self._rd_avoid(frozenset({ra}))
        words = setup + [E.amo(0x02, w3, lr_rd, ra, 0, aq, rl)]
        for _ in range(rng.randrange(3)):
            words += self.t_alu_reg(frozenset({ra})).words
        return Unit(f"lr.{sfx}/sc.{sfx}", words + [sc])

    # -- control flow (forward only)
    def t_branch(self) -> Unit:
        rng = self.rng
        skip = rng.randrange(4)
        c = rng.random()
        if c < 0.5:
            f3 = rng.choice([0, 1, 4, 5, 6, 7])
            name = {0: "beq", 1: "bne", 4: "blt", 5: "bge", 6: "bltu", 7: "bgeu"}[f3]
            rs1, rs2 = self.rs(), self.rs()
            if rng.random() < 0.2:
                rs2 = rs1
            return Unit(name, [E.NOP], skip=skip, build=lambda d: [E.b_type(0x63, f3, rs1, rs2, d)])
        if c < 0.65:
            rd = self.rd()
            return Unit("jal", [E.NOP], skip=skip, build=lambda d: [E.j_type(0x6F, rd, d)])
        if c < 0.8:
            rt, rd = rng.choice([r for r in WRITABLE if r]), self.rd()
            odd = rng.getrandbits(1)  # jalr clears bit 0 of the target
            return Unit(
                "auipc/jalr",
                [E.NOP, E.NOP],
                skip=skip,
                build=lambda d: [E.u_type(0x17, rt, 0), E.i_type(0x67, rd, 0, rt, d + odd)],
            )
        if c < 0.9:
            rs1, ne = rng.choice(C_REGS), rng.random() < 0.5
            return Unit(
                "c.bnez" if ne else "c.beqz", [E.C_NOP], skip=skip, build=lambda d: [E.c_bz(ne, rs1, d)]
            )
        if c < 0.95:
            return Unit("c.j", [E.C_NOP], skip=skip, build=lambda d: [E.c_j(d)])
        rt, link = rng.choice([r for r in WRITABLE if r]), rng.random() < 0.5
        odd = rng.getrandbits(1)
        # auipc rt, 0; addi rt, rt, d; c.jr/c.jalr rt  (c.jalr writes ra = pc + 2)
        return Unit(
            "c.jalr" if link else "c.jr",
            [E.NOP, E.NOP, E.C_NOP],
            skip=skip,
            build=lambda d: [
                E.u_type(0x17, rt, 0),
                E.i_type(0x13, rt, 0, rt, d + odd),
                E.c_jalr(rt) if link else E.c_jr(rt),
            ],
        )

    def t_loop(self) -> Unit:
        """A counted loop (1-6 iterations) over integer/memory/AMO units, maybe with an inner
        forward branch: exercises the engine's self-looping blocks and loop regions."""
        rng = self.rng
        ctr = rng.choice([r for r in WRITABLE if r])
        self.avoid = frozenset({ctr})
        try:
            body = [
                self.t_amo() if rng.random() < 0.15 else self.shadow_unit() for _ in range(rng.randint(1, 6))
            ]
        finally:
            self.avoid = frozenset()
        words: list[int] = [E.i_type(0x13, ctr, 0, 0, rng.randint(1, 6))]
        if len(body) >= 2 and rng.random() < 0.5:  # an inner forward branch over some body units
            at = rng.randrange(len(body) - 1)
            skip = rng.randint(1, len(body) - at - 1)
            dist = 4 + sum(u.size for u in body[at : at + skip])
            f3 = rng.choice([0, 1, 4, 5, 6, 7])
            br = E.b_type(0x63, f3, self.rs(), self.rs(), dist)
            body_words = (
                [w for u in body[:at] for w in u.words] + [br] + [w for u in body[at:] for w in u.words]
            )
        else:
            body_words = [w for u in body for w in u.words]
        words += body_words
        words.append(E.i_type(0x13, ctr, 0, ctr, -1) if ctr not in C_WRITABLE else E.c_addi(ctr, -1))
        back = -sum(E.size_of(w) for w in words[1:])
        if ctr in C_WRITABLE and rng.random() < 0.5:
            words.append(E.c_bz(True, ctr, back))
        else:
            words.append(E.b_type(0x63, 1, ctr, 0, back))  # bne ctr, x0
        return Unit("loop[" + ",".join(u.name for u in body) + "]", words)

    def t_smc(self) -> Unit:
        """Self-modifying code: patch an instruction ahead (or, in a loop, one that already ran),
        then fence.i. Both emulators must run the new instruction after the fence.i."""
        rng = self.rng
        regs = rng.sample([r for r in WRITABLE if r], 3)
        rt, rw, ctr = regs
        self.avoid = frozenset(regs)
        try:
            old = (self.t_alu_reg() if rng.random() < 0.5 else self.t_alu_imm()).words[0]
            new = (self.t_alu_reg() if rng.random() < 0.5 else self.t_muldiv()).words[0]
        finally:
            self.avoid = frozenset()
        hi = ((new + 0x800) >> 12) & 0xFFFFF
        lo = new - (((hi << 12) ^ 0x80000000) - 0x80000000)
        lo = ((lo + 0x800) & 0xFFF) - 0x800
        make = [E.u_type(0x37, rw, hi), E.i_type(0x1B, rw, 0, rw, lo)]  # rw = sext32(new)
        fence_i = 0x0000100F
        if rng.random() < 0.5:
            # auipc rt, 0; lui/addiw rw; sw rw, 20(rt); fence.i; <old> (runs as <new>)
            words = [E.u_type(0x17, rt, 0), *make, E.s_type(0x23, 2, rt, rw, 20), fence_i, old]
            return Unit("smc", words)
        n = rng.randint(2, 4)
        # addi ctr, n; auipc rt, 0; lui/addiw rw; loop: <old>; sw rw, 16(rt); fence.i;
        # addi ctr, ctr, -1; bne ctr, x0, loop
        words = [E.i_type(0x13, ctr, 0, 0, n), E.u_type(0x17, rt, 0), *make]
        words += [old, E.s_type(0x23, 2, rt, rw, 12), fence_i, E.i_type(0x13, ctr, 0, ctr, -1)]
        words.append(E.b_type(0x63, 1, ctr, 0, -16))
        return Unit("smc-loop", words)

    # -- compressed
    def t_compressed(self) -> Unit | None:
        rng = self.rng
        c = rng.randrange(20)
        cw = rng.choice(C_WRITABLE)
        crs = rng.choice(C_REGS)
        nzrd = rng.choice([r for r in WRITABLE if r])
        if c == 0:
            return Unit("c.addi4spn", [E.c_addi4spn(cw, 4 * rng.randrange(1, 256))])
        if c == 1:
            base = rng.choice((8, 9))
            if rng.random() < 0.5:
                off = self.mem_addr(4, base, 0, 124, 4)
                return Unit("c.lw", [E.c_lw(cw, base, off)]) if off is not None else None
            off = self.mem_addr(8, base, 0, 248, 8)
            return Unit("c.ld", [E.c_ld(cw, base, off)]) if off is not None else None
        if c == 2:
            base = rng.choice((8, 9))
            if rng.random() < 0.5:
                off = self.mem_addr(4, base, 0, 124, 4)
                return Unit("c.sw", [E.c_sw(crs, base, off)]) if off is not None else None
            off = self.mem_addr(8, base, 0, 248, 8)
            return Unit("c.sd", [E.c_sd(crs, base, off)]) if off is not None else None
        if c == 3:
            imm = rng.choice([i for i in range(-32, 32) if i])
            return Unit("c.addi", [E.c_addi(nzrd, imm)])
        if c == 4:
            return Unit("c.addiw", [E.c_addiw(nzrd, rng.randrange(-32, 32))])
        if c == 5:
            return Unit("c.li", [E.c_li(nzrd, rng.randrange(-32, 32))])
        if c == 6:
            rd = rng.choice([r for r in WRITABLE if r not in (0, 2)])
            return Unit("c.lui", [E.c_lui(rd, rng.choice([i for i in range(-32, 32) if i]))])
        if c == 7:
            sp = self.base[2]
            cands = [i for i in range(-512, 512, 16) if i and DATA_BASE + 0x400 <= sp + i <= DATA_END - 0x800]
            imm = rng.choice(cands)
            self.base[2] = sp + imm
            return Unit("c.addi16sp", [E.c_addi16sp(imm)], essential=True)
        if c == 8:
            name = rng.choice(["c.srli", "c.srai"])
            fn = E.c_srli if name == "c.srli" else E.c_srai
            return Unit(name, [fn(cw, rng.randrange(1, 64))])
        if c == 9:
            return Unit("c.andi", [E.c_andi(cw, rng.randrange(-32, 32))])
        if c == 10:
            name = rng.choice(["sub", "xor", "or", "and", "subw", "addw"])
            return Unit("c." + name, [E.c_arith(name, cw, crs)])
        if c == 11:
            return Unit("c.slli", [E.c_slli(nzrd, rng.randrange(1, 64))])
        if c == 12:
            if rng.random() < 0.5:
                off = self.mem_addr(4, 2, 0, 252, 4)
                return Unit("c.lwsp", [E.c_lwsp(nzrd, off)]) if off is not None else None
            off = self.mem_addr(8, 2, 0, 504, 8)
            return Unit("c.ldsp", [E.c_ldsp(nzrd, off)]) if off is not None else None
        if c == 13:
            if rng.random() < 0.5:
                off = self.mem_addr(4, 2, 0, 252, 4)
                return Unit("c.swsp", [E.c_swsp(self.rs(), off)]) if off is not None else None
            off = self.mem_addr(8, 2, 0, 504, 8)
            return Unit("c.sdsp", [E.c_sdsp(self.rs(), off)]) if off is not None else None
        if c == 14:
            return Unit("c.mv", [E.c_mv(nzrd, rng.randrange(1, 32))])
        if c == 15:
            return Unit("c.add", [E.c_add(nzrd, rng.randrange(1, 32))])
        if c == 16:
            return Unit("c.nop", [E.C_NOP])
        if c in (17, 18):  # c.fld / c.fsd / c.fldsp / c.fsdsp
            load = rng.random() < 0.5
            sp = rng.random() < 0.4
            if sp:
                off = self.mem_addr(8, 2, 0, 504, 8)
            else:
                base = rng.choice((8, 9))
                off = self.mem_addr(8, base, 0, 248, 8)
            if off is None:
                return None
            if load:
                fd = rng.randrange(32) if sp else rng.choice(C_REGS)
                self.kinds[fd] = "d"
                word = E.c_fldsp(fd, off) if sp else E.c_fld(fd, base, off)
                return Unit("c.fldsp" if sp else "c.fld", [word], fwrites=[(fd, "d")])
            cands = [r for r in (range(32) if sp else C_REGS) if self.kinds[r] in READ_D]
            if not cands:
                return None
            fs = rng.choice(cands)
            word = E.c_fsdsp(fs, off) if sp else E.c_fsd(fs, base, off)
            return Unit("c.fsdsp" if sp else "c.fsd", [word], freads=[(fs, READ_D)])
        return self.t_compressed_shadow()

    def t_compressed_shadow(self) -> Unit:
        """Compressed integer ALU instructions only (safe inside a branch shadow)."""
        rng = self.rng
        cw = rng.choice([r for r in C_WRITABLE if r not in self.avoid])
        c = rng.randrange(4)
        if c == 0:
            name = rng.choice(["sub", "xor", "or", "and", "subw", "addw"])
            return Unit("c." + name, [E.c_arith(name, cw, rng.choice(C_REGS))])
        if c == 1:
            return Unit("c.li", [E.c_li(cw, rng.randrange(-32, 32))])
        if c == 2:
            return Unit("c.slli", [E.c_slli(cw, rng.randrange(1, 64))])
        return Unit("c.addiw", [E.c_addiw(cw, rng.randrange(-32, 32))])

    # -- floating point
    def _fop(self, name: str, word: int, reads, writes, dyn: bool = False) -> Unit:
        for r, k in writes:
            self.kinds[r] = k
        return Unit(name, [word], freads=list(reads), fwrites=list(writes), dyn_rm=dyn)

    def t_fp(self) -> Unit | None:
        rng = self.rng
        dbl = rng.random() < 0.5
        fmt = 1 if dbl else 0
        sfx = ".d" if dbl else ".s"
        rk = READ_D if dbl else READ_S
        wk = "d" if dbl else "s"
        c = rng.random()
        rs1, rs2, rs3 = self.freg(rk), self.freg(rk), self.freg(rk)
        if rs1 is None or rs2 is None or rs3 is None:
            return None
        fd = rng.randrange(32)
        rm, dyn = self.rm()
        if c < 0.3:
            f5, name = rng.choice([(0, "fadd"), (1, "fsub"), (2, "fmul"), (3, "fdiv")])
            word = E.r_type(0x53, fd, rm, rs1, rs2, (f5 << 2) | fmt)
            return self._fop(name + sfx, word, [(rs1, rk), (rs2, rk)], [(fd, wk)], dyn)
        if c < 0.38:
            word = E.r_type(0x53, fd, rm, rs1, 0, (0x0B << 2) | fmt)
            return self._fop("fsqrt" + sfx, word, [(rs1, rk)], [(fd, wk)], dyn)
        if c < 0.5:
            opc, name = rng.choice([(0x43, "fmadd"), (0x47, "fmsub"), (0x4B, "fnmsub"), (0x4F, "fnmadd")])
            word = E.r4_type(opc, fd, rm, rs1, rs2, fmt, rs3)
            return self._fop(name + sfx, word, [(rs1, rk), (rs2, rk), (rs3, rk)], [(fd, wk)], dyn)
        if c < 0.58:
            f3, name = rng.choice([(0, "fsgnj"), (1, "fsgnjn"), (2, "fsgnjx")])
            if rng.random() < 0.2:
                rs2 = rs1  # fmv / fneg / fabs
            word = E.r_type(0x53, fd, f3, rs1, rs2, (0x04 << 2) | fmt)
            return self._fop(name + sfx, word, [(rs1, rk), (rs2, rk)], [(fd, wk)])
        if c < 0.64:
            f3, name = rng.choice([(0, "fmin"), (1, "fmax")])
            word = E.r_type(0x53, fd, f3, rs1, rs2, (0x05 << 2) | fmt)
            return self._fop(name + sfx, word, [(rs1, rk), (rs2, rk)], [(fd, wk)])
        if c < 0.7:
            f3, name = rng.choice([(2, "feq"), (1, "flt"), (0, "fle")])
            word = E.r_type(0x53, self.rd(), f3, rs1, rs2, (0x14 << 2) | fmt)
            return self._fop(name + sfx, word, [(rs1, rk), (rs2, rk)], [])
        if c < 0.76:
            sel = rng.randrange(4)
            name = ["fcvt.w", "fcvt.wu", "fcvt.l", "fcvt.lu"][sel] + sfx
            word = E.r_type(0x53, self.rd(), rm, rs1, sel, (0x18 << 2) | fmt)
            return self._fop(name, word, [(rs1, rk)], [], dyn)
        if c < 0.82:
            sel = rng.randrange(4)
            name = "fcvt" + sfx + [".w", ".wu", ".l", ".lu"][sel]
            word = E.r_type(0x53, fd, rm, self.rs(), sel, (0x1A << 2) | fmt)
            return self._fop(name, word, [], [(fd, wk)], dyn)
        if c < 0.86:
            # fcvt.s.d (rs2 = 1, reads a double) / fcvt.d.s (rs2 = 0, reads a single)
            src_k = READ_S if dbl else READ_D
            src = self.freg(src_k)
            if src is None:
                return None
            name = "fcvt.d.s" if dbl else "fcvt.s.d"
            word = E.r_type(0x53, fd, rm, src, 0 if dbl else 1, (0x08 << 2) | fmt)
            return self._fop(name, word, [(src, src_k)], [(fd, wk)], dyn)
        if c < 0.9:
            word = E.r_type(0x53, self.rd(), 1, rs1, 0, (0x1C << 2) | fmt)
            return self._fop("fclass" + sfx, word, [(rs1, rk)], [])
        if c < 0.94:
            raw = READ_D if dbl else READ_RAW32
            src = self.freg(raw)
            if src is None:
                return None
            word = E.r_type(0x53, self.rd(), 0, src, 0, (0x1C << 2) | fmt)
            return self._fop("fmv.x" + (".d" if dbl else ".w"), word, [(src, raw)], [])
        if c < 0.97:
            word = E.r_type(0x53, fd, 0, self.rs(), 0, (0x1E << 2) | fmt)
            return self._fop("fmv" + (".d" if dbl else ".w") + ".x", word, [], [(fd, wk)])
        # FP loads and stores
        size = 8 if dbl else 4
        base = rng.choice(BASE_REGS)
        off = self.aligned_off(size, base)
        if rng.random() < 0.5:
            word = E.i_type(0x07, fd, 3 if dbl else 2, base, off)
            return self._fop("fld" if dbl else "flw", word, [], [(fd, wk)])
        raw = READ_D if dbl else READ_RAW32
        src = self.freg(raw)
        if src is None:
            return None
        word = E.s_type(0x27, 3 if dbl else 2, base, src, off)
        return self._fop("fsd" if dbl else "fsw", word, [(src, raw)], [])

    def t_csr(self) -> Unit:
        rng = self.rng
        csr_no = rng.choice([CSR_FFLAGS, CSR_FRM, CSR_FCSR])
        cname = {1: "fflags", 2: "frm", 3: "fcsr"}[csr_no]
        f3 = rng.choice([1, 2, 3, 5, 6, 7])  # csrrw csrrs csrrc csrrwi csrrsi csrrci
        op = {1: "csrrw", 2: "csrrs", 3: "csrrc", 5: "csrrwi", 6: "csrrsi", 7: "csrrci"}[f3]
        rd = self.rd()
        words: list[int] = []
        if rng.random() < 0.25 and f3 == 2:
            src, val = 0, 0  # csrr rd, csr
            op = "csrr"
        elif f3 >= 5:
            val = src = rng.randrange(32)
        else:
            src = rng.choice([r for r in WRITABLE if r])
            val = rng.choice([rng.randrange(-2048, 2048), rng.randrange(256), rng.randrange(8), 0])
            words.append(E.i_type(0x13, src, 0, 0, val))
            val &= MASK64
        words.append(E.csr(f3, rd, csr_no, src))
        if csr_no == CSR_FFLAGS:
            frm_fn = None
        else:
            bits = (val & 7) if csr_no == CSR_FRM else (val >> 5) & 7
            kind = f3 & 3  # 1 write, 2 set, 3 clear
            if kind == 1:
                frm_fn = lambda _old, b=bits: b  # noqa: E731
            elif kind == 2:
                frm_fn = lambda old, b=bits: old | b  # noqa: E731
            else:
                frm_fn = lambda old, b=bits: old & ~b & 7  # noqa: E731
        if frm_fn is not None:
            self.frm = frm_fn(self.frm)
            if self.frm > 4 and rng.random() < 0.7:
                # Mostly keep frm usable: fix it up right away (csrrwi x0, frm, mode).
                good = rng.randrange(5)
                words.append(E.csr(5, 0, CSR_FRM, good))
                inner = frm_fn
                frm_fn = lambda old, g=good, f=inner: g  # noqa: E731
                self.frm = good
        return Unit(f"{op} {cname}", words, frm_fn=frm_fn)

    # -- profiles
    def templates(self) -> list[tuple[float, Callable[[], Unit | None]]]:
        p = self.profile
        alu = [(3, self.t_alu_reg), (3, self.t_alu_imm), (2, self.t_muldiv)]
        mem = [(1.5, self.t_load), (1.5, self.t_store), (0.2, self.t_fence)]
        if p == "int":
            return (
                alu
                + mem
                + [
                    (1.5, self.t_branch),
                    (3, self.t_compressed),
                    (0.8, self.t_loop),
                    (0.3, self.t_smc),
                ]
            )
        if p == "amo":
            return [(1, self.t_alu_reg), (1, self.t_alu_imm), (1, self.t_load), (1, self.t_store)] + [
                (4, self.t_amo),
                (2.5, self.t_lrsc),
            ]
        if p == "fp":
            return [(12, self.t_fp), (1.5, self.t_csr), (1, self.t_alu_imm), (0.6, self.t_compressed)]
        return (
            alu
            + mem
            + [
                (1, self.t_branch),
                (2, self.t_compressed),
                (1, self.t_amo),
                (0.6, self.t_lrsc),
                (6, self.t_fp),
                (1, self.t_csr),
            ]
        )

    def shadow_unit(self) -> Unit:
        """Units that may or may not run (after a forward branch): integer only."""
        rng = self.rng
        c = rng.random()
        if c < 0.35:
            return self.t_alu_reg()
        if c < 0.65:
            return self.t_alu_imm()
        if c < 0.75:
            return self.t_muldiv()
        if c < 0.85:
            return self.t_store() if rng.random() < 0.5 else self.t_load()
        return self.t_compressed_shadow()

    def program(self, n_units: int) -> Program:
        rng = self.rng
        xregs = [0] + [rand_int(rng) for _ in range(31)]
        for r, v in self.base.items():
            xregs[r] = v
        data = bytearray(rng.randbytes(DATA_SIZE))
        for _ in range(64):  # sprinkle interesting values where loads will find them
            if rng.random() < 0.5:
                a = 8 * rng.randrange(DATA_SIZE // 8)
                data[a : a + 8] = rand_f64(rng).to_bytes(8, "little")
            else:
                a = 4 * rng.randrange(DATA_SIZE // 4)
                data[a : a + 4] = rand_f32(rng).to_bytes(4, "little")
        templates = self.templates()
        weights = [w for w, _ in templates]
        units: list[Unit] = []
        shadow = 0
        while len(units) < n_units:
            if shadow:
                units.append(self.shadow_unit())
                shadow -= 1
                continue
            (fn,) = rng.choices([t for _, t in templates], weights)
            u = fn()
            if u is None:
                continue
            units.append(u)
            shadow = u.skip
        return Program(
            self.seed,
            self.profile,
            units,
            xregs,
            self.fregs,
            self.init_kinds,
            self.fflags,
            self.init_frm,
            bytes(data),
        )


PROFILES = ("int", "fp", "amo", "mix")
# Block-size limits split blocks at arbitrary points (state written back, re-entered), `step`
# runs one-instruction blocks, `no-regions` turns off the engine's loop regions.
ENGINE_MODES = ("default", "default", "step", "insns=1", "insns=3", "insns=7", "no-regions")
# Seeds from JIT_SEED_BASE on run on the native tiers (polyvm.engine.jit): `jit` compiles
# everything, `switch=N` is the JIT forced to hand the state over to the interpreter every N
# blocks and back, `auto` starts interpreted (these programs run each block once, so they stay
# there: the JIT engine's own interpreter path).
JIT_SEED_BASE = 5_000_000
JIT_MODES = ("jit", "switch=3", "jit", "switch=7", "auto")


def make_program(seed: int, profile: str | None = None) -> Program:
    """The program for `seed`; the profile is derived from the seed unless given."""
    if profile is None:
        profile = PROFILES[seed % len(PROFILES)]
    rng = random.Random(seed ^ 0x5EED)
    prog = Gen(seed, profile).program(rng.randint(10, 30))
    modes = JIT_MODES if seed >= JIT_SEED_BASE else ENGINE_MODES
    prog.engine_mode = modes[(seed // len(PROFILES)) % len(modes)]
    return prog
