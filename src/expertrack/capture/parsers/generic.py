"""Formats with no fixed shape: ``key=value`` / ``key: value`` lines, and JSON-lines objects.

``generic`` reads every ``name=number`` and ``name: number`` pair of a line (several per line, separated by
spaces, commas, semicolons or "|"), and JSON objects when a line is one. ``jsonl`` reads JSON objects only.
Only numbers become metrics: a unit glued to the number is dropped (``time: 12.3ms``, ``acc=95%``), thousands
separators are read (``tokens: 16,384``), and a comma followed by digits that are no thousands group makes no
number. A field named ``step``, ``iter`` or ``iteration`` (any case) is the step, taken as printed, when it
holds a whole number >= 0 (the first such field of a line wins; step fields are never metrics); so is a
leading counter such as ``Step 100/1000 |`` or ``iter 100:``. A line without a step gets the last step seen;
before the first step, it waits for it (see ``StepClock``, which also continues a per-epoch step counter).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from expertrack.capture.parsers.base import (
    MAX_LINE_CHARS,
    Item,
    Metrics,
    Parser,
    StepClock,
    finished_line,
    step_from,
    to_count,
)

STEP_FIELDS = frozenset({"step", "iter", "iteration"})

# "Step 100/1000 | loss: 2.3", "iter 100: loss=2.3": a leading step counter without "=" or ":" before it.
_LEADING_STEP = re.compile(r"\s*(?:step|iter|iteration)\s+(\d+)(?:\s*/\s*\d+)?(?![\w.])", re.IGNORECASE | re.ASCII)

_PAIR = re.compile(
    r"(?<![\w./])([A-Za-z_][\w.\-/]*)[\"']?\s*[=:]\s*"  # a name, maybe quoted as in {'loss': 2.3}
    r"(?:([-+]?(?:\d+\.?\d*|\.\d+|\d{1,3}(?:,\d{3})+(?:\.\d*)?)(?:[eE][-+]?\d+)?)[A-Za-z%]*"  # a number
    r"|([-+]?(?:nan|inf(?:inity)?)))"  # or nan/inf, which take no unit ("level: info" is no number)
    r"(?=[\s;|)\]}/\"']|,(?!\d)|$)",  # a comma then a digit: more number, not the pair's end
    re.IGNORECASE,
)


class JsonlParser(Parser):
    """Parser for JSON-lines output: one JSON object per line; other lines are ignored."""

    name = "jsonl"

    def __init__(self) -> None:
        self._clock = StepClock()

    def feed(self, line: str) -> list[Item]:
        if "\r" in line:
            line = finished_line(line)
        if line[:1] != "{" and line.lstrip()[:1] != "{":
            return []
        parsed = json_object(line)
        return [] if parsed is None else _emit(self._clock, *parsed)

    def finish(self) -> list[Item]:
        return self._clock.finish()

    def poll(self) -> list[Item]:
        return self._clock.expire()

    def go_live(self) -> None:
        super().go_live()
        self._clock.provisional = True


class GenericParser(Parser):
    """Fallback parser: name=value and name: value pairs anywhere, and JSON objects."""

    name = "generic"

    def __init__(self) -> None:
        self._clock = StepClock()

    def feed(self, line: str) -> list[Item]:
        if "\r" in line:
            line = finished_line(line)
        if "=" not in line and ":" not in line:
            return []
        return _emit(self._clock, *generic_metrics(line))

    def finish(self) -> list[Item]:
        return self._clock.finish()

    def poll(self) -> list[Item]:
        return self._clock.expire()

    def go_live(self) -> None:
        super().go_live()
        self._clock.provisional = True


def generic_metrics(line: str) -> tuple[int | None, dict[str, float]]:
    """The step (None when the line has none) and the metrics that ``generic`` reads in one finished line."""
    if len(line) > MAX_LINE_CHARS:
        return None, {}
    if line.lstrip()[:1] == "{":
        parsed = json_object(line)
        if parsed is not None:
            return parsed
    leading = _LEADING_STEP.match(line)
    step = to_count(leading[1]) if leading else None
    values: dict[str, float] = {}
    for key, number, special in _PAIR.findall(line):
        value = float(number.replace(",", "") if "," in number else number or special)
        if key.lower() in STEP_FIELDS:  # a step field is never a metric, even when it is no valid step
            step = step_from(value) if step is None else step
            continue
        values[key] = value
    return step, values


def json_object(line: str) -> tuple[int | None, dict[str, float]] | None:
    """The step and numeric fields of a JSON object line, or None when the line is no JSON object.

    Nested objects are flattened with "/" ({"train": {"loss": 2}} gives "train/loss"); strings, booleans,
    lists and nulls are not metrics. NaN, Infinity and -Infinity (as Python's json writes them) are numbers.
    """
    if len(line) > MAX_LINE_CHARS:
        return None
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    step: int | None = None
    values: dict[str, float] = {}
    for key, value in obj.items():
        if str(key).lower() in STEP_FIELDS:  # a step field is never a metric, even when it is no valid step
            step = step_from(value) if step is None else step
            continue
        _add_number(str(key), value, values)
    return step, values


def _add_number(name: str, value: Any, out: dict[str, float]) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        try:
            out[name] = float(value)
        except OverflowError:  # an integer too large for a float
            out[name] = math.inf if value > 0 else -math.inf
    elif isinstance(value, dict):
        for key, inner in value.items():
            _add_number(f"{name}/{key}", inner, out)


def _emit(clock: StepClock, step: int | None, values: dict[str, float]) -> list[Item]:
    if values:
        clock.epoch_of(values)
    if step is None:
        return clock.implicit(values) if values else []
    logged = clock.seen(step)
    if logged is None:
        return []
    items = clock.release(logged) if clock.held else []
    if values:
        items.append(Metrics(logged, values))
    return items
