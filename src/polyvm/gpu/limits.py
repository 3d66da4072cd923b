"""Launch configurations checked against the device's and the kernel's limits, before the driver sees them."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import LaunchConfigError

Dim3 = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class DeviceLimits:
    max_threads_per_block: int
    max_block_dim: Dim3
    max_grid_dim: Dim3
    max_shared_per_block: int
    """Dynamic + static shared memory a block gets without opting in (48 KiB on NVIDIA)."""
    max_shared_per_block_optin: int
    """The most a kernel can opt in to (``CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES``)."""
    warp_size: int = 32


def dim3(value: object, what: str = "dimension") -> Dim3:
    """``n``, ``(x,)``, ``(x, y)`` or ``(x, y, z)`` -> ``(x, y, z)``, every entry a positive int."""
    if isinstance(value, int) and not isinstance(value, bool):
        t: tuple[object, ...] = (value, 1, 1)
    elif isinstance(value, tuple | list) and 1 <= len(value) <= 3:
        t = tuple(value) + (1,) * (3 - len(value))
    else:
        raise LaunchConfigError(f"{what} must be an int or a tuple of 1 to 3 ints, got {value!r}")
    out = []
    for axis, v in zip("xyz", t, strict=True):
        if isinstance(v, bool) or not hasattr(v, "__index__"):
            raise LaunchConfigError(f"{what}.{axis} must be an int, got {v!r}")
        v = v.__index__()  # type: ignore[attr-defined]
        if v < 1:
            raise LaunchConfigError(f"{what}.{axis} = {v}: every dimension must be at least 1")
        out.append(v)
    return (out[0], out[1], out[2])


def check_launch(
    grid: object,
    block: object,
    shmem: int,
    limits: DeviceLimits,
    *,
    kernel_name: str = "kernel",
    kernel_max_threads: int | None = None,
    kernel_static_shared: int = 0,
) -> tuple[Dim3, Dim3]:
    """Return the normalized (grid, block), or raise :class:`LaunchConfigError` saying which limit broke."""
    g = dim3(grid, "grid")
    b = dim3(block, "block")
    for axis, v, m in zip("xyz", b, limits.max_block_dim, strict=True):
        if v > m:
            raise LaunchConfigError(f"block.{axis} = {v} exceeds the device's limit of {m}")
    threads = b[0] * b[1] * b[2]
    if threads > limits.max_threads_per_block:
        raise LaunchConfigError(
            f"block {b} has {threads} threads; the device allows at most {limits.max_threads_per_block} per block"
        )
    if kernel_max_threads is not None and threads > kernel_max_threads:
        raise LaunchConfigError(
            f"block {b} has {threads} threads; kernel {kernel_name!r} can run at most {kernel_max_threads} "
            "per block (its register use limits it)"
        )
    for axis, v, m in zip("xyz", g, limits.max_grid_dim, strict=True):
        if v > m:
            raise LaunchConfigError(f"grid.{axis} = {v} exceeds the device's limit of {m}")
    if isinstance(shmem, bool) or not isinstance(shmem, int) or shmem < 0:
        raise LaunchConfigError(f"dynamic shared memory must be a non-negative int, got {shmem!r}")
    cap = max(limits.max_shared_per_block_optin, limits.max_shared_per_block)
    if shmem + kernel_static_shared > cap:
        raise LaunchConfigError(
            f"kernel {kernel_name!r} asks for {shmem} bytes of dynamic shared memory"
            + (f" (+ {kernel_static_shared} static)" if kernel_static_shared else "")
            + f"; the device allows at most {cap} bytes per block"
        )
    if shmem >= 2**32:
        raise LaunchConfigError(f"dynamic shared memory {shmem} does not fit in 32 bits")
    return g, b
