"""The first tier without LLVM on x86-64 hosts: IR regions emitted straight to machine code.

A first-tier region compiled by LLVM costs about 0.35 ms of LLVM time per guest block
(`lower.RegionLowering(compact=True)`, fast instruction selection), and half of the blocks a
cold run compiles never run: in a short run that is most of the time polyvm spends above
QEMU. This module writes the same region — same entry protocol, exits, counters, time-slice
checks, faults and calls through `ctx` (see `lower`) — as x86-64 machine code directly, in
Python, at a few microseconds per IR statement, the way a baseline compiler does (QEMU's TCG,
V8's Sparkplug): guest registers stay in the state array (a block reuses a value it read or
wrote: `ir.Builder.get`), the block's IR temporaries get registers by linear scan (`_allocate`; a
frame slot when none is left), each statement is a few instructions computing in its
result's register, every memory access has the software TLB's fast path inline (`_access`),
and a direct exit to other translated code is a chained tail call (`_chain`). Hot regions are
still recompiled by LLVM's optimizing pipeline; until that code arrives, they run emitted too.

Conventions (System V AMD64, so Linux hosts): `i64 region(ctx, state)`; `rbx` holds ctx,
`rbp` the state, `r14` what is left of the time slice at the start of the current guest block
(ctx's limit, read at entry into a frame word, less the instruction count: a block subtracts
its instructions, a backward edge's check tests r14, the count is computed where it is read:
`_count`), `r15` the guest register the region's loops use most, and r13 and r12 the next
two where the region calls no helper (`_kept_slots`; r14 at entry, for the region's tier-up
counter, is a frame word). All of them are callee-saved, so calls of the runtime's access
functions and of helpers through ctx's pointers keep them; temporaries live in r8-r11 (none
across a helper call; an access's slow path saves them) and r12/r13 where no guest register
is kept there.
Frame: eight argument words for helper calls at `rsp`, then two words per IR temporary (for
those without a register; a 128-bit value takes both).

Values are kept zero-extended to 64 bits (an i1 is 0 or 1); operations narrower than 64 bits
compute in 64-bit registers and mask the result. Nothing in the code depends on where it is
placed (jumps are relative, everything else goes through ctx), so a region's bytes can be
cached on disk like an object file (`link` / `Loader`).

`Unsupported` (from `lower`) is raised for what this tier does not emit (hooks, 128-bit values
other than the full multiply a `mulh` lifts to, odd widths); the caller lowers such a region
through LLVM instead.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import marshal
import mmap
import os
import struct
import sys
from typing import Any

from polyvm.engine import lower as L
from polyvm.engine.lower import Unsupported
from polyvm.ir import Block, Val
from polyvm.isa import SLOT_ICOUNT, SLOT_PC

# A blob of emitted regions (the translation cache's "object"): MAGIC, the symbol table's
# length (4 bytes), the table (marshal: symbol -> offset) and the code.
MAGIC = b"PVX64\x00\x02\x00"

# (the inline TLB lookup reads the TLB's address as ctx's first word and shifts the index by 5)
assert L.CTX_TLB == 0 and L.TLB_ENTRY_WORDS == 4

RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI = range(8)
R8, R9, R10, R11, R12, R13, R14, R15 = range(8, 16)
CTX, ST, ICOUNT = RBX, RBP, R14
ARGS = 0  # helper argument array: 8 words at rsp
TEMPS = 64  # first temporary's slot

# condition codes
C_B, C_AE, C_E, C_NE, C_BE, C_A, C_L, C_GE, C_LE, C_G = 2, 3, 4, 5, 6, 7, 12, 13, 14, 15
_CMP_CC = {"eq": C_E, "ne": C_NE, "ult": C_B, "ule": C_BE, "slt": C_L, "sle": C_LE}
_ALU = {"add": 0x01, "or": 0x09, "and": 0x21, "sub": 0x29, "xor": 0x31}
_ALU_N = {"add": 0, "or": 1, "and": 4, "sub": 5, "xor": 6}  # (the immediate forms' /n)
_COMMUTES = frozenset(("add", "or", "and", "xor", "mul"))
_SHIFT = {"rotl": 0, "rotr": 1, "shl": 4, "lshr": 5, "ashr": 7}
_POW2 = (8, 16, 32, 64)
STACK = -1  # a temporary's location: its frame slot
GROUPS = 4  # access groups per block checked in the TLB once (`_groups`): their flags' frame words
_SCRATCH = (R11, R10, R9, R8)  # temporaries no call lies within (caller-saved; r8 taken first)
_KEPT = (R13, R12)  # temporaries live across a call (callee-saved)
_KEEP_IN = (R15, R13, R12)  # the registers guest registers are kept in (`_kept_slots`)
_CALLS = frozenset(("load", "store", "cstore", "call"))
# An access's slow path (`_slow_access`) keeps r8-r11 across the runtime's function: four
# pushes (rsp stays 16-byte aligned at the call), and the pops after it, which leave the flags.
_PUSH_SCRATCH = b"\x41\x50\x41\x51\x41\x52\x41\x53"  # push r8, r9, r10, r11
_POP_SCRATCH = b"\x41\x5b\x41\x5a\x41\x59\x41\x58"  # pop r11, r10, r9, r8
_NOP = "nop"  # a statement `_prepare` leaves out (a put overwritten before anything sees it)

# a w-bit load into rax (zero-extended) or store of rdx, at rsi + rax
_ACCESS = {
    ("ld", 64): b"\x48\x8b\x04\x06",
    ("ld", 32): b"\x8b\x04\x06",
    ("ld", 16): b"\x0f\xb7\x04\x06",
    ("ld", 8): b"\x0f\xb6\x04\x06",
    ("st", 64): b"\x48\x89\x14\x06",
    ("st", 32): b"\x89\x14\x06",
    ("st", 16): b"\x66\x89\x14\x06",
    ("st", 8): b"\x88\x14\x06",
}
_PRIVATE = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
_RWX = getattr(mmap, "PROT_READ", 0) | getattr(mmap, "PROT_WRITE", 0) | getattr(mmap, "PROT_EXEC", 0)


_uses_memo: dict[int, tuple[Block, dict[int, int], frozenset[int] | None, bool, frozenset[int]]] = {}
# (the encodings of the loads and stores made so far: (reg, base, disp) -> bytes; a few hundred)
_LOADS: dict[tuple[int, int, int], bytes] = {}
_STORES: dict[tuple[int, int, int], bytes] = {}
_REL32 = struct.Struct("<i")  # a jump's displacement (`_resolve`)
_JCC = [bytes((0x0F, 0x80 | cc)) for cc in range(16)]  # jcc rel32's opcode bytes by condition
_ALUS: dict[tuple[int, int, int], bytes] = {}  # (op, dst, src) -> a register-register form's bytes


_TEMPLATES: dict[Any, tuple[bytes, tuple[int, ...]]] = {}


def _template(key: Any, emit: Any) -> tuple[bytes, tuple[int, ...]]:
    """Code that depends on `key` alone, made once (`emit` on a scratch region): its bytes
    and the offsets of its rel32 fields, for `X64Region._place`."""
    r = X64Region.__new__(X64Region)
    r.buf, r.fixups, r.labels = bytearray(), [], {}
    emit(r)
    t = _TEMPLATES[key] = (bytes(r.buf), tuple(pos for pos, _ in r.fixups))
    return t


def _slot_uses(
    blk: Block, helpers: Any
) -> tuple[dict[int, int], frozenset[int] | None, bool, frozenset[int]]:
    """How often the block gets or puts each slot, the slots its helper calls read or write
    (None: a helper that does not say), whether it calls a helper at all, and the slots it
    reads before writing them (gets); once per block (regions share blocks)."""
    m = _uses_memo.get(id(blk))
    if m is not None and m[0] is blk:
        return m[1], m[2], m[3], m[4]
    uses: dict[int, int] = {}
    touched: set[int] | None = set()
    calls = False
    reads = set()
    for insn in blk.insns:
        for st in insn.stmts:
            op = st.op
            if op == "get" or op == "put":
                k = st.args[0]
                uses[k] = uses.get(k, 0) + 1
                if op == "get":
                    reads.add(k)
            elif op == "call":
                calls = True
                h = helpers[st.args[0]]
                if h.state and touched is not None:
                    if h.reads is None or h.writes is None:
                        touched = None
                    else:
                        touched |= h.reads | h.writes
    if len(_uses_memo) > 100_000:
        _uses_memo.clear()
    res = frozenset(touched) if touched is not None else None
    got = frozenset(reads)
    _uses_memo[id(blk)] = (blk, uses, res, calls, got)
    return uses, res, calls, got


def available() -> bool:
    """This host can run emitted code: x86-64 with the System V calling convention (Linux)."""
    # (os.uname, not the platform module: a Linux host's machine, without that import's cost)
    if not (sys.platform.startswith("linux") and os.uname().machine.lower() in ("x86_64", "amd64")):
        return False
    try:  # (a system may refuse writable executable memory: then LLVM makes the first tier)
        mmap.mmap(-1, 4096, flags=_PRIVATE, prot=_RWX).close()
    except (OSError, ValueError):
        return False
    return True


def _mem(reg: int, base: int, disp: int) -> bytes:
    """ModRM (+SIB, +displacement) for [base + disp] with `reg` in the reg field."""
    r, b = reg & 7, base & 7
    if disp == 0 and b != 5:
        mod, tail = 0, b""
    elif -128 <= disp < 128:
        mod, tail = 1, disp.to_bytes(1, "little", signed=True)
    else:
        mod, tail = 2, disp.to_bytes(4, "little", signed=True)
    sib = b"\x24" if b == 4 else b""
    return bytes([mod << 6 | r << 3 | b]) + sib + tail


def _rex(w: int, r: int, b: int) -> int:
    return 0x40 | w << 3 | (r >> 3) << 2 | (b >> 3)


# The operands of `fptables.X64_NX_SHORTCUT`'s kinds (binary64; "_s" binary32)
_SHORTCUT_OPERANDS = {"sse": 2, "sqrt": 1, "fma": 3}


def _operands(kind: str) -> int:
    return _SHORTCUT_OPERANDS[kind.removesuffix("_s")]


@functools.cache
def host_has_fma() -> bool:
    """Does this host's CPU have FMA3 (the fused multiply-add shortcuts)? Its flags, from
    /proc/cpuinfo (the emitter runs on Linux only). Cached objects are keyed by the host's
    CPU features, so code using it never reaches a host without it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return "fma" in line.split(":", 1)[1].split()
    except OSError:
        pass
    return False


class X64Region:
    """One region (`lower.RegionLowering(compact=True)`'s semantics) as machine code.

    After construction: `code` (bytes), `entry_pcs`, `latent_pcs` (with `latent`: the blocks
    that are no entries, which its code can be entered at too), `fpn_used` (helpers called
    through ctx's fast-path table), `chains` ((offset of a chained exit's word in `code`, its
    target pc)), `groups` (how many groups of accesses it checks in the TLB once: `_groups`)."""

    kept: dict[int, int] = {}  # slot -> the register it is kept in (`_kept_slots`)
    acc: Any = None  # the access group of the statement being emitted (`_groups`), if any

    def __init__(
        self,
        blocks: list[Block],
        helpers: Any,
        helper_index: dict[str, int],
        *,
        counter: int | None = None,
        entries: list[int] | None = None,
        fast_paths: frozenset[str] = frozenset(),
        shortcuts: dict[str, tuple[int, int, int, int, int]] | None = None,
        direct: bool = False,
        marks: bool | None = None,
        latent: bool = False,
    ) -> None:
        self.blocks = [b for b in blocks if b.insns]
        # (every block enterable: the others' pcs are `latent_pcs`, see `_emit`)
        self.latent = latent
        self.latent_pcs: list[int] = []
        # (the first tier marks the blocks it runs: `_mark`; by default where it counts)
        self.marks = counter is not None if marks is None else marks
        self.direct = direct  # guest memory at ctx's CTX_GUEST_BASE offset (see `_access`)
        self.shortcuts = shortcuts or {}  # FP helpers with an inline shortcut (`_nx_shortcut`)
        if not self.blocks:
            raise Unsupported("empty region")
        self.helpers = helpers
        self.helper_index = helper_index
        self.counter = counter
        self.fast_paths = fast_paths
        self.entries_in = entries
        self.fpn_used: set[str] = set()
        self.buf = bytearray()
        self.labels: dict[Any, int] = {}
        self.fixups: list[tuple[int, Any]] = []  # (position of a rel32, label)
        self.stubs: list[tuple[Any, int, int, int]] = []  # (label, pc, code, dk): fault exits
        self._chains: dict[int, Any] = {}  # target pc -> its chained exit's label
        self.chain_slots: list[tuple[Any, int]] = []  # (the word's label, target pc)
        self._n = 0
        self.groups = 0  # access groups checked in the TLB once (`_groups`)
        self._emit()
        self.code = self._resolve()
        self.chains = [(self.labels[slot], pc) for slot, pc in self.chain_slots]  # (offset, pc)

    # ---- assembler -----------------------------------------------------------------------
    def newlabel(self) -> tuple[str, int]:
        self._n += 1
        return ("L", self._n)

    def bind(self, lab: Any) -> None:
        self.labels[lab] = len(self.buf)

    def _rel32(self, lab: Any) -> None:
        self.fixups.append((len(self.buf), lab))
        self.buf += b"\0\0\0\0"

    def jmp(self, lab: Any) -> None:
        self.buf.append(0xE9)
        self._rel32(lab)

    def jcc(self, cc: int, lab: Any) -> None:
        buf = self.buf
        buf += _JCC[cc]
        self.fixups.append((len(buf), lab))
        buf += b"\0\0\0\0"

    def _resolve(self) -> bytes:
        buf, labels, pack = self.buf, self.labels, _REL32.pack_into
        for pos, lab in self.fixups:
            pack(buf, pos, labels[lab] - pos - 4)
        return bytes(buf)

    def load(self, reg: int, base: int, disp: int) -> None:  # mov reg, [base+disp]
        code = _LOADS.get((reg, base, disp))
        if code is None:
            code = _LOADS[reg, base, disp] = bytes((_rex(1, reg, base), 0x8B)) + _mem(reg, base, disp)
        self.buf += code

    def store(self, base: int, disp: int, reg: int) -> None:  # mov [base+disp], reg
        code = _STORES.get((reg, base, disp))
        if code is None:
            code = _STORES[reg, base, disp] = bytes((_rex(1, reg, base), 0x89)) + _mem(reg, base, disp)
        self.buf += code

    def mov(self, dst: int, src: int) -> None:
        self.alu(0x89, dst, src)  # (mov r/m64, r64: the same form)

    def imm(self, reg: int, x: int) -> None:
        """reg = x (an unsigned 64-bit value)."""
        x &= (1 << 64) - 1
        if x < 1 << 32:
            if reg >= 8:
                self.buf.append(0x41)
            self.buf.append(0xB8 | reg & 7)
            self.buf += x.to_bytes(4, "little")
        elif x >= (1 << 64) - (1 << 31):
            self.buf += bytes((_rex(1, 0, reg), 0xC7, 0xC0 | reg & 7))
            self.buf += (x - (1 << 64)).to_bytes(4, "little", signed=True)
        else:
            self.buf += bytes((_rex(1, 0, reg), 0xB8 | reg & 7)) + x.to_bytes(8, "little")

    def alu(self, op: int, dst: int, src: int) -> None:  # add/or/and/sub/xor/cmp(0x39)/test(0x85)
        code = _ALUS.get((op, dst, src))
        if code is None:
            code = _ALUS[op, dst, src] = bytes((_rex(1, src, dst), op, 0xC0 | (src & 7) << 3 | dst & 7))
        self.buf += code

    def alu_imm(self, n: int, reg: int, x: int) -> None:  # op reg, imm (n: /0 add, /5 sub, /7 cmp)
        if -128 <= x < 128:
            self.buf += bytes((_rex(1, 0, reg), 0x83, 0xC0 | n << 3 | reg & 7)) + x.to_bytes(
                1, "little", signed=True
            )
        else:
            self.buf += bytes((_rex(1, 0, reg), 0x81, 0xC0 | n << 3 | reg & 7)) + x.to_bytes(
                4, "little", signed=True
            )

    def cmp_const(self, reg: int, x: int) -> None:
        """Flags of reg - x for an unsigned 64-bit constant x (rdx is clobbered for big ones)."""
        s = x - (1 << 64) if x >= 1 << 63 else x
        if -(1 << 31) <= s < 1 << 31:
            self.alu_imm(7, reg, s)
        else:
            self.imm(RDX, x)
            self.alu(0x39, reg, RDX)

    def unary(self, n: int, reg: int) -> None:  # F7 /n: not 2, neg 3, div 6, idiv 7
        self.buf += bytes((_rex(1, 0, reg), 0xF7, 0xC0 | n << 3 | reg & 7))

    def op2(self, opc: int, dst: int, src: int, w: int = 1) -> None:  # 0F opc /r (imul, cmov, bsr...)
        self.buf += bytes((_rex(w, dst, src), 0x0F, opc, 0xC0 | (dst & 7) << 3 | src & 7))

    def call_mem(self, base: int, disp: int) -> None:
        if base >= 8:
            self.buf.append(0x41)
        self.buf.append(0xFF)
        self.buf += _mem(2, base, disp)

    def mask(self, reg: int, w: int) -> None:
        """Zero the bits of reg above w."""
        if w >= 64:
            return
        r = reg & 7
        rex = (0x45,) if reg >= 8 else ()  # (r8..r15 as both operands)
        if w == 32:
            self.buf += bytes((*rex, 0x89, 0xC0 | r << 3 | r))
        elif w == 16:
            self.buf += bytes((*rex, 0x0F, 0xB7, 0xC0 | r << 3 | r))
        elif w == 8:
            self.buf += bytes((*rex, 0x0F, 0xB6, 0xC0 | r << 3 | r))  # (rax..rbx: al..bl)
        elif w == 1:
            self.buf += bytes((*((0x41,) if reg >= 8 else ()), 0x83, 0xE0 | r, 1))
        else:
            raise Unsupported(f"i{w}")

    def sext(self, reg: int, w: int) -> None:
        """Sign-extend reg's low w bits to 64."""
        if w >= 64:
            return
        r = reg & 7
        rex = 0x4D if reg >= 8 else 0x48
        if w == 32:
            self.buf += bytes((rex, 0x63, 0xC0 | r << 3 | r))
        elif w == 16:
            self.buf += bytes((rex, 0x0F, 0xBF, 0xC0 | r << 3 | r))
        elif w == 8:
            self.buf += bytes((rex, 0x0F, 0xBE, 0xC0 | r << 3 | r))
        elif w == 1:
            self.unary(3, reg)  # (0 or 1 -> 0 or -1)
        else:
            raise Unsupported(f"i{w}")

    def work(self, d: Val, *avoid: Any) -> int:
        """The register to compute d in: its own if it has one that none of `avoid` (the
        operands read after the computation has started) is in, else rax."""
        r = self.loc.get(d.id, STACK)
        if r is None or r == STACK:
            return RAX
        for v in avoid:
            if isinstance(v, Val) and v.const is None and self.loc.get(v.id, STACK) == r:
                return RAX
        return r

    def reg_of(self, v: Val) -> int | None:
        """The register v is in, if any."""
        if v.const is not None:
            return None
        r = self.loc.get(v.id, STACK)
        return None if r is None or r == STACK else r

    def operand(self, v: Val, scratch: int) -> int:
        """A register holding v to read: its own, else `scratch` loaded with it."""
        r = self.reg_of(v)
        if r is None:
            self.get(scratch, v)
            r = scratch
        return r

    def setcc(self, cc: int) -> None:  # rax = cc ? 1 : 0
        self.buf += bytes((0x0F, 0x90 | cc, 0xC0, 0x0F, 0xB6, 0xC0))

    # ---- values --------------------------------------------------------------------------
    @staticmethod
    def off(v: Val) -> int:
        return TEMPS + 16 * v.id

    def get(self, reg: int, v: Val) -> None:
        if v.const is not None:
            self.imm(reg, v.const)  # (of a 128-bit constant, the low half: `imm` masks)
            return
        r = self.loc.get(v.id, STACK)
        if r == STACK:
            self.load(reg, RSP, self.off(v))
        elif r != reg:
            self.mov(reg, r)

    def put(self, v: Val, reg: int) -> None:
        r = self.loc.get(v.id, STACK)
        if r == STACK:
            self.store(RSP, self.off(v), reg)
        elif r is not None and r != reg:  # (None: never read)
            self.mov(r, reg)

    def get_hi(self, reg: int, v: Val) -> None:
        if v.const is not None:
            self.imm(reg, v.const >> 64)
        else:
            self.load(reg, RSP, self.off(v) + 8)

    # ---- region --------------------------------------------------------------------------
    def _emit(self) -> None:
        blocks = self.blocks
        self.bbs = {blk.pc: ("B", blk.pc) for blk in blocks}
        self.ret_sites, self.heads, entries = L.region_shape(blocks, self.entries_in, True)
        self.entry_pcs = entries
        self.lands: dict[int, Any] = {}
        # (a block's temporaries are numbered 1..ntemps: `ir.Builder`; then what was left of
        # the time slice at entry, for the tier-up counter, and the slice's end: see `ICOUNT`)
        self.left0_at = TEMPS + 16 * (max(b.ntemps for b in blocks) + 1)
        self.limit_at = self.left0_at + 8
        self.flags_at = self.limit_at + 8  # (a byte per access group: `_grouped_access`)
        frame = self.flags_at + 8 * GROUPS if self.direct else self.limit_at + 8
        frame += 8 if frame % 16 == 0 else 0  # 6 pushes + return address: rsp 16-aligned at calls
        if frame >= 1 << 31:
            raise Unsupported("frame too big")
        slots = self._kept_slots()
        self.kept = dict(zip(slots, _KEEP_IN[: len(slots)], strict=True))
        b = self.buf
        b += b"\x53\x55\x41\x54\x41\x55\x41\x56\x41\x57"  # push rbx, rbp, r12..r15
        b += b"\x48\x81\xec" + frame.to_bytes(4, "little")  # sub rsp, frame
        self.mov(CTX, RDI)
        self.mov(ST, RSI)
        self.load(ICOUNT, CTX, 8 * L.CTX_LIMIT)
        self.store(RSP, self.limit_at, ICOUNT)
        self.buf += bytes((_rex(1, ICOUNT, ST), 0x2B)) + _mem(ICOUNT, ST, 8 * SLOT_ICOUNT)  # sub r14, count
        if self.counter is not None:
            self.store(RSP, self.left0_at, ICOUNT)
        for k, reg in self.kept.items():
            self.load(reg, ST, 8 * k)
        self.load(RAX, ST, 8 * SLOT_PC)
        miss = self.newlabel()
        cases = [(p, self.bbs[p]) for p in entries]
        if self.latent:
            # Every block can be entered, not only the entries: a later region's walk stops
            # at any of them instead of emitting its own copy (`JitEngine._latent`). The pc
            # the region was made for is tried first (where most entries go), then the rest.
            have = set(entries)
            self.latent_pcs = [blk.pc for blk in blocks if blk.pc not in have]
            cases += [(p, self.bbs[p]) for p in self.latent_pcs]
            if len(cases) > 4:
                self.cmp_const(RAX, cases[0][0])
                self.jcc(C_E, cases[0][1])
                cases = cases[1:]
        self._switch(cases, miss)
        self.bind(miss)
        self._exit(None, L.RET_MISS)
        # Slow paths go after all the blocks (`slows`: an access's label, its template, the
        # labels of its fault exit and of the code after the access), so that a block's code
        # runs on into the next block's (or its landing's): a branch to the code that follows
        # is no jump.
        self.slows: list[tuple[Any, Any, Any, Any]] = []
        for i, blk in enumerate(blocks):
            self.bind(self.bbs[blk.pc])
            if self.marks:  # (the first tier)
                self._mark(blk.pc)
            self.next_lab = self.bbs[blocks[i + 1].pc] if i + 1 < len(blocks) else None
            self._block(blk)
        for slow, t, fault, done in self.slows:
            self.bind(slow)
            self._place(t, fault, done)
        for lab, pc, code, dk in self.stubs:
            self.bind(lab)
            self._exit(pc, code, dk)
        for slot, target in self.chain_slots:
            self._chain_stub(self._chains[target], slot, target)
        # The one way out: state[pc] = rax, state[icount] = the slice's end - r14, the
        # region's counter, return edx; or, chained, the same and a jump to rcx with ctx and
        # state as its arguments.
        for chain in (False, True) if self.chain_slots else (False,):
            self.bind("chain" if chain else "tail")
            self.store(ST, 8 * SLOT_PC, RAX)
            self._count(RAX)
            self.store(ST, 8 * SLOT_ICOUNT, RAX)
            for k, reg in self.kept.items():
                self.store(ST, 8 * k, reg)
            if self.counter is not None:
                self.load(RDX if chain else RCX, CTX, 8 * L.CTX_COUNTERS)
                self.load(RAX, RSP, self.left0_at)
                self.alu(0x29, RAX, ICOUNT)  # sub rax, r14 (the instructions run here)
                # add [rcx|rdx + 8*counter], rax
                self.buf += bytes((0x48, 0x01)) + _mem(RAX, RDX if chain else RCX, 8 * self.counter)
            if chain:
                self.mov(RDI, CTX)
                self.mov(RSI, ST)
            else:
                self.buf += b"\x89\xd0"  # mov eax, edx
            b = self.buf
            b += b"\x48\x81\xc4" + frame.to_bytes(4, "little")  # add rsp, frame
            b += b"\x41\x5f\x41\x5e\x41\x5d\x41\x5c\x5d\x5b"  # pop r15..r12, rbp, rbx
            b += b"\xff\xe1" if chain else b"\xc3"  # jmp rcx | ret
        # the chained exits' words (zero until the engine sets them)
        self.buf += b"\xcc" * (-len(self.buf) % 8)
        for slot, _ in self.chain_slots:
            self.bind(slot)
            self.buf += bytes(8)

    def _count(self, reg: int) -> None:
        """reg = the instruction count (at the start of the current block): the time slice's
        end less what is left of it (r14)."""
        self.load(reg, RSP, self.limit_at)
        self.alu(0x29, reg, ICOUNT)  # sub reg, r14

    def _exit(self, pc: int | None, code: int, dk: int = 0) -> None:
        """Leave: pc (None: it is in rax), return code, dk instructions beyond the count."""
        if pc is not None:
            self.imm(RAX, pc)
        self.buf += bytes((0xBA,)) + code.to_bytes(4, "little")  # mov edx, code
        if dk:
            self.alu_imm(5, ICOUNT, dk)  # sub r14, dk
        self.jmp("tail")

    def _stub(self, pc: int, code: int, dk: int = 0) -> Any:
        """A label that leaves as `_exit` does, emitted after the body (for conditional exits)."""
        lab = self.newlabel()
        self.stubs.append((lab, pc, code, dk))
        return lab

    def _chain(self, target: int) -> Any:
        """The label of an exit to a constant pc outside the region, chained: while the time
        slice lasts it jumps straight to the translation of target (a tail call with ctx and
        state, after this region's exit work), through a word after the code that the engine
        points at it (`JitEngine._chain_to`: the translation in its table, else `Loader.thunk`,
        which returns RET_CONTINUE to the dispatcher as an ordinary exit would)."""
        lab = self._chains.get(target)
        if lab is None:
            lab = self._chains[target] = self.newlabel()
            self.chain_slots.append((self.newlabel(), target))
        return lab

    def _chain_stub(self, lab: Any, slot: Any, target: int) -> None:
        self.bind(lab)
        plain = self.newlabel()
        self.alu(0x85, ICOUNT, ICOUNT)  # test r14, r14 (what is left of the time slice)
        self.jcc(C_LE, plain)
        self.buf += b"\x48\x8b\x0d"  # mov rcx, [rip + slot]
        self._rel32(slot)
        self.imm(RAX, target)
        self.jmp("chain")
        self.bind(plain)
        self._exit(target, L.RET_CONTINUE)

    def _switch(self, cases: list[tuple[int, Any]], default: Any) -> None:
        """Jump to the label of rax's value among `cases` (pc, label), else to default."""
        cases = sorted(cases)
        while len(cases) > 4:
            mid = len(cases) // 2
            hi = self.newlabel()
            self.cmp_const(RAX, cases[mid][0])
            self.jcc(C_AE, hi)
            self._switch(cases[:mid], default)
            self.bind(hi)
            cases = cases[mid:]
        for x, lab in cases:
            self.cmp_const(RAX, x)
            self.jcc(C_E, lab)
        self.jmp(default)

    def _edge(self, target: int) -> None:
        """Continue at a constant target (no jump where its code comes next)."""
        lab = self._label(target)
        if lab != self._next():
            self.jmp(lab)

    def _branch(self, cc: int, target: int, fallthrough: int) -> None:
        """Continue at target when the flags say cc, else at fallthrough: one conditional
        jump where either one's code comes next (the condition inverted for the target)."""
        yes, no = self._label(target), self._label(fallthrough)
        nxt = self._next()
        if no == nxt:
            self.jcc(cc, yes)
        elif yes == nxt:
            self.jcc(cc ^ 1, no)  # (x86 condition codes come in pairs: the low bit negates)
        else:
            self.jcc(cc, yes)
            self.jmp(no)

    def _label(self, target: int) -> Any:
        lab = self._to(target)
        return self._chain(target) if lab is None else lab

    def _next(self) -> Any:
        """The label of the code that follows the current block's: its first landing, else
        the next block."""
        return self.landings[0][0] if self.landings else self.next_lab

    def _to(self, target: int) -> Any:
        if target not in self.bbs:
            return None
        if target > self.src_pc:
            return self.bbs[target]
        land = self.lands.get(target)
        if land is None:
            land = self.lands[target] = self.newlabel()
            self.landings.append((land, target))
        return land

    def _landing(self, land: Any, target: int) -> None:
        """A backward edge's time-slice check: on to the block while some of it is left."""
        self.bind(land)
        self.alu(0x85, ICOUNT, ICOUNT)  # test r14, r14
        self.jcc(C_G, self.bbs[target])
        self._exit(target, L.RET_CONTINUE)

    def _kept_slots(self) -> list[int]:
        """The guest registers the region keeps in host registers (`_KEEP_IN`: r15, then r13
        and r12) from its entry to its exits: the slots read and written most in the region's
        loops (each of them at least twice there), those a loop's block reads before writing
        first (a value carried round the loop), then the most used, so that a loop does not
        store them and load them back on every iteration (a store-to-load forward on its
        chains of dependent instructions, as QEMU's TCG does at every block boundary; a slot
        a block writes before it reads it is a temporary there). One where the region's
        loops call a helper (r12 and r13 then hold temporaries live across its calls:
        `_allocate`), three where they call none (a call outside them, in code that runs once
        each time round at most, has its temporaries in the frame). Not a slot a helper the
        region calls reads or writes, or that an FP shortcut reads (they take it from the
        state), nor any with a helper whose slots are not declared. The exit (`tail`,
        `chain`) stores them."""
        if not self.heads:
            return []  # (no backward edge: no loop, as every cycle has one)
        avoid: set[int] = set()
        for sc in self.shortcuts.values():
            avoid.update((sc[2], sc[3]))  # (fflags, frm)
        looping = L.looping_blocks(self.blocks)
        count: dict[int, int] = {}
        carried: set[int] = set()  # (read in a loop before it is written there)
        any_calls = False
        for blk in self.blocks:
            uses, touched, calls, reads = _slot_uses(blk, self.helpers)
            if touched is None:
                return []
            avoid |= touched
            if blk.pc in looping:
                any_calls |= calls
                carried |= reads
                for k, n in uses.items():
                    count[k] = count.get(k, 0) + n
        best = sorted(
            (k for k in count if k not in avoid and k not in (SLOT_PC, SLOT_ICOUNT) and count[k] >= 2),
            key=lambda k: (k not in carried, -count[k], k),
        )
        return best[: 1 if any_calls else len(_KEEP_IN)]

    def _mark(self, pc: int) -> None:
        """Mark the block at pc run: its byte in the table after ctx's words set to 1, one
        store relative to ctx (`lower.SEEN_AT`)."""
        at = L.SEEN_AT + L.seen_index(pc)
        self.buf += b"\xc6\x83" + at.to_bytes(4, "little") + b"\x01"  # mov byte [rbx+at], 1

    def _fault(self) -> Any:
        return self._stub(self.insn_pc, L.RET_FAULT, self.idx)

    def _check_status(self) -> None:
        self.buf += bytes((0x48, 0x83)) + _mem(7, CTX, 8 * L.CTX_STATUS) + b"\x00"  # cmp qword, 0
        self.jcc(C_NE, self._fault())

    def _prepare(
        self, blk: Block
    ) -> tuple[list[tuple[str, Val | None, tuple[Any, ...], int]], Any, dict[int, int], list[int]]:
        """The block's statements, every one in order, as (op, dst, args, instruction index)
        and its terminator's values, with, for `_allocate`, the index of the statement that
        reads each temporary last (the terminator's: the number of statements) and those of
        the statements that call out. (A guest register is read once per block already:
        `ir.Builder.get` reuses a value the block read or wrote, so a get here is a load of
        the state.)

        A put that a later put of the same slot overwrites, with nothing between them that
        could see the state (a memory access, which may fault and leave with the state as it
        was before its instruction; a helper call; a get of the slot), becomes `_NOP`: a
        compiler's code reuses a register within a block often (a fifth to a quarter of the
        puts of the bench programs' blocks), and QEMU's TCG drops such stores as dead too.
        First-tier-only cold bench_int (`POLYVM_HOT_STAY=1000000`, three alternating rounds,
        medians of the guest loop): 0.617 -> 0.602 s."""
        last: dict[int, int] = {}
        calls: list[int] = []
        accesses = 0
        out: list[tuple[str, Val | None, tuple[Any, ...], int]] = []
        append = out.append
        puts: dict[int, int] = {}  # slot -> its put's index, while nothing since could see it
        for idx, insn in enumerate(blk.insns):
            for st in insn.stmts:
                op, a = st.op, st.args
                i = len(out)
                for x in a:
                    if type(x) is Val and x.const is None:
                        last[x.id] = i
                if op in _CALLS:
                    if op == "call":
                        calls.append(i)
                    else:
                        accesses += 1
                    puts.clear()
                elif op == "put":
                    j = puts.get(a[0])
                    if j is not None:
                        out[j] = (_NOP, None, (), out[j][3])
                    puts[a[0]] = i
                elif op == "get":
                    puts.pop(a[0], None)
                append((op, st.dst, a, idx))
        t = blk.term
        n = len(out)
        for x in (t.cond, t.target):
            if type(x) is Val and x.const is None:
                last[x.id] = n
        return out, (t.cond, t.target), last, calls, accesses

    def _allocate(
        self,
        stmts: list[tuple[str, Val | None, tuple[Any, ...], int]],
        last: dict[int, int],
        calls: list[int],
    ) -> None:
        """Registers for the block's temporaries (`loc`: id -> register, STACK, or None for
        a value never read), by linear scan over the statements: r8-r11 for values that no
        helper call lies within (a memory access's slow path keeps them: `_slow_access`),
        r12/r13 for those across calls, the frame beyond that and for 128-bit values; and the
        register a guest register is kept in (`_kept_slots`) for a get of it and for the
        result of a read-modify-write of it (`_in_kept`)."""
        loc: dict[int, int | None] = {}
        ends: dict[int, list[int]] = {}  # statement index -> registers freed after it
        free_lo, free_hi = list(_SCRATCH), [r for r in _KEPT if r not in self.kept.values()]
        ci = 0
        ncalls = len(calls)
        hint = self._in_kept(stmts, last) if self.kept else {}
        for i, (_, d, _, _) in enumerate(stmts):
            freed = ends.pop(i, None)
            if freed:
                for reg in freed:
                    (free_hi if reg in _KEPT else free_lo).append(reg)
            if d is None:
                continue
            end = last.get(d.id)
            if end is None:
                loc[d.id] = None
                continue
            if hint:
                reg = hint.get(d.id)
                if reg is not None:
                    loc[d.id] = reg
                    continue
            if d.w > 64:
                loc[d.id] = STACK
                continue
            while ci < ncalls and calls[ci] <= i:
                ci += 1
            crosses = ci < ncalls and calls[ci] < end
            pool = free_hi if crosses else (free_lo or free_hi)
            if not pool:
                loc[d.id] = STACK
                continue
            reg = pool.pop()
            loc[d.id] = reg
            # (free once read for the last time: the statement that reads it may reuse it
            # for its own result, having read its operands first)
            ends.setdefault(end, []).append(reg)
        self.loc = loc

    def _in_kept(
        self, stmts: list[tuple[str, Val | None, tuple[Any, ...], int]], last: dict[int, int]
    ) -> dict[int, int]:
        """Temporaries that live in the register their guest register is kept in (temp id ->
        register): a get of a kept slot read for the last time before the next put of that
        slot (the register holds the slot's value until then); and `d = x op y` (64-bit add,
        sub, and, or, xor, mul, shifts) where x is the value in that register, read for the
        last time there, and d goes into the slot by the next put of it, with no memory
        access or helper call between them (a fault there must find the slot's old value in
        the state), d read for the last time before the put after that one: the register
        takes d's value a few statements early, so `addi a5, a5, 64` is one `add r15, 64`.
        (A block gets a slot once, before it puts it: `ir.Builder.get` reuses a value.)"""
        kept = self.kept
        puts: dict[int, list[int]] = {}  # kept slot -> the indices of its puts, in order
        for i, (op, _, a, _) in enumerate(stmts):
            if op == "put" and a[0] in kept:
                puts.setdefault(a[0], []).append(i)

        def next_put(k: int, i: int) -> int | None:
            for p in puts.get(k, ()):
                if p > i:
                    return p
            return None

        hint: dict[int, int] = {}
        held: dict[int, int] = {}  # temp id -> the kept slot whose register holds it now
        for i, (op, d, a, _) in enumerate(stmts):
            if op == "get":
                k = a[0]
                reg = kept.get(k)
                if reg is None or d.w != 64:
                    continue
                end = last.get(d.id)
                p = next_put(k, i)
                if end is not None and (p is None or end <= p):
                    hint[d.id] = reg
                    held[d.id] = k
            elif op == "put":
                k = a[0]
                if k in kept and held.get(a[1].id) != k:
                    held = {t: s for t, s in held.items() if s != k}  # (the register is written)
            elif (op in _ALU or op == "mul" or op in _SHIFT) and d.w == 64 and held:
                x, y = a
                k = held.get(x.id) if x.const is None else None
                if k is None and op in _COMMUTES and y.const is None:
                    k = held.get(y.id)
                    x = y
                if k is None or last.get(x.id) != i:
                    continue
                p = next_put(k, i)
                if p is None or stmts[p][2][1] is not d:
                    continue
                p2 = next_put(k, p)
                if p2 is not None and last.get(d.id, p) > p2:
                    continue
                if any(o in _CALLS for o, _, _, _ in stmts[i + 1 : p]):
                    continue
                hint[d.id] = kept[k]
                held[d.id] = k
        return hint

    def _block(self, blk: Block) -> None:
        self.src_pc = blk.pc
        self.landings: list[tuple[Any, int]] = []
        stmts, (cond, target), last, calls, accesses = self._prepare(blk)
        self._allocate(stmts, last, calls)
        # A branch on a compare that ends the block jumps on the compare's flags.
        self.fuse, self.fused = -1, None
        if (
            blk.term.kind == "branch"
            and stmts
            and stmts[-1][0] in _CMP_CC
            and isinstance(cond, Val)
            and stmts[-1][1] is cond
        ):
            self.fuse = cond.id
        groups = self._groups(blk) if self.direct and accesses > 1 else None
        if groups:
            self.groups += len({v[0] for v in groups.values()})
        self.acc = None
        for i, (op, d, a, idx) in enumerate(stmts):
            if op is _NOP:
                continue
            self.idx = idx
            self.insn_pc = blk.insns[idx].pc
            if groups:
                self.acc = groups.get(i)
            self._stmt(op, d, a)
        self.acc = None
        t = blk.term
        self.buf += b"\x4d\x8d" + _mem(ICOUNT, ICOUNT, -len(blk.insns))  # lea r14, [r14 - n] (flags kept)
        if t.kind == "exit":
            rid = L.EXIT_IDS.get(t.reason)
            if rid is None:
                raise Unsupported(f"exit {t.reason}")
            resume = t.target.const if t.target is not None and t.target.const is not None else 0
            if t.reason == "sync_icache":
                self._exit(resume, L.RET_CONTINUE)
            else:
                info = t.info
                if info is not None and not isinstance(info, int):
                    raise Unsupported("non-integer exit info")
                for k, x in (
                    (L.CTX_EXIT_REASON, rid | ((info is not None) << 8)),
                    (L.CTX_EXIT_RESUME, resume),
                    (L.CTX_EXIT_INFO, info or 0),
                ):
                    self.imm(RAX, x)
                    self.store(CTX, 8 * k, RAX)
                self._exit(t.pc, L.RET_EXIT)
        elif t.kind == "jump":
            assert t.target is not None
            if t.target.const is not None:
                self._edge(t.target.const)
            else:
                self.get(RAX, target)
                likely = sorted(set(self.ret_sites) | set(self.entry_pcs))
                default = self.newlabel()
                self._switch([(pc, self._to(pc)) for pc in likely], default)
                self.bind(default)
                self._exit(None, L.RET_CONTINUE)
        else:
            assert t.kind == "branch" and t.cond is not None and t.target is not None
            cc = self.fused
            if cc is None:
                self.get(RAX, cond)
                self.alu(0x85, RAX, RAX)
                cc = C_NE
            self._branch(cc, t.target.const, t.fallthrough)
        for land, target in self.landings:
            self._landing(land, target)

    # ---- statements ----------------------------------------------------------------------
    def _stmt(self, op: str, d: Any, a: tuple[Any, ...]) -> None:
        if op == "get":
            k = a[0]
            if k == SLOT_PC:
                raise Unsupported("get pc")
            if d.w > 64:
                raise Unsupported("128-bit get")
            w = self.work(d)
            if k == SLOT_ICOUNT:
                self._count(w)
            elif k in self.kept:
                if w != self.kept[k]:  # (else the value is read from its register: `_in_kept`)
                    self.mov(w, self.kept[k])
            else:
                self.load(w, ST, 8 * k)
            self.mask(w, d.w)
            self.put(d, w)
        elif op == "put":
            k, x = a
            if k in (SLOT_PC, SLOT_ICOUNT):
                raise Unsupported("put pc/icount")
            if x.w > 64:
                raise Unsupported("128-bit put")
            reg = self.kept.get(k)
            if reg is not None:
                if x.const is not None:
                    self.imm(reg, x.const)
                else:
                    src = self.operand(x, RAX)
                    if src != reg:  # (else computed there: `_in_kept`)
                        self.mov(reg, src)
            else:
                self.store(ST, 8 * k, self.operand(x, RAX))
        elif op == "load":
            if d.w > 64:
                raise Unsupported("128-bit memory access")
            self.get(RSI, a[0])
            self._access("ld", d.w)
            self.put(d, RAX)
        elif op == "store":
            self._store(a[0], a[1])
        elif op == "cstore":
            skip = self.newlabel()
            self.get(RAX, a[0])
            self.alu(0x85, RAX, RAX)
            self.jcc(C_E, skip)
            self._store(a[1], a[2])
            self.bind(skip)
        elif op == "call":
            self._call(a[0], a[1:], d)
        else:
            self._pure(op, d, a)

    def _store(self, addr: Val, val: Val) -> None:
        if val.w > 64:
            raise Unsupported("128-bit memory access")
        self.get(RSI, addr)
        self.get(RDX, val)
        self._access("st", val.w)

    def _access(self, kind: str, w: int) -> None:
        """A w-bit load (into rax, zero-extended) or store (of rdx) at the address in rsi:
        the software TLB's fast path inline (`lower._tlb_probe`: the entry of the address's
        page must have the page of the access's last byte as its read or write tag; the host
        address is then the guest's plus the entry's addend, or ctx's direct base), the
        runtime's access function (`lower.mem_fn_text`: the fast path again, then the slow
        path in Python) after the block, called when it misses, with r8-r11 (temporaries
        that live across the access: `_allocate`) saved around it.
        An access of a group (`_groups`) goes through `_grouped_access` instead."""
        acc = self.acc
        if acc is not None:
            self.acc = None
            self._grouped_access(kind, w, acc)
            return
        self._probed_access(kind, w)

    def _tlb_check(self, lo: int, hi: int, kinds: Any, miss: Any) -> None:
        """`lower._tlb_probe`'s check for the bytes rsi + lo .. rsi + hi: the TLB entry of
        the first byte's page must have the last byte's page as its tag for each kind of
        access ("ld": the read tag, "st": the write tag), else on to `miss`. Leaves the
        entry's address in rax; rsi and rdx are kept. (Its bytes for each (lo, hi, kinds)
        are made once: `_template`.)"""
        key = ("tlb", lo, hi, kinds)
        t = _TEMPLATES.get(key)
        if t is None:
            t = _template(key, lambda r: r._tlb_check_code(lo, hi, kinds))
        self._place(t, *[miss] * len(t[1]))  # (a jump to `miss` per kind checked)

    def _place(self, t: tuple[bytes, tuple[int, ...]], *labels: Any) -> None:
        """Append a template's bytes, its rel32 fields (in order) jumping to `labels`."""
        b = self.buf
        at = len(b)
        b += t[0]
        fixups = self.fixups
        for rel, lab in zip(t[1], labels, strict=True):
            fixups.append((at + rel, lab))

    def _tlb_check_code(self, lo: int, hi: int, kinds: Any) -> None:
        miss = "miss"
        b = self.buf
        # the entry's offset, ((addr >> 12) & (TLB_SIZE-1)) * 32, as (addr >> 7) & (that mask << 5)
        esh = (L.TLB_ENTRY_WORDS * 8).bit_length() - 1
        self._rsi_plus(RAX, lo)
        b += b"\x48\xc1\xe8" + bytes((L.PAGE_SHIFT - esh,))  # shr rax, 7
        b += b"\x25" + ((L.TLB_SIZE - 1) << esh).to_bytes(4, "little")  # and eax, 0x1fffe0
        b += b"\x48\x03\x03"  # add rax, [rbx]  (ctx word CTX_TLB = 0: the TLB)
        self._rsi_plus(RCX, hi)
        b += b"\x48\x81\xe1" + (-(1 << L.PAGE_SHIFT)).to_bytes(4, "little", signed=True)  # and rcx, page
        for k in ("ld", "st"):
            if k in kinds:
                b += b"\x48\x3b\x48" + bytes((0 if k == "ld" else 8,))  # cmp rcx, [rax + tag]
                self.jcc(C_NE, miss)

    def _rsi_plus(self, reg: int, d: int) -> None:
        """reg (rax or rcx) = rsi + d: `mov`, or `lea` with an 8- or 32-bit displacement."""
        if d == 0:
            self.buf += b"\x48\x89" + bytes((0xF0 | reg,))  # mov reg, rsi
        elif -128 <= d < 128:
            self.buf += b"\x48\x8d" + bytes((0x46 | reg << 3,)) + d.to_bytes(1, "little", signed=True)
        else:
            self.buf += b"\x48\x8d" + bytes((0x86 | reg << 3,)) + d.to_bytes(4, "little", signed=True)

    def _probed_access(self, kind: str, w: int) -> None:
        b = self.buf
        slow, done = self.newlabel(), self.newlabel()
        self._tlb_check(0, w // 8 - 1, (kind,), slow)
        if self.direct:
            # Guest memory is direct: the host address is the guest's plus ctx's base, a load
            # that does not wait on the entry's (a chased pointer's next load then waits on
            # the pointer alone); the entry only says the access may go ahead.
            self.load(RAX, CTX, 8 * L.CTX_GUEST_BASE)
        else:
            b += b"\x48\x8b\x40\x10"  # mov rax, [rax + 16]  (the addend)
        b += _ACCESS[kind, w]
        self.bind(done)
        self._slow_access(kind, w, slow, done)

    def _slow_access(self, kind: str, w: int, slow: Any, done: Any, first: bytes = b"") -> None:
        """After the block, at `slow`: (the bytes `first`, then) the runtime's access function
        for the access (rsi the address, rdx a store's value), its fault exit at the current
        instruction, and back to `done`."""
        fault = self._fault()
        key = ("slow", kind, w, first)
        t = _TEMPLATES.get(key)
        if t is None:
            t = _template(key, lambda r: r._slow_code(kind, w, first))
        self.slows.append((slow, t, fault, done))

    def _slow_code(self, kind: str, w: int, first: bytes) -> None:
        fn = 8 * (L.CTX_MEM_FN + L.MEM_FNS.index(f"{kind}{w}"))
        b = self.buf
        b += first
        b += _PUSH_SCRATCH  # (temporaries live across an access in r8-r11: `_allocate`)
        self.mov(RDI, CTX)
        self.call_mem(CTX, fn)
        b += _POP_SCRATCH  # (flags untouched: tested below)
        if kind == "ld":
            b += bytes((0x48, 0x83)) + _mem(7, CTX, 8 * L.CTX_STATUS) + b"\x00"
        else:
            self.alu(0x85, RAX, RAX)
        self.jcc(C_NE, "fault")
        self.jmp("done")

    def _groups(self, blk: Block) -> dict[int, Any]:
        """The block's groups of accesses checked in the TLB together (`lower.mem_groups`, as
        the hot tier has them), the first GROUPS of them: statement index (in `_prepare`'s
        order) -> (group, first?, the group's lowest and highest byte relative to this
        access's address, the kinds of access)."""
        groups = L.mem_groups(blk)
        out: dict[int, Any] = {}
        if not groups:
            return out
        numbers: dict[int, int] = {}
        i = -1
        for insn in blk.insns:
            for st in insn.stmts:
                i += 1
                g = groups.get(id(st))
                if g is None:
                    continue
                n = numbers.get(id(g))
                if n is None:
                    if len(numbers) == GROUPS:
                        continue
                    n = numbers[id(g)] = len(numbers)
                off = g.offs[id(st)]
                kinds = frozenset(k for k, on in (("ld", g.loads), ("st", g.stores)) if on)
                out[i] = (n, st is g.first, g.lo - off, g.hi - 1 - off, kinds)
        return out

    def _grouped_access(self, kind: str, w: int, acc: tuple[int, bool, int, int, frozenset[str]]) -> None:
        """An access of a group (`_groups`, direct guest memory only): the group's first
        access looks the TLB entry of the group's lowest byte up once, for every kind of
        access the group makes, with the page of its highest byte as the tag (so all of them
        lie in that page, which lets each of them go ahead), and keeps the answer in a frame
        byte; each access then tests that byte and goes straight to guest memory. Where the
        answer is no (a page boundary inside the group, a miss, a page that must take the
        slow path, as code pages' stores do), every access of the group calls the runtime's
        access function, after the block, as a probe that misses does (`_slow_access`: the
        TLB looked up again, then the slow path): the same faults, at the same instructions,
        as without groups. Nothing a block does between its accesses changes
        what the TLB allows (protections change only in system calls, which end blocks)."""
        g, first, dlo, dhi, kinds = acc
        flag = self.flags_at + 8 * g
        slow, done = self.newlabel(), self.newlabel()
        b = self.buf
        if first:
            self._tlb_check(dlo, dhi, kinds, slow)
            b += b"\xc6\x84\x24" + flag.to_bytes(4, "little") + b"\x01"  # mov byte [rsp + flag], 1
        else:
            b += b"\x80\xbc\x24" + flag.to_bytes(4, "little") + b"\x00"  # cmp byte [rsp + flag], 0
            self.jcc(C_E, slow)
        self.load(RAX, CTX, 8 * L.CTX_GUEST_BASE)
        self.buf += _ACCESS[kind, w]
        self.bind(done)
        # (no: this and the group's later accesses go through the runtime's access function,
        # which looks the TLB up again, then takes the slow path; mov byte [rsp + flag], 0)
        clear = b"\xc6\x84\x24" + flag.to_bytes(4, "little") + b"\x00" if first else b""
        self._slow_access(kind, w, slow, done, clear)

    def _call(self, name: str, xs: tuple[Val, ...], d: Val | None) -> None:
        h = self.helpers[name]
        if any(w > 64 for w in h.arg_widths) or (h.result_width or 0) > 64:
            raise Unsupported(f"helper {h.name} with 128-bit values")
        if len(xs) > 8:
            raise Unsupported(f"helper {h.name} with more than 8 arguments")
        done = None
        sc = self.shortcuts.get(name)
        n = _operands(sc[0]) if sc is not None else 0
        if (
            sc is not None
            and d is not None
            and len(xs) == n + 2  # (the operands, rm, the instruction)
            and xs[n].const in (0, sc[5])
            and (not sc[0].startswith("fma") or host_has_fma())
        ):
            done = self._nx_shortcut(sc, xs)
        for i, x in enumerate(xs):
            self.get(RAX, x)
            self.store(RSP, ARGS + 8 * i, RAX)
        idx = self.helper_index[name]
        self.mov(RDI, CTX)
        self.mov(RSI, ST)
        self.imm(RDX, idx)
        self.buf += b"\x48\x8d\x0c\x24"  # lea rcx, [rsp]
        if name in self.fast_paths:
            # through ctx's table of fast paths (`lower.fpn_wrapper_text`), as the LLVM form
            self.fpn_used.add(name)
            self.load(RAX, CTX, 8 * L.CTX_FPN)
            self.call_mem(RAX, 8 * idx)
        else:
            self.call_mem(CTX, 8 * L.CTX_CALL)
        self._check_status()
        if done is not None:
            self.bind(done)
        if d is not None and h.result_width is not None:
            self.mask(RAX, h.result_width)
            self.put(d, RAX)

    def _nx_shortcut(self, sc: tuple[str, int, int, int, int, int], xs: tuple[Val, ...]) -> Any:
        """An FP helper's accrued-NX shortcut (`fptables.X64_NX_SHORTCUT`), inline:
        under round-to-nearest-even (a static rm 0, or the dynamic rm with frm 0) and with NX
        already accrued, the host's operation (SSE2, or FMA3's fused multiply-add); a finite
        result above the smallest normal is the helper's, with no flag to add. Anything else
        goes on to the helper's call just after. Returns the label the result (in rax)
        continues at."""
        kind, opc, fflags, frm, nx, dyn = sc
        slow, done = self.newlabel(), self.newlabel()
        b = self.buf
        n = _operands(kind)
        if xs[n].const == dyn:
            b += b"\x48\x83" + _mem(7, ST, 8 * frm) + b"\x00"  # cmp qword [frm], 0
            self.jcc(C_NE, slow)
        b += b"\xf6" + _mem(0, ST, 8 * fflags) + bytes((nx,))  # test byte [fflags], NX
        self.jcc(C_E, slow)
        if kind.endswith("_s"):
            # binary32: every operand NaN-boxed (upper halves all ones: ANDed), the result too
            self.get(RAX, xs[0])
            for x in xs[1:n]:
                self.get(RCX, x)
                self.alu(0x21, RAX, RCX)  # and rax, rcx
            b += b"\x48\xc1\xe8\x20"  # shr rax, 32
            b += b"\x83\xf8\xff"  # cmp eax, -1
            self.jcc(C_NE, slow)
            self._fp_op(kind, opc, xs)
            b += b"\x66\x0f\x7e\xc0"  # movd eax, xmm0
            b += b"\x89\xc1\xd1\xe1"  # mov ecx, eax; shl ecx, 1
            b += b"\x81\xe9" + ((L.FLT_MIN_BITS + 1) << 1).to_bytes(4, "little")  # sub ecx, imm32
            b += b"\x81\xf9" + ((L.FLT_INF_BITS - L.FLT_MIN_BITS - 1) << 1).to_bytes(4, "little")  # cmp ecx
            self.jcc(C_AE, slow)
            self.imm(RDX, L.NAN_BOX)
            self.alu(0x09, RAX, RDX)  # or rax, rdx
            self.jmp(done)
            self.bind(slow)
            return done
        self._fp_op(kind, opc, xs)
        b += b"\x66\x48\x0f\x7e\xc0"  # movq rax, xmm0
        # |result| in (DBL_MIN, inf): the magnitude (sign shifted out) minus just above
        # DBL_MIN's, unsigned, below the span up to infinity's
        self.mov(RCX, RAX)
        b += b"\x48\xd1\xe1"  # shl rcx, 1
        self.imm(RDX, (L.DBL_MIN_BITS + 1) << 1)
        self.alu(0x29, RCX, RDX)
        self.imm(RDX, (L.INF_BITS - L.DBL_MIN_BITS - 1) << 1)
        self.alu(0x39, RCX, RDX)
        self.jcc(C_B, done)
        self.bind(slow)
        return done

    def _fp_op(self, kind: str, opc: int, xs: tuple[Val, ...]) -> None:
        """A shortcut's operation, its result in xmm0 (`_nx_shortcut`): binary64 (movq, the
        sd forms), or binary32 for a kind ending "_s" (movd of the low halves, the ss forms)."""
        b = self.buf
        single = kind.endswith("_s")
        mov = b"\x66\x0f\x6e" if single else b"\x66\x48\x0f\x6e"  # movd|movq xmm, r
        scalar = 0xF3 if single else 0xF2  # ss|sd
        kind = kind.removesuffix("_s")
        if kind == "fma":  # xmm0 = xmm1 * xmm2 +/- xmm0: the 231 form, c the accumulator
            for x, modrm in ((xs[0], b"\xc8"), (xs[1], b"\xd0"), (xs[2], b"\xc0")):
                self.get(RAX, x)
                b += mov + modrm  # xmm1|xmm2|xmm0 <- rax
            # vf(n)madd|vf(n)msub231sd|ss xmm0, xmm1, xmm2 (VEX.W1: sd, W0: ss)
            b += bytes((0xC4, 0xE2, 0x71 if single else 0xF1, opc, 0xC2))
            return
        self.get(RAX, xs[0])
        if kind == "sqrt":
            b += mov + b"\xc8"  # xmm1 <- rax
            b += bytes((scalar, 0x0F, opc, 0xC1))  # sqrtsd|sqrtss xmm0, xmm1
            return
        self.get(RCX, xs[1])
        b += mov + b"\xc0"  # xmm0 <- rax
        b += mov + b"\xc9"  # xmm1 <- rcx
        b += bytes((scalar, 0x0F, opc, 0xC1))  # add|sub|mul|div sd|ss xmm0, xmm1

    def _pure(self, op: str, d: Val, a: tuple[Any, ...]) -> None:
        w = d.w
        if op in ("zext", "sext", "trunc"):
            x = a[0]
            if w > 64 and x.w <= 64 and op != "trunc":
                self.get(RAX, x)
                if op == "sext":
                    self.sext(RAX, x.w)
                self.put(d, RAX)
                if op == "sext":
                    self.buf += b"\x48\xc1\xf8\x3f"  # sar rax, 63
                else:
                    self.buf += b"\x31\xc0"  # xor eax, eax
                self.store(RSP, self.off(d) + 8, RAX)
                return
            if x.w > 64 and w > 64:
                raise Unsupported("128-bit cast")
            r = self.work(d)
            self.get(r, x)  # (a 128-bit x: its low half)
            if op == "sext" and x.w < w:
                self.sext(r, x.w)
            self.mask(r, w)
            self.put(d, r)
            return
        wide = w > 64
        if not wide:
            for x in a:
                if type(x) is Val and x.w > 64:
                    wide = True
                    break
        if wide:
            self._wide(op, d, a)
            return
        if op == "select":
            self.get(RAX, a[1])
            self.get(RCX, a[2])
            self.get(RDX, a[0])
            self.alu(0x85, RDX, RDX)
            self.op2(0x40 | C_E, RAX, RCX)  # cmovz rax, rcx
            self.put(d, RAX)
            return
        if len(a) == 1:
            self._unop(op, d, a[0])
            return
        x, y = a
        aw = x.w
        if op in _CMP_CC:
            signed = op in ("slt", "sle") and aw < 64
            rx = self.operand(x, RAX) if not signed else RAX
            if signed:
                self.get(RAX, x)
                self.sext(RAX, aw)
            k = _imm32(y, aw, "signed" if op in ("slt", "sle") else "zext")
            if k is not None:
                self.alu_imm(7, rx, k)
            else:
                ry = self.operand(y, RCX) if not signed else RCX
                if signed:
                    self.get(RCX, y)
                    self.sext(RCX, aw)
                self.alu(0x39, rx, ry)
            if d.id == self.fuse:
                self.fused = _CMP_CC[op]  # (the block's branch tests the flags)
                return
            self.setcc(_CMP_CC[op])
            self.put(d, RAX)
            return
        if y.w != aw and not (op in _SHIFT and (y.w < aw or op in ("rotl", "rotr"))):
            raise Unsupported(f"{op} of mixed widths")
        if op in _ALU or op == "mul":
            if (
                op in _COMMUTES
                and y.const is None
                and self.loc.get(y.id) == self.loc.get(d.id)
                and (x.const is not None or self.loc.get(x.id) != self.loc.get(d.id))
            ):
                x, y = y, x  # (d in y's register, read last here: computed in place, no copies)
            w = self.work(d, y)
            self.get(w, x)
            k = None if op == "mul" else _imm32(y, aw, "wrap" if op in ("add", "sub") else "zext")
            if k is not None:
                self.alu_imm(_ALU_N[op], w, k)
            else:
                ry = self.operand(y, RCX)
                if op == "mul":
                    self.op2(0xAF, w, ry)  # imul w, ry
                else:
                    self.alu(_ALU[op], w, ry)
            if op not in ("and", "or", "xor"):
                self.mask(w, aw)
            self.put(d, w)
            return
        if op in _SHIFT:
            self._shift(op, d, x, y)
            return
        if op in ("udiv", "urem", "sdiv", "srem"):
            self._div(op, d, x, y)
            return
        raise Unsupported(f"IR op {op}")

    def _unop(self, op: str, d: Val, x: Val) -> None:
        w = d.w
        self.get(RAX, x)
        if op == "not":
            self.unary(2, RAX)
            self.mask(RAX, w)
        elif op == "neg":
            self.unary(3, RAX)
            self.mask(RAX, w)
        elif op == "clz":
            # bsr sets ZF for a zero input: w - 1 - (-1) = w then
            self.imm(RCX, (1 << 64) - 1)
            self.op2(0xBD, RAX, RAX)  # bsr rax, rax
            self.op2(0x40 | C_E, RAX, RCX)  # cmovz rax, rcx
            self.imm(RCX, w - 1)
            self.alu(0x29, RCX, RAX)
            self.mov(RAX, RCX)
        elif op == "ctz":
            self.imm(RCX, w)
            self.op2(0xBC, RAX, RAX)  # bsf rax, rax
            self.op2(0x40 | C_E, RAX, RCX)
        elif op == "popcnt":
            # clear the lowest set bit until none is left (no popcnt instruction needed)
            top, done = self.newlabel(), self.newlabel()
            self.buf += b"\x31\xc9"  # xor ecx, ecx
            self.bind(top)
            self.alu(0x85, RAX, RAX)
            self.jcc(C_E, done)
            self.buf += b"\x48\x8d\x50\xff"  # lea rdx, [rax-1]
            self.alu(0x21, RAX, RDX)
            self.buf += b"\x48\xff\xc1"  # inc rcx
            self.jmp(top)
            self.bind(done)
            self.mov(RAX, RCX)
        elif op == "bswap":
            if w not in (8, 16, 32, 64):
                raise Unsupported(f"bswap i{w}")
            if w > 8:
                self.buf += b"\x48\x0f\xc8"  # bswap rax
                if w < 64:
                    self.buf += bytes((0x48, 0xC1, 0xE8, 64 - w))  # shr rax, 64-w
        else:
            raise Unsupported(op)
        self.put(d, RAX)

    def _shift(self, op: str, d: Val, x: Val, y: Val) -> None:
        aw = x.w
        n = _SHIFT[op]
        if op in ("rotl", "rotr"):
            if aw == 1:
                self.get(RAX, x)
                self.put(d, RAX)
                return
            if aw not in _POW2:
                raise Unsupported(f"rotate i{aw}")
            self.get(RAX, x)
            self.get(RCX, y)
            # rol/ror al|ax|eax|rax, cl: x86 masks the count (5 or 6 bits), which is the
            # count modulo the width for these power-of-two widths
            pre = {8: b"\xd2", 16: b"\x66\xd3", 32: b"\xd3", 64: b"\x48\xd3"}[aw]
            self.buf += pre + bytes((0xC0 | n << 3,))
            self.put(d, RAX)
            return
        k = y.const
        if k is not None:
            r = self.work(d)
            self.get(r, x)
            if op == "ashr":
                self.sext(r, aw)
            if k >= aw:
                if op == "ashr":
                    k = aw - 1
                else:
                    self.buf += b"\x31\xc0"  # xor eax, eax
                    self.put(d, RAX)
                    return
            if k:
                self.buf += bytes((_rex(1, 0, r), 0xC1, 0xC0 | n << 3 | r & 7, k))
            self.mask(r, aw)
            self.put(d, r)
            return
        self.get(RAX, x)
        if op == "ashr":
            self.sext(RAX, aw)
        self.get(RCX, y)
        if op == "ashr":
            self.imm(RDX, aw - 1)
            self.alu(0x39, RCX, RDX)
            self.op2(0x40 | C_A, RCX, RDX)  # cmova rcx, rdx
            self.buf += b"\x48\xd3\xf8"  # sar rax, cl
        else:
            self.buf += bytes((0x48, 0xD3, 0xC0 | n << 3))
            self.buf += b"\x31\xd2"  # xor edx, edx
            self.alu_imm(7, RCX, aw)  # cmp rcx, aw
            self.op2(0x40 | C_AE, RAX, RDX)  # cmovae rax, rdx
        self.mask(RAX, aw)
        self.put(d, RAX)

    def _div(self, op: str, d: Val, x: Val, y: Val) -> None:
        aw = x.w
        signed = op in ("sdiv", "srem")
        rem = op in ("urem", "srem")
        self.get(RAX, x)
        self.get(RCX, y)
        if signed:
            self.sext(RAX, aw)
            self.sext(RCX, aw)
        zero, done = self.newlabel(), self.newlabel()
        self.alu(0x85, RCX, RCX)
        self.jcc(C_E, zero)
        if signed:
            if aw == 64:
                # INT64_MIN / -1: the quotient is x, the remainder 0 (idiv would trap)
                go = self.newlabel()
                self.alu_imm(7, RCX, -1)
                self.jcc(C_NE, go)
                if rem:
                    self.buf += b"\x31\xc0"  # xor eax, eax
                else:
                    self.unary(3, RAX)  # neg rax (x / -1; INT64_MIN stays itself)
                self.jmp(done)
                self.bind(go)
            self.buf += b"\x48\x99"  # cqo
            self.unary(7, RCX)  # idiv rcx
        else:
            self.buf += b"\x31\xd2"  # xor edx, edx
            self.unary(6, RCX)  # div rcx
        if rem:
            self.mov(RAX, RDX)
        self.jmp(done)
        self.bind(zero)
        if not rem:
            self.imm(RAX, (1 << 64) - 1)
        self.bind(done)
        self.mask(RAX, aw)
        self.put(d, RAX)

    def _wide(self, op: str, d: Val, a: tuple[Any, ...]) -> None:
        """128-bit values: the full multiply and the shifts by a constant that `mulh` lifts to
        (zext/sext to 128, mul, lshr 64, trunc); anything else goes to LLVM."""
        if op == "mul" and d.w == 128:
            x, y = a
            # (x.hi*2^64 + x.lo)(y.hi*2^64 + y.lo) mod 2^128
            self.get(RAX, x)
            self.get_hi(RCX, y)
            self.op2(0xAF, RCX, RAX)  # rcx = x.lo * y.hi
            self.get_hi(RAX, x)
            self.get(RDX, y)
            self.op2(0xAF, RAX, RDX)  # rax = x.hi * y.lo
            self.alu(0x01, RCX, RAX)
            self.get(RAX, x)
            self.get(RDX, y)
            self.buf += b"\x48\xf7\xe2"  # mul rdx: rdx:rax = x.lo * y.lo
            self.alu(0x01, RDX, RCX)
            self.put(d, RAX)
            self.store(RSP, self.off(d) + 8, RDX)
            return
        if op in ("lshr", "shl", "ashr") and d.w == 128 and a[1].const is not None and a[1].const == 64:
            x = a[0]
            if op == "shl":
                self.get(RAX, x)
                self.store(RSP, self.off(d) + 8, RAX)
                self.buf += b"\x31\xc0"
                self.put(d, RAX)
            else:
                self.get_hi(RAX, x)
                self.put(d, RAX)
                if op == "ashr":
                    self.buf += b"\x48\xc1\xf8\x3f"  # sar rax, 63
                else:
                    self.buf += b"\x31\xc0"
                self.store(RSP, self.off(d) + 8, RAX)
            return
        raise Unsupported(f"128-bit {op}")


def _imm32(y: Val, w: int, how: str) -> int | None:
    """y as an instruction's 32-bit immediate (which x86 sign-extends to 64 bits), if it can
    be one: "zext" for an operand kept zero-extended (logic, unsigned and equality compares),
    "signed" for one sign-extended from w bits (signed compares), "wrap" where the result is
    taken modulo 2**w (add, sub)."""
    c = y.const
    if c is None:
        return None
    c &= (1 << w) - 1
    if how == "zext":
        s = c if c < 1 << 31 or w < 64 else c - (1 << 64)
    else:
        s = c - (1 << w) if c >> (w - 1) else c
    return s if -(1 << 31) <= s < 1 << 31 else None


def link(regions: dict[str, X64Region]) -> bytes:
    """Regions (symbol -> emitted region) as one blob: what the translation cache stores as an
    object. Its table: symbol -> (offset, ((offset of a chained exit's word, target pc), ...))."""
    table: dict[str, tuple[int, tuple[tuple[int, int], ...]]] = {}
    body = bytearray()
    for sym, r in regions.items():
        body += b"\xcc" * (-len(body) % 16)  # (int3 padding: 16-byte aligned entries)
        table[sym] = (len(body), tuple((len(body) + o, pc) for o, pc in r.chains))
        body += r.code
    tab = marshal.dumps(table)
    return MAGIC + len(tab).to_bytes(4, "little") + tab + bytes(body)


def _good_table(table: Any, size: int) -> bool:
    def entry(v: Any) -> bool:
        return (
            isinstance(v, tuple)
            and len(v) == 2
            and isinstance(v[0], int)
            and 0 <= v[0] < size
            and isinstance(v[1], tuple)
            and all(
                isinstance(c, tuple)
                and len(c) == 2
                and all(isinstance(x, int) for x in c)
                and 0 <= c[0] <= size - 8
                and c[0] % 8 == 0
                for c in v[1]
            )
        )

    return isinstance(table, dict) and all(isinstance(k, str) and entry(v) for k, v in table.items())


def is_blob(obj: bytes) -> bool:
    """Emitted code (of any format version: `Loader.load` refuses other versions; never
    LLVM's to load, which may crash on what is not an object file)."""
    return obj[:6] == MAGIC[:6]


class Loader:
    """Executable memory for blobs (`link`): mapped read-write-execute in chunks, never freed
    (like the objects LLVM's MCJIT loads)."""

    CHUNK = 4 << 20

    def __init__(self) -> None:
        self._maps: list[mmap.mmap] = []
        self._base = 0
        self._pos = 0
        self._size = 0
        self._loaded: dict[bytes, dict[str, int]] = {}
        self.sizes: dict[str, int] = {}
        # a region's address -> its chained exits (address of the word, target pc)
        self.chains: dict[int, list[tuple[int, int]]] = {}
        self._thunk = 0

    @property
    def thunk(self) -> int:
        """Where a chained exit goes while its target has no translation: `xor eax, eax;
        ret`, back to the dispatcher with RET_CONTINUE (the pc and count already stored)."""
        if not self._thunk:
            self._thunk = self._place(b"\x31\xc0\xc3")
        return self._thunk

    def reserve(self, n: int, align: int = 16) -> int:
        """The address of n bytes of executable memory, aligned to `align` (a power of two,
        at most a page), for the caller to write (`elfload` places LLVM's objects here)."""
        at = (self._pos + align - 1) & -align
        if at + n > self._size:
            size = max(self.CHUNK, (n + 4095) & ~4095)
            # (private: a forked guest process places its own code where its parent places
            # other code; Python's default for anonymous maps is shared)
            m = mmap.mmap(-1, size, flags=_PRIVATE, prot=_RWX)
            self._maps.append(m)
            self._base = ctypes.addressof(ctypes.c_char.from_buffer(m))
            self._size, at = size, 0
        self._pos = (at + n + 15) & ~15
        return self._base + at

    def _place(self, code: bytes) -> int:
        addr = self.reserve(len(code))
        ctypes.memmove(addr, code, len(code))
        return addr

    def load(self, blob: bytes, names: list[str]) -> dict[str, int]:
        """Place a blob (once) and return the addresses of `names` in it."""
        key = hashlib.sha256(blob).digest()
        syms = self._loaded.get(key)
        if syms is None:
            if blob[: len(MAGIC)] != MAGIC or len(blob) < len(MAGIC) + 4:
                raise ValueError("not an emitted-code blob of this version")
            n = int.from_bytes(blob[len(MAGIC) : len(MAGIC) + 4], "little")
            start = len(MAGIC) + 4
            try:
                table = marshal.loads(blob[start : start + n])
            except (EOFError, ValueError, TypeError) as e:
                raise ValueError("bad symbol table") from e
            code = blob[start + n :]
            if not _good_table(table, len(code)):
                raise ValueError("bad symbol table")
            base = self._place(code)
            syms = self._loaded[key] = {k: base + v[0] for k, v in table.items()}
            ends = sorted(v[0] for v in table.values()) + [len(code)]
            for k, (v, chains) in table.items():
                self.sizes[k] = ends[ends.index(v) + 1] - v  # (for perf's map: to the next symbol)
                self.chains[base + v] = [(base + o, pc) for o, pc in chains]
        missing = [n for n in names if n not in syms]
        if missing:
            raise RuntimeError(f"symbol {missing[0]} missing from emitted code")
        return {n: syms[n] for n in names}
