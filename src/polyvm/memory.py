"""Guest address spaces.

`AddressSpace` is a sparse 64-bit, byte-addressed, little-endian memory made of 4 KiB pages,
each with its own protection. It is what user-mode processes use; system mode puts an MMU in
front of physical RAM with the same access interface.

Engines do not call `read`/`write` per access: they use the `ld*`/`st*` functions, closures
over per-permission page dictionaries, so an access is one dict lookup plus one struct call.
A page that is readable is in `_rpages`, a page that is writable *and holds no translated code*
in `_wpages`; anything else (a fault, a store into code, an access that crosses a page) takes
the slow path, which checks and raises `MemoryFault`.

An address space made with a `window` (Linux user mode: the guest's whole address space) keeps
the guest pages below it at one fixed offset in the host, as QEMU's user mode does with its
guest_base: guest address a lives at host address `direct_base + a`. Native code then adds that
constant instead of a per-page one it would first have to load, so the load of a pointer it has
just loaded does not wait on a second load (pointer chasing). Pages above the window, and every
page where the host cannot reserve the window, have a host buffer of their own.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import sys
from bisect import bisect_left, bisect_right
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


_MMAP_MIN = 256 * 1024  # mappings this big get an anonymous host mmap (zero pages on demand)


# Linux's MAP_NORESERVE (not exported by Python's mmap): reserve address space, not commit.
_MAP_NORESERVE = (
    0x4000 if sys.platform == "linux" and os.uname().machine in ("x86_64", "aarch64", "riscv64") else 0
)


_HUGE_MIN = 2 << 20  # mappings this big ask for transparent huge pages (see _anon_mmap)
_HUGEPAGES = hasattr(mmap, "MADV_HUGEPAGE") and os.environ.get("POLYVM_HUGEPAGES", "1") != "0"


def _anon_mmap(size: int) -> mmap.mmap:
    # MAP_PRIVATE: mmap.mmap(-1, n) is MAP_SHARED by default, which a guest fork (a host fork)
    # would share between parent and child.
    private = getattr(mmap, "MAP_PRIVATE", None)
    try:
        if private is None:
            return mmap.mmap(-1, size)
        flags = private | mmap.MAP_ANONYMOUS | _MAP_NORESERVE
        m = mmap.mmap(-1, size, flags=flags)
    except OSError as e:
        raise MemoryError(f"cannot reserve {size} bytes of host memory: {e.strerror}") from None
    if size >= _HUGE_MIN and _HUGEPAGES:
        # Transparent huge pages where the host gives them only on request (Linux's default
        # "madvise" mode), as QEMU does for a machine's RAM: a guest that walks big arrays
        # then misses the host's TLB far less (a pointer chase through a 32 MiB table, ad-hoc guest
        # program: 5.55 -> 5.05 s, median of 6). POLYVM_HUGEPAGES=0 turns it off.
        with contextlib.suppress(OSError, ValueError):
            m.madvise(mmap.MADV_HUGEPAGE)
    return m


def _reserve_window(size: int) -> tuple[mmap.mmap, memoryview, int] | None:
    """A private, zero-filled host range of `size` bytes that commits memory only where touched
    (Linux: MAP_NORESERVE), its view and its host address; None where this host cannot give one
    (another OS, host pages larger than the guest's, a strict overcommit policy, no room)."""
    if (
        sys.platform != "linux"
        or mmap.PAGESIZE != PAGE_SIZE
        or not _MAP_NORESERVE
        or not hasattr(mmap, "MADV_DONTNEED")
        or os.environ.get("POLYVM_DIRECT_MEMORY", "1") == "0"
    ):
        return None
    import ctypes

    try:
        m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE)
    except (OSError, OverflowError, ValueError):
        return None
    view = memoryview(m)
    return m, view, ctypes.addressof(ctypes.c_char.from_buffer(view))


class _Span:
    """Pages [start, end) with one protection, backed by buf from byte offset off."""

    __slots__ = ("start", "end", "prot", "buf", "off")

    def __init__(self, start: int, end: int, prot: int, buf: memoryview, off: int) -> None:
        self.start, self.end, self.prot, self.buf, self.off = start, end, prot, buf, off


_FMT = {1: struct.Struct("<B"), 2: struct.Struct("<H"), 4: struct.Struct("<I"), 8: struct.Struct("<Q")}


class AddressSpace:
    def __init__(self, window: int = 0) -> None:
        """`window`: keep the pages below this address at one host offset (`direct_base`)."""
        w = _reserve_window(page_align_up(window)) if window > 0 else None
        # (the window's host mapping, its view, and the host address of guest address 0)
        self._window = page_align_up(window) if w is not None else 0
        self._arena: mmap.mmap | None = w[0] if w is not None else None
        self._arena_view: memoryview | None = w[1] if w is not None else None
        self.direct_base: int | None = w[2] if w is not None else None
        self._spans: list[_Span] = []  # sorted, non-overlapping
        self._starts: list[int] = []  # their first page numbers, for bisect
        self._pages: dict[int, memoryview] = {}  # touched pages only
        self._rpages: dict[int, bytearray] = {}
        self._wpages: dict[int, bytearray] = {}
        # Pages holding translated code: stores into them go through the slow path, which
        # calls `on_code_write(page_number)` so engines can drop stale translations.
        self._code_pages: set[int] = set()
        self.on_code_write: Callable[[int], None] | None = None
        # Called as listener(first_pn, end_pn, became_code) when the host backing, contents or
        # permissions of those pages may change (unmap, remap, protect), or (became_code=True)
        # a page starts holding translations: native tiers drop their software-TLB entries.
        self.page_listeners: list[Callable[[int, int], None]] = []
        # Memory hooks (API): called as hook(access, addr, size, value) on every access.
        self.hooks: list[Callable[[str, int, int, int], None]] = []
        # (before, after) the hooks of one access, set by an engine that keeps the CPU state
        # in an array of its own: it makes the caller's registers current for the hooks, and
        # takes back what they wrote.
        self.hook_sync: tuple[Callable[[], None], Callable[[], None]] | None = None
        self._make_fast()

    # ---- mapping -------------------------------------------------------------------------
    # Mappings are spans of pages over one host buffer each; a page's view and its entries in
    # the fast dictionaries are made on first touch (demand paging), and big buffers are
    # anonymous host mmaps, so reserving or mapping a large range costs nothing until used.

    def _find(self, pn: int) -> _Span | None:
        i = bisect_right(self._starts, pn) - 1
        if i >= 0:
            sp = self._spans[i]
            if pn < sp.end:
                return sp
        return None

    def _split_at(self, pn: int) -> None:
        i = bisect_right(self._starts, pn) - 1
        if i < 0:
            return
        sp = self._spans[i]
        if sp.start < pn < sp.end:
            tail = _Span(pn, sp.end, sp.prot, sp.buf, sp.off + ((pn - sp.start) << PAGE_SHIFT))
            sp.end = pn
            self._spans.insert(i + 1, tail)
            self._starts.insert(i + 1, pn)

    def _carve(self, a: int, b: int) -> tuple[int, int]:
        """Split spans at page numbers a and b; spans[i:j] are then exactly those inside [a, b)."""
        self._split_at(a)
        self._split_at(b)
        return bisect_left(self._starts, a), bisect_left(self._starts, b)

    def _notify(self, a: int, b: int, became_code: bool = False) -> None:
        for f in self.page_listeners:
            f(a, b, became_code)

    def _forget_pages(self, a: int, b: int) -> None:
        self._notify(a, b)
        pns = range(a, b) if b - a <= len(self._pages) else [pn for pn in self._pages if a <= pn < b]
        for pn in pns:
            self._drop_code(pn)
            if self._pages.pop(pn, None) is not None:
                self._rpages.pop(pn, None)
                self._wpages.pop(pn, None)

    def _page(self, pn: int) -> memoryview | None:
        """The page's view, made on first touch; None if unmapped."""
        page = self._pages.get(pn)
        if page is None:
            sp = self._find(pn)
            if sp is None:
                return None
            o = sp.off + ((pn - sp.start) << PAGE_SHIFT)
            page = self._pages[pn] = sp.buf[o : o + PAGE_SIZE]
            self._publish(pn, page, sp.prot)
        return page

    def _publish(self, pn: int, page: memoryview, prot: int) -> None:
        if prot & PROT_READ:
            self._rpages[pn] = page
        else:
            self._rpages.pop(pn, None)
        if prot & PROT_WRITE and pn not in self._code_pages:
            self._wpages[pn] = page
        else:
            self._wpages.pop(pn, None)

    def map(self, addr: int, size: int, prot: int = PROT_ALL, data: bytes | None = None) -> None:
        """Map [addr, addr+size) (page-aligned) as fresh zeroed pages, replacing what was there."""
        if addr & PAGE_MASK or size & PAGE_MASK or size <= 0:
            raise ValueError(f"map: {addr:#x}+{size:#x} is not page aligned")
        a, b = addr >> PAGE_SHIFT, (addr + size) >> PAGE_SHIFT
        self._forget_pages(a, b)
        i, j = self._carve(a, b)
        if addr + size <= self._window:
            # In the window: at its fixed host offset, zeroed (the host frees what was there).
            assert self._arena is not None and self._arena_view is not None
            self._arena.madvise(mmap.MADV_DONTNEED, addr, size)
            if _HUGEPAGES:
                # (big mappings ask for transparent huge pages, as in _anon_mmap; small ones
                # must not get them where a big one was)
                with contextlib.suppress(OSError, ValueError):
                    self._arena.madvise(
                        mmap.MADV_HUGEPAGE if size >= _HUGE_MIN else mmap.MADV_NOHUGEPAGE, addr, size
                    )
            buf, off = self._arena_view, addr
        else:
            # One host buffer per mapping: a guest range inside one mapping is contiguous in
            # host memory too (host_view: zero-copy device transfers). Big ones are host mmaps,
            # whose pages the host OS only allocates when touched.
            buf, off = memoryview(_anon_mmap(size) if size >= _MMAP_MIN else bytearray(size)), 0
        self._spans[i:j] = [_Span(a, b, prot, buf, off)]
        self._starts[i:j] = [a]
        if data:
            self.write_raw(addr, data)

    def unmap(self, addr: int, size: int) -> None:
        a, b = addr >> PAGE_SHIFT, page_align_up(addr + size) >> PAGE_SHIFT
        self._forget_pages(a, b)
        i, j = self._carve(a, b)
        if self._arena is not None:
            for sp in self._spans[i:j]:
                if sp.buf is self._arena_view:  # (give the host its memory back)
                    self._arena.madvise(
                        mmap.MADV_DONTNEED, sp.start << PAGE_SHIFT, (sp.end - sp.start) << PAGE_SHIFT
                    )
        del self._spans[i:j]
        del self._starts[i:j]

    def protect(self, addr: int, size: int, prot: int) -> None:
        """Change the protection of [addr, addr+size); an unmapped page raises MemoryFault."""
        a, b = addr >> PAGE_SHIFT, page_align_up(addr + size) >> PAGE_SHIFT
        pn = a
        while pn < b:
            sp = self._find(pn)
            if sp is None:
                raise MemoryFault(pn << PAGE_SHIFT, "r", False)
            pn = sp.end
        i, j = self._carve(a, b)
        self._notify(a, b)
        for sp in self._spans[i:j]:
            sp.prot = prot
        self._merge_around(i, j)
        pns = range(a, b) if b - a <= len(self._pages) else [p for p in self._pages if a <= p < b]
        for pn in pns:
            page = self._pages.get(pn)
            if page is not None:
                if not prot & PROT_EXEC:
                    self._drop_code(pn)
                self._publish(pn, page, prot)

    def gaps(self, addr: int, size: int) -> list[tuple[int, int]]:
        """The unmapped parts of [addr, addr+size), as (start, end) byte ranges."""
        a, b = addr >> PAGE_SHIFT, page_align_up(addr + size) >> PAGE_SHIFT
        out: list[tuple[int, int]] = []
        pn = a
        i = max(0, bisect_right(self._starts, a) - 1)
        while pn < b:
            while i < len(self._spans) and self._spans[i].end <= pn:
                i += 1
            nxt = self._spans[i].start if i < len(self._spans) else b
            if nxt > pn:
                out.append((pn << PAGE_SHIFT, min(nxt, b) << PAGE_SHIFT))
                pn = nxt
            else:
                pn = self._spans[i].end
        return out

    def _merge_around(self, i: int, j: int) -> None:
        """Join spans[i-1 .. j] where neighbours continue one host buffer with one protection
        (undoing the splits of an earlier protect, so host_view sees one range again)."""
        k = max(i, 1)
        while k < min(j + 1, len(self._spans)):
            a, b = self._spans[k - 1], self._spans[k]
            if (
                a.end == b.start
                and a.buf is b.buf
                and a.prot == b.prot
                and b.off == a.off + ((a.end - a.start) << PAGE_SHIFT)
            ):
                a.end = b.end
                del self._spans[k]
                del self._starts[k]
                j -= 1
            else:
                k += 1

    def direct(self, pn: int) -> bool:
        """Page pn is mapped at its fixed host address `direct_base + (pn << PAGE_SHIFT)`."""
        sp = self._find(pn)
        return sp is not None and self._arena_view is not None and sp.buf is self._arena_view

    def is_mapped(self, addr: int, size: int = 1) -> bool:
        pn, last = addr >> PAGE_SHIFT, (addr + size - 1) >> PAGE_SHIFT
        while pn <= last:
            sp = self._find(pn)
            if sp is None:
                return False
            pn = sp.end
        return True

    def prot_at(self, addr: int) -> int | None:
        sp = self._find(addr >> PAGE_SHIFT)
        return sp.prot if sp is not None else None

    def mapped_pages(self) -> list[int]:
        """Pages touched so far (resident), in order."""
        return sorted(self._pages)

    def regions(self) -> list[tuple[int, int, int]]:
        """Contiguous mapped ranges with one protection: (start, end, prot)."""
        out: list[tuple[int, int, int]] = []
        for sp in self._spans:
            start, end = sp.start << PAGE_SHIFT, sp.end << PAGE_SHIFT
            if out and out[-1][1] == start and out[-1][2] == sp.prot:
                out[-1] = (out[-1][0], end, sp.prot)
            else:
                out.append((start, end, sp.prot))
        return out

    def find_free(self, size: int, hint: int, limit: int = 1 << 47) -> int | None:
        """Lowest page-aligned address >= hint where `size` bytes are unmapped."""
        size = page_align_up(size)
        addr = page_align_up(hint)
        for sp in self._spans[max(0, bisect_right(self._starts, addr >> PAGE_SHIFT) - 1) :]:
            s, e = sp.start << PAGE_SHIFT, sp.end << PAGE_SHIFT
            if e <= addr:
                continue
            if s >= addr + size:
                break
            addr = e
        return addr if addr + size <= limit else None

    # ---- code tracking -----------------------------------------------------------------
    def watch_code(self, addr: int) -> None:
        """Translations now exist for the page holding `addr`: route its stores to the slow path."""
        pn = addr >> PAGE_SHIFT
        if pn not in self._code_pages:
            self._code_pages.add(pn)
            self._wpages.pop(pn, None)
            self._notify(pn, pn + 1, True)

    def _drop_code(self, pn: int) -> None:
        if pn in self._code_pages:
            self._code_pages.discard(pn)
            if self.on_code_write is not None:
                self.on_code_write(pn)
            page = self._pages.get(pn)
            sp = self._find(pn)
            if page is not None and sp is not None and sp.prot & PROT_WRITE:
                self._wpages[pn] = page

    # ---- checked byte access (syscalls, loaders, the API) --------------------------------
    def _check(self, addr: int, size: int, access: str, bit: int) -> None:
        pn, last = addr >> PAGE_SHIFT, (addr + size - 1) >> PAGE_SHIFT
        while pn <= last:
            sp = self._find(pn)
            if sp is None:
                raise MemoryFault(max(addr, pn << PAGE_SHIFT), access, False)
            if not sp.prot & bit:
                raise MemoryFault(max(addr, pn << PAGE_SHIFT), access, True)
            pn = sp.end

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
        sp = self._find(first)
        if sp is None or last >= sp.end:
            return None  # spans two mappings (host buffers)
        for pn in range(first, last + 1):
            self._drop_code(pn)  # the caller may write through the view
        start = sp.off + ((first - sp.start) << PAGE_SHIFT) + (addr & PAGE_MASK)
        return sp.buf[start : start + size]

    # The names the GPU paravirtual device and other byte-level users call.
    read_bytes = read
    write_bytes = write

    def read_raw(self, addr: int, size: int) -> bytes:
        """Read ignoring protection (loaders, debuggers); unmapped raises MemoryFault."""
        out = bytearray()
        while size > 0:
            pn, off = addr >> PAGE_SHIFT, addr & PAGE_MASK
            page = self._page(pn)
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
            page = self._page(pn)
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
        if self.hooks:
            self._call_hooks("r", addr, size, value)
        return value

    def _slow_store(self, addr: int, size: int, value: int) -> None:
        addr &= ADDR_MASK
        self._check(addr, size, "w", PROT_WRITE)
        if self.hooks:
            self._call_hooks("w", addr, size, value)
        self.write_raw(addr, (value & ((1 << (size * 8)) - 1)).to_bytes(size, "little"))

    def _call_hooks(self, access: str, addr: int, size: int, value: int) -> None:
        sync = self.hook_sync
        if sync is not None:
            sync[0]()
        try:
            for h in list(self.hooks):
                h(access, addr, size, value)
        finally:
            if sync is not None:
                sync[1]()

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
