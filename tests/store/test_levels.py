"""Chart reads from precomputed levels (store/levels.py): the same picks as from the raw points, every spike kept."""

from __future__ import annotations

import base64
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import expertrack
from expertrack import writer
from expertrack.dashboard.data import series
from expertrack.store import SQLiteStore, chunks
from expertrack.store.levels import Envelope
from tests.store.conftest import ReadStore


def crafted(n: int) -> tuple[np.ndarray, dict[int, float]]:
    """A smooth series with spikes on block edges (last and first point of a block), NaN, +inf and -inf; no two
    spikes of one direction close together (of two in one bucket, only the taller can show)."""
    values = 1.0 + np.sin(np.arange(n) / 500.0)
    spikes = {63: 50.0, 64: -50.0, 8191: 60.0, 8192: -60.0, 1000: np.inf, 2047: -np.inf, n // 2: 70.0, n - 1: 80.0}
    for index, value in spikes.items():
        values[index] = value
    values[3001] = np.nan
    values[5000:5200] = np.nan  # whole blocks of NaN
    return values, spikes


def unpack(packed: str) -> np.ndarray:
    """A packed array of a dashboard answer (base64 of little-endian float64)."""
    return np.frombuffer(base64.b64decode(packed), "<f8")


def bits(value: float) -> bytes:
    return np.float64(value).tobytes()


def expected_picks(values: np.ndarray) -> set[int]:
    """A bucket's picks from its raw points, written plainly: first, last, min and max (NaN ignored), first NaN."""
    nans = np.isnan(values)
    low, high = np.where(nans, np.inf, values), np.where(nans, -np.inf, values)
    picks = {0, len(values) - 1, int(np.argmin(low)), int(np.argmax(high))}
    if nans.any():
        picks.add(int(np.argmax(nans)))
    return picks


def assert_chart_exact(store: SQLiteStore, run_id: str, key: str, buckets: int) -> Envelope:
    """The chart from levels equals, bucket by bucket, the picks from every raw point, and its buckets tile the
    whole series (no point left out of every bucket)."""
    steps, _times, values = store.read_scalars(run_id, key)
    envelope = store.read_envelope(run_id, key)
    assert envelope is not None and envelope.points == len(steps)
    keep = envelope.chart(buckets)
    per = -(-envelope.block_count // buckets)
    bucket_of = envelope.blocks[keep] // per
    covered = 0
    for bucket in np.unique(bucket_of):
        mine = keep[bucket_of == bucket]
        lo, hi = np.searchsorted(steps, envelope.steps[mine[0]]), np.searchsorted(steps, envelope.steps[mine[-1]])
        raw = set((int(steps[lo + i]), bits(values[lo + i])) for i in expected_picks(values[lo : hi + 1]))
        got = set((int(envelope.steps[i]), bits(envelope.values[i])) for i in mine)
        assert got == raw, f"bucket {bucket}"
        covered += hi + 1 - lo
    assert covered == len(steps)
    return envelope


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 1,000 points (not a multiple of a block) and a seal at every flush: many partial blocks."""
    monkeypatch.setattr(chunks, "CHUNK_POINTS", 1000)
    monkeypatch.setattr(writer, "SEAL_FLUSHES", 1)


def test_chart_from_levels_equals_raw_picks_with_edges_nan_inf_and_repeated_steps(
    tracking_dir: Path, small_chunks: None, read_store: ReadStore
) -> None:
    n = 20_000
    values, spikes = crafted(n)
    run = expertrack.init(project="levels", mirror="off")
    for step, value in enumerate(values.tolist()):
        run.log({"v": value}, step=step)
        if step % 3001 == 2999:
            run.flush()  # a seal ends a chunk here ...
            run.log({"v": 1e9}, step=step)  # ... and the step repeats in the next chunk: this value replaces it
            run.flush()
            run.log({"v": value}, step=step)  # and this one replaces it again, in the chunk after
    run.finish()
    with read_store() as store:
        chunk_count, levelled = store.conn.execute(
            "SELECT (SELECT COUNT(*) FROM scalar_chunks), (SELECT COUNT(*) FROM scalar_levels)"
        ).fetchone()
        assert chunk_count > 20 and levelled == chunk_count  # every sealed chunk got its level
        for buckets in (7, 30, 61):
            envelope = assert_chart_exact(store, run.id, "v", buckets)
            assert 1e9 not in envelope.values  # a replaced value is never drawn
        keep = envelope.chart(61)
        drawn = dict(zip(envelope.steps[keep].tolist(), envelope.values[keep].tolist()))
        assert {step: drawn.get(step) for step in spikes} == spikes


def test_unsealed_pieces_of_a_killed_writer_chart_like_raw(tracking_dir: Path, read_store: ReadStore) -> None:
    """A writer killed with SIGKILL leaves its newest points in pieces, never sealed: they chart with the rest."""
    script = textwrap.dedent(
        """
        import os, signal, sys
        import numpy as np
        import expertrack
        run = expertrack.init(project="levels", name="killed", mirror="off")
        for step in range(40_000):
            run.log({"v": 90.0 if step == 39_990 else float(np.sin(step / 300))}, step=step)
            if step % 1000 == 999:
                run.flush()
        run.flush()
        print(run.id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr
    run_id = child.stdout.strip()
    with read_store() as store:
        assert store.conn.execute("SELECT COUNT(*) FROM scalar_pieces").fetchone()[0] > 0
        envelope = assert_chart_exact(store, run_id, "v", 20)
        assert envelope.points == 40_000 and 90.0 in envelope.values[envelope.chart(20)]


def test_store_made_before_levels_gets_them_when_opened(tracking_dir: Path) -> None:
    values, _ = crafted(40_000)
    run = expertrack.init(project="levels", mirror="off")
    for step, value in enumerate(values.tolist()):
        run.log({"v": value}, step=step)
    run.finish()
    path = tracking_dir / "store.db"
    with sqlite3.connect(path) as conn:  # what a store of schema 4 looks like: no levels table
        conn.execute("DROP TABLE scalar_levels")
        conn.execute("DROP TABLE run_ranks")  # nor migration 6's table (its keys.rank is rebuilt from keys)
        conn.execute("PRAGMA user_version = 4")
    with SQLiteStore(path, readonly=True) as store:  # a reader upgrades it (as for every migration)
        assert store.version >= 5
        count = store.conn.execute("SELECT COUNT(*) FROM scalar_chunks").fetchone()[0]
        assert store.conn.execute("SELECT COUNT(*) FROM scalar_levels").fetchone()[0] == count > 1
        assert_chart_exact(store, run.id, "v", 50)


def test_chunk_without_level_is_read_raw(tracking_dir: Path) -> None:
    """A chunk sealed by a writer that ran old code during the migration has no level: read raw, same answer."""
    values, _ = crafted(40_000)
    run = expertrack.init(project="levels", mirror="off")
    for step, value in enumerate(values.tolist()):
        run.log({"v": value}, step=step)
    run.finish()
    with SQLiteStore(tracking_dir / "store.db") as store:
        store.conn.execute("DELETE FROM scalar_levels WHERE seq = 1")
        assert_chart_exact(store, run.id, "v", 40)


def test_two_writers_of_one_run_chart_like_raw(tracking_dir: Path, read_store: ReadStore) -> None:
    """Two processes log one run at once, one key on interleaved steps: their chunks overlap, so the chart reads
    every point (and sorts them); each writer's own key still charts from levels."""
    script = textwrap.dedent(
        """
        import pathlib, sys, time
        import expertrack
        parity = int(sys.argv[1])
        run = expertrack.init(project="levels", id="twowriters", resume="allow", mirror="off")
        # both runs open before either logs: a writer that resumed a run whose steps went past its own would see
        # its lower steps refused (as a resumed run must), which is not what this test is about
        here = pathlib.Path(sys.argv[2])
        (here / f"ready{parity}").touch()
        while not (here / f"ready{1 - parity}").exists():
            time.sleep(0.01)
        for step in range(parity, 30_000, 2):
            spike = {10_000: 100.0, 20_001: -100.0}.get(step, float(parity))
            run.log({"v": spike, "own" + str(parity): float(step % 777)}, step=step)
            if step % 2000 < 2:
                run.flush()
        run.finish()
        """
    )
    children = [
        subprocess.Popen([sys.executable, "-c", script, str(p), str(tracking_dir)], stderr=subprocess.PIPE)
        for p in (0, 1)
    ]
    for child in children:
        assert child.wait(timeout=120) == 0, child.stderr.read() if child.stderr else ""
    with read_store() as store:
        assert store.read_envelope("twowriters", "v") is None
        for key in ("own0", "own1"):
            assert_chart_exact(store, "twowriters", key, 20)
    api = expertrack.Api(tracking_dir)
    answer = series(api.run("twowriters"), "v", 20, with_times=False)
    api.close()
    assert answer is not None and answer["matched"] == 30_000
    drawn = dict(zip(unpack(answer["steps"]).tolist(), unpack(answer["values"]).tolist()))
    assert drawn[10_000] == 100.0 and drawn[20_001] == -100.0


def test_reads_without_times_give_the_same_points_from_chunks_and_pieces(
    tracking_dir: Path, read_store: ReadStore
) -> None:
    """``times=False`` (a chart on a step axis) leaves the times unread: the same steps and values, replaced
    values included, from sealed chunks and from the pieces of a run still running."""
    run = expertrack.init(project="levels", mirror="off")
    for step in range(3000):
        run.log({"v": float(step % 97)}, step=step)
    run.finish()
    again = expertrack.init(project="levels", id=run.id, resume="allow", mirror="off")
    again.log({"v": -5.0}, step=3000)
    again.flush()
    again.log({"v": -6.0}, step=3000)  # replaces the point already in a piece
    again.log({"v": 1.0}, step=3001)
    again.flush()
    with read_store() as store:
        assert store.conn.execute("SELECT COUNT(*) FROM scalar_pieces").fetchone()[0] > 0
        for after in (None, 2999):
            steps, times, values = store.read_scalars(run.id, "v", after_step=after)
            bare_steps, no_times, bare_values = store.read_scalars(run.id, "v", after_step=after, times=False)
            assert no_times is None and len(times) == len(steps)
            assert np.array_equal(bare_steps, steps) and np.array_equal(bare_values, values)
        assert values[-2:].tolist() == [-6.0, 1.0]
    again.finish()
