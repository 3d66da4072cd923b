"""Placing LLVM's object files without LLVM (`polyvm.engine.elfload`) and knowing the host
without LLVM (`jit.host_facts`).

What the placed code computes is checked against hand-worked values and against the same
object loaded by LLVM's own MCJIT; the relocation kinds the objects hold are read with
pyelftools (an independent ELF reader), so the test knows it exercised them.
"""

from __future__ import annotations

import ctypes
import io
import json
import os

import pytest

pytest.importorskip("llvmlite")

from polyvm.engine import elfload, jit, tcache, x64  # noqa: E402
from polyvm.engine.jit import Compiler  # noqa: E402

here = pytest.mark.skipif(not x64.available(), reason="the loader places x86-64 objects on x86-64 Linux")

# A switch LLVM turns into a table of constants (.rodata), one it turns into a jump table
# (relocated entries), floating-point constants (.rodata.cst8), and calls between functions
# of the object: in the large code model all of these go through the GOT's address.
MODULE = """
define i64 @pick(i64 %x) {
  switch i64 %x, label %d [ i64 0, label %a  i64 1, label %b  i64 2, label %c
                            i64 3, label %e  i64 4, label %f  i64 5, label %g ]
a: ret i64 1009
b: ret i64 2027
c: ret i64 3041
e: ret i64 4057
f: ret i64 5077
g: ret i64 6089
d: ret i64 -1
}

define internal i64 @twice(i64 %x) noinline {
  %y = shl i64 %x, 1
  ret i64 %y
}
define internal i64 @thrice(i64 %x) noinline {
  %y = mul i64 %x, 3
  ret i64 %y
}
define internal i64 @neg(i64 %x) noinline {
  %y = sub i64 0, %x
  ret i64 %y
}
define internal i64 @sq(i64 %x) noinline {
  %y = mul i64 %x, %x
  ret i64 %y
}

define i64 @dispatch(i64 %k, i64 %x) {
  switch i64 %k, label %z [ i64 0, label %a  i64 1, label %b  i64 2, label %c  i64 3, label %e
                            i64 4, label %f  i64 5, label %g ]
a:
  %ra = call i64 @twice(i64 %x)
  ret i64 %ra
b:
  %rb = call i64 @thrice(i64 %x)
  %rb1 = add i64 %rb, 7
  ret i64 %rb1
c:
  %rc = call i64 @neg(i64 %x)
  ret i64 %rc
e:
  %re = call i64 @sq(i64 %x)
  ret i64 %re
f:
  %rf = call i64 @twice(i64 %x)
  %rf1 = call i64 @sq(i64 %rf)
  ret i64 %rf1
g:
  %rg = call i64 @thrice(i64 %x)
  %rg1 = call i64 @neg(i64 %rg)
  ret i64 %rg1
z:
  ret i64 0
}

define double @poly(double %x) {
  %a = fmul double %x, 1.25
  %b = fadd double %a, 0.0625
  %c = fmul double %b, %x
  ret double %c
}
"""

I64 = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)
I64_2 = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64, ctypes.c_int64)
F64 = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double)


def _obj(body: str) -> bytes:
    c = Compiler.get()
    return c.compile(c.module_text([body], {}), 2, account=False)


def _relocation_kinds(obj: bytes) -> set[str]:
    from elftools.elf.elffile import ELFFile
    from elftools.elf.enums import ENUM_RELOC_TYPE_x64
    from elftools.elf.relocation import RelocationSection

    names = {v: k for k, v in ENUM_RELOC_TYPE_x64.items()}
    elf = ELFFile(io.BytesIO(obj))
    return {
        names[r["r_info_type"]]
        for s in elf.iter_sections()
        if isinstance(s, RelocationSection) and s.name != ".rela.eh_frame"
        for r in s.iter_relocations()
    }


def _expected_dispatch(k: int, x: int) -> int:
    return {0: 2 * x, 1: 3 * x + 7, 2: -x, 3: x * x, 4: (2 * x) ** 2, 5: -3 * x}.get(k, 0)


def _check(addrs: dict[str, int]) -> None:
    pick = I64(addrs["pick"])
    for x, want in enumerate([1009, 2027, 3041, 4057, 5077, 6089, -1, -1]):
        assert pick(x) == want
    dispatch = I64_2(addrs["dispatch"])
    for k in range(8):
        for x in (0, 5, -11):
            assert dispatch(k, x) == _expected_dispatch(k, x), (k, x)
    poly = F64(addrs["poly"])
    assert poly(2.0) == 5.125  # (2 * 1.25 + 0.0625) * 2, exact in binary
    assert poly(-0.5) == 0.28125  # (-0.625 + 0.0625) * -0.5


@here
def test_placed_objects_compute_what_llvms_own_loader_makes_them_compute() -> None:
    obj = _obj(MODULE)
    kinds = _relocation_kinds(obj)
    # (what the object needs: relative to the GOT, from the GOT to the code, between sections)
    assert {"R_X86_64_GOTOFF64", "R_X86_64_GOTPC64", "R_X86_64_PC64"} <= kinds, kinds
    loader = x64.Loader()
    placed = elfload.load(obj, loader.reserve)
    assert placed is not None
    assert {"pick", "dispatch", "poly"} <= set(placed.symbols)
    assert placed.sizes["pick"] > 0
    _check(placed.symbols)
    # The same object through MCJIT (renamed: its symbols are process-wide there).
    c = Compiler.get()
    other = _obj(
        MODULE.replace("@pick", "@pick_m").replace("@dispatch", "@dispatch_m").replace("@poly", "@poly_m")
    )
    c.ee.add_object_file(c.llvm.ObjectFileRef.from_data(other))
    c.ee.finalize_object()
    _check({n: c.ee.get_function_address(f"{n}_m") for n in ("pick", "dispatch", "poly")})


@here
def test_hot_region_objects_are_placed_and_run() -> None:
    """A hot region's object (the hot tier's code for a guest loop) placed by the loader runs
    the loop as the interpreter does."""
    from polyvm.engine.jit import JitEngine
    from polyvm.isa import get_arch
    from polyvm.isa.riscv.asm import li, program
    from polyvm.memory import PROT_ALL, AddressSpace

    arch = get_arch("riscv64")
    code = program(
        [*li("a0", 0), *li("a1", 3000), "add a0, a0, a1", "addi a1, a1, -1", "bne a1, zero, -8", "ebreak"]
    )
    mem = AddressSpace()
    mem.map(0x10000, 0x1000, PROT_ALL)
    mem.write_raw(0x10000, code)
    eng = JitEngine(arch, mem, tier="jit", background=False)
    c = eng.compiler
    placed_before = len(c._placed)
    r = arch.new_state()
    r[0] = 0x10000
    eng._translate([0x10000], opt=jit.T2_OPT, limit=8, whole=True)
    assert len(c._placed) > placed_before  # (the hot object went through the loader)
    stop = eng.run(r, 1_000_000)
    assert stop.reason == "breakpoint"
    assert r[arch.regs["a0"][0]] == 3000 * 3001 // 2


@here
def test_objects_the_loader_does_not_handle_are_left_to_mcjit() -> None:
    # A call to a function outside the object (libm's, which MCJIT finds in the process).
    ext = _obj(
        "declare double @cos(double)\n"
        "define double @wave(double %x) {\n  %y = call double @cos(double %x)\n  ret double %y\n}\n"
    )
    loader = x64.Loader()
    reserved = []

    def reserve(n: int, align: int) -> int:
        reserved.append(n)
        return loader.reserve(n, align)

    assert elfload.load(ext, reserve) is None
    assert reserved == []  # (nothing placed for an object MCJIT loads)
    c = Compiler.get()
    addrs = c.load(ext, ["wave"])
    assert F64(addrs["wave"])(0.0) == 1.0


@here
def test_bad_objects_are_refused_not_a_crash() -> None:
    obj = _obj(MODULE)
    loader = x64.Loader()
    bad = [
        b"",
        obj[:40],
        obj[: len(obj) // 2],
        b"\x7fELF" + bytes(60),
        obj[:0x28] + (1 << 40).to_bytes(8, "little") + obj[0x30:],  # section table far away
        bytes(range(256)) * 8,
    ]
    for b in bad:
        assert elfload.load(b, loader.reserve) is None


def test_host_facts_are_kept_and_a_bad_entry_is_asked_again(tmp_path, monkeypatch) -> None:
    import llvmlite.binding as llvm

    if jit._host_fingerprint() is None:
        pytest.skip("no /proc/cpuinfo: LLVM is asked every run")
    monkeypatch.setenv("POLYVM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(jit, "_host_facts", None)
    truth = jit._facts_from_llvm(llvm)
    assert truth["triple"] == llvm.get_process_triple()
    assert jit.host_facts() == truth
    aux = tmp_path / "v1" / "aux"
    [kept] = [p for p in aux.iterdir() if p.name.startswith("host-")]
    assert json.loads(tcache._unseal(kept.read_bytes())) == truth
    # A later process reads it (here: the kept facts changed by hand are what it gets).
    tcache.store_aux("", "host", jit._host_fingerprint(), json.dumps({**truth, "cpu": "elsewhere"}).encode())
    monkeypatch.setattr(jit, "_host_facts", None)
    assert jit.host_facts()["cpu"] == "elsewhere"
    # A damaged entry is not believed: LLVM is asked and the entry rewritten.
    kept.write_bytes(kept.read_bytes()[:-3] + b"xyz")
    monkeypatch.setattr(jit, "_host_facts", None)
    assert jit.host_facts() == truth
    assert json.loads(tcache._unseal(kept.read_bytes())) == truth
    # Facts that are not these five strings are not believed either.
    tcache.store_aux("", "host", jit._host_fingerprint(), json.dumps({"cpu": 3}).encode())
    monkeypatch.setattr(jit, "_host_facts", None)
    assert jit.host_facts() == truth
    assert os.path.exists(kept)
