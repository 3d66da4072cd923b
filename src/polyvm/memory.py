"""Guest address spaces.

`AddressSpace` is a sparse 64-bit, byte-addressed, little-endian memory made of 4 KiB pages,
each with its own protection. It is what user-mode processes use; system mode puts an MMU in
front of physical RAM with the same access interface.

Engines do not call `read`/`write` per access: they use the `ld*`/`st*` functions, closures
over per-permission page dictionaries, so an access is one dict lookup plus one struct call.
A page that is readable is in `_rpages`, a page that is writable *and holds no translated code*
in `_wpages`; anything else (a fault, a store into code, an access that crosses a page) takes
the slow path, which checks and raises `MemoryFault`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = PAGE_SIZE - 1

PROT_NONE = 0
PROT_READ = 1
PROT_WRITE = 2
PROT_EXEC = 4
PROT_ALL = 7

ADDR_MASK = (1 << 64) - 1


class MemoryFault(Exception):
    """A guest access to unmapped memory or against a page's protection."""

    def __init__(self, addr: int, access: str, mapped: bool) -> None:
        self.addr = addr & ADDR_MASK
        self.access = access  # "r", "w" or "x"
        self.mapped = mapped  # True: a protection fault (SEGV_ACCERR); False: SEGV_MAPERR
        kind = "protection" if mapped else "unmapped"
        super().__init__(f"{kind} fault: {access} at {self.addr:#x}")


def page_align_down(x: int) -> int:
    return x & ~PAGE_MASK


def page_align_up(x: int) -> int:
    return (x + PAGE_MASK) & ~PAGE_MASK


_FMT = {1: struct.Struct("<B"), 2: struct.Struct("<H"), 4: struct.Struct("<I"), 8: struct.Struct("<Q")}


class AddressSpace:
    def __init__(self) -> None:
        self._pages: dict[int, memoryview] = {}
        self._backing: dict[int, tuple[memoryview, int]] = {}  # page -> (mapping buffer, offset)
        self._prot: dict[int, int] = {}
        self._rpages: dict[int, bytearray] = {}
        self._wpages: dict[int, bytearray] = {}
        # Pages holding translated code: stores into them go through the slow path, which
        # calls `on_code_write(page_number)` so engines can drop stale translations.
        self._code_pages: set[int] = set()
        self.on_code_write: Callable[[int], None] | None = None
        # Memory hooks (API): called as hook(access, addr, size, value) on every access.
        self.hooks: list[Callable[[str, int, int, int], None]] = []
        self._make_fast()

    # ---- mapping -------------------------------------------------------------------------
    def map(self, addr: int, size: int, prot: int = PROT_ALL, data: bytes | None = None) -> None:
        """Map [addr, addr+size) (page-aligned) as fresh zeroed pages, replacing what was there."""
        if addr & PAGE_MASK or size & PAGE_MASK:
            raise ValueError(f"map: {addr:#x}+{size:#x} is not page aligned")
        # One host buffer per mapping, pages are views of it: a guest range inside one mapping
        # is contiguous in host memory too (host_view, zero-copy device transfers).
        backing = memoryview(bytearray(size))
        first = addr >> PAGE_SHIFT
        for i in range(size >> PAGE_SHIFT):
            pn = first + i
            self._drop_code(pn)
            self._pages[pn] = backing[i << PAGE_SHIFT : (i + 1) << PAGE_SHIFT]
            self._backing[pn] = (backing, i << PAGE_SHIFT)
            self._set_prot(pn, prot)
        if data:
            self.write_raw(addr, data)

    def unmap(self, addr: int, size: int) -> None:
        for pn in range(addr >> PAGE_SHIFT, page_align_up(addr + size) >> PAGE_SHIFT):
            self._drop_code(pn)
            self._pages.pop(pn, None)
            self._backing.pop(pn, None)
            self._prot.pop(pn, None)
            self._rpages.pop(pn, None)
            self._wpages.pop(pn, None)

    def protect(self, addr: int, size: int, prot: int) -> None:
        """Change protection of mapped pages in the range; unmapped pages raise MemoryFault."""
        pns = range(addr >> PAGE_SHIFT, page_align_up(addr + size) >> PAGE_SHIFT)
        for pn in pns:
            if pn not in self._pages:
                raise MemoryFault(pn << PAGE_SHIFT, "r", False)
        for pn in pns:
            if not prot & PROT_EXEC:
                self._drop_code(pn)
            self._set_prot(pn, prot)

    def _set_prot(self, pn: int, prot: int) -> None:
        page = self._pages[pn]
        self._prot[pn] = prot
        if prot & PROT_READ:
            self._rpages[pn] = page
        else:
            self._rpages.pop(pn, None)
        if prot & PROT_WRITE and pn not in self._code_pages:
            self._wpages[pn] = page
        else:
            self._wpages.pop(pn, None)

    def is_mapped(self, addr: int, size: int = 1) -> bool:
        return all(
            pn in self._pages for pn in range(addr >> PAGE_SHIFT, ((addr + size - 1) >> PAGE_SHIFT) + 1)
        )

    def prot_at(self, addr: int) -> int | None:
        return self._prot.get(addr >> PAGE_SHIFT)

    def mapped_pages(self) -> list[int]:
        return sorted(self._pages)

    def regions(self) -> list[tuple[int, int, int]]:
        """Contiguous runs of pages with one protection: (start, end, prot)."""
        out: list[tuple[int, int, int]] = []
        for pn in sorted(self._pages):
            prot = self._prot[pn]
            start = pn << PAGE_SHIFT
            if out and out[-1][1] == start and out[-1][2] == prot:
                out[-1] = (out[-1][0], start + PAGE_SIZE, prot)
            else:
                out.append((start, start + PAGE_SIZE, prot))
        return out

    def find_free(self, size: int, hint: int, limit: int = 1 << 47) -> int | None:
        """Lowest page-aligned address >= hint where `size` bytes are unmapped."""
        size = page_align_up(size)
        addr = page_align_up(hint)
        npages = size >> PAGE_SHIFT
        while addr + size <= limit:
            pn = addr >> PAGE_SHIFT
            for i in range(npages):
                if pn + i in self._pages:
                    addr = (pn + i + 1) << PAGE_SHIFT
                    break
            else:
                return addr
        return None

    # ---- code tracking -----------------------------------------------------------------
    def watch_code(self, addr: int) -> None:
        """Translations now exist for the page holding `addr`: route its stores to the slow path."""
        pn = addr >> PAGE_SHIFT
        if pn not in self._code_pages:
            self._code_pages.add(pn)
            self._wpages.pop(pn, None)

    def _drop_code(self, pn: int) -> None:
        if pn in self._code_pages:
            self._code_pages.discard(pn)
            if self.on_code_write is not None:
                self.on_code_write(pn)
            prot = self._prot.get(pn)
            if prot is not None and prot & PROT_WRITE:
                self._wpages[pn] = self._pages[pn]

    # ---- checked byte access (syscalls, loaders, the API) --------------------------------
    def _check(self, addr: int, size: int, access: str, bit: int) -> None:
        for pn in range(addr >> PAGE_SHIFT, ((addr + size - 1) >> PAGE_SHIFT) + 1):
            prot = self._prot.get(pn)
            if prot is None:
                raise MemoryFault(max(addr, pn << PAGE_SHIFT), access, False)
            if not prot & bit:
                raise MemoryFault(max(addr, pn << PAGE_SHIFT), access, True)

    def read(self, addr: int, size: int) -> bytes:
        if size <= 0:
            return b""
        addr &= ADDR_MASK
        self._check(addr, size, "r", PROT_READ)
        return self.read_raw(addr, size)

    def fetch(self, addr: int, size: int) -> bytes:
        """Instruction fetch: needs PROT_EXEC."""
        addr &= ADDR_MASK
        self._check(addr, size, "x", PROT_EXEC)
        return self.read_raw(addr, size)

    def write(self, addr: int, data: bytes) -> None:
        if not data:
            return
        addr &= ADDR_MASK
        self._check(addr, len(data), "w", PROT_WRITE)
        self.write_raw(addr, data)

    def host_view(self, addr: int, size: int) -> memoryview | None:
        """A writable view of [addr, addr+size) if it is readable and writable guest memory that
        lies in one host buffer, else None (callers then copy with read/write)."""
        if size <= 0:
            return None
        try:
            self._check(addr, size, "r", PROT_READ)
            self._check(addr, size, "w", PROT_WRITE)
        except MemoryFault:
            return None
        first, last = addr >> PAGE_SHIFT, (addr + size - 1) >> PAGE_SHIFT
        buf, off = self._backing[first]
        for pn in range(first + 1, last + 1):
            b, o = self._backing[pn]
            if b is not buf or o != off + ((pn - first) << PAGE_SHIFT):
                return None
        for pn in range(first, last + 1):
            self._drop_code(pn)  # the caller may write through the view
        start = off + (addr & PAGE_MASK)
        return buf[start : start + size]

    # The names the GPU paravirtual device and other byte-level users call.
    read_bytes = read
    write_bytes = write

    def read_raw(self, addr: int, size: int) -> bytes:
        """Read ignoring protection (loaders, debuggers); unmapped raises MemoryFault."""
        out = bytearray()
        while size > 0:
            pn, off = addr >> PAGE_SHIFT, addr & PAGE_MASK
            page = self._pages.get(pn)
            if page is None:
                raise MemoryFault(addr, "r", False)
            n = min(size, PAGE_SIZE - off)
            out += page[off : off + n]
            addr += n
            size -= n
        return bytes(out)

    def write_raw(self, addr: int, data: bytes) -> None:
        """Write ignoring protection (loaders, debuggers); unmapped raises MemoryFault."""
        view = memoryview(data)
        while view:
            pn, off = addr >> PAGE_SHIFT, addr & PAGE_MASK
            page = self._pages.get(pn)
            if page is None:
                raise MemoryFault(addr, "w", False)
            self._drop_code(pn)
            n = min(len(view), PAGE_SIZE - off)
            page[off : off + n] = view[:n]
            addr += n
            view = view[n:]

    def read_cstr(self, addr: int, limit: int = 4096) -> bytes:
        """A NUL-terminated string (checked reads); raises MemoryFault, ValueError if too long."""
        out = bytearray()
        while len(out) < limit:
            chunk = PAGE_SIZE - (addr & PAGE_MASK)
            data = self.read(addr, min(chunk, limit - len(out)))
            i = data.find(b"\0")
            if i >= 0:
                out += data[:i]
                return bytes(out)
            out += data
            addr += len(data)
        raise ValueError("string too long")

    def read_u(self, addr: int, size: int) -> int:
        return int.from_bytes(self.read(addr, size), "little")

    def write_u(self, addr: int, size: int, value: int) -> None:
        self.write(addr, (value & ((1 << (size * 8)) - 1)).to_bytes(size, "little"))

    # ---- engine fast paths --------------------------------------------------------------
    def _slow_load(self, addr: int, size: int) -> int:
        addr &= ADDR_MASK
        self._check(addr, size, "r", PROT_READ)
        value = int.from_bytes(self.read_raw(addr, size), "little")
        for h in self.hooks:
            h("r", addr, size, value)
        return value

    def _slow_store(self, addr: int, size: int, value: int) -> None:
        addr &= ADDR_MASK
        self._check(addr, size, "w", PROT_WRITE)
        for h in self.hooks:
            h("w", addr, size, value)
        self.write_raw(addr, (value & ((1 << (size * 8)) - 1)).to_bytes(size, "little"))

    def _make_fast(self) -> None:
        rp, wp = self._rpages, self._wpages
        slow_load, slow_store = self._slow_load, self._slow_store
        self.fast: dict[str, Callable] = {}
        for size, st in _FMT.items():
            unpack, pack = st.unpack_from, st.pack_into
            last = PAGE_SIZE - size

            def ld(a: int, _u=unpack, _last=last, _size=size) -> int:
                o = a & PAGE_MASK
                if o <= _last:
                    p = rp.get(a >> PAGE_SHIFT)
                    if p is not None:
                        return _u(p, o)[0]
                return slow_load(a, _size)

            def st_(a: int, v: int, _p=pack, _last=last, _size=size) -> None:
                o = a & PAGE_MASK
                if o <= _last:
                    p = wp.get(a >> PAGE_SHIFT)
                    if p is not None:
                        _p(p, o, v)
                        return
                slow_store(a, _size, v)

            self.fast[f"ld{size * 8}"] = ld
            self.fast[f"st{size * 8}"] = st_

        def ld128(a: int) -> int:
            return slow_load(a, 16)

        def st128(a: int, v: int) -> None:
            slow_store(a, 16, v)

        self.fast["ld128"] = ld128
        self.fast["st128"] = st128
        self.hooked = {f"ld{s * 8}": (lambda a, _s=s: slow_load(a, _s)) for s in (1, 2, 4, 8, 16)} | {
            f"st{s * 8}": (lambda a, v, _s=s: slow_store(a, _s, v)) for s in (1, 2, 4, 8, 16)
        }

    def fast_tables(self) -> tuple[Callable, Callable] | None:
        """(readable-page lookup, writable-page lookup) by page number, for engines that inline
        the fast path; None while memory hooks are installed (every access must call them)."""
        if self.hooks:
            return None
        return self._rpages.get, self._wpages.get

    def access_functions(self) -> dict[str, Callable]:
        """The ld*/st* functions engines should use now (slow, hook-calling ones if hooked)."""
        return self.hooked if self.hooks else self.fast
