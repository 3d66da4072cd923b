"""Shared fixtures. Keep this small: tests should read on their own."""

from __future__ import annotations

import sys
from pathlib import Path

# --diff-count / --diff-seed for the Unicorn differential tests (tests/difftest/plugin.py);
# --engine NAME: in-process guests on another engine (tests/engine_option.py).
pytest_plugins = ["difftest.plugin", "engine_option"]

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))
