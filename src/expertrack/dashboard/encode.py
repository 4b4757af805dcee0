"""Turning store values into JSON the page can read.

Two rules. Numeric series travel as base64 of little-endian float64 (``pack``): encoding 100,000 floats as
JSON text takes ~90 ms here, as base64 ~1 ms, and NaN/inf survive (JSON has no NaN); ``dumps`` splices that
base64 in without re-scanning it. Everything else
(config, summary, environment) goes through ``jsonable``, which turns NaN/inf into strings and anything
unknown into ``str`` so a response can never fail to encode.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

if TYPE_CHECKING:
    import numpy as np

_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


class B64(bytes):
    """Base64 text (``pack``'s output): safe inside a JSON string as is, so ``dumps`` copies it unscanned."""


def pack(array: np.ndarray) -> B64:
    """Base64 of the array as contiguous little-endian float64 (the page decodes it into a Float64Array)."""
    import numpy as np

    data = np.ascontiguousarray(array, dtype="<f8")
    return B64(base64.b64encode(data.tobytes()))


def timestamp(value: Any) -> float | None:
    """Seconds since the epoch from a float, an int or a datetime (the store's time columns); None stays None."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.timestamp()
    return float(value)


def jsonable(value: Any) -> Any:
    """A copy of ``value`` that ``json.dumps(allow_nan=False)`` accepts: non-finite floats become strings."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return _NON_FINITE.get(value, value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":  # arrays and NumPy scalars
        return jsonable(value.tolist())
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def flatten(value: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """Nested dicts as one level, keys joined with ``sep`` (``{"moe": {"k": 2}}`` -> ``{"moe.k": 2}``)."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(item, Mapping) and item:
            out.update(flatten(item, name, sep))
        else:
            out[name] = item
    return out


def dumps(value: Any) -> bytes:
    """JSON bytes of ``value``. ``B64`` leaves (in dicts, or lists of them) are copied in without the escape scan
    ``json.dumps`` would spend on them (12 ms for the 1.8 MB of a 50-run chart); the rest goes through
    ``jsonable`` and ``json.dumps``."""
    if isinstance(value, B64):
        return b'"' + value + b'"'
    if isinstance(value, Mapping):
        return b"{" + b",".join(_plain(str(k)) + b":" + dumps(v) for k, v in value.items()) + b"}"
    if isinstance(value, list) and value and all(isinstance(v, B64) for v in value):
        return b"[" + b",".join(b'"' + v + b'"' for v in value) + b"]"
    return _plain(value)


def _plain(value: Any) -> bytes:
    return json.dumps(jsonable(value), ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


class JSON(Response):
    """A JSON response that never fails on NaN and never escapes non-ASCII (smaller, still valid JSON)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _plain(content)


class PackedJSON(JSON):
    """A JSON response for payloads of packed series: ``B64`` leaves are spliced in, not re-encoded."""

    def render(self, content: Any) -> bytes:
        return dumps(content)
