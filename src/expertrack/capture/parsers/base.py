"""The items a parser yields, the Parser base class, and the small helpers every format shares.

A parser is fed the child's output one line at a time (decoded with ``errors="replace"``, without its
trailing newline) and returns the items that line completed. It never raises on bad input: a line it cannot
read is ignored. One instance parses one run, so parsers may keep state (the last step, an open table).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar

# Lines longer than this are never metric lines (a trainer prints a few hundred characters at most);
# skipping them keeps a 10 MB line without newlines from costing a regex scan.
MAX_LINE_CHARS = 65_536


@dataclass(frozen=True, slots=True)
class Metrics:
    """Metric values at one step. ``step`` is always an explicit int (see docs/parsers.md, "Steps")."""

    step: int
    values: dict[str, float]


@dataclass(frozen=True, slots=True)
class ConfigItems:
    """Config values found in the output, e.g. the rows of a ``| parameter | value |`` table."""

    values: dict[str, Any]


Item = Metrics | ConfigItems


class Parser:
    """Base class of all parsers: one instance per run, fed line by line.

    Subclasses set ``name`` and implement ``feed``; ``finish`` flushes whatever a parser held back
    waiting for a later line (e.g. an evaluation printed before its step was known).
    """

    name: ClassVar[str] = ""

    def feed(self, line: str) -> list[Item]:
        """Parse one line of output (no trailing newline) and return the items it completed."""
        raise NotImplementedError

    def finish(self) -> list[Item]:
        """Signal the end of output and return anything held back; the default holds nothing."""
        return []


def finished_line(line: str) -> str:
    """The part of ``line`` a terminal would leave on screen once the newline arrives.

    Trailing carriage returns are line-ending noise (a pseudo-terminal turns "\\n" into "\\r\\n"); of what
    remains, only the text after the last "\\r" is finished: everything before it was a progress bar that
    was drawn over. Callers test ``"\\r" in line`` first, so clean lines never pay for this call.
    """
    line = line.rstrip("\r")
    cut = line.rfind("\r")
    return line if cut < 0 else line[cut + 1 :]


def to_float(text: str) -> float | None:
    """``text`` as a float (``nan``, ``-nan``, ``inf`` included), or None when it is not a number."""
    try:
        return float(text)
    except ValueError:
        return None


_INT = re.compile(r"[-+]?\d+")
_FLOAT = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def coerce_value(text: str) -> Any:
    """A config value as printed, turned into int, float or bool where it plainly is one; else the text.

    Only plain decimal numbers convert: "nan", "inf", "0x10" and "1_000" stay strings, since in a config
    they are far more often names than numbers.
    """
    text = text.strip()
    if _INT.fullmatch(text):
        try:
            return int(text)
        except ValueError:  # more digits than int() accepts: no config value is that number
            return text
    if _FLOAT.fullmatch(text):
        return float(text)
    lowered = text.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    return text


class StepClock:
    """Step bookkeeping for formats whose lines may or may not carry a step.

    A line with a step sets it; a line without one takes the last step seen, or, before any was seen,
    a count of such lines (0, 1, 2, ...), as ``wandb.log`` does without ``step=``.
    """

    __slots__ = ("_count", "last")

    def __init__(self) -> None:
        self.last: int | None = None
        self._count = 0

    def seen(self, step: int) -> int:
        self.last = step
        return step

    def implicit(self) -> int:
        if self.last is not None:
            return self.last
        step = self._count
        self._count += 1
        return step


MAX_STEP = 2**63 - 1  # a step is stored as a signed 64-bit integer


def to_count(text: str) -> int | None:
    """ASCII digits as an int >= 0 that fits a stored step, or None (Python refuses int() of 4,300+ digits)."""
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        return None
    return int(text)


def step_from(value: Any) -> int | None:
    """A step field's value as an int in [0, 2**63), or None when it is not one (1.0 counts, 1.5 does not)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not (math.isfinite(value) and value.is_integer()):
            return None
        value = int(value)
    if isinstance(value, str):
        return to_count(value.strip())
    if isinstance(value, int) and 0 <= value <= MAX_STEP:
        return value
    return None
