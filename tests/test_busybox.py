"""A real third-party program: Debian's busybox-static for riscv64, run through `polyvm run`.

The binary comes from Debian's archive through tests/fetch_busybox.py (cached under
~/.cache/polyvm or $POLYVM_CACHE); the tests skip, saying why, only when no archive can be
reached. Expected outputs are computed independently in Python (hashlib, sorted, re, ...) or
hand-checked against busybox's documented formats. Each test also runs under `qemu-riscv64`
when it is installed, which checks the expectations themselves against the reference.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fetch_busybox  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 600
QEMU = shutil.which("qemu-riscv64")

Run = Callable[..., subprocess.CompletedProcess]
network = pytest.mark.network  # needs the package archive (or a cached binary)


@pytest.fixture(scope="session")
def busybox() -> Path:
    try:
        return fetch_busybox.fetch("riscv64")
    except fetch_busybox.ArchiveUnreachable as e:
        pytest.skip(f"Debian's busybox-static (riscv64) is unavailable: {e}")


@pytest.fixture(params=["polyvm", "qemu"])
def bb(request: pytest.FixtureRequest, busybox: Path) -> Run:
    """run("APPLET", args..., input=bytes) -> CompletedProcess, through polyvm or qemu-riscv64."""
    if request.param == "qemu":
        if QEMU is None:
            pytest.skip("qemu-riscv64 is not installed (it cross-checks the expected values)")
        prefix = [QEMU, str(busybox)]
    else:
        # pytest --engine NAME (tests/engine_option.py) also picks polyvm run's engine
        engine = request.config.getoption("--engine", None) or os.environ.get("POLYVM_TEST_ENGINE")
        opt = ["--engine", engine] if engine in ("interp", "jit", "auto", "aot") else []
        prefix = [sys.executable, "-m", "polyvm", "run", "-q", *opt, str(busybox)]
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
    )
    env["LC_ALL"] = "C"

    def run(*args: str, input: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*prefix, *args], input=input, capture_output=True, timeout=TIMEOUT, env=env, cwd=cwd
        )

    return run


def _ok(p: subprocess.CompletedProcess) -> bytes:
    assert p.returncode == 0, f"exit {p.returncode}; stderr: {p.stderr.decode(errors='replace')[-2000:]}"
    return p.stdout


@network
def test_sh_exit_status(bb: Run) -> None:
    p = bb("sh", "-c", "echo hi; exit 3")
    assert p.stdout == b"hi\n", p.stderr
    assert p.returncode == 3


@network
def test_sh_arithmetic_loop(bb: Run) -> None:
    # Builtins only: no fork, no exec.
    out = _ok(bb("sh", "-c", 'x=0; for i in 1 2 3 4 5 6 7 8 9 10; do x=$((x + i * i)); done; echo "sum=$x"'))
    assert out == f"sum={sum(i * i for i in range(1, 11))}\n".encode()


@network
def test_sha256sum(bb: Run, tmp_path: Path) -> None:
    data = bytes((i * 131 + (i >> 7) * 17) & 0xFF for i in range(20000)) + b"polyvm\n"
    f = tmp_path / "data.bin"
    f.write_bytes(data)
    out = _ok(bb("sha256sum", str(f)))
    assert out == f"{hashlib.sha256(data).hexdigest()}  {f}\n".encode()


@network
def test_sha256sum_stdin_and_md5sum(bb: Run) -> None:
    assert _ok(bb("sha256sum", input=b"abc")) == (
        b"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  -\n"  # FIPS 180-2 "abc"
    )
    data = b"The quick brown fox jumps over the lazy dog"
    assert _ok(bb("md5sum", input=data)) == f"{hashlib.md5(data).hexdigest()}  -\n".encode()


@network
def test_sort(bb: Run, tmp_path: Path) -> None:
    words = ["pear", "Apple", "banana", "apple", "cherry", "Banana", "date", "apple", "10", "9", "-3"]
    f = tmp_path / "words.txt"
    f.write_text("\n".join(words) + "\n")
    assert _ok(bb("sort", str(f))) == ("\n".join(sorted(words)) + "\n").encode()
    assert (
        _ok(bb("sort", "-r", "-u", str(f))) == ("\n".join(sorted(set(words), reverse=True)) + "\n").encode()
    )
    nums = ["10", "9", "100", "-1", "0", "3"]
    out = _ok(bb("sort", "-n", input=("\n".join(nums) + "\n").encode()))
    assert out == ("\n".join(sorted(nums, key=int)) + "\n").encode()


@network
def test_sed(bb: Run, tmp_path: Path) -> None:
    lines = ["foo bar foo", "drop me", "a foo-foo b", "last line"]
    f = tmp_path / "in.txt"
    f.write_text("\n".join(lines) + "\n")
    out = _ok(bb("sed", "-e", "s/foo/BAR/g", "-e", "2d", "-e", r"s/\([a-z]*\) line$/\1 LINE/", str(f)))
    expect = [re.sub("foo", "BAR", s) for i, s in enumerate(lines) if i != 1]
    expect = [re.sub(r"([a-z]*) line$", r"\1 LINE", s) for s in expect]
    assert out == ("\n".join(expect) + "\n").encode()
    assert _ok(bb("sed", "-n", "3p", str(f))) == (lines[2] + "\n").encode()


@network
def test_tr(bb: Run) -> None:
    text = b"Hello, World! 123 polyvm\n"
    assert _ok(bb("tr", "a-z", "A-Z", input=text)) == text.upper()
    assert _ok(bb("tr", "-d", "lo", input=text)) == text.replace(b"l", b"").replace(b"o", b"")
    assert _ok(bb("tr", "-s", " ", input=b"a   b    c\n")) == b"a b c\n"


@network
def test_echo(bb: Run) -> None:
    assert _ok(bb("echo", "hello", "world")) == b"hello world\n"
    assert _ok(bb("echo", "-n", "no newline")) == b"no newline"
    assert _ok(bb("echo", "-e", r"tab\there\nline2")) == b"tab\there\nline2\n"


@network
def test_wc(bb: Run, tmp_path: Path) -> None:
    text = "one two\nthree\n\nfour  five six\n"
    f = tmp_path / "w.txt"
    f.write_text(text)
    lines, words, chars = text.count("\n"), len(text.split()), len(text.encode())
    assert _ok(bb("wc", "-l", str(f))) == f"{lines} {f}\n".encode()
    # Several counts: busybox right-aligns each in 9 columns, separated by one space.
    assert _ok(bb("wc", str(f))) == f"{lines:9d} {words:9d} {chars:9d} {f}\n".encode()
    assert _ok(bb("wc", "-c", input=text.encode())) == f"{chars}\n".encode()


@network
def test_cat(bb: Run, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"first file\n")
    b.write_bytes(bytes(range(256)) * 40)  # binary, larger than one read() buffer of some sizes
    assert _ok(bb("cat", str(a), str(b), str(a))) == a.read_bytes() + b.read_bytes() + a.read_bytes()
    assert _ok(bb("cat", input=b"from stdin\n")) == b"from stdin\n"


@network
def test_cat_missing_file(bb: Run, tmp_path: Path) -> None:
    p = bb("cat", str(tmp_path / "nope"))
    assert p.returncode == 1
    assert p.stderr == f"cat: can't open '{tmp_path / 'nope'}': No such file or directory\n".encode()


@network
def test_ls_and_files(bb: Run, tmp_path: Path) -> None:
    for n in ("zeta", "alpha", "Mid"):
        (tmp_path / n).write_text(n)
    assert _ok(bb("ls", str(tmp_path))) == ("\n".join(sorted(["zeta", "alpha", "Mid"])) + "\n").encode()
    _ok(bb("mkdir", str(tmp_path / "d")))
    _ok(bb("cp", str(tmp_path / "alpha"), str(tmp_path / "d" / "copy")))
    assert (tmp_path / "d" / "copy").read_text() == "alpha"
    _ok(bb("rm", str(tmp_path / "zeta")))
    assert not (tmp_path / "zeta").exists()


@network
def test_printf_seq_expr(bb: Run) -> None:
    assert _ok(bb("printf", r"%05d|%x|%s\n", "42", "255", "hey")) == b"00042|ff|hey\n"
    assert _ok(bb("seq", "3")) == b"1\n2\n3\n"
    assert _ok(bb("expr", "6", "*", "7")) == b"42\n"


@network
def test_sh_pipeline(bb: Run) -> None:
    """Pipelines and command substitution: fork (clone without CLONE_VM), pipe2, wait4, execve."""
    assert _ok(bb("sh", "-c", "echo abc | tr a-z A-Z")) == b"ABC\n"
    assert _ok(bb("sh", "-c", "seq 10 | sort -n -r | head -n 3 | wc -l")) == b"3\n"
    assert (
        _ok(bb("sh", "-c", 'x=$(echo inner; exit 0); echo "got $x"; false || echo rc=$?'))
        == b"got inner\nrc=1\n"
    )


@network
def test_sh_pipeline_of_three_and_substitution(bb: Run) -> None:
    # "A B\n" is 4 bytes; wc -c on stdin prints the count alone.
    assert _ok(bb("sh", "-c", "echo a b | tr a-z A-Z | wc -c")) == b"4\n"
    assert _ok(bb("sh", "-c", "x=$(echo hi); echo $x")) == b"hi\n"


@network
def test_sh_subshell_and_pipeline_statuses(bb: Run) -> None:
    # A subshell's exit status; a pipeline's status is its last command's.
    out = _ok(bb("sh", "-c", "(exit 3); echo $?; false | true; echo $?; true | false; echo $?"))
    assert out == b"3\n0\n1\n"
    out = _ok(bb("sh", "-c", "for i in 1 2 3 4; do echo $i; done | sort -r | head -n 2"))
    assert out == b"4\n3\n"


@network
def test_sh_background_job_wait_and_kill(bb: Run) -> None:
    out = _ok(bb("sh", "-c", "(sleep 0.2; exit 5) & pid=$!; wait $pid; echo status $?"))
    assert out == b"status 5\n"
    # A child killed by SIGTERM: the shell reports 128+15.
    assert _ok(bb("sh", "-c", "sleep 5 & kill $!; wait $!; echo $?")) == b"143\n"


@network
def test_uname_pwd_head(bb: Run, tmp_path: Path) -> None:
    assert _ok(bb("uname", "-m")) == b"riscv64\n"
    assert _ok(bb("pwd", cwd=tmp_path)) == f"{tmp_path}\n".encode()
    f = tmp_path / "lines"
    f.write_text("".join(f"line {i}\n" for i in range(10)))
    assert _ok(bb("head", "-n", "2", str(f))) == b"line 0\nline 1\n"


@network
def test_fetch_script_prints_cached_path(busybox: Path) -> None:
    p = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "fetch_busybox.py")], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr
    assert Path(p.stdout.strip()) == busybox
    assert busybox.read_bytes()[:4] == b"\x7fELF" and busybox.read_bytes()[18] == 243  # EM_RISCV


def test_apt_sources_parsing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The mirror comes from the machine's apt sources, one-line and deb822, skipping the rest."""
    lst = tmp_path / "sources.list"
    lst.write_text(
        "# comment\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k/sec.gpg] http://sec.example/debian-security bookworm-security main\n"
    )
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "a-thirdparty.sources").write_text(
        "Types: deb\nURIs: https://vendor.example/apt\nSuites: stable\nComponents: main\n"
    )
    (d / "b-disabled.sources").write_text(
        "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\nComponents: main\n"
    )
    (d / "c-debian.sources").write_text(
        "Types: deb deb-src\n"
        "URIs: http://mirror.example/debian/\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main contrib\n"
        "Signed-By:\n"
        " -----BEGIN PGP PUBLIC KEY BLOCK-----\n"
        " .\n"
        " mQINBF...\n"
        " -----END PGP PUBLIC KEY BLOCK-----\n"
        "\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n"
    )
    monkeypatch.setattr(fetch_busybox, "SOURCES_LIST", lst)
    monkeypatch.setattr(fetch_busybox, "SOURCES_DIR", d)
    monkeypatch.delenv("POLYVM_DEBIAN_MIRROR", raising=False)
    src = fetch_busybox.debian_mirror()
    assert src.uri == "http://mirror.example/debian/"
    assert src.signed_by.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBF")
    state = tmp_path / "state"
    opts = fetch_busybox._prepare_state(state, "riscv64")
    assert "APT::Architecture=riscv64" in opts
    line = (state / "sources.list").read_text()
    assert line == f"deb [signed-by={state / 'keyring.asc'}] http://mirror.example/debian/ trixie main\n"
    monkeypatch.setenv("POLYVM_DEBIAN_MIRROR", "http://override.example/debian")
    assert fetch_busybox.debian_mirror().uri == "http://override.example/debian"
    monkeypatch.delenv("POLYVM_DEBIAN_MIRROR")
    (d / "c-debian.sources").unlink()
    with pytest.raises(fetch_busybox.ArchiveUnreachable):
        fetch_busybox.debian_mirror()
