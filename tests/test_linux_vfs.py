"""Guest path resolution and `root=DIR` confinement: every escape attempt stays inside DIR."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from polyvm.linux import Process
from polyvm.linux.errnos import ELOOP, ENOENT, ENOTDIR, SyscallError
from polyvm.linux.vfs import VFS, ProcView
from polyvm.testing.guest import build_guest


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc/passwd").write_text("inside:x:0:0\n")
    (r / "home/u").mkdir(parents=True)
    (r / "home/u/note").write_text("note\n")
    os.symlink("/etc/passwd", r / "abs")  # absolute: resolved under the root
    os.symlink("../../../../../../etc/passwd", r / "home/u/rel")  # climbs, clamped at the root
    os.symlink("loop2", r / "loop1")
    os.symlink("loop1", r / "loop2")
    os.symlink("/", r / "home/u/top")
    os.symlink(str(tmp_path), r / "hostdir")  # an absolute host path: means root + that path
    (tmp_path / "secret").write_text("secret\n")
    shutil.copy(build_guest("t_root"), r / "prog")
    return r


def vfs(root: Path | None) -> VFS:
    return VFS(
        str(root) if root else None,
        ProcView(
            lambda: 4242,
            lambda: "/prog",
            lambda: "/home/u",
            lambda: b"",
            lambda: b"",
            lambda: {0: "/dev/null"},
        ),
    )


def test_resolve_inside_root(root: Path) -> None:
    v = vfs(root)
    real = os.path.realpath(root)
    assert v.resolve("../../etc/passwd", "/home/u").host == real + "/etc/passwd"
    assert v.resolve("/../../../etc/passwd", "/").host == real + "/etc/passwd"
    assert v.resolve("/abs", "/").host == real + "/etc/passwd"
    assert v.resolve("rel", "/home/u").host == real + "/etc/passwd"
    assert v.resolve("/home/u/top/etc/passwd", "/").host == real + "/etc/passwd"
    assert v.resolve("/proc/self/root/etc/passwd", "/").host == real + "/etc/passwd"
    assert v.resolve("/proc/4242/cwd/note", "/").host == real + "/home/u/note"
    assert v.resolve("/proc/self/exe", "/").host == real + "/prog"
    assert v.resolve("/proc/self/exe", "/", follow=False).virt == ("link", "/prog")
    for path, err in (
        ("/hostdir/secret", ENOENT),  # the host path the link names does not exist under the root
        ("/loop1", ELOOP),
        ("/etc/passwd/x", ENOTDIR),
        ("/nope/x", ENOENT),
        ("/proc/self/bogus/x", ENOENT),
    ):
        with pytest.raises(SyscallError) as e:
            v.resolve(path, "/")
        assert e.value.errno == err, path
    assert v.guest_from_host(str(root / "prog")) == "/prog"
    assert v.guest_from_host("/etc/passwd") is None


def test_resolve_without_root(tmp_path: Path) -> None:
    v = vfs(None)
    (tmp_path / "f").write_text("x")
    os.symlink(str(tmp_path / "f"), tmp_path / "l")
    assert v.resolve(str(tmp_path / "l"), "/").host == str(tmp_path / "f")
    assert v.resolve("f", str(tmp_path)).host == str(tmp_path / "f")
    assert v.resolve("/proc/self/exe", "/").host == "/prog"


def test_guest_escapes_refused(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [
        "/etc/passwd",
        "../../../../etc/passwd",
        "/abs",
        "/home/u/rel",
        "/loop1",
        "/proc/self/root/etc/passwd",
        "/proc/self/cwd/../../../etc/passwd",
        "/hostdir/secret",
        "readlink:/proc/self/exe",
        "readlink:/abs",
        "chdir:/../..",
        "../etc/passwd",
    ]
    with open(out, "wb") as f:
        p = Process.from_file(root / "prog", ["prog", *args], env={}, root=str(root), stdout=f.fileno())
        assert p.run(timeout=60) == 0
    assert out.read_text().splitlines() == [
        "/etc/passwd: inside:x:0:0",
        "../../../../etc/passwd: inside:x:0:0",
        "/abs: inside:x:0:0",
        "/home/u/rel: inside:x:0:0",
        "/loop1: errno 40",
        "/proc/self/root/etc/passwd: inside:x:0:0",
        "/proc/self/cwd/../../../etc/passwd: inside:x:0:0",
        "/hostdir/secret: errno 2",
        "readlink:/proc/self/exe: -> /prog",
        "readlink:/abs: -> /etc/passwd",
        "chdir:/../..: 0 cwd=/",
        "../etc/passwd: inside:x:0:0",
    ]
