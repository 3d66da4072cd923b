"""The process memory map: which ranges are mapped, how, and from what (for /proc/self/maps).

`AddressSpace` holds the pages and enforces protections; this keeps the Linux view on top of
it: mappings (VMAs) with their flags and backing file, placement of new mappings (top-down
below the stack, as Linux does), and the brk heap.

Fresh PROT_NONE anonymous mappings (guard pages, glibc arena reservations) are not given
pages until an mprotect makes them accessible, so reserving address space costs nothing.
"""

from __future__ import annotations

from polyvm.memory import PROT_EXEC, PROT_READ, PROT_WRITE, AddressSpace
from polyvm.record import Record

MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_GROWSDOWN = 0x100
MAP_NORESERVE = 0x4000
MAP_POPULATE = 0x8000
MAP_STACK = 0x20000
MAP_FIXED_NOREPLACE = 0x100000


class Vma(Record):
    _fields = ("start", "end", "prot", "flags", "name", "offset", "dev", "ino", "host_path")

    def __init__(
        self,
        start: int,
        end: int,
        prot: int,
        flags: int = MAP_PRIVATE | MAP_ANONYMOUS,
        name: str = "",  # backing file path (guest view) or [heap] / [stack] / [vdso]
        offset: int = 0,
        dev: int = 0,
        ino: int = 0,
        host_path: str | None = None,  # to re-read file pages (MADV_DONTNEED on a private file map)
    ) -> None:
        self.start = start
        self.end = end
        self.prot = prot
        self.flags = flags
        self.name = name
        self.offset = offset
        self.dev = dev
        self.ino = ino
        self.host_path = host_path


class MemoryMap:
    def __init__(self, mem: AddressSpace, mmap_base: int, min_addr: int = 0x10000) -> None:
        self.mem = mem
        self.vmas: list[Vma] = []
        self.mmap_base = mmap_base
        self.min_addr = min_addr
        self.brk_start = 0
        self.brk = 0

    # ---- bookkeeping ---------------------------------------------------------------------
    def find(self, addr: int) -> Vma | None:
        for v in self.vmas:
            if v.start <= addr < v.end:
                return v
        return None

    def overlaps(self, start: int, end: int) -> bool:
        return any(v.start < end and start < v.end for v in self.vmas)

    def covered(self, start: int, end: int) -> bool:
        """Is every byte of [start, end) in some mapping?"""
        pos = start
        for v in sorted(self.vmas, key=lambda v: v.start):
            if v.end <= pos:
                continue
            if v.start > pos:
                return False
            pos = v.end
            if pos >= end:
                return True
        return pos >= end

    def _carve(self, start: int, end: int) -> None:
        """Remove [start, end) from the VMA list, splitting mappings that straddle it."""
        out: list[Vma] = []
        for v in self.vmas:
            if v.end <= start or v.start >= end:
                out.append(v)
                continue
            if v.start < start:
                out.append(v.replace(end=start))
            if v.end > end:
                out.append(v.replace(start=end, offset=v.offset + (end - v.start)))
        self.vmas = sorted(out, key=lambda v: v.start)

    def add(self, vma: Vma) -> None:
        self._carve(vma.start, vma.end)
        self.vmas.append(vma)
        self.vmas.sort(key=lambda v: v.start)
        self._merge()

    def _merge(self) -> None:
        out: list[Vma] = []
        for v in self.vmas:
            p = out[-1] if out else None
            if (
                p is not None
                and p.end == v.start
                and p.prot == v.prot
                and p.flags == v.flags
                and p.name == v.name
                and p.host_path is None
                and v.host_path is None
            ):
                out[-1] = p.replace(end=v.end)
            else:
                out.append(v)
        self.vmas = out

    # ---- operations ----------------------------------------------------------------------
    def map(self, vma: Vma, data: bytes | None = None) -> None:
        """Create the mapping (replacing whatever was there) and give it pages."""
        size = vma.end - vma.start
        self.mem.unmap(vma.start, size)
        if vma.prot != 0 or data:
            self.mem.map(vma.start, size, vma.prot, data)
        self.add(vma)

    def unmap(self, start: int, end: int) -> None:
        self.mem.unmap(start, end - start)
        self._carve(start, end)

    def protect(self, start: int, end: int, prot: int) -> None:
        mem = self.mem
        # Reservations without pages (fresh PROT_NONE) get them now, one mapping per gap.
        for a, b in mem.gaps(start, end - start):
            mem.map(a, b - a, prot)
        mem.protect(start, end - start, prot)
        pieces = []
        for v in self.vmas:
            if v.start < end and start < v.end:
                s, e = max(v.start, start), min(v.end, end)
                pieces.append(v.replace(start=s, end=e, prot=prot, offset=v.offset + (s - v.start)))
        self._carve(start, end)
        self.vmas = sorted(self.vmas + pieces, key=lambda v: v.start)
        self._merge()

    def find_free(self, size: int, hint: int = 0) -> int | None:
        """Where a new mapping of `size` bytes goes: at `hint` if free, else top-down below mmap_base."""
        if (
            hint
            and hint >= self.min_addr
            and hint + size <= self.mmap_base
            and not self.overlaps(hint, hint + size)
        ):
            return hint
        top = self.mmap_base
        for v in sorted(self.vmas, key=lambda v: v.start, reverse=True):
            if v.start >= top:
                continue
            if v.end <= top - size:
                if not self.overlaps(top - size, top):
                    return top - size
            top = min(top, v.start)
        if top - size >= max(self.min_addr, self.brk + (1 << 30) if self.brk else self.min_addr):
            return top - size
        return None

    def maps_text(self) -> bytes:
        lines = []
        for v in self.vmas:
            perms = (
                ("r" if v.prot & PROT_READ else "-")
                + ("w" if v.prot & PROT_WRITE else "-")
                + ("x" if v.prot & PROT_EXEC else "-")
                + ("s" if v.flags & MAP_SHARED else "p")
            )
            dev = f"{(v.dev >> 8) & 0xFFF:02x}:{v.dev & 0xFF:02x}"
            head = f"{v.start:08x}-{v.end:08x} {perms} {v.offset:08x} {dev} {v.ino}"
            lines.append(f"{head:<72} {v.name}".rstrip() if v.name else head)
        return ("\n".join(lines) + "\n").encode()
