"""Guest errno values (Linux asm-generic, shared by riscv64, aarch64 and x86_64).

Host errors are translated by name, so the layer also works on hosts whose numbers differ.
"""

from __future__ import annotations

import errno as _host

EPERM = 1
ENOENT = 2
ESRCH = 3
EINTR = 4
EIO = 5
ENXIO = 6
E2BIG = 7
ENOEXEC = 8
EBADF = 9
ECHILD = 10
EAGAIN = 11
ENOMEM = 12
EACCES = 13
EFAULT = 14
ENOTBLK = 15
EBUSY = 16
EEXIST = 17
EXDEV = 18
ENODEV = 19
ENOTDIR = 20
EISDIR = 21
EINVAL = 22
ENFILE = 23
EMFILE = 24
ENOTTY = 25
ETXTBSY = 26
EFBIG = 27
ENOSPC = 28
ESPIPE = 29
EROFS = 30
EMLINK = 31
EPIPE = 32
EDOM = 33
ERANGE = 34
EDEADLK = 35
ENAMETOOLONG = 36
ENOLCK = 37
ENOSYS = 38
ENOTEMPTY = 39
ELOOP = 40
ENOMSG = 42
ENODATA = 61
EOVERFLOW = 75
ENOTSOCK = 88
EOPNOTSUPP = 95
ETIMEDOUT = 110
ENOTSUP = EOPNOTSUPP

_BY_NAME = {name: value for name, value in globals().items() if name.isupper() and isinstance(value, int)}


def from_host(e: OSError) -> int:
    """The guest errno for a host OSError (EIO when there is no equivalent)."""
    name = _host.errorcode.get(e.errno or 0)
    if name is None:
        return EIO
    return _BY_NAME.get(name, e.errno if e.errno and e.errno < 134 else EIO)


class SyscallError(Exception):
    """Raised inside a syscall implementation to return -errno."""

    def __init__(self, err: int) -> None:
        super().__init__(err)
        self.errno = err
