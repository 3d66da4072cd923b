"""Backend selection, lazy imports and the ROCm/CUDA "not available" errors (no GPU needed)."""

import subprocess
import sys

import pytest

from polyvm import gpu
from polyvm.gpu import cuda as cuda_backend
from polyvm.gpu import rocm as rocm_backend
from polyvm.gpu.errors import BackendUnavailableError, GPUError


def test_import_does_not_load_gpu_packages():
    code = (
        "import sys, polyvm, polyvm.gpu, polyvm.gpu.guest, polyvm.gpu.cli;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('cuda', 'hip', 'rocm', 'numpy')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def _unavailable(name):
    def opener(index=0, **kw):
        raise BackendUnavailableError(f"{name}: not here")

    return opener


def test_auto_with_no_backend_says_so(monkeypatch):
    monkeypatch.setattr(cuda_backend, "open_driver", _unavailable("CUDA"))
    monkeypatch.setattr(rocm_backend, "open_driver", _unavailable("ROCm"))
    with pytest.raises(BackendUnavailableError) as ei:
        gpu.open_device()
    msg = str(ei.value)
    assert msg.startswith("no GPU backend available")
    assert "CUDA: not here" in msg and "ROCm: not here" in msg
    assert isinstance(ei.value, GPUError)


def test_auto_prefers_cuda_then_rocm(monkeypatch):
    order = []

    def cuda_open(index=0):
        order.append("cuda")
        raise BackendUnavailableError("CUDA: none")

    def rocm_open(index=0):
        order.append("rocm")
        from polyvm.gpu.fake import FakeDriver

        return FakeDriver()

    monkeypatch.setattr(cuda_backend, "open_driver", cuda_open)
    monkeypatch.setattr(rocm_backend, "open_driver", rocm_open)
    with gpu.open_device(cache=False) as dev:
        assert order == ["cuda", "rocm"]
        assert dev.backend == "fake"


def test_unknown_backend_and_bad_index():
    with pytest.raises(GPUError, match="unknown GPU backend 'opencl'"):
        gpu.open_device("opencl")
    with pytest.raises(GPUError, match="non-negative"):
        gpu.open_device("fake", -1)
    with pytest.raises(GPUError, match="does not exist"):
        gpu.open_device("fake", 3)


def test_rocm_runtime_not_found(monkeypatch):
    monkeypatch.setitem(sys.modules, "hip", None)  # as if hip-python were not installed
    monkeypatch.setattr(rocm_backend, "_mods", None)
    with pytest.raises(BackendUnavailableError, match="ROCm runtime not found"):
        gpu.open_device("rocm")
    with pytest.raises(BackendUnavailableError, match="ROCm runtime not found"):
        rocm_backend.device_count()


def test_rocm_runtime_library_missing(monkeypatch):
    class Broken:
        def __getattr__(self, name):
            raise OSError("libamdhip64.so: cannot open shared object file")

    import types

    fake_hip = types.ModuleType("hip")
    fake_hip.hip = Broken()
    fake_hip.hiprtc = Broken()
    monkeypatch.setitem(sys.modules, "hip", fake_hip)
    monkeypatch.setattr(rocm_backend, "_mods", None)
    with pytest.raises(BackendUnavailableError, match="ROCm runtime not found.*libamdhip64"):
        gpu.open_device("rocm")


def test_cuda_bindings_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "cuda", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    monkeypatch.setattr(cuda_backend, "_mods", None)
    with pytest.raises(BackendUnavailableError, match="cuda-bindings package is not installed"):
        gpu.open_device("cuda")


def test_cuda_driver_missing(monkeypatch):
    import types

    drv = types.SimpleNamespace(
        cuInit=lambda flags: (_ for _ in ()).throw(RuntimeError("libcuda.so.1 not found"))
    )
    pkg = types.ModuleType("cuda.bindings")
    pkg.driver = drv
    pkg.nvrtc = types.SimpleNamespace()
    monkeypatch.setitem(sys.modules, "cuda", types.ModuleType("cuda"))
    monkeypatch.setitem(sys.modules, "cuda.bindings", pkg)
    monkeypatch.setattr(cuda_backend, "_mods", None)
    with pytest.raises(BackendUnavailableError, match="NVIDIA driver library was not found"):
        gpu.open_device("cuda")


def test_probe_backends_reports_reasons(monkeypatch):
    monkeypatch.setitem(sys.modules, "hip", None)
    monkeypatch.setattr(rocm_backend, "_mods", None)
    report = gpu.probe_backends()
    assert set(report) == {"cuda", "rocm"}
    assert "ROCm runtime not found" in report["rocm"]


def test_rocm_and_cuda_share_argument_packing():
    # Both launch paths hand the driver PackedArgs.kernel_params (void**); the layout is the C ABI.
    from polyvm.gpu.args import pack

    packed = pack([gpu.ptr(0x1000), gpu.i32(3), gpu.f32(1.0)])
    assert packed.offsets == [0, 8, 12] and len(packed.blob) == 16


def test_fake_device_lifecycle_frees_everything():
    dev = gpu.open_device("fake", cache=False)
    drv = dev.driver
    b = dev.alloc(100)
    s = dev.stream()
    e = dev.event()
    m = dev.compile('extern "C" __global__ void empty() {}')
    k = m.get_kernel("empty")
    k.launch(1, 1, stream=s)
    e.record(s)
    s.synchronize()
    assert drv._allocs
    dev.close()
    assert drv.closed and not drv._allocs
    with pytest.raises(gpu.ResourceClosedError):
        _ = b.device_ptr
    with pytest.raises(gpu.ResourceClosedError):
        k.launch(1, 1)
    with pytest.raises(gpu.ResourceClosedError):
        dev.alloc(1)
    dev.close()  # idempotent


def test_buffer_bounds_and_host_objects():
    import array

    with gpu.open_device("fake", cache=False) as dev:
        b = dev.alloc(16)
        b.copy_from_host(b"\x01" * 8, offset=8)
        b.memset(2, nbytes=8)
        assert bytes(b.copy_to_host()) == b"\x02" * 8 + b"\x01" * 8
        out = array.array("B", bytes(4))
        b.copy_to_host(out, offset=6)
        assert out.tobytes() == b"\x02\x02\x01\x01"
        with pytest.raises(gpu.ArgumentError, match="overrun"):
            b.copy_from_host(b"x" * 17)
        with pytest.raises(gpu.ArgumentError, match="overrun"):
            b.copy_to_host(bytearray(4), offset=14)
        with pytest.raises(gpu.ArgumentError, match="read-only"):
            b.copy_to_host(b"immutable")
        with pytest.raises(gpu.ArgumentError):
            b.memset(256)
        c = dev.alloc(16)
        c.copy_from(b)
        assert bytes(c.copy_to_host()) == bytes(b.copy_to_host())
        with pytest.raises(gpu.ArgumentError):
            dev.alloc(0)
        pinned = dev.alloc_pinned(16)
        pinned.view[:] = bytes(range(16))
        c.copy_from_host(pinned)
        assert bytes(c.copy_to_host()) == bytes(range(16))


def test_launch_checks_limits_before_the_driver():
    with gpu.open_device("fake", cache=False) as dev:
        k = dev.compile('extern "C" __global__ void empty() {}').get_kernel("empty")
        with pytest.raises(gpu.LaunchConfigError, match="2048 threads"):
            k.launch(1, (1024, 2))
        assert dev.driver.launches == []
        k.launch([2, 2], [4, 4])  # lists are fine too (unhashable, checked every time)
        assert dev.driver.launches[-1][1:3] == ((2, 2, 1), (4, 4, 1))


def test_compile_error_carries_the_full_log():
    with gpu.open_device("fake", cache=False) as dev:
        with pytest.raises(gpu.CompileError) as ei:
            dev.compile("#error broken on purpose\n", name="bad.cu")
        assert "broken on purpose" in ei.value.log
        assert "broken on purpose" in str(ei.value)
        assert ei.value.name == "bad.cu"


def test_fake_compiler_refuses_options_nvrtc_refuses():
    with gpu.open_device("fake", cache=False) as dev:
        with pytest.raises(gpu.CompileError, match="unrecognized option -O3"):
            dev.compile('extern "C" __global__ void empty() {}', options=["-O3"])
        dev.compile(
            'extern "C" __global__ void empty() {}', options=["-DX=1", "--std=c++17", "--use_fast_math"]
        )
