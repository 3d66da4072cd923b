"""The compile worker process (hot-tier compiles off the guest's process).

Expected values: the loop's sum is computed by hand (n * step); the instruction count and
every register come from the reference interpreter.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

pytest.importorskip("llvmlite")

from polyvm.engine import jit as J  # noqa: E402
from polyvm.engine import x64  # noqa: E402
from polyvm.engine.jit import Compiler, JitEngine  # noqa: E402
from polyvm.engine.reference import Engine  # noqa: E402
from polyvm.engine.tcache import TranslationCache, _unseal  # noqa: E402
from polyvm.isa import get_arch  # noqa: E402
from polyvm.isa.riscv.asm import li, program  # noqa: E402
from polyvm.linux.loader import TASK_SIZE  # noqa: E402
from polyvm.memory import PROT_ALL, AddressSpace  # noqa: E402
from polyvm.testing.guest import build_guest  # noqa: E402

ARCH = get_arch("riscv64")
CODE = 0x10000
A0 = ARCH.regs["a0"][0]


def _loop(n: int, step: int) -> bytes:
    return program(
        [*li("a0", 0), *li("a1", n), f"addi a0, a0, {step}", "addi a1, a1, -1", "bne a1, zero, -8", "ebreak"]
    )


def _mem(code: bytes) -> AddressSpace:
    mem = AddressSpace()
    mem.map(CODE, 0x1000, PROT_ALL)
    mem.write_raw(CODE, code)
    return mem


def _reference(code: bytes) -> list[int]:
    r = ARCH.new_state()
    r[0] = CODE
    assert Engine(ARCH, _mem(code)).run(r, 50_000_000).reason == "breakpoint"
    return r


def _run(eng: JitEngine) -> list[int]:
    r = ARCH.new_state()
    r[0] = CODE
    stop = eng.run(r, 100_000)
    while stop.reason == "budget":
        stop = eng.run(r, 100_000)
    assert stop.reason == "breakpoint", stop
    return r


def _wait(jobs: list, timeout: float = 120.0) -> None:
    t0 = time.monotonic()
    while not all(j.done for j in jobs):
        assert time.monotonic() - t0 < timeout, "the compile worker did not answer"
        time.sleep(0.01)


def _cached_opts(cache: TranslationCache) -> list[int]:
    opts = []
    for name in os.listdir(cache.ent_dir):
        if name.startswith(".tmp-"):
            continue
        with open(os.path.join(cache.ent_dir, name), "rb") as f:
            payload = _unseal(f.read())
        assert payload is not None
        opts.append(json.loads(payload)["opt"])
    return opts


def test_hot_tier_compiles_in_the_worker_and_caches(tmp_path, monkeypatch) -> None:
    """A hot loop is recompiled by the worker while the run goes on; the result is the
    interpreter's, the hot code gets installed, and the worker wrote it to the cache."""
    monkeypatch.setattr(J, "TIER2_INSNS", 10000)
    code = _loop(400_000, 3)
    cache = TranslationCache(str(tmp_path), Compiler.get().host_id)
    eng = JitEngine(ARCH, _mem(code), tier="jit", cache=cache, background=None)
    eng.bg_hot = True  # (the default only on hosts with two cores or more)
    r = _run(eng)
    assert r[A0] == 400_000 * 3
    assert r == _reference(code)  # every slot, the instruction count included
    jobs = [j[0] for j in eng._jobs]
    assert jobs or eng.bg_compile_time > 0, "no hot recompile was sent to the worker"
    _wait(jobs)
    eng._poll_jobs()
    assert eng.bg_compile_time > 0
    assert any(reg.opt == J.T2_OPT for reg in eng.regions.values())
    assert J.T2_OPT in _cached_opts(cache)
    # A second engine on the same code loads the hot translation from the cache.
    eng2 = JitEngine(ARCH, _mem(code), tier="jit", cache=cache, background=False)
    assert _run(eng2) == r
    assert eng2.regions_loaded > 0


def _until_a_hot_module_is_sent(monkeypatch, code: bytes, baseline: str | None):
    """(engine, state, last stop) once the engine has sent a hot module to the worker."""
    monkeypatch.setattr(J, "TIER2_INSNS", 10000)
    eng = JitEngine(ARCH, _mem(code), tier="jit", background=None, baseline=baseline)
    eng.bg_hot = True
    r = ARCH.new_state()
    r[0] = CODE
    stop = eng.run(r, 1000)
    while not eng._jobs and stop.reason == "budget":
        stop = eng.run(r, 1000)
    assert eng._jobs, "no hot recompile was sent to the worker"
    return eng, r, stop


def _the_optimized_code_replaces_it(eng, r, stop, quick_addrs: dict[int, int], code: bytes) -> None:
    """Install the finished job: the hot regions are the optimized ones now (cached, at
    other addresses than the quick code's); the run ends with the interpreter's result."""
    eng._poll_jobs()
    hot = [reg for reg in eng.regions.values() if reg.opt == J.T2_OPT]
    assert hot and all(reg.name in eng.compiler.regions for reg in hot)
    assert all(eng.table[pc] != a for pc, a in quick_addrs.items())
    while stop.reason == "budget":
        stop = eng.run(r, 100_000)
    assert stop.reason == "breakpoint" and r == _reference(code)


def test_a_hot_module_runs_quick_code_until_the_optimized_code_arrives(monkeypatch) -> None:
    """The worker sends a hot module twice: compiled the first tier's way (its functions
    renamed), then optimized. The engine installs the quick regions at once and replaces them
    with the optimized ones; the guest's result is the interpreter's throughout. (With the
    first tier through LLVM: where it is emitted without LLVM, so is the quick code, below.)"""
    code = _loop(400_000, 11)  # (code no other test compiles in this process)
    eng, r, stop = _until_a_hot_module_is_sent(monkeypatch, code, "llvm")
    job, made, *_ = eng._jobs[0]
    _wait([job])
    assert job.quick_obj is not None and job.obj is not None
    for _name, sym, *_ in made:
        assert f"{sym}q".encode() in job.quick_obj and f"{sym}q".encode() not in job.obj
    job.done = False  # (as if the optimized object were still on its way)
    eng._poll_jobs()
    hot = [reg for reg in eng.regions.values() if reg.opt == J.T2_OPT]
    assert hot and job.quick_obj is None
    assert not any(reg.name in eng.compiler.regions for reg in hot)  # quick: installed only
    quick_addrs = {pc: eng.table[pc] for reg in hot for pc in reg.pcs}
    for _ in range(5):
        stop = eng.run(r, 1000)
    job.done = True
    _the_optimized_code_replaces_it(eng, r, stop, quick_addrs, code)


@pytest.mark.skipif(not x64.available(), reason="emitted code runs on x86-64 Linux hosts")
def test_a_hot_module_runs_emitted_code_until_the_optimized_code_arrives(monkeypatch) -> None:
    """Where the first tier is emitted without LLVM (`x64`), a hot module's quick version is
    emitted too, in the guest's process when the module is sent: installed before the worker
    has compiled anything (which then compiles only the optimized version), replaced by it."""
    code = _loop(400_000, 17)  # (code no other test compiles in this process)
    eng, r, stop = _until_a_hot_module_is_sent(monkeypatch, code, None)
    job, made, *_ = eng._jobs[0]
    hot = [reg for reg in eng.regions.values() if reg.opt == J.T2_OPT]
    assert hot and not any(reg.name in eng.compiler.regions for reg in hot)  # installed only
    quick_addrs = {pc: eng.table[pc] for reg in hot for pc in reg.pcs}
    _wait([job])
    assert job.quick_obj is None and job.obj is not None  # (the worker made no quick version)
    _the_optimized_code_replaces_it(eng, r, stop, quick_addrs, code)


@pytest.mark.skipif(not x64.available(), reason="the first tier is emitted on x86-64 Linux hosts")
def test_the_worker_lowers_hot_regions_from_their_code(monkeypatch) -> None:
    """Where the first tier is emitted, a hot module goes to the worker as code — its
    regions' block pcs and entries and the code pages they lie on — and the worker lowers it
    (`jit.lower_remote`) into the text the guest's process would have made; the guest's
    process makes no LLVM text for it. The optimized code then replaces the quick code and
    the run ends with the interpreter's result."""
    from polyvm.engine.cworker import CompileWorker

    sent: list[tuple[str, dict | None]] = []
    submit = CompileWorker.submit

    def spy(self, text, opt, store=None, quick=None, lower=None):  # type: ignore[no-untyped-def]
        sent.append((text, lower))
        return submit(self, text, opt, store, quick, lower=lower)

    hot_lowered: list[str] = []
    lower_region = JitEngine.lower_region

    def count(self, sym, name, blocks, entries, compact=False):  # type: ignore[no-untyped-def]
        if not compact:
            hot_lowered.append(name)
        return lower_region(self, sym, name, blocks, entries, compact)

    monkeypatch.setattr(CompileWorker, "submit", spy)
    monkeypatch.setattr(JitEngine, "lower_region", count)
    code = _loop(400_000, 23)  # (code no other test compiles in this process)
    eng, r, stop = _until_a_hot_module_is_sent(monkeypatch, code, None)
    assert not hot_lowered
    text, spec = sent[-1]
    assert text == "" and spec is not None and spec["regions"] and spec["pages"]
    texts, _ = J.lower_remote(spec)
    for reg, t in zip(spec["regions"], texts, strict=True):
        blocks = [eng._lifted[pc] for pc in reg["pcs"]]
        assert lower_region(eng, reg["sym"], reg["name"], blocks, reg["entries"]).text == t
    job = eng._jobs[0][0]
    hot = [reg for reg in eng.regions.values() if reg.opt == J.T2_OPT]
    quick_addrs = {pc: eng.table[pc] for reg in hot for pc in reg.pcs}
    _wait([job])
    assert job.error is None and job.obj is not None
    _the_optimized_code_replaces_it(eng, r, stop, quick_addrs, code)


def test_a_module_without_its_regions_leaves_the_code_as_it_is(monkeypatch) -> None:
    """A finished job whose object lacks the functions it was sent for (a worker's fault) is
    dropped: the regions keep the code they had, and the run goes on to the interpreter's
    result."""
    code = _loop(400_000, 29)  # (code no other test compiles in this process)
    eng, r, stop = _until_a_hot_module_is_sent(monkeypatch, code, None)
    job = eng._jobs[0][0]
    _wait([job])
    c = Compiler.get()
    job.obj = c.compile(c.module_text(["define i64 @pv_not_it() {\n  ret i64 0\n}"], {}), 2)
    job.obj_name = None
    before = dict(eng.table)
    eng._poll_jobs()
    assert not eng._jobs and eng.table == before
    while stop.reason == "budget":
        stop = eng.run(r, 100_000)
    assert stop.reason == "breakpoint" and r == _reference(code)


def test_the_worker_starts_with_the_first_compile_in_place(monkeypatch) -> None:
    """With hot code going to the worker, the worker is started at the first first-tier
    compile (it comes up while the guest's process compiles), before any hot module is sent;
    not in a fork's child, and not when hot code is compiled in place."""
    from polyvm.engine.cworker import CompileWorker

    monkeypatch.setattr(J, "TIER2_INSNS", 1 << 60)  # (no hot module: nothing is submitted)
    started = []
    for bg_hot, child in ((True, False), (True, True), (False, False)):
        w = CompileWorker()
        monkeypatch.setattr(Compiler.get(), "_worker", w)
        eng = JitEngine(ARCH, _mem(_loop(1000, 13 + len(started))), tier="jit", background=False)
        eng.bg_hot = bg_hot
        if child:
            eng.forked()
        assert not w.alive()
        assert _run(eng)[A0] == 1000 * (13 + len(started))
        assert not eng._jobs and eng.regions_compiled > 0
        started.append(w.alive())
        if w.proc is not None:
            w.proc.kill()
    assert started == [True, False, False]


def test_a_killed_worker_loses_only_its_jobs() -> None:
    """Kill the worker while it compiles: the job ends with an error, the guest runs on the
    code it has (same result), and the next submission starts a new worker."""
    w = Compiler.get().worker
    code = _loop(50_000, 5)
    eng = JitEngine(ARCH, _mem(code), tier="jit", background=False)
    mod = Compiler.get().module_text([J.L.dispatcher_text("pv_test_fn")], {})
    job = w.submit(mod, 2)
    _wait([job])
    assert job.error is None and job.obj
    first = w.proc.pid
    job = w.submit(mod, 2)
    w.proc.kill()
    _wait([job])
    # (it may have finished before the kill: either an object or an error, never a hang)
    assert job.obj or job.error
    assert _run(eng)[A0] == 50_000 * 5
    job = w.submit(mod, 2)
    _wait([job])
    assert job.error is None and job.obj and w.proc.pid != first


def _chain(sym: str, n: int) -> str:
    """A function of n blocks in a chain (a few ms of fast isel, ten times that optimized)."""
    lines = [
        f"define i64 @{sym}(i64 %x) {{",
        "entry:",
        "  br label %b0",
        "b0:",
        "  %p0 = phi i64 [%x, %entry]",
    ]
    for i in range(n):
        if i:
            lines += [f"b{i}:", f"  %p{i} = phi i64 [%y{i - 1}, %b{i - 1}]"]
        lines += [
            f"  %m{i} = mul i64 %p{i}, {i * 7 + 3}",
            f"  %y{i} = xor i64 %m{i}, {i * 13 + 1}",
            f"  %c{i} = icmp ult i64 %y{i}, {i + 5}",
            f"  br i1 %c{i}, label %out, label %b{i + 1}",
        ]
    return "\n".join([*lines, f"b{n}:", f"  ret i64 %y{n - 1}", "out:", "  ret i64 0", "}"])


def test_quick_code_of_a_later_module_comes_before_an_earlier_optimized_one() -> None:
    """Hot modules sent while the worker is busy: the quick version of the second comes before
    the optimized version of the first (quick compiles go first), and both jobs complete."""
    c = Compiler.get()
    w = c.worker
    a = w.submit(c.module_text([_chain("pv_prio_a", 2500)], {}), 2, quick=["pv_prio_a"])
    b = w.submit(c.module_text([_chain("pv_prio_b", 200)], {}), 2, quick=["pv_prio_b"])
    early = False
    deadline = time.monotonic() + 120
    while not (a.done and b.done) and time.monotonic() < deadline:
        if b.quick_obj is not None and not a.done:
            early = True
        time.sleep(0.001)
    assert a.done and b.done and a.error is None and b.error is None
    assert a.quick_obj and b.quick_obj and a.obj and b.obj
    assert early, "the second module's quick code came after the first one's optimized code"


def test_the_newest_hot_module_is_compiled_first() -> None:
    """Optimized modules waiting while the worker compiles another: the one sent last comes
    first (the code that turned hot last is the program's current phase), and all complete."""
    c = Compiler.get()
    w = c.worker
    _wait([w.submit(c.module_text([_chain("pv_lifo_up", 10)], {}), 2)])  # (the worker is up, idle)
    a = w.submit(c.module_text([_chain("pv_lifo_a", 6000)], {}), 2)
    time.sleep(0.1)  # (the worker took a alone and compiles it: about 1 s here)
    b = w.submit(c.module_text([_chain("pv_lifo_b", 200)], {}), 2)
    d = w.submit(c.module_text([_chain("pv_lifo_d", 200)], {}), 2)
    order: list[str] = []
    deadline = time.monotonic() + 120
    while len(order) < 3 and time.monotonic() < deadline:
        for name, job in (("a", a), ("b", b), ("d", d)):
            if job.done and name not in order:
                order.append(name)
        time.sleep(0.001)
    assert all(j.done and j.error is None and j.obj for j in (a, b, d))
    assert order == ["a", "d", "b"], order


def test_bad_module_is_an_error_not_a_crash() -> None:
    w = Compiler.get().worker
    job = w.submit("this is not LLVM IR", 2)
    _wait([job])
    assert job.obj is None and job.error
    job = w.submit(Compiler.get().module_text([J.L.dispatcher_text("pv_test_fn2")], {}), 2)
    _wait([job])
    assert job.error is None and job.obj  # the same worker goes on


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "polyvm", *args], capture_output=True, text=True, env=env, timeout=600
    )


def test_cli_run_leaves_hot_code_for_the_next_run(tmp_path) -> None:
    """`polyvm run` with the worker: the output is the interpreter's; the hot-tier code the
    worker compiled (during the run or after it exited) is in the cache, and the next run
    loads it."""
    exe = build_guest("bench_int")
    env = dict(os.environ, POLYVM_CACHE_DIR=str(tmp_path / "tc"), POLYVM_JIT_BACKGROUND="1")
    ref = _cli("run", "--engine", "interp", exe, "0.02", env=env)
    assert ref.returncode == 0 and ref.stdout
    first = _cli("run", "--stats", "--engine", "jit", exe, "0.02", env=env)
    assert (first.returncode, first.stdout) == (0, ref.stdout)
    cache = TranslationCache(str(tmp_path / "tc"), Compiler.get().host_id)
    if AddressSpace(window=TASK_SIZE).direct_base is not None:
        cache = cache.variant(J.DIRECT_VARIANT)  # (a Linux process's memory is direct on this host)
    t0 = time.monotonic()
    while J.T2_OPT not in _cached_opts(cache) or J.JIT_OPT not in _cached_opts(cache):
        assert time.monotonic() - t0 < 120, "no hot-tier code reached the cache"
        time.sleep(0.1)
    # (the run's own files, deferred, went to the worker as one bundle, which it wrote)
    while any(n.startswith("files-") for n in os.listdir(cache.dir)):
        assert time.monotonic() - t0 < 120, "the run's bundle of cache files was not written"
        time.sleep(0.1)
    second = _cli("run", "--stats", "--engine", "jit", exe, "0.02", env=env)
    assert (second.returncode, second.stdout) == (0, ref.stdout)
    m = re.search(r"(\d+) loaded from the translation cache", second.stderr)
    assert m and int(m.group(1)) > 0, second.stderr
    if x64.available():
        # A run with its code in the cache places LLVM's objects itself (`elfload`) and knows
        # the host from the cache (`jit.host_facts`): it never loads LLVM.
        probe = (
            "import sys\nfrom polyvm import cli\ntry:\n    cli.main(sys.argv[1:])\nexcept SystemExit:\n"
            "    pass\nprint('llvmlite loaded:', 'llvmlite.binding' in sys.modules, file=sys.stderr)\n"
        )
        third = subprocess.run(
            [sys.executable, "-c", probe, "run", "--engine", "jit", exe, "0.02"],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert third.stdout == ref.stdout and "llvmlite loaded: False" in third.stderr, third.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_its_own_worker() -> None:
    """After a host fork (a guest fork), the child must not touch the parent's worker pipes
    (a parent thread may hold their locks): it starts its own worker, and jobs in flight at
    the fork end with an error in the child instead of waiting for ever."""
    w = Compiler.get().worker
    mod = Compiler.get().module_text([J.L.dispatcher_text("pv_test_fork")], {})
    job = w.submit(mod, 2)
    _wait([job])
    inflight = w.submit(mod, 2)  # (may or may not be done when the fork happens)
    first_pid = w.proc.pid
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status, never return into pytest
        code = 1
        try:
            t0 = time.monotonic()
            while not inflight.done and time.monotonic() - t0 < 60:
                time.sleep(0.01)
            mine = w.submit(mod, 2)
            while not mine.done and time.monotonic() - t0 < 60:
                time.sleep(0.01)
            if inflight.done and mine.done and mine.obj and w.proc.pid != first_pid:
                code = 0
        finally:
            os._exit(code)
    t0 = time.monotonic()
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - t0 > 120:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(status) == 0
    _wait([inflight])


def test_auto_tier_leaves_what_it_interpreted_to_the_cache(tmp_path) -> None:
    """`auto` runs code that is not hot on its interpreter; at the end of the run (`finish`) the
    compile worker translates those blocks into the cache, so a second engine on the same code
    starts them natively (its interpreter translates nothing) with the same result. (With the
    first tier through LLVM: where it is emitted without LLVM, `auto` translates every block
    at its first dispatch, as `jit` does, and interprets nothing.)"""
    code = _loop(5, 3)  # 5 iterations: never hot, all interpreted
    ref = _reference(code)
    assert ref[A0] == 15
    cache = TranslationCache(str(tmp_path), Compiler.get().host_id)
    eng = JitEngine(ARCH, _mem(code), tier="auto", baseline="llvm", cache=cache)
    assert _run(eng) == ref
    assert eng.interp.cache and not eng.table  # (all on the interpreter)
    # A fork's child only leaves a job file; the next engine to finish with `submit` (the top
    # process) hands every job file to the worker.
    eng.finish(submit=False)
    assert len([n for n in os.listdir(cache.dir) if n.startswith("job-")]) == 1
    other = JitEngine(ARCH, _mem(code), tier="auto", baseline="llvm", cache=cache)  # (ran nothing)
    job = other.finish()
    assert job is not None
    _wait([job])
    assert job.error is None
    assert not [n for n in os.listdir(cache.dir) if n.startswith("job-")]  # the worker took it
    assert set(_cached_opts(cache)) == {J.JIT_OPT}
    cache2 = TranslationCache(str(tmp_path), Compiler.get().host_id)
    eng2 = JitEngine(ARCH, _mem(code), tier="auto", baseline="llvm", cache=cache2)
    assert _run(eng2) == ref  # every slot, the instruction count included
    assert eng2.regions_loaded > 0 and not eng2.interp.cache
    assert eng2.finish() is None  # nothing left to send


def test_finish_sends_nothing_without_a_cache_or_when_all_ran_natively(tmp_path, monkeypatch) -> None:
    """No cache: no job. `auto` translating every block at its first dispatch, with forced
    switching: the interpreter ran blocks too, but each has a translation already, so there is
    nothing to hand on."""
    code = _loop(5, 3)
    eng = JitEngine(ARCH, _mem(code), tier="auto", baseline="llvm", cache=None)
    _run(eng)
    assert eng.interp.cache and eng.finish() is None
    monkeypatch.setattr(J, "HOT", 1)
    cache = TranslationCache(str(tmp_path), Compiler.get().host_id)
    eng = JitEngine(ARCH, _mem(code), tier="auto", baseline="llvm", cache=cache, switch_every=1)
    _run(eng)
    assert eng.interp.cache  # (switching ran blocks on the interpreter too)
    assert set(eng.interp.cache) <= eng.table.keys()
    assert eng.finish() is None
    assert not [n for n in os.listdir(cache.dir) if "job-" in n]


def test_a_forked_child_leaves_what_its_parent_interpreted(tmp_path) -> None:
    """After `forked()` (the Linux layer calls it in a fork's child) the blocks interpreted
    before are the parent's: the child's `finish` writes no job for them."""
    code = _loop(5, 3)
    cache = TranslationCache(str(tmp_path), Compiler.get().host_id)
    eng = JitEngine(ARCH, _mem(code), tier="auto", baseline="llvm", cache=cache)
    _run(eng)
    eng.forked()
    assert eng.finish(submit=False) is None
    assert not [n for n in os.listdir(cache.dir) if "job-" in n]


def test_a_bad_job_file_is_dropped(tmp_path) -> None:
    """A job file that is not a job (truncated, garbage) is deleted and changes nothing."""
    bad = tmp_path / "job-x"
    bad.write_bytes(b"\xffnot a job")
    J.translate_job(str(bad))
    assert os.listdir(tmp_path) == []  # (claimed, then deleted)
    J.translate_job(str(bad))  # a job another worker took first: nothing to do
    import marshal

    root = tmp_path / "cache"
    wrong = tmp_path / "job-y"  # well formed, but a page of the wrong size
    job = {"arch": "riscv64", "pages": {1: b"short"}, "pcs": [4096], "root": str(root)}
    wrong.write_bytes(marshal.dumps({**job, "host_id": Compiler.get().host_id}))
    J.translate_job(str(wrong))
    assert os.listdir(tmp_path) == [] and not root.exists()


def test_a_hot_module_waits_until_its_quick_code_has_run_a_while(monkeypatch) -> None:
    """Where the first tier is emitted (`x64`), a hot region's quick code is installed at
    once and counts what it runs; its module goes to the worker only once that code has run
    HOT_STAY times TIER2_INSNS instructions (a phase over before then does not hold the worker
    up), and when the run ends (`finish`) for what is still held. The result is the
    interpreter's either way."""
    if Compiler.get().emitter is None:
        pytest.skip("the first tier is not emitted on this host")
    monkeypatch.setattr(J, "TIER2_INSNS", 10000)
    monkeypatch.setattr(J, "HOT_STAY", 16)
    for n, sent_in_run in ((200_000, True), (5_000, False)):
        # 200,000 iterations of 3 instructions run well past 16 x 10,000 on the quick code;
        # 5,000 turn hot (past the first tier's 10,000) and end long before 160,000 more
        code = _loop(n, 3)
        eng = JitEngine(ARCH, _mem(code), tier="jit", background=None)
        eng.bg_hot = True
        eng._start_worker()
        r = ARCH.new_state()
        r[0] = CODE
        held_at = None
        stop = eng.run(r, 1000)
        while stop.reason == "budget":
            if eng._held and held_at is None:
                held_at = r[1]  # (the count when a module was first seen held)
                assert not eng._jobs and any(reg.opt == J.T2_OPT for reg in eng.regions.values())
            stop = eng.run(r, 1000)
        assert stop.reason == "breakpoint" and r == _reference(code)
        assert held_at is not None, "no hot module was held"
        assert bool(eng._jobs) == sent_in_run and bool(eng._held) != sent_in_run, (n, eng._jobs, eng._held)
        if sent_in_run:
            assert r[1] - held_at >= 16 * 10000  # (sent only after that much more)
        eng.finish(submit=False)
        assert not eng._held and eng._jobs  # (the rest sent as the run ends)
        _wait([j[0] for j in eng._jobs])
