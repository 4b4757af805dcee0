"""``run.config``: a dict-like object whose changes reach the store through the writer; and how config and
summary values become JSON (``to_jsonable``, ``dumps``). ``run.summary`` is in summary.py."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any


def to_jsonable(value: Any) -> Any:
    """Config and summary values as JSON can hold them: NumPy scalars, tuples, paths and the like converted."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return value if type(value) in (int, float) else (int(value) if isinstance(value, int) else float(value))
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    item = getattr(value, "item", None)  # NumPy and torch scalars
    if callable(item) and getattr(value, "ndim", 1) == 0:
        return to_jsonable(item())
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return to_jsonable(tolist())
    return str(value)


def dumps(value: Any) -> str:
    """JSON text of a config or summary (NaN and infinities kept as JSON's common extension)."""
    return json.dumps(to_jsonable(value), sort_keys=False)


class Config(MutableMapping[str, Any]):
    """A run's configuration: item and attribute access, ``update``; each change is persisted."""

    def __init__(self, data: Mapping[str, Any] | None, on_change: Callable[[dict[str, Any]], None]) -> None:
        object.__setattr__(self, "_data", dict(to_jsonable(dict(data or {}))))
        object.__setattr__(self, "_on_change", on_change)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[str(key)] = to_jsonable(value)
        self._on_change(self._data)

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self._on_change(self._data)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def update(self, other: Any = (), /, allow_val_change: bool = True, **kwargs: Any) -> None:  # type: ignore[override]
        """Set several keys at once (one write); ``allow_val_change`` is accepted for wandb compatibility."""
        if hasattr(other, "__dict__") and not isinstance(other, Mapping):  # argparse.Namespace and the like
            other = vars(other)
        for key, value in dict(other, **kwargs).items():
            self._data[str(key)] = to_jsonable(value)
        self._on_change(self._data)

    def setdefaults(self, values: Mapping[str, Any]) -> None:
        """Set keys that are not set yet (wandb compatibility)."""
        self.update({k: v for k, v in values.items() if k not in self._data})

    def as_dict(self) -> dict[str, Any]:
        """A copy of the configuration."""
        return json.loads(json.dumps(self._data))

    def __repr__(self) -> str:
        return f"Config({self._data!r})"


def is_nan(value: Any) -> bool:
    """True for float NaN (helper for tests and readers)."""
    return isinstance(value, float) and math.isnan(value)
