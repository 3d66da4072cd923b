"""A loader for the object files LLVM makes for this host, without LLVM.

The hot tier's objects, the runtime module and the helpers' fast paths are relocatable x86-64
ELF files (`Compiler.compile`: position-independent code, large code model) that reach
everything outside themselves through `ctx`, so they hold only relocations between their own
sections and against the GOT's address, which none of them dereferences. Placing such an
object is copying its allocated sections into executable memory and applying a handful of
relocation kinds, which this module does in Python; loading them through llvmlite's MCJIT
instead costs a run the import of LLVM's library (20-30 ms: a warm run otherwise needs LLVM
for nothing). An object this loader does not recognise (another machine, an undefined symbol
such as a libm function, a relocation kind not listed here) is left to MCJIT: `load` returns
None and changes nothing.

The unwind tables (`.eh_frame`) are not loaded: nothing unwinds through translated code.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
_RELA = struct.Struct("<QQq")

EM_X86_64 = 62
SHT_PROGBITS, SHT_SYMTAB, SHT_RELA, SHT_NOBITS, SHT_REL = 1, 2, 4, 8, 9
SHT_X86_64_UNWIND = 0x70000001
SHF_ALLOC = 0x2
SHN_UNDEF, SHN_ABS = 0, 0xFFF1
STT_FUNC = 2

R_NONE, R_64, R_PC32, R_PC64, R_GOTOFF64, R_GOTPC32, R_GOTPC64 = 0, 1, 2, 24, 25, 26, 29
_GOT = b"_GLOBAL_OFFSET_TABLE_"


class Unsupported(Exception):
    """Not an object this loader places (MCJIT's to load)."""


class Placed:
    """A placed object: its function symbols (name -> address) and their sizes."""

    __slots__ = ("symbols", "sizes")

    def __init__(self, symbols: dict[str, int], sizes: dict[str, int]) -> None:
        self.symbols, self.sizes = symbols, sizes


def _cstr(table: bytes, at: int) -> bytes:
    end = table.find(b"\0", at)
    if end < 0:
        raise Unsupported("bad string table")
    return table[at:end]


def load(obj: bytes, reserve: Callable[[int, int], int]) -> Placed | None:
    """Place `obj` (an x86-64 relocatable ELF file) in memory that `reserve(size, align)`
    returns the address of (writable and executable, at least `size` bytes), or None where
    the object is not one this loader handles (found before anything is reserved, but for a
    32-bit relocation out of range, which an image under 2 GiB cannot have)."""
    try:
        return _load(obj, reserve)
    except (Unsupported, struct.error, IndexError, ValueError):
        return None


def _load(obj: bytes, reserve: Callable[[int, int], int]) -> Placed:
    if len(obj) < _EHDR.size:
        raise Unsupported("short")
    ident, e_type, machine, _, _, _, shoff, _, _, _, _, shentsize, shnum, shstrndx = _EHDR.unpack_from(obj)
    # (64-bit, little-endian, relocatable, for x86-64)
    if ident[:4] != b"\x7fELF" or ident[4] != 2 or ident[5] != 1 or e_type != 1 or machine != EM_X86_64:
        raise Unsupported("not an x86-64 relocatable object")
    if shentsize != _SHDR.size or shoff + shnum * shentsize > len(obj):
        raise Unsupported("bad section table")
    secs = [_SHDR.unpack_from(obj, shoff + i * shentsize) for i in range(shnum)]
    # Layout: every allocated section but the unwind tables, each at its alignment.
    where: dict[int, int] = {}  # section index -> offset in the image
    size, align = 0, 16
    for i, (_, typ, flags, _, off, n, _, _, al, _) in enumerate(secs):
        if not flags & SHF_ALLOC or typ == SHT_X86_64_UNWIND:
            continue
        if typ not in (SHT_PROGBITS, SHT_NOBITS) or (typ == SHT_PROGBITS and off + n > len(obj)):
            raise Unsupported("section")
        al = max(al, 1)
        if al & (al - 1) or al > 4096:
            raise Unsupported("alignment")
        size = (size + al - 1) & -al
        where[i] = size
        size += n
        align = max(align, al)
    image = bytearray(size)
    for i, at in where.items():
        _, typ, _, _, off, n, _, _, _, _ = secs[i]
        if typ == SHT_PROGBITS:
            image[at : at + n] = obj[off : off + n]
    symtabs = [i for i, s in enumerate(secs) if s[1] == SHT_SYMTAB]
    if len(symtabs) != 1:
        raise Unsupported("symbol table")
    st = secs[symtabs[0]]
    if st[9] != _SYM.size or st[4] + st[5] > len(obj):
        raise Unsupported("symbol table")
    strs = secs[st[6]]
    strtab = obj[strs[4] : strs[4] + strs[5]]
    syms = [_SYM.unpack_from(obj, st[4] + k * _SYM.size) for k in range(st[5] // _SYM.size)]
    # Relocations are checked before anything is reserved (an object MCJIT must load after all
    # costs no executable memory).
    relas: list[tuple[int, list[tuple[int, int, int, int]]]] = []  # (image offset, (off, type, sym, addend))
    for _, typ, _, _, off, n, link, info, _, entsize in secs:
        if typ == SHT_REL:
            raise Unsupported("REL relocations")
        if typ != SHT_RELA:
            continue
        if info not in where:
            if secs[info][1] == SHT_X86_64_UNWIND:
                continue  # (the unwind tables' own)
            raise Unsupported("relocations of a section not loaded")
        if link != symtabs[0] or entsize != _RELA.size or off + n > len(obj):
            raise Unsupported("relocation table")
        rs = []
        for k in range(n // _RELA.size):
            r_off, r_info, addend = _RELA.unpack_from(obj, off + k * _RELA.size)
            rtype, rsym = r_info & 0xFFFFFFFF, r_info >> 32
            if rtype not in (R_NONE, R_64, R_PC32, R_PC64, R_GOTOFF64, R_GOTPC32, R_GOTPC64):
                raise Unsupported(f"relocation type {rtype}")
            if r_off + 8 > secs[info][5] + (4 if rtype in (R_PC32, R_GOTPC32) else 0):
                raise Unsupported("relocation outside its section")
            if rsym >= len(syms):
                raise Unsupported("relocation symbol")
            shndx = syms[rsym][3]
            if shndx == SHN_UNDEF and rsym and _cstr(strtab, syms[rsym][0]) != _GOT:
                raise Unsupported("undefined symbol")
            if shndx not in (SHN_UNDEF, SHN_ABS) and shndx not in where:
                raise Unsupported("symbol in a section not loaded")
            rs.append((r_off, rtype, rsym, addend))
        relas.append((where[info], rs))
    base = reserve(max(size, 1), align)
    got = base  # (the GOT's address: only differences to it are used, and nothing is in it)

    def value(k: int) -> int:
        _, _, _, shndx, v, _ = syms[k]
        if shndx == SHN_UNDEF:
            return got if k else 0
        if shndx == SHN_ABS:
            return v
        return base + where[shndx] + v

    for sec_at, rs in relas:
        for r_off, rtype, rsym, addend in rs:
            at = sec_at + r_off
            p = base + at
            s = value(rsym)
            if rtype == R_NONE:
                continue
            if rtype == R_64:
                x, w = s + addend, 8
            elif rtype == R_PC64:
                x, w = s + addend - p, 8
            elif rtype == R_GOTOFF64:
                x, w = s + addend - got, 8
            elif rtype == R_GOTPC64:
                x, w = got + addend - p, 8
            elif rtype == R_PC32:
                x, w = s + addend - p, 4
            else:  # R_GOTPC32
                x, w = got + addend - p, 4
            if w == 4 and not -(1 << 31) <= x < 1 << 31:
                raise Unsupported("32-bit relocation out of range")
            image[at : at + w] = (x & ((1 << (8 * w)) - 1)).to_bytes(w, "little")
    ctypes.memmove(base, bytes(image), size)
    symbols: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for name, info, _, shndx, v, n in syms:
        if info & 0xF == STT_FUNC and shndx in where:
            s = _cstr(strtab, name).decode()
            symbols[s] = base + where[shndx] + v
            sizes[s] = n
    return Placed(symbols, sizes)
