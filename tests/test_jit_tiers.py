"""Tier-up: which code the hot tier recompiles, and what it keeps native.

Expected values are hand-computed from the program (and every slot is compared with the
reference interpreter's); the dispatch counts are the engine's own native counter, bounded
by what the program structure allows.
"""

from __future__ import annotations

import ctypes

import pytest

import fp_cases as F

pytest.importorskip("llvmlite")

from polyvm.engine import jit as J  # noqa: E402
from polyvm.engine import lower as L  # noqa: E402
from polyvm.engine.jit import JitEngine  # noqa: E402
from polyvm.engine.reference import Engine  # noqa: E402
from polyvm.isa import get_arch  # noqa: E402
from polyvm.isa.riscv.asm import li, program  # noqa: E402
from polyvm.memory import PROT_ALL, PROT_READ, PROT_WRITE, AddressSpace  # noqa: E402

ARCH = get_arch("riscv64")
CODE = 0x10000
TABLE = 0x20000
A0 = ARCH.regs["a0"][0]


def _switch_loop(n: int) -> tuple[bytes, int, int]:
    """A jump-table loop, like a bytecode interpreter's: for a1 = n..1, jump through
    TABLE[a1 & 1] to h0 (a0 += 3) or h1 (a0 += 5), then back. Returns code, h0, h1."""
    head = [*li("a0", 0), *li("a1", n), *li("s0", TABLE)]
    loop = ["andi t0, a1, 1", "slli t0, t0, 3", "add t0, t0, s0", "ld t1, 0(t0)", "jalr zero, 0(t1)"]
    # h0: addi; jal back (+8 skips h1)   h1: addi   back: addi a1; bne a1, zero, loop
    n_head = len(program(head)) // 4
    loop_at = n_head
    h0 = CODE + 4 * (n_head + len(loop))
    h1 = h0 + 8
    back_at = (h1 + 4 - CODE) // 4
    body = [
        *loop,
        "addi a0, a0, 3",
        "jal zero, 8",
        "addi a0, a0, 5",
        "addi a1, a1, -1",
        f"bne a1, zero, {(loop_at - (back_at + 1)) * 4}",
        "ebreak",
    ]
    return program(head + body), h0, h1


def _mem(code: bytes, h0: int, h1: int) -> AddressSpace:
    mem = AddressSpace()
    mem.map(CODE, 0x1000, PROT_ALL)
    mem.write_raw(CODE, code)
    mem.map(TABLE, 0x1000, PROT_READ | PROT_WRITE)
    mem.write_raw(TABLE, h0.to_bytes(8, "little") + h1.to_bytes(8, "little"))
    return mem


def _run(eng, slice_blocks: int) -> list[int]:
    r = ARCH.new_state()
    r[0] = CODE
    stop = eng.run(r, slice_blocks)
    while stop.reason == "budget":
        stop = eng.run(r, slice_blocks)
    assert stop.reason == "breakpoint", stop
    return r


def test_jump_table_handlers_join_the_hot_loop(monkeypatch) -> None:
    """The handlers reached through the jump table have no loop of their own: they turn hot
    by being entered, and are recompiled together with the loop into one region whose
    indirect jump switches over them, so the loop stops going through the dispatcher."""
    monkeypatch.setattr(J, "TIER2_INSNS", 5000)
    n = 100_000
    code, h0, h1 = _switch_loop(n)
    ref = _run(Engine(ARCH, _mem(code, h0, h1)), 1_000_000)
    assert ref[A0] == (n // 2) * (3 + 5)  # by hand: n/2 even and n/2 odd values of a1
    eng = JitEngine(ARCH, _mem(code, h0, h1), tier="jit", background=False)
    r = _run(eng, 2000)
    assert r == ref  # every slot, the instruction count included
    hot = [reg for reg in eng.regions.values() if reg.opt == J.T2_OPT]
    assert any(h0 in reg.pcs and h1 in reg.pcs for reg in hot), [
        (hex(reg.entry), [hex(e) for e in reg.pcs]) for reg in hot
    ]
    # Before the hot tier each iteration takes two dispatches (loop -> handler -> loop);
    # after it, none: what is left is the warm-up and one per time slice.
    assert eng.ctx[L.CTX_DISPATCHES] < n // 10, eng.ctx[L.CTX_DISPATCHES]


def test_hot_tier_with_forced_switching_gives_the_same_state(monkeypatch) -> None:
    """The same program with the hot tier and switching to the interpreter every 7 blocks."""
    monkeypatch.setattr(J, "TIER2_INSNS", 2500)
    n = 20_001
    code, h0, h1 = _switch_loop(n)
    ref = _run(Engine(ARCH, _mem(code, h0, h1)), 1_000_000)
    assert ref[A0] == (n // 2) * 8 + 5  # a1 = n (odd) .. 1: one more odd value
    eng = JitEngine(ARCH, _mem(code, h0, h1), tier="jit", background=False, switch_every=7)
    assert _run(eng, 1000) == ref


def test_code_change_after_the_hot_tier_with_tiny_hot_regions(monkeypatch) -> None:
    """Code changed after the hot tier has run, with merged hot regions capped at 3 blocks
    (hot and first-tier translations of the same code side by side): every translation of the
    changed page must go. Rewriting the loop's `andi t0, a1, 1` to `andi t0, a1, 0` sends every
    iteration to h0 (a0 = 3n). (The case of a region replaced at only some of its entries is
    pinned down directly by the next test: this program's regions do not produce it.)"""
    monkeypatch.setattr(J, "TIER2_INSNS", 2500)
    monkeypatch.setattr(J, "REGION_BLOCKS_T2_MAX", 3)
    n = 100_000
    code, h0, h1 = _switch_loop(n)
    mem = _mem(code, h0, h1)
    eng = JitEngine(ARCH, mem, tier="jit", background=False)
    assert _run(eng, 2000)[A0] == (n // 2) * 8
    andi = program(["andi t0, a1, 1"])
    at = CODE + code.index(andi)
    mem.write_raw(at, program(["andi t0, a1, 0"]))
    changed = mem.read_raw(CODE, len(code))
    ref = _run(Engine(ARCH, _mem(changed, h0, h1)), 1_000_000)
    assert ref[A0] == 3 * n
    assert _run(eng, 2000) == ref


def test_a_region_replaced_at_some_entries_is_still_invalidated() -> None:
    """Region A (entries x, y) replaced at x only by region B: y still runs A, so a store into
    their page must still drop A's translation of y (no native code is run here; the addresses
    are never called)."""
    code, h0, h1 = _switch_loop(10)
    mem = _mem(code, h0, h1)
    eng = JitEngine(ARCH, mem, tier="jit", background=False)
    x, y = CODE, CODE + 0x10
    pn = CODE >> 12
    eng._install("pv_00000001a", "pv_00000001a_s", [x, y], {pn}, 0x1000, 1)
    eng._install("pv_00000002b", "pv_00000002b_s", [x], {pn}, 0x2000, 2)
    assert eng.pc_region[y].name == "pv_00000001a" and "pv_00000001a" in eng.regions
    mem.write_raw(y, mem.read_raw(y, 4))  # a store into the code page (same bytes)
    assert x not in eng.table and y not in eng.table
    assert x not in eng.pc_region and y not in eng.pc_region


@pytest.mark.parametrize("opt", [J.JIT_OPT, J.T2_OPT])
def test_region_called_at_a_pc_it_has_no_entry_for(opt: int) -> None:
    """A region called with state[pc] that is none of its entries runs nothing and returns
    RET_MISS (the dispatcher hands it to the engine, which translates that pc), with the
    state untouched: RET_CONTINUE there would send the dispatcher round the same pc forever."""
    code, h0, h1 = _switch_loop(10)
    eng = JitEngine(ARCH, _mem(code, h0, h1), tier="jit", background=False)
    assert eng._translate([CODE], opt=opt, limit=8)
    region = eng.pc_region[CODE]
    outside = CODE + 4  # an instruction inside the first block: no region is entered there
    assert outside not in region.pcs
    eng.st[0] = outside
    eng.st[1] = 1234
    before = list(eng.st)
    eng.ctx[L.CTX_LIMIT] = 1 << 40
    fn = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_void_p)(region.addr)
    assert fn(eng._ctx_addr, eng._st_addr) == L.RET_MISS
    assert list(eng.st) == before


def test_a_callee_in_another_region_returns_into_its_callers_region() -> None:
    """Return sites are region entries: g, translated on its own (first reached through an
    indirect call), returns from f's direct call into f's region, instead of missing there and
    compiling a near copy of f from the return site on (f's `ret` is placed before the return
    site, so the site is no loop head either). By hand: a0 = 1 + 1 + 100."""
    code = program(
        [
            "addi zero, zero, 0",  # 0
            "addi zero, zero, 0",  # 4
            "jalr ra, 0(t1)",  # 8: call g (t1 = g from the start: an indirect call)
            "jal ra, 16",  # 12: call f
            "ebreak",  # 16
            "addi ra, s1, 0",  # 20: f's epilogue
            "jalr zero, 0(ra)",  # 24: ret
            "addi s1, ra, 0",  # 28: f
            "jal ra, 16",  # 32: call g (direct; g has a translation, so not taken in)
            "addi a0, a0, 100",  # 36: the return site
            "jal zero, -20",  # 40: to the epilogue
            "addi zero, zero, 0",  # 44
            "addi a0, a0, 1",  # 48: g
            "jalr zero, 0(ra)",  # 52: ret
        ]
    )
    mem = AddressSpace()
    mem.map(CODE, 0x1000, PROT_ALL)
    mem.write_raw(CODE, code)
    eng = JitEngine(ARCH, mem, tier="jit", background=False)
    r = ARCH.new_state()
    r[0] = CODE
    r[ARCH.regs["t1"][0]] = CODE + 48
    assert eng.run(r, 1000).reason == "breakpoint"
    assert r[A0] == 102
    ret_site = CODE + 36
    assert eng.pc_region[ret_site].entry == CODE + 12  # the region made for `jal ra, f`
    assert not any(reg.entry == ret_site for reg in eng.regions.values())


# ---- hot loops entered at their headers only (`lower.LoopNest`) ----------------------------


def _nest(direct: dict[int, list[int]], virtual: dict[int, list[int]] | None = None) -> L.LoopNest:
    return L.LoopNest(direct, virtual or {})


def test_loop_nest_routes_into_a_nested_loop_through_the_outer_header() -> None:
    """1 -> 2 -> 3 (3 loops on itself) -> 4 -> 2 or 5: the loop {2, 3, 4} with {3} inside.
    A jump from outside (the region's entry) to 3 or 4 goes to 2 first, whose dispatch sends
    it on; 2 and 1 are entered as they are."""
    nest = _nest({1: [2], 2: [3], 3: [3, 4], 4: [2, 5], 5: []})
    assert sorted((h, sorted(b)) for h, b in nest.loops) == [(2, [2, 3, 4]), (3, [3])]
    assert nest.route(None, 3) == 2 and nest.next_hop(2, 3) == 3
    assert nest.route(None, 4) == 2 and nest.next_hop(2, 4) == 4
    assert nest.route(None, 2) is None and nest.route(None, 1) is None
    assert sorted(nest.dispatch) == [2] and sorted(nest.dispatch[2]) == [3, 4]


def test_loop_nest_three_levels_hop_header_by_header() -> None:
    """Loops {2..6} > {3, 4, 5} > {4}: from the entry, 4 is reached through 2 then 3; from 5
    (inside both outer loops) the edge to 4 enters only {4}, at its header: no route."""
    nest = _nest({1: [2], 2: [3], 3: [4], 4: [4, 5], 5: [3, 6], 6: [2, 7], 7: []})
    assert nest.route(None, 4) == 2
    assert nest.next_hop(2, 4) == 3 and nest.next_hop(3, 4) == 4
    assert nest.route(5, 4) is None
    assert nest.route(6, 5) == 3 and nest.next_hop(3, 5) == 5  # (6 is in {2..6} only)


def test_loop_nest_leaves_a_cycle_entered_at_two_blocks_alone() -> None:
    """{2, 3} entered by direct jumps at 2 and at 3 has no header (irreducible in the
    guest's own code): nothing is routed."""
    nest = _nest({1: [2, 3], 2: [3], 3: [2, 4], 4: []})
    assert nest.loops == [] and nest.route(None, 3) is None and nest.dispatch == {}


def test_loop_nest_virtual_edges_make_loops_but_not_entries() -> None:
    """A jump-table loop: 2 jumps indirectly to 3 or 4, both jump back to 2. The indirect
    jump's edges are inside the loop (no route); the entry's to a handler goes through 2.
    A cycle no direct edge enters (the region begins inside it) takes its lowest block as
    header."""
    nest = _nest({1: [2], 2: [], 3: [2], 4: [2]}, {2: [3, 4]})
    assert [(h, sorted(b)) for h, b in nest.loops] == [(2, [2, 3, 4])]
    assert nest.route(2, 3) is None and nest.route(None, 3) == 2
    inside = _nest({5: [6], 6: [7], 7: [5]})
    assert inside.loops[0][0] == 5 and inside.route(None, 6) == 5


def test_loop_nest_splits_an_inner_loop_sharing_the_outer_header() -> None:
    """A compiler's rotated loops: 1 jumps to the inner loop 2 (2 branches back to itself or
    on to 3); 3 ends the outer iteration (to 4 or out to 5); 4 holds the next iteration's
    start and a copy of the inner loop's first iteration (to 2 or 3). Every cycle passes 2,
    the only block entered from outside: one loop {2, 3, 4}, with {3, 4} inside. The back
    edge 2 -> 2 closes the cycle {2} alone, 4 -> 2 the whole loop: 2 heads an inner loop
    {2} of its own (`split`). Two sibling cycles through one header are not split; nor is a
    loop whose header has no self-contained smaller cycle."""
    nest = _nest({1: [2], 2: [2, 3], 3: [4, 5], 4: [2, 3], 5: []})
    assert sorted((h, sorted(b)) for h, b in nest.loops) == [(2, [2, 3, 4]), (3, [3, 4])]
    assert nest.split == {2: frozenset({2})}
    siblings = _nest({1: [2], 2: [3, 4], 3: [2], 4: [2, 5], 5: []})
    assert siblings.split == {}
    plain = _nest({1: [2], 2: [3], 3: [3, 4], 4: [2, 5], 5: []})
    assert plain.split == {}
    # A latch two blocks into the inner loop: {2, 6} is the inner loop.
    deeper = _nest({1: [2], 2: [6], 6: [2, 3], 3: [4, 5], 4: [2], 5: []})
    assert deeper.split == {2: frozenset({2, 6})}


def _rotated_loops(n: int, m: int) -> tuple[bytes, int, int, int]:
    """for s1 = n..1: for s2 = m..1: a0 = (a0 + DATA[0]) ^ s1, as compilers rotate it: the
    outer back edge goes to a block that sets s2 and runs on into the inner loop's code (so
    its block ends with the inner loop's branch), and the start jumps to the inner head. 128
    register increments come first (a region of the size of real ones, whose state pointer
    LLVM's capture tracking no longer follows). Returns code, the outer back edge's target,
    the inner loop's head and the block after it."""
    pad = [
        f"addi {r}, {r}, {i}"
        for i in range(1, 9)
        for r in (
            "a1",
            "a2",
            "a3",
            "a4",
            "a5",
            "a6",
            "a7",
            "t1",
            "t2",
            "t3",
            "t4",
            "t5",
            "t6",
            "s3",
            "s4",
            "s5",
        )
    ]
    set_m = li("s2", m)
    head = [*pad, *li("a0", 0), *li("s1", n), *li("s0", TABLE), *set_m, f"jal zero, {4 * len(set_m) + 4}"]
    inner = ["ld t0, 0(s0)", "add a0, a0, t0", "xor a0, a0, s1", "addi s2, s2, -1", "bne s2, zero, -16"]
    tail = ["addi s1, s1, -1", f"bne s1, zero, {-(4 * len(set_m) + 4 * len(inner) + 4)}", "ebreak"]
    outer = CODE + 4 * len(head)
    inner_at = outer + 4 * len(set_m)
    return program(head + set_m + inner + tail), outer, inner_at, inner_at + 4 * len(inner)


def test_an_inner_loop_sharing_its_header_keeps_guest_registers_in_host_ones(monkeypatch) -> None:
    """The rotated loops above, hot: the region from the start has the inner head as the
    header of both cycles. The outer loop gets a header block of its own (`H<pc>`, which the
    entry and the outer back edge go through), so LLVM sees the inner loop and keeps a0 and
    s2 in host registers across it: no store is left in the inner loop after the hot
    pipeline (they move to its exits; without the split, three stores per iteration stayed).
    Every slot equals the interpreter's; a0 by hand."""
    monkeypatch.setattr(J, "TIER2_INSNS", 3000)
    n, m, word = 300, 57, 0x1234_5678_9ABC
    code, outer, inner, after = _rotated_loops(n, m)
    a0 = 0
    for s1 in range(n, 0, -1):
        for _ in range(m, 0, -1):
            a0 = ((a0 + word) & (2**64 - 1)) ^ s1
    runs = []
    for eng_cls in (Engine, JitEngine):
        mem = AddressSpace()
        mem.map(CODE, 0x1000, PROT_ALL)
        mem.write_raw(CODE, code)
        mem.map(TABLE, 0x1000, PROT_READ | PROT_WRITE)
        mem.write_raw(TABLE, word.to_bytes(8, "little"))
        eng = eng_cls(ARCH, mem) if eng_cls is Engine else JitEngine(ARCH, mem, tier="jit", background=False)
        runs.append(_run(eng, 37))
    assert runs[0][A0] == a0 and runs[1] == runs[0]
    assert eng.pc_region[inner].opt == J.T2_OPT
    blocks = eng._form_region(CODE, J.REGION_BLOCKS_T2, whole=True)
    text = eng.lower_region("f", "r", blocks, [CODE], compact=False).text
    assert f"\nH{inner:x}:\n" in text
    lines = text.split(f"\nB{outer:x}:\n")[1].split("\nB")[0]
    assert f"label %H{inner:x}" in lines and f"label %B{inner:x}," not in lines
    c = J.Compiler.get()
    llvm = c.llvm
    mod = llvm.parse_assembly(J.resolve_native(c.module_text([text], {})))
    pb = llvm.create_pass_builder(c.tms[2], llvm.create_pipeline_tuning_options(speed_level=1))
    pb.getModulePassManager().run(mod, pb)
    body = str(mod).split(f"\nB{inner:x}:")[1].split(f"\nB{after:x}:")[0]
    assert "xor" in body and "store" not in body, body


def _nested_loops(n: int, m: int) -> tuple[bytes, int, int]:
    """for s1 = n..1: for s2 = m..1: a0 = (a0 + s2) ^ s1. Returns code, the outer loop's
    head and the inner loop's. (The jump to the outer head ends the first block there: a
    block lifted on from the start would run the first inner iteration and enter the loops
    at the inner head, making it the header of both.)"""
    head = [*li("a0", 0), *li("s1", n), "jal zero, 4"]
    set_m = li("s2", m)
    inner = ["add a0, a0, s2", "xor a0, a0, s1", "addi s2, s2, -1", "bne s2, zero, -12"]
    tail = ["addi s1, s1, -1", f"bne s1, zero, {-(4 * len(set_m) + 4 * len(inner) + 4)}", "ebreak"]
    outer = CODE + 4 * len(head)
    return program(head + set_m + inner + tail), outer, outer + 4 * len(set_m)


def test_a_time_slice_ending_in_a_nested_hot_loop_resumes_through_its_outer_header(monkeypatch) -> None:
    """Time slices of 37 blocks end inside the inner loop again and again after the hot
    tier: each resumes in the hot region at the inner loop's head, entered through the outer
    loop's header (`LoopNest`). Every slot, the count included, equals the interpreter's; a0
    by hand (a Python loop over the same recurrence)."""
    monkeypatch.setattr(J, "TIER2_INSNS", 3000)
    n, m = 300, 57
    code, outer, inner = _nested_loops(n, m)
    a0 = 0
    for s1 in range(n, 0, -1):
        for s2 in range(m, 0, -1):
            a0 = (a0 + s2) ^ s1
    mem = AddressSpace()
    mem.map(CODE, 0x1000, PROT_ALL)
    mem.write_raw(CODE, code)
    ref = _run(Engine(ARCH, mem), 1_000_000)
    assert ref[A0] == a0
    mem2 = AddressSpace()
    mem2.map(CODE, 0x1000, PROT_ALL)
    mem2.write_raw(CODE, code)
    eng = JitEngine(ARCH, mem2, tier="jit", background=False)
    assert _run(eng, 37) == ref
    hot = eng.pc_region[inner]
    assert hot.opt == J.T2_OPT and outer in hot.pcs and inner in hot.pcs
    # The hot region's entry switch sends the inner head through the outer loop's header.
    blocks = eng._form_region(hot.entry, J.REGION_BLOCKS_T2, whole=True)
    text = eng.lower_region("f", "r", blocks, [hot.entry], compact=False).text
    sw = next(line for line in text.splitlines() if "label %miss" in line)
    via = sw.split(f"i64 {inner}, label %")[1].split()[0].rstrip("]")
    body = text.split(f"\n{via}:\n")[1].splitlines()[:2]
    assert body == [f"  store i64 {inner}, i64* %resume", f"  br label %B{outer:x}"]


def _rare_path_loop(n: int) -> tuple[bytes, int, int]:
    """for s1 = n..1: a0 += s1, and a0 ^= 0x55 where s1 == 1 (the branch to the rare block
    is taken only in the last iteration). Returns code, the loop's head and the rare block."""
    head = [*li("a0", 0), *li("s1", n), "addi t1, zero, 1"]
    loop = ["add a0, a0, s1", "beq s1, t1, 12", "addi s1, s1, -1", "jal zero, -12"]
    rare = ["xori a0, a0, 0x55", "ebreak"]
    at = CODE + 4 * len(head)
    return program(head + loop + rare), at, at + 4 * len(loop)


@pytest.mark.parametrize("baseline", ["x64", "llvm"])
def test_the_first_tier_marks_the_blocks_it_runs(baseline: str) -> None:
    """Both first-tier code generators mark each block they run in the table after ctx's words (`L.SEEN_AT`,
    at `L.seen_index(pc)`): the loop's blocks are marked after a run that stops before the
    rare path is taken; the rare block (in the same region) is not."""
    if baseline == "x64" and J.Compiler.get().emitter is None:
        pytest.skip("no x86-64 emitter on this host")
    # (other code for each: the process reuses a region it compiled, by its name)
    code, loop, rare = _rare_path_loop(50 if baseline == "x64" else 51)
    mem = AddressSpace()
    mem.map(CODE, 0x1000, PROT_ALL)
    mem.write_raw(CODE, code)
    eng = JitEngine(ARCH, mem, tier="jit", background=False, baseline=baseline)
    r = ARCH.new_state()
    r[0] = CODE
    eng.run(r, 40)  # (40 blocks: well before the last iteration)
    assert r[0] != rare and rare in eng._lifted  # (translated with the loop's region)
    assert eng.seen[L.seen_index(loop)] == 1 and eng.seen[L.seen_index(loop + 8)] == 1
    assert eng.seen[L.seen_index(rare)] == 0
    assert len({L.seen_index(p) for p in (CODE, loop, loop + 8, rare)}) == 4


def _run_recording_hot_blocks(monkeypatch, code: bytes) -> tuple[list[list[int]], JitEngine, list[list[int]]]:
    """Run `code` on the interpreter and on the JIT (time slices of 1000 blocks): the two
    final states, the JIT engine, and the pcs of the blocks of each hot region it lowered."""
    hot_blocks: list[list[int]] = []
    lower_region = JitEngine.lower_region

    def record(self, name, label, blocks, entries, compact=False):  # type: ignore[no-untyped-def]
        if not compact:
            hot_blocks.append([b.pc for b in blocks])
        return lower_region(self, name, label, blocks, entries, compact=compact)

    monkeypatch.setattr(JitEngine, "lower_region", record)
    runs = []
    for jit in (False, True):
        mem = AddressSpace()
        mem.map(CODE, 0x1000, PROT_ALL)
        mem.write_raw(CODE, code)
        eng = JitEngine(ARCH, mem, tier="jit", background=False) if jit else Engine(ARCH, mem)
        runs.append(_run(eng, 1000))
    return runs, eng, hot_blocks


def test_hot_regions_take_in_only_blocks_that_ran(monkeypatch) -> None:
    """The loop turns hot long before its rare path runs: its hot region holds the blocks that
    ran (`_form_region(ran_only=True)`) and leaves the rare block to the first tier, which
    runs it when the last iteration takes the branch. Every slot equals the interpreter's; a0
    by hand."""
    monkeypatch.setattr(J, "TIER2_INSNS", 3000)
    n = 20_000
    code, loop, rare = _rare_path_loop(n)
    a0 = sum(range(1, n + 1)) ^ 0x55
    runs, eng, hot_blocks = _run_recording_hot_blocks(monkeypatch, code)
    assert runs[0][A0] == a0 and runs[1] == runs[0]
    assert eng.pc_region[loop].opt == J.T2_OPT
    assert hot_blocks and all(loop in b and loop + 8 in b and rare not in b for b in hot_blocks), hot_blocks
    assert eng.pc_region[rare].opt == J.JIT_OPT  # (the first tier's)


def test_hot_regions_are_entered_where_calls_that_leave_them_return() -> None:
    """g: ret; main: call through t1 (outside the region), call g (in it), call h (not in
    the region's blocks), ebreak. A hot region is entered at the return sites of the calls
    that leave it (the callee comes back through the dispatcher), not at the one after the
    call whose callee it holds; the first tier at every return site (g is a loop head either
    way: main's call to it jumps backward)."""
    code = program(["jalr zero, 0(ra)", "jalr ra, 0(t1)", "jal ra, -8", "jal ra, 0x100", "ebreak"])
    mem = AddressSpace()
    mem.map(CODE, 0x1000, PROT_ALL)
    mem.write_raw(CODE, code)
    g, main = CODE, CODE + 4
    blocks = [ARCH.lift_block(mem.fetch, pc, 64) for pc in (g, main, main + 4, main + 8, main + 12)]
    _, _, hot = L.region_shape(blocks, [main], compact=False)
    assert hot == [main, g, main + 4, main + 12]
    _, _, first = L.region_shape(blocks, [main], compact=True)
    assert first == [main, g, main + 4, main + 8, main + 12]


def test_a_call_that_leaves_the_hot_region_returns_into_it(monkeypatch) -> None:
    """for s1 = n..1: call f through a register (f: a0 = a0 * 3 + s1; ret). f is outside the
    loop's hot region (an indirect call), so it returns through the dispatcher: the return
    site inside the loop is an entry of the hot region (routed through the loop's header),
    not left to the first-tier region made for it. Every slot equals the interpreter's; a0
    by hand."""
    monkeypatch.setattr(J, "TIER2_INSNS", 3000)
    n = 2000
    head = [*li("a0", 0), *li("s1", n), *li("t1", 0)]  # (t1: f's address, set below)
    loop = ["jalr ra, 0(t1)", "addi s1, s1, -1", "bne s1, zero, -8", "ebreak"]
    f = ["add t0, a0, a0", "add a0, t0, a0", "add a0, a0, s1", "jalr zero, 0(ra)"]
    code = program(head + loop + f)
    loop_at = CODE + len(program(head))
    f_at = loop_at + 4 * len(loop)
    t1 = ARCH.regs["t1"][0]
    a0 = 0
    for s1 in range(n, 0, -1):
        a0 = (a0 * 3 + s1) & ((1 << 64) - 1)

    def fresh() -> tuple[AddressSpace, list[int]]:
        mem = AddressSpace()
        mem.map(CODE, 0x1000, PROT_ALL)
        mem.write_raw(CODE, code)
        r = ARCH.new_state()
        r[0] = CODE
        return mem, r

    mem, r = fresh()
    ref_eng = Engine(ARCH, mem)
    # (started at the loop, with t1 = f and s1 = n set here)
    r[0], r[t1] = loop_at, f_at
    r[ARCH.regs["s1"][0]] = n
    stop = ref_eng.run(r, 1_000_000)
    assert stop.reason == "breakpoint" and r[A0] == a0
    mem2, r2 = fresh()
    eng = JitEngine(ARCH, mem2, tier="jit", background=False)
    r2[0], r2[t1] = loop_at, f_at
    r2[ARCH.regs["s1"][0]] = n
    stop = eng.run(r2, 50)
    while stop.reason == "budget":
        stop = eng.run(r2, 50)
    assert stop.reason == "breakpoint" and r2 == r
    ret_site = loop_at + 4
    hot = eng.pc_region[loop_at]
    assert hot.opt == J.T2_OPT and ret_site in hot.pcs and eng.pc_region[ret_site] is hot


# ---- FP in hot regions: the accrued-NX shortcut inline (`RegionLowering._hot_fp`) ----------


@pytest.mark.parametrize("op", F.SHORTCUT_OPS + F.SINGLE_OPS)
def test_hot_fp_shortcut_is_the_helper(op: str) -> None:
    """The hot tier's binary64 and binary32 FP (the shortcut inline, else the fast path out of line):
    result, fflags and traps equal the reference interpreter's (exact softfloat) for operands
    around every boundary (`fp_cases`), with NX accrued or not, static and dynamic rounding
    modes (an illegal frm traps)."""
    import random

    ff, frm = ARCH.regs["fflags"][0], ARCH.regs["frm"][0]
    fa0 = ARCH.regs["fa0"][0]
    nsrc = F.sources(op)
    rng = random.Random(f"hot-nx-{op}")
    single = op.endswith(".s")
    vals = F.values(rng, single)
    srcs = ", ".join(f"fa{i + 1}" for i in range(nsrc))
    for rm in ("rne", "dyn", "rtz"):
        code = program([f"{op} fa0, {srcs}, {rm}", "ebreak"])
        mem = AddressSpace()
        mem.map(CODE, 0x1000, PROT_ALL)
        mem.write_raw(CODE, code)
        eng = JitEngine(ARCH, mem, tier="jit", background=False)
        assert eng._translate([CODE], opt=J.T2_OPT, limit=4)
        assert eng.pc_region[CODE].opt == J.T2_OPT
        ref = Engine(ARCH, mem)
        for i in range(400):
            xs = F.operands(rng, vals, nsrc, i, single)
            st = F.states(ARCH, CODE, xs, *F.flags_and_mode(rng))
            got = eng.run(st[0], 10)
            want = ref.run(st[1], 10)
            args = (op, rm, [hex(x) for x in xs], st[1][ff], st[1][frm])
            assert (got.reason, got.pc) == (want.reason, want.pc), args
            assert (st[0][fa0], st[0][ff]) == (st[1][fa0], st[1][ff]), args
        # The shortcut is there under RNE (static or dynamic), not under another mode.
        text = eng.lower_region("f", "r", eng._form_region(CODE, 4, whole=True), [CODE], compact=False).text
        t, fma = ("float", "llvm.fma.f32") if single else ("double", "llvm.fma.f64")
        assert (f"to {t}" in text) == (rm != "rtz")
        assert (fma in text) == (nsrc == 3 and rm != "rtz")


_PROMOTED = """
import sys
from polyvm.engine import cworker, jit
c = jit.Compiler.get()
llvm = c.llvm
if sys.argv[1] == "worker":
    cworker.configure_llvm(llvm)
mod = llvm.parse_assembly(jit.resolve_native(open(sys.argv[2]).read()))
pb = llvm.create_pass_builder(c.tms[2], llvm.create_pipeline_tuning_options(speed_level=1))
pb.getModulePassManager().run(mod, pb)
print(str(mod))
"""


def test_the_worker_keeps_a_big_regions_loop_registers_in_host_registers(tmp_path) -> None:
    """In a region of real size (its state pointer used hundreds of times: LLVM's capture
    tracking gives up past 100 and LICM then keeps every guest register of a loop in memory),
    the compile worker's LLVM settings (`cworker.configure_llvm`) let LICM keep the inner
    loop's registers in host registers (no store left in the loop; they move to its exits),
    where the same pipeline without them leaves stores in it. (Separate processes: the
    setting is process-wide.)"""
    import subprocess
    import sys

    n, m, word = 3, 5, 0x1234_5678_9ABC
    code, outer, inner, after = _rotated_loops(n, m)
    # Many more guest registers touched before the loops (the state's uses past 100).
    regs = ("a1", "a2", "a3", "a4", "a5", "a6", "a7", "t1", "t2", "t3", "t4", "t5", "t6", "s3", "s4")
    extra = [f"addi {r}, {r}, {k + 1}" for k in range(6) for r in regs]
    pad = len(extra) * 4
    code = program(extra) + code  # (the loops' code unchanged: only their addresses move)
    outer, inner, after = outer + pad, inner + pad, after + pad
    mem = AddressSpace()
    mem.map(CODE, 0x1000, PROT_ALL)
    mem.write_raw(CODE, code)
    mem.map(TABLE, 0x1000, PROT_READ | PROT_WRITE)
    mem.write_raw(TABLE, word.to_bytes(8, "little"))
    eng = JitEngine(ARCH, mem, tier="jit", background=False)
    blocks = eng._form_region(CODE, J.REGION_BLOCKS_T2, whole=True)
    assert {outer, inner} <= {b.pc for b in blocks}
    text = eng.lower_region("f", "r", blocks, [CODE], compact=False).text
    assert text.count("%st") > 150  # (the state's slots used that often)
    src = tmp_path / "region.ll"
    src.write_text(J.Compiler.get().module_text([text], {}))
    bodies = {}
    for how in ("worker", "plain"):
        out = subprocess.run(
            [sys.executable, "-c", _PROMOTED, how, str(src)], capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stderr
        bodies[how] = out.stdout.split(f"\nB{inner:x}:")[1].split(f"\nB{after:x}:")[0]
    assert "xor" in bodies["worker"] and "store" not in bodies["worker"], bodies["worker"]
    assert "store" in bodies["plain"]


def test_a_hot_loop_after_a_long_prologue_is_rooted_near_the_loop(monkeypatch) -> None:
    """Twelve one-branch blocks run once, then a loop: the emitted first tier's regions are
    small (`REGION_BLOCKS_EMITTED`), so the region whose counter turns hot starts a few blocks
    before the loop, not at the program's first block, and the hot region made from it holds
    the loop and at most a region's worth of the once-run blocks before it (with 32-block
    first-tier regions it held all twelve). Every slot equals the interpreter's; a0 by hand."""
    if J.Compiler.get().emitter is None:
        pytest.skip("no x86-64 emitter on this host (the LLVM first tier keeps 32-block regions)")
    monkeypatch.setattr(J, "TIER2_INSNS", 3000)
    n = 20_000
    prologue = ["addi a2, a2, 1", "beq zero, zero, 4"] * 12  # (a block each: a branch ends it)
    head = [*li("a0", 0), *li("s1", n)]
    loop = ["add a0, a0, s1", "addi s1, s1, -1", "bne s1, zero, -8", "ebreak"]
    code = program(prologue + head + loop)
    loop_at = CODE + len(program(prologue + head))
    runs, eng, hot_blocks = _run_recording_hot_blocks(monkeypatch, code)
    assert runs[0][A0] == n * (n + 1) // 2 and runs[1] == runs[0]
    assert eng.pc_region[loop_at].opt == J.T2_OPT
    prologue_pcs = {CODE + 8 * i for i in range(12)}
    for b in hot_blocks:
        assert loop_at in b and CODE not in b, [hex(p) for p in b]
        assert len(prologue_pcs & set(b)) <= J.REGION_BLOCKS_EMITTED, [hex(p) for p in b]


def test_a_later_loop_turns_hot_while_the_first_ones_hot_code_is_on_its_way(monkeypatch) -> None:
    """Two loops in one first-tier region entered before both (its first entry, then each
    loop's head). The first loop turns hot; its hot module is rooted at the region's first
    entry and is held back (as `_release_held` does until its quick code has run a while:
    here it never comes, the run does not wait for it). The second loop then runs on the same
    first-tier region, whose counter grows again: it must turn hot at its own head, not wait
    for the first module (before, a region whose first entry had hot code on its way was no
    candidate at all, and a cold bench_mem's pointer chase stayed on the first tier).
    Every slot equals the interpreter's; a0 by hand."""
    monkeypatch.setattr(J, "TIER2_INSNS", 3000)
    n = 20_000
    head = [*li("a0", 0), *li("s1", n)]
    loop1 = ["add a0, a0, s1", "addi s1, s1, -1", "bne s1, zero, -8"]
    mid = li("s1", n)
    loop2 = ["xor a0, a0, s1", "addi s1, s1, -1", "bne s1, zero, -8", "ebreak"]
    code = program(head + loop1 + mid + loop2)
    first = CODE + len(program(head))
    second = CODE + len(program(head + loop1 + mid))
    held: list[list[int]] = []
    translate = JitEngine._translate

    def hold_first(self, pcs, opt, limit, whole=False, background=False):  # type: ignore[no-untyped-def]
        if opt >= J.T2_OPT and not held:
            held.append(list(pcs))
            self._pending_pcs.update([*pcs, first])  # (on its way, as a held module's pcs are)
            return False
        return translate(self, pcs, opt, limit, whole, background)

    monkeypatch.setattr(JitEngine, "_translate", hold_first)
    runs, eng, _ = _run_recording_hot_blocks(monkeypatch, code)
    a0 = sum(range(1, n + 1))
    for i in range(n, 0, -1):
        a0 ^= i
    assert runs[0][A0] == a0 and runs[1] == runs[0]
    assert held and CODE in held[0], held  # (the first loop's module: rooted at the region's entry)
    assert eng.pc_region[first].opt == J.JIT_OPT  # (its hot code never came)
    assert eng.pc_region[second].opt == J.T2_OPT


def test_a_held_module_goes_to_the_worker_after_its_instructions_or_its_time(monkeypatch) -> None:
    """`_release_held`: a hot module held back goes to the compile worker once its quick code
    has run HOT_STAY x TIER2_INSNS instructions since, or HOT_STAY_SECONDS of the run's time
    (shared out by the instructions each module ran in it: a phase that waits on memory runs
    few instructions a second). The clock and the counts are set by hand; a worker that
    records what it is sent stands in for the process."""
    sent: list[str] = []

    class Worker:
        def submit(self, *args):  # type: ignore[no-untyped-def]
            sent.append(args[0])
            return object()

    mem = AddressSpace()
    mem.map(CODE, 0x1000, PROT_ALL)
    eng = JitEngine(ARCH, mem, tier="jit", background=False)
    monkeypatch.setattr(type(eng.compiler), "worker", property(lambda self: Worker()))
    clock = [100.0]
    monkeypatch.setattr(J.time, "perf_counter", lambda: clock[0])
    limit = J.HOT_STAY * J.TIER2_INSNS
    eng.st[J.SLOT_ICOUNT] = 1000
    eng._held_clock = (clock[0], 1000)
    for name, counter in (("slow", 1), ("fast", 2), ("idle", 3)):
        eng._held.append(J._Held((name,), [], J.T2_OPT, {}, 0, [counter], 0))

    def tick(seconds: float, runs: dict[int, int]) -> None:
        """`seconds` go by in which each counter's quick code runs so many instructions."""
        clock[0] += seconds
        for c, n in runs.items():
            eng.counters[c] += n
        eng.st[J.SLOT_ICOUNT] += sum(runs.values())
        eng._release_held()

    # Two phases share the time by their instructions: "slow" three quarters, "fast" one.
    s = J.HOT_STAY_SECONDS
    tick(s, {1: 3_000_000, 2: 1_000_000})
    assert sent == []
    tick(0.3 * s, {1: 1_000_000})  # ("slow" alone: 0.75 + 0.3 of HOT_STAY_SECONDS)
    assert sent == ["slow"]
    # A fast phase: its instructions, in far less time.
    tick(s / 10, {2: limit})
    assert sent == ["slow", "fast"]
    # Not run at all: held, however long the run goes on.
    tick(10.0, {})
    assert sent == ["slow", "fast"] and [h.args[0] for h in eng._held] == ["idle"]
    eng._release_held(all_=True)  # (the run is over)
    assert sent == ["slow", "fast", "idle"] and eng._held == []


def test_a_hot_region_takes_in_only_callees_called_from_its_loops(monkeypatch) -> None:
    """The root calls F once before its loop and G in every iteration: the hot region made
    when the loop turns hot holds G's blocks, not F's (F runs once, through the dispatcher,
    and would only make the hot module bigger: `_form_region`, `lower.looping_blocks`). Every slot equals
    the interpreter's; a0 and a1 by hand."""
    monkeypatch.setattr(J, "TIER2_INSNS", 3000)
    n = 20_000
    head = [*li("a0", 0), *li("s1", n)]
    base = CODE + len(program(head))
    body = [
        "jal ra, 20",  # F, once
        "jal ra, 24",  # the loop: G
        "addi s1, s1, -1",
        "bne s1, zero, -8",
        "ebreak",
        "addi a1, a1, 7",  # F
        "jalr zero, 0(ra)",
        "add a0, a0, s1",  # G
        "jalr zero, 0(ra)",
    ]
    f_at, g_at = base + 20, base + 28
    runs, eng, hot_blocks = _run_recording_hot_blocks(monkeypatch, program(head + body))
    assert runs[0][A0] == n * (n + 1) // 2 and runs[0][ARCH.regs["a1"][0]] == 7
    assert runs[1] == runs[0]
    assert hot_blocks, "the loop turned hot"
    for b in hot_blocks:
        assert g_at in b and f_at not in b, [hex(p) for p in b]


def test_looping_blocks_go_through_calls_to_their_return_sites() -> None:
    """`lower.looping_blocks`: a loop whose body calls a function (jal to F, F returns through
    ra) is a cycle through the call's block and its return site; F itself, left through an
    indirect jump, is on no cycle, nor is the block after the loop."""
    code = program(
        [
            "jal ra, 16",  # loop: call F
            "addi s1, s1, -1",  # the return site
            "bne s1, zero, -8",
            "ebreak",
            "addi a1, a1, 7",  # F
            "jalr zero, 0(ra)",
        ]
    )
    mem = AddressSpace()
    mem.map(CODE, 0x1000, PROT_ALL)
    mem.write_raw(CODE, code)
    blocks = [ARCH.lift_block(mem.fetch, pc, 64) for pc in (CODE, CODE + 4, CODE + 12, CODE + 16)]
    assert L.looping_blocks(blocks) == {CODE, CODE + 4}


def test_bad_tuning_knobs_fall_back_to_their_defaults() -> None:
    """$POLYVM_HOT_STAY and $POLYVM_HOT_STAY_SECONDS that are not numbers, or are negative,
    leave the defaults (16, 0.016 s) instead of failing the import (as the cache's knobs do);
    good values are taken."""
    import os
    import subprocess
    import sys

    code = "import polyvm.engine.jit as j; print(j.HOT_STAY, j.HOT_STAY_SECONDS)"
    for env, want in (
        ({"POLYVM_HOT_STAY": "x", "POLYVM_HOT_STAY_SECONDS": "abc"}, "16 0.016"),
        ({"POLYVM_HOT_STAY": "-3", "POLYVM_HOT_STAY_SECONDS": "-1"}, "16 0.016"),
        ({"POLYVM_HOT_STAY": "4", "POLYVM_HOT_STAY_SECONDS": "0.5"}, "4 0.5"),
    ):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0 and out.stdout.split() == want.split(), (env, out.stdout, out.stderr)
