"""Checking and flattening what ``log()`` receives, cheaply, on the caller's thread.

Scalars stay Python objects; arrays are copied to NumPy. Tensors are copied on their own device
(``detach().clone()``, asynchronous on CUDA) and converted to the host on the writer thread, so the training thread
never waits for a device, and a tensor changed in place after ``log()`` (``acc.zero_()``) is stored as it was when
logged. A tensor or array of one element (shape ``[1]``, ``[1, 1]``: ``nn.DataParallel`` returns its loss as
``[1]``) is a scalar, as in wandb. torch is never imported here: tensors are recognised by their type's module name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from expertrack.notify import Notifier

MAX_KEY_LENGTH = 512
SHOWN_KEY_LENGTH = 80  # messages show at most this much of a key: a 10,000-character key is said once, shortened
_FAST_TYPES = (float, int)


def shown_key(name: str) -> str:
    """``name`` quoted for a message, its middle cut out when it is long (the length said instead)."""
    if len(name) <= SHOWN_KEY_LENGTH:
        return repr(name)
    half = SHOWN_KEY_LENGTH // 2
    return f"{name[:half]!r}...{name[-half // 2 :]!r} ({len(name):,} characters)"


def flatten(data: Mapping[Any, Any], notifier: Notifier, prefix: str = "") -> dict[str, Any]:
    """Return ``data`` flattened with ``/``, keeping only values the store can take.

    Bad keys and values are reported once each (naming the key and what was wrong) and left out; the rest is kept.
    """
    out: dict[str, Any] = {}
    for key, value in data.items():
        if type(key) is not str:
            notifier.once(
                f"key-type:{type(key).__name__}",
                f"log(): key {key!r} is a {type(key).__name__}, not a string; that value was not stored",
            )
            continue
        name = prefix + key if prefix else key
        if type(value) in _FAST_TYPES:  # the hot path: plain Python numbers
            out[name] = value
        elif isinstance(value, Mapping):
            out.update(flatten(value, notifier, name + "/"))
        else:
            converted = convert_value(name, value, notifier)
            if converted is not None:
                out[name] = converted
    return out


def check_key(name: str, notifier: Notifier) -> bool:
    """Whether ``name`` can be stored as a metric key; reports the problem once when it cannot."""
    problem = None
    if not name:
        problem = "is empty"
    elif len(name) > MAX_KEY_LENGTH:
        problem = f"is longer than {MAX_KEY_LENGTH} characters"
    elif "\x00" in name:
        problem = "contains a NUL character"
    else:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            problem = "is not valid Unicode (a lone surrogate)"
    if problem is None:
        return True
    notifier.once(f"bad-key:{name!r}", f"log(): key {shown_key(name)} {problem}; its values are not stored")
    return False


def convert_value(name: str, value: Any, notifier: Notifier) -> Any:
    """Turn a non-plain value into a float, a NumPy array, or a copied tensor; None (reported) if unsupported."""
    if isinstance(value, (bool, float, int)):
        return float(value)
    if len(name) > MAX_KEY_LENGTH:  # the key alone is the problem: say that once, not also its value's type
        check_key(name, notifier)
        return None
    module = type(value).__module__
    if module.startswith("torch") and hasattr(value, "detach"):
        # a copy on the tensor's device (no host sync; read on the writer thread): the caller may change the
        # tensor in place after log() returns. One element is a scalar, whatever its shape (numel() is metadata).
        copy = value.detach()
        return (copy.reshape(()) if copy.ndim and copy.numel() == 1 else copy).clone()
    if module.startswith("numpy"):
        if getattr(value, "size", None) == 1:
            return _numpy_scalar(name, value.reshape(()), notifier)
        if getattr(value, "dtype", None) is not None and value.dtype.kind in "biuf":
            return value.copy()  # the caller may reuse its buffer after log() returns
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
        import numpy as np

        return np.asarray(value, dtype=np.float64)
    notifier.once(
        f"bad-type:{name}",
        f"log(): value for {shown_key(name)} is a {type(value).__name__}; expected a number, a NumPy array or a "
        "tensor. That value was not stored (other keys were).",
    )
    return None


def _numpy_scalar(name: str, value: Any, notifier: Notifier) -> float | None:
    if value.dtype.kind in "biuf":
        return float(value)
    notifier.once(f"bad-type:{name}", f"log(): NumPy value for {shown_key(name)} has dtype {value.dtype}; not stored")
    return None
