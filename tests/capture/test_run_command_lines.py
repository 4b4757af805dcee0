"""``LineFeeder``, the part of ``expertrack run`` and ``reparse`` that turns output bytes into parser items:
line splitting across chunks, bad bytes, overlong lines, and when the parser is chosen."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from expertrack.capture import tracker
from expertrack.capture.child import STDERR, STDOUT
from expertrack.capture.parsers import ConfigItems, Metrics
from expertrack.capture.tracker import Console, LineFeeder, OutputTracker

STEP = "step {s:4d}/10: train loss {loss:f} (12.0 ms, 1000 tok/s)\n"


def feed_all(feeder: LineFeeder, chunks: list[bytes]) -> list[object]:
    items: list[object] = []
    for chunk in chunks:
        items += feeder.feed(chunk)
    return items + feeder.finish()


def metrics(items: list[object], key: str) -> list[tuple[int, float]]:
    return [(i.step, i.values[key]) for i in items if isinstance(i, Metrics) and key in i.values]


def test_lines_split_across_chunks_are_joined() -> None:
    text = b"".join(STEP.format(s=s, loss=1.0 / s).encode() for s in range(1, 4))
    chunks = [text[i : i + 7] for i in range(0, len(text), 7)]  # every line cut in several places
    items = feed_all(LineFeeder("gpt2-cuda", announce=print), chunks)
    assert [value for _, value in metrics(items, "train_loss")] == pytest.approx([1.0, 0.5, 1 / 3])


def test_invalid_utf8_and_carriage_returns_do_not_hide_metrics() -> None:
    chunks = [b"\xff\xfe garbage\n", b"loss=\xe9 1\n", b"step=1 loss=2.5\r\n", b"step=2 loss=1.5"]
    items = feed_all(LineFeeder("generic", announce=print), chunks)
    assert metrics(items, "loss") == [(1, 2.5), (2, 1.5)]  # the last line has no newline: read at the end


def test_coloured_lines_are_read_as_the_text_on_screen() -> None:
    green, bold, reset, title = b"\x1b[32m", b"\x1b[1;38;5;208m", b"\x1b[0m", b"\x1b]0;training\x07"
    table = b"| parameter | value |\n| " + bold + b"batch size" + reset + b" | 4 |\n"
    steps = b"".join(
        green + STEP.format(s=s, loss=2.0 / s).rstrip("\n").encode() + reset + b"\x1b[K\n"
        for s in range(1, tracker.DETECT_MIN_LINES)
    )
    said: list[str] = []
    feeder = LineFeeder(None, announce=said.append)
    items = feed_all(feeder, [title + table, steps])
    assert said == ["parsing output as gpt2-cuda"]
    assert [value for _, value in metrics(items, "train_loss")][:2] == pytest.approx([2.0, 1.0])
    assert any(isinstance(i, ConfigItems) and i.values.get("batch size") == 4 for i in items)


def test_an_overlong_line_is_skipped_and_the_next_line_is_read() -> None:
    feeder = LineFeeder("generic", announce=print)
    huge = [b"loss=9 " + b"y" * 65536] * 160  # 10 MiB with no newline, arriving in pieces
    items = feed_all(feeder, [*huge, b"z\nstep=3 loss=0.25\n"])
    assert metrics(items, "loss") == [(3, 0.25)]
    assert feeder.lines == 2


def test_a_progress_bar_redrawn_past_the_line_limit_gives_its_last_drawing() -> None:
    """tqdm/Lightning redraw a bar with "\\r" until its newline: parsers read only the last drawing."""
    bar = "\rEpoch 0: 37%|####| {i}/4000 [00:10<00:00, 150.00it/s, v_num=0, train_loss={loss:.3f}]"
    redraws = "".join(bar.format(i=i, loss=1 - i / 10_000) for i in range(4000)).encode()
    assert len(redraws) > tracker.MAX_LINE_BYTES
    chunks = [redraws[i : i + 4096] for i in range(0, len(redraws), 4096)]
    end = bar.format(i=4000, loss=0.5).encode() + b"\r\n" + b"step=1 loss=0.25\n"
    for pieces in (chunks, [redraws]):  # read live in small pieces, or by reparse in one
        feeder = LineFeeder("generic", announce=print)
        items = feed_all(feeder, [*pieces, end])
        assert metrics(items, "train_loss") == [(1, 0.5)]  # held until the first step, then at it
        assert metrics(items, "loss") == [(1, 0.25)]
        assert feeder.lines == 2


def test_a_line_over_the_limit_after_its_last_carriage_return_is_still_skipped() -> None:
    feeder = LineFeeder("generic", announce=print)
    items = feed_all(feeder, [b"loss=1\r", b"loss=9 " + b"y" * tracker.MAX_LINE_BYTES, b"\nstep=3 loss=0.25\n"])
    assert metrics(items, "loss") == [(3, 0.25)]


def test_a_table_grid_before_generic_metric_lines_does_not_choose_llmc() -> None:
    grid = b"+-----+-------+\n| hyperparam | value |\n+=====+=======+\n| lr | 0.001 |\n+-----+-------+\n"
    lines = b"".join(b"epoch: 0, step: %d, loss: %.3f, lr: 0.001\n" % (i, 2 - i / 100) for i in range(60))
    said: list[str] = []
    items = feed_all(LineFeeder(None, announce=said.append), [grid, lines])
    assert said == ["parsing output as generic"]
    assert [s for s, _ in metrics(items, "loss")] == list(range(60))


def test_the_parser_is_detected_once_enough_lines_show_the_format() -> None:
    said: list[str] = []
    feeder = LineFeeder(None, announce=said.append)
    table = b"| parameter | value |\n| batch size | 4 |\n"
    steps = b"".join(STEP.format(s=s, loss=2.0).encode() for s in range(1, tracker.DETECT_MIN_LINES))
    items = feeder.feed(table + steps)
    assert said == ["parsing output as gpt2-cuda"]
    assert feeder.parser_name == "gpt2-cuda"
    # the lines held while detecting are not lost
    assert [s for s, _ in metrics(items, "train_loss")] == list(range(tracker.DETECT_MIN_LINES - 1))
    assert any(isinstance(i, ConfigItems) and i.values.get("batch size") == 4 for i in items)


def test_free_text_falls_back_to_generic_after_many_lines() -> None:
    said: list[str] = []
    feeder = LineFeeder(None, announce=said.append)
    items = feeder.feed(b"".join(b"epoch 1 acc=%d\n" % i for i in range(tracker.DETECT_MAX_LINES - 1)))
    assert items == [] and feeder.parser_name is None  # still waiting for a known format
    items = feeder.feed(b"acc=99\n")
    assert said == ["parsing output as generic"]
    assert len(metrics(items, "acc")) == tracker.DETECT_MAX_LINES


def test_a_quiet_program_gets_its_parser_when_the_wait_runs_out(monkeypatch: pytest.MonkeyPatch) -> None:
    feeder = LineFeeder(None, announce=lambda message: None)
    feeder.feed(STEP.format(s=1, loss=3.0).encode())
    assert feeder.poll() == []  # too early to trust one line
    monkeypatch.setattr(tracker, "DETECT_MIN_SECONDS", 0.0)
    assert metrics(feeder.poll(), "train_loss") == [(0, 3.0)]
    assert feeder.parser_name == "gpt2-cuda"


def test_no_output_chooses_silently() -> None:
    said: list[str] = []
    feeder = LineFeeder(None, announce=said.append)
    assert feeder.finish() == []
    assert said == [] and feeder.lines == 0


class _FailingRun:
    """A run whose store has gone bad: every call raises."""

    def log(self, *args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    def append_file(self, *args: object) -> None:
        raise OSError("disk full")


def test_a_tracker_that_fails_stops_tracking_but_keeps_draining(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracker, "QUEUE_BYTES", 4096)
    said: list[str] = []
    output = OutputTracker("generic", announce=said.append)
    output.start(_FailingRun())  # type: ignore[arg-type]
    for step in range(2000):  # ~40 KB, ten times what the queue holds: must never block
        output.on_output(STDOUT, b"step=%d loss=1.0\n" % step)
    output.close(timeout=30)
    assert said == ["tracking stopped (OSError: disk full); the command's output still passes through"]


def test_a_burst_of_short_lines_is_queued_without_waiting_for_the_parser() -> None:
    # a read is often one short line: the bound is in bytes, so 100,000 of them queue at once
    queue = tracker.ByteQueue(budget=16 << 20)
    for step in range(100_000):
        queue.put((STDOUT, b"step %d\n" % step), 12)
    assert queue.get(timeout=0) == (STDOUT, b"step 0\n")


def test_the_byte_queue_waits_only_when_its_budget_is_used() -> None:
    queue = tracker.ByteQueue(budget=10)
    queue.put("a", 6)
    done = threading.Event()
    threading.Thread(target=lambda: (queue.put("b", 6), done.set()), daemon=True).start()
    assert not done.wait(0.2)  # over budget: the producer waits
    assert queue.get(timeout=1) == "a"
    assert done.wait(5)  # room again: it goes on
    assert queue.get(timeout=1) == "b"


def test_the_console_keeps_lines_whole_when_streams_interleave() -> None:
    console = Console()
    for stream, data in [
        (STDERR, b"warning: slow"),  # Python's print to stderr: the text...
        (STDOUT, b"step 1\nstep "),
        (STDERR, b"\n"),  # ...then its newline
        (STDOUT, b"2\n"),
        (STDERR, b"progress 50%\r"),  # no newline: goes in at the next save
    ]:
        console.add(stream, data)
    merged, stdout = console.take()
    assert merged == b"step 1\nwarning: slow\nstep 2\nprogress 50%\r"
    assert stdout == b"step 1\nstep 2\n"
    assert console.take() == (b"", b"")


def test_a_slow_program_without_steps_shows_its_first_points_within_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    from expertrack.capture.parsers import base

    now = [1000.0]
    monkeypatch.setattr(base, "time", SimpleNamespace(monotonic=lambda: now[0]))  # this module's clock only
    feeder = LineFeeder("generic", announce=print)
    assert feeder.feed(b"loss=2.5 acc=0.1\n") == []  # held: a step line may still come and own it
    assert feeder.poll() == []
    now[0] += base.HELD_STEPLESS_S
    assert metrics(feeder.poll(), "loss") == [(0, 2.5)]  # quiet long enough: counted as step 0
    assert metrics(feeder.feed(b"loss=2.0\n"), "loss") == [(1, 2.0)]  # and on, one step a line
