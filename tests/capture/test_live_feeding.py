"""A live program's output (``LineFeeder(live=True)``, what ``expertrack run`` uses): nothing a parser reads waits
for a later line or a long detection window; a value whose step a later line decides is returned at once at a
provisional step and returned again, at its own step, when that line comes (issue 18, item 2)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from expertrack.capture import tracker
from expertrack.capture.parsers import Metrics, get_parser
from expertrack.capture.parsers.base import MAX_HELD_STEPLESS
from expertrack.capture.tracker import LineFeeder


def metrics(items: list[object], key: str) -> list[tuple[int, float]]:
    return [(i.step, i.values[key]) for i in items if isinstance(i, Metrics) and key in i.values]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The tracker module's clock, moved by hand (the parsers' own clock is left alone)."""
    now = [1000.0]
    monkeypatch.setattr(tracker, "time", SimpleNamespace(monotonic=lambda: now[0]))
    return now


def test_free_text_with_values_is_parsed_once_its_burst_is_over(clock: list[float]) -> None:
    said: list[str] = []
    feeder = LineFeeder(None, announce=said.append, live=True)
    assert feeder.feed(b"starting up\nepoch=1 step=1 acc=0.5\n") == []  # the lines printed with it still count
    clock[0] += tracker.DETECT_VALUE_SECONDS + 0.01
    assert metrics(feeder.poll(), "acc") == [(1, 0.5)]  # not after 50 lines or 15 s, as before issue 18
    assert said == ["parsing output as generic"]


def test_lines_without_any_value_may_still_wait_for_a_known_format(clock: list[float]) -> None:
    feeder = LineFeeder(None, announce=print, live=True)
    feeder.feed(b"loading the data set\nbuilding the model\n")
    clock[0] += 5.0
    assert feeder.poll() == [] and feeder.parser_name is None  # nothing to show yet, so nothing is late
    items = feeder.feed(b"iter 0: loss 4.1, time 12.00ms, mfu -100.00%\n")
    clock[0] += tracker.DETECT_VALUE_SECONDS + 0.01
    assert metrics(items + feeder.poll(), "train_loss") == [(0, 4.1)]
    assert feeder.parser_name == "nanogpt"


def test_reparse_is_not_live_and_still_waits_for_the_format(clock: list[float]) -> None:
    feeder = LineFeeder(None, announce=print)
    feeder.feed(b"epoch=1 step=1 acc=0.5\n")
    clock[0] += tracker.DETECT_VALUE_SECONDS + 0.01
    assert feeder.poll() == [] and feeder.parser_name is None


def test_a_stepless_value_shows_at_once_and_lands_at_the_first_step() -> None:
    feeder = LineFeeder("generic", announce=print, live=True)
    assert metrics(feeder.feed(b"dataset_size=50000\n"), "dataset_size") == [(0, 50000.0)]  # provisional
    items = feeder.feed(b"step=0 loss=2.5\n")
    assert metrics(items, "dataset_size") == [(0, 50000.0)]  # its step is 0: logged again there, in place
    assert metrics(items, "loss") == [(0, 2.5)]


def test_stepless_values_of_a_program_without_steps_are_corrected_to_their_counted_steps() -> None:
    feeder = LineFeeder("generic", announce=print, live=True)
    shown = [metrics(feeder.feed(b"acc=%d\n" % i), "acc") for i in range(MAX_HELD_STEPLESS - 1)]
    assert shown == [[(0, float(i))] for i in range(MAX_HELD_STEPLESS - 1)]  # each shown at once, at step 0
    counted = metrics(feeder.feed(b"acc=99\n"), "acc")  # now known to have no steps: counted 0, 1, 2, ...
    assert counted == [(i, float(i)) for i in range(MAX_HELD_STEPLESS - 1)] + [(MAX_HELD_STEPLESS - 1, 99.0)]


def test_an_llmc_evaluation_before_the_first_train_line_shows_at_once() -> None:
    parser = get_parser("llmc")
    parser.go_live()
    assert metrics(parser.feed("val loss 4.5"), "val_loss") == [(0, 4.5)]
    items = parser.feed(
        "step    1/10 | loss 4.400000 (+0.00z)| norm 1.0000 (+0.00z)| lr 1.00e-04 | 10.00 ms | "
        "40.0% bf16 MFU | 1000 tok/s"
    )
    assert metrics(items, "val_loss") == [(0, 4.5)]  # the first train step is 0: in place
    assert metrics(items, "train_loss") == [(0, 4.4)]
