"""ELF loading: what is refused (one LoadError line), the initial memory image, and fuzzing."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest

from polyvm.linux import LoadError, Process
from polyvm.linux.loader import PIE_BASE, STACK_TOP
from polyvm.testing.guest import build_guest


@pytest.fixture(scope="module")
def hello() -> bytes:
    return build_guest("hello").read_bytes()


def load_error(data: bytes) -> str:
    with pytest.raises(LoadError) as e:
        Process(data, ["x"], env={})
    msg = str(e.value)
    assert msg and "\n" not in msg
    return msg


def patch(data: bytes, off: int, fmt: str, value: int) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, off, value)
    return bytes(b)


def test_refusals(hello: bytes) -> None:
    assert "bad magic" in load_error(b"")
    assert "bad magic" in load_error(b"#!/bin/sh\necho hi\n")
    assert "truncated ELF header" in load_error(hello[:40])
    assert "64-bit" in load_error(patch(hello, 4, "B", 1))
    assert "little-endian" in load_error(patch(hello, 5, "B", 2))
    assert "x86-64" in load_error(patch(hello, 18, "<H", 62))
    assert "AArch64" in load_error(patch(hello, 18, "<H", 183))
    assert "not an executable" in load_error(patch(hello, 16, "<H", 1))  # ET_REL
    assert "program header size" in load_error(patch(hello, 54, "<H", 32))
    assert "truncated file" in load_error(hello[:200])
    phoff = struct.unpack_from("<Q", hello, 32)[0]
    # Turn the first program header (PT_PHDR) into PT_INTERP.
    assert "dynamically linked" in load_error(patch(hello, phoff, "<I", 3))


def test_initial_image(hello: bytes) -> None:
    p = Process(hello, ["hello", "arg"], env=["A=1", "B=2"])
    img = p.image
    assert img.entry == struct.unpack_from("<Q", hello, 24)[0]
    sp = p.main_thread.regs[4]
    assert sp % 16 == 0 and STACK_TOP - (8 << 20) < sp < STACK_TOP
    mem = p.mem
    argc = mem.read_u(sp, 8)
    argv = [mem.read_cstr(mem.read_u(sp + 8 * (1 + i), 8)) for i in range(argc)]
    assert argc == 2 and argv == [b"hello", b"arg"] and mem.read_u(sp + 8 * 3, 8) == 0
    envp = [mem.read_cstr(mem.read_u(sp + 8 * (4 + i), 8)) for i in range(2)]
    assert envp == [b"A=1", b"B=2"] and mem.read_u(sp + 8 * 6, 8) == 0
    auxv = {}
    a = sp + 8 * 7
    while True:
        k, v = mem.read_u(a, 8), mem.read_u(a + 8, 8)
        auxv[k] = v
        a += 16
        if k == 0:
            break
    assert auxv[6] == 4096 and auxv[9] == img.entry and auxv[7] == 0 and auxv[23] == 0
    assert auxv[5] == struct.unpack_from("<H", hello, 56)[0] and auxv[4] == 56
    assert mem.read(auxv[3], 4) == struct.pack("<I", 6)  # AT_PHDR points at the PT_PHDR entry
    assert len(mem.read(auxv[25], 16)) == 16 and auxv[16] == 0x112D and auxv[17] == 100
    assert mem.read_cstr(auxv[31]) == b"hello" and auxv[51] >= 1088
    p.close()


def test_pie_base() -> None:
    p = Process(build_guest("hello", pie=True).read_bytes(), ["hello"], env={})
    assert p.image.bias == PIE_BASE - 0 and p.image.entry > PIE_BASE
    assert p.mm.maps_text().decode().splitlines()[0].startswith(f"{PIE_BASE:08x}-")
    p.close()


def _run_fuzzed(data: bytes, tmp_path: Path) -> None:
    """Either a LoadError, or the guest runs to an exit status (faults end as guest signals)."""
    out = tmp_path / "fuzz.out"
    with open(out, "wb") as f:
        try:
            p = Process(data, ["fuzz"], env={}, stdout=f.fileno(), stderr=f.fileno(), quiet=True)
        except LoadError as e:
            assert str(e) and "\n" not in str(e)
            return
        status = p.run(timeout=3)
    assert isinstance(status, int) and 0 <= status <= 255
    assert "internal error" not in out.read_text(errors="replace")


def test_fuzz_truncated(hello: bytes, tmp_path: Path) -> None:
    rng = random.Random(1)
    phoff = struct.unpack_from("<Q", hello, 32)[0]
    cuts = [0, 1, 4, 16, 63, 64, phoff + 10, phoff + 56 * 3] + [rng.randrange(64, 0x8000) for _ in range(8)]
    for n in cuts:
        _run_fuzzed(hello[:n], tmp_path)


def test_fuzz_bitflips_in_headers(hello: bytes, tmp_path: Path) -> None:
    rng = random.Random(2)
    phoff = struct.unpack_from("<Q", hello, 32)[0]
    phnum = struct.unpack_from("<H", hello, 56)[0]
    hdr_end = phoff + 56 * phnum
    for _ in range(40):
        b = bytearray(hello)
        for _ in range(rng.choice((1, 1, 2, 4))):
            i = rng.randrange(hdr_end)
            b[i] ^= 1 << rng.randrange(8)
        _run_fuzzed(bytes(b), tmp_path)


def test_fuzz_random_bytes(tmp_path: Path) -> None:
    rng = random.Random(3)
    for _ in range(20):
        n = rng.randrange(0, 512)
        body = bytes(rng.randrange(256) for _ in range(n))
        _run_fuzzed(body, tmp_path)
        _run_fuzzed(b"\x7fELF\x02\x01\x01" + body, tmp_path)


def test_fuzz_random_program_headers(tmp_path: Path) -> None:
    """A valid riscv64 ELF header (so parsing goes on) with random program headers and contents."""
    rng = random.Random(5)
    for _ in range(60):
        phnum = rng.randrange(0, 6)
        ehdr = b"\x7fELF\x02\x01\x01" + bytes(9)
        entry = rng.choice([0x10000, 0x10078, rng.getrandbits(64)])
        ehdr += struct.pack(
            "<HHIQQQIHHHHHH", rng.choice([2, 3]), 243, 1, entry, 64, 0, 0, 64, 56, phnum, 64, 0, 0
        )
        phdrs = b""
        for _ in range(phnum):
            ptype = rng.choice([1, 1, 1, 2, 3, 7, 0x6474E551, rng.getrandbits(32)])
            vaddr = rng.choice([0x10000, 0x11000, rng.getrandbits(16) << 12, rng.getrandbits(64)])
            filesz = rng.choice([0, 0x78, 0x1000, rng.getrandbits(20), rng.getrandbits(64)])
            memsz = rng.choice([filesz, filesz + 0x1000, rng.getrandbits(32), rng.getrandbits(64)])
            phdrs += struct.pack(
                "<IIQQQQQQ",
                ptype,
                rng.getrandbits(3),
                rng.choice([0, 0x78, rng.getrandbits(16)]),
                vaddr,
                vaddr,
                filesz & (2**64 - 1),
                memsz & (2**64 - 1),
                rng.choice([0x1000, 0, 3]),
            )
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 2048)))
        _run_fuzzed(ehdr + phdrs + body, tmp_path)


def test_fuzz_code_bytes(hello: bytes, tmp_path: Path) -> None:
    """Random instruction words in .text: illegal instructions and wild accesses end as guest signals."""
    rng = random.Random(4)
    entry_off = struct.unpack_from("<Q", hello, 24)[0] - 0x1000000
    for _ in range(10):
        b = bytearray(hello)
        for j in range(64):
            b[entry_off + j] = rng.randrange(256)
        _run_fuzzed(bytes(b), tmp_path)
