"""GPU passthrough: one API over NVIDIA CUDA (cuda-bindings) and AMD ROCm (hip-python).

    from polyvm import gpu
    with gpu.open_device() as dev:                      # "auto": CUDA, then ROCm
        mod = dev.compile(SOURCE)                         # NVRTC -> cubin for this GPU, cached
        k = mod.get_kernel("saxpy", "i32, f32, ptr, ptr")
        x, y = dev.to_device(xs), dev.to_device(ys)
        k.launch(grid=(n + 255) // 256, block=256, args=(n, 2.0, x, y))
        out = y.copy_to_host()

Neither backend's package is imported until a device is opened, so ``import polyvm.gpu`` works
on machines without them. See docs/gpu.md, also for the guest ABI (:mod:`polyvm.gpu.guest`).
"""

from __future__ import annotations

from .api import (
    AUTO_ORDER,
    BACKENDS,
    Buffer,
    Device,
    Event,
    Kernel,
    Module,
    PinnedBuffer,
    Stream,
    open_device,
    probe_backends,
)
from .args import Arg, f32, f64, i8, i16, i32, i64, ptr, raw, u8, u16, u32, u64
from .backend import DeviceInfo, KernelAttributes
from .cache import KernelCache, cache_key, default_cache_dir
from .errors import (
    ArgumentError,
    BackendUnavailableError,
    CompileError,
    DriverError,
    GPUError,
    LaunchConfigError,
    OutOfMemoryError,
    ResourceClosedError,
)
from .limits import DeviceLimits, check_launch

__all__ = [
    "AUTO_ORDER",
    "BACKENDS",
    "Arg",
    "ArgumentError",
    "BackendUnavailableError",
    "Buffer",
    "CompileError",
    "Device",
    "DeviceInfo",
    "DeviceLimits",
    "DriverError",
    "Event",
    "GPUError",
    "Kernel",
    "KernelAttributes",
    "KernelCache",
    "LaunchConfigError",
    "Module",
    "OutOfMemoryError",
    "PinnedBuffer",
    "ResourceClosedError",
    "Stream",
    "cache_key",
    "check_launch",
    "default_cache_dir",
    "f32",
    "f64",
    "i8",
    "i16",
    "i32",
    "i64",
    "open_device",
    "probe_backends",
    "ptr",
    "raw",
    "u8",
    "u16",
    "u32",
    "u64",
]
