"""AddressSpace: spans, demand paging, protections, faults (expected values by hand)."""

from __future__ import annotations

import os

import pytest

from polyvm.memory import PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE, AddressSpace, MemoryFault

RW = PROT_READ | PROT_WRITE
GiB = 1 << 30


def test_large_mapping_costs_nothing_until_touched() -> None:
    mem = AddressSpace()
    mem.map(0x1000_0000_0000, 4 * GiB, RW)
    assert mem.mapped_pages() == []
    mem.write_u(0x1000_0000_0008, 8, 0x1122334455667788)
    mem.fast["st32"](0x1000_FFFF_F000, 0xDEADBEEF)  # slow path faults the page in
    assert mem.fast["ld64"](0x1000_0000_0008) == 0x1122334455667788
    assert mem.fast["ld32"](0x1000_FFFF_F000) == 0xDEADBEEF
    assert len(mem.mapped_pages()) == 2
    assert mem.read(0x1000_8000_0000, 4) == b"\0\0\0\0"  # untouched pages read as zero


def test_protect_splits_and_faults() -> None:
    mem = AddressSpace()
    mem.map(0x10000, 0x4000, RW)
    mem.write(0x11000, b"abc")
    mem.protect(0x11000, 0x2000, PROT_READ)
    assert mem.regions() == [(0x10000, 0x11000, RW), (0x11000, 0x13000, PROT_READ), (0x13000, 0x14000, RW)]
    assert mem.read(0x11000, 3) == b"abc"
    with pytest.raises(MemoryFault) as e:
        mem.fast["st8"](0x11001, 1)
    assert (e.value.addr, e.value.access, e.value.mapped) == (0x11001, "w", True)
    with pytest.raises(MemoryFault) as e:
        mem.fetch(0x10000, 4)
    assert e.value.access == "x" and e.value.mapped
    mem.protect(0x10000, 0x1000, PROT_NONE)
    with pytest.raises(MemoryFault):
        mem.fast["ld8"](0x10000)
    with pytest.raises(MemoryFault) as e:
        mem.protect(0x13000, 0x2000, RW)  # runs past the end of the mapping
    assert e.value.addr == 0x14000 and not e.value.mapped


def test_unmap_middle_and_find_free() -> None:
    mem = AddressSpace()
    mem.map(0x10000, 0x5000, RW | PROT_EXEC)
    mem.write(0x12000, b"x")
    mem.unmap(0x11000, 0x2000)
    assert not mem.is_mapped(0x12000) and mem.is_mapped(0x10000) and mem.is_mapped(0x13000)
    with pytest.raises(MemoryFault) as e:
        mem.fast["ld8"](0x12000)
    assert not e.value.mapped
    assert mem.find_free(0x2000, 0x10000) == 0x11000
    assert mem.find_free(0x3000, 0x10000) == 0x15000
    mem.map(0x11000, 0x1000, RW)
    assert mem.read(0x11000, 1) == b"\0"  # fresh pages are zero
    assert mem.regions() == [(0x10000, 0x11000, 7), (0x11000, 0x12000, RW), (0x13000, 0x15000, 7)]


def test_cross_page_access_and_remap_replaces() -> None:
    mem = AddressSpace()
    mem.map(0x20000, 0x2000, RW)
    mem.fast["st64"](0x20FFC, 0x0102030405060708)  # straddles two pages
    assert mem.read(0x20FFC, 8) == bytes([8, 7, 6, 5, 4, 3, 2, 1])
    assert mem.fast["ld64"](0x20FFC) == 0x0102030405060708
    mem.map(0x20000, 0x1000, PROT_READ)  # replaces the first page only
    assert mem.read(0x20FFC, 4) == b"\0\0\0\0" and mem.read(0x21000, 4) == bytes([4, 3, 2, 1])


def test_gaps_and_protect_merges_back() -> None:
    mem = AddressSpace()
    mem.map(0x10000, 0x4000, RW)
    mem.map(0x16000, 0x1000, RW)
    assert mem.gaps(0xE000, 0xA000) == [(0xE000, 0x10000), (0x14000, 0x16000), (0x17000, 0x18000)]
    assert mem.gaps(0x10000, 0x4000) == []
    mem.protect(0x11000, 0x1000, PROT_READ)
    assert mem.host_view(0x10000, 0x4000) is None  # one page is read-only now
    mem.protect(0x11000, 0x1000, RW)
    assert mem.regions()[0] == (0x10000, 0x14000, RW)
    view = mem.host_view(0x10000, 0x4000)  # one span, one host buffer again
    assert view is not None and len(view) == 0x4000


def test_big_reservation_made_accessible_stays_lazy() -> None:
    mem = AddressSpace()
    mem.map(0x4000_0000, 512 << 20, RW)  # like mmap(PROT_NONE) then mprotect(RW) in one go
    mem.protect(0x4000_0000, 512 << 20, PROT_READ)
    mem.protect(0x4000_0000, 512 << 20, RW)
    assert len(mem.regions()) == 1 and mem.mapped_pages() == []


def _vm_flags(addr: int) -> list[str] | None:
    """The VmFlags of the host mapping holding addr (Linux's /proc/self/smaps)."""
    with open("/proc/self/smaps") as f:
        inside = False
        for line in f:
            head = line.split()[0]
            if "-" in head and ":" not in head:
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = lo <= addr < hi
            elif inside and line.startswith("VmFlags:"):
                return line.split()[1:]
    return None


@pytest.mark.skipif(
    not os.path.exists("/proc/self/smaps")
    or not os.path.exists("/sys/kernel/mm/transparent_hugepage/enabled"),
    reason="Linux with transparent huge pages (/proc/self/smaps)",
)
@pytest.mark.parametrize("window", [0, 1 << 38], ids=["own-buffers", "direct"])
def test_big_mappings_ask_for_transparent_huge_pages(window: int) -> None:
    """A guest mapping of 2 MiB or more asks the host for transparent huge pages
    (madvise(MADV_HUGEPAGE), which Linux shows as "hg" in the mapping's VmFlags); a smaller
    one does not, also where a big one was before (direct memory: one host mapping)."""
    import ctypes

    import polyvm.memory as M

    if not M._HUGEPAGES:
        pytest.skip("no MADV_HUGEPAGE here, or POLYVM_HUGEPAGES=0")
    mem = AddressSpace(window=window)
    if window and mem.direct_base is None:
        pytest.skip("no direct guest memory on this host")
    mem.map(0x4000_0000, 8 << 20, RW)
    mem.map(0x8000_0000, 8 << 20, RW)
    mem.unmap(0x8000_0000, 8 << 20)
    mem.map(0x8000_0000, 1 << 20, RW)
    flags = []
    for base in (0x4000_0000, 0x8000_0000):
        mem.write_u(base, 8, 1)
        view = mem.host_view(base, 4096)
        assert view is not None
        flags.append(_vm_flags(ctypes.addressof(ctypes.c_char.from_buffer(view))))
    assert flags[0] is not None and "hg" in flags[0]
    assert flags[1] is not None and "hg" not in flags[1]
