"""The persistent translation cache, `polyvm aot` and `polyvm cache`.

Expected program output comes from the reference interpreter (and the program's source); the
cache must never change what a program does, only how much is compiled.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("llvmlite")

from polyvm.engine import jit  # noqa: E402
from polyvm.engine.jit import Compiler, JitEngine  # noqa: E402
from polyvm.engine.tcache import TranslationCache, clear, info  # noqa: E402
from polyvm.isa import get_arch  # noqa: E402
from polyvm.isa.riscv.asm import li, program  # noqa: E402
from polyvm.memory import PROT_ALL, PROT_READ, PROT_WRITE, AddressSpace  # noqa: E402
from polyvm.testing import wait_for_compile_workers  # noqa: E402
from polyvm.testing.guest import build_guest  # noqa: E402

ARCH = get_arch("riscv64")
CODE = 0x10000


def _engine(code: bytes, cache: TranslationCache | None) -> tuple[JitEngine, list[int]]:
    mem = AddressSpace()
    mem.map(CODE, 0x1000, PROT_ALL)
    mem.map(0x20000, 0x1000, PROT_READ | PROT_WRITE)
    mem.write_raw(CODE, code)
    eng = JitEngine(ARCH, mem, tier="jit", cache=cache)
    r = ARCH.new_state()
    r[0] = CODE
    return eng, r


def _sum_loop(n: int, step: int) -> bytes:
    # a0 = sum of step for n iterations, then ebreak
    return program(
        [
            *li("a0", 0),
            *li("a1", n),
            f"addi a0, a0, {step}",
            "addi a1, a1, -1",
            "bne a1, zero, -8",
            "ebreak",
        ]
    )


def _run(eng: JitEngine, r: list[int]) -> int:
    stop = eng.run(r, 1_000_000)
    assert stop.reason == "breakpoint", stop
    return r[ARCH.regs["a0"][0]]


def test_cache_reuses_translations_and_detects_changed_code(tmp_path) -> None:
    host = Compiler.get().host_id
    cache = TranslationCache(str(tmp_path), host)
    eng, r = _engine(_sum_loop(100, 3), cache)
    assert _run(eng, r) == 300
    assert eng.regions_compiled > 0 and eng.regions_loaded == 0
    # A second "process" (a fresh engine and cache object) loads instead of compiling.
    cache2 = TranslationCache(str(tmp_path), host)
    eng2, r2 = _engine(_sum_loop(100, 3), cache2)
    assert _run(eng2, r2) == 300
    assert eng2.regions_loaded > 0 and eng2.regions_compiled == 0
    assert r2[1] == r[1]  # same instruction count
    # Different code at the same addresses: the old translation must not be used.
    cache3 = TranslationCache(str(tmp_path), host)
    eng3, r3 = _engine(_sum_loop(100, 5), cache3)
    assert _run(eng3, r3) == 500
    assert eng3.regions_compiled > 0


def test_corrupt_cache_files_are_ignored_and_rebuilt(tmp_path) -> None:
    host = Compiler.get().host_id
    eng, r = _engine(_sum_loop(50, 7), TranslationCache(str(tmp_path), host))
    assert _run(eng, r) == 350
    files = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path) for f in fs]
    assert files
    for i, path in enumerate(files):
        with open(path, "r+b") as f:
            data = bytearray(f.read())
            if i % 2:
                data[len(data) // 2] ^= 0xFF  # flip a byte
                f.seek(0)
                f.write(data)
            else:
                f.truncate(len(data) // 3)  # a torn write
    cache = TranslationCache(str(tmp_path), host)
    eng2, r2 = _engine(_sum_loop(50, 7), cache)
    assert _run(eng2, r2) == 350
    assert eng2.regions_loaded == 0  # (this process may reuse the code it compiled above)
    assert cache.rejected > 0
    # ... and the rebuilt entries are good again.
    eng3, r3 = _engine(_sum_loop(50, 7), TranslationCache(str(tmp_path), host))
    assert _run(eng3, r3) == 350 and eng3.regions_loaded > 0


def test_storing_fresh_objects_and_known_page_hashes(tmp_path, monkeypatch) -> None:
    """What a translation stores as it is made: an object made just now (`fresh`, its
    symbols have a nonce) is written without looking for it on disk; an entry's page hashes
    the engine already knows (`known`) are used as given, the others computed; a lookup then
    finds the entry while the pages hold the same bytes, and not once one changes."""
    host = Compiler.get().host_id
    cache = TranslationCache(str(tmp_path), host)
    mem = AddressSpace()
    mem.map(CODE, 0x2000, PROT_ALL)
    mem.write_raw(CODE, _sum_loop(3, 1))
    pn = CODE >> 12
    known = {pn: TranslationCache.page_hash(mem, pn)}

    def no_disk(path: str) -> bool:
        raise AssertionError(f"looked for {path}")

    monkeypatch.setattr(os.path, "exists", no_disk)
    obj = b"\x7fELF not really" + os.urandom(8)
    name = cache.store_object(obj, fresh=True)
    monkeypatch.undo()
    assert name is not None
    hashed: list[int] = []
    real = TranslationCache.page_hash
    monkeypatch.setattr(
        TranslationCache, "page_hash", staticmethod(lambda m, p: hashed.append(p) or real(m, p))
    )
    cache.store_entry(mem, [CODE], "sym", name, 1, [pn, pn + 1], known=known)
    assert hashed == [pn + 1]
    monkeypatch.undo()
    cache.flush()
    again = TranslationCache(str(tmp_path), host)
    got = again.lookup(mem, CODE, {})
    assert got is not None and got[1] == obj and got[0]["symbol"] == "sym"
    mem.write_raw(CODE + 0x1000, b"\x01")  # (a page the region covers)
    assert TranslationCache(str(tmp_path), host).lookup(mem, CODE, {}) is None


def test_unwritable_cache_dir_runs_without_cache(tmp_path) -> None:
    target = tmp_path / "file"
    target.write_text("not a directory")
    cache = TranslationCache(str(target), Compiler.get().host_id)
    assert not cache.enabled
    eng, r = _engine(_sum_loop(10, 1), cache)
    assert _run(eng, r) == 10


def _polyvm(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "polyvm", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


@pytest.fixture
def cache_env(tmp_path):
    env = dict(os.environ)
    env["POLYVM_CACHE_DIR"] = str(tmp_path / "tc")
    return env


def test_cli_warm_run_concurrent_runs_and_cache_commands(cache_env) -> None:
    hello = build_guest("hello")
    ref = _polyvm("run", "--engine", "interp", hello, "x", env=cache_env)
    # Two processes filling one empty cache at the same time.
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "polyvm", "run", "--stats", "--engine", "jit", hello, "x"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cache_env,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == ref.returncode and out == ref.stdout, err
    warm = _polyvm("run", "--stats", "--engine", "jit", hello, "x", env=cache_env)
    assert warm.stdout == ref.stdout and warm.returncode == ref.returncode
    assert " 0 regions" in warm.stderr and "loaded from the translation cache" in warm.stderr, warm.stderr
    # (the cold runs' compile workers write their runs' files after them: counted once done)
    wait_for_compile_workers(f"POLYVM_CACHE_DIR={cache_env['POLYVM_CACHE_DIR']}", 60)
    st = info(cache_env["POLYVM_CACHE_DIR"])
    assert st["entries"] > 0 and st["objects"] > 0
    aux = os.path.join(cache_env["POLYVM_CACHE_DIR"], "v1", "aux")
    assert st["shared"] == len(os.listdir(aux)) > 0  # (the dispatcher, FP fast paths, decode tables)
    v1 = os.path.join(cache_env["POLYVM_CACHE_DIR"], "v1")
    kept = [
        os.path.join(d, f)
        for d, _, fs in os.walk(v1)
        for f in fs
        if os.path.basename(d) in ("aux", "ent", "obj")
    ]
    assert st["bytes"] == sum(os.path.getsize(f) for f in kept if not os.path.basename(f).startswith(".tmp-"))
    out = _polyvm("cache", "info", env=cache_env)
    assert out.returncode == 0 and f"{st['entries']} entries" in out.stdout
    assert f"{st['shared']} shared objects" in out.stdout and f"{st['bytes']} bytes" in out.stdout
    out = _polyvm("cache", "clear", env=cache_env)
    assert out.returncode == 0 and f"({st['bytes']} bytes)" in out.stdout
    assert info(cache_env["POLYVM_CACHE_DIR"])["entries"] == 0
    assert info(cache_env["POLYVM_CACHE_DIR"])["shared"] == 0
    assert clear(cache_env["POLYVM_CACHE_DIR"]) == 0


def test_aot_then_run_uses_native_code(cache_env) -> None:
    hello = build_guest("hello")
    ref = _polyvm("run", "--engine", "interp", hello, env=cache_env)
    aot = _polyvm("aot", "-j", "2", hello, env=cache_env, timeout=600)
    assert aot.returncode == 0, aot.stderr
    assert "functions" in aot.stdout and "polyvm aot: [" in aot.stderr  # the progress bar
    run = _polyvm("run", "--stats", "--engine", "aot", hello, env=cache_env)
    assert run.stdout == ref.stdout and run.returncode == ref.returncode
    loaded = int(run.stderr.split(" loaded from the translation cache")[0].rsplit(" ", 1)[1])
    assert loaded > 0


def test_aot_bad_input_is_one_line(tmp_path, cache_env) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x7fELF garbage")
    out = _polyvm("aot", str(bad), env=cache_env)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    out = _polyvm("aot", str(tmp_path / "missing"), env=cache_env)
    assert out.returncode != 0 and "Traceback" not in out.stderr


def test_background_compilation_gives_the_same_results(tmp_path) -> None:
    """auto tier with background compilation: hot code is compiled in the compile worker
    while the interpreter goes on; results and counts equal the reference interpreter's.
    (The first tier through LLVM: where the first tier is emitted without LLVM, `x64`, it is
    made in place, being cheaper than sending it.)"""
    from polyvm.engine.reference import Engine

    code = _sum_loop(300000, 3)
    mem = AddressSpace()
    mem.map(CODE, 0x1000, PROT_ALL)
    mem.write_raw(CODE, code)
    ref = ARCH.new_state()
    ref[0] = CODE
    assert Engine(ARCH, mem).run(ref, 10_000_000).reason == "breakpoint"
    eng, r = _engine(code, None)
    eng = JitEngine(ARCH, eng.mem, tier="auto", background=True, baseline="llvm")
    stop = eng.run(r, 1_000_000)
    while stop.reason == "budget":
        stop = eng.run(r, 1_000_000)
    assert stop.reason == "breakpoint"
    assert r == ref  # every slot, the instruction count included
    for job in [j[0] for j in eng._jobs]:
        while not job.done:
            pass
    eng._poll_jobs()
    assert eng.bg_compile_time > 0 and eng.regions_compiled > 0 and eng.table


def test_without_llvmlite(tmp_path, cache_env) -> None:
    """No llvmlite: `auto` runs on the interpreter, `jit` and `aot` say so in one line (exit 2)."""
    code = (
        "import builtins, sys\n"
        "real = builtins.__import__\n"
        "def fake(name, *a, **k):\n"
        "    if name.startswith('llvmlite'):\n"
        "        raise ImportError('no llvmlite')\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = fake\n"
        "from polyvm.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    hello = str(build_guest("hello"))
    ref = _polyvm("run", "--engine", "interp", hello, env=cache_env)
    for args, status in (
        (["run", "--engine", "auto", hello], ref.returncode),
        (["run", "--engine", "jit", hello], 2),
        (["aot", hello], 2),
    ):
        p = subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, env=cache_env, timeout=300
        )
        assert p.returncode == status, (args, p.stderr)
        assert "Traceback" not in p.stderr
        if status == 2:
            assert p.stderr.strip() == "polyvm: error: the JIT needs llvmlite (pip install 'polyvm[jit]')"
        else:
            assert p.stdout == ref.stdout


def test_cache_size_is_bounded(tmp_path) -> None:
    """Opening the cache trims its objects to the size bound, oldest first; what is left works."""
    host = Compiler.get().host_id
    # (loops no other test compiles: this process reuses code it compiled, without storing it)
    for step in (21, 22, 23, 24):
        eng, r = _engine(_sum_loop(13, step), TranslationCache(str(tmp_path), host))
        assert _run(eng, r) == 13 * step
    objs = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path) for f in fs if f.endswith(".o")]
    assert len(objs) >= 2
    sizes = sorted(os.path.getsize(p) for p in objs)
    bound = sum(sizes) // 2
    cache = TranslationCache(str(tmp_path), host, max_bytes=bound)
    left = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path) for f in fs if f.endswith(".o")]
    assert cache.evicted > 0 and sum(os.path.getsize(p) for p in left) <= bound
    eng, r = _engine(_sum_loop(13, 24), cache)  # evicted or not, the result is right
    assert _run(eng, r) == 13 * 24


def test_parts_no_run_used_for_a_month_are_deleted(tmp_path, monkeypatch) -> None:
    """Opening the cache deletes other host configurations' parts and `aux` objects no run
    used for $POLYVM_CACHE_STALE_DAYS (30): an older polyvm's or code generator's are never
    looked at again. A part opened, or an aux object loaded, within that time stays (loading
    sets the object's access time; its modification time is left as it was)."""
    import time

    from polyvm.engine import tcache as T

    monkeypatch.setenv("POLYVM_CACHE_DIR", str(tmp_path))
    host = Compiler.get().host_id
    v1 = tmp_path / "v1"
    month_ago = time.time() - 31 * 86400
    for name, t in (("oldhost", month_ago), ("recenthost", time.time() - 86400)):
        (v1 / name / "obj").mkdir(parents=True)
        (v1 / name / "obj" / "x.o").write_bytes(b"x" * 100)
        os.utime(v1 / name, (t, t))
    kept, dropped = T._aux_path(host, "kept", "src1"), T._aux_path(host, "dropped", "src2")
    T.store_aux(host, "kept", "src1", b"obj1")
    T.store_aux(host, "dropped", "src2", b"obj2")
    for p in (kept, dropped):
        os.utime(p, (month_ago, month_ago))
    assert T.load_aux(host, "kept", "src1") == b"obj1"
    assert os.stat(kept).st_mtime == pytest.approx(month_ago)
    cache = TranslationCache(str(tmp_path), host)
    assert sorted(os.listdir(v1)) == sorted(["aux", "recenthost", cache.host])
    assert os.listdir(v1 / "aux") == [os.path.basename(kept)]
    assert info(str(tmp_path))["hosts"] == 2


def test_aot_reads_function_symbols_of_both_elf_classes() -> None:
    """`polyvm aot`'s symbol reader: STT_FUNC symbols with a value, from raw Elf64_Sym and
    Elf32_Sym tables, either byte order. The entries are laid out field by field from the ELF
    specification (Elf64_Sym: name 4, info 1, other 1, shndx 2, value 8, size 8 bytes;
    Elf32_Sym: name 4, value 4, size 4, info 1, other 1, shndx 2)."""
    from polyvm.aot import _func_symbols

    # (name, info, shndx, value, size); info = bind << 4 | type (FUNC = 2, OBJECT = 1)
    syms = [(0, 0, 0, 0, 0), (1, 0x12, 1, 0x1000, 64), (5, 0x11, 2, 0x2000, 8), (9, 0x02, 1, 0x1040, 0)]
    for order in ("little", "big"):

        def f(v: int, n: int, order: str = order) -> bytes:
            return v.to_bytes(n, order)

        raw64 = b"".join(f(n, 4) + f(i, 1) + f(0, 1) + f(x, 2) + f(v, 8) + f(z, 8) for n, i, x, v, z in syms)
        raw32 = b"".join(f(n, 4) + f(v, 4) + f(z, 4) + f(i, 1) + f(0, 1) + f(x, 2) for n, i, x, v, z in syms)
        assert len(raw64) == 4 * 24 and len(raw32) == 4 * 16
        assert _func_symbols(raw64, 64, order == "little") == [(0x1000, 64), (0x1040, 0)]
        assert _func_symbols(raw32, 32, order == "little") == [(0x1000, 64), (0x1040, 0)]


def test_a_later_run_takes_up_the_hot_code_of_an_earlier_one(tmp_path, monkeypatch) -> None:
    """main calls f, which loops: the first tier makes one region from main (f's blocks and
    the return site after the call are its other entries); a hot region is then made for main
    alone. A second engine on the same cache entering first at the return site (as code
    leaving hot code does) gets the first-tier region back in the order it was made (main
    first: its hot recompile is the cached one, not one rooted elsewhere) and with it the hot
    code cached for main; an engine that has main's hot code first has it again after the
    first-tier region comes in for the return site. Both get the first engine's result. When
    the first-tier region turns hot itself, its hot recompile starts at the entries it still
    serves."""
    from polyvm.engine import jit as J

    monkeypatch.setattr(J, "TIER2_INSNS", 1 << 62)  # (only the hot region made here)
    # main: a0 = 0; a1 = n; call f; ebreak     f: loop a0 += 3, a1 times; ret
    head = [*li("a0", 0), *li("a1", 3000)]
    code = program(
        [*head, "jal ra, 8", "ebreak"]
        + ["addi a0, a0, 3", "addi a1, a1, -1", "bne a1, zero, -8", "jalr zero, 0(ra)"]
    )
    ret_site = CODE + len(program(head)) + 4
    eng, r = _engine(code, TranslationCache(str(tmp_path), Compiler.get().host_id))
    assert _run(eng, r) == 9000
    first = eng.pc_region[ret_site]
    assert first.opt == J.JIT_OPT and first.entry == CODE  # (made for main)
    assert eng._translate([CODE], opt=J.T2_OPT, limit=1, whole=True)
    hot = eng.pc_region[CODE]
    assert hot.opt == J.T2_OPT and hot.pcs == [CODE]

    eng2, r2 = _engine(code, TranslationCache(str(tmp_path), Compiler.get().host_id))
    assert eng2._load_cached(ret_site)
    again = eng2.pc_region[ret_site]
    assert again.name == first.name and again.entry == CODE  # (the order it was made with)
    assert eng2.pc_region[CODE].name == hot.name  # main's hot code came with it

    eng3, r3 = _engine(code, TranslationCache(str(tmp_path), Compiler.get().host_id))
    assert eng3._load_cached(CODE) and eng3.pc_region[CODE].name == hot.name
    assert eng3._load_cached(ret_site) and eng3.pc_region[ret_site].name == first.name
    assert eng3.pc_region[CODE].name == hot.name  # (not left to the first tier)
    for e, regs in ((eng2, r2), (eng3, r3)):
        assert _run(e, regs) == 9000 and regs == r
        assert e.blocks_compiled == 0
    # The first-tier region turning hot (again) while main has hot code: what runs there comes
    # in through its other entries, so its hot recompile is rooted at those, not at main.
    monkeypatch.setattr(J, "TIER2_INSNS", 1000)
    eng.bg_hot = False
    eng.counters[first.counter] = 1000
    eng._maybe_tier2()
    now = eng.pc_region[ret_site]
    assert now.opt == J.T2_OPT and now.entry != CODE and now.entry in first.pcs
    assert eng.pc_region[CODE] is hot


def test_cache_prepare_makes_the_per_host_objects(cache_env) -> None:
    """`polyvm cache prepare` compiles what every program shares (the dispatcher, each FP
    helper's fast path) into the cache once, and keeps the RISC-V decode tables there
    (`decodetree.persist`); a second call finds them all there."""
    import re

    from polyvm.engine.tcache import _unseal

    out = _polyvm("cache", "prepare", env=cache_env)
    assert out.returncode == 0, out.stderr
    n = int(re.search(r"(\d+) host objects", out.stdout).group(1))
    aux = os.path.join(cache_env["POLYVM_CACHE_DIR"], "v1", "aux")
    # (besides them, what LLVM says of the host, kept where a fingerprint of it can be made:
    # `jit.host_facts`)
    tables = sorted(f.rsplit("-", 1)[0] for f in os.listdir(aux) if f.startswith("riscv-decode"))
    assert tables == ["riscv-decode16", "riscv-decode32"]
    files = [f for f in os.listdir(aux) if not f.startswith(("host-", "riscv-decode"))]
    assert n > 20 and len(files) == n  # (one per fast path and the runtime module)
    assert len(os.listdir(aux)) == n + 2 + (jit._host_fingerprint() is not None)
    for f in files:
        with open(os.path.join(aux, f), "rb") as fh:
            assert _unseal(fh.read()) is not None
    stamps = {f: os.stat(os.path.join(aux, f)).st_mtime_ns for f in os.listdir(aux)}
    again = _polyvm("cache", "prepare", env=cache_env)
    assert again.returncode == 0 and f"{n} host objects" in again.stdout
    assert {f: os.stat(os.path.join(aux, f)).st_mtime_ns for f in os.listdir(aux)} == stamps


def test_deferred_writes_go_as_one_bundle_the_next_run_can_read(tmp_path) -> None:
    """A run's cache (`defer`) keeps what it stores in memory; `take_deferred` hands it over
    as files, which `write_bundle` writes after the run — leaving out entries the writer wrote
    itself (hot code for the same pc), files outside the cache directory and corrupt ones. A
    cache opened before the bundle is written reads it (lookups hit), preferring a file the
    disk has already."""
    import marshal

    from polyvm.engine.tcache import write_bundle

    host = Compiler.get().host_id
    code = _sum_loop(13, 5)  # (code no other test compiles in this process: it is stored)
    cache = TranslationCache(str(tmp_path), host, background_writes=True)
    cache.defer()
    eng, r = _engine(code, cache)
    assert _run(eng, r) == 65
    assert os.listdir(cache.ent_dir) == [] and os.listdir(cache.obj_dir) == []  # (nothing yet)
    files = cache.take_deferred()
    ents = [p for p in files if os.path.dirname(p) == cache.ent_dir]
    assert ents and any(os.path.dirname(p) == cache.obj_dir for p in files)
    assert cache.take_deferred() == {}

    bundle = os.path.join(cache.dir, "files-test")
    bad = {os.path.join(str(tmp_path), "outside"): next(iter(files.values())), ents[0] + "x": b"corrupt"}
    with open(bundle, "wb") as f:
        marshal.dump({**files, **bad}, f)
    # Opened before the bundle is written: found through the bundle.
    eng2, r2 = _engine(code, TranslationCache(str(tmp_path), host))
    assert _run(eng2, r2) == 65 and eng2.regions_loaded > 0 and eng2.blocks_compiled == 0

    skipped = ents[0]
    hot = b"a newer file the worker wrote"
    with open(skipped, "wb") as f:
        f.write(hot)
    assert write_bundle(bundle, skip={skipped}) == len(files) - 1
    assert not os.path.exists(bundle) and not any(os.path.exists(p) for p in bad)
    with open(skipped, "rb") as f:
        assert f.read() == hot
    for p, data in files.items():
        if p != skipped:
            with open(p, "rb") as f:
                assert f.read() == data
    # A bundle that is not one is deleted and writes nothing.
    with open(bundle, "wb") as f:
        f.write(b"\x00garbage")
    assert write_bundle(bundle) == 0 and not os.path.exists(bundle)


def test_a_bundle_not_yet_written_does_not_hide_newer_files(tmp_path) -> None:
    """A cache opened while a bundle waits reads it only for files the disk does not have."""
    import marshal

    from polyvm.engine.tcache import _seal

    cache = TranslationCache(str(tmp_path), Compiler.get().host_id)
    on_disk, only_bundled = os.path.join(cache.ent_dir, "a" * 40), os.path.join(cache.ent_dir, "b" * 40)
    with open(on_disk, "wb") as f:
        f.write(_seal(b"disk"))
    with open(os.path.join(cache.dir, "files-x"), "wb") as f:
        marshal.dump({on_disk: _seal(b"bundle"), only_bundled: _seal(b"bundle")}, f)
    c2 = TranslationCache(str(tmp_path), Compiler.get().host_id)
    assert c2._read(on_disk) == _seal(b"disk") and c2._read(only_bundled) == _seal(b"bundle")
    assert "b" * 40 in c2._index


def test_a_bundle_whose_worker_died_is_written_by_the_next_run(tmp_path) -> None:
    """A bundle is named after the worker that writes it (`tcache.bundle_owner`). A cache
    opened while that worker runs reads it from memory and leaves it; one opened after that
    worker has died (here: a process that has exited) writes its files and deletes it, instead
    of every run reading it until it is an hour old. Another host's bundle is left alone."""
    import marshal
    import subprocess

    from polyvm.engine.tcache import _seal, bundle_owner

    host = Compiler.get().host_id
    cache = TranslationCache(str(tmp_path), host)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(gone.stdout)
    cases = {
        "alive": bundle_owner(os.getpid()),
        "dead": bundle_owner(dead_pid),
        "elsewhere": "0badc0de." + str(dead_pid),
    }
    paths = {}
    for k, owner in cases.items():
        p = os.path.join(cache.ent_dir, k * 5)
        paths[k] = (os.path.join(cache.dir, f"files-{owner}-abc_12"), p)
        with open(paths[k][0], "wb") as f:
            marshal.dump({p: _seal(k.encode())}, f)
    opened = TranslationCache(str(tmp_path), host)
    for k, (bundle, p) in paths.items():
        if k == "dead":
            assert not os.path.exists(bundle)
            with open(p, "rb") as f:
                assert f.read() == _seal(b"dead")
        else:
            assert os.path.exists(bundle) and not os.path.exists(p), k
    # (what it wrote, and what it read from the live worker's bundle, it looks up too)
    assert {"dead" * 5, "alive" * 5} <= opened._index


def test_a_bundle_written_while_the_cache_opens_is_not_missed(tmp_path, monkeypatch) -> None:
    """The worker writing a bundle may finish between the cache's listing of its entries and
    its reading of the bundle (then gone, its files on disk): those entries are found all the
    same. (Before, about one warm run in 40 after two concurrent cold ones translated the
    region whose entry was written last.)"""
    import marshal

    from polyvm.engine import tcache
    from polyvm.engine.tcache import _seal, bundle_owner

    host = Compiler.get().host_id
    cache = TranslationCache(str(tmp_path), host)
    ent = os.path.join(cache.ent_dir, "e" * 40)
    bundle = os.path.join(cache.dir, f"files-{bundle_owner(os.getpid())}-abc_12")
    with open(bundle, "wb") as f:
        marshal.dump({ent: _seal(b"entry")}, f)
    real = tcache._load_bundle

    def worker_finishes_first(path: str) -> dict[str, bytes]:
        for p, data in real(path).items():  # (the worker writes every file, then deletes it)
            with open(p, "wb") as f:
                f.write(data)
        os.unlink(path)
        return real(path)  # (gone: nothing)

    monkeypatch.setattr(tcache, "_load_bundle", worker_finishes_first)
    opened = TranslationCache(str(tmp_path), host)
    assert not os.path.exists(bundle) and os.path.exists(ent)
    assert "e" * 40 in opened._index
