"""Kernel structures that are the same on every 64-bit Linux ABI (uapi, LP64)."""

from __future__ import annotations

import os
import struct

from polyvm.record import Record

TIMESPEC = struct.Struct("<qq")  # struct timespec / timeval / __kernel_timespec
IOVEC = struct.Struct("<QQ")
RLIMIT = struct.Struct("<QQ")
U64 = struct.Struct("<Q")
I32 = struct.Struct("<i")
U32 = struct.Struct("<I")
STACK_T = struct.Struct("<QiiQ")  # ss_sp, ss_flags, pad, ss_size
# struct sysinfo: uptime, loads[3], totalram, freeram, sharedram, bufferram, totalswap, freeswap,
# procs (u16) + padding, totalhigh, freehigh, mem_unit (u32) + padding: 112 bytes.
SYSINFO = struct.Struct("<q3Q6QH6xQQI4x")
assert SYSINFO.size == 112
RUSAGE_SIZE = 144  # two struct timeval then 14 longs
UTSNAME_FIELD = 65

RLIM_INFINITY = (1 << 64) - 1


class StatLike(Record):
    """The fields of a stat result, so virtual files can have one too."""

    _fields = (
        "st_dev",
        "st_ino",
        "st_mode",
        "st_nlink",
        "st_uid",
        "st_gid",
        "st_rdev",
        "st_size",
        "st_blksize",
        "st_blocks",
        "st_atime_ns",
        "st_mtime_ns",
        "st_ctime_ns",
    )

    def __init__(
        self,
        st_dev: int = 0,
        st_ino: int = 0,
        st_mode: int = 0,
        st_nlink: int = 1,
        st_uid: int = 0,
        st_gid: int = 0,
        st_rdev: int = 0,
        st_size: int = 0,
        st_blksize: int = 4096,
        st_blocks: int = 0,
        st_atime_ns: int = 0,
        st_mtime_ns: int = 0,
        st_ctime_ns: int = 0,
    ) -> None:
        self.st_dev = st_dev
        self.st_ino = st_ino
        self.st_mode = st_mode
        self.st_nlink = st_nlink
        self.st_uid = st_uid
        self.st_gid = st_gid
        self.st_rdev = st_rdev
        self.st_size = st_size
        self.st_blksize = st_blksize
        self.st_blocks = st_blocks
        self.st_atime_ns = st_atime_ns
        self.st_mtime_ns = st_mtime_ns
        self.st_ctime_ns = st_ctime_ns

    @classmethod
    def from_host(cls, st: os.stat_result) -> StatLike:
        return cls(
            st.st_dev,
            st.st_ino,
            st.st_mode,
            st.st_nlink,
            st.st_uid,
            st.st_gid,
            st.st_rdev,
            st.st_size,
            getattr(st, "st_blksize", 4096),
            getattr(st, "st_blocks", (st.st_size + 511) // 512),
            st.st_atime_ns,
            st.st_mtime_ns,
            st.st_ctime_ns,
        )


STATX_BASIC_STATS = 0x7FF


def pack_statx(st: StatLike) -> bytes:
    """struct statx (256 bytes) with the basic fields."""

    def ts(ns: int) -> bytes:
        return struct.pack("<qIi", ns // 1_000_000_000, ns % 1_000_000_000, 0)

    head = struct.pack(
        "<IIQIIIH2xQQQQ",
        STATX_BASIC_STATS,
        st.st_blksize,
        0,
        st.st_nlink & 0xFFFFFFFF,
        st.st_uid,
        st.st_gid,
        st.st_mode & 0xFFFF,
        st.st_ino,
        st.st_size,
        st.st_blocks,
        0,
    )
    times = ts(st.st_atime_ns) + ts(0) + ts(st.st_ctime_ns) + ts(st.st_mtime_ns)
    devs = struct.pack(
        "<IIII", os.major(st.st_rdev), os.minor(st.st_rdev), os.major(st.st_dev), os.minor(st.st_dev)
    )
    out = head + times + devs
    assert len(head) == 64 and len(out) == 144
    return out + bytes(256 - len(out))


DT_UNKNOWN, DT_FIFO, DT_CHR, DT_DIR, DT_BLK, DT_REG, DT_LNK, DT_SOCK = 0, 1, 2, 4, 6, 8, 10, 12


def dt_from_mode(mode: int) -> int:
    return (mode >> 12) & 0xF


def pack_dirent64(ino: int, off: int, dtype: int, name: bytes) -> bytes:
    """struct linux_dirent64: d_ino, d_off, d_reclen, d_type, d_name NUL-terminated, 8-aligned."""
    reclen = (19 + len(name) + 1 + 7) & ~7
    rec = struct.pack("<QqHB", ino, off, reclen, dtype) + name + b"\0"
    return rec + bytes(reclen - len(rec))


def pack_utsname(fields: list[str]) -> bytes:
    out = b""
    for f in fields:
        b = f.encode()[: UTSNAME_FIELD - 1]
        out += b + bytes(UTSNAME_FIELD - len(b))
    return out
