"""What a GPU backend (CUDA, ROCm, the fake one) provides: a small driver-shaped interface.

The neutral classes in :mod:`polyvm.gpu.api` call these methods and nothing else, so every
backend gets the same checks, caching and resource bookkeeping. Handles are whatever the
backend likes; device and host pointers are plain ints; ``stream=None`` is the default stream.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .args import PackedArgs
from .cache import CacheEntry
from .limits import DeviceLimits


@dataclass(frozen=True)
class DeviceInfo:
    """What the driver says about a device. ``None`` means the driver did not give the value."""

    backend: str
    index: int
    name: str
    vendor: str
    arch: str
    compute_capability: tuple[int, int] | None
    total_memory: int | None
    free_memory: int | None
    used_memory: int | None
    multiprocessor_count: int | None
    clock_rate_khz: int | None
    memory_clock_rate_khz: int | None
    memory_bus_width_bits: int | None
    l2_cache_bytes: int | None
    max_threads_per_block: int | None
    max_shared_memory_per_block: int | None
    max_shared_memory_per_block_optin: int | None
    warp_size: int | None
    max_block_dim: tuple[int, int, int] | None
    max_grid_dim: tuple[int, int, int] | None
    unified_addressing: bool | None
    managed_memory: bool | None
    concurrent_managed_access: bool | None
    ecc_enabled: bool | None
    pci_bus_id: str | None
    driver_version: str | None
    runtime_version: str | None
    """The runtime compiler's version (NVRTC / hiprtc), which is what polyvm compiles with."""
    bindings_version: str | None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d


@dataclass(frozen=True)
class KernelAttributes:
    num_regs: int | None
    max_threads_per_block: int | None
    shared_size_bytes: int | None
    const_size_bytes: int | None
    local_size_bytes: int | None
    ptx_version: int | None
    binary_version: int | None
    max_dynamic_shared_size_bytes: int | None


class DeviceDriver(ABC):
    """One opened device of one backend."""

    backend: str
    index: int
    arch: str
    compiler_version: str

    @abstractmethod
    def info(self) -> DeviceInfo: ...

    @abstractmethod
    def limits(self) -> DeviceLimits: ...

    @abstractmethod
    def mem_info(self) -> tuple[int, int]:
        """(free, total) bytes."""

    def ensure_current(self) -> None:
        """Make this device's context current on the calling thread (no-op where there is none)."""
        return None

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def synchronize(self) -> None: ...

    # memory
    @abstractmethod
    def mem_alloc(self, nbytes: int) -> int: ...

    @abstractmethod
    def mem_free(self, dptr: int) -> None: ...

    @abstractmethod
    def host_alloc(self, nbytes: int) -> int: ...

    @abstractmethod
    def host_free(self, hptr: int) -> None: ...

    @abstractmethod
    def memcpy_htod(self, dst: int, src: int, nbytes: int, stream: Any) -> None: ...

    @abstractmethod
    def memcpy_dtoh(self, dst: int, src: int, nbytes: int, stream: Any) -> None: ...

    @abstractmethod
    def memcpy_dtod(self, dst: int, src: int, nbytes: int, stream: Any) -> None: ...

    @abstractmethod
    def memset_d8(self, dst: int, value: int, nbytes: int, stream: Any) -> None: ...

    # streams and events
    @abstractmethod
    def stream_create(self, non_blocking: bool) -> Any: ...

    @abstractmethod
    def stream_destroy(self, stream: Any) -> None: ...

    @abstractmethod
    def stream_synchronize(self, stream: Any) -> None: ...

    @abstractmethod
    def stream_query(self, stream: Any) -> bool:
        """True when all work on the stream is done."""

    @abstractmethod
    def event_create(self, timing: bool) -> Any: ...

    @abstractmethod
    def event_destroy(self, event: Any) -> None: ...

    @abstractmethod
    def event_record(self, event: Any, stream: Any) -> None: ...

    @abstractmethod
    def event_synchronize(self, event: Any) -> None: ...

    @abstractmethod
    def event_query(self, event: Any) -> bool: ...

    @abstractmethod
    def event_elapsed_ms(self, start: Any, end: Any) -> float: ...

    # code
    @abstractmethod
    def target_options(self, target: str) -> list[str]:
        """The compiler options that select the output for ``target`` ("auto", "cubin", "ptx")."""

    @abstractmethod
    def compile(
        self,
        source: str,
        name: str,
        options: Sequence[str],
        headers: Mapping[str, str],
        name_expressions: Sequence[str],
    ) -> CacheEntry:
        """Compile; raise :class:`~polyvm.gpu.errors.CompileError` with the full log on failure."""

    @abstractmethod
    def module_load(self, image: bytes, image_kind: str) -> Any: ...

    @abstractmethod
    def module_unload(self, module: Any) -> None: ...

    @abstractmethod
    def module_get_function(self, module: Any, name: str) -> Any: ...

    @abstractmethod
    def function_attributes(self, func: Any) -> KernelAttributes: ...

    @abstractmethod
    def function_set_max_dynamic_shared(self, func: Any, nbytes: int) -> None: ...

    @abstractmethod
    def launch(
        self, func: Any, cfg: tuple[int, ...], stream: Any, params: int, packed: PackedArgs | None
    ) -> None:
        """Queue ``func``. ``cfg`` is (gx, gy, gz, bx, by, bz, dynamic shared bytes); ``params`` the
        ``void**`` kernelParams address (0: none); ``packed`` the decoded arguments when the general
        path packed them (None on the fast path), for backends that set ``wants_packed_args``."""
