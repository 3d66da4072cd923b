"""guest/gpu_saxpy.c, built for riscv64 with ziglang, run in polyvm's user mode with the fake GPU.

The Linux layer wires syscall 0x4750 to a per-process GuestGPU; with gpu_backend="fake" the
guest C library, the ABI and that wiring are checked end to end without a GPU.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from polyvm.gpu import guest as G
from polyvm.gpu import open_device
from polyvm.testing.guest import build_guest

ROOT = Path(__file__).resolve().parent.parent
GUEST = ROOT / "guest"


def _build(tmp_path: Path, target: str) -> Path:
    """guest/gpu_saxpy.c + polyvm_gpu.c for `target`, warnings as errors (cached build)."""
    try:
        import ziglang  # noqa: F401
    except ImportError:
        pytest.skip("ziglang is not installed")
    return build_guest("gpu_saxpy", target.split("-")[0], cflags=("-O2", "-Wall", "-Werror"))


@pytest.mark.parametrize("target", ["riscv64-linux-musl", "aarch64-linux-musl", "x86_64-linux-musl"])
def test_guest_library_compiles(tmp_path, target):
    assert _build(tmp_path, target).stat().st_size > 0


@pytest.mark.skipif(
    sys.platform != "linux" or os.uname().machine != "x86_64", reason="needs an x86_64 Linux host"
)
def test_outside_polyvm_the_guest_fails_cleanly(tmp_path):
    exe = _build(tmp_path, "x86_64-linux-musl")
    r = subprocess.run([str(exe), "100"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "FAIL: no paravirtual GPU (-38" in r.stdout


def test_gpu_saxpy_runs_in_riscv64_user_mode(tmp_path):
    from polyvm.linux import Process

    exe = _build(tmp_path, "riscv64-linux-musl")
    dev = open_device("fake", cache=False)
    vm = G.GuestGPU(dev)
    out = tmp_path / "stdout.txt"
    with open(out, "wb") as f:
        p = Process.from_file(exe, [str(exe), "3000"], stdout=f.fileno(), quiet=True)
        p.gpu = vm  # as the syscall would open it, but with a device the test can inspect
        status = p.run(timeout=600)
    text = out.read_text()
    assert status == 0, text
    assert "saxpy n=3000: ok" in text and "matmul 70x33 @ 33x50: ok" in text
    assert text.rstrip().endswith("OK")
    assert vm.handles == {"modules": 0, "functions": 0, "buffers": 0}  # the guest freed everything
    launched = {name for name, *_ in dev.driver.launches}
    assert launched == {"saxpy", "matmul"}
    p.close()
    dev.close()
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_gpu_opened_on_first_guest_call(tmp_path):
    from polyvm.linux import Process

    exe = _build(tmp_path, "riscv64-linux-musl")
    out = tmp_path / "stdout.txt"
    with open(out, "wb") as f:
        p = Process.from_file(exe, [str(exe), "100"], stdout=f.fileno(), quiet=True, gpu_backend="fake")
        status = p.run(timeout=600)
    assert status == 0 and out.read_text().rstrip().endswith("OK")
    assert p.gpu is None  # closed with the process


def test_gpu_hidden_from_guest(tmp_path):
    from polyvm.linux import Process

    exe = _build(tmp_path, "riscv64-linux-musl")
    out = tmp_path / "stdout.txt"
    with open(out, "wb") as f:
        p = Process.from_file(exe, [str(exe), "100"], stdout=f.fileno(), quiet=True, gpu_backend="none")
        status = p.run(timeout=600)
    assert status == 1 and "FAIL: no paravirtual GPU (-38" in out.read_text()
