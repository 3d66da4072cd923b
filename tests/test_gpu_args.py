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
