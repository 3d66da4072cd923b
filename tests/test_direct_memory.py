"""Direct guest memory: an AddressSpace with a window keeps the guest pages below it at one
host offset (`direct_base`), and native code adds that offset instead of the TLB entry's.

Expected values come from the program (a linked list walked by hand in Python) and from the
interpreter; host placement is checked through the host address itself (ctypes).
"""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys

import pytest

from polyvm.memory import PAGE_SIZE, PROT_ALL, PROT_READ, PROT_WRITE, AddressSpace

RW = PROT_READ | PROT_WRITE
WINDOW = 1 << 38  # (the Linux layer's: `loader.TASK_SIZE`)


def _direct() -> AddressSpace:
    mem = AddressSpace(window=WINDOW)
    if mem.direct_base is None:
        pytest.skip("no direct guest memory on this host (Linux with 4 KiB pages only)")
    return mem


def test_pages_in_the_window_live_at_one_host_offset() -> None:
    mem = _direct()
    base = mem.direct_base
    assert base is not None
    mem.map(0x10000, 0x3000, RW, b"abc")
    assert ctypes.string_at(base + 0x10000, 3) == b"abc"
    ctypes.memmove(base + 0x12FFE, b"xyz!", 2)  # (the host's store, the guest's bytes)
    assert mem.read(0x12FFE, 2) == b"xy"
    view = mem.host_view(0x11000, 16)
    assert view is not None and ctypes.addressof(ctypes.c_char.from_buffer(view)) == base + 0x11000
    assert mem.direct(0x10) and mem.direct(0x12) and not mem.direct(0x13)
    # Protection changes split the mapping and join it again: still one offset.
    mem.protect(0x11000, 0x1000, PROT_READ)
    mem.protect(0x11000, 0x1000, RW)
    assert len(mem.regions()) == 1 and mem.direct(0x11)


def test_a_fresh_mapping_in_the_window_is_zero() -> None:
    """Unmapping gives the pages back to the host; mapping the range again (or over a live
    mapping) gives zero pages, in the guest's view and at the host address alike."""
    mem = _direct()
    base = mem.direct_base
    assert base is not None
    mem.map(0x20000, 0x2000, RW, b"\xff" * 0x2000)
    mem.unmap(0x20000, 0x2000)
    mem.map(0x20000, 0x1000, RW)
    assert mem.read(0x20000, 0x1000) == bytes(0x1000)
    mem.write(0x20000, b"\x01" * 8)
    mem.map(0x20000, 0x1000, PROT_READ)  # (over the mapping: replaced)
    assert mem.read(0x20000, 8) == bytes(8) and ctypes.string_at(base + 0x20000, 8) == bytes(8)


def test_mappings_outside_the_window_have_their_own_buffers() -> None:
    mem = _direct()
    top = WINDOW - PAGE_SIZE
    mem.map(top, 2 * PAGE_SIZE, RW)  # (crosses the window's end: all of it outside)
    mem.map(1 << 40, PAGE_SIZE, RW)
    mem.write(top + PAGE_SIZE - 2, b"abcd")
    mem.write(1 << 40, b"high")
    assert mem.read(top + PAGE_SIZE - 2, 4) == b"abcd" and mem.read(1 << 40, 4) == b"high"
    assert not mem.direct(top >> 12) and not mem.direct((1 << 40) >> 12)


def test_direct_memory_can_be_turned_off(monkeypatch) -> None:
    monkeypatch.setenv("POLYVM_DIRECT_MEMORY", "0")
    mem = AddressSpace(window=WINDOW)
    assert mem.direct_base is None
    mem.map(0x10000, 0x1000, RW, b"ok")
    assert mem.read(0x10000, 2) == b"ok" and not mem.direct(0x10)


# ---- native code on direct memory ----------------------------------------------------------

CODE = 0x10000
INSIDE = 0x40000  # list nodes in the window ...
OUTSIDE = 1 << 40  # ... and above it (not direct: the TLB never holds them)
NODES, ROUNDS = 64, 3000


def _list_program() -> bytes:
    from polyvm.isa.riscv.asm import li, program

    # a0 = 0; repeat ROUNDS times: for p = head; p; p = p->next: a0 += p->value; p->value = a0
    return program(
        [
            *li("s0", INSIDE),
            *li("s1", ROUNDS),
            *li("a0", 0),
            "addi t0, s0, 0",  # outer:
            "ld t1, 8(t0)",  # inner:
            "add a0, a0, t1",
            "sd a0, 8(t0)",
            "ld t0, 0(t0)",
            "bne t0, zero, -16",
            "addi s1, s1, -1",
            "bne s1, zero, -28",
            "ebreak",
        ]
    )


def _node(i: int) -> int:
    """Node i's address: even nodes in the window, odd ones above it."""
    return (INSIDE if i % 2 == 0 else OUTSIDE) + 16 * (i // 2)


def _list_memory() -> AddressSpace:
    mem = AddressSpace(window=WINDOW)
    mem.map(CODE, 0x1000, PROT_ALL, _list_program())
    mem.map(INSIDE, 0x1000, RW)
    mem.map(OUTSIDE, 0x1000, RW)
    for i in range(NODES):
        nxt = _node(i + 1) if i + 1 < NODES else 0
        mem.write(_node(i), nxt.to_bytes(8, "little") + (i * 7 + 1).to_bytes(8, "little"))
    return mem


def _expected() -> tuple[int, list[int]]:
    """The program's result, walked in Python: the final sum and each node's value."""
    values = [i * 7 + 1 for i in range(NODES)]
    s = 0
    for _ in range(ROUNDS):
        for i in range(NODES):
            s = (s + values[i]) & ((1 << 64) - 1)
            values[i] = s
    return s, values


@pytest.mark.parametrize("tier", ["first", "hot"])
def test_native_code_walks_a_list_across_direct_and_other_pages(tier: str, monkeypatch) -> None:
    """A linked list whose nodes alternate between a page in the window and one above it:
    loads and stores of both kinds in one loop, in the emitted first tier and in LLVM's hot
    tier. The sum and every node are the program's; the TLB holds the window's page (at the
    direct offset) and never the other one (its accesses take the slow path)."""
    pytest.importorskip("llvmlite")
    from polyvm.engine import jit as J
    from polyvm.engine import lower as L
    from polyvm.engine.jit import JitEngine
    from polyvm.isa import get_arch

    arch = get_arch("riscv64")
    monkeypatch.setattr(J, "TIER2_INSNS", 20_000 if tier == "hot" else 1 << 62)
    mem = _list_memory()
    if mem.direct_base is None:
        pytest.skip("no direct guest memory on this host")
    eng = JitEngine(arch, mem, tier="jit", background=False)
    assert eng.direct and eng.ctx[L.CTX_GUEST_BASE] == mem.direct_base
    r = arch.new_state()
    r[0] = CODE
    stop = eng.run(r, 1000)
    while stop.reason == "budget":
        stop = eng.run(r, 1000)
    assert stop.reason == "breakpoint", stop
    total, values = _expected()
    a0 = arch.regs["a0"][0]
    assert r[a0] == total
    assert [mem.read_u(_node(i) + 8, 8) for i in range(NODES)] == values
    assert any(reg.opt == J.T2_OPT for reg in eng.regions.values()) == (tier == "hot")
    tags = {eng.tlb[i] for i in range(0, len(eng.tlb), L.TLB_ENTRY_WORDS)}
    assert INSIDE in tags and OUTSIDE not in tags


def test_hot_code_adds_the_direct_base_not_the_entry_addend() -> None:
    """The hot tier's IR for one load: on direct memory the host pointer is the address plus
    ctx's CTX_GUEST_BASE word, read once at entry; otherwise plus the TLB entry's addend."""
    pytest.importorskip("llvmlite")
    from polyvm.engine import lower as L
    from polyvm.isa import get_arch
    from polyvm.isa.riscv.asm import program

    arch = get_arch("riscv64")
    mem = AddressSpace()
    mem.map(CODE, 0x1000, PROT_ALL, program(["ld a0, 8(a1)", "ebreak"]))
    blocks = [arch.lift_block(mem.fetch, CODE, 64)]
    texts = {
        direct: L.RegionLowering("f", blocks, arch.helpers, {}, entries=[CODE], direct=direct).text
        for direct in (False, True)
    }
    assert f"%gbase = load i64, i64* %cx{L.CTX_GUEST_BASE}" in texts[True]
    assert re.search(r"add i64 %v\d+, %gbase", texts[True])
    assert "%gbase" not in texts[False]
    # (the entry's addend: word 2 of the entry)
    assert re.search(r"getelementptr inbounds i64, i64\* %v\d+, i64 2", texts[False])


def test_direct_and_other_code_keep_apart_in_the_cache(tmp_path) -> None:
    """Code made for direct memory and code made for per-page addends are different code:
    runs of each kind sharing one cache directory load only their own (a run without direct
    memory that took direct code would read the guest's memory at the wrong host address)."""
    pytest.importorskip("llvmlite")
    if AddressSpace(window=WINDOW).direct_base is None:
        pytest.skip("no direct guest memory on this host")
    from polyvm.testing.guest import build_guest

    exe = build_guest("hello")
    env = dict(os.environ, POLYVM_CACHE_DIR=str(tmp_path), POLYVM_JIT_BACKGROUND="0")

    def run(direct: bool) -> tuple[str, int]:
        e = dict(env, POLYVM_DIRECT_MEMORY="1" if direct else "0")
        p = subprocess.run(
            [sys.executable, "-m", "polyvm", "run", "--stats", "--engine", "jit", str(exe)],
            capture_output=True,
            text=True,
            env=e,
            timeout=300,
        )
        assert p.returncode == 3, p.stderr  # (hello.c returns 3)
        m = re.search(r"(\d+) loaded from the translation cache", p.stderr)
        assert m, p.stderr
        return p.stdout, int(m.group(1))

    out, loaded = run(True)
    assert out.startswith("hello") and loaded == 0
    assert run(False) == (out, 0)  # (the direct code is not this run's)
    assert run(False)[1] > 0
    again, loaded = run(True)
    assert again == out and loaded > 0


# ---- a group of accesses from one base, checked in the TLB once (`x64._grouped_access`) -------
GROUP_TOP = 0x48000  # a read-only page, the one below it read-write


def _group_run(start: int, body: list[str], monkeypatch, own_block: bool = True) -> tuple:
    """Run `a1 = start; a2, a3, a4 = 10, 100, 1000; body; ebreak` in the first tier on direct
    memory; the stop, the state, the memory, the body's first pc, and the regions' groups."""
    pytest.importorskip("llvmlite")
    from polyvm.engine import jit as J
    from polyvm.engine import x64
    from polyvm.engine.jit import JitEngine
    from polyvm.isa import get_arch
    from polyvm.isa.riscv.asm import li, program

    monkeypatch.setattr(J, "TIER2_INSNS", 1 << 62)
    groups: list[int] = []
    made = x64.X64Region.__init__

    def count(self, *a, **k):  # type: ignore[no-untyped-def]
        made(self, *a, **k)
        groups.append(self.groups)

    monkeypatch.setattr(x64.X64Region, "__init__", count)
    head = [*li("a1", start), *li("a2", 10), *li("a3", 100), *li("a4", 1000)]
    mem = _direct()
    # (the body in a block of its own, so that a1 is a register read, not a constant: the
    # constant addresses of a block with `li a1` before them make a group of their own)
    if own_block:
        head.append("jal zero, 4")
    mem.map(CODE, 0x1000, PROT_ALL, program([*head, *body, "ebreak"]))
    mem.map(GROUP_TOP - 0x1000, 0x2000, RW)
    mem.write(GROUP_TOP + 64, (7).to_bytes(8, "little") + (8).to_bytes(8, "little"))
    mem.protect(GROUP_TOP, 0x1000, PROT_READ)
    arch = get_arch("riscv64")
    eng = JitEngine(arch, mem, tier="jit", background=False)
    assert eng.direct and eng.emit_first
    r = arch.new_state()
    r[0] = CODE
    stop = eng.run(r, 1000)
    regs = {n: r[arch.regs[n][0]] for n in ("a5", "a6", "a7")}
    return stop, regs, r[1], mem, CODE + 4 * len(head), groups


@pytest.mark.parametrize("own_block", [True, False])
def test_a_group_of_accesses_in_one_page_is_checked_once(own_block: bool, monkeypatch) -> None:
    """Three stores and three loads at a1 + 0, 8, 16 in one read-write page: one group, and
    the loads read back what the stores wrote; the same at constant addresses (a1 set in the
    same block)."""
    body = ["sd a2, 0(a1)", "sd a3, 8(a1)", "sw a4, 16(a1)", "ld a5, 0(a1)", "ld a6, 8(a1)", "lwu a7, 16(a1)"]
    stop, regs, _, mem, _, groups = _group_run(GROUP_TOP - 64, body, monkeypatch, own_block)
    assert stop.reason == "breakpoint", stop
    assert regs == {"a5": 10, "a6": 100, "a7": 1000}
    assert mem.read(GROUP_TOP - 64, 20) == (10).to_bytes(8, "little") + (100).to_bytes(8, "little") + (
        1000
    ).to_bytes(4, "little")
    assert sum(groups) >= 1


@pytest.mark.parametrize(
    "start, body, at, loaded, written",
    [
        # the group reaches into the read-only page: the two stores below it happen, the
        # word store at its first byte faults, the load after it does not run
        (GROUP_TOP - 16, ["sd a2, 0(a1)", "sd a3, 8(a1)", "sw a4, 16(a1)", "ld a5, 0(a1)"], 2, {}, 16),
        # the whole group in the read-only page: its loads happen, its store faults
        (
            GROUP_TOP + 64,
            ["ld a5, 0(a1)", "ld a6, 8(a1)", "sd a2, 16(a1)", "ld a7, 0(a1)"],
            2,
            {"a5": 7, "a6": 8},
            0,
        ),
    ],
)
def test_a_fault_in_a_group_of_accesses_is_precise(start, body, at, loaded, written, monkeypatch) -> None:
    """Where the group's one TLB check fails, each access goes on its own: the fault is at
    the faulting store (hand-checked: the body's instruction `at`), with exactly the
    instructions before it retired and their effects, and nothing after it."""
    stop, regs, count, mem, pc, _ = _group_run(start, body, monkeypatch)
    fault_at = start + int(body[at].split(", ")[1].split("(")[0])
    assert (stop.reason, stop.pc, stop.access, stop.mapped, stop.addr) == (
        "fault",
        pc + 4 * at,
        "w",
        True,
        fault_at,
    )
    assert count == (pc - CODE) // 4 + at
    assert regs == {"a5": 0, "a6": 0, "a7": 0} | loaded
    assert mem.read(GROUP_TOP, 4) == bytes(4)
    if written:
        assert mem.read(GROUP_TOP - 16, 16) == (10).to_bytes(8, "little") + (100).to_bytes(8, "little")
