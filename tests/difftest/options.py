"""Reading the difftest options (kept apart from plugin.py so that importing these does not
import the plugin module before pytest registers it)."""

from __future__ import annotations

import os

import pytest

DEFAULT_COUNT = 10_000
DEFAULT_JIT_COUNT = 2_000  # a native compile per program: ~30 ms each


def _get(config: pytest.Config, opt: str, env: str) -> int | None:
    try:
        v = config.getoption(opt)
    except ValueError:
        v = None
    if v is None and os.environ.get(env):
        v = int(os.environ[env], 0)
    return v


def diff_count(config: pytest.Config) -> int:
    v = _get(config, "diff_count", "POLYVM_DIFF_COUNT")
    return DEFAULT_COUNT if v is None else v


def diff_jit_count(config: pytest.Config) -> int:
    v = _get(config, "diff_jit_count", "POLYVM_DIFF_JIT_COUNT")
    return DEFAULT_JIT_COUNT if v is None else v


def diff_seed(config: pytest.Config) -> int | None:
    return _get(config, "diff_seed", "POLYVM_DIFF_SEED")


def diff_base(config: pytest.Config) -> int:
    return _get(config, "diff_base", "POLYVM_DIFF_BASE") or 0
