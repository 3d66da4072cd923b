"""The guest test suite on every engine (heavy: CI runs it when time allows).

The default run drives the guest tests on the reference interpreter and compares the native
tiers with it module by module (test_jit_guest, the JIT differential tests); this runs the
guest modules themselves again under each native engine and forced tier switching, through
`pytest --engine` (tests/engine_option.py). Their expected values are the tests' own (the
specification, QEMU, hand-checked cases), never an engine's output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("llvmlite")

TESTS = Path(__file__).resolve().parent
GUEST_MODULES = [
    "test_linux_guest.py",
    "test_linux_fork.py",
    "test_linux_process.py",
    "test_riscv_exec.py",
    "test_riscv_zb.py",
    "test_api.py",
    "test_busybox.py",
]


@pytest.mark.heavy
@pytest.mark.parametrize("engine", ["jit", "auto", "switch=5"])
def test_guest_suite_on_engine(engine: str, tmp_path) -> None:
    env = dict(os.environ, POLYVM_CACHE_DIR=str(tmp_path / "tcache"))
    env.pop("POLYVM_TEST_ENGINE", None)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", f"--engine={engine}"]
        + [str(TESTS / m) for m in GUEST_MODULES],
        cwd=TESTS.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
