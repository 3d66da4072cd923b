"""The first tier's own x86-64 code generator (`polyvm.engine.x64`).

Its instruction encodings are checked against capstone's disassembler (an independent x86
decoder) with the expected text written from the Intel manual's forms; what its code computes
is checked against Python's integers (and, through `test_engine_ir`'s "jit" engine, against
the IR's documented semantics for every operation). The whole guest suite runs on it wherever
the JIT runs on an x86-64 Linux host.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

pytest.importorskip("llvmlite")

import fp_cases as F  # noqa: E402
from polyvm.engine import x64  # noqa: E402
from polyvm.engine.jit import Compiler, JitEngine  # noqa: E402
from polyvm.ir import Builder  # noqa: E402
from polyvm.isa import get_arch  # noqa: E402
from polyvm.isa.riscv.asm import li, program  # noqa: E402
from polyvm.memory import PROT_ALL, PROT_READ, PROT_WRITE, AddressSpace  # noqa: E402
from test_engine_ir import HELPERS, OneBlock, ToyArch, edge_values, new_engine, run_op  # noqa: E402

here = pytest.mark.skipif(not x64.available(), reason="emitted code runs on x86-64 Linux hosts")


def _v(i: int, w: int) -> x64.Val:
    return x64.Val(i, w)


def _asm(emit, direct: bool = False) -> bytes:
    r = x64.X64Region.__new__(x64.X64Region)
    r.buf, r.fixups, r.labels = bytearray(), [], {}
    r.loc = {1: x64.R9, 2: x64.R10}  # (temporaries 1 and 2 in r9 and r10)
    r.stubs, r.slows, r._n, r.insn_pc, r.idx = [], [], 0, 0x1000, 0
    r.direct = direct
    emit(r)
    return bytes(r.buf)


def _text(code: bytes) -> str:
    capstone = pytest.importorskip("capstone")
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    insns = list(md.disasm(code, 0))
    assert sum(i.size for i in insns) == len(code), code.hex()  # (all of it decodes)
    # (jumps: the mnemonic only, their targets are resolved later)
    return "; ".join(i.mnemonic if i.mnemonic.startswith("j") else f"{i.mnemonic} {i.op_str}" for i in insns)


ENCODINGS = [
    (lambda a: a.load(x64.R14, x64.RBP, 8), "mov r14, qword ptr [rbp + 8]"),
    (lambda a: a.load(x64.RAX, x64.RBP, 0), "mov rax, qword ptr [rbp]"),
    (lambda a: a.store(x64.RSP, 0x48, x64.RAX), "mov qword ptr [rsp + 0x48], rax"),
    (lambda a: a.load(x64.RCX, x64.RSP, 0x1000), "mov rcx, qword ptr [rsp + 0x1000]"),
    (lambda a: a.store(x64.RBP, -8, x64.R15), "mov qword ptr [rbp - 8], r15"),
    (lambda a: a.mov(x64.R15, x64.R14), "mov r15, r14"),
    (lambda a: a.mov(x64.RDI, x64.RBX), "mov rdi, rbx"),
    (lambda a: a.imm(x64.RAX, 5), "mov eax, 5"),
    (lambda a: a.imm(x64.RDX, (1 << 64) - 1), "mov rdx, 0xffffffffffffffff"),
    (lambda a: a.imm(x64.RCX, 1 << 40), "movabs rcx, 0x10000000000"),
    (lambda a: a.imm(x64.R14, 7), "mov r14d, 7"),
    (lambda a: a.alu(0x29, x64.RAX, x64.R15), "sub rax, r15"),
    (lambda a: a.alu(0x39, x64.RAX, x64.RCX), "cmp rax, rcx"),
    (lambda a: a.alu(0x85, x64.RDX, x64.RDX), "test rdx, rdx"),
    (lambda a: a.alu_imm(0, x64.R14, 3), "add r14, 3"),
    (lambda a: a.alu_imm(7, x64.RCX, 1000), "cmp rcx, 0x3e8"),
    (lambda a: a.alu_imm(7, x64.RAX, -1), "cmp rax, -1"),
    (lambda a: a.op2(0xAF, x64.RAX, x64.RCX), "imul rax, rcx"),
    (lambda a: a.op2(0x40 | x64.C_E, x64.RAX, x64.RCX), "cmove rax, rcx"),
    (lambda a: a.op2(0x40 | x64.C_A, x64.RCX, x64.RDX), "cmova rcx, rdx"),
    (lambda a: a.op2(0xBD, x64.RAX, x64.RAX), "bsr rax, rax"),
    (lambda a: a.call_mem(x64.RBX, 8 * 16), "call qword ptr [rbx + 0x80]"),
    (lambda a: a.call_mem(x64.RAX, 8 * 40), "call qword ptr [rax + 0x140]"),
    (lambda a: a.mask(x64.RAX, 8), "movzx eax, al"),
    (lambda a: a.mask(x64.RCX, 16), "movzx ecx, cx"),
    (lambda a: a.mask(x64.RAX, 32), "mov eax, eax"),
    (lambda a: a.mask(x64.RAX, 1), "and eax, 1"),
    (lambda a: a.sext(x64.RAX, 32), "movsxd rax, eax"),
    (lambda a: a.sext(x64.RCX, 8), "movsx rcx, cl"),
    (lambda a: a.sext(x64.RCX, 16), "movsx rcx, cx"),
    (lambda a: a.mask(x64.R8, 8), "movzx r8d, r8b"),
    (lambda a: a.mask(x64.R10, 16), "movzx r10d, r10w"),
    (lambda a: a.mask(x64.R9, 32), "mov r9d, r9d"),
    (lambda a: a.mask(x64.R11, 1), "and r11d, 1"),
    (lambda a: a.sext(x64.R12, 32), "movsxd r12, r12d"),
    (lambda a: a.sext(x64.R13, 8), "movsx r13, r13b"),
    (lambda a: a.sext(x64.R8, 16), "movsx r8, r8w"),
    (lambda a: a.alu(0x01, x64.R9, x64.R12), "add r9, r12"),
    (lambda a: a.op2(0xAF, x64.R13, x64.R8), "imul r13, r8"),
    (lambda a: a.alu_imm(7, x64.R11, 5), "cmp r11, 5"),
    (lambda a: a.unary(7, x64.RCX), "idiv rcx"),
    (lambda a: a._shift("shl", _v(1, 64), _v(2, 64), x64.Val(0, 64, 3)), "mov r9, r10; shl r9, 3"),
    (
        lambda a: a._shift("ashr", _v(1, 32), _v(2, 32), x64.Val(0, 32, 5)),
        "mov r9, r10; movsxd r9, r9d; sar r9, 5; mov r9d, r9d",
    ),
    (lambda a: a.unary(3, x64.RAX), "neg rax"),
    (lambda a: a.setcc(x64.C_L), "setl al; movzx eax, al"),
]


@pytest.mark.parametrize("emit,text", ENCODINGS, ids=[t for _, t in ENCODINGS])
def test_encodings_decode_as_intended(emit, text: str) -> None:
    assert _text(_asm(emit)) == text


TLB = (
    "mov rax, rsi; shr rax, 7; and eax, 0x1fffe0; add rax, qword ptr [rbx]; "  # the entry: 32 * (page & 0xffff)
    "{last}and rcx, 0xfffffffffffff000; cmp rcx, qword ptr [rax{tag}]; jne; "  # its tag: the last byte's page
    "mov rax, qword ptr [rax + 0x10]; "  # the addend
)


@pytest.mark.parametrize(
    "kind,w,text",
    [
        ("ld", 8, TLB.format(last="mov rcx, rsi; ", tag="") + "movzx eax, byte ptr [rsi + rax]"),
        ("ld", 32, TLB.format(last="lea rcx, [rsi + 3]; ", tag="") + "mov eax, dword ptr [rsi + rax]"),
        ("ld", 16, TLB.format(last="lea rcx, [rsi + 1]; ", tag="") + "movzx eax, word ptr [rsi + rax]"),
        ("st", 64, TLB.format(last="lea rcx, [rsi + 7]; ", tag=" + 8") + "mov qword ptr [rsi + rax], rdx"),
        ("st", 16, TLB.format(last="lea rcx, [rsi + 1]; ", tag=" + 8") + "mov word ptr [rsi + rax], dx"),
        ("st", 8, TLB.format(last="mov rcx, rsi; ", tag=" + 8") + "mov byte ptr [rsi + rax], dl"),
    ],
)
def test_the_inline_tlb_lookup(kind: str, w: int, text: str) -> None:
    """The software TLB's fast path as `lower._tlb_probe` defines it (index = page & 0xffff,
    4-word entries {read tag, write tag, addend, 0}, the tag compared with the page of the
    access's last byte), then the access at host address guest + addend; the miss path
    (the runtime's access function) comes after the block. With direct guest memory, the
    same check, then guest + ctx's base (a load that does not wait on the entry's)."""
    assert _text(_asm(lambda a: a._access(kind, w))) == text
    # (direct: the base is ctx's word CTX_GUEST_BASE, 24)
    direct = text.replace("mov rax, qword ptr [rax + 0x10]", "mov rax, qword ptr [rbx + 0xc0]")
    assert direct != text and _text(_asm(lambda a: a._access(kind, w), direct=True)) == direct
    assert x64.L.TLB_SIZE == 0x10000 and x64.L.TLB_ENTRY_WORDS == 4 and x64.L.PAGE_SHIFT == 12
    assert x64.L.CTX_GUEST_BASE == 0xC0 // 8


def test_the_first_tier_marks_a_block_run() -> None:
    """A first-tier block starts by setting its byte in the table of marks to 1, one store
    relative to ctx (rbx): the table follows ctx's 26 words, at 0xd0; a block's index is
    (pc >> 1) ^ (pc >> 17) in 16 bits (pc 0x10044: 0x8022, so 0xd0 + 0x8022 = 0x80f2; pc
    0x3_0004_0000: 0x1_8002_0000 ^ 0x1_8002, low 16 bits: 0x8002)."""
    assert _text(_asm(lambda a: a._mark(0x10044))) == "mov byte ptr [rbx + 0x80f2], 1"
    assert x64.L.SEEN_AT == 8 * 26 == 0xD0
    assert x64.L.seen_index(0x3_0004_0000) == 0x8002 and x64.L.SEEN_SIZE == 0x10000


@here
@pytest.mark.parametrize("signs", ["ss", "uu", "su"])
def test_high_multiply(signs: str) -> None:
    """What `mulh`, `mulhu` and `mulhsu` lift to (64 -> 128-bit casts, a 128-bit multiply,
    a shift by 64): emitted, not left to LLVM."""

    def build(b) -> None:
        x, y = b.get(2, 64), b.get(3, 64)
        a = b.sext(x, 128) if signs[0] == "s" else b.zext(x, 128)
        c = b.sext(y, 128) if signs[1] == "s" else b.zext(y, 128)
        p = b.mul(a, c)
        b.put(4, b.trunc(b.lshr(p, b.const(64, 128)), 64))
        b.put(5, b.trunc(p, 64))
        # (a constant operand: the builder folds its cast into a 128-bit constant)
        k = b.sext(b.const(K, 64), 128) if signs[1] == "s" else b.zext(b.const(K, 64), 128)
        b.put(6, b.trunc(b.lshr(b.mul(a, k), b.const(64, 128)), 64))

    K = 0xFFFF_FFFF_FFFF_FFFB
    fn = run_op("jit", build)
    m = (1 << 64) - 1

    def val(v: int, s: str) -> int:
        return v - (1 << 64) if s == "s" and v >> 63 else v

    for x in edge_values(64):
        for y in edge_values(64):
            r = [0, 0, x, y, 0, 0, 0, 0]
            fn(r)
            p = val(x, signs[0]) * val(y, signs[1])
            assert (r[4], r[5]) == ((p >> 64) & m, p & m), (signs, hex(x), hex(y))
            assert r[6] == ((val(x, signs[0]) * val(K, signs[1])) >> 64) & m, (signs, hex(x))


@here
@pytest.mark.parametrize("cast", ["sext", "zext"])
def test_casts_between_every_width(cast: str) -> None:
    widths = [1, 8, 16, 32, 64]
    pairs = [(f, t) for f in widths for t in widths if f <= t]

    def build(b) -> None:
        x = b.get(2, 64)
        for i, (f, t) in enumerate(pairs):
            v = b.trunc(x, f) if f < 64 else x
            v = getattr(b, cast)(v, t) if t > f else v
            b.put(3 + i, b.zext(v, 64) if t < 64 else v)

    fn = run_op("jit", build, nslots=3 + len(pairs))
    for x in edge_values(64):
        r = [0, 0, x] + [0] * len(pairs)
        fn(r)
        for i, (f, t) in enumerate(pairs):
            v = x & ((1 << f) - 1)
            if cast == "sext" and v >> (f - 1):
                v |= ((1 << t) - 1) ^ ((1 << f) - 1)
            assert r[3 + i] == v, (cast, f, t, hex(x))


def _sum_engine(baseline: str | None, n: int) -> tuple[JitEngine, list[int]]:
    arch = get_arch("riscv64")
    mem = AddressSpace()
    mem.map(0x10000, 0x1000, PROT_ALL)
    mem.map(0x20000, 0x1000, PROT_READ | PROT_WRITE)
    code = program(
        [
            *li("a0", 0),
            *li("a1", n),
            *li("a2", 0x20000),
            "sd a1, 0(a2)",
            "ld a3, 0(a2)",
            "add a0, a0, a3",
            "addi a1, a1, -1",
            "bne a1, zero, -16",
            "ebreak",
        ]
    )
    mem.write_raw(0x10000, code)
    eng = JitEngine(arch, mem, tier="jit", baseline=baseline)
    r = arch.new_state()
    r[0] = 0x10000
    return eng, r


@here
def test_the_first_tier_needs_no_llvm_here(monkeypatch) -> None:
    """Emitted code runs a loop with loads, stores and time-slice checks, and LLVM compiles
    nothing for it; the LLVM first tier ("llvm") still gives the same."""
    comp = Compiler.get()
    comp.runtime()  # (the dispatcher and access functions: LLVM, once per host)
    calls = []
    real = Compiler.compile

    def compile_(self, module, opt, **kw):
        calls.append(opt)
        return real(self, module, opt, **kw)

    monkeypatch.setattr(Compiler, "compile", compile_)
    arch = get_arch("riscv64")
    for baseline, n in (("x64", 100), ("llvm", 99)):  # (other code: nothing compiled is reused)
        calls.clear()
        eng, r = _sum_engine(baseline, n)
        for _ in range(10_000):  # (short time slices: the loop's check ends each)
            stop = eng.run(r, 3)
            if stop.reason != "budget":
                break
        assert stop.reason == "breakpoint", stop
        assert r[arch.regs["a0"][0]] == n * (n + 1) // 2
        assert eng.blocks_compiled > 0
        assert (calls == []) == (baseline == "x64"), (baseline, calls)


def test_bad_blobs_are_refused() -> None:
    loader = x64.Loader.__new__(x64.Loader)
    loader.__init__()
    for blob in (b"", b"ELF", x64.MAGIC, x64.MAGIC + b"\x05\0\0\0abc", x64.MAGIC + b"\x02\0\0\0\xff\xff"):
        with pytest.raises(ValueError):
            loader.load(blob, ["f"])
    import marshal
    from types import SimpleNamespace

    for table in ({"f": 0}, {"f": (0, ((3, 5),))}, {"f": (0, ((64, 5),))}, {"f": (99, ())}, {1: (0, ())}):
        tab = marshal.dumps(table)
        with pytest.raises(ValueError):  # (a word of a chained exit outside the code, misaligned...)
            loader.load(x64.MAGIC + len(tab).to_bytes(4, "little") + tab + b"\xc3" + bytes(15), ["f"])
    good = x64.link({"f": SimpleNamespace(code=b"\xc3", chains=[])})
    old = good[:6] + b"\x01" + good[7:]  # (another format version: refused, never given to LLVM)
    assert x64.is_blob(old)
    with pytest.raises(ValueError):
        loader.load(old, ["f"])
    with pytest.raises(RuntimeError):
        loader.load(good, ["g"])
    if x64.available():
        assert loader.load(good, ["f"])["f"] % 16 == 0


@here
def test_values_live_across_accesses_and_calls() -> None:
    """More values than registers, live across a load that misses the TLB (the slow path's
    call), a store and a helper call, which may clobber every caller-saved register."""
    n = 12

    def build(b) -> None:
        x = b.get(2, 64)
        ts = [b.add(x, b.const(i + 1, 64)) for i in range(n)]
        m = b.load(b.const(0x3000, 64), 32)  # (the engine's first access: a TLB miss)
        b.store(b.const(0x3008, 64), ts[0])
        h = b.call("accrue", ts[1])
        acc = b.zext(m, 64)
        for t in ts:
            acc = b.add(acc, t)
        b.put(3, acc)
        b.put(4, h)
        b.put(6, b.load(b.const(0x3008, 64), 64))

    mem = AddressSpace()
    mem.map(0x1000, 0x1000, PROT_ALL)
    mem.map(0x3000, 0x1000, PROT_READ | PROT_WRITE)
    mem.write_raw(0x3000, (7).to_bytes(4, "little"))
    eng = new_engine("jit", OneBlock(build), mem)
    m = (1 << 64) - 1
    for x in edge_values(64):
        r = [0x1000, 0, x, 0, 0, 0, 0, 0]
        assert eng.run(r, 8).reason == "halt"
        assert 0x1000 in eng.table
        assert r[3] == (7 + sum(x + i + 1 for i in range(n))) & m, hex(x)
        assert r[4] == ((x + 2) * 3) & m and r[5] == (x + 2) & 0xF0
        assert r[6] == (x + 1) & m


@here
def test_values_live_across_an_access_stay_in_scratch_registers() -> None:
    """Values live across memory accesses and no helper call are kept in r8-r11 (not the
    frame: before, only the two callee-saved registers were allowed across an access), and
    survive the access's slow path (a TLB miss: the runtime's function, which may clobber
    every caller-saved register, is called with them saved around it)."""

    def build(b) -> None:
        x = b.get(2, 64)
        ts = [b.add(x, b.const(i + 1, 64)) for i in range(4)]
        m = b.load(b.const(0x3000, 64), 32)  # (the engine's first access: a TLB miss)
        b.store(b.const(0x3008, 64), ts[3])
        acc = b.zext(m, 64)
        for t in ts:
            acc = b.add(acc, t)
        b.put(3, acc)

    locs = _first_tier(build).loc
    assert x64.STACK not in locs.values()
    assert sum(r in x64._SCRATCH for r in locs.values()) >= 4, locs
    mem = AddressSpace()
    mem.map(0x1000, 0x1000, PROT_ALL)
    mem.map(0x3000, 0x1000, PROT_READ | PROT_WRITE)
    mem.write_raw(0x3000, (7).to_bytes(4, "little"))
    m = (1 << 64) - 1
    for x in edge_values(64):
        eng = new_engine("jit", OneBlock(build), mem)  # (a new TLB: the load misses again)
        r = [0x1000, 0, x, 0, 0, 0, 0, 0]
        assert eng.run(r, 8).reason == "halt"
        assert 0x1000 in eng.table
        assert r[3] == (7 + sum(x + i + 1 for i in range(4))) & m, hex(x)
        assert int.from_bytes(mem.read_raw(0x3008, 8), "little") == (x + 4) & m


@here
@pytest.mark.parametrize("op", ["add", "xor", "mul"])
def test_a_commutative_operation_is_computed_in_its_second_operands_register(op: str) -> None:
    """`d = z op y` where d is given y's register (y read for the last time there): the
    operands swap, one instruction in that register, not `mov rax, z; op rax, y; mov y, rax`.
    The values as Python's integers say."""

    def build(b) -> None:
        x = b.get(2, 64)
        z = b.add(x, b.const(5, 64))
        y = b.get(3, 64)  # (given a register after z's: the one the allocator frees last)
        b.put(4, getattr(b, op)(z, y))

    text = _text(_first_tier(build).code)
    body = text[text.index("mov byte ptr [rbx") :]  # (from the block's mark on)
    mnemonic = "imul" if op == "mul" else op
    assert re.search(rf"mov (r\w+), qword ptr \[rbp \+ 0x18\]; {mnemonic} \1, r\w+; ", body), body
    assert "rax" not in body.split("; lea r14")[0], body
    mem = AddressSpace()
    mem.map(0x1000, 0x1000, PROT_ALL)
    eng = new_engine("jit", OneBlock(build), mem)
    m = (1 << 64) - 1
    py = {"add": lambda a, b: a + b, "xor": lambda a, b: a ^ b, "mul": lambda a, b: a * b}[op]
    for x in edge_values(64):
        for y in (0, 1, 0x8000000000000000, m, 0x123456789ABCDEF):
            r = [0x1000, 0, x, y, 0, 0, 0, 0]
            assert eng.run(r, 8).reason == "halt"
            assert r[4] == py((x + 5) & m, y) & m, (hex(x), hex(y))


class _ToyLoop(ToyArch):
    """A toy arch whose block at 0x1000 is `body`'s (which ends it); any other pc halts."""

    def body(self, b: Builder, pc: int) -> None:
        raise NotImplementedError

    def lift_block(self, fetch, pc, max_insns, stop_before=None):
        b = Builder(pc, HELPERS)
        if pc != 0x1000:
            b.exit("halt", pc, pc)
        else:
            b.begin(pc, 4)
            self.body(b, pc)
        return b.finish()

    def run_both(
        self, state: list[int], data: bytes = b""
    ) -> tuple[list[tuple[str, list[int]]], x64.X64Region]:
        """Run from `state` (a copy each) on the interpreter and on the JIT, time slices of 64
        blocks, to the stop (a page at 0x3000 holding `data`): (reason, final state) of each,
        the interpreter's first, and the first tier's region of the block at 0x1000."""
        out = []
        for kind in ("interp", "jit"):
            mem = AddressSpace()
            mem.map(0x1000, 0x1000, PROT_ALL)
            mem.map(0x3000, 0x1000, PROT_READ | PROT_WRITE)
            mem.write_raw(0x3000, data)
            eng = new_engine(kind, self, mem)
            r = list(state)
            stop = eng.run(r, 64)
            while stop.reason == "budget":
                stop = eng.run(r, 64)
            out.append((stop.reason, r))
        region = x64.X64Region([self.lift_block(None, 0x1000, 64)], self.helpers, eng.helper_index, counter=1)
        return out, region


class _LoopWithRmw(_ToyLoop):
    """A loop at 0x1000 of two instructions: the first reads slot 3 and computes slot 3 + 5
    (a read-modify-write of a register the region keeps in a host register); the second
    loads from the address in slot 4 (8 bytes further each time round: it faults past the
    page), then puts that sum into slot 3, adds what it loaded to slot 5, counts slot 2
    down and branches back while it is not zero. 0x2000 halts."""

    def body(self, b: Builder, pc: int) -> None:
        d = b.add(b.get(3, 64), b.const(5, 64))
        b.begin(pc + 4, 4)
        p = b.get(4, 64)
        v = b.load(p, 64)  # (a fault here must find slot 3 not yet written)
        b.put(3, d)
        b.put(4, b.add(p, b.const(8, 64)))
        b.put(5, b.add(b.get(5, 64), v))
        n = b.sub(b.get(2, 64), b.const(1, 64))
        b.put(2, n)
        b.branch(b.ne(n, b.const(0, 64)), 0x1000, 0x2000)


@here
@pytest.mark.parametrize("count", [3, 600])
def test_a_read_modify_write_in_a_kept_register_faults_with_the_old_value(count: int) -> None:
    """`_in_kept`: slot 3's sum is computed in the register slot 3 is kept in only where no
    memory access lies between it and its put. Here the load between them faults on the 513th
    time round (the page holds 512 words), and the state must hold slot 3 as before that
    iteration; with 3 times round the loop halts. Every slot equals the interpreter's; the
    slots by hand too."""
    data = b"".join((i * 3).to_bytes(8, "little") for i in range(512))
    states, region = _LoopWithRmw().run_both([0x1000, 0, count, 100, 0x3000, 0, 0, 0], data)
    (reason, r), (jit_reason, jit_r) = states
    rounds = min(count, 512)
    assert r[3] == 100 + 5 * rounds and r[5] == sum(i * 3 for i in range(rounds))
    assert reason == ("halt" if count <= 512 else "fault") and jit_reason == reason
    assert jit_r == r
    assert 3 in region.kept  # (slot 3 is kept in a host register: the case `_in_kept` looks at)


class _LoopPuttingTwice(_ToyLoop):
    """A loop at 0x1000: d = slot 3 + 5 into slot 3, a store, then 7 into slot 3, and d
    into slot 6 (read after the second put); slot 2 counts down. 0x2000 halts."""

    def body(self, b: Builder, pc: int) -> None:
        d = b.add(b.get(3, 64), b.const(5, 64))
        b.put(3, d)
        b.store(b.const(0x3000, 64), d)  # (so the first put is no dead store)
        b.put(3, b.const(7, 64))
        b.put(6, d)
        n = b.sub(b.get(2, 64), b.const(1, 64))
        b.put(2, n)
        b.branch(b.ne(n, b.const(0, 64)), 0x1000, 0x2000)


@here
def test_a_value_read_after_its_kept_register_is_written_again_is_not_kept_there() -> None:
    """`_in_kept`: d, put into kept slot 3 and then read after a second put of slot 3, must
    not live in slot 3's register (the second put overwrites it). Slots 3 and 6 by hand (the
    last round: 3 is 7, 6 is 7 + 5) and equal to the interpreter's."""
    runs, region = _LoopPuttingTwice().run_both([0x1000, 0, 50, 100, 0, 0, 0, 0])
    (reason, r), (jit_reason, jit_r) = runs
    assert reason == jit_reason == "halt"
    assert r[3] == 7 and r[6] == 12
    assert jit_r == r
    assert 3 in region.kept


@here
def test_shifts_of_kept_registers_are_made_in_place() -> None:
    """A loop shifting a2 right, a3 left and a4 right arithmetically, once an iteration each,
    counting a0 down: the three shifts (kept registers: a0 in r15, the most used) are each
    one instruction on the register the slot is kept in (`_in_kept`), and the final state
    is the interpreter's (and by hand)."""
    arch = get_arch("riscv64")
    n = 40
    code = program(
        [
            *li("a0", n),
            *li("a2", 0xF0F0_F0F0_F0F0_F0F0),
            *li("a3", 3),
            *li("a4", -(1 << 62)),
            "srli a2, a2, 1",
            "slli a3, a3, 1",
            "srai a4, a4, 1",
            "addi a0, a0, -1",
            "bne a0, zero, -16",
            "ebreak",
        ]
    )
    reason, states = _run_both(code, blocks=10_000)
    assert reason == "breakpoint"
    reg = {x: arch.regs[x][0] for x in ("a2", "a3", "a4")}
    m = (1 << 64) - 1
    assert states[0][reg["a2"]] == 0xF0F0_F0F0_F0F0_F0F0 >> n
    assert states[0][reg["a3"]] == (3 << n) & m
    assert states[0][reg["a4"]] == (-(1 << 62) >> n) & m
    assert states[1] == states[0]
    head = 0x10000 + len(
        program([*li("a0", n), *li("a2", 0xF0F0_F0F0_F0F0_F0F0), *li("a3", 3), *li("a4", -(1 << 62))])
    )
    _, _, region = _loop_region(code, head)
    text = _text(region.code)
    kept = region.kept
    names = {x64.R15: "r15", x64.R13: "r13", x64.R12: "r12"}
    shifted = [s for s, x in (("shr", "a2"), ("shl", "a3"), ("sar", "a4")) if reg[x] in kept]
    assert len(shifted) >= 2, kept  # (a0 and two of the three)
    for mnemonic, x in (("shr", "a2"), ("shl", "a3"), ("sar", "a4")):
        if reg[x] in kept:
            assert f"{mnemonic} {names[kept[reg[x]]]}, 1;" in text, text


def test_a_helper_call_outside_the_loop_leaves_three_registers_kept() -> None:
    """The walk loop with its helper call (an FP add) before the loop, in the block that
    sets s0 up: the loop calls none, so s0, a0 and a1 are kept (r15, r13, r12), and
    temporaries live across that call go to the frame."""
    code = program(
        [
            "fadd.d fa0, fa0, fa1",
            *li("s0", 0x20000),
            "addi a0, a0, 1",
            "ld t0, 0(s0)",
            "add a1, a1, t0",
            "addi s0, s0, 8",
            "jal zero, -16",
        ]
    )
    arch, blocks, r = _loop_region(code, 0x10000 + 4 * (1 + len(li("s0", 0x20000))))
    assert any(st.op == "call" for i in blocks[0].insns for st in i.stmts)
    reg = {n: arch.regs[n][0] for n in ("s0", "a0", "a1")}
    assert r.kept == {reg["s0"]: x64.R15, reg["a0"]: x64.R13, reg["a1"]: x64.R12}
    # (run to the fault past the data page, as the interpreter; fa0 = 1.0 + 2.0)
    reason, states = _run_both(code, {"fa0": 0x3FF0000000000000, "fa1": 0x4000000000000000})
    assert reason == "fault" and states[0][reg["s0"]] == 0x21000 and states[0][reg["a0"]] == 513
    assert states[0][arch.regs["fa0"][0]] == 0x4008000000000000
    assert states[1] == states[0]


def test_registers_carried_round_a_loop_are_kept_before_its_temporaries() -> None:
    """A loop that loads into t0 twice (each time read at once: t0 is a temporary of the
    loop, written before it is read) and carries s0, a0, a1 and a2 round: the registers kept
    are carried ones, not t0, though t0 is used as often and has the lowest slot number."""
    code = program(
        [
            *li("s0", 0x20000),
            "ld t0, 0(s0)",
            "add a1, a1, t0",
            "ld t0, 8(s0)",
            "add a2, a2, t0",
            "addi s0, s0, 16",
            "addi a0, a0, -1",
            "bne a0, zero, -24",
            "ebreak",
        ]
    )
    arch, _, r = _loop_region(code, 0x10000 + 4 * len(li("s0", 0x20000)))
    slot = {n: arch.regs[n][0] for n in ("t0", "s0", "a0", "a1", "a2")}
    assert slot["t0"] < min(slot[n] for n in ("s0", "a0", "a1", "a2"))
    assert len(r.kept) == 3 and slot["t0"] not in r.kept, r.kept
    assert set(r.kept) <= {slot[n] for n in ("s0", "a0", "a1", "a2")}


def _walk(n_words: int) -> bytes:
    """a0 counts, s0 walks 8 bytes at a time loading each word into t0 (a1 sums them), until
    it faults past the page at 0x20000."""
    return program(
        [
            *li("s0", 0x20000),
            "addi a0, a0, 1",
            "ld t0, 0(s0)",
            "add a1, a1, t0",
            "addi s0, s0, 8",
            "jal zero, -16",
        ]
    )


def _loop_region(code: bytes, head: int) -> tuple[Any, list[Any], x64.X64Region]:
    """riscv64 code at 0x10000 whose loop starts at `head`: the arch, the two blocks (the
    first, and the loop's) and the first tier's region of them entered at 0x10000."""
    arch = get_arch("riscv64")
    mem = AddressSpace()
    mem.map(0x10000, 0x1000, PROT_ALL)
    mem.write_raw(0x10000, code)
    blocks = [arch.lift_block(mem.fetch, pc, 64) for pc in (0x10000, head)]
    eng = JitEngine(arch, mem, tier="jit")
    return arch, blocks, x64.X64Region(blocks, arch.helpers, eng.helper_index, counter=1, entries=[0x10000])


def _run_both(
    code: bytes, regs: dict[str, int] | None = None, blocks: int = 3
) -> tuple[str, list[list[int]]]:
    """Run riscv64 code at 0x10000 (a data page of bytes 0..255 at 0x20000, registers `regs`
    set) on the interpreter and on the JIT, in time slices of `blocks` blocks, to its stop:
    the stop's reason, the same on both, and the two final states (the interpreter's first)."""
    from polyvm.engine.reference import Engine

    arch = get_arch("riscv64")
    reasons, states = [], []
    for jit in (False, True):
        mem = AddressSpace()
        mem.map(0x10000, 0x1000, PROT_ALL)
        mem.map(0x20000, 0x1000, PROT_READ | PROT_WRITE)
        mem.write_raw(0x10000, code)
        mem.write_raw(0x20000, bytes(range(256)) * 16)
        eng = JitEngine(arch, mem, tier="jit") if jit else Engine(arch, mem)
        st = arch.new_state()
        st[0] = 0x10000
        for name, v in (regs or {}).items():
            st[arch.regs[name][0]] = v
        stop = eng.run(st, blocks)
        while stop.reason == "budget":
            stop = eng.run(st, blocks)
        reasons.append(stop.reason)
        states.append(st)
    assert reasons[0] == reasons[1], reasons
    return reasons[0], states


def test_a_loop_keeps_its_most_used_registers_in_host_registers() -> None:
    """The slots the region's loops read and write most: s0 (the load's address and its own
    increment, three times an iteration) in r15, then a0 and a1 (read and written once an
    iteration each) in r13 and r12, the region calling no helper (a memory access is no
    helper call). t0, written and then read inside the block (one put), is not kept."""
    arch, _, r = _loop_region(_walk(0), 0x10000 + 4 * len(li("s0", 0x20000)))
    reg = {n: arch.regs[n][0] for n in ("s0", "a0", "a1")}
    assert next(iter(r.kept)) == reg["s0"]  # (the most used first: r15)
    assert r.kept == {reg["s0"]: x64.R15, reg["a0"]: x64.R13, reg["a1"]: x64.R12}
    # (read-modify-writes in those registers: `addi s0, s0, 8`, `addi a0, a0, 1`, and
    # `add a1, a1, t0`, whose t0 is in a scratch register: `_in_kept`)
    text = _text(r.code)
    assert "add r15, 8;" in text and "add r13, 1;" in text, text
    assert re.search(r"add r12, r(8|9|10|11);", text), text


def test_a_loop_that_calls_a_helper_keeps_one_register() -> None:
    """The same loop with a helper call in it (an FP add): r12 and r13 hold the temporaries
    that live across its calls, so only s0 is kept (in r15)."""
    code = program(
        [
            *li("s0", 0x20000),
            "addi a0, a0, 1",
            "ld t0, 0(s0)",
            "add a1, a1, t0",
            "fadd.d fa0, fa0, fa1",
            "addi s0, s0, 8",
            "jal zero, -20",
        ]
    )
    arch, blocks, r = _loop_region(code, 0x10000 + 4 * len(li("s0", 0x20000)))
    assert any(st.op == "call" for b in blocks for i in b.insns for st in i.stmts)
    assert r.kept == {arch.regs["s0"][0]: x64.R15}


@here
def test_the_kept_registers_are_in_the_state_at_every_exit() -> None:
    """The walk above, against the interpreter: time slices of 3 blocks end inside the loop
    (the budget exit), and the run ends with a fault on the load past the page, where s0
    (kept in r15) must be the faulting address and every other slot the interpreter's (a0
    and a1, kept in r13 and r12, among them)."""
    reason, states = _run_both(_walk(0))
    s0 = get_arch("riscv64").regs["s0"][0]
    assert reason == "fault" and states[0][s0] == 0x21000 and states[1] == states[0]


@here
def test_chained_exits_follow_the_table() -> None:
    """A region's direct exit to code translated on its own jumps there without the
    dispatcher (chained), and follows that code when it is replaced: rewritten code on the
    target's page runs as rewritten, never the stale translation."""
    from polyvm.engine import lower as L

    arch = get_arch("riscv64")
    a, b = 0x10000, 0x11000  # (two pages: the target's can change alone)
    mem = AddressSpace()
    mem.map(a, 0x2000, PROT_ALL)
    mem.write_raw(b, program(["addi a0, a0, 1", "ebreak"]))
    mem.write_raw(a, program(["addi a1, a1, 1", f"jal zero, {b - a - 4}"]))
    eng = JitEngine(arch, mem, tier="jit")
    r = arch.new_state()
    a0, a1 = arch.regs["a0"][0], arch.regs["a1"][0]

    def run_from(pc: int) -> None:
        r[0] = pc
        n = eng.ctx[L.CTX_DISPATCHES]
        assert eng.run(r, 1000).reason == "breakpoint"
        return eng.ctx[L.CTX_DISPATCHES] - n

    run_from(b)  # b gets a translation of its own; a's region then stops at b
    assert run_from(a) == 1  # (the dispatcher called a's region; a went on to b's itself)
    assert (r[a0], r[a1]) == (2, 1)
    assert eng._chain_words.get(b), "no chained exit to b"
    mem.write_raw(b, program(["addi a0, a0, 100", "ebreak"]))  # (b's translation is dropped)
    run_from(a)
    assert (r[a0], r[a1]) == (102, 2)
    assert run_from(a) == 1  # (chained to b's new translation)
    assert (r[a0], r[a1]) == (202, 3)


def _diamond(mem: AddressSpace, at: int, step: int = 1) -> tuple[int, int]:
    """riscv64 code at `at`: a1 += step; if a2 == 0 skip a0 += 10; a0 += 1; ebreak. Its first
    tier region is the three blocks; returns the pcs of the last two (`a0 += 10`, `a0 += 1`).
    (Each test its own step: code compiled in this process before is reused with the entries
    it has by then.)"""
    mem.write_raw(
        at,
        program([f"addi a1, a1, {step}", "beq a2, zero, 8", "addi a0, a0, 10", "addi a0, a0, 1", "ebreak"]),
    )
    return at + 8, at + 12


def _run_at(eng: JitEngine, r: list[int], pc: int) -> None:
    r[0] = pc
    assert eng.run(r, 1000).reason == "breakpoint"


@here
def test_a_block_inside_a_region_is_entered_there_not_emitted_again(tmp_path) -> None:
    """Every block of a first-tier region can be entered: run from a block that is not one of
    its region's entries, the engine makes it one (the region's code, its table entry the
    region's address) instead of emitting the block again as a region of its own; a region
    formed later stops at such a block (its code jumps there); and the entry is cached, so a
    fresh engine on the same cache starts at the block from the cached object."""
    from polyvm.engine.tcache import TranslationCache

    arch = get_arch("riscv64")
    a, b = 0x10000, 0x11000
    mem = AddressSpace()
    mem.map(a, 0x2000, PROT_ALL)
    ten, one = _diamond(mem, a)
    mem.write_raw(b, program(["addi a3, a3, 1", f"jal zero, {ten - b - 4}"]))  # b: on to `ten`
    cache = TranslationCache(str(tmp_path), Compiler.get().host_id)
    eng = JitEngine(arch, mem, tier="jit", cache=cache)
    r = arch.new_state()
    a0, a1, a3 = (arch.regs[n][0] for n in ("a0", "a1", "a3"))
    _run_at(eng, r, a)  # (a2 is 0: the branch skips `ten`)
    assert (r[a0], r[a1]) == (1, 1) and eng.blocks_compiled == 3
    assert one not in eng.table and eng._latent.get(one) == eng.pc_region[a].name
    _run_at(eng, r, one)
    assert r[a0] == 2 and eng.blocks_compiled == 3  # (nothing emitted again)
    assert eng.table[one] == eng.table[a] and eng.pc_region[one] is eng.pc_region[a]
    _run_at(eng, r, b)  # b's region is b alone: its walk stops at `ten`, entered in a's code
    assert (r[a0], r[a1], r[a3]) == (13, 1, 1) and eng.blocks_compiled == 4
    assert eng.table[ten] == eng.table[a]
    # A fresh engine on the cache starts at `one` in the cached object: nothing translated.
    eng2 = JitEngine(arch, mem, tier="jit", cache=TranslationCache(str(tmp_path), Compiler.get().host_id))
    r2 = arch.new_state()
    _run_at(eng2, r2, one)
    assert r2[a0] == 1 and eng2.regions_loaded == 1 and eng2.blocks_compiled == 0


@here
def test_a_region_from_the_cache_can_be_entered_at_its_blocks(tmp_path) -> None:
    """The cache says at which blocks a first-tier region's code can be entered besides its
    entries: a fresh engine that loaded the region from the cache enters it at such a block
    too, translating nothing."""
    from polyvm.engine.tcache import TranslationCache

    arch = get_arch("riscv64")
    mem = AddressSpace()
    mem.map(0x10000, 0x1000, PROT_ALL)
    _, one = _diamond(mem, 0x10000, step=4)
    eng = JitEngine(arch, mem, tier="jit", cache=TranslationCache(str(tmp_path), Compiler.get().host_id))
    r = arch.new_state()
    _run_at(eng, r, 0x10000)
    assert one in eng._latent
    eng.compiler.latent.clear()  # (as in a new process: only the cache knows)
    eng2 = JitEngine(arch, mem, tier="jit", cache=TranslationCache(str(tmp_path), Compiler.get().host_id))
    r2 = arch.new_state()
    _run_at(eng2, r2, 0x10000)
    assert eng2.regions_loaded == 1 and one in eng2._latent
    _run_at(eng2, r2, one)
    a0 = arch.regs["a0"][0]
    assert r2[a0] == 2 and eng2.blocks_compiled == 0 and eng2.table[one] == eng2.table[0x10000]


@here
def test_a_block_of_a_dropped_region_is_translated_afresh() -> None:
    """A block that could have become an entry of its region is translated on its own once
    the region is gone: rewritten code there runs as rewritten (the region's translation is
    dropped with the page's old contents), and so after a flush."""
    arch = get_arch("riscv64")
    mem = AddressSpace()
    mem.map(0x10000, 0x1000, PROT_ALL)
    ten, one = _diamond(mem, 0x10000, step=2)
    eng = JitEngine(arch, mem, tier="jit")
    r = arch.new_state()
    a0 = arch.regs["a0"][0]
    _run_at(eng, r, 0x10000)
    assert one in eng._latent
    mem.write_raw(one, program(["addi a0, a0, 100"]))
    _run_at(eng, r, one)
    assert r[a0] == 101 and eng.blocks_compiled == 4
    _run_at(eng, r, 0x10000)  # (a new region of the first two blocks: it stops at `one`)
    assert r[a0] == 201 and eng.blocks_compiled == 6 and ten in eng._latent
    eng.flush()
    assert not eng._latent
    _run_at(eng, r, ten)
    assert r[a0] == 311


@here
def test_code_that_refuses_the_pc_the_table_sends_it_is_replaced(tmp_path) -> None:
    """A region called at a pc it has no entry for returns RET_MISS; where the table (or the
    cache) nonetheless leads there, the engine drops that and translates the pc afresh, from
    the cache no more, instead of calling the same code for ever."""
    from polyvm.engine.tcache import TranslationCache

    arch = get_arch("riscv64")
    mem = AddressSpace()
    mem.map(0x10000, 0x2000, PROT_ALL)
    _diamond(mem, 0x10000, step=3)
    other = 0x11000
    mem.write_raw(other, program(["addi a0, a0, 7", "ebreak"]))
    cache = TranslationCache(str(tmp_path), Compiler.get().host_id)
    eng = JitEngine(arch, mem, tier="jit", cache=cache)
    r = arch.new_state()
    a0 = arch.regs["a0"][0]
    _run_at(eng, r, 0x10000)
    sym, _, obj_name, _ = eng.compiler.regions[eng.pc_region[0x10000].name]
    # A cache entry that sends `other` to the diamond's code (a bad entry a check let pass).
    cache.store_entry(mem, [other], sym, obj_name, 0, [0x10], only=[other])
    eng2 = JitEngine(arch, mem, tier="jit", cache=TranslationCache(str(tmp_path), Compiler.get().host_id))
    r2 = arch.new_state()
    _run_at(eng2, r2, other)
    assert r2[a0] == 7 and eng2.regions_loaded == 1 and eng2.blocks_compiled == 1


@here
def test_auto_emits_cold_code_at_once() -> None:
    """`auto`, where the first tier is emitted: a block is translated at its first dispatch
    (cheaper than the interpreter's translation into Python), so nothing is interpreted; with
    the first tier through LLVM it waits for HOT dispatches on the interpreter."""
    for baseline, n in (("x64", 7), ("llvm", 8)):  # (other code: nothing compiled is reused)
        eng, r = _sum_engine(baseline, n)
        eng = JitEngine(eng.arch, eng.mem, tier="auto", baseline=baseline)
        assert eng.run(r, 1_000_000).reason == "breakpoint"
        assert r[eng.arch.regs["a0"][0]] == n * (n + 1) // 2
        assert bool(eng.table) == (baseline == "x64") and bool(eng.interp.cache) == (baseline == "llvm")


@pytest.mark.parametrize(
    "kind,opc,text",
    [
        ("sse", 0x5E, "mov rax, r9; mov rcx, r10; movq xmm0, rax; movq xmm1, rcx; divsd xmm0, xmm1"),
        ("sqrt", 0x51, "mov rax, r9; movq xmm1, rax; sqrtsd xmm0, xmm1"),
        ("fma", 0xB9, "mov rax, r9; movq xmm1, rax; mov rax, r10; movq xmm2, rax; mov rax, r9; "
                      "movq xmm0, rax; vfmadd231sd xmm0, xmm1, xmm2"),
        ("fma", 0xBB, "mov rax, r9; movq xmm1, rax; mov rax, r10; movq xmm2, rax; mov rax, r9; "
                      "movq xmm0, rax; vfmsub231sd xmm0, xmm1, xmm2"),
        ("fma", 0xBD, "mov rax, r9; movq xmm1, rax; mov rax, r10; movq xmm2, rax; mov rax, r9; "
                      "movq xmm0, rax; vfnmadd231sd xmm0, xmm1, xmm2"),
        ("fma", 0xBF, "mov rax, r9; movq xmm1, rax; mov rax, r10; movq xmm2, rax; mov rax, r9; "
                      "movq xmm0, rax; vfnmsub231sd xmm0, xmm1, xmm2"),
        ("sse_s", 0x58, "mov rax, r9; mov rcx, r10; movd xmm0, eax; movd xmm1, ecx; addss xmm0, xmm1"),
        ("sqrt_s", 0x51, "mov rax, r9; movd xmm1, eax; sqrtss xmm0, xmm1"),
        ("fma_s", 0xBD, "mov rax, r9; movd xmm1, eax; mov rax, r10; movd xmm2, eax; mov rax, r9; "
                        "movd xmm0, eax; vfnmadd231ss xmm0, xmm1, xmm2"),
    ],
)  # fmt: skip
def test_fp_shortcut_operations_decode_as_intended(kind: str, opc: int, text: str) -> None:
    """The shortcut's operation, operands in r9, r10 (and r9 again as c): capstone's reading."""
    assert _text(_asm(lambda a: a._fp_op(kind, opc, (_v(1, 64), _v(2, 64), _v(1, 64))))) == text


@here
@pytest.mark.parametrize("op", F.SHORTCUT_OPS + F.SINGLE_OPS)
def test_the_inline_nx_shortcut_is_the_helper(op: str) -> None:
    """binary64 add/sub/mul/div/sqrt and the fused multiply-adds with the accrued-NX shortcut
    emitted inline (SSE2, FMA3): result, fflags and traps equal the reference interpreter's
    (exact softfloat) for operands around every boundary (`fp_cases`), accrued flags with NX
    set or clear, static and dynamic rounding modes (an illegal frm traps)."""
    single = op.endswith(".s")
    if op.replace(".s", ".d") in F.FMA and not x64.host_has_fma():
        pytest.skip("no FMA3 on this host: the fused multiply-adds take the helper's call")
    import random

    from polyvm.engine.reference import Engine

    arch = get_arch("riscv64")
    ff, frm = arch.regs["fflags"][0], arch.regs["frm"][0]
    fa0 = arch.regs["fa0"][0]
    nsrc = F.sources(op)
    srcs = ", ".join(f"fa{i + 1}" for i in range(nsrc))
    rng = random.Random(f"x64-nx-{op}")
    vals = F.values(rng, single)
    for rm in ("rne", "dyn", "rtz"):
        code = program([f"{op} fa0, {srcs}, {rm}", "ebreak"])
        mem = AddressSpace()
        mem.map(0x10000, 0x1000, PROT_ALL)
        mem.write_raw(0x10000, code)
        eng = JitEngine(arch, mem, tier="jit")
        ref = Engine(arch, mem)
        for i in range(600):
            xs = F.operands(rng, vals, nsrc, i, single)
            st = F.states(arch, 0x10000, xs, *F.flags_and_mode(rng))
            got = eng.run(st[0], 10)
            want = ref.run(st[1], 10)
            args = (op, rm, [hex(x) for x in xs], st[1][ff], st[1][frm])
            assert (got.reason, got.pc) == (want.reason, want.pc), args
            assert (st[0][fa0], st[0][ff]) == (st[1][fa0], st[1][ff]), args
        assert 0x10000 in eng.table
        # The host's operation is there under RNE (static or dynamic), not under another mode.
        er = eng.emit_region("pv_00000000", eng._form_region(0x10000, 4), [0x10000])
        capstone = pytest.importorskip("capstone")
        names = {
            i.mnemonic
            for i in capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64).disasm(bytes(er.buf), 0)
        }
        # (Intel's names: vfnmadd is -(a*b) + c, RISC-V's fnmsub; vfnmsub is fnmadd)
        host_op = {"fadd.d": "addsd", "fsub.d": "subsd", "fmul.d": "mulsd", "fdiv.d": "divsd",
                   "fsqrt.d": "sqrtsd", "fmadd.d": "vfmadd231sd", "fmsub.d": "vfmsub231sd",
                   "fnmsub.d": "vfnmadd231sd", "fnmadd.d": "vfnmsub231sd"}[op.replace(".s", ".d")]  # fmt: skip
        if single:
            host_op = host_op[:-1] + "s"  # (the ss form)
        assert (host_op in names) == (rm != "rtz"), names


def test_a_group_of_accesses_checks_the_tlb_once() -> None:
    """A group's first access (`_grouped_access`, direct memory): the TLB entry of the group's
    lowest byte (here 8 below this access), its read and write tags against the page of the
    highest byte (15 above), the answer in a frame byte (flags at rsp + 0x200, group 1), then
    the store at guest + ctx's base; a later access tests the byte first. The miss path (the
    runtime's access function) comes after the block."""

    def emit(a, first: bool) -> None:
        a.flags_at = 0x200
        a._grouped_access("st", 64, (1, first, -8, 15, frozenset({"ld", "st"})))

    assert _text(_asm(lambda a: emit(a, True), direct=True)) == (
        "lea rax, [rsi - 8]; shr rax, 7; and eax, 0x1fffe0; add rax, qword ptr [rbx]; "
        "lea rcx, [rsi + 0xf]; and rcx, 0xfffffffffffff000; cmp rcx, qword ptr [rax]; jne; "
        "cmp rcx, qword ptr [rax + 8]; jne; mov byte ptr [rsp + 0x208], 1; "
        "mov rax, qword ptr [rbx + 0xc0]; mov qword ptr [rsi + rax], rdx"
    )
    assert _text(_asm(lambda a: emit(a, False), direct=True)) == (
        "cmp byte ptr [rsp + 0x208], 0; je; mov rax, qword ptr [rbx + 0xc0]; mov qword ptr [rsi + rax], rdx"
    )


def _first_tier(build, blk=None, direct: bool = False) -> x64.X64Region:
    """The first tier's region for `build`'s block (`OneBlock`), or for `blk` as given."""
    arch = OneBlock(build)
    mem = AddressSpace()
    mem.map(0x1000, 0x1000, PROT_ALL)
    eng = new_engine("jit", arch, mem)
    if blk is None:
        blk = arch.lift_block(mem.fetch, 0x1000, 64)
    return x64.X64Region([blk], arch.helpers, eng.helper_index, counter=1, direct=direct)


def _stores_to(build, slot: int, blk=None) -> int:
    """How many stores to `slot` of the state (rbp + 8 * slot) that code makes, disassembled."""
    target = f"mov qword ptr [rbp + {8 * slot:#x}],"
    return sum(part.startswith(target) for part in _text(_first_tier(build, blk).code).split("; "))


def test_a_put_overwritten_in_its_block_is_not_stored() -> None:
    """Two puts of one slot with nothing between them that could see the state: the first
    is left out (`X64Region._prepare`). A load, a store or a helper call between them keeps both (a
    fault there leaves with the first value in the state; a helper may read it)."""

    def plain(b) -> None:
        x = b.get(2, 64)
        b.put(3, b.add(x, b.const(1, 64)))
        b.put(3, b.add(x, b.const(2, 64)))

    def around(between):
        def build(b) -> None:
            x = b.get(2, 64)
            b.put(3, b.add(x, b.const(1, 64)))
            between(b, x)
            b.put(3, b.add(x, b.const(2, 64)))

        return build

    assert _stores_to(plain, 3) == 1
    assert _stores_to(around(lambda b, x: b.put(4, b.load(x, 64))), 3) == 2
    assert _stores_to(around(lambda b, x: b.store(x, x)), 3) == 2
    assert _stores_to(around(lambda b, x: b.put(4, b.call("accrue", x))), 3) == 2
    # (another slot's put between them is no reason to keep the first)
    assert _stores_to(around(lambda b, x: b.put(4, x)), 3) == 1


def test_a_get_between_two_puts_keeps_the_first() -> None:
    """put 3; get 3; put 3 (IR written out: the builder itself would reuse the put's value
    instead of a get): the get reads the state, so the first put is stored."""
    from polyvm.ir import Block, Insn, Stmt, Terminator

    t = [_v(i, 64) for i in range(5)]
    stmts = [
        Stmt("get", t[1], (2,)),
        Stmt("add", t[2], (t[1], x64.Val(0, 64, 1))),
        Stmt("put", None, (3, t[2])),
        Stmt("get", t[3], (3,)),
        Stmt("put", None, (4, t[3])),
        Stmt("add", t[4], (t[1], x64.Val(0, 64, 2))),
        Stmt("put", None, (3, t[4])),
    ]
    blk = Block(0x1000, [Insn(0x1000, 4, stmts)], Terminator("jump", x64.Val(0, 64, 0x2000)), ntemps=4)
    assert _stores_to(None, 3, blk) == 2
    # (and without the get, one)
    blk.insns[0].stmts = stmts[:3] + stmts[5:]
    assert _stores_to(None, 3, blk) == 1


@here
def test_a_fault_between_two_puts_leaves_the_first_in_the_state() -> None:
    """put 3; a load that faults; put 3 again: the run leaves at the load with the first
    value in slot 3 (the engine's state as the interpreter's), and without the fault with
    the second."""

    def build(b) -> None:
        x = b.get(2, 64)
        b.put(3, b.add(x, b.const(1, 64)))
        b.put(4, b.load(x, 64))
        b.put(3, b.add(x, b.const(2, 64)))

    for addr, reason in ((0x3000, "halt"), (0x5000, "fault")):
        states = []
        for kind in ("interp", "jit"):
            mem = AddressSpace()
            mem.map(0x1000, 0x1000, PROT_ALL)
            mem.map(0x3000, 0x1000, PROT_READ | PROT_WRITE)
            eng = new_engine(kind, OneBlock(build), mem)
            r = [0x1000, 0, addr, 0, 0, 0, 0, 0]
            assert eng.run(r, 8).reason == reason
            if kind == "jit":
                assert 0x1000 in eng.table
            states.append(r)
        assert states[0] == states[1]
        assert states[1][3] == addr + (2 if reason == "halt" else 1), states


def test_a_group_after_a_left_out_put_keeps_its_accesses() -> None:
    """A put left out (`X64Region._prepare`) before a group of three loads from one base
    (direct memory): the group is still checked in the TLB once, at its first load (one
    lookup of the TLB's entry, two tests of the group's flag byte): the left-out put does not
    shift the statements' group marks."""

    def build(b) -> None:
        x = b.get(2, 64)
        b.put(3, b.add(x, b.const(1, 64)))
        b.put(3, b.add(x, b.const(2, 64)))
        acc = b.load(x, 64)
        for off in (8, 16):
            acc = b.add(acc, b.load(b.add(x, b.const(off, 64)), 64))
        b.put(4, acc)

    r = _first_tier(build, direct=True)
    text = _text(r.code)
    assert r.groups == 1
    assert text.count("and eax, 0x1fffe0") == 1, text  # (the TLB entry's index: one lookup)
    assert len(re.findall(r"cmp byte ptr \[rsp \+ 0x[0-9a-f]+\], 0", text)) == 2, text
