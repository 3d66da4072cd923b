"""`pytest --engine NAME` (or env POLYVM_TEST_ENGINE): run the in-process guests of the whole
suite on another engine.

NAME is interp (the default), jit, auto, aot, or switch=N (the JIT handing over to the
interpreter every N blocks). It becomes the default engine of Linux processes
(polyvm.linux.Process), of the API's Emulator and Program, and what tests that construct
`polyvm.engine.reference.Engine` themselves get, and (interp, jit, auto, aot) the engine of the
`polyvm run` subprocesses of test_busybox. Tests that pick an engine explicitly keep it.

    pytest --engine jit tests/test_linux_guest.py tests/test_linux_fork.py tests/test_riscv_exec.py
"""

from __future__ import annotations

import os
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--engine",
        default=None,
        help="run in-process guests on this engine: interp, jit, auto, aot, switch=N (env POLYVM_TEST_ENGINE)",
    )


def factory(name: str) -> Any:
    """(arch, mem, **engine options) -> engine, for an --engine NAME."""
    from polyvm.engine import jit

    def make(arch: Any, mem: Any, **kw: Any) -> Any:
        if name.startswith("switch="):
            return jit.JitEngine(arch, mem, tier="jit", switch_every=int(name[7:]))
        if kw:  # reference-engine options (max_insns, regions): the native tiers have their own
            kw = {k: v for k, v in kw.items() if k == "max_insns"}
        return jit.JitEngine(arch, mem, tier=name, **kw)

    return make


def pytest_configure(config: pytest.Config) -> None:
    name = config.getoption("--engine", None) or os.environ.get("POLYVM_TEST_ENGINE")
    if not name or name == "interp":
        return
    if name not in ("jit", "auto", "aot") and not name.startswith("switch="):
        raise pytest.UsageError(f"--engine {name}: expected interp, jit, auto, aot or switch=N")
    from polyvm import api
    from polyvm.engine import jit, reference  # (jit first: it keeps the real reference Engine)
    from polyvm.linux import process

    make = factory(name)
    api.DEFAULT_ENGINE = make
    reference.Engine = make  # type: ignore[assignment,misc]
    init = process.Process.__init__

    def process_init(self: Any, *args: Any, engine_factory: Any = None, **kw: Any) -> None:
        init(self, *args, engine_factory=engine_factory or make, **kw)

    process.Process.__init__ = process_init  # type: ignore[method-assign]
    assert jit.Interp is not make
    config.issue_config_time_warning(pytest.PytestWarning(f"in-process guests run on --engine {name}"), 2)
