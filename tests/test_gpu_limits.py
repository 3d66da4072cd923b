"""Launch configurations checked against device and kernel limits (pure)."""

import pytest

from polyvm.gpu.errors import LaunchConfigError
from polyvm.gpu.limits import DeviceLimits, check_launch, dim3

H100ISH = DeviceLimits(1024, (1024, 1024, 64), (2**31 - 1, 65535, 65535), 48 * 1024, 227 * 1024, 32)


def test_dim3_normalizes():
    assert dim3(5) == (5, 1, 1)
    assert dim3((2, 3)) == (2, 3, 1)
    assert dim3([2, 3, 4]) == (2, 3, 4)


@pytest.mark.parametrize("bad", [0, -1, (1, 0), (1, 2, 3, 4), (), "8", 2.0, (1.5,), True])
def test_dim3_rejects(bad):
    with pytest.raises(LaunchConfigError):
        dim3(bad, "block")


def test_valid_config_passes():
    assert check_launch((100, 2, 3), (32, 8, 4), 1024, H100ISH) == ((100, 2, 3), (32, 8, 4))
    assert check_launch(2**31 - 1, 1024, 227 * 1024, H100ISH)[0] == (2**31 - 1, 1, 1)


@pytest.mark.parametrize(
    "grid,block,shmem,match",
    [
        (1, (1024, 2, 1), 0, "2048 threads; the device allows at most 1024"),
        (1, (1, 1, 65), 0, "block.z = 65 exceeds the device's limit of 64"),
        (1, 1025, 0, "block.x = 1025"),
        ((1, 65536), 1, 0, "grid.y = 65536 exceeds"),
        ((2**31, 1, 1), 1, 0, "grid.x"),
        (1, 1, 227 * 1024 + 1, "dynamic shared memory; the device allows at most 232448"),
        (1, 1, -1, "non-negative"),
    ],
)
def test_limits_are_named_in_the_error(grid, block, shmem, match):
    with pytest.raises(LaunchConfigError, match=match):
        check_launch(grid, block, shmem, H100ISH)


def test_kernel_limits():
    with pytest.raises(LaunchConfigError, match="kernel 'big' can run at most 256"):
        check_launch(1, 512, 0, H100ISH, kernel_name="big", kernel_max_threads=256)
    with pytest.raises(LaunchConfigError, match=r"\+ 200000 static"):
        check_launch(1, 32, 40000, H100ISH, kernel_static_shared=200000)


def test_launch_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        check_launch(1, 0, 0, H100ISH)
