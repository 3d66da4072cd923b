"""Kernel-argument packing (pure; no GPU needed)."""

import ctypes
import struct

import pytest

from polyvm.gpu import args as A
from polyvm.gpu.errors import ArgumentError


class FakeBuf:
    device_ptr = 0x7F00_DEAD_BE00


def test_layout_follows_c_struct_alignment():
    packed = A.pack([A.u8(1), A.ptr(0x1000), A.i32(-2), A.f64(1.5), A.f32(0.25), A.i16(-3)])
    assert packed.offsets == [0, 8, 16, 24, 32, 36]
    assert len(packed.blob) == 40  # padded to the largest alignment (8)
    assert packed.blob[0] == 1
    assert struct.unpack_from("<Q", packed.blob, 8)[0] == 0x1000
    assert struct.unpack_from("<i", packed.blob, 16)[0] == -2
    assert struct.unpack_from("<d", packed.blob, 24)[0] == 1.5
    assert struct.unpack_from("<f", packed.blob, 32)[0] == 0.25
    assert struct.unpack_from("<h", packed.blob, 36)[0] == -3


def test_kernel_params_point_at_each_value():
    packed = A.pack([A.i32(7), A.f64(-2.5), FakeBuf(), A.u64(2**64 - 1)])
    arr = (ctypes.c_void_p * 4).from_address(packed.kernel_params)
    assert ctypes.c_int32.from_address(arr[0]).value == 7
    assert ctypes.c_double.from_address(arr[1]).value == -2.5
    assert ctypes.c_uint64.from_address(arr[2]).value == FakeBuf.device_ptr
    assert ctypes.c_uint64.from_address(arr[3]).value == 2**64 - 1
    for p, off in zip(arr, packed.offsets, strict=True):
        assert p % 8 == 0 or off % 8 != 0


def test_no_arguments_is_null():
    assert A.pack([]).kernel_params == 0


def test_raw_struct_alignment_and_bytes():
    class S(ctypes.Structure):
        _fields_ = [("a", ctypes.c_int32), ("b", ctypes.c_double)]

    packed = A.pack([A.i32(1), S(3, 4.0)])
    assert packed.offsets == [0, 8]
    assert packed.blob[8:] == bytes(S(3, 4.0))
    p16 = A.pack([A.i32(1), A.raw(b"\x01\x02\x03", align=16)])
    assert p16.offsets == [0, 16]
    assert len(p16.blob) == 32
    with pytest.raises(ArgumentError):
        A.raw(b"x", align=3)
    with pytest.raises(ArgumentError):
        A.raw(b"")


@pytest.mark.parametrize(
    "kind,value",
    [
        ("i32", 2**31),
        ("i32", -(2**31) - 1),
        ("u32", -1),
        ("u32", 2**32),
        ("u64", -1),
        ("i64", 2**63),
        ("u8", 256),
    ],
)
def test_integer_ranges_are_checked(kind, value):
    with pytest.raises(ArgumentError, match="out of range"):
        A.to_arg(value, kind)


def test_integer_range_edges_pack():
    assert A.i32(-(2**31)).encode() == struct.pack("<i", -(2**31))
    assert A.u32(2**32 - 1).encode() == b"\xff" * 4
    assert A.i64(-1).encode() == b"\xff" * 8


def test_plain_python_numbers_are_ambiguous_without_signature():
    with pytest.raises(ArgumentError, match="ambiguous"):
        A.pack([5])
    with pytest.raises(ArgumentError, match="ambiguous"):
        A.pack([1.0])


def test_signature_types_plain_values():
    sig = A.parse_signature("int, float, float*, const float*, size_t, double, unsigned")
    assert sig == ("i32", "f32", "ptr", "ptr", "u64", "f64", "u32")
    packed = A.pack([3, 2.0, FakeBuf(), None, 10, 0.5, 7], sig)
    assert [a.kind for a in packed.args] == list(sig)
    assert packed.args[3].value == 0


def test_signature_arity_and_type_mismatch():
    sig = A.parse_signature("i32, ptr")
    with pytest.raises(ArgumentError, match="takes 2 arguments, 1 given"):
        A.pack([1], sig)
    with pytest.raises(ArgumentError, match="is f32 but"):
        A.pack([A.f32(1.0), FakeBuf()], sig)
    with pytest.raises(ArgumentError, match="device buffer"):
        A.pack([FakeBuf(), FakeBuf()], sig)
    with pytest.raises(ArgumentError, match="unknown kernel argument type"):
        A.parse_signature("i32, quaternion")


def test_strings_and_objects_are_refused():
    with pytest.raises(ArgumentError):
        A.pack(["hello"])
    with pytest.raises(ArgumentError):
        A.to_arg("1", "i32")
    with pytest.raises(ArgumentError):
        A.to_arg(object(), "f32")


def test_numpy_scalars_carry_their_type():
    np = pytest.importorskip("numpy")
    packed = A.pack([np.int32(-4), np.float32(1.25), np.uint64(9), np.float64(2.5), np.int8(-1)])
    assert [a.kind for a in packed.args] == ["i32", "f32", "u64", "f64", "i8"]
    assert struct.unpack_from("<f", packed.blob, packed.offsets[1])[0] == 1.25
    with pytest.raises(ArgumentError):
        A.pack([np.complex64(1)])


def test_bool_and_index_types():
    assert A.to_arg(True, "i32").value == 1
    assert A.to_arg(3, "f32").value == 3.0


def _deref(params, sizes):
    arr = (ctypes.c_void_p * len(sizes))(*[0] * len(sizes))
    ctypes.memmove(arr, params, ctypes.sizeof(arr))
    return [ctypes.string_at(p, n) for p, n in zip(arr, sizes, strict=True)]


def test_fast_packer_matches_general_packing():
    values = [A.u8(7), FakeBuf(), A.i32(-5), A.f64(2.25), A.f32(0.5), A.u64(2**64 - 1), A.i16(-300)]
    kinds = [A.kind_of(v) for v in values]
    assert kinds == ["u8", "ptr", "i32", "f64", "f32", "u64", "i16"]
    fast = A.ArgPacker(kinds, from_signature=False)
    addr = fast.pack(values)
    general = A.pack(values)
    sizes = [a.size for a in general.args]
    assert addr and _deref(addr, sizes) == _deref(general.kernel_params, sizes)


def test_fast_packer_with_signature_and_fallbacks():
    sig = A.parse_signature("i32, f32, ptr, ptr")
    fast = A.ArgPacker(sig, from_signature=True)
    addr = fast.pack([3, 1.5, FakeBuf(), 0x1234])
    got = _deref(addr, [4, 4, 8, 8])
    assert got == [
        struct.pack("<i", 3),
        struct.pack("<f", 1.5),
        struct.pack("<Q", FakeBuf.device_ptr),
        struct.pack("<Q", 0x1234),
    ]
    # anything it cannot pack exactly goes to the general path (which explains or handles it)
    for bad in (
        [2**31, 1.0, 0, 0],
        [1, "x", 0, 0],
        [1, 1.0, None, 0],
        [1, 1.0, 0],
        [FakeBuf(), 1.0, 0, 0],
        [1, 1e300, 0, 0],
    ):
        assert fast.pack(bad) == 0, bad
    assert A.pack([1, 1.0, None, 0], sig).args[2].value == 0


def test_numpy_scalars_on_the_fast_path():
    np = pytest.importorskip("numpy")
    values = [np.int32(-4), np.float32(1.25), np.uint64(9)]
    fast = A.ArgPacker([A.kind_of(v) for v in values], from_signature=False)
    assert _deref(fast.pack(values), [4, 4, 8]) == [
        struct.pack("<i", -4),
        struct.pack("<f", 1.25),
        struct.pack("<Q", 9),
    ]


def test_kernel_launch_fast_path_on_a_pointer_backend():
    """A backend without wants_packed_args gets only the void** (as CUDA and ROCm do)."""
    from polyvm.gpu.fake import FakeDriver

    seen = []

    class PtrOnly(FakeDriver):
        wants_packed_args = False

        def launch(self, func, cfg, stream, params, packed):
            seen.append((cfg, params, packed, _deref(params, [4, 4, 8]) if params else None))

    from polyvm.gpu.api import Device

    dev = Device(PtrOnly(), cache=False)
    k = dev.compile('extern "C" __global__ void f(int a, float b, float* c) {}').get_kernel("f")
    buf = dev.alloc(16)
    k.launch((2, 3), 64, (A.i32(9), A.f32(2.0), buf), shmem=128)
    cfg, params, packed, vals = seen[-1]
    assert cfg == (2, 3, 1, 64, 1, 1, 128) and packed is None
    assert vals == [struct.pack("<i", 9), struct.pack("<f", 2.0), struct.pack("<Q", buf.device_ptr)]
    k2 = k.module.get_kernel("f", "i32, f32, ptr")
    k2.launch(1, 1, (9, 2.0, buf))
    assert seen[-1][2] is None and seen[-1][3] == vals
    k2.launch(1, 1, (9, 2.0, None))  # None as NULL: general path, still packed right
    assert seen[-1][2] is not None and seen[-1][3][2] == bytes(8)
    with pytest.raises(A.ArgumentError):
        k2.launch(1, 1, (9, "two", buf))
    k.launch(1, 1)  # no arguments: NULL kernelParams
    assert seen[-1][1] == 0
    dev.close()
