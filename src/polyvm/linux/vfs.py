"""Guest path resolution: the one place where guest paths become host paths.

The guest sees the host file system, or with `root=DIR` only what lies under DIR. Paths are
resolved here component by component, following symlinks ourselves (absolute targets restart
at the guest root, `..` never climbs above it), so the host path handed to the OS never holds a
symlink we did not look at; the final `open` adds O_NOFOLLOW. `/proc/self` (and `/proc/<pid>`,
`/proc/thread-self`) is emulated: `exe`, `cwd`, `root`, `maps`, `cmdline`, `fd/` and `fd/N`
answer from the guest's view, so they cannot point outside it either.
"""

from __future__ import annotations

import os
import stat as st
from collections.abc import Callable

from polyvm.linux.errnos import ELOOP, ENAMETOOLONG, ENOENT, ENOTDIR, SyscallError, from_host
from polyvm.record import Record

MAX_SYMLINKS = 40
PATH_MAX = 4096


class Resolved(Record):
    """A guest path after resolution.

    guest: the absolute guest path (normalised, symlinks resolved except a final unfollowed one)
    host:  the host path, or None for an emulated /proc node
    exists: whether the final component exists
    virt:  for /proc nodes: ("dir", names) | ("link", target) | ("file", producer)
    """

    _fields = ("guest", "host", "exists", "virt", "lstat")

    def __init__(
        self,
        guest: str,
        host: str | None,
        exists: bool,
        virt: tuple | None = None,
        lstat: os.stat_result | None = None,
    ) -> None:
        self.guest = guest
        self.host = host
        self.exists = exists
        self.virt = virt
        self.lstat = lstat


class ProcView:
    """What /proc/self shows; the Process provides these callbacks."""

    def __init__(
        self,
        pid: Callable[[], int],
        exe: Callable[[], str],
        cwd: Callable[[], str],
        maps: Callable[[], bytes],
        cmdline: Callable[[], bytes],
        fds: Callable[[], dict[int, str]],
    ) -> None:
        self.pid, self.exe, self.cwd, self.maps, self.cmdline, self.fds = pid, exe, cwd, maps, cmdline, fds


def _split(path: str) -> list[str]:
    return [c for c in path.split("/") if c and c != "."]


class VFS:
    def __init__(self, root: str | None, proc: ProcView) -> None:
        self.root = os.path.realpath(root) if root else None
        self.proc = proc

    # ---- host <-> guest ------------------------------------------------------------------
    def host_path(self, guest: str) -> str:
        if self.root is None:
            return guest
        return self.root + guest if guest != "/" else self.root

    def guest_from_host(self, host: str) -> str | None:
        """The guest path of a host path, or None if it lies outside the root."""
        host = os.path.abspath(host)
        if self.root is None:
            return host
        if host == self.root:
            return "/"
        if host.startswith(self.root.rstrip("/") + "/"):
            return host[len(self.root.rstrip("/")) :]
        return None

    # ---- /proc/self ----------------------------------------------------------------------
    def _virtual(self, parts: list[str]) -> tuple | None:
        if not parts or parts[0] != "proc":
            return None
        if len(parts) == 1:
            # Under a root without its own /proc, show one holding just "self".
            if self.root is not None and not os.path.isdir(self.root + "/proc"):
                return ("dir", ["self"])
            return None
        if parts[1] not in ("self", "thread-self", str(self.proc.pid())):
            return None
        rest = parts[2:]
        if not rest:
            return ("dir", ["exe", "cwd", "root", "maps", "cmdline", "fd"])
        name = rest[0]
        if len(rest) == 1:
            if name == "exe":
                return ("link", self.proc.exe())
            if name == "cwd":
                return ("link", self.proc.cwd())
            if name == "root":
                return ("link", "/")
            if name == "maps":
                return ("file", self.proc.maps)
            if name == "cmdline":
                return ("file", self.proc.cmdline)
            if name == "fd":
                return ("dir", [str(fd) for fd in sorted(self.proc.fds())])
        elif len(rest) == 2 and name == "fd" and rest[1].isdigit():
            target = self.proc.fds().get(int(rest[1]))
            if target is not None:
                return ("link", target)
        return ("missing", None)

    # ---- resolution ----------------------------------------------------------------------
    def resolve(self, path: str, base: str, *, follow: bool = True) -> Resolved:
        """Resolve guest `path` relative to the absolute guest directory `base`."""
        if not path:
            raise SyscallError(ENOENT)
        if len(path) >= PATH_MAX:
            raise SyscallError(ENAMETOOLONG)
        must_be_dir = path.endswith("/")
        if must_be_dir:
            follow = True
        parts: list[str] = [] if path.startswith("/") else _split(base)
        todo = _split(path)
        links = 0
        lst: os.stat_result | None = None
        virt: tuple | None = None
        while todo:
            comp = todo.pop(0)
            if comp == "..":
                if parts:
                    parts.pop()
                lst, virt = None, None
                continue
            parts.append(comp)
            last = not todo
            guest = "/" + "/".join(parts)
            virt = self._virtual(parts)
            if virt is not None:
                lst = None
                kind = virt[0]
                if kind == "missing":
                    if last:
                        return Resolved(guest, None, False, None)
                    raise SyscallError(ENOENT)
                if kind == "link" and (follow or not last):
                    links += 1
                    if links > MAX_SYMLINKS:
                        raise SyscallError(ELOOP)
                    parts.pop()
                    target = virt[1]
                    if target.startswith("/"):
                        parts = []
                    todo = _split(target) + todo
                    virt = None
                    if not todo:  # the link pointed at "/"
                        break
                    continue
                if not last and kind != "dir":
                    raise SyscallError(ENOTDIR)
                continue
            host = self.host_path(guest)
            try:
                lst = os.lstat(host)
            except FileNotFoundError:
                if last:
                    return Resolved(guest, host, False)
                raise SyscallError(ENOENT) from None
            except NotADirectoryError:
                raise SyscallError(ENOTDIR) from None
            except OSError as e:
                raise SyscallError(from_host(e)) from None
            if st.S_ISLNK(lst.st_mode) and (follow or not last):
                links += 1
                if links > MAX_SYMLINKS:
                    raise SyscallError(ELOOP)
                target = os.readlink(host)
                parts.pop()
                if target.startswith("/"):
                    parts = []
                todo = _split(target) + todo
                lst = None
                if not todo:
                    break
                continue
            if not last and not st.S_ISDIR(lst.st_mode):
                raise SyscallError(ENOTDIR)
        guest = "/" + "/".join(parts)
        if virt is None and lst is None:
            virt = self._virtual(parts)
            if virt is not None and virt[0] == "missing":
                return Resolved(guest, None, False)
        if virt is not None:
            return Resolved(guest, None, True, virt)
        host = self.host_path(guest)
        if lst is None:
            try:
                lst = os.lstat(host)
            except FileNotFoundError:
                return Resolved(guest, host, False)
            except OSError as e:
                raise SyscallError(from_host(e)) from None
        if must_be_dir and not st.S_ISDIR(lst.st_mode):
            raise SyscallError(ENOTDIR)
        return Resolved(guest, host, True, None, lst)
