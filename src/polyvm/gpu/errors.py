"""Exceptions of polyvm.gpu. Every failure of a GPU call ends as one of these."""

from __future__ import annotations


class GPUError(RuntimeError):
    """Base class of every error raised by polyvm.gpu."""


class BackendUnavailableError(GPUError):
    """No usable GPU backend: the Python package, the driver library or a device is missing."""


class DriverError(GPUError):
    """A driver or runtime call failed; ``name`` is the driver's own error name (``cuGetErrorName``)."""

    def __init__(self, call: str, code: int, name: str, description: str = "") -> None:
        self.call = call
        self.code = int(code)
        self.name = name
        self.description = description
        text = f"{call} failed: {name} ({self.code})"
        if description and description != name:
            text += f": {description}"
        super().__init__(text)


class OutOfMemoryError(DriverError):
    """The device could not satisfy an allocation."""


class CompileError(GPUError):
    """Runtime compilation (NVRTC / hiprtc) failed; ``log`` holds the compiler's full log."""

    def __init__(self, message: str, log: str = "", *, name: str = "", options: tuple[str, ...] = ()) -> None:
        self.log = log
        self.name = name
        self.options = tuple(options)
        full = message if not log else f"{message}\n{log.rstrip()}"
        super().__init__(full)


class LaunchConfigError(GPUError, ValueError):
    """A launch configuration exceeds the device's or the kernel's limits."""


class ArgumentError(GPUError, TypeError):
    """A kernel argument cannot be packed as asked (unknown type, ambiguous value, out of range)."""


class ResourceClosedError(GPUError):
    """The buffer, stream, module or device was already freed or closed."""
