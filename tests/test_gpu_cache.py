"""Compiled-kernel cache: keys, corruption, concurrent writers (no GPU needed)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import polyvm
from polyvm.gpu import open_device
from polyvm.gpu.cache import CacheEntry, KernelCache, cache_key, decode_entry, encode_entry

BASE = dict(
    backend="cuda",
    source='extern "C" __global__ void k() {}',
    headers={"a.h": "#define A 1", "b.h": "#define B 2"},
    options=["-O3", "--use_fast_math"],
    arch="sm_90",
    compiler_version="nvrtc 12.8",
)


def key(**over):
    return cache_key(**{**BASE, **over})


def test_key_is_sha256_hex_and_stable():
    k = key()
    assert len(k) == 64 and int(k, 16) >= 0
    assert key() == k


@pytest.mark.parametrize(
    "change",
    [
        {"backend": "rocm"},
        {"source": BASE["source"] + " "},
        {"headers": {"a.h": "#define A 2", "b.h": "#define B 2"}},
        {"headers": {"c.h": "#define A 1", "b.h": "#define B 2"}},
        {"headers": {"a.h": "#define A 1"}},
        {"options": ["-O3"]},
        {"options": ["--use_fast_math", "-O3"]},
        {"arch": "sm_80"},
        {"compiler_version": "nvrtc 12.9"},
        {"extra": ["expr:k<int>"]},
    ],
)
def test_every_input_changes_the_key(change):
    assert key(**change) != key()


def test_header_order_does_not_matter():
    assert key(headers={"b.h": "#define B 2", "a.h": "#define A 1"}) == key()
    assert key(headers=[("b.h", "#define B 2"), ("a.h", "#define A 1")]) == key()


def test_no_ambiguity_between_fields():
    # concatenation-style keys would confuse these two
    assert key(source="ab", options=["c"]) != key(source="a", options=["bc"])


ENTRY = CacheEntry(
    image=b"\x7fELF-cubin\x00" * 10,
    image_kind="cubin",
    ptx=".version 8.0",
    log="warn",
    lowered_names={"k<int>": "_Z1kIiEvv"},
)


def test_roundtrip_disk_and_memory(tmp_path):
    c1 = KernelCache(tmp_path)
    k = key()
    assert c1.get(k) is None
    c1.put(k, ENTRY)
    assert c1.get(k) == ENTRY
    c2 = KernelCache(tmp_path)  # a fresh process's view: memory empty, disk warm
    assert c2.get(k) == ENTRY
    assert c2.hits == 1
    assert not [p for p in tmp_path.rglob(".tmp-*")], "temporary files left behind"


def test_memory_only_and_disk_only(tmp_path):
    m = KernelCache(tmp_path, disk=False)
    m.put("k" * 64, ENTRY)
    assert m.get("k" * 64) == ENTRY
    assert not list(tmp_path.rglob("*.bin"))
    d = KernelCache(tmp_path, memory=False)
    d.put("d" * 64, ENTRY)
    assert d.get("d" * 64) == ENTRY


def _corruptions(data: bytes):
    yield "empty", b""
    yield "truncated", data[: len(data) // 2]
    yield "one byte short", data[:-1]
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x01
    yield "bit flip", bytes(flipped)
    yield "garbage", os.urandom(len(data))
    yield "trailing junk", data + b"x"
    yield "wrong magic", b"X" + data[1:]


@pytest.mark.parametrize("name", [n for n, _ in _corruptions(b"0123456789")])
def test_corrupt_entries_are_ignored_and_rebuilt(tmp_path, name):
    k = key()
    good = encode_entry(k, ENTRY)
    bad = dict(_corruptions(good))[name]
    cache = KernelCache(tmp_path, memory=False)
    path = cache.path_for(k)
    path.parent.mkdir(parents=True)
    path.write_bytes(bad)
    assert cache.get(k) is None
    cache.put(k, ENTRY)
    assert cache.get(k) == ENTRY


def test_entry_of_another_key_is_refused(tmp_path):
    k1, k2 = key(), key(arch="sm_80")
    cache = KernelCache(tmp_path, memory=False)
    cache.put(k1, ENTRY)
    p2 = cache.path_for(k2)
    p2.parent.mkdir(parents=True, exist_ok=True)
    p2.write_bytes(cache.path_for(k1).read_bytes())
    assert cache.get(k2) is None
    assert decode_entry(k1, cache.path_for(k1).read_bytes()) == ENTRY


def test_unwritable_cache_directory_only_costs_speed(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = KernelCache(blocker / "sub")
    cache.put(key(), ENTRY)  # must not raise
    assert cache.get(key()) == ENTRY  # memory layer still works


_WORKER = textwrap.dedent(
    """
    import sys
    from polyvm.gpu.cache import CacheEntry, KernelCache, decode_entry
    directory, key, wid = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cache = KernelCache(directory, memory=False)
    valid = {bytes([i]) * (50000 + i) for i in range(4)}
    for n in range(150):
        cache.put(key, CacheEntry(image=bytes([wid]) * (50000 + wid), image_kind="cubin", log=str(wid)))
        got = cache.get(key)
        if got is None or got.image not in valid or got.log != str(got.image[0]):
            print("BAD", n, got and len(got.image)); sys.exit(1)
    print("OK")
    """
)


def test_concurrent_processes_never_see_partial_entries(tmp_path):
    src = str(Path(polyvm.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    k = key()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(tmp_path), k, str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(4)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    final = KernelCache(tmp_path).get(k)
    assert final is not None and final.image[0] in range(4)
    assert not [p for p in tmp_path.rglob(".tmp-*")]


def test_device_compile_uses_and_repairs_the_cache(tmp_path):
    src = 'extern "C" __global__ void saxpy(int n, float a, const float* x, float* y) {}'
    cache = KernelCache(tmp_path)
    with open_device("fake", cache=cache) as dev:
        m1 = dev.compile(src)
        assert not m1.from_cache
        m2 = dev.compile(src)
        assert m2.from_cache
        m3 = dev.compile(src, options=["-DX=1"])
        assert not m3.from_cache
    files = list(tmp_path.rglob("*.bin"))
    assert len(files) == 2
    for f in files:
        f.write_bytes(b"\0" * 20)  # corrupt every entry on disk
    with open_device("fake", cache=KernelCache(tmp_path)) as dev:
        m4 = dev.compile(src)
        assert not m4.from_cache  # ignored, rebuilt...
    with open_device("fake", cache=KernelCache(tmp_path)) as dev:
        assert dev.compile(src).from_cache  # ...and written back whole
