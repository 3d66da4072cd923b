"""Open file descriptions: host files and directories, pipes, and emulated /proc files.

A guest fd points at an `OpenFile`; dup'ed fds share one (offset and status flags included),
as in Linux. Operations that would block raise `WouldBlock`, and the syscall layer turns that
into a wait the scheduler can skip, so one blocked guest thread never stalls the others.
"""

from __future__ import annotations

import fcntl
import os
import select
import stat as st
import termios
import time

from polyvm.linux.errnos import (
    EBADF,
    EINVAL,
    EISDIR,
    ENOTDIR,
    ENOTTY,
    ESPIPE,
    SyscallError,
    from_host,
)
from polyvm.linux.structs import StatLike, dt_from_mode, pack_dirent64

# Guest open flags (asm-generic fcntl.h: riscv64 and x86_64; aarch64 differs in four bits).
O_ACCMODE = 0o3
O_RDONLY, O_WRONLY, O_RDWR = 0, 1, 2
O_CREAT = 0o100
O_EXCL = 0o200
O_NOCTTY = 0o400
O_TRUNC = 0o1000
O_APPEND = 0o2000
O_NONBLOCK = 0o4000
O_DSYNC = 0o10000
O_DIRECT = 0o40000
O_LARGEFILE = 0o100000
O_DIRECTORY = 0o200000
O_NOFOLLOW = 0o400000
O_NOATIME = 0o1000000
O_CLOEXEC = 0o2000000
O_SYNC = 0o4010000
O_PATH = 0o10000000
O_TMPFILE = 0o20000000 | O_DIRECTORY
STATUS_FLAGS = O_APPEND | O_NONBLOCK | O_DSYNC | O_DIRECT | O_NOATIME | O_SYNC

# Terminal ioctls (asm-generic/ioctls.h, also x86)
TCGETS, TCSETS, TCSETSW, TCSETSF = 0x5401, 0x5402, 0x5403, 0x5404
TIOCGPGRP, TIOCSPGRP, TIOCGWINSZ, TIOCSWINSZ = 0x540F, 0x5410, 0x5413, 0x5414
FIONREAD, FIONBIO, FIONCLEX, FIOCLEX = 0x541B, 0x5421, 0x5450, 0x5451
TERMIOS_SIZE = 36  # struct termios of the generic ABI: 4 flag words, c_line, c_cc[19]

PIPE_BUF_SIZE = 65536


class WouldBlock(Exception):
    """The operation cannot complete now; `fds` are host fds whose readiness may change that."""

    def __init__(self, rfds: tuple[int, ...] = (), wfds: tuple[int, ...] = ()) -> None:
        super().__init__("would block")
        self.rfds = rfds
        self.wfds = wfds


class OpenFile:
    kind = "file"

    def __init__(self, path: str, flags: int) -> None:
        self.path = path
        self.flags = flags
        self.refs = 0

    @property
    def readable(self) -> bool:
        return (self.flags & O_ACCMODE) in (O_RDONLY, O_RDWR) and not self.flags & O_PATH

    @property
    def writable(self) -> bool:
        return (self.flags & O_ACCMODE) in (O_WRONLY, O_RDWR) and not self.flags & O_PATH

    def read(self, n: int) -> bytes:
        raise SyscallError(EINVAL)

    def write(self, data: bytes) -> int:
        raise SyscallError(EINVAL)

    def pread(self, n: int, off: int) -> bytes:
        raise SyscallError(ESPIPE)

    def pwrite(self, data: bytes, off: int) -> int:
        raise SyscallError(ESPIPE)

    def lseek(self, off: int, whence: int) -> int:
        raise SyscallError(ESPIPE)

    def stat(self) -> StatLike:
        return StatLike(st_mode=st.S_IFREG | 0o444)

    def getdents(self) -> list[tuple[int, int, bytes]]:
        raise SyscallError(ENOTDIR)

    def ioctl(self, req: int, arg: bytes | None) -> tuple[int, bytes | None]:
        raise SyscallError(ENOTTY)

    def ready(self) -> tuple[bool, bool]:
        """(readable now, writable now) for poll/select."""
        return True, True

    def host_fd(self) -> int | None:
        return None

    def close(self) -> None:
        pass

    @property
    def is_dir(self) -> bool:
        return st.S_ISDIR(self.stat().st_mode)


def _host(fn, *args):
    try:
        return fn(*args)
    except OSError as e:
        raise SyscallError(from_host(e)) from None


class HostFile(OpenFile):
    """A host file descriptor the process owns (opened by the guest, or a dup of stdio)."""

    kind = "host"

    def __init__(self, fd: int, path: str, flags: int) -> None:
        super().__init__(path, flags)
        self.fd = fd
        mode = os.fstat(fd).st_mode
        self.regular = st.S_ISREG(mode) or st.S_ISBLK(mode)
        self.directory = st.S_ISDIR(mode)
        self._entries: list[tuple[int, int, bytes]] | None = None
        self._dpos = 0

    def host_fd(self) -> int | None:
        return self.fd

    def _check_ready(self, write: bool) -> None:
        if self.regular:
            return
        try:
            r, w, _ = select.select([] if write else [self.fd], [self.fd] if write else [], [], 0)
        except (OSError, ValueError):
            return
        if not (w if write else r):
            raise WouldBlock((), (self.fd,)) if write else WouldBlock((self.fd,))

    def read(self, n: int) -> bytes:
        if self.directory:
            raise SyscallError(EISDIR)
        self._check_ready(False)
        return _host(os.read, self.fd, n)

    def write(self, data: bytes) -> int:
        if self.flags & O_APPEND and self.regular:
            _host(os.lseek, self.fd, 0, os.SEEK_END)
        return _host(os.write, self.fd, data)

    def pread(self, n: int, off: int) -> bytes:
        if not self.regular:
            raise SyscallError(ESPIPE)
        return _host(os.pread, self.fd, n, off)

    def pwrite(self, data: bytes, off: int) -> int:
        if not self.regular:
            raise SyscallError(ESPIPE)
        return _host(os.pwrite, self.fd, data, off)

    def lseek(self, off: int, whence: int) -> int:
        if self.directory:
            if whence != os.SEEK_SET or off < 0:
                raise SyscallError(EINVAL)
            if off == 0:
                self._entries = None
            self._dpos = off
            return off
        if whence not in (os.SEEK_SET, os.SEEK_CUR, os.SEEK_END):
            raise SyscallError(EINVAL)
        return _host(os.lseek, self.fd, off, whence)

    def stat(self) -> StatLike:
        return StatLike.from_host(_host(os.fstat, self.fd))

    def getdents(self) -> list[tuple[int, int, bytes]]:
        if not self.directory:
            raise SyscallError(ENOTDIR)
        if self._entries is None:
            me = _host(os.fstat, self.fd)
            ents = [(me.st_ino, 4, b"."), (me.st_ino, 4, b"..")]
            try:
                parent = os.stat("..", dir_fd=self.fd)
                ents[1] = (parent.st_ino, 4, b"..")
            except OSError:
                pass
            for name in sorted(_host(os.listdir, self.fd)):
                try:
                    s = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
                    ents.append((s.st_ino, dt_from_mode(s.st_mode), os.fsencode(name)))
                except OSError:
                    continue
            self._entries = ents
        return self._entries

    def ioctl(self, req: int, arg: bytes | None) -> tuple[int, bytes | None]:
        if req in (FIOCLEX, FIONCLEX):
            return 0, None
        if req == FIONBIO:
            return 0, None
        if req == FIONREAD:
            if self.regular:
                s = os.fstat(self.fd)
                return 0, max(0, s.st_size - os.lseek(self.fd, 0, os.SEEK_CUR)).to_bytes(4, "little")
            buf = _host(fcntl.ioctl, self.fd, termios.FIONREAD, b"\0\0\0\0")
            return 0, buf
        if not os.isatty(self.fd):
            raise SyscallError(ENOTTY)
        if req == TCGETS:
            buf = _host(fcntl.ioctl, self.fd, termios.TCGETS, bytes(64))
            return 0, buf[:TERMIOS_SIZE]
        if req in (TCSETS, TCSETSW, TCSETSF) and arg is not None:
            host_req = {TCSETS: termios.TCSETS, TCSETSW: termios.TCSETSW, TCSETSF: termios.TCSETSF}[req]
            _host(fcntl.ioctl, self.fd, host_req, arg + bytes(64 - len(arg)))
            return 0, None
        if req == TIOCGWINSZ:
            return 0, _host(fcntl.ioctl, self.fd, termios.TIOCGWINSZ, bytes(8))
        if req == TIOCSWINSZ and arg is not None:
            _host(fcntl.ioctl, self.fd, termios.TIOCSWINSZ, arg)
            return 0, None
        if req == TIOCGPGRP:
            return 0, os.getpgrp().to_bytes(4, "little")
        if req == TIOCSPGRP:
            return 0, None
        raise SyscallError(EINVAL)

    def ready(self) -> tuple[bool, bool]:
        if self.regular or self.directory:
            return True, True
        try:
            r, w, _ = select.select([self.fd], [self.fd], [], 0)
        except (OSError, ValueError):
            return True, True
        return bool(r), bool(w)

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


class HostPipe(HostFile):
    """One end of a host pipe (os.pipe): it survives fork, so processes can share it.

    The host side is always non-blocking, so a full or empty pipe becomes `WouldBlock` and the
    scheduler polls it instead of stalling every guest thread; the guest's own O_NONBLOCK lives
    in `flags`, as for every open file.
    """

    kind = "pipe"

    def __init__(self, fd: int, write: bool, flags: int) -> None:
        os.set_blocking(fd, False)
        ino = os.fstat(fd).st_ino
        super().__init__(fd, f"pipe:[{ino}]", (O_WRONLY if write else O_RDONLY) | (flags & O_NONBLOCK))
        self.is_write = write

    def read(self, n: int) -> bytes:
        if self.is_write:
            raise SyscallError(EBADF)
        try:
            return os.read(self.fd, n)
        except BlockingIOError:
            raise WouldBlock((self.fd,)) from None
        except OSError as e:
            raise SyscallError(from_host(e)) from None

    def write(self, data: bytes) -> int:
        if not self.is_write:
            raise SyscallError(EBADF)
        try:
            return os.write(self.fd, data)
        except BlockingIOError:
            raise WouldBlock((), (self.fd,)) from None
        except OSError as e:
            raise SyscallError(from_host(e)) from None

    def poll_events(self) -> tuple[bool, bool, bool, bool]:
        """(readable, writable, hang-up, error) as poll(2) reports them."""
        try:
            pl = select.poll()
            pl.register(self.fd, select.POLLIN | select.POLLOUT)
            ev = pl.poll(0)
        except (OSError, ValueError, AttributeError):
            r, w = HostFile.ready(self)
            return r, w, False, False
        bits = ev[0][1] if ev else 0
        return (
            bool(bits & select.POLLIN),
            bool(bits & select.POLLOUT),
            bool(bits & select.POLLHUP),
            bool(bits & select.POLLERR),
        )

    def ready(self) -> tuple[bool, bool]:
        r, w, hup, err = self.poll_events()
        if self.is_write:
            return False, w or err
        return r or hup, False

    def ioctl(self, req: int, arg: bytes | None) -> tuple[int, bytes | None]:
        if req == FIONREAD:
            return 0, _host(fcntl.ioctl, self.fd, termios.FIONREAD, b"\0\0\0\0")
        return super().ioctl(req, arg)


def host_pipe(flags: int) -> tuple[HostPipe, HostPipe]:
    """A host pipe's two ends (read, write), not inherited by host exec."""
    r, w = os.pipe()
    try:
        return HostPipe(r, False, flags), HostPipe(w, True, flags)
    except OSError as e:
        os.close(r)
        os.close(w)
        raise SyscallError(from_host(e)) from None


class VirtualFile(OpenFile):
    """An emulated read-only file (/proc/self/maps, cmdline), its contents taken at open."""

    kind = "virtual"

    def __init__(self, path: str, data: bytes) -> None:
        super().__init__(path, O_RDONLY)
        self.data = data
        self.pos = 0

    def read(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out

    def pread(self, n: int, off: int) -> bytes:
        return self.data[off : off + n]

    def lseek(self, off: int, whence: int) -> int:
        base = {0: 0, 1: self.pos, 2: len(self.data)}.get(whence)
        if base is None or base + off < 0:
            raise SyscallError(EINVAL)
        self.pos = base + off
        return self.pos

    def stat(self) -> StatLike:
        now = time.time_ns()
        return StatLike(
            st_dev=4,
            st_ino=hash(self.path) & 0xFFFFFF,
            st_mode=st.S_IFREG | 0o444,
            st_atime_ns=now,
            st_mtime_ns=now,
            st_ctime_ns=now,
        )


class VirtualDir(OpenFile):
    kind = "virtual"

    def __init__(self, path: str, names: list[str], flags: int) -> None:
        super().__init__(path, flags)
        self.names = names
        self._dpos = 0

    def read(self, n: int) -> bytes:
        raise SyscallError(EISDIR)

    def lseek(self, off: int, whence: int) -> int:
        if whence != 0 or off < 0:
            raise SyscallError(EINVAL)
        self._dpos = off
        return off

    def stat(self) -> StatLike:
        now = time.time_ns()
        return StatLike(
            st_dev=4,
            st_ino=hash(self.path) & 0xFFFFFF,
            st_mode=st.S_IFDIR | 0o555,
            st_nlink=2,
            st_atime_ns=now,
            st_mtime_ns=now,
            st_ctime_ns=now,
        )

    def getdents(self) -> list[tuple[int, int, bytes]]:
        ents = [(1, 4, b"."), (1, 4, b"..")]
        for i, n in enumerate(self.names):
            ents.append((100 + i, 10 if n.isdigit() or n in ("exe", "cwd", "root") else 8, n.encode()))
        return ents


def getdents64(f: OpenFile, size: int) -> bytes:
    """Pack directory entries from the file's position into at most `size` bytes."""
    ents = f.getdents()
    pos = f._dpos  # type: ignore[attr-defined]
    out = bytearray()
    while pos < len(ents):
        ino, dtype, name = ents[pos]
        rec = pack_dirent64(ino, pos + 1, dtype, name)
        if len(out) + len(rec) > size:
            if not out:
                raise SyscallError(EINVAL)
            break
        out += rec
        pos += 1
    f._dpos = pos  # type: ignore[attr-defined]
    return bytes(out)
