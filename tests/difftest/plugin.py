"""pytest options for the Unicorn differential test.

`--diff-count N` (env `POLYVM_DIFF_COUNT`): how many random programs to run (default 10,000).
`--diff-seed S` (env `POLYVM_DIFF_SEED`): run only program S, shrink it and print its report.
`--diff-base B` (env `POLYVM_DIFF_BASE`): first seed of the run (default 0; a soak run can pick
another range).
`--diff-jit-count N` (env `POLYVM_DIFF_JIT_COUNT`): how many random programs run on the JIT
(seeds difftest.gen.JIT_SEED_BASE + base + i; default 2,000).

The environment variables always work. The command-line options need this plugin loaded before
pytest parses the command line: `pytest_plugins = ["difftest.plugin"]` in tests/conftest.py, or
`-p difftest.plugin` with tests/ on PYTHONPATH. A test module naming it in its own
`pytest_plugins` is too late for the command line, but harmless.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("polyvm-difftest", "polyvm differential testing against Unicorn")
    opts = [
        ("--diff-count", "number of random programs (env POLYVM_DIFF_COUNT; default 10000)"),
        ("--diff-seed", "run only this seed, shrink it and print its report (env POLYVM_DIFF_SEED)"),
        ("--diff-base", "first seed of the run (env POLYVM_DIFF_BASE; default 0)"),
        (
            "--diff-jit-count",
            "number of random programs on the JIT (env POLYVM_DIFF_JIT_COUNT; default 2000)",
        ),
    ]
    for name, help_ in opts:
        try:
            group.addoption(name, type=int, default=None, help=help_)
        except ValueError:  # registered twice (early through conftest/-p, then by the test module)
            pass
