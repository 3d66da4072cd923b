"""Native LLVM fast paths of the RISC-V FP helpers (polyvm.isa.riscv.fpnative).

Each native helper is emitted into a small looping function, optimized at O2 and JIT-compiled
for the host CPU, then run on many inputs.  Expected values come from the Python helpers (the
softfloat reference), never from the emitter: whenever the native code claims ok, its result
and flags must equal the helper's exactly; it must never claim ok for a rounding mode other than
RNE; and it must claim ok for nearly all "nice" inputs (so the test cannot pass by giving up).

Every record also carries the accrued fflags the helper starts from (with and without NX): the
arithmetic helpers take a shortcut when NX is already set, and the flags compared are the
accrued ones after the operation (old | new), as the JIT ORs the native flags into the slot.
"""

from __future__ import annotations

import ctypes
import math
import random
import struct
from array import array

import pytest

pytest.importorskip("llvmlite")

import llvmlite.binding as llvm  # noqa: E402
from llvmlite import ir  # noqa: E402

import polyvm.isa.riscv.rv64fd  # noqa: E402,F401  (registers the FP helpers)
from polyvm.engine import GuestTrap  # noqa: E402
from polyvm.isa.riscv import fpnative  # noqa: E402
from polyvm.isa.riscv.common import FFLAGS_SLOT, FRM_SLOT, HELPERS, NSLOTS  # noqa: E402

I8, I32, I64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
IN_W = 6  # record: a0 a1 a2 rm frm fflags
OUT_W = 3  # ok result flags
WORD = 0x0220_F0D3  # some instruction word (unused by the fast paths)
RM_VARIANTS = (0, 1, 2, 3, 4, 5, 6, 7, "dyn")
NAMES = sorted(fpnative.NATIVE)
M64 = (1 << 64) - 1
NX, UF = 1, 2  # fflags bits
ARITH = ("fadd", "fsub", "fmul", "fdiv", "fsqrt", "fmadd", "fmsub", "fnmsub", "fnmadd")


def d2b(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def f2b(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", x))[0]


def box(s: int) -> int:
    return s | 0xFFFF_FFFF_0000_0000


def takes_rm(name: str) -> bool:
    return HELPERS[name].arg_widths[-2:] == (8, 32)


def nregs(name: str) -> int:
    n = len(HELPERS[name].arg_widths)
    return n - 2 if takes_rm(name) else n


# ---- the JIT harness -----------------------------------------------------------------------------
def _build(mod: ir.Module, fname: str, name: str, rmv) -> None:
    p64 = I64.as_pointer()
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [p64, p64, I64]), name=fname)
    inp, out, n = fn.args
    entry, loop, done = (
        fn.append_basic_block("entry"),
        fn.append_basic_block("loop"),
        fn.append_basic_block("done"),
    )
    b = ir.IRBuilder(entry)
    b.cbranch(b.icmp_unsigned("==", n, ir.Constant(I64, 0)), done, loop)
    b.position_at_end(loop)
    i = b.phi(I64)
    i.add_incoming(ir.Constant(I64, 0), entry)
    base = b.mul(i, ir.Constant(I64, IN_W))

    def field(k: int) -> ir.Value:
        return b.load(b.gep(inp, [b.add(base, ir.Constant(I64, k))]))

    def get_slot(k: int) -> ir.Value:
        assert k in (FRM_SLOT, FFLAGS_SLOT), k
        return field(4 if k == FRM_SLOT else 5)

    args = [field(j) for j in range(nregs(name))]
    consts: list[int | None] = [None] * len(args)
    if takes_rm(name):
        if rmv == "dyn":
            args.append(b.trunc(field(3), I8))
            consts.append(None)
        else:
            args.append(ir.Constant(I8, rmv))
            consts.append(rmv)
        args.append(ir.Constant(I32, WORD))
        consts.append(WORD)
    r = fpnative.emit(name, b, args, consts, get_slot)
    assert r is not None
    ok, res, slots = r
    assert ok.type == ir.IntType(1) and res.type == I64
    assert set(slots) <= {FFLAGS_SLOT}
    flags = slots.get(FFLAGS_SLOT, ir.Constant(I64, 0))
    ob = b.mul(i, ir.Constant(I64, OUT_W))
    for k, v in enumerate((b.zext(ok, I64), res, flags)):
        b.store(v, b.gep(out, [b.add(ob, ir.Constant(I64, k))]))
    nxt = b.add(i, ir.Constant(I64, 1))
    i.add_incoming(nxt, b.block)
    b.cbranch(b.icmp_unsigned("<", nxt, n), loop, done)
    b.position_at_end(done)
    b.ret_void()


def host_tm() -> llvm.TargetMachine:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=2
    )


class Jit:
    def __init__(self) -> None:
        self.tm = host_tm()  # owned by the engine from here on
        mod = ir.Module(name="fpnative_test")
        mod.triple = llvm.get_default_triple()
        self.fnames: dict[tuple[str, object], str] = {}
        for name in NAMES:
            # Only the helper name is declared; an unknown name must give None, not raise.
            for rmv in RM_VARIANTS if takes_rm(name) else (None,):
                fname = f"f{len(self.fnames)}"
                self.fnames[(name, rmv)] = fname
                _build(mod, fname, name, rmv)
        llmod = llvm.parse_assembly(str(mod))
        llmod.verify()
        # O2, minus the loop vectorizer (a third of the compile time here; the JIT's blocks are
        # straight-line code, which the SLP vectorizer and the folding test below cover).
        pto = llvm.PipelineTuningOptions(speed_level=2)
        pto.loop_vectorization = False
        pb = llvm.create_pass_builder(self.tm, pto)
        pb.getModulePassManager().run(llmod, pb)
        llmod.verify()
        self.engine = llvm.create_mcjit_compiler(llmod, self.tm)
        self.engine.finalize_object()
        proto = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64)
        self.fns = {k: proto(self.engine.get_function_address(v)) for k, v in self.fnames.items()}

    def run(self, name: str, rmv, recs: list[tuple]) -> list[tuple[int, int, int]]:
        """recs: (regs, rm, frm[, fflags]) -> [(ok, result, flags to OR into fflags)]."""
        inp = array("Q", bytes(8 * IN_W * len(recs)))
        for n, (regs, rm, frm, *ff) in enumerate(recs):
            for j, v in enumerate(regs):
                inp[n * IN_W + j] = v & M64
            inp[n * IN_W + 3] = rm
            inp[n * IN_W + 4] = frm
            inp[n * IN_W + 5] = ff[0] if ff else 0
        out = array("Q", bytes(8 * OUT_W * max(1, len(recs))))
        self.fns[(name, rmv)](inp.buffer_info()[0], out.buffer_info()[0], len(recs))
        return [tuple(out[n * OUT_W : n * OUT_W + OUT_W]) for n in range(len(recs))]


@pytest.fixture(scope="module")
def jit() -> Jit:
    return Jit()


def reference(
    name: str, regs: list[int], rm: int | None, frm: int, fflags: int = 0
) -> tuple[int, int] | None:
    """The Python helper's (result, fflags after it) from accrued fflags, or None when it traps."""
    h = HELPERS[name]
    if not h.state:
        return h.fn(*regs), fflags
    state = [0] * NSLOTS
    state[FRM_SLOT] = frm
    state[FFLAGS_SLOT] = fflags
    args = list(regs) + ([rm, WORD] if rm is not None else [])
    try:
        r = h.fn(state, *args)
    except GuestTrap:
        return None
    return r, state[FFLAGS_SLOT]


# ---- inputs --------------------------------------------------------------------------------------
D_SPECIAL = [
    0,
    1 << 63,
    d2b(math.inf),
    d2b(-math.inf),
    0x7FF8000000000000,  # qNaN
    0xFFF8000000000000,
    0x7FF0000000000001,  # sNaN
    0x7FF4000000000000,
    0x7FFC00000000ABCD,
    1,  # min subnormal
    0x000FFFFFFFFFFFFF,  # max subnormal
    0x8000000000000003,
    0x0010000000000000,  # DBL_MIN
    0x0010000000000001,
    0x8010000000000000,
    0x001FFFFFFFFFFFFF,
    0x7FEFFFFFFFFFFFFF,  # DBL_MAX
    0xFFEFFFFFFFFFFFFF,
    0x7FE0000000000000,
    0x7FD0000000000000,
    0x7FCFFFFFFFFFFFFF,
    d2b(1.0),
    d2b(-1.0),
    d2b(0.5),
    d2b(3.0),
    d2b(2.0**-968),
    d2b(2.0**-967),
    d2b(2.0**-969),
    d2b(2.0**-900),
    d2b(2.0**-537),
    d2b(2.0**512),
    d2b(2.0**-511),
    d2b(1.0 + 2.0**-52),
    d2b(1.0 - 2.0**-53),
    d2b(2.0**-126 - 2.0**-151),
    d2b(2.0**-126 - 2.0**-150),
    d2b(2.0**-126),
    d2b(2.0**-149),
    d2b(2.0**-150),
    d2b(1.5 * 2.0**-150),
    d2b(2.0**128 - 2.0**103),
    d2b(2.0**128 - 2.0**104),
    d2b(2.0**128),
    d2b(3.4028234663852886e38),
]

S_SPECIAL = [
    0,
    0x80000000,
    0x7F800000,
    0xFF800000,
    0x7FC00000,
    0xFFC00000,
    0x7F800001,
    0x7FA00000,
    0x7FC0ABCD,
    1,
    0x007FFFFF,
    0x80000003,
    0x00800000,
    0x00800001,
    0x80800000,
    0x00FFFFFF,
    0x7F7FFFFF,
    0xFF7FFFFF,
    0x7F000000,
    0x7E800000,
    f2b(1.0),
    f2b(-1.0),
    f2b(0.5),
    f2b(3.0),
    f2b(2.0**-63),
    f2b(2.0**64),
    f2b(1.0 + 2.0**-23),
    f2b(1.0 - 2.0**-24),
    f2b(2.0**-75),
    f2b(2.0**-76),
    f2b(2.0**-126 - 2.0**-149),
]


def rand_nice_d(rng: random.Random) -> float:
    k = rng.randrange(7)
    if k == 0:
        return rng.uniform(-100.0, 100.0)
    if k == 1:
        return rng.gauss(0.0, 1e3)
    if k == 2:
        return float(rng.randint(-(10**6), 10**6))
    if k == 3:
        return rng.choice((1.0, -1.0)) * 2.0 ** rng.randint(-60, 60)
    if k == 4:
        return rng.randint(-(2**20), 2**20) * 2.0 ** rng.randint(-40, 40)
    if k == 5:
        return rng.uniform(0, 1) * 10.0 ** rng.randint(-30, 30)
    return rng.random()


def rand_d(rng: random.Random) -> int:
    """A double bit pattern from a mix of distributions."""
    k = rng.randrange(10)
    if k < 3:
        return d2b(rand_nice_d(rng))
    if k == 3:
        return rng.getrandbits(64)
    if k == 4:
        return rng.choice(D_SPECIAL)
    if k == 5:  # tiny
        return (rng.getrandbits(1) << 63) | (rng.randrange(0, 80) << 52) | rng.getrandbits(52)
    if k == 6:  # huge
        return (rng.getrandbits(1) << 63) | (rng.randrange(0x7B0, 0x7FF) << 52) | rng.getrandbits(52)
    if k == 7:  # any finite exponent
        return (rng.getrandbits(1) << 63) | (rng.randrange(0, 0x7FF) << 52) | rng.getrandbits(52)
    if k == 8:  # short significands (exact results likely)
        return (rng.getrandbits(1) << 63) | (rng.randrange(1, 0x7FF) << 52) | (rng.getrandbits(8) << 44)
    return (rng.getrandbits(1) << 63) | (rng.randrange(0x380, 0x480) << 52) | rng.getrandbits(52)


def rand_nice_s(rng: random.Random) -> int:
    return box(f2b(rand_nice_d(rng)))


def rand_s(rng: random.Random) -> int:
    k = rng.randrange(10)
    if k < 3:
        return rand_nice_s(rng)
    if k == 3:
        return box(rng.getrandbits(32))
    if k == 4:
        return box(rng.choice(S_SPECIAL))
    if k == 5:  # tiny
        return box((rng.getrandbits(1) << 31) | (rng.randrange(0, 30) << 23) | rng.getrandbits(23))
    if k == 6:  # huge
        return box((rng.getrandbits(1) << 31) | (rng.randrange(0xE0, 0xFF) << 23) | rng.getrandbits(23))
    if k == 7:  # any finite exponent
        return box((rng.getrandbits(1) << 31) | (rng.randrange(0, 0xFF) << 23) | rng.getrandbits(23))
    if k == 8:  # not NaN-boxed
        return rng.choice((f2b(1.0), d2b(1.0), rng.getrandbits(64) & ~(1 << 63), 0xFFFF_FFFE_3F80_0000))
    return box((rng.getrandbits(1) << 31) | (rng.randrange(1, 0xFF) << 23) | (rng.getrandbits(6) << 17))


INT_SPECIAL = [
    0,
    1,
    M64,
    2**31 - 1,
    2**31,
    2**32 - 1,
    2**32,
    2**63 - 1,
    2**63,
    2**24 + 1,
    2**25 + 2,
    2**24 - 1,
    2**53 + 1,
    2**54 + 2,
    2**53 - 1,
    (2**64 - 1) ^ (2**31 - 1),  # -2**31 as 64 bits
    -(2**24 + 1) & M64,
    -(2**53 + 1) & M64,
    0xFFFF_FFFF_8000_0001,
    0x0000_0001_FFFF_FFFF,
]


def rand_int(rng: random.Random) -> int:
    k = rng.randrange(6)
    if k == 0:
        return rng.getrandbits(64)
    if k == 1:
        return rng.getrandbits(32)
    if k == 2:
        return rng.randint(-1000, 1000) & M64
    if k == 3:
        return ((1 << rng.randrange(64)) + rng.randint(-3, 3)) & M64
    if k == 4:
        return rng.choice(INT_SPECIAL)
    span = rng.randrange(20, 60)  # significant-bit spans around 24 and 53
    v = (1 << (span - 1)) | 1 | rng.getrandbits(span - 1)
    return (v << rng.randrange(0, 64 - span + 1)) & M64 if rng.random() < 0.5 else -v & M64


def to_int_special_d() -> list[int]:
    vals = []
    for base in (2.0**31, 2.0**32, 2.0**63, 2.0**64, 0.0, 1.0):
        for off in (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, -0.25, -0.5, -0.75, -1.0, -1.5, -1024.0, -2048.0, 2048.0):
            vals += [d2b(base + off), d2b(-base + off), d2b(-(base + off))]
    vals += [d2b(v) for v in (0.5, 1.5, 2.5, -0.5, -1.5, -2.5, -0.4, -0.6, 4294967295.5, 4294967294.5)]
    return vals


def to_int_special_s() -> list[int]:
    return [box(f2b(struct.unpack("<d", struct.pack("<Q", v))[0])) for v in to_int_special_d()[::2]]


def kind(name: str) -> tuple[str, str]:
    """(operation class, format) of a helper name."""
    op, _, rest = name.partition(".")
    if op != "fcvt":
        return op, rest
    dst, src = rest.split(".")
    if dst in ("s", "d") and src in ("s", "d"):
        return "f2f", src
    if dst in ("s", "d"):
        return "i2f", dst
    return "f2i", src


def gen_inputs(name: str, rng: random.Random, n: int, nice: bool = False) -> list[list[int]]:
    op, fmt = kind(name)
    rnd = rand_s if fmt == "s" else rand_d
    rnice = rand_nice_s if fmt == "s" else (lambda r: d2b(rand_nice_d(r)))
    special = [box(v) for v in S_SPECIAL] if fmt == "s" else D_SPECIAL
    k = nregs(name)
    if op == "i2f":
        return [[rand_int(rng)] for _ in range(n)] + [[v] for v in INT_SPECIAL]
    if nice:
        return [[rnice(rng) for _ in range(k)] for _ in range(n)]
    out: list[list[int]] = []
    for _ in range(n):
        out.append([rnd(rng) for _ in range(k)])
    # all pairs of specials (and specials against random values for fma)
    if k == 1:
        out += [[v] for v in special]
        if op == "f2i":
            out += [[v] for v in (to_int_special_s() if fmt == "s" else to_int_special_d())]
    elif k == 2:
        out += [[x, y] for x in special for y in special]
    else:
        out += [[x, y, rnd(rng)] for x in special for y in special]
        out += [[rnd(rng), x, y] for x in special for y in special[::3]]
    # structured cases
    for _ in range(n // 2):
        if fmt == "d":
            x = rand_nice_d(rng)
            y = rand_nice_d(rng)
            if op in ("fadd", "fsub"):  # cancellation
                y2 = (-x if op == "fadd" else x) * (1 + rng.choice((0, 2.0**-52, -(2.0**-52), 2.0**-30)))
                out.append([d2b(x), d2b(y2)])
            elif op == "fdiv":  # exact quotients
                out.append([d2b(x * float(rng.randint(1, 64))), d2b(x)])
            elif op in ("fmadd", "fmsub", "fnmsub", "fnmadd"):
                p = x * y
                c = rng.choice(
                    (
                        p,
                        -p,
                        p * 2.0 ** rng.randint(-130, 70),
                        rng.randint(-99, 99) * 2.0 ** rng.randint(-70, 70),
                    )
                )
                a, bb = (
                    (float(rng.randint(-(2**12), 2**12)), float(rng.randint(-(2**12), 2**12)))
                    if rng.random() < 0.3
                    else (x, y)
                )
                out.append([d2b(a), d2b(bb), d2b(c)])
        else:
            x = rng.uniform(-10, 10) * 2.0 ** rng.randint(-130, 128)
            y = rng.uniform(-10, 10) * 2.0 ** rng.randint(-130, 128)
            xs = struct.unpack("<f", struct.pack("<f", x if abs(x) < 3e38 else 1.0))[0]
            ys = struct.unpack("<f", struct.pack("<f", y if abs(y) < 3e38 else 1.0))[0]
            if op in ("fmadd", "fmsub", "fnmsub", "fnmadd"):
                c = -xs * ys * rng.choice((1.0, 1.0 + 2.0**-30, 2.0**-40, 2.0**20))
                c = c if abs(c) < 3e38 else 1.0
                out.append([box(f2b(xs)), box(f2b(ys)), box(f2b(c))])
            elif k == 2:
                out.append([box(f2b(xs)), box(f2b(ys))])
    out += near_thresholds(op, fmt, k, rng, n // 4)
    out += near_min_normal(op, fmt, rng, n // 4)
    out += crafted(op, fmt)
    return out


def crafted(op: str, fmt: str) -> list[list[int]]:
    """Inputs aimed at the limits of the exactness tests."""
    out: list[list[int]] = []
    fma = op in ("fmadd", "fmsub", "fnmsub", "fnmadd")
    if fmt == "d" and (op in ("fmul", "fdiv") or fma):
        # Products/quotients whose rounding error is a single unit of 2**(qx+qy): for small
        # exponents it lies below 2**-1074, where an fma residual would flush to zero.
        one_ulp = 1.0 + 2.0**-52
        for e in range(-1010, -940):
            x, y = one_ulp * 2.0**-500, one_ulp * 2.0 ** (e + 500)
            for sx in (1.0, -1.0):
                if op == "fdiv":
                    out.append([d2b(sx * x * y), d2b(y)])  # x*y rounded, divided by y
                    out.append([d2b(sx * (1.0 + 2.0**-51) * 2.0**e), d2b(one_ulp)])
                elif op == "fmul":
                    out.append([d2b(sx * x), d2b(y)])
                else:
                    for c in (0.0, 2.0 ** (e - 60), -(2.0 ** (e + 1))):
                        out.append([d2b(sx * x), d2b(y), d2b(c)])
    if fmt == "s" and fma:
        # w + x*y = T32 -+ 3*2**-195 with w = 2**-126 - 2**-149: the double sum rounds to
        # exactly the tininess threshold T32 = 2**-126 - 2**-151, with a nonzero error term.
        x = 1.5 * (1 + 2.0**-22) * 2.0**-75
        y = (1 - 2.0**-22) * 2.0**-75
        for w in (2.0**-126 - 2.0**-149, 2.0**-126):
            for sx in (1.0, -1.0):
                for sw in (1.0, -1.0):
                    out.append([box(f2b(sx * x)), box(f2b(y)), box(f2b(sw * w))])
    return out


def _f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _ulps(x: float, k: int, single: bool) -> float:
    if single:
        return struct.unpack("<f", struct.pack("<I", (f2b(x) + k) & 0xFFFFFFFF))[0]
    return struct.unpack("<d", struct.pack("<Q", (d2b(x) + k) & M64))[0]


def near_thresholds(op: str, fmt: str, k: int, rng: random.Random, n: int) -> list[list[int]]:
    """Results next to the underflow/tininess and overflow thresholds."""
    single = fmt == "s"
    enc = (lambda v: box(f2b(v))) if single else d2b
    lo = 2.0**-126 if single else 2.0**-1022
    half_hi = 2.0**127 if single else 2.0**1023  # results near 2*half_hi overflow
    out: list[list[int]] = []
    for _ in range(n):
        target = rng.choice(
            (lo, lo, lo * 2, half_hi, half_hi * 2.0 ** rng.uniform(0.9, 1.0), lo * 2.0 ** -rng.randint(1, 30))
        )
        sign = rng.choice((1.0, -1.0))
        x = rng.uniform(1.0, 2.0)
        x = _f32(x) if single else x
        y = target / x
        y = _ulps(_f32(y) if single else y, rng.randint(-2, 2), single)
        if op == "fmul":
            out.append([enc(sign * x), enc(y)])
        elif op == "fdiv":
            out.append([enc(sign * y), enc(1.0 / x if not single else _f32(1.0 / x))])
        elif op in ("fadd", "fsub"):
            out.append([enc(sign * y), enc(rng.choice((-1.0, 1.0)) * _ulps(y, rng.randint(-3, 3), single))])
        elif op in ("fmadd", "fmsub", "fnmsub", "fnmadd"):
            c = rng.choice((0.0, y * 2.0**-30, -y * 2.0**-25, _ulps(lo, rng.randint(-3, 3), single)))
            out.append([enc(sign * x), enc(y), enc(_f32(c) if single else c)])
        elif op == "f2f" and fmt == "d":  # fcvt.s.d: doubles around binary32 thresholds
            t = rng.choice((2.0**-126 - 2.0**-151, 2.0**-126, 2.0**-149, 2.0**-150, 2.0**128 - 2.0**103))
            out.append([d2b(sign * _ulps(t, rng.randint(-3, 3), False))])
    return out


def near_min_normal(op: str, fmt: str, rng: random.Random, n: int) -> list[list[int]]:
    """mul/div/fma results within a few units of the smallest normal MIN, from both sides.

    Many have an exact value v in [MIN - u/2, MIN - u/4) (u: the subnormal quantum), which
    rounds to MIN yet is tiny after rounding: UF|NX although the result is normal.  (The NX
    shortcut must not claim results equal to MIN.)"""
    single = fmt == "s"
    if op not in ("fmul", "fdiv", "fmadd", "fmsub", "fnmsub", "fnmadd"):
        return []
    rnd = _f32 if single else float
    enc = (lambda v: box(f2b(v))) if single else d2b
    lo, half, u = (2.0**-126, 2.0**-63, 2.0**-149) if single else (2.0**-1022, 2.0**-511, 2.0**-1074)
    out: list[list[int]] = []
    for _ in range(n):
        sx, sy = rng.choice((1.0, -1.0)), rng.choice((1.0, -1.0))
        m = rnd(rng.uniform(1.0, 2.0))
        x = rnd(m * half)
        if op == "fdiv":
            # x/y - MIN = j*ulp(x)/y is never in (-u/2, 0) when y's significand is not 1 (MIN*y
            # is representable, so x = MIN*y + j*ulp(x)); only y = 2**k reaches MIN - u/2, the
            # tie that rounds to MIN and is tiny.  Both kinds, with neighbours.
            if rng.random() < 0.5:
                y = 2.0 ** rng.randint(1, 60)  # one ulp below MIN*y is (MIN - u/2)*y: the tie
                x = _ulps(lo * y, rng.choice((-1, -1, -2, 0, 1)), single)
            else:
                y = m
                x = _ulps(rnd(lo * y), rng.choice((0, -1, 1)), single)
            out.append([enc(sx * x), enc(sy * y)])
            continue
        y = _ulps(rnd(lo / x), rng.randint(-1, 1), single)
        if op == "fmul":
            out.append([enc(sx * x), enc(sy * y)])
        else:  # a small addend (a few quanta, or none) moves v around MIN
            w = rng.choice((0.0, u, -u, 2 * u, -3 * u, rng.randint(-64, 64) * u))
            out.append([enc(sx * x), enc(sy * y), enc(w)])
    return out


def rand_fflags(rng: random.Random) -> int:
    """Accrued flags before the operation: NX set in about half the records."""
    k = rng.randrange(8)
    if k < 3:
        return 0
    if k < 6:
        return NX
    return rng.getrandbits(5)


def check(
    jit: Jit, name: str, rmv, inputs: list[list[int]], rng: random.Random, fflags=rand_fflags
) -> tuple[int, int]:
    """Run one variant; return (hits, total) of the records whose effective rm is RNE.

    fflags(rng) gives each record's accrued flags; the native flags ORed into them must equal
    the helper's accrued flags after the operation."""
    recs = []
    for regs in inputs:
        rm = rmv if rmv != "dyn" else rng.choice((0, 0, 7, 7, 1, 2, 3, 4, 5, 6))
        frm = rng.choice((0, 0, 0, 1, 2, 3, 4, 5, 6, 7))
        recs.append((regs, rm if rm is not None else 0, frm, fflags(rng)))
    outs = jit.run(name, rmv, recs)
    hits = total = 0
    bad = []
    for (regs, rm, frm, ff), (ok, res, fl) in zip(recs, outs, strict=True):
        eff = (frm if rm == 7 else rm) if rmv is not None else 0
        if eff == 0:
            total += 1
            hits += ok
        if not ok:
            continue
        if eff != 0:
            bad.append((regs, rm, frm, "ok claimed for a non-RNE rounding mode"))
            continue
        ref = reference(name, regs, rm if rmv is not None else None, frm, ff)
        if ref != (res, ff | fl):
            bad.append(
                ([hex(v) for v in regs], rm, frm, f"fflags {ff:#x}", f"native {res:#x}/{fl:#x}", f"ref {ref}")
            )
    assert not bad, f"{name} rm={rmv}: {len(bad)} mismatches, e.g. {bad[:5]}"
    return hits, total


@pytest.mark.parametrize("name", NAMES)
def test_native_matches_helper(jit: Jit, name: str) -> None:
    rng = random.Random(f"fpnative-{name}")
    for rmv in RM_VARIANTS if takes_rm(name) else (None,):
        n = 1500 if rmv in (0, None) else 150
        check(jit, name, rmv, gen_inputs(name, rng, n), rng)


HIT_MIN = {"fadd": 0.99, "fsub": 0.99, "fmul": 0.99, "fdiv": 0.99, "fsqrt": 0.99, "fma": 0.95}


@pytest.mark.parametrize(
    "name",
    [
        n
        for n in NAMES
        if n.split(".")[0] in ("fadd", "fsub", "fmul", "fdiv", "fsqrt", "fmadd", "fmsub", "fnmsub", "fnmadd")
    ],
)
def test_fast_path_hits_nice_inputs(jit: Jit, name: str) -> None:
    rng = random.Random(f"nice-{name}")
    inputs = gen_inputs(name, rng, 2000, nice=True)
    if name.startswith("fsqrt"):
        inputs = [[v & ~(1 << 31) if name.endswith(".s") else v & ~(1 << 63)] for (v,) in inputs]
    hits, total = check(jit, name, 0, inputs, rng)
    op = name.split(".")[0]
    need = HIT_MIN.get(op, HIT_MIN["fma"])
    assert hits >= need * total, f"{name}: fast path hit {hits}/{total}"


ARITH_NAMES = [n for n in NAMES if n.split(".")[0] in ARITH]


@pytest.mark.parametrize("name", ARITH_NAMES)
def test_nx_shortcut(jit: Jit, name: str) -> None:
    """With NX already accrued, inexact nice operations take the shortcut (which ORs no flags:
    the exact path would OR NX), and every claimed result matches the helper, from nice and
    nasty inputs, with NX set and clear; singles also with operands that are not NaN-boxed."""
    rng = random.Random(f"nx-{name}")
    nice = gen_inputs(name, rng, 2000, nice=True)
    if name.startswith("fsqrt"):
        nice = [[v & ~(1 << 31) if name.endswith(".s") else v & ~(1 << 63)] for (v,) in nice]
    for ff in (NX, 0):
        outs = jit.run(name, 0, [(regs, 0, 0, ff) for regs in nice])
        inexact = shortcut = 0
        for regs, (ok, res, fl) in zip(nice, outs, strict=True):
            ref = reference(name, regs, 0, 0, 0)
            assert ref is not None
            if ref[1] == NX:
                inexact += 1
                shortcut += ok and fl == 0
            if ok:
                got, want = (res, ff | fl), (ref[0], ff | ref[1])
                assert got == want, (name, [hex(v) for v in regs], ff, hex(res), fl, ref)
        assert inexact > 0.3 * len(nice), (name, inexact)
        if ff:
            assert shortcut >= 0.98 * inexact, f"{name}: shortcut taken {shortcut}/{inexact}"
        else:
            assert shortcut == 0, name
    nasty = gen_inputs(name, rng, 2000)
    if name.endswith(".s"):  # an operand that is not NaN-boxed, in every position
        for regs in nice[:300]:
            j = rng.randrange(len(regs))
            regs = list(regs)
            regs[j] = rng.choice((regs[j] & 0xFFFF_FFFF, regs[j] ^ (1 << rng.randrange(32, 64))))
            nasty.append(regs)
    nx_set = (lambda r: NX, lambda r: NX | r.getrandbits(5))
    nx_clear = (lambda r: 0, lambda r: r.getrandbits(5) & ~NX)
    for fflags in nx_set + nx_clear:
        check(jit, name, 0, nasty, rng, fflags)
    for rmv in (7, "dyn", 1, 4):
        check(jit, name, rmv, nasty[::7], rng, lambda r: NX)


@pytest.mark.parametrize("name", [n for n in ARITH_NAMES if n.split(".")[0] not in ("fadd", "fsub", "fsqrt")])
def test_nx_shortcut_min_normal(jit: Jit, name: str) -> None:
    """Results that round to the smallest normal MIN from a tiny exact value raise UF even with
    a normal result: the shortcut must leave them (and everything near MIN) to the exact path."""
    rng = random.Random(f"min-{name}")
    op, fmt = kind(name)
    inputs = near_min_normal(op, fmt, rng, 3000)
    check(jit, name, 0, inputs, rng, lambda r: NX)
    mn = 0x0080_0000 if fmt == "s" else 0x0010_0000_0000_0000
    tiny_min = 0
    for regs in inputs:
        res, fl = reference(name, regs, 0, 0, NX)
        mag = (res & 0x7FFF_FFFF) if fmt == "s" else res & ~(1 << 63)
        tiny_min += mag == mn and bool(fl & UF)
    assert tiny_min >= 50, (name, tiny_min)  # the edge case is really exercised


FOLD_FFLAGS = (0, NX)


def test_constant_operands_fold_exactly() -> None:
    """With constant operands the optimizer folds the emitted code (APFloat); it must agree,
    from accrued fflags with NX clear and set (the shortcut's branch folds too)."""
    mod = ir.Module(name="fpnative_fold")
    mod.triple = llvm.get_default_triple()
    rng = random.Random("fold")
    cases: dict[str, list[list[int]]] = {}
    for n, name in enumerate(NAMES):
        inputs = gen_inputs(name, rng, 40)
        cases[name] = rng.sample(inputs, 16)
        fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [I64.as_pointer()]), name=f"k{n}")
        b = ir.IRBuilder(fn.append_basic_block())
        for i, (regs, ff) in enumerate((r, ff) for r in cases[name] for ff in FOLD_FFLAGS):
            args: list[ir.Value] = [ir.Constant(I64, v) for v in regs]
            consts: list[int | None] = list(regs)
            if takes_rm(name):
                args += [ir.Constant(I8, 0), ir.Constant(I32, WORD)]
                consts += [0, WORD]
            slot = lambda k, ff=ff: ir.Constant(I64, ff if k == FFLAGS_SLOT else 0)  # noqa: E731
            ok, res, slots = fpnative.emit(name, b, args, consts, slot)
            flags = slots.get(FFLAGS_SLOT, ir.Constant(I64, 0))
            for k, v in enumerate((b.zext(ok, I64), res, flags)):
                b.store(v, b.gep(fn.args[0], [ir.Constant(I64, 3 * i + k)]))
        b.ret_void()
    llmod = llvm.parse_assembly(str(mod))
    tm = host_tm()
    pb = llvm.create_pass_builder(tm, llvm.PipelineTuningOptions(speed_level=2))
    pb.getModulePassManager().run(llmod, pb)
    engine = llvm.create_mcjit_compiler(llmod, tm)
    engine.finalize_object()
    proto = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
    hits = total = 0
    for n, name in enumerate(NAMES):
        recs = [(r, ff) for r in cases[name] for ff in FOLD_FFLAGS]
        out = array("Q", bytes(8 * 3 * len(recs)))
        proto(engine.get_function_address(f"k{n}"))(out.buffer_info()[0])
        for i, (regs, ff) in enumerate(recs):
            ok, res, fl = out[3 * i : 3 * i + 3]
            total += 1
            if ok:
                hits += 1
                ref = reference(name, regs, 0 if takes_rm(name) else None, 0, ff)
                assert ref == (res, ff | fl), (name, [hex(v) for v in regs], ff, hex(res), fl, ref)
    assert hits > 0.8 * total


def test_every_other_helper_gives_none() -> None:
    b = ir.IRBuilder(ir.Function(ir.Module(), ir.FunctionType(ir.VoidType(), []), "g").append_basic_block())
    for name, h in HELPERS.items():
        args = [ir.Constant(ir.IntType(w), 0) for w in h.arg_widths]
        consts = [0] * len(args)
        r = fpnative.emit(name, b, args, consts, lambda k: ir.Constant(I64, 0))
        assert (r is None) == (name not in fpnative.NATIVE), name
    assert fpnative.emit("no.such.helper", b, [], [], lambda k: ir.Constant(I64, 0)) is None


def test_intrinsics_declared_once() -> None:
    mod = ir.Module()
    b = ir.IRBuilder(
        ir.Function(mod, ir.FunctionType(ir.VoidType(), [I64, I64, I64]), "g").append_basic_block()
    )
    x, y, z = b.function.args
    for _ in range(2):
        for name in ("fmadd.d", "fmadd.s", "fsqrt.d", "fsqrt.s", "fcvt.w.d", "fcvt.s.l"):
            args = [x, y, z][: nregs(name)] + [ir.Constant(I8, 7), ir.Constant(I32, WORD)]
            fpnative.emit(name, b, args, [None] * nregs(name) + [7, WORD], lambda k: y)
    b.ret_void()
    llvm.parse_assembly(str(mod)).verify()  # a duplicate declaration would not parse


def test_the_light_tables_agree_with_the_fast_paths() -> None:
    """`fptables` (read by translation without building any fast path) says what `fpnative`'s
    own table holds: the same helper names, the same ones taking a rounding mode, shortcuts
    only for helpers that have a fast path; and translating cached or first-tier code never
    imports the IR builder's module."""
    import subprocess
    import sys

    from polyvm.isa.riscv import fptables

    assert {n: spec[1] for n, spec in fpnative._TABLE.items()} == fptables.TAKES_RM
    assert set(fptables.X64_NX_SHORTCUT) <= fptables.NATIVE
    assert set(fptables.IR_NX_SHORTCUT) <= fptables.NATIVE
    assert fptables.native_consts("fadd.d", (3, WORD)) == (3, None)
    assert fptables.native_consts("feq.d", (WORD,)) == (WORD,)
    probe = (
        "import sys\nfrom polyvm.isa import get_arch\na = get_arch('riscv64')\n"
        "a.native_names, a.x64_shortcuts, a.ir_shortcuts, a.native_consts('fmul.s', (1, 2))\n"
        "print('llvmlite.ir' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
