"""Plain record classes without `dataclasses`.

Importing `dataclasses` (and `inspect` with it) and generating the methods of a dozen classes
took about 12 ms of every polyvm start, a sixth of a warm run's start-up. The records on the
start-up path (IR statements and blocks, engine stops, the Linux layer's mappings and
images) write their `__init__` out and take equality, `repr` and `replace` from here, over the
field names they list in `_fields`.
"""

from __future__ import annotations

from typing import Any


class Record:
    """Equality and `repr` over `_fields`; `replace` as `dataclasses.replace`. Unhashable, as a
    mutable dataclass is."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{f}={getattr(self, f)!r}' for f in self._fields)})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self._fields)

    __hash__ = None  # type: ignore[assignment]

    def replace(self, **changes: Any) -> Any:
        """A copy with `changes` (field name -> value)."""
        return type(self)(**{f: changes.pop(f, getattr(self, f)) for f in self._fields}, **changes)


class FrozenRecord(Record):
    """A record never changed once made (a field is set once, by `__init__`): hashable over
    its fields."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            object.__getattribute__(self, name)
        except AttributeError:  # (not set yet: `__init__`)
            object.__setattr__(self, name, value)
            return
        raise AttributeError(f"{type(self).__name__} is frozen: cannot assign to {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot delete {name!r}")

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, f) for f in self._fields))
