"""ELF64 loading (static and static-PIE executables) and the initial process stack.

Parsing is done by hand against the ELF specification so that every malformed input ends in
one `LoadError` line saying what is wrong, never a host exception.
"""

from __future__ import annotations

import os
import struct

from polyvm.memory import (
    PAGE_MASK,
    PAGE_SIZE,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
    AddressSpace,
    page_align_down,
    page_align_up,
)
from polyvm.record import Record

ET_EXEC, ET_DYN = 2, 3
PT_LOAD, PT_INTERP, PT_PHDR, PT_TLS = 1, 3, 6, 7
PT_GNU_STACK = 0x6474E551
PF_X, PF_W, PF_R = 1, 2, 4

MACHINES = {
    3: "x86",
    8: "MIPS",
    20: "PowerPC",
    21: "PowerPC64",
    40: "ARM",
    62: "x86-64",
    183: "AArch64",
    243: "RISC-V",
}

# auxv tags
AT_NULL, AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_BASE, AT_FLAGS, AT_ENTRY = 0, 3, 4, 5, 6, 7, 8, 9
AT_UID, AT_EUID, AT_GID, AT_EGID, AT_PLATFORM, AT_HWCAP, AT_CLKTCK = 11, 12, 13, 14, 15, 16, 17
AT_SECURE, AT_RANDOM, AT_HWCAP2, AT_EXECFN, AT_MINSIGSTKSZ = 23, 25, 26, 31, 51

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")

# Guest memory layout, as Linux lays out a RISC-V process on an Sv39 MMU (TASK_SIZE = 1 << 38,
# 256 GiB; also the default mmap window of newer kernels on Sv48 and Sv57 ones): all of it is one
# direct window of the AddressSpace (guest address + a fixed host offset).
TASK_SIZE = 1 << 38
PIE_BASE = page_align_up(TASK_SIZE // 3 * 2)  # ELF_ET_DYN_BASE: 0x2aaaaaaab000
STACK_TOP = TASK_SIZE - PAGE_SIZE
STACK_SIZE = 8 << 20
MMAP_BASE = STACK_TOP - STACK_SIZE - (128 << 20)  # below the stack and its guard gap
MAX_IMAGE = 1 << 30  # polyvm maps pages eagerly: refuse images that would need more than this


class LoadError(Exception):
    """The file cannot be loaded; str(e) is one line saying why."""


class Segment(Record):
    _fields = ("start", "end", "prot", "offset")

    def __init__(self, start: int, end: int, prot: int, offset: int) -> None:
        self.start = start
        self.end = end
        self.prot = prot
        self.offset = offset


class Image(Record):
    _fields = ("entry", "phdr", "phent", "phnum", "bias", "brk", "exec_stack", "segments", "tls")

    def __init__(
        self,
        entry: int,
        phdr: int,
        phent: int,
        phnum: int,
        bias: int,
        brk: int,  # first page after the highest segment: where the heap starts
        exec_stack: bool,
        segments: list[Segment] | None = None,
        tls: tuple[int, int, int, int] | None = None,  # vaddr, filesz, memsz, align
    ) -> None:
        self.entry = entry
        self.phdr = phdr
        self.phent = phent
        self.phnum = phnum
        self.bias = bias
        self.brk = brk
        self.exec_stack = exec_stack
        self.segments: list[Segment] = [] if segments is None else segments
        self.tls = tls


def _prot(flags: int) -> int:
    return (
        (PROT_READ if flags & PF_R else 0)
        | (PROT_WRITE if flags & PF_W else 0)
        | (PROT_EXEC if flags & PF_X else 0)
    )


def parse_and_map(data: bytes, mem: AddressSpace, machine: int, *, max_image: int = MAX_IMAGE) -> Image:
    """Check `data` is a loadable ELF64 executable for `machine` and map its segments into `mem`."""
    if len(data) < 4 or data[:4] != b"\x7fELF":
        raise LoadError("not an ELF file (bad magic)")
    if len(data) < _EHDR.size:
        raise LoadError(f"truncated ELF header ({len(data)} bytes, need {_EHDR.size})")
    (ident, e_type, e_machine, _ver, e_entry, e_phoff, _shoff, _flags, _ehsize, e_phentsize, e_phnum, *_) = (
        _EHDR.unpack_from(data)
    )
    if ident[4] != 2:
        raise LoadError("not a 64-bit ELF file (EI_CLASS is not ELFCLASS64)")
    if ident[5] != 1:
        raise LoadError("not a little-endian ELF file")
    if e_machine != machine:
        got = MACHINES.get(e_machine, f"machine {e_machine}")
        raise LoadError(f"wrong architecture: ELF is for {got}, expected {MACHINES.get(machine, machine)}")
    if e_type not in (ET_EXEC, ET_DYN):
        raise LoadError(f"not an executable (ELF type {e_type})")
    if e_phentsize != _PHDR.size:
        raise LoadError(f"bad program header size {e_phentsize}")
    if e_phnum == 0 or e_phnum > 4096:
        raise LoadError(f"bad program header count {e_phnum}")
    if e_phoff + e_phnum * _PHDR.size > len(data):
        raise LoadError("truncated file: program headers extend past the end")

    loads: list[tuple[int, int, int, int, int, int]] = []  # vaddr, memsz, offset, filesz, flags, align
    phdr_vaddr = None
    exec_stack = False
    tls = None
    for i in range(e_phnum):
        p_type, p_flags, p_offset, p_vaddr, _paddr, p_filesz, p_memsz, p_align = _PHDR.unpack_from(
            data, e_phoff + i * _PHDR.size
        )
        if p_type == PT_INTERP:
            raise LoadError("dynamically linked executables are not supported (it has PT_INTERP)")
        if p_type == PT_GNU_STACK:
            exec_stack = bool(p_flags & PF_X)
        elif p_type == PT_PHDR:
            phdr_vaddr = p_vaddr
        elif p_type in (PT_LOAD, PT_TLS):
            if p_filesz > p_memsz:
                raise LoadError(f"program header {i}: file size exceeds memory size")
            if p_offset + p_filesz > len(data) or p_offset > len(data):
                raise LoadError(f"truncated file: segment {i} extends past the end of the file")
            if p_vaddr + p_memsz >= TASK_SIZE:
                raise LoadError(f"program header {i}: address {p_vaddr:#x}+{p_memsz:#x} out of range")
            if p_type == PT_TLS:
                tls = (p_vaddr, p_filesz, p_memsz, p_align)
            elif p_memsz:
                if (p_vaddr - p_offset) & PAGE_MASK:
                    raise LoadError(
                        f"segment {i}: address and file offset are not congruent modulo the page size"
                    )
                loads.append((p_vaddr, p_memsz, p_offset, p_filesz, p_flags, p_align))
    if not loads:
        raise LoadError("no loadable segments")

    lo = min(page_align_down(v) for v, *_ in loads)
    hi = max(page_align_up(v + m) for v, m, *_ in loads)
    if hi - lo > max_image:
        raise LoadError(f"segments span {hi - lo:#x} bytes, more than polyvm maps ({max_image:#x})")
    if e_type == ET_DYN:
        bias = PIE_BASE - lo
    else:
        bias = 0
        if lo < PAGE_SIZE * 16:
            raise LoadError(f"segment at {lo:#x} is below the minimum mapping address")

    img = Image(
        entry=(e_entry + bias) & ((1 << 64) - 1),
        phdr=0,
        phent=e_phentsize,
        phnum=e_phnum,
        bias=bias,
        brk=hi + bias,
        exec_stack=exec_stack,
        tls=(tls[0] + bias, *tls[1:]) if tls else None,
    )
    for vaddr, memsz, offset, filesz, flags, _align in loads:
        start = page_align_down(vaddr + bias)
        end = page_align_up(vaddr + bias + memsz)
        prot = _prot(flags)
        # Pages shared with an earlier segment keep their contents and get both protections.
        for s, e, old in mem.regions():
            s, e = max(s, start), min(e, end)
            if s < e and old | prot != old:
                mem.protect(s, e - s, old | prot)
        for a, b in mem.gaps(start, end - start):
            mem.map(a, b - a, prot)
        mem.write_raw(vaddr + bias, data[offset : offset + filesz])
        img.segments.append(Segment(start, end, prot, page_align_down(offset)))
    if phdr_vaddr is not None:
        img.phdr = phdr_vaddr + bias
    else:
        for vaddr, _memsz, offset, filesz, _flags, _align in loads:
            if offset <= e_phoff < offset + filesz:
                img.phdr = vaddr + (e_phoff - offset) + bias
                break
        else:
            img.phdr = lo + e_phoff + bias
    return img


def build_stack(
    mem: AddressSpace,
    img: Image,
    argv: list[bytes],
    envp: list[bytes],
    *,
    execfn: bytes,
    hwcap: int,
    minsigstksz: int,
    platform: bytes | None = None,
    ids: tuple[int, int, int, int] = (0, 0, 0, 0),
    random: bytes | None = None,
    top: int = STACK_TOP,
    size: int = STACK_SIZE,
    exec_stack: bool = False,
) -> int:
    """Map the stack and write argc, argv, envp and the auxiliary vector; returns the initial sp."""
    prot = PROT_READ | PROT_WRITE | (PROT_EXEC if exec_stack else 0)
    mem.map(top - size, size, prot)
    sp = top - 8  # an 8-byte zero end marker, as Linux leaves

    def push_str(s: bytes) -> int:
        nonlocal sp
        sp -= len(s) + 1
        mem.write_raw(sp, s + b"\0")
        return sp

    execfn_addr = push_str(execfn)
    env_addrs = [push_str(e) for e in reversed(envp)][::-1]
    arg_addrs = [push_str(a) for a in reversed(argv)][::-1]
    plat_addr = push_str(platform) if platform else 0
    sp &= ~15
    rnd = random if random is not None else os.urandom(16)
    sp -= 16
    rand_addr = sp
    mem.write_raw(sp, rnd)
    uid, euid, gid, egid = ids
    auxv = [
        (AT_PHDR, img.phdr),
        (AT_PHENT, img.phent),
        (AT_PHNUM, img.phnum),
        (AT_PAGESZ, PAGE_SIZE),
        (AT_BASE, 0),
        (AT_FLAGS, 0),
        (AT_ENTRY, img.entry),
        (AT_UID, uid),
        (AT_EUID, euid),
        (AT_GID, gid),
        (AT_EGID, egid),
        (AT_HWCAP, hwcap),
        (AT_CLKTCK, 100),
        (AT_SECURE, 0),
        (AT_RANDOM, rand_addr),
        (AT_EXECFN, execfn_addr),
        (AT_MINSIGSTKSZ, minsigstksz),
    ]
    if plat_addr:
        auxv.append((AT_PLATFORM, plat_addr))
    auxv.append((AT_NULL, 0))
    words = [len(argv), *arg_addrs, 0, *env_addrs, 0]
    for k, v in auxv:
        words += [k, v]
    sp -= len(words) * 8
    sp &= ~15
    mem.write_raw(sp, struct.pack(f"<{len(words)}Q", *words))
    return sp
