"""The items a parser yields, the Parser base class, and the small helpers every format shares.

A parser is fed the child's output one line at a time (decoded with ``errors="replace"``, without its
trailing newline) and returns the items that line completed. It never raises on bad input: a line it cannot
read is ignored. One instance parses one run, so parsers may keep state (the last step, an open table).
"""

from __future__ import annotations

import math
import re
import time
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
    live: bool = False  # see ``go_live``

    def go_live(self) -> None:
        """Parse a live program's output: a value whose step a later line decides is returned at once, at a
        provisional step, and returned again at its own step once that line comes (see ``PROVISIONAL_STEP``).

        ``expertrack run`` calls this so that every value reaches the store within a second of its line, however
        slow the program (issue 18); ``reparse`` does not, since it has every line at once and never needs to guess.
        """
        self.live = True

    def feed(self, line: str) -> list[Item]:
        """Parse one line of output (no trailing newline) and return the items it completed."""
        raise NotImplementedError

    def finish(self) -> list[Item]:
        """Signal the end of output and return anything held back; the default holds nothing."""
        return []

    def poll(self) -> list[Item]:
        """Called while the output is quiet (about once a second): anything held back that has waited long
        enough to be logged as it is; the default holds nothing."""
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


# Where a live parser puts a value whose step is not known yet: the step a new run starts at. When its own step
# turns out to be this one, the value is logged again there and replaces itself (the store keeps the last value
# logged at a step, so a correction lands in place); when it turns out later, the value is logged again at that
# step, and the provisional point stays where it was shown (nothing recorded is ever deleted).
PROVISIONAL_STEP = 0

# Step-less lines held before the first line with a step; a program that prints this many is taken to have no
# steps at all, and they are counted as steps 0, 1, 2, ... (a longer numeric preamble would push the run past its
# first step lines, which the run then refuses).
MAX_HELD_STEPLESS = 20
HELD_STEPLESS_S = 5.0  # ... or that waits this long for a step (checked by ``poll``, while the output is quiet)


class StepClock:
    """Step bookkeeping for formats whose lines may or may not carry a step (docs/parsers.md, "Steps").

    A line with a step sets it; a line without one takes the last step seen. Step-less lines printed before
    the first step are held, and logged at that step when it comes (``dataset size: 50000`` printed before
    ``step 0 | loss: 2.3`` belongs at step 0; counting it as step 0 would make step 0 a refused step 1). A
    program that prints MAX_HELD_STEPLESS of them, or prints none for HELD_STEPLESS_S after the first, or ends,
    before any step has no steps: its step-less lines are counted 0, 1, 2, ..., as ``wandb.log`` does without
    ``step=`` (so a slow program's first points still show within seconds).

    A step counter that restarts while the epoch advances (``epoch: 2, step: 0`` after ``step: 200``) is a
    per-epoch counter: its steps continue after the highest one (step 0 of epoch 2 is logged at 201), so
    later epochs are neither refused nor written over the earlier ones. A counter that goes back without an
    epoch advancing is left as printed (the run refuses its lower steps and warns), but a line at the highest
    step while it is behind is dropped: it belongs to another pass over the steps and would overwrite.
    """

    __slots__ = (
        "_behind",
        "_count",
        "_epoch",
        "_epoch_advanced",
        "_highest",
        "_offset",
        "held",
        "held_since",
        "last",
        "provisional",
    )

    def __init__(self) -> None:
        self.last: int | None = None
        self.held: list[dict[str, float]] = []  # step-less values waiting for the first step
        self.held_since = 0.0  # time.monotonic() of the first held line
        self.provisional = False  # a live program's held values are also returned at once (Parser.go_live)
        self._count = 0  # steps counted for a program without steps
        self._highest = -1
        self._offset = 0  # added to printed steps once a per-epoch counter restarted
        self._behind = False
        self._epoch: float | None = None
        self._epoch_advanced = False  # since the last line with a step

    def seen(self, printed: int) -> int | None:
        """The step a line printed with step ``printed`` is logged at, or None when it must not be logged.

        Call ``epoch_of`` with the line's values first, so that a per-epoch counter's restart is recognised,
        and ``release`` after, when ``held`` is not empty.
        """
        step = printed + self._offset
        if step > self._highest:
            self._highest, self._behind = step, False
        elif step < self._highest:
            if self._epoch_advanced:
                self._offset = self._highest + 1 - printed
                step = self._highest = self._highest + 1
            else:
                self._behind = True
        elif self._behind:
            return None
        self._epoch_advanced = False
        self.last = step
        return step

    def release(self, step: int) -> list[Item]:
        """The held step-less values, at ``step``: the first step seen."""
        items: list[Item] = [Metrics(step, values) for values in self.held]
        self.held = []
        return items

    def implicit(self, values: dict[str, float]) -> list[Item]:
        """The items of a step-less line: at the last step seen, held until the first one, or counted."""
        if self.last is not None:
            return [Metrics(self.last, values)]
        if self._count:  # a program without steps
            self._count += 1
            return [Metrics(self._count - 1, values)]
        if not self.held:
            self.held_since = time.monotonic()
        self.held.append(values)
        if len(self.held) >= MAX_HELD_STEPLESS:
            return self.finish()
        return [Metrics(PROVISIONAL_STEP, values)] if self.provisional else []

    def expire(self) -> list[Item]:
        """The held values, counted as steps, once they have waited HELD_STEPLESS_S for a step (else nothing)."""
        if self.held and time.monotonic() - self.held_since >= HELD_STEPLESS_S:
            return self.finish()
        return []

    def finish(self) -> list[Item]:
        """The held values of a program that printed no step, counted 0, 1, 2, ..."""
        items: list[Item] = [Metrics(self._count + index, values) for index, values in enumerate(self.held)]
        self._count += len(self.held)
        self.held = []
        return items

    def epoch_of(self, values: dict[str, float]) -> None:
        """Note the ``epoch`` field of a line's values, if it has one (any case)."""
        epoch = values.get("epoch")
        if epoch is None:
            epoch = values.get("Epoch", values.get("EPOCH"))
            if epoch is None:
                return
        if self._epoch is not None and epoch > self._epoch:
            self._epoch_advanced = True
        self._epoch = epoch


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
