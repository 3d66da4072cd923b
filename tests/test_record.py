"""`polyvm.record`: the records that replace dataclasses on the start-up path keep the
dataclasses' behaviour — equality and repr over the fields, `replace`, mutable records
unhashable, frozen ones hashable and never changed once made."""

from __future__ import annotations

import pytest

from polyvm.engine import Stop
from polyvm.ir import Helper
from polyvm.linux.mm import Vma
from polyvm.softfloat import RISCV_ENV, FpEnv


def test_equality_repr_and_replace() -> None:
    a = Stop("fault", 0x1000, addr=8, access="r")
    assert a == Stop("fault", 0x1000, 0, 8, "r") and a != Stop("fault", 0x1004, addr=8, access="r")
    assert a != ("fault", 0x1000)  # (another type is never equal)
    assert repr(a) == "Stop(reason='fault', pc=4096, resume=0, addr=8, access='r', mapped=False, info=None)"
    v = Vma(0x1000, 0x3000, 3, name="[heap]")
    w = v.replace(end=0x2000)
    assert (w.start, w.end, w.name) == (0x1000, 0x2000, "[heap]") and v.end == 0x3000
    with pytest.raises(TypeError):
        v.replace(no_such_field=1)
    with pytest.raises(TypeError):
        hash(a)  # (mutable: unhashable, as a dataclass with eq is)


def test_frozen_records_cannot_change() -> None:
    h = Helper("h", abs, (64,), 64)
    assert hash(h) == hash(Helper("h", abs, (64,), 64)) and h == Helper("h", abs, (64,), 64)
    with pytest.raises(AttributeError):
        h.state = True
    with pytest.raises(AttributeError):
        del h.fn
    with pytest.raises(AttributeError):
        RISCV_ENV.default_nan = False
    assert RISCV_ENV == FpEnv() and {RISCV_ENV: 1}[FpEnv()] == 1
