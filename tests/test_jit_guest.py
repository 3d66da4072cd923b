"""Guest programs give the same results on every engine.

Each guest program (guest/*.c, and busybox applets when tests/fetch_busybox.py has the binary
cached) runs as a Linux process on the reference interpreter and on the native tiers: the LLVM
JIT (`jit`), the tiered `auto` engine, and the JIT forced to hand the state over to the
interpreter and back every 5 blocks (`switch5`). Output, exit status, polyvm's own diagnostics
and the number of instructions retired must be identical to the interpreter's. Programs whose
threads interleave by time (a thread switch happens when a slice of blocks runs out, and
blocks differ between engines) or whose output depends on timing have only their output and
status compared.

The interpreter's own results are checked against hand-written expectations by
test_linux_guest.py, test_linux_fork.py and test_busybox.py; this module only requires the
engines to agree. Big programs are under `heavy`.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from polyvm.linux import Process
from polyvm.testing.guest import build_guest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llvmlite") is None, reason="the JIT needs llvmlite")


def _jit(**kw):
    def make(arch, mem):
        from polyvm.engine.jit import JitEngine

        return JitEngine(arch, mem, **kw)

    return make


ENGINES = {
    "interp": None,  # Process's default: the reference engine
    "jit": _jit(tier="jit"),
    "auto": _jit(tier="auto"),
    "switch5": _jit(tier="jit", switch_every=5),
}


@dataclass
class Case:
    id: str
    exe: str  # a guest/<name>.c program, or "busybox"
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=lambda: {"PATH": "/bin"})
    exact_count: bool = True  # instruction counts are compared too
    stdin: bytes | None = None
    files: dict[str, bytes] = field(default_factory=dict)  # written to the run's folder first
    unordered: bool = False  # processes write to stdout concurrently: compare the sorted lines
    heavy: bool = False


HELLO = "@hello"  # replaced by the path of the built guest/hello.c

CASES = [
    Case("hello", "hello", ("a", "b c")),
    Case("t_misc", "t_misc", env={"POLYVM_TEST_VAR": "hi"}),
    Case("t_signals", "t_signals"),
    Case("t_signals-segv", "t_signals", ("segv",)),
    Case("t_signals-ill", "t_signals", ("ill",)),
    Case("t_memory", "t_memory"),
    Case("t_misaligned", "t_misaligned"),
    Case("t_files", "t_files", ("@dir",)),
    # Its control flow depends on the clock (a nanosecond carry when the time is near a
    # second boundary), so the instruction count can differ by a few between runs.
    Case("t_time", "t_time", exact_count=False),
    Case("t_rtsig", "t_rtsig"),
    Case("t_fork-basic", "t_fork", ("basic", HELLO)),
    Case("t_fork-exec", "t_fork", ("exec", HELLO), unordered=True),
    Case("t_fork-pipe", "t_fork", ("pipe", HELLO), exact_count=False),  # partial pipe reads
    Case("t_threads", "t_threads", exact_count=False),
    Case("t_ppoll", "t_ppoll", exact_count=False),
    Case("bench_int", "bench_int", ("0.002",), heavy=True),
    Case("bench_float", "bench_float", ("0.01",), heavy=True),
    Case("bench_branch", "bench_branch", ("0.005",), heavy=True),
    Case("bench_mem", "bench_mem", ("0.005",), heavy=True),
    Case("bench_cpu", "bench_cpu", ("1",), heavy=True),
    # busybox (skipped unless cached): a shell loop, hashing, sorting, sed
    Case(
        "bb-sh",
        "busybox",
        ("sh", "-c", 'x=0; for i in 1 2 3 4 5 6 7 8 9 10; do x=$((x + i * i)); done; echo "sum=$x"'),
        env={"PATH": "/bin", "LC_ALL": "C"},
        heavy=True,
    ),
    Case(
        "bb-sha256sum",
        "busybox",
        ("sha256sum", "@dir/data.bin"),
        files={"data.bin": bytes((i * 131 + (i >> 7) * 17) & 0xFF for i in range(20000))},
    ),
    Case(
        "bb-sort",
        "busybox",
        ("sort", "-r", "@dir/words"),
        env={"PATH": "/bin", "LC_ALL": "C"},
        files={"words": b"pear\nApple\nbanana\napple\ncherry\nBanana\n10\n9\n-3\n"},
        heavy=True,
    ),
    Case(
        "bb-sed",
        "busybox",
        ("sed", "-e", "s/foo/BAR/g", "-e", "2d", "@dir/in"),
        files={"in": b"foo bar foo\ndrop me\na foo-foo b\n"},
        heavy=True,
    ),
    Case("bb-md5sum-stdin", "busybox", ("md5sum",), stdin=b"The quick brown fox", heavy=True),
]


def _busybox() -> Path | None:
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        import fetch_busybox
    finally:
        sys.path.pop(0)
    return fetch_busybox.cached("riscv64")


@dataclass
class Result:
    status: int
    stdout: bytes
    stderr: bytes
    instructions: int


def run_case(case: Case, engine: str) -> Result:
    # Runs happen in folders whose names have the same length (paths end up in memory, and
    # their lengths in instruction counts).
    tmp = Path(tempfile.mkdtemp(prefix="pvjit-"))
    try:
        return _run_case(case, engine, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run_case(case: Case, engine: str, tmp: Path) -> Result:
    if case.exe == "busybox":
        bb = _busybox()
        if bb is None:
            pytest.skip("busybox is not cached (python tests/fetch_busybox.py fetches it)")
        exe, argv0 = bb, "busybox"
    else:
        exe, argv0 = build_guest(case.exe), case.exe
    tmp.mkdir(parents=True, exist_ok=True)
    for name, data in case.files.items():
        (tmp / name).write_bytes(data)
    work = tmp / "dir"
    work.mkdir(exist_ok=True)
    args = [
        str(build_guest("hello")) if a == HELLO else a.replace("@dir/", f"{tmp}/").replace("@dir", str(work))
        for a in case.args
    ]
    out, err, inp = tmp / "out", tmp / "err", tmp / "in"
    inp.write_bytes(case.stdin or b"")
    with open(out, "wb") as fo, open(err, "wb") as fe, open(inp, "rb") as fi:
        p = Process.from_file(
            exe,
            [argv0, *args],
            env=case.env,
            stdin=fi.fileno(),
            stdout=fo.fileno(),
            stderr=fe.fileno(),
            engine_factory=ENGINES[engine],
        )
        try:
            status = p.run(timeout=600)
            count = p.instructions
        finally:
            p.close()
    errors = err.read_bytes()
    assert b"internal error" not in errors, errors
    # Arguments name files in the run's own folder, which outputs may show: make them equal.
    here = bytes(tmp)
    return Result(status, out.read_bytes().replace(here, b"@"), errors.replace(here, b"@"), count)


_baseline: dict[str, Result] = {}


def interp_result(case: Case) -> Result:
    if case.id not in _baseline:
        _baseline[case.id] = run_case(case, "interp")
    return _baseline[case.id]


def _params():
    out = []
    for c in CASES:
        for eng in ("jit", "auto", "switch5"):
            marks = [pytest.mark.heavy] if c.heavy else []
            out.append(pytest.param(c, eng, id=f"{c.id}-{eng}", marks=marks))
    return out


@pytest.mark.parametrize("case, engine", _params())
def test_same_results_as_the_interpreter(case: Case, engine: str) -> None:
    want = interp_result(case)
    got = run_case(case, engine)

    def out(r: Result) -> object:
        return sorted(r.stdout.splitlines()) if case.unordered else r.stdout

    assert (got.status, out(got), got.stderr) == (want.status, out(want), want.stderr), engine
    if case.exact_count:
        assert got.instructions == want.instructions, f"{engine}: {got.instructions} vs {want.instructions}"
    assert want.instructions > 0


@pytest.mark.parametrize(
    "prog, args, engines",
    [
        # interp, then every native engine with an empty translation cache, then with the one
        # those runs filled
        ("hello", ("a", "b c"), ("interp", "jit", "auto", "aot", "jit", "auto", "aot")),
        pytest.param(
            "t_smc",
            (),
            ("interp", "jit", "aot", "jit", "aot"),
            marks=[pytest.mark.heavy],
        ),
    ],
)
def test_cli_engines_agree(
    tmp_path: Path, prog: str, args: tuple[str, ...], engines: tuple[str, ...]
) -> None:
    """`polyvm run --engine E --stats`: the same output, exit status and instruction count (the
    --stats line) on every engine, with the persistent translation cache cold and warm."""
    import re
    import subprocess

    exe = str(build_guest(prog))
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = dict(os.environ, POLYVM_CACHE_DIR=str(tmp_path / "tcache"), PYTHONPATH=src)
    env.pop("POLYVM_CACHE", None)
    seen = []
    for engine in engines:
        r = subprocess.run(
            [sys.executable, "-m", "polyvm", "run", "--stats", "--engine", engine, exe, *args],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        m = re.search(r"polyvm: (\d+) instructions in", r.stderr)
        assert m, r.stderr
        seen.append((engine, r.returncode, r.stdout, int(m.group(1))))
    assert len({s[1:] for s in seen}) == 1, seen
