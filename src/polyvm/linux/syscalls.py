"""Linux syscalls, implemented once by name for every architecture.

Each implementation is `fn(process, thread, a0, a1, a2, a3, a4, a5)` over raw 64-bit argument
registers and returns the result (a negative errno on failure), a `Wait` when it must block,
or `NORESULT` when it set the registers itself (rt_sigreturn, exit). Guest pointers are only
touched through the address space's checked accessors, so a bad pointer raises MemoryFault,
which `dispatch` turns into -EFAULT; host errors become the matching guest errno.
"""

from __future__ import annotations

import os
import stat as st
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from polyvm.linux import signals as S
from polyvm.linux.errnos import (
    E2BIG,
    EACCES,
    EAGAIN,
    EBADF,
    ECHILD,
    EEXIST,
    EFAULT,
    EINTR,
    EINVAL,
    EISDIR,
    ELOOP,
    ENAMETOOLONG,
    ENODEV,
    ENOENT,
    ENOEXEC,
    ENOMEM,
    ENOSYS,
    ENOTDIR,
    EPERM,
    EPIPE,
    ERANGE,
    ESRCH,
    ETIMEDOUT,
    SyscallError,
    from_host,
)
from polyvm.linux.files import (
    FIOCLEX,
    FIONBIO,
    FIONCLEX,
    O_ACCMODE,
    O_APPEND,
    O_CLOEXEC,
    O_CREAT,
    O_DIRECT,
    O_DIRECTORY,
    O_DSYNC,
    O_EXCL,
    O_NOATIME,
    O_NOCTTY,
    O_NOFOLLOW,
    O_NONBLOCK,
    O_PATH,
    O_RDONLY,
    O_RDWR,
    O_SYNC,
    O_TRUNC,
    O_WRONLY,
    TCSETS,
    TCSETSF,
    TCSETSW,
    TERMIOS_SIZE,
    TIOCSPGRP,
    TIOCSWINSZ,
    HostFile,
    HostPipe,
    OpenFile,
    VirtualDir,
    VirtualFile,
    WouldBlock,
    getdents64,
    host_pipe,
)
from polyvm.linux.loader import TASK_SIZE
from polyvm.linux.mm import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_FIXED_NOREPLACE,
    MAP_PRIVATE,
    MAP_SHARED,
    Vma,
)
from polyvm.linux.process import Wait
from polyvm.linux.structs import (
    IOVEC,
    RLIM_INFINITY,
    RUSAGE_SIZE,
    STACK_T,
    SYSINFO,
    TIMESPEC,
    StatLike,
    pack_statx,
    pack_utsname,
)
from polyvm.linux.vfs import Resolved
from polyvm.memory import PAGE_MASK, PAGE_SHIFT, PAGE_SIZE, PROT_READ, PROT_WRITE, MemoryFault, page_align_up

if TYPE_CHECKING:
    from polyvm.engine import Stop
    from polyvm.linux.process import Process, Thread

NORESULT = object()
MASK64 = (1 << 64) - 1
MAX_IO = 16 << 20  # longest single read/write; callers loop on short counts
IOV_MAX = 1024
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_REMOVEDIR = 0x200
AT_EACCESS = 0x200
AT_SYMLINK_FOLLOW = 0x400
AT_EMPTY_PATH = 0x1000

IMPL: dict[str, Callable[..., Any]] = {}


def syscall(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        for n in names:
            IMPL[n] = fn
        return fn

    return deco


def s32(x: int) -> int:
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x & 0x80000000 else x


def s64(x: int) -> int:
    x &= MASK64
    return x - (1 << 64) if x >> 63 else x


# ---- dispatch ----------------------------------------------------------------------------
def dispatch(p: Process, t: Thread, stop: Stop) -> None:
    abi = p.abi
    regs = t.regs
    nr = abi.syscall_nr(regs)
    args = abi.syscall_args(regs)
    regs[abi.pc_slot] = stop.resume
    name = abi.syscall_names.get(nr, "")
    t.syscall_name = name or f"syscall_{nr}"
    t.syscall_args = args
    fn = IMPL.get(name)
    res: Any = None
    for hook in p.syscall_hooks:
        # API hooks (polyvm.api.Program.hook_add("syscall")): an int answers the syscall.
        res = hook(nr, args)
        if res is not None:
            fn = lambda *_a, _r=res: _r  # noqa: E731
            break
    if p.strace and name in ("exit", "exit_group"):
        p.diag(f"{p.pid} {format_call(p, name, args)}")
    if fn is None:
        p.warn_unsupported(nr, name)
        res = -ENOSYS
    else:
        try:
            res = fn(p, t, *args)
        except SyscallError as e:
            res = -e.errno
        except MemoryFault:
            res = -EFAULT
        except OSError as e:
            res = -from_host(e)
        except (ValueError, OverflowError, struct.error):
            res = -EINVAL
        except MemoryError:
            res = -ENOMEM
        except Exception as e:  # a bug in polyvm: say so in one line, keep the guest running
            if os.environ.get("POLYVM_DEBUG"):
                raise
            p.diag(f"polyvm: internal error in {t.syscall_name}: {type(e).__name__}: {e}")
            res = -ENOSYS
    if isinstance(res, Wait):
        res.ecall_pc = stop.pc
        t.wait = res
        if p.strace:
            p.diag(f"{p.pid} {format_call(p, t.syscall_name, args)} ...")
        return
    if res is NORESULT:
        if p.strace and name not in ("exit", "exit_group"):
            p.diag(f"{p.pid} {format_call(p, t.syscall_name, args)}")
        return
    abi.set_result(regs, res)
    if p.strace:
        p.diag(f"{p.pid} {format_call(p, t.syscall_name, args)} = {format_result(res)}")


def strace_result(p: Process, t: Thread, res: int | str) -> None:
    if p.strace:
        r = format_result(res) if isinstance(res, int) else res
        p.diag(f"{p.pid} {t.syscall_name} resumed = {r}")


# Argument formats for --strace: d int, u unsigned, x hex, s string, p pointer, o octal.
_SIG = {
    "read": "dpu", "write": "dpu", "openat": "dsxo", "close": "d", "lseek": "ddd", "readv": "dpd",
    "writev": "dpd", "pread64": "dpud", "pwrite64": "dpud", "newfstatat": "dspx", "fstat": "dp",
    "statx": "dsxxp", "mmap": "pudxdx", "munmap": "pu", "mprotect": "pud", "brk": "p",
    "exit": "d", "exit_group": "d", "ioctl": "dxp", "fcntl": "ddx", "dup": "d", "dup3": "ddx",
    "getdents64": "dpu", "readlinkat": "dspu", "unlinkat": "dsx", "mkdirat": "dso",
    "renameat2": "dsdsx", "faccessat": "dsd", "faccessat2": "dsdx", "chdir": "s", "getcwd": "pu",
    "pipe2": "px", "clone": "xpppp", "futex": "pdxpp", "rt_sigaction": "dppu",
    "rt_sigprocmask": "dppu", "kill": "dd", "tgkill": "ddd", "tkill": "dd", "nanosleep": "pp",
    "clock_gettime": "dp", "clock_nanosleep": "ddpp", "set_tid_address": "p", "getrandom": "pux",
    "mremap": "puuxp", "madvise": "pud", "sendfile": "ddpu", "prlimit64": "ddpp", "uname": "p",
    "getpid": "", "gettid": "", "getppid": "", "getuid": "", "geteuid": "", "getgid": "",
    "getegid": "", "sched_yield": "", "rt_sigreturn": "", "set_robust_list": "pu",
}  # fmt: skip


def format_call(p: Process, name: str, args: list[int]) -> str:
    sig = _SIG.get(name, "xxxxxx")
    out = []
    for code, a in zip(sig, args, strict=False):
        if code == "d":
            v = s64(a)
            out.append(
                "AT_FDCWD"
                if v == AT_FDCWD and name.endswith("at")
                else str(s32(a) if -(1 << 31) <= v < (1 << 31) else v)
            )
        elif code == "u":
            out.append(str(a))
        elif code == "o":
            out.append(f"0{a:o}")
        elif code == "s":
            try:
                out.append('"' + p.mem.read_cstr(a, 256).decode(errors="replace") + '"')
            except (MemoryFault, ValueError):
                out.append(f"{a:#x}")
        elif code == "p":
            out.append("NULL" if a == 0 else f"{a:#x}")
        else:
            out.append(f"{a:#x}")
    return f"{name}({','.join(out)})"


def format_result(res: int) -> str:
    if res < 0 and res >= -4095:
        return f"-1 errno={-res}"
    if res > 0xFFFF:
        return f"{res:#x}"
    return str(res)


# ---- helpers -----------------------------------------------------------------------------
def get_fd(p: Process, fd: int) -> OpenFile:
    f = p.fds.get(s32(fd))
    if f is None:
        raise SyscallError(EBADF)
    return f


def read_path(p: Process, addr: int) -> str:
    if addr == 0:
        raise SyscallError(EFAULT)
    try:
        return os.fsdecode(p.mem.read_cstr(addr, 4096))
    except ValueError:
        raise SyscallError(ENAMETOOLONG) from None


def base_dir(p: Process, dirfd: int, path: str) -> str:
    dirfd = s32(dirfd)
    if path.startswith("/") or dirfd == AT_FDCWD:
        return p.cwd
    f = get_fd(p, dirfd)
    if not f.is_dir:
        raise SyscallError(ENOTDIR)
    return f.path


def resolve_at(p: Process, dirfd: int, path: str, follow: bool = True) -> Resolved:
    return p.vfs.resolve(path, base_dir(p, dirfd, path), follow=follow)


def check_writable(p: Process, addr: int, n: int) -> None:
    """Fail with EFAULT before consuming data that could not be stored."""
    if n <= 0:
        return
    mem = p.mem
    for pn in range(addr >> PAGE_SHIFT, ((addr + n - 1) >> PAGE_SHIFT) + 1):
        prot = mem.prot_at(pn << PAGE_SHIFT)
        if prot is None or not prot & PROT_WRITE:
            raise SyscallError(EFAULT)


def read_timespec(p: Process, addr: int) -> float:
    sec, nsec = TIMESPEC.unpack(p.mem.read(addr, 16))
    if sec < 0 or not 0 <= nsec < 1_000_000_000:
        raise SyscallError(EINVAL)
    return sec + nsec / 1e9


def write_timespec_ns(p: Process, addr: int, ns: int) -> None:
    p.mem.write(addr, TIMESPEC.pack(ns // 1_000_000_000, ns % 1_000_000_000))


def blocking(p: Process, f: OpenFile, attempt: Callable[[], int], what: str) -> int | Wait:
    """Run `attempt`; if the file would block, wait for it (or EAGAIN when non-blocking)."""
    try:
        return attempt()
    except WouldBlock as wb:
        if f.flags & O_NONBLOCK:
            return -EAGAIN

        def poll() -> int | None:
            try:
                return attempt()
            except WouldBlock:
                return None

        return Wait(poll, rfds=wb.rfds, wfds=wb.wfds, what=what)


def virt_stat(p: Process, r: Resolved) -> StatLike:
    now = time.time_ns()
    kind = r.virt[0] if r.virt else "file"
    mode = {"dir": st.S_IFDIR | 0o555, "link": st.S_IFLNK | 0o777}.get(kind, st.S_IFREG | 0o444)
    return StatLike(
        st_dev=4, st_ino=hash(r.guest) & 0xFFFFFF, st_mode=mode, st_nlink=2 if kind == "dir" else 1,
        st_uid=os.getuid(), st_gid=os.getgid(), st_atime_ns=now, st_mtime_ns=now, st_ctime_ns=now,
    )  # fmt: skip


def stat_resolved(p: Process, r: Resolved) -> StatLike:
    if not r.exists:
        raise SyscallError(ENOENT)
    if r.host is None:
        return virt_stat(p, r)
    s = r.lstat if r.lstat is not None else os.lstat(r.host)
    return StatLike.from_host(s)


# ---- files -------------------------------------------------------------------------------
@syscall("read")
def sys_read(p: Process, t: Thread, fd: int, buf: int, count: int, *_: int) -> int | Wait:
    f = get_fd(p, fd)
    if not f.readable:
        raise SyscallError(EBADF)
    count = min(count, MAX_IO)
    if count == 0:
        return 0
    check_writable(p, buf, count)

    def attempt() -> int:
        data = f.read(count)
        p.mem.write(buf, data)
        return len(data)

    return blocking(p, f, attempt, "read")


def _write_to(p: Process, t: Thread, f: OpenFile, data: bytes) -> int:
    try:
        return f.write(data)
    except SyscallError as e:
        if e.errno == EPIPE:
            p.send_signal(S.SIGPIPE, S.siginfo(S.SIGPIPE, S.SI_USER, pid=p.pid), t)
        raise


@syscall("write")
def sys_write(p: Process, t: Thread, fd: int, buf: int, count: int, *_: int) -> int | Wait:
    f = get_fd(p, fd)
    if not f.writable:
        raise SyscallError(EBADF)
    data = p.mem.read(buf, min(count, MAX_IO))
    if not data:
        return 0
    return blocking(p, f, lambda: _write_to(p, t, f, data), "write")


def _iovecs(p: Process, iov: int, cnt: int) -> list[tuple[int, int]]:
    cnt = s32(cnt)
    if cnt < 0 or cnt > IOV_MAX:
        raise SyscallError(EINVAL)
    raw = p.mem.read(iov, cnt * 16)
    out = [IOVEC.unpack_from(raw, i * 16) for i in range(cnt)]
    if sum(n for _, n in out) >= 1 << 63:
        raise SyscallError(EINVAL)
    return out


@syscall("readv", "preadv")
def sys_readv(p: Process, t: Thread, fd: int, iov: int, cnt: int, off: int = 0, *_: int) -> int | Wait:
    positional = t.syscall_name == "preadv"
    f = get_fd(p, fd)
    if not f.readable:
        raise SyscallError(EBADF)
    vecs = _iovecs(p, iov, cnt)
    total = min(sum(n for _, n in vecs), MAX_IO)
    for base, n in vecs:
        check_writable(p, base, n)
    if total == 0:
        return 0

    def attempt() -> int:
        data = f.pread(total, s64(off)) if positional else f.read(total)
        pos = 0
        for base, n in vecs:
            chunk = data[pos : pos + n]
            p.mem.write(base, chunk)
            pos += len(chunk)
            if pos >= len(data):
                break
        return len(data)

    return blocking(p, f, attempt, "readv")


@syscall("writev", "pwritev")
def sys_writev(p: Process, t: Thread, fd: int, iov: int, cnt: int, off: int = 0, *_: int) -> int | Wait:
    f = get_fd(p, fd)
    if not f.writable:
        raise SyscallError(EBADF)
    parts, total = [], 0
    for base, n in _iovecs(p, iov, cnt):
        if total >= MAX_IO:
            break
        n = min(n, MAX_IO - total)  # never read more guest memory than one call may write
        parts.append(p.mem.read(base, n))
        total += n
    data = b"".join(parts)
    if not data:
        return 0
    if t.syscall_name == "pwritev":
        return f.pwrite(data, s64(off))
    return blocking(p, f, lambda: _write_to(p, t, f, data), "writev")


@syscall("pread64")
def sys_pread64(p: Process, t: Thread, fd: int, buf: int, count: int, off: int, *_: int) -> int:
    f = get_fd(p, fd)
    if not f.readable:
        raise SyscallError(EBADF)
    if s64(off) < 0:
        raise SyscallError(EINVAL)
    count = min(count, MAX_IO)
    check_writable(p, buf, count)
    data = f.pread(count, off)
    p.mem.write(buf, data)
    return len(data)


@syscall("pwrite64")
def sys_pwrite64(p: Process, t: Thread, fd: int, buf: int, count: int, off: int, *_: int) -> int:
    f = get_fd(p, fd)
    if not f.writable:
        raise SyscallError(EBADF)
    if s64(off) < 0:
        raise SyscallError(EINVAL)
    return f.pwrite(p.mem.read(buf, min(count, MAX_IO)), off)


@syscall("lseek")
def sys_lseek(p: Process, t: Thread, fd: int, off: int, whence: int, *_: int) -> int:
    return get_fd(p, fd).lseek(s64(off), s32(whence))


def _host_open_flags(flags: int) -> int:
    acc = flags & O_ACCMODE
    h = {O_RDONLY: os.O_RDONLY, O_WRONLY: os.O_WRONLY, O_RDWR: os.O_RDWR}.get(acc, os.O_RDONLY)
    for g, name in (
        (O_CREAT, "O_CREAT"), (O_EXCL, "O_EXCL"), (O_NOCTTY, "O_NOCTTY"), (O_TRUNC, "O_TRUNC"),
        (O_APPEND, "O_APPEND"), (O_NONBLOCK, "O_NONBLOCK"), (O_DIRECTORY, "O_DIRECTORY"),
        (O_DSYNC, "O_DSYNC"), (O_PATH, "O_PATH"), (O_NOATIME, "O_NOATIME"),
    ):  # fmt: skip
        if flags & g == g:
            h |= getattr(os, name, 0)
    if flags & O_SYNC == O_SYNC:
        h |= getattr(os, "O_SYNC", 0)
    return h | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def open_resolved(p: Process, r: Resolved, flags: int, mode: int) -> OpenFile:
    acc = flags & O_ACCMODE
    if r.virt is not None:
        kind = r.virt[0]
        if kind == "link":
            raise SyscallError(ELOOP)
        if acc != O_RDONLY or flags & O_CREAT:
            raise SyscallError(EACCES if kind == "file" else EISDIR)
        if kind == "dir":
            return VirtualDir(r.guest, list(r.virt[1]), flags)
        if flags & O_DIRECTORY:
            raise SyscallError(ENOTDIR)
        return VirtualFile(r.guest, r.virt[1]())
    if r.host is None:
        raise SyscallError(ENOENT)
    created = False
    if not r.exists:
        if not flags & O_CREAT:
            raise SyscallError(ENOENT)
        created = True
    elif flags & O_CREAT and flags & O_EXCL:
        raise SyscallError(EEXIST)
    if r.lstat is not None and st.S_ISLNK(r.lstat.st_mode):
        if not flags & O_PATH:
            raise SyscallError(ELOOP)
    perm = mode & 0o7777 & ~p.umask
    try:
        hfd = os.open(r.host, _host_open_flags(flags), perm)
    except OSError as e:
        raise SyscallError(from_host(e)) from None
    if created:
        try:
            if os.fstat(hfd).st_mode & 0o7777 != perm:
                os.fchmod(hfd, perm)
        except OSError:
            pass
    return HostFile(hfd, r.guest, flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC | O_NOCTTY))


@syscall("openat")
def sys_openat(p: Process, t: Thread, dirfd: int, path: int, flags: int, mode: int, *_: int) -> int:
    name = read_path(p, path)
    flags &= 0xFFFFFFFF
    r = resolve_at(p, dirfd, name, follow=not flags & O_NOFOLLOW)
    f = open_resolved(p, r, flags, mode)
    try:
        return p.install_fd(f, cloexec=bool(flags & O_CLOEXEC))
    except SyscallError:
        f.close()
        raise


@syscall("close")
def sys_close(p: Process, t: Thread, fd: int, *_: int) -> int:
    if not p.close_fd(s32(fd)):
        raise SyscallError(EBADF)
    return 0


@syscall("close_range")
def sys_close_range(p: Process, t: Thread, first: int, last: int, flags: int, *_: int) -> int:
    for fd in [fd for fd in p.fds if first <= fd <= last]:
        if flags & 4:  # CLOSE_RANGE_CLOEXEC
            p.cloexec.add(fd)
        else:
            p.close_fd(fd)
    return 0


@syscall("dup")
def sys_dup(p: Process, t: Thread, fd: int, *_: int) -> int:
    return p.install_fd(get_fd(p, fd))


@syscall("dup3")
def sys_dup3(p: Process, t: Thread, old: int, new: int, flags: int, *_: int) -> int:
    old, new = s32(old), s32(new)
    f = get_fd(p, old)
    if old == new or flags & ~O_CLOEXEC:
        raise SyscallError(EINVAL)
    if new < 0 or new >= p.nofile():
        raise SyscallError(EBADF)
    return p.install_fd(f, new, cloexec=bool(flags & O_CLOEXEC))


F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_GETLK, F_SETLK, F_SETLKW = 0, 1, 2, 3, 4, 5, 6, 7
F_SETOWN, F_GETOWN, F_DUPFD_CLOEXEC, F_SETPIPE_SZ, F_GETPIPE_SZ = 8, 9, 1030, 1031, 1032


@syscall("fcntl")
def sys_fcntl(p: Process, t: Thread, fd: int, cmd: int, arg: int, *_: int) -> int:
    fd = s32(fd)
    f = get_fd(p, fd)
    cmd = s32(cmd)
    if cmd in (F_DUPFD, F_DUPFD_CLOEXEC):
        if s64(arg) < 0 or arg >= p.nofile():
            raise SyscallError(EINVAL)
        return p.install_fd(f, minfd=arg, cloexec=cmd == F_DUPFD_CLOEXEC)
    if cmd == F_GETFD:
        return 1 if fd in p.cloexec else 0
    if cmd == F_SETFD:
        if arg & 1:
            p.cloexec.add(fd)
        else:
            p.cloexec.discard(fd)
        return 0
    if cmd == F_GETFL:
        return f.flags & ~O_CLOEXEC
    if cmd == F_SETFL:
        changeable = O_APPEND | O_NONBLOCK | O_DIRECT | O_NOATIME
        f.flags = (f.flags & ~changeable) | (arg & changeable)
        if isinstance(f, HostFile):
            import fcntl as hfcntl

            try:
                hf = hfcntl.fcntl(f.fd, hfcntl.F_GETFL)
                hf = (hf | os.O_APPEND) if arg & O_APPEND else (hf & ~os.O_APPEND)
                hfcntl.fcntl(f.fd, hfcntl.F_SETFL, hf)
            except OSError:
                pass
        return 0
    if cmd in (F_SETLK, F_SETLKW):
        return 0  # one process: advisory record locks always succeed
    if cmd == F_GETLK:
        p.mem.write(arg, struct.pack("<h", 2))  # F_UNLCK
        return 0
    if cmd == F_GETOWN:
        return 0
    if cmd == F_SETOWN:
        return 0
    if cmd in (F_GETPIPE_SZ, F_SETPIPE_SZ):
        if isinstance(f, HostPipe):
            import fcntl as hfcntl

            try:
                if cmd == F_SETPIPE_SZ:
                    return hfcntl.fcntl(f.fd, F_SETPIPE_SZ, arg & 0x7FFFFFFF)
                return hfcntl.fcntl(f.fd, F_GETPIPE_SZ)
            except OSError as e:
                if e.errno not in (22, 25) or cmd == F_SETPIPE_SZ:
                    raise
                return 65536
        raise SyscallError(EINVAL)
    raise SyscallError(EINVAL)


@syscall("ioctl")
def sys_ioctl(p: Process, t: Thread, fd: int, req: int, arg: int, *_: int) -> int:
    fd = s32(fd)
    f = get_fd(p, fd)
    req &= 0xFFFFFFFF
    if req == FIOCLEX:
        p.cloexec.add(fd)
        return 0
    if req == FIONCLEX:
        p.cloexec.discard(fd)
        return 0
    if req == FIONBIO:
        on = p.mem.read_u(arg, 4)
        f.flags = (f.flags | O_NONBLOCK) if on else (f.flags & ~O_NONBLOCK)
        return 0
    inp = None
    if req in (TCSETS, TCSETSW, TCSETSF):
        inp = p.mem.read(arg, TERMIOS_SIZE)
    elif req == TIOCSWINSZ:
        inp = p.mem.read(arg, 8)
    elif req == TIOCSPGRP:
        inp = p.mem.read(arg, 4)
    res, out = f.ioctl(req, inp)
    if out is not None:
        p.mem.write(arg, out)
    return res


@syscall("fstat")
def sys_fstat(p: Process, t: Thread, fd: int, buf: int, *_: int) -> int:
    p.mem.write(buf, p.abi.pack_stat(get_fd(p, fd).stat()))
    return 0


def _stat_at(p: Process, dirfd: int, path: int, flags: int) -> StatLike:
    name = read_path(p, path)
    if not name and flags & AT_EMPTY_PATH:
        if s32(dirfd) == AT_FDCWD:
            return stat_resolved(p, p.vfs.resolve(".", p.cwd))
        return get_fd(p, dirfd).stat()
    r = resolve_at(p, dirfd, name, follow=not flags & AT_SYMLINK_NOFOLLOW)
    return stat_resolved(p, r)


@syscall("newfstatat")
def sys_newfstatat(p: Process, t: Thread, dirfd: int, path: int, buf: int, flags: int, *_: int) -> int:
    p.mem.write(buf, p.abi.pack_stat(_stat_at(p, dirfd, path, flags)))
    return 0


@syscall("statx")
def sys_statx(p: Process, t: Thread, dirfd: int, path: int, flags: int, mask: int, buf: int, *_: int) -> int:
    check_writable(p, buf, 256)
    p.mem.write(buf, pack_statx(_stat_at(p, dirfd, path, flags)))
    return 0


@syscall("getdents64")
def sys_getdents64(p: Process, t: Thread, fd: int, buf: int, count: int, *_: int) -> int:
    f = get_fd(p, fd)
    count = min(count, MAX_IO)
    check_writable(p, buf, count)
    data = getdents64(f, count)
    p.mem.write(buf, data)
    return len(data)


@syscall("readlinkat")
def sys_readlinkat(p: Process, t: Thread, dirfd: int, path: int, buf: int, size: int, *_: int) -> int:
    size = s32(size)
    if size <= 0:
        raise SyscallError(EINVAL)
    r = resolve_at(p, dirfd, read_path(p, path), follow=False)
    if not r.exists:
        raise SyscallError(ENOENT)
    if r.virt is not None:
        if r.virt[0] != "link":
            raise SyscallError(EINVAL)
        target = os.fsencode(r.virt[1])
    else:
        assert r.host is not None
        target = os.fsencode(os.readlink(r.host))
    target = target[:size]
    p.mem.write(buf, target)
    return len(target)


def _host_of(r: Resolved) -> str:
    if r.host is None:
        raise SyscallError(EPERM if r.exists else ENOENT)
    return r.host


@syscall("unlinkat")
def sys_unlinkat(p: Process, t: Thread, dirfd: int, path: int, flags: int, *_: int) -> int:
    r = resolve_at(p, dirfd, read_path(p, path), follow=False)
    host = _host_of(r)
    if not r.exists:
        raise SyscallError(ENOENT)
    if flags & AT_REMOVEDIR:
        os.rmdir(host)
    else:
        if r.lstat is not None and st.S_ISDIR(r.lstat.st_mode):
            raise SyscallError(EISDIR)
        os.unlink(host)
    return 0


@syscall("mkdirat")
def sys_mkdirat(p: Process, t: Thread, dirfd: int, path: int, mode: int, *_: int) -> int:
    r = resolve_at(p, dirfd, read_path(p, path).rstrip("/") or "/", follow=False)
    if r.exists:
        raise SyscallError(EEXIST)
    os.mkdir(_host_of(r), mode & 0o7777 & ~p.umask)
    return 0


@syscall("renameat2", "renameat")
def sys_renameat2(
    p: Process, t: Thread, odir: int, opath: int, ndir: int, npath: int, flags: int = 0, *_: int
) -> int:
    if t.syscall_name == "renameat":
        flags = 0
    if flags & ~1:
        raise SyscallError(EINVAL)  # RENAME_EXCHANGE and RENAME_WHITEOUT are not supported
    src = resolve_at(p, odir, read_path(p, opath), follow=False)
    dst = resolve_at(p, ndir, read_path(p, npath), follow=False)
    if not src.exists:
        raise SyscallError(ENOENT)
    if flags & 1 and dst.exists:
        raise SyscallError(EEXIST)
    os.rename(_host_of(src), _host_of(dst))
    return 0


@syscall("symlinkat")
def sys_symlinkat(p: Process, t: Thread, target: int, dirfd: int, path: int, *_: int) -> int:
    tgt = read_path(p, target)
    r = resolve_at(p, dirfd, read_path(p, path), follow=False)
    if r.exists:
        raise SyscallError(EEXIST)
    os.symlink(tgt, _host_of(r))
    return 0


@syscall("linkat")
def sys_linkat(
    p: Process, t: Thread, odir: int, opath: int, ndir: int, npath: int, flags: int, *_: int
) -> int:
    src = resolve_at(p, odir, read_path(p, opath), follow=bool(flags & AT_SYMLINK_FOLLOW))
    dst = resolve_at(p, ndir, read_path(p, npath), follow=False)
    if not src.exists:
        raise SyscallError(ENOENT)
    if dst.exists:
        raise SyscallError(EEXIST)
    os.link(_host_of(src), _host_of(dst), follow_symlinks=False)
    return 0


@syscall("faccessat", "faccessat2")
def sys_faccessat(p: Process, t: Thread, dirfd: int, path: int, mode: int, flags: int = 0, *_: int) -> int:
    if t.syscall_name == "faccessat":
        flags = 0
    if mode & ~7:
        raise SyscallError(EINVAL)
    r = resolve_at(p, dirfd, read_path(p, path), follow=not flags & AT_SYMLINK_NOFOLLOW)
    if not r.exists:
        raise SyscallError(ENOENT)
    if r.host is None:
        if mode & 2:
            raise SyscallError(EACCES)
        return 0
    if not os.access(r.host, mode, follow_symlinks=False):
        raise SyscallError(EACCES)
    return 0


@syscall("getcwd")
def sys_getcwd(p: Process, t: Thread, buf: int, size: int, *_: int) -> int:
    data = os.fsencode(p.cwd) + b"\0"
    if size < len(data):
        raise SyscallError(ERANGE)
    p.mem.write(buf, data)
    return len(data)


@syscall("chdir")
def sys_chdir(p: Process, t: Thread, path: int, *_: int) -> int:
    r = p.vfs.resolve(read_path(p, path), p.cwd)
    if not st.S_ISDIR(stat_resolved(p, r).st_mode):
        raise SyscallError(ENOTDIR)
    if r.host is not None and not os.access(r.host, os.X_OK):
        raise SyscallError(EACCES)
    p.cwd = r.guest
    return 0


@syscall("fchdir")
def sys_fchdir(p: Process, t: Thread, fd: int, *_: int) -> int:
    f = get_fd(p, fd)
    if not f.is_dir:
        raise SyscallError(ENOTDIR)
    p.cwd = f.path
    return 0


@syscall("pipe2")
def sys_pipe2(p: Process, t: Thread, fds: int, flags: int, *_: int) -> int:
    if flags & ~(O_CLOEXEC | O_NONBLOCK | O_DIRECT):
        raise SyscallError(EINVAL)
    check_writable(p, fds, 8)
    # Host pipes, so that a fork's two processes share them (the data goes through the host).
    rend, wend = host_pipe(flags)
    try:
        r = p.install_fd(rend, cloexec=bool(flags & O_CLOEXEC))
    except SyscallError:
        rend.close()
        wend.close()
        raise
    try:
        w = p.install_fd(wend, cloexec=bool(flags & O_CLOEXEC))
    except SyscallError:
        p.close_fd(r)
        wend.close()
        raise
    p.mem.write(fds, struct.pack("<ii", r, w))
    return 0


@syscall("sendfile")
def sys_sendfile(
    p: Process, t: Thread, out_fd: int, in_fd: int, offp: int, count: int, *_: int
) -> int | Wait:
    fin, fout = get_fd(p, in_fd), get_fd(p, out_fd)
    if not fin.readable or not fout.writable:
        raise SyscallError(EBADF)
    count = min(count, MAX_IO)
    if offp:
        off = s64(p.mem.read_u(offp, 8))
        if off < 0:
            raise SyscallError(EINVAL)
        data = fin.pread(count, off)
        n = _write_to(p, t, fout, data) if data else 0
        p.mem.write_u(offp, 8, off + n)
        return n

    def attempt() -> int:
        data = fin.read(count)
        if not data:
            return 0
        n = _write_to(p, t, fout, data)
        if n < len(data) and isinstance(fin, HostFile) and fin.regular:
            fin.lseek(n - len(data), os.SEEK_CUR)
        return n

    return blocking(p, fin, attempt, "sendfile")


@syscall("ftruncate")
def sys_ftruncate(p: Process, t: Thread, fd: int, length: int, *_: int) -> int:
    f = get_fd(p, fd)
    if not isinstance(f, HostFile) or not f.writable or s64(length) < 0:
        raise SyscallError(EINVAL)
    os.ftruncate(f.fd, length)
    return 0


@syscall("truncate")
def sys_truncate(p: Process, t: Thread, path: int, length: int, *_: int) -> int:
    r = p.vfs.resolve(read_path(p, path), p.cwd)
    if not r.exists:
        raise SyscallError(ENOENT)
    os.truncate(_host_of(r), length)
    return 0


@syscall("fsync", "fdatasync")
def sys_fsync(p: Process, t: Thread, fd: int, *_: int) -> int:
    get_fd(p, fd)
    return 0


@syscall("sync", "syncfs", "flock", "fadvise64")
def sys_ok(p: Process, t: Thread, *_: int) -> int:
    return 0


@syscall("fchmod")
def sys_fchmod(p: Process, t: Thread, fd: int, mode: int, *_: int) -> int:
    f = get_fd(p, fd)
    if isinstance(f, HostFile):
        os.fchmod(f.fd, mode & 0o7777)
        return 0
    raise SyscallError(EPERM)


@syscall("fchmodat")
def sys_fchmodat(p: Process, t: Thread, dirfd: int, path: int, mode: int, *_: int) -> int:
    r = resolve_at(p, dirfd, read_path(p, path))
    if not r.exists:
        raise SyscallError(ENOENT)
    os.chmod(_host_of(r), mode & 0o7777)
    return 0


@syscall("fchownat", "fchown")
def sys_fchown(p: Process, t: Thread, *_: int) -> int:
    return 0  # ownership is the host user's; pretend it changed, as an unprivileged shell tool expects


@syscall("utimensat")
def sys_utimensat(p: Process, t: Thread, dirfd: int, path: int, times: int, flags: int, *_: int) -> int:
    if path == 0:
        f = get_fd(p, dirfd)
        if not isinstance(f, HostFile):
            raise SyscallError(EPERM)
        target: Any = f.fd
    else:
        r = resolve_at(p, dirfd, read_path(p, path), follow=not flags & AT_SYMLINK_NOFOLLOW)
        if not r.exists:
            raise SyscallError(ENOENT)
        target = _host_of(r)
    if times == 0:
        os.utime(target)
        return 0
    raw = p.mem.read(times, 32)
    now = time.time_ns()
    st_ = os.stat(target) if not isinstance(target, int) else os.fstat(target)
    out = []
    for i, cur in ((0, st_.st_atime_ns), (1, st_.st_mtime_ns)):
        sec, nsec = TIMESPEC.unpack_from(raw, i * 16)
        if nsec == (1 << 30) - 1:  # UTIME_NOW
            out.append(now)
        elif nsec == (1 << 30) - 2:  # UTIME_OMIT
            out.append(cur)
        else:
            out.append(sec * 1_000_000_000 + nsec)
    os.utime(target, ns=(out[0], out[1]))
    return 0


POLLIN, POLLPRI, POLLOUT, POLLERR, POLLHUP, POLLNVAL = 1, 2, 4, 8, 0x10, 0x20


def _poll_once(p: Process, entries: list[tuple[int, int]]) -> tuple[int, list[int], tuple[int, ...]]:
    count = 0
    revents = []
    hostfds: list[int] = []
    for fd, events in entries:
        if fd < 0:
            revents.append(0)
            continue
        f = p.fds.get(fd)
        if f is None:
            revents.append(POLLNVAL)
            count += 1
            continue
        r, w = f.ready()
        ev = 0
        if r and events & (POLLIN | POLLPRI):
            ev |= POLLIN
        if w and events & POLLOUT:
            ev |= POLLOUT
        if isinstance(f, HostPipe):
            _r, _w, hup, err = f.poll_events()
            ev |= (POLLHUP if hup else 0) | (POLLERR if err else 0)
        revents.append(ev)
        if ev:
            count += 1
        hf = f.host_fd()
        if hf is not None:
            hostfds.append(hf)
    return count, revents, tuple(hostfds)


@syscall("ppoll")
def sys_ppoll(
    p: Process, t: Thread, fds: int, nfds: int, tmo: int, sigmask: int, sigsetsize: int, *_: int
) -> int | Wait:
    if nfds > p.nofile():
        raise SyscallError(EINVAL)
    raw = p.mem.read(fds, nfds * 8)
    check_writable(p, fds, nfds * 8)
    entries = [
        (struct.unpack_from("<i", raw, i * 8)[0], struct.unpack_from("<h", raw, i * 8 + 4)[0])
        for i in range(nfds)
    ]
    timeout = read_timespec(p, tmo) if tmo else None

    def attempt() -> int | None:
        n, rev, _ = _poll_once(p, entries)
        if n == 0:
            return None
        for i, ev in enumerate(rev):
            p.mem.write(fds + i * 8 + 6, struct.pack("<h", ev))
        return n

    res = attempt()
    if res is not None:
        return res
    if timeout == 0:
        for i in range(nfds):
            p.mem.write(fds + i * 8 + 6, b"\0\0")
        return 0
    _, _, hostfds = _poll_once(p, entries)

    def on_timeout() -> None:
        for i in range(nfds):
            p.mem.write(fds + i * 8 + 6, b"\0\0")

    deadline = time.monotonic() + timeout if timeout is not None else None
    if sigmask:
        _wait_with_mask(p, t, sigmask, sigsetsize)
    return Wait(
        attempt, deadline=deadline, on_timeout=0, rfds=hostfds, restart=False, cancel=on_timeout, what="ppoll"
    )


def _wait_with_mask(p: Process, t: Thread, sigmask: int, size: int) -> None:
    """ppoll/pselect6: block with this signal mask while waiting (as rt_sigsuspend does)."""
    if size != 8:
        raise SyscallError(EINVAL)
    new = p.mem.read_u(sigmask, 8)
    t.saved_mask = t.mask
    t.mask = new & ~S.UNBLOCKABLE


@syscall("pselect6")
def sys_pselect6(
    p: Process, t: Thread, nfds: int, rp: int, wp: int, ep: int, tmo: int, sig: int = 0, *_: int
) -> int | Wait:
    nfds = s32(nfds)
    if nfds < 0 or nfds > p.nofile():
        raise SyscallError(EINVAL)
    nbytes = ((nfds + 63) // 64) * 8

    def bits(addr: int) -> int:
        return int.from_bytes(p.mem.read(addr, nbytes), "little") if addr and nbytes else 0

    rset, wset = bits(rp), bits(wp)
    if ep and nbytes:
        check_writable(p, ep, nbytes)
    entries = []
    for fd in range(nfds):
        ev = (POLLIN if rset >> fd & 1 else 0) | (POLLOUT if wset >> fd & 1 else 0)
        if ev:
            if fd not in p.fds:
                raise SyscallError(EBADF)
            entries.append((fd, ev))
    timeout = read_timespec(p, tmo) if tmo else None

    def store(rout: int, wout: int) -> None:
        for addr, v in ((rp, rout), (wp, wout), (ep, 0)):
            if addr and nbytes:
                p.mem.write(addr, v.to_bytes(nbytes, "little"))

    def attempt() -> int | None:
        _, rev, _ = _poll_once(p, entries)
        rout = wout = n = 0
        for (fd, ev), r in zip(entries, rev, strict=True):
            if ev & POLLIN and r & (POLLIN | POLLHUP | POLLERR):
                rout |= 1 << fd
                n += 1
            if ev & POLLOUT and r & (POLLOUT | POLLERR):
                wout |= 1 << fd
                n += 1
        if n == 0:
            return None
        store(rout, wout)
        return n

    res = attempt()
    if res is not None:
        return res
    if timeout == 0:
        store(0, 0)
        return 0
    _, _, hostfds = _poll_once(p, entries)
    deadline = time.monotonic() + timeout if timeout is not None else None
    if sig:
        ss, ss_len = struct.unpack("<QQ", p.mem.read(sig, 16))  # { const sigset_t *ss; size_t len; }
        if ss:
            _wait_with_mask(p, t, ss, ss_len)
    return Wait(
        attempt,
        deadline=deadline,
        on_timeout=0,
        rfds=hostfds,
        restart=False,
        cancel=lambda: store(0, 0),
        what="pselect6",
    )


# ---- memory ------------------------------------------------------------------------------
@syscall("brk")
def sys_brk(p: Process, t: Thread, addr: int, *_: int) -> int:
    mm = p.mm
    if addr < mm.brk_start:
        return mm.brk
    new_top, old_top = page_align_up(addr), page_align_up(mm.brk)
    if new_top > old_top:
        if mm.overlaps(old_top, new_top) or new_top - mm.brk_start > 1 << 32:
            return mm.brk
        mm.map(Vma(old_top, new_top, PROT_READ | PROT_WRITE, name="[heap]"))
    elif new_top < old_top:
        mm.unmap(new_top, old_top)
    mm.brk = addr
    return addr


MAP_TYPE = 0x0F
# AddressSpace pages in on demand (big mappings are host mmaps), so a large mapping costs only
# what the guest touches; this bounds a single accessible mapping at a host-friendly size.
MAX_EAGER_MAP = 64 << 30
TASK_LIMIT = TASK_SIZE


@syscall("mmap")
def sys_mmap(p: Process, t: Thread, addr: int, length: int, prot: int, flags: int, fd: int, off: int) -> int:
    mm = p.mm
    if length == 0 or off & PAGE_MASK or prot & ~7:
        raise SyscallError(EINVAL)
    size = page_align_up(length)
    if size >= TASK_LIMIT or (prot and size > MAX_EAGER_MAP):
        raise SyscallError(ENOMEM)
    typ = flags & MAP_TYPE
    if typ not in (MAP_SHARED, MAP_PRIVATE, 3):
        raise SyscallError(EINVAL)
    if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
        if addr & PAGE_MASK:
            raise SyscallError(EINVAL)
        if addr + size > TASK_LIMIT or addr < mm.min_addr:
            raise SyscallError(ENOMEM if addr else EPERM)
        if flags & MAP_FIXED_NOREPLACE and not flags & MAP_FIXED and mm.overlaps(addr, addr + size):
            raise SyscallError(EEXIST)
        start = addr
    else:
        found = mm.find_free(size, addr & ~PAGE_MASK)
        if found is None:
            raise SyscallError(ENOMEM)
        start = found
    data = None
    name, dev, ino, host_path = "", 0, 0, None
    if not flags & MAP_ANONYMOUS:
        f = get_fd(p, fd)
        if not isinstance(f, HostFile) or not f.regular:
            if isinstance(f, VirtualFile):
                data = f.data[off : off + length]
            else:
                raise SyscallError(ENODEV if not isinstance(f, HostFile) or not f.directory else ENODEV)
        else:
            if not f.readable:
                raise SyscallError(EACCES)
            if typ != MAP_PRIVATE and prot & PROT_WRITE and not f.writable:
                raise SyscallError(EACCES)
            s = os.fstat(f.fd)
            # Only what the file holds: the rest of the mapping reads as zero pages.
            data = os.pread(f.fd, max(0, min(length, s.st_size - off)), off) if s.st_size > off else b""
            dev, ino, host_path = s.st_dev, s.st_ino, None
            try:
                host_path = os.readlink(f"/proc/self/fd/{f.fd}")
            except OSError:
                host_path = None
        name = f.path
    # MAP_SHARED file mappings are private copies: stores are not written back to the file.
    vma = Vma(
        start,
        start + size,
        prot,
        (flags & (MAP_SHARED | MAP_PRIVATE | MAP_ANONYMOUS)),
        name,
        off,
        dev,
        ino,
        host_path,
    )
    mm.map(vma, data or None)
    return start


@syscall("munmap")
def sys_munmap(p: Process, t: Thread, addr: int, length: int, *_: int) -> int:
    if addr & PAGE_MASK or length == 0 or addr + length > TASK_LIMIT:
        raise SyscallError(EINVAL)
    p.mm.unmap(addr, addr + page_align_up(length))
    return 0


@syscall("mprotect", "pkey_mprotect")
def sys_mprotect(p: Process, t: Thread, addr: int, length: int, prot: int, *_: int) -> int:
    if addr & PAGE_MASK or prot & ~7:
        raise SyscallError(EINVAL)
    end = addr + page_align_up(length)
    if end > TASK_LIMIT:
        raise SyscallError(ENOMEM)
    if length == 0:
        return 0
    if not p.mm.covered(addr, end) or (prot and end - addr > MAX_EAGER_MAP):
        raise SyscallError(ENOMEM)
    p.mm.protect(addr, end, prot)
    return 0


MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP = 1, 2, 4


@syscall("mremap")
def sys_mremap(
    p: Process, t: Thread, old: int, old_size: int, new_size: int, flags: int, new_addr: int, *_: int
) -> int:
    mm, mem = p.mm, p.mem
    if old & PAGE_MASK or flags & ~7 or (flags & MREMAP_FIXED and not flags & MREMAP_MAYMOVE):
        raise SyscallError(EINVAL)
    old_size, new_size = page_align_up(old_size), page_align_up(new_size)
    if new_size == 0 or new_size >= TASK_LIMIT:
        raise SyscallError(EINVAL)
    if new_size > MAX_EAGER_MAP:
        raise SyscallError(ENOMEM)
    vma = mm.find(old)
    if vma is None or old + old_size > vma.end:
        raise SyscallError(EFAULT)
    if not flags & MREMAP_FIXED:
        if new_size <= old_size:
            if new_size < old_size:
                mm.unmap(old + new_size, old + old_size)
            return old
        if old + new_size <= TASK_LIMIT and not mm.overlaps(old + old_size, old + new_size):
            mm.map(
                Vma(
                    old + old_size,
                    old + new_size,
                    vma.prot,
                    vma.flags,
                    vma.name,
                    vma.offset + old_size,
                    vma.dev,
                    vma.ino,
                )
            )
            return old
        if not flags & MREMAP_MAYMOVE:
            raise SyscallError(ENOMEM)
        dest = mm.find_free(new_size)
        if dest is None:
            raise SyscallError(ENOMEM)
    else:
        dest = new_addr
        if (
            dest & PAGE_MASK
            or dest + new_size > TASK_LIMIT
            or (dest < old + old_size and old < dest + new_size)
        ):
            raise SyscallError(EINVAL)
    pages = []
    for i in range(min(old_size, new_size) >> PAGE_SHIFT):
        a = old + (i << PAGE_SHIFT)
        pages.append(mem.read_raw(a, PAGE_SIZE) if mem.prot_at(a) is not None else None)
    mm.unmap(dest, dest + new_size)
    new = Vma(
        dest, dest + new_size, vma.prot, vma.flags, vma.name, vma.offset, vma.dev, vma.ino, vma.host_path
    )
    mm.map(new)
    for i, page in enumerate(pages):
        if page is not None:
            a = dest + (i << PAGE_SHIFT)
            if mem.prot_at(a) is None:
                mem.map(a, PAGE_SIZE, vma.prot)
            mem.write_raw(a, page)
    if not flags & MREMAP_DONTUNMAP:
        mm.unmap(old, old + old_size)
    return dest


MADV_DONTNEED, MADV_FREE = 4, 8


@syscall("madvise")
def sys_madvise(p: Process, t: Thread, addr: int, length: int, advice: int, *_: int) -> int:
    if addr & PAGE_MASK:
        raise SyscallError(EINVAL)
    end = addr + page_align_up(length)
    if advice in (MADV_DONTNEED, MADV_FREE):
        if not p.mm.covered(addr, end):
            raise SyscallError(ENOMEM)
        mem = p.mem
        for vma in [v for v in p.mm.vmas if v.start < end and addr < v.end]:
            lo, hi = max(vma.start, addr), min(vma.end, end)
            if vma.host_path and not vma.flags & MAP_ANONYMOUS:
                # A private file mapping goes back to the file's contents.
                for a in range(lo, hi, PAGE_SIZE):
                    if mem.prot_at(a) is None:
                        continue
                    data = bytes(PAGE_SIZE)
                    try:
                        with open(vma.host_path, "rb") as fh:
                            fh.seek(vma.offset + (a - vma.start))
                            data = fh.read(PAGE_SIZE).ljust(PAGE_SIZE, b"\0")
                    except OSError:
                        pass
                    mem.write_raw(a, data)
                continue
            # Anonymous memory: fresh zero pages, which cost nothing until touched again.
            for s_, e_, prot in mem.regions():
                s_, e_ = max(s_, lo), min(e_, hi)
                if s_ < e_:
                    mem.map(s_, e_ - s_, prot)
    return 0


@syscall("msync", "mlock", "munlock", "mlockall", "munlockall", "mlock2")
def sys_mem_ok(p: Process, t: Thread, *_: int) -> int:
    return 0


# ---- time --------------------------------------------------------------------------------
CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID = 0, 1, 2, 3
CLOCK_MONOTONIC_RAW, CLOCK_REALTIME_COARSE, CLOCK_MONOTONIC_COARSE, CLOCK_BOOTTIME, CLOCK_TAI = 4, 5, 6, 7, 11


def clock_ns(p: Process, clk: int) -> int:
    clk = s32(clk)
    if clk in (CLOCK_REALTIME, CLOCK_REALTIME_COARSE, CLOCK_TAI, 8):
        return time.time_ns()
    if clk in (CLOCK_MONOTONIC, CLOCK_MONOTONIC_RAW, CLOCK_MONOTONIC_COARSE):
        return time.monotonic_ns()
    if clk in (CLOCK_BOOTTIME, 9):
        try:
            return time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        except (AttributeError, OSError):
            return time.monotonic_ns()
    if clk in (CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID) or clk < 0:
        return int(p.cpu_time * 1e9)
    raise SyscallError(EINVAL)


@syscall("clock_gettime")
def sys_clock_gettime(p: Process, t: Thread, clk: int, tp: int, *_: int) -> int:
    write_timespec_ns(p, tp, clock_ns(p, clk))
    return 0


@syscall("clock_getres")
def sys_clock_getres(p: Process, t: Thread, clk: int, tp: int, *_: int) -> int:
    clock_ns(p, clk)
    if tp:
        coarse = s32(clk) in (CLOCK_REALTIME_COARSE, CLOCK_MONOTONIC_COARSE)
        write_timespec_ns(p, tp, 4_000_000 if coarse else 1)
    return 0


@syscall("gettimeofday")
def sys_gettimeofday(p: Process, t: Thread, tv: int, tz: int, *_: int) -> int:
    ns = time.time_ns()
    if tv:
        p.mem.write(tv, TIMESPEC.pack(ns // 1_000_000_000, (ns // 1000) % 1_000_000))
    if tz:
        p.mem.write(tz, bytes(8))
    return 0


def _sleep(p: Process, deadline: float, rem: int) -> int | Wait:
    if time.monotonic() >= deadline:
        return 0

    def cancel() -> None:
        if rem:
            left = max(0.0, deadline - time.monotonic())
            try:
                write_timespec_ns(p, rem, int(left * 1e9))
            except MemoryFault:
                pass

    return Wait(lambda: None, deadline=deadline, on_timeout=0, restart=False, cancel=cancel, what="sleep")


@syscall("nanosleep")
def sys_nanosleep(p: Process, t: Thread, req: int, rem: int, *_: int) -> int | Wait:
    dur = read_timespec(p, req)
    t.yield_now = True
    return _sleep(p, time.monotonic() + dur, rem)


@syscall("clock_nanosleep")
def sys_clock_nanosleep(
    p: Process, t: Thread, clk: int, flags: int, req: int, rem: int, *_: int
) -> int | Wait:
    now_clk = clock_ns(p, clk)
    if s32(clk) in (CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID):
        raise SyscallError(EINVAL)
    val = read_timespec(p, req)
    t.yield_now = True
    if flags & 1:  # TIMER_ABSTIME
        return _sleep(p, time.monotonic() + (val - now_clk / 1e9), 0)
    return _sleep(p, time.monotonic() + val, rem)


@syscall("times")
def sys_times(p: Process, t: Thread, buf: int, *_: int) -> int:
    ticks = int(p.cpu_time * 100)
    if buf:
        p.mem.write(buf, struct.pack("<4q", ticks, 0, 0, 0))
    return int(time.monotonic() * 100) & 0x7FFFFFFFFFFFFFFF


# ---- process -----------------------------------------------------------------------------
@syscall("getpid")
def sys_getpid(p: Process, t: Thread, *_: int) -> int:
    return p.pid


@syscall("gettid")
def sys_gettid(p: Process, t: Thread, *_: int) -> int:
    return t.tid


@syscall("getppid")
def sys_getppid(p: Process, t: Thread, *_: int) -> int:
    return p.ppid


@syscall("getuid")
def sys_getuid(p: Process, t: Thread, *_: int) -> int:
    return os.getuid()


@syscall("geteuid")
def sys_geteuid(p: Process, t: Thread, *_: int) -> int:
    return os.geteuid()


@syscall("getgid")
def sys_getgid(p: Process, t: Thread, *_: int) -> int:
    return os.getgid()


@syscall("getegid")
def sys_getegid(p: Process, t: Thread, *_: int) -> int:
    return os.getegid()


@syscall("getresuid", "getresgid")
def sys_getresuid(p: Process, t: Thread, a: int, b: int, c: int, *_: int) -> int:
    ids = os.getresuid() if t.syscall_name == "getresuid" else os.getresgid()
    for addr, v in zip((a, b, c), ids, strict=True):
        p.mem.write_u(addr, 4, v)
    return 0


@syscall("setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setfsuid", "setfsgid")
def sys_setid(p: Process, t: Thread, *args: int) -> int:
    mine = os.getuid() if "uid" in t.syscall_name else os.getgid()
    n = {"setuid": 1, "setgid": 1, "setfsuid": 1, "setfsgid": 1, "setreuid": 2, "setregid": 2}.get(
        t.syscall_name, 3
    )
    if all(s32(a) in (-1, mine) for a in args[:n]):
        return mine if t.syscall_name.startswith("setfs") else 0
    raise SyscallError(EPERM)


@syscall("getgroups")
def sys_getgroups(p: Process, t: Thread, size: int, lst: int, *_: int) -> int:
    groups = os.getgroups()
    size = s32(size)
    if size == 0:
        return len(groups)
    if size < len(groups):
        raise SyscallError(EINVAL)
    p.mem.write(lst, struct.pack(f"<{len(groups)}I", *groups))
    return len(groups)


@syscall("getpgid", "getsid")
def sys_getpgid(p: Process, t: Thread, pid: int, *_: int) -> int:
    pid = s32(pid)
    if pid not in (0, p.pid):
        raise SyscallError(ESRCH)
    return os.getpgid(0) if t.syscall_name == "getpgid" else os.getsid(0)


@syscall("setpgid")
def sys_setpgid(p: Process, t: Thread, *_: int) -> int:
    return 0


@syscall("setsid")
def sys_setsid(p: Process, t: Thread, *_: int) -> int:
    raise SyscallError(EPERM)


@syscall("uname")
def sys_uname(p: Process, t: Thread, buf: int, *_: int) -> int:
    u = os.uname()
    p.mem.write(buf, pack_utsname(["Linux", u.nodename, u.release, u.version, p.abi.uname_machine, "(none)"]))
    return 0


@syscall("sysinfo")
def sys_sysinfo(p: Process, t: Thread, buf: int, *_: int) -> int:
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        total, free = 1 << 32, 1 << 31
    try:
        uptime = int(time.clock_gettime(time.CLOCK_BOOTTIME))
        loads = [int(x * 65536) for x in os.getloadavg()]
    except (AttributeError, OSError):
        uptime, loads = int(time.monotonic()), [0, 0, 0]
    p.mem.write(buf, SYSINFO.pack(uptime, *loads, total, free, 0, 0, 0, 0, 1, 0, 0, 1))
    return 0


RLIMIT_STACK, RLIMIT_CORE, RLIMIT_NOFILE = 3, 4, 7
_RLIM_DEFAULTS = {
    RLIMIT_STACK: (8 << 20, RLIM_INFINITY),
    RLIMIT_CORE: (0, RLIM_INFINITY),
    RLIMIT_NOFILE: (1024, 4096),
}


@syscall("prlimit64")
def sys_prlimit64(p: Process, t: Thread, pid: int, res: int, new: int, old: int, *_: int) -> int:
    if s32(pid) not in (0, p.pid):
        raise SyscallError(ESRCH)
    if res >= 16:
        raise SyscallError(EINVAL)
    cur = p.rlimits.get(res) or _RLIM_DEFAULTS.get(res, (RLIM_INFINITY, RLIM_INFINITY))
    newval = None
    if new:
        newval = struct.unpack("<QQ", p.mem.read(new, 16))
        if newval[0] > newval[1]:
            raise SyscallError(EINVAL)
        if newval[1] > cur[1]:
            raise SyscallError(EPERM)
    if old:
        p.mem.write(old, struct.pack("<QQ", *cur))
    if newval is not None:
        p.rlimits[res] = (min(newval[0], 1 << 20) if res == RLIMIT_NOFILE else newval[0], newval[1])
    return 0


@syscall("getrlimit")
def sys_getrlimit(p: Process, t: Thread, res: int, old: int, *_: int) -> int:
    return sys_prlimit64(p, t, 0, res, 0, old)


@syscall("setrlimit")
def sys_setrlimit(p: Process, t: Thread, res: int, new: int, *_: int) -> int:
    return sys_prlimit64(p, t, 0, res, new, 0)


@syscall("getrusage")
def sys_getrusage(p: Process, t: Thread, who: int, buf: int, *_: int) -> int:
    who = s32(who)
    if who not in (0, -1, 1):
        raise SyscallError(EINVAL)
    out = bytearray(RUSAGE_SIZE)
    if who == -1:
        import resource

        out[:] = pack_rusage(resource.getrusage(resource.RUSAGE_CHILDREN))
    else:
        us = int(p.cpu_time * 1e6)
        struct.pack_into("<qq", out, 0, us // 1_000_000, us % 1_000_000)
        struct.pack_into("<q", out, 32, len(p.mem.mapped_pages()) * 4)  # ru_maxrss in KiB
    p.mem.write(buf, bytes(out))
    return 0


@syscall("umask")
def sys_umask(p: Process, t: Thread, mask: int, *_: int) -> int:
    old = p.umask
    p.umask = mask & 0o777
    return old


@syscall("exit")
def sys_exit(p: Process, t: Thread, status: int, *_: int) -> object:
    p.exit_thread(t, status & 0xFF)
    return NORESULT


@syscall("exit_group")
def sys_exit_group(p: Process, t: Thread, status: int, *_: int) -> object:
    p._finish(status & 0xFF)
    return NORESULT


@syscall("set_tid_address")
def sys_set_tid_address(p: Process, t: Thread, ptr: int, *_: int) -> int:
    t.clear_child_tid = ptr
    return t.tid


@syscall("set_robust_list")
def sys_set_robust_list(p: Process, t: Thread, head: int, length: int, *_: int) -> int:
    if length != 24:
        raise SyscallError(EINVAL)
    t.robust_list = (head, length)
    return 0


@syscall("getrandom")
def sys_getrandom(p: Process, t: Thread, buf: int, length: int, flags: int, *_: int) -> int:
    if flags & ~7:
        raise SyscallError(EINVAL)
    n = min(length, 1 << 25)
    check_writable(p, buf, n)
    p.mem.write(buf, os.urandom(n))
    return n


@syscall("sched_getaffinity")
def sys_sched_getaffinity(p: Process, t: Thread, pid: int, size: int, mask: int, *_: int) -> int:
    if s32(pid) != 0 and not p.find_thread(s32(pid)):
        raise SyscallError(ESRCH)
    if size < 8 or size & 7:
        raise SyscallError(EINVAL)
    ncpu = max(1, min(64, os.cpu_count() or 1))
    p.mem.write(mask, ((1 << ncpu) - 1).to_bytes(8, "little"))
    return 8


@syscall("sched_setaffinity", "sched_setscheduler", "sched_setparam", "setpriority")
def sys_sched_ok(p: Process, t: Thread, *_: int) -> int:
    return 0


@syscall("sched_getscheduler", "getpriority", "sched_getparam")
def sys_sched_zero(p: Process, t: Thread, *args: int) -> int:
    if t.syscall_name == "sched_getparam":
        p.mem.write(args[1], bytes(4))
    if t.syscall_name == "getpriority":
        return 20  # the kernel returns 20 - nice
    return 0


@syscall("sched_get_priority_max", "sched_get_priority_min")
def sys_sched_prio(p: Process, t: Thread, policy: int, *_: int) -> int:
    return 99 if policy in (1, 2) and t.syscall_name.endswith("max") else (1 if policy in (1, 2) else 0)


@syscall("sched_yield")
def sys_sched_yield(p: Process, t: Thread, *_: int) -> int:
    t.yield_now = True
    return 0


@syscall("getcpu")
def sys_getcpu(p: Process, t: Thread, cpu: int, node: int, *_: int) -> int:
    if cpu:
        p.mem.write_u(cpu, 4, 0)
    if node:
        p.mem.write_u(node, 4, 0)
    return 0


@syscall("riscv_hwprobe")
def sys_riscv_hwprobe(
    p: Process, t: Thread, pairs: int, count: int, cpusetsize: int, cpus: int, flags: int, *_: int
) -> int:
    if flags:
        raise SyscallError(EINVAL)
    for i in range(min(count, 4096)):
        addr = pairs + i * 16
        key = s64(p.mem.read_u(addr, 8))
        val = p.abi.hwprobe(key)
        p.mem.write(addr, struct.pack("<qQ", -1 if val is None else key, val or 0))
    return 0


@syscall("riscv_flush_icache", "membarrier")
def sys_flush_icache(p: Process, t: Thread, *_: int) -> int:
    return 0  # stores into code already drop stale translations


@syscall("rseq", "clone3", "io_uring_setup", "execveat")
def sys_enosys_quiet(p: Process, t: Thread, *_: int) -> int:
    # Asked by libcs at startup (rseq, clone3: they fall back): no warning, just ENOSYS.
    if t.syscall_name == "execveat":
        p.warn_unsupported(p.abi.numbers.get(t.syscall_name, -1), t.syscall_name)
    return -ENOSYS


def _read_strv(p: Process, addr: int) -> list[bytes]:
    out: list[bytes] = []
    total = 0
    while addr:
        ptr = p.mem.read_u(addr + 8 * len(out), 8)
        if ptr == 0:
            break
        s = p.mem.read_cstr(ptr, 128 * 1024)
        total += len(s) + 1
        if total > 2 << 20 or len(out) > 65536:
            raise SyscallError(E2BIG)
        out.append(s)
    return out


@syscall("execve")
def sys_execve(p: Process, t: Thread, path: int, argv: int, envp: int, *_: int) -> object:
    """Replace the program in place (same pid, fds without FD_CLOEXEC, ignored signals)."""
    from polyvm.linux.loader import LoadError

    name = read_path(p, path)
    args, env = _read_strv(p, argv), _read_strv(p, envp)
    for _depth in range(4):  # #! interpreters, a few levels deep
        r = p.vfs.resolve(name, p.cwd)
        if not r.exists:
            raise SyscallError(ENOENT)
        if r.host is None or (r.lstat is not None and st.S_ISDIR(r.lstat.st_mode)):
            raise SyscallError(EACCES)
        if not os.access(r.host, os.X_OK):
            raise SyscallError(EACCES)
        with open(r.host, "rb") as fh:
            data = fh.read()
        if not data.startswith(b"#!"):
            break
        line = data[2:].split(b"\n", 1)[0].strip()
        if not line:
            raise SyscallError(ENOEXEC)
        interp, _, opt = line.partition(b" ")
        opt = opt.strip()
        args = [interp] + ([opt] if opt else []) + [os.fsencode(name)] + args[1:]
        name = os.fsdecode(interp)
    else:
        raise SyscallError(ELOOP)
    try:
        p.exec_image(data, args, env, r.guest, r.host, caller=t)
    except LoadError:
        raise SyscallError(ENOEXEC) from None
    return NORESULT


PR_SET_NAME, PR_GET_NAME = 15, 16


@syscall("prctl")
def sys_prctl(p: Process, t: Thread, option: int, arg2: int, *_: int) -> int:
    if option == PR_SET_NAME:
        # Linux copies at most 16 bytes and truncates: no NUL needed within them.
        raw = p.mem.read(arg2, 16) if p.mem.is_mapped(arg2, 16) else p.mem.read_cstr(arg2, 16)
        t.comm = raw.split(b"\0", 1)[0][:15]  # type: ignore[attr-defined]
        return 0
    if option == PR_GET_NAME:
        name = getattr(t, "comm", os.path.basename(p.exe_guest).encode()[:15])
        p.mem.write(arg2, name + b"\0")
        return 0
    raise SyscallError(EINVAL)


WNOHANG, WUNTRACED, WSTOPPED, WEXITED, WCONTINUED, WNOWAIT = 1, 2, 2, 4, 8, 0x1000000
WNOTHREAD, WALL, WCLONE = 0x20000000, 0x40000000, 0x80000000
P_ALL, P_PID, P_PGID = 0, 1, 2


def _wait_children(p: Process, which: int, ident: int, options: int) -> list[Any]:
    """The children a wait selects: which is P_ALL, P_PID or P_PGID (wait4's pid, decoded).

    Only children this process forked are looked at (never the host's waitpid(-1), which could
    reap a host process that is none of the guest's business).
    """
    out = []
    for c in p.children.values():
        if which == P_PID and c.pid != ident:
            continue
        if which == P_PGID:
            try:
                if os.getpgid(c.pid) != ident:
                    continue
            except OSError:
                pass
        # A "clone" child is one whose exit signal is not SIGCHLD: only __WCLONE/__WALL see it.
        if not options & WALL and bool(options & WCLONE) != (c.exit_signal != S.SIGCHLD):
            continue
        out.append(c)
    return out


def pack_rusage(ru: Any) -> bytes:
    out = bytearray(RUSAGE_SIZE)
    if ru is None:
        return bytes(out)
    for off, secs in ((0, ru.ru_utime), (16, ru.ru_stime)):
        us = int(secs * 1e6)
        struct.pack_into("<qq", out, off, us // 1_000_000, us % 1_000_000)
    fields = (
        "ru_maxrss ru_ixrss ru_idrss ru_isrss ru_minflt ru_majflt ru_nswap ru_inblock ru_oublock "
        "ru_msgsnd ru_msgrcv ru_nsignals ru_nvcsw ru_nivcsw"
    ).split()
    struct.pack_into("<14q", out, 32, *(int(getattr(ru, f)) for f in fields))
    return bytes(out)


def _blocking_wait(p: Process, attempt: Callable[[], int | None], what: str) -> int | Wait:
    res = attempt()
    if res is not None:
        return res
    fds = tuple(c.pidfd for c in p.children.values() if c.pidfd >= 0)
    # Polled like any blocking syscall: other guest threads keep running meanwhile.
    return Wait(attempt, rfds=fds, interval=0.01 if not fds else 0.05, what=what)


@syscall("wait4")
def sys_wait4(
    p: Process, t: Thread, pid: int, wstatus: int, options: int, rusage: int, *_: int
) -> int | Wait:
    pid, options = s32(pid), options & 0xFFFFFFFF
    if options & ~(WNOHANG | WUNTRACED | WCONTINUED | WNOTHREAD | WALL | WCLONE):
        raise SyscallError(EINVAL)
    if pid == -(1 << 31):
        raise SyscallError(ESRCH)
    if pid > 0:
        which, ident = P_PID, pid
    elif pid == -1:
        which, ident = P_ALL, 0
    else:
        which, ident = P_PGID, (os.getpgrp() if pid == 0 else -pid)
    hopts = os.WNOHANG | (os.WUNTRACED if options & WUNTRACED else 0)
    hopts |= os.WCONTINUED if options & WCONTINUED else 0

    def attempt() -> int | None:
        kids = _wait_children(p, which, ident, options)
        if not kids:
            return -ECHILD
        for c in kids:
            try:
                rpid, status, ru = os.wait4(c.pid, hopts)
            except ChildProcessError:
                p.forget_child(c.pid)
                continue
            if rpid != c.pid:
                continue
            gstatus = S.wait_status(status)
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                code = S.CLD_EXITED if os.WIFEXITED(status) else S.CLD_KILLED
                p.notify_child_exit(
                    c, code, os.WEXITSTATUS(status) if code == S.CLD_EXITED else os.WTERMSIG(status)
                )
                p.forget_child(c.pid)
            if wstatus:
                p.mem.write_u(wstatus, 4, gstatus)
            if rusage:
                p.mem.write(rusage, pack_rusage(ru))
            return c.pid
        if not _wait_children(p, which, ident, options):
            return -ECHILD
        return None

    if wstatus:
        check_writable(p, wstatus, 4)
    if rusage:
        check_writable(p, rusage, RUSAGE_SIZE)
    if options & WNOHANG:
        res = attempt()
        return 0 if res is None else res
    return _blocking_wait(p, attempt, "wait4")


@syscall("waitid")
def sys_waitid(
    p: Process, t: Thread, idtype: int, ident: int, infop: int, options: int, rusage: int, *_: int
) -> int | Wait:
    idtype, ident, options = s32(idtype), s32(ident), options & 0xFFFFFFFF
    if options & ~(WNOHANG | WSTOPPED | WEXITED | WCONTINUED | WNOWAIT | WNOTHREAD | WALL | WCLONE):
        raise SyscallError(EINVAL)
    if not options & (WEXITED | WSTOPPED | WCONTINUED):
        raise SyscallError(EINVAL)
    if idtype not in (P_ALL, P_PID, P_PGID) or (idtype != P_ALL and ident < 0):
        raise SyscallError(EINVAL)
    if idtype == P_PGID and ident == 0:
        ident = os.getpgrp()
    hopts = os.WNOHANG | os.WNOWAIT
    for g, h in ((WEXITED, "WEXITED"), (WSTOPPED, "WSTOPPED"), (WCONTINUED, "WCONTINUED")):
        if options & g:
            hopts |= getattr(os, h)
    if infop:
        check_writable(p, infop, 128)
    if rusage:
        check_writable(p, rusage, RUSAGE_SIZE)

    def attempt() -> int | None:
        kids = _wait_children(p, idtype, ident, options)
        if not kids:
            return -ECHILD
        for c in kids:
            try:
                res = os.waitid(os.P_PID, c.pid, hopts)  # peek first: WNOWAIT is the guest's choice
            except ChildProcessError:
                p.forget_child(c.pid)
                continue
            if res is None:
                continue
            code = res.si_code
            ru = None
            if code in (S.CLD_EXITED, S.CLD_KILLED, S.CLD_DUMPED):
                p.notify_child_exit(c, code, res.si_status)
                if not options & WNOWAIT:
                    try:
                        _, _, ru = os.wait4(c.pid, os.WNOHANG)
                    except ChildProcessError:
                        pass
                    p.forget_child(c.pid)
            elif not options & WNOWAIT:
                # Consume the stop/continue report, as the kernel does without WNOWAIT.
                try:
                    os.waitid(os.P_PID, c.pid, hopts & ~os.WNOWAIT)
                except OSError:
                    pass
            status = res.si_status if code == S.CLD_EXITED else S.from_host(res.si_status)
            if infop:
                p.mem.write(infop, S.sigchld_info(S.SIGCHLD, code, c.pid, res.si_uid, status))
            if rusage:
                p.mem.write(rusage, pack_rusage(ru))
            return 0
        if not _wait_children(p, idtype, ident, options):
            return -ECHILD
        return None

    if options & WNOHANG:
        res = attempt()
        if res is None:
            if infop:
                p.mem.write(infop, bytes(128))
            return 0
        return res
    return _blocking_wait(p, attempt, "waitid")


# ---- signals -----------------------------------------------------------------------------
def _check_sig(sig: int) -> int:
    sig = s32(sig)
    if sig < 0 or sig > S.NSIG:
        raise SyscallError(EINVAL)
    return sig


@syscall("rt_sigqueueinfo", "rt_tgsigqueueinfo")
def sys_rt_sigqueueinfo(p: Process, t: Thread, a: int, b: int, c: int, d: int = 0, *_: int) -> int:
    """sigqueue(3): a signal with the caller's siginfo (its si_value reaches the handler)."""
    if t.syscall_name == "rt_sigqueueinfo":
        pid, tid, sig, uinfo = s32(a), 0, _check_sig(b), c
    else:
        pid, tid, sig, uinfo = s32(a), s32(b), _check_sig(c), d
    info = bytearray(p.mem.read(uinfo, 128))
    si_code = struct.unpack_from("<i", info, 8)[0]
    if si_code >= 0 and pid != p.pid:
        raise SyscallError(EPERM)  # only the kernel may send a signal that looks like its own
    struct.pack_into("<i", info, 0, sig)  # si_signo is the signal being sent
    if pid != p.pid and p.find_thread(pid) is None:
        # Another process: the host has no sigqueue to carry the value; the signal itself goes.
        hs = S.to_host(sig)
        if hs is None:
            raise SyscallError(EINVAL)
        if sig:
            os.kill(pid, hs)
        return 0
    target = p.find_thread(tid) if tid else None
    if tid and target is None:
        raise SyscallError(ESRCH)
    if sig:
        p.send_signal(sig, bytes(info), target)
    return 0


@syscall("kill")
def sys_kill(p: Process, t: Thread, pid: int, sig: int, *_: int) -> int:
    pid, sig = s32(pid), _check_sig(sig)
    if pid > 0 and p.find_thread(pid) is not None:
        pid = p.pid  # a thread id of this process names the process (thread ids are not host pids)
    if pid not in (0, -1, p.pid, -p.pid):
        # Another process (a child, the parent, ...): guest pids are host pids.
        hs = S.to_host(sig)
        if hs is None:
            raise SyscallError(EINVAL)
        if pid == -(1 << 31):
            raise SyscallError(ESRCH)
        if pid > 0:
            os.kill(pid, hs)
        else:
            os.killpg(-pid, hs)
        return 0
    if sig:
        p.send_signal(sig, S.siginfo(sig, S.SI_USER, pid=p.pid, uid=os.getuid()))
    return 0


@syscall("tkill", "tgkill")
def sys_tgkill(p: Process, t: Thread, a: int, b: int, c: int = 0, *_: int) -> int:
    if t.syscall_name == "tkill":
        tgid, tid, sig = p.pid, s32(a), b
    else:
        tgid, tid, sig = s32(a), s32(b), c
    sig = _check_sig(sig)
    if tid <= 0 or tgid <= 0:
        raise SyscallError(EINVAL)
    target = p.find_thread(tid) if tgid == p.pid else None
    if target is None and tid != p.pid and (tgid == tid or t.syscall_name == "tkill") and tid in p.children:
        hs = S.to_host(sig)  # the main thread of a child process
        if hs is None:
            raise SyscallError(EINVAL)
        os.kill(tid, hs)
        return 0
    if target is None:
        raise SyscallError(ESRCH)
    if sig:
        p.send_signal(sig, S.siginfo(sig, S.SI_TKILL, pid=p.pid, uid=os.getuid()), target)
    return 0


@syscall("rt_sigaction")
def sys_rt_sigaction(p: Process, t: Thread, sig: int, act: int, oact: int, size: int, *_: int) -> int:
    sig = s32(sig)
    if size != 8 or sig < 1 or sig > S.NSIG:
        raise SyscallError(EINVAL)
    has_restorer = p.abi.sigaction_has_restorer
    fmt = "<QQQQ" if has_restorer else "<QQQ"
    new = None
    if act:
        if sig in (S.SIGKILL, S.SIGSTOP):
            raise SyscallError(EINVAL)
        raw = struct.unpack(fmt, p.mem.read(act, struct.calcsize(fmt)))
        if has_restorer:
            new = S.SigAction(raw[0], raw[1], raw[2], raw[3] & ~S.UNBLOCKABLE)
        else:
            new = S.SigAction(raw[0], raw[1], 0, raw[2] & ~S.UNBLOCKABLE)
    if oact:
        cur = p.actions[sig]
        vals = (
            (cur.handler, cur.flags, cur.restorer, cur.mask)
            if has_restorer
            else (cur.handler, cur.flags, cur.mask)
        )
        p.mem.write(oact, struct.pack(fmt, *vals))
    if new is not None:
        p.actions[sig] = new
        if new.handler == S.SIG_IGN or (new.handler == S.SIG_DFL and sig in S.DEFAULT_IGNORE):
            p.pending.discard(sig)
            for th in p.threads:
                th.pending.discard(sig)
    return 0


@syscall("rt_sigprocmask")
def sys_rt_sigprocmask(p: Process, t: Thread, how: int, set_: int, oset: int, size: int, *_: int) -> int:
    if size != 8:
        raise SyscallError(EINVAL)
    new = p.mem.read_u(set_, 8) if set_ else None
    if new is not None and how not in (S.SIG_BLOCK, S.SIG_UNBLOCK, S.SIG_SETMASK):
        raise SyscallError(EINVAL)
    if oset:
        p.mem.write_u(oset, 8, t.mask)
    if new is not None:
        if how == S.SIG_BLOCK:
            t.mask |= new
        elif how == S.SIG_UNBLOCK:
            t.mask &= ~new
        else:
            t.mask = new
        t.mask &= ~S.UNBLOCKABLE
    return 0


@syscall("rt_sigpending")
def sys_rt_sigpending(p: Process, t: Thread, set_: int, size: int, *_: int) -> int:
    if size > 8:
        raise SyscallError(EINVAL)
    bits = 0
    for sig in list(t.pending) + list(p.pending):
        bits |= S.bit(sig)
    p.mem.write(set_, (bits & t.mask).to_bytes(8, "little")[:size])
    return 0


@syscall("rt_sigsuspend")
def sys_rt_sigsuspend(p: Process, t: Thread, mask: int, size: int, *_: int) -> Wait:
    if size != 8:
        raise SyscallError(EINVAL)
    new = p.mem.read_u(mask, 8)
    t.saved_mask = t.mask
    t.mask = new & ~S.UNBLOCKABLE

    def cancel() -> None:
        pass

    return Wait(lambda: None, on_timeout=-EINTR, restart=False, cancel=cancel, what="sigsuspend")


@syscall("rt_sigtimedwait")
def sys_rt_sigtimedwait(
    p: Process, t: Thread, set_: int, info: int, tmo: int, size: int, *_: int
) -> int | Wait:
    if size != 8:
        raise SyscallError(EINVAL)
    want = p.mem.read_u(set_, 8) & ~S.UNBLOCKABLE
    timeout = read_timespec(p, tmo) if tmo else None

    def attempt() -> int | None:
        for q in (t.pending, p.pending):
            for sig in sorted(q):
                if want & S.bit(sig):
                    data = q.pop(sig)
                    if info:
                        p.mem.write(info, data)
                    return sig
        return None

    res = attempt()
    if res is not None:
        return res
    if timeout == 0:
        return -EAGAIN
    deadline = time.monotonic() + timeout if timeout is not None else None
    return Wait(attempt, deadline=deadline, on_timeout=-EAGAIN, restart=False, what="sigtimedwait")


@syscall("rt_sigreturn")
def sys_rt_sigreturn(p: Process, t: Thread, *_: int) -> object:
    pc = t.regs[p.abi.pc_slot]
    try:
        mask, stack = p.abi.restore_frame(p.mem, t.regs)
    except MemoryFault as e:
        p.force_signal(
            t, S.SIGSEGV, S.siginfo(S.SIGSEGV, S.SI_KERNEL, addr=0), pc, f"bad signal frame at {e.addr:#x}"
        )
        return NORESULT
    t.mask = mask & ~S.UNBLOCKABLE
    ss_sp, ss_flags, ss_size = stack
    if not ss_flags & S.SS_ONSTACK:
        if ss_flags & S.SS_DISABLE:
            t.altstack = (0, S.SS_DISABLE, 0)
        elif ss_size >= S.MINSIGSTKSZ:
            t.altstack = (ss_sp, ss_flags & S.SS_AUTODISARM, ss_size)
    return NORESULT


@syscall("sigaltstack")
def sys_sigaltstack(p: Process, t: Thread, ss: int, old: int, *_: int) -> int:
    sp = t.regs[p.abi.sp_slot]
    cur_sp, cur_flags, cur_size = t.altstack
    on = bool(cur_size) and cur_sp < sp <= cur_sp + cur_size
    new = STACK_T.unpack(p.mem.read(ss, STACK_T.size)) if ss else None
    if old:
        flags = S.SS_ONSTACK if on else cur_flags
        p.mem.write(old, STACK_T.pack(cur_sp, flags, 0, cur_size))
    if new is not None:
        nsp, nflags, _pad, nsize = new
        nflags &= 0xFFFFFFFF
        if on:
            raise SyscallError(EPERM)
        mode = nflags & ~S.SS_AUTODISARM
        if mode not in (0, S.SS_DISABLE, S.SS_ONSTACK):
            raise SyscallError(EINVAL)
        if mode == S.SS_DISABLE:
            t.altstack = (0, S.SS_DISABLE, 0)
        else:
            if nsize < S.MINSIGSTKSZ:
                raise SyscallError(ENOMEM)
            t.altstack = (nsp, nflags & S.SS_AUTODISARM, nsize)
    return 0


# ---- threads -----------------------------------------------------------------------------
CLONE_VM, CLONE_FS, CLONE_FILES, CLONE_SIGHAND = 0x100, 0x200, 0x400, 0x800
CLONE_VFORK, CLONE_THREAD, CLONE_SETTLS = 0x4000, 0x10000, 0x80000
CLONE_PARENT_SETTID, CLONE_CHILD_CLEARTID, CLONE_CHILD_SETTID = 0x100000, 0x200000, 0x01000000


@syscall("clone")
def sys_clone(p: Process, t: Thread, *args: int) -> int:
    from polyvm.linux.process import Thread as ThreadCls

    flags, newsp, ptid, ctid, tls = p.abi.clone_args(list(args))
    need = CLONE_VM | CLONE_THREAD | CLONE_SIGHAND
    if not flags & CLONE_VM or flags & CLONE_VFORK:
        return fork(p, t, flags, newsp, ptid, ctid, tls)
    if flags & need != need:
        # CLONE_VM without CLONE_THREAD: a process sharing our memory; not supported.
        if 220 not in p._warned and not p.quiet:
            p._warned.add(220)
            p.diag("polyvm: warning: clone(CLONE_VM) without CLONE_THREAD or CLONE_VFORK is not supported")
        return -ENOSYS
    tid = p.new_tid()
    if flags & CLONE_PARENT_SETTID:
        p.mem.write_u(ptid, 4, tid)
    regs = list(t.regs)
    p.abi.child_return(regs, newsp)
    if flags & CLONE_SETTLS:
        p.abi.set_tls(regs, tls)
    child = ThreadCls(tid, regs)
    child.mask = t.mask
    if flags & CLONE_CHILD_SETTID:
        p.mem.write_u(ctid, 4, tid)
    if flags & CLONE_CHILD_CLEARTID:
        child.clear_child_tid = ctid
    p.threads.append(child)
    return tid


def fork(p: Process, t: Thread, flags: int, newsp: int, ptid: int, ctid: int, tls: int) -> int | Wait:
    """fork, vfork and clone without CLONE_VM: a host fork (see Process.fork).

    vfork (CLONE_VFORK, with or without CLONE_VM) gets a copy of the address space like fork,
    as in qemu-user, since one Python process cannot share the guest memory with another. The
    parent still waits for the child's execve or exit: that keeps vfork's ordering (what the
    child prints comes first, the child's exit is reported before the parent goes on), which
    programs rely on more than on the shared memory, and costs one pipe.
    """
    if flags & CLONE_THREAD or (flags & CLONE_SIGHAND and not flags & CLONE_VM):
        raise SyscallError(EINVAL)
    if not hasattr(os, "fork"):
        raise SyscallError(ENOSYS)
    vfork = bool(flags & CLONE_VFORK)
    pid, done = p.fork(t, flags & 0xFF, vfork=vfork)
    if pid == 0:  # the child, where `t` is the only thread
        p.abi.child_return(t.regs, newsp)
        if flags & CLONE_SETTLS:
            p.abi.set_tls(t.regs, tls)
        if flags & CLONE_CHILD_SETTID:
            p.mem.write_u(ctid, 4, p.pid)
        if flags & CLONE_CHILD_CLEARTID:
            t.clear_child_tid = ctid
        return 0
    if flags & CLONE_PARENT_SETTID:
        try:
            p.mem.write_u(ptid, 4, pid)
        except MemoryFault:
            pass
    if not vfork:
        return pid

    def vfork_done() -> int | None:
        try:
            if os.read(done, 1):
                return None
        except BlockingIOError:
            return None
        except OSError:
            pass
        os.close(done)
        return pid

    return Wait(vfork_done, rfds=(done,), restart=False, interruptible=False, what="vfork")


@syscall("fork", "vfork")
def sys_fork(p: Process, t: Thread, *_: int) -> int | Wait:
    vf = CLONE_VM | CLONE_VFORK if t.syscall_name == "vfork" else 0
    return fork(p, t, vf | S.SIGCHLD, 0, 0, 0, 0)


class FutexWaiter:
    __slots__ = ("bitset", "woken", "addr")

    def __init__(self, addr: int, bitset: int) -> None:
        self.addr = addr
        self.bitset = bitset
        self.woken = False


def futex_wake(p: Process, addr: int, n: int, bitset: int) -> int:
    q = p.futex_waiters.get(addr)
    if not q:
        return 0
    woken = 0
    for w in list(q):
        if woken >= n:
            break
        if w.bitset & bitset:
            w.woken = True
            q.remove(w)
            woken += 1
    if not q:
        p.futex_waiters.pop(addr, None)
    return woken


FUTEX_WAIT, FUTEX_WAKE, FUTEX_REQUEUE, FUTEX_CMP_REQUEUE, FUTEX_WAKE_OP = 0, 1, 3, 4, 5
FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET = 9, 10
FUTEX_PRIVATE, FUTEX_CLOCK_REALTIME = 128, 256


@syscall("futex")
def sys_futex(
    p: Process, t: Thread, uaddr: int, op: int, val: int, timeout: int, uaddr2: int, val3: int
) -> int | Wait:
    cmd = op & ~(FUTEX_PRIVATE | FUTEX_CLOCK_REALTIME)
    val &= 0xFFFFFFFF
    if uaddr & 3:
        raise SyscallError(EINVAL)
    if cmd in (FUTEX_WAIT, FUTEX_WAIT_BITSET):
        bitset = 0xFFFFFFFF if cmd == FUTEX_WAIT else val3 & 0xFFFFFFFF
        if bitset == 0:
            raise SyscallError(EINVAL)
        deadline = None
        if timeout:
            secs = read_timespec(p, timeout)
            if cmd == FUTEX_WAIT:
                deadline = time.monotonic() + secs
            elif op & FUTEX_CLOCK_REALTIME:
                deadline = time.monotonic() + (secs - time.time())
            else:
                deadline = time.monotonic() + (secs - time.monotonic_ns() / 1e9)
        if p.mem.read_u(uaddr, 4) != val:
            return -EAGAIN
        if deadline is not None and deadline <= time.monotonic():
            return -ETIMEDOUT
        w = FutexWaiter(uaddr, bitset)
        p.futex_waiters.setdefault(uaddr, []).append(w)

        def cancel() -> None:
            q = p.futex_waiters.get(uaddr)
            if q and w in q:
                q.remove(w)
                if not q:
                    p.futex_waiters.pop(uaddr, None)

        return Wait(
            lambda: 0 if w.woken else None,
            deadline=deadline,
            on_timeout=-ETIMEDOUT,
            restart=False,
            cancel=cancel,
            what=f"futex wait on {uaddr:#x}",
        )
    if cmd in (FUTEX_WAKE, FUTEX_WAKE_BITSET):
        bitset = 0xFFFFFFFF if cmd == FUTEX_WAKE else val3 & 0xFFFFFFFF
        if bitset == 0:
            raise SyscallError(EINVAL)
        return futex_wake(p, uaddr, val, bitset)
    if cmd in (FUTEX_REQUEUE, FUTEX_CMP_REQUEUE):
        if uaddr2 & 3:
            raise SyscallError(EINVAL)
        if cmd == FUTEX_CMP_REQUEUE and p.mem.read_u(uaddr, 4) != val3 & 0xFFFFFFFF:
            return -EAGAIN
        nreq = timeout & 0x7FFFFFFF
        n = futex_wake(p, uaddr, val, 0xFFFFFFFF)
        q = p.futex_waiters.get(uaddr, [])
        moved = q[:nreq]
        if moved:
            del q[: len(moved)]
            if not q:
                p.futex_waiters.pop(uaddr, None)
            for w in moved:
                w.addr = uaddr2
            p.futex_waiters.setdefault(uaddr2, []).extend(moved)
        return n + len(moved)
    if cmd == FUTEX_WAKE_OP:
        if uaddr2 & 3:
            raise SyscallError(EINVAL)
        encoded = val3 & 0xFFFFFFFF
        fop, cmp_ = (encoded >> 28) & 0xF, (encoded >> 24) & 0xF
        # 12-bit signed fields (Linux: sign_extend32(..., 11))
        oparg, cmparg = ((encoded >> 12) & 0xFFF ^ 0x800) - 0x800, (encoded & 0xFFF ^ 0x800) - 0x800
        if fop & 8:
            fop &= 7
            oparg = 1 << (oparg & 31)
        old = p.mem.read_u(uaddr2, 4)
        newv = {0: oparg, 1: old + oparg, 2: old | oparg, 3: old & ~oparg, 4: old ^ oparg}.get(fop)
        if newv is None:
            raise SyscallError(ENOSYS)
        p.mem.write_u(uaddr2, 4, newv)
        n = futex_wake(p, uaddr, val, 0xFFFFFFFF)
        so = s32(old)
        ok = {
            0: so == cmparg,
            1: so != cmparg,
            2: so < cmparg,
            3: so <= cmparg,
            4: so > cmparg,
            5: so >= cmparg,
        }.get(cmp_, False)
        if ok:
            n += futex_wake(p, uaddr2, timeout & 0x7FFFFFFF, 0xFFFFFFFF)
        return n
    raise SyscallError(ENOSYS)


__all__ = ["IMPL", "NORESULT", "dispatch", "futex_wake", "E2BIG", "EINTR", "EAGAIN"]


# ---- polyvm's paravirtual GPU --------------------------------------------------------------
@syscall("polyvm_gpu")
def sys_polyvm_gpu(p: Process, t: Thread, op: int, argp: int, *_: int) -> int:
    """op, pointer to the op's argument struct (docs/gpu.md). Opens the host GPU on first use;
    every failure is an errno for the guest, never an exception here."""
    if p.gpu is None:
        if p.gpu_backend == "none":
            return -ENOSYS
        from polyvm.gpu.guest import GuestGPU

        p.gpu = GuestGPU(backend=p.gpu_backend)
    return p.gpu.syscall(p.mem, op & 0xFFFFFFFF, argp)
