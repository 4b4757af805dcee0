"""The store on its own: chunked series, reads after a step, run lookup, migrations, downsampling."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import expertrack
from expertrack.store import SQLiteStore
from expertrack.store.chunks import CHUNK_POINTS, SEAL_FLUSHES
from expertrack.store.downsample import minmax_indices
from expertrack.store.sqlite_schema import LATEST_VERSION, MIGRATIONS
from tests.store.conftest import ReadStore


def test_long_series_spans_chunks_and_reads_back_exactly(tracking_dir: Path, read_store: ReadStore) -> None:
    n = CHUNK_POINTS * 2 + 123
    run = expertrack.init(project="chunks")
    for i in range(n):
        run.log({"v": float(i) * 0.5})
        if i % 5000 == 0:
            run.flush()  # force tail rewrites in the middle of chunks
    run.finish()
    with read_store() as store:
        steps, times, values = store.read_scalars(run.id, "v")
        assert steps.tolist() == list(range(n))
        assert np.array_equal(values, np.arange(n) * 0.5)
        assert np.all(np.diff(times) >= 0)
        chunk_sizes = [r[0] for r in store.conn.execute("SELECT n FROM scalar_chunks ORDER BY seq")]
        assert chunk_sizes[:2] == [CHUNK_POINTS, CHUNK_POINTS] and sum(chunk_sizes) == n
        tail_steps = store.read_scalars(run.id, "v", after_step=n - 10)[0]
        assert tail_steps.tolist() == list(range(n - 9, n))


def test_slow_series_goes_to_pieces_then_seals_small_chunks(tracking_dir: Path, read_store: ReadStore) -> None:
    run = expertrack.init(project="chunks")
    total = SEAL_FLUSHES * 2 + 3
    for i in range(total):
        run.log({"slow": float(i)})
        run.flush()  # one point per flush, like a metric logged once a second
        if i == total - 1:  # before finish: the last points are in pieces, and readers see them
            with read_store() as store:
                assert store.conn.execute("SELECT COUNT(*) FROM scalar_pieces").fetchone()[0] >= 1
                assert store.read_scalars(run.id, "slow")[2].tolist() == [float(i) for i in range(total)]
                assert store.point_counts(run.id) == {"slow": total}
                assert store.last_step(run.id) == total - 1
                assert store.scalar_keys(run.id) == ["slow"]
    run.finish()
    with read_store() as store:
        sizes = [r[0] for r in store.conn.execute("SELECT n FROM scalar_chunks ORDER BY seq")]
        # sealed about every SEAL_FLUSHES flushes (a cadence flush may fall between two of ours), then at finish
        assert len(sizes) == 3 and sum(sizes) == total and max(sizes) <= SEAL_FLUSHES + 1
        assert store.conn.execute("SELECT COUNT(*) FROM scalar_pieces").fetchone()[0] == 0
        assert store.read_scalars(run.id, "slow")[2].tolist() == [float(i) for i in range(total)]


def test_resumed_run_appends_after_sealed_chunks(tracking_dir: Path) -> None:
    run = expertrack.init(project="chunks", id="res00001")
    for i in range(100):
        run.log({"v": float(i)})
    run.finish()
    again = expertrack.init(project="chunks", id="res00001", resume="allow")
    for i in range(100, 150):
        again.log({"v": float(i)})
    again.finish()
    values = expertrack.Api(tracking_dir).run("res00001").scalars("v")[2]
    assert values.tolist() == [float(i) for i in range(150)]


def test_find_run_by_id_prefix_and_name(tracking_dir: Path) -> None:
    a = expertrack.init(project="p", name="alpha", id="abc12345")
    a.finish()
    b = expertrack.init(project="p", name="beta", id="abd99999")
    b.finish()
    c = expertrack.init(project="q", name="alpha", id="zzz00000")
    c.finish()
    api = expertrack.Api(tracking_dir)
    assert api.run("abc").id == "abc12345"
    assert api.run("beta").id == "abd99999"
    with pytest.raises(expertrack.AmbiguousRunError) as info:
        api.run("ab")
    assert {i for i, _n, _p in info.value.candidates} == {"abc12345", "abd99999"}
    with pytest.raises(expertrack.AmbiguousRunError, match="use an id"):
        api.run("alpha")
    with pytest.raises(expertrack.RunNotFoundError, match="no run matches 'nope'"):
        api.run("nope")
    assert [r.id for r in api.runs(project="p")] == ["abc12345", "abd99999"]
    assert [r.id for r in api.runs(filters={"name": "alpha"})] == ["abc12345", "zzz00000"]
    # a whole name beats an id prefix: `expertrack rm a` must never delete the run whose id starts with "a"
    short = expertrack.init(project="p", name="a", id="qqq11111")
    short.finish()
    assert api.run("a").id == "qqq11111"
    twice = expertrack.init(project="p", name="ab", id="rrr22222")
    twice.finish()
    assert api.run("ab").id == "rrr22222"  # was ambiguous between two id prefixes above


def test_filters_on_config_tags_and_group(tracking_dir: Path) -> None:
    expertrack.init(project="f", config={"model": {"experts": 8}}, tags=["moe"], group="g").finish()
    expertrack.init(project="f", config={"model": {"experts": 1}}, tags=["dense"], group="g").finish()
    api = expertrack.Api(tracking_dir)
    assert len(api.runs(filters={"config.model.experts": 8})) == 1
    assert len(api.runs(filters={"tags": "dense"})) == 1
    assert len(api.runs(filters={"group": "g", "state": "finished"})) == 2
    assert len(api.runs("my-team/f")) == 2  # wandb's entity/project path
    one = api.runs(filters={"tags": "moe"})[0]
    assert api.run(f"my-team/f/{one.id}").id == one.id  # wandb's entity/project/id path
    # wandb's query operators and unknown fields are refused, not silently matched against nothing
    with pytest.raises(ValueError, match=r"query operators such as \$gt are not supported"):
        api.runs(filters={"config.model.experts": {"$gt": 4}})
    with pytest.raises(ValueError, match=r"query operators such as \$or"):
        api.runs(filters={"$or": [{"tags": "moe"}, {"tags": "dense"}]})
    with pytest.raises(ValueError, match="unknown field 'display_name'"):
        api.runs(filters={"display_name": "x"})


def test_history_samples_keep_spikes(tracking_dir: Path) -> None:
    run = expertrack.init(project="h")
    rng = np.random.default_rng(0)
    values = rng.normal(size=50_000)
    values[12_345] = 1000.0
    values[40_000] = -1000.0
    for v in values:
        run.log({"loss": float(v)})
    run.finish()
    stored = expertrack.Api(tracking_dir).run(run.id)
    sampled = stored.history(["loss"], samples=1000)
    assert len(sampled) <= 1000 + 4
    assert sampled["loss"].max() == 1000.0 and sampled["loss"].min() == -1000.0
    assert len(stored.history(["loss"])) == 50_000


def test_migrations_are_numbered_and_recorded(tmp_path: Path) -> None:
    numbers = [n for n, _name, _sql in MIGRATIONS]
    assert numbers[0] == 1 and numbers == sorted(set(numbers))  # a gap is left for a migration merged later
    SQLiteStore(tmp_path / "s.db").close()
    conn = sqlite3.connect(tmp_path / "s.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"runs", "keys", "scalar_chunks", "arrays", "files", "mirror_state"} <= tables


def test_store_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "s.db").close()
    conn = sqlite3.connect(tmp_path / "s.db")
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    conn.close()
    with pytest.raises(expertrack.StoreError, match="newer expertrack"):
        SQLiteStore(tmp_path / "s.db", readonly=True)


def test_files_are_compressed_chunks_in_order(tracking_dir: Path) -> None:
    run = expertrack.init(project="files")
    run.append_file("console.log", b"line 1\n")
    run.flush()
    run.append_file("console.log", b"line 2\n" * 1000)
    run.attach_file("notes.txt", b"first")
    run.attach_file("notes.txt", b"second")
    run.finish()
    stored = expertrack.Api(tracking_dir).run(run.id)
    assert stored.file("console.log") == b"line 1\n" + b"line 2\n" * 1000
    assert stored.file("notes.txt") == b"second"
    assert stored.file("missing") is None
    assert stored.file_names() == ["console.log", "notes.txt"]


def test_delete_run_removes_everything(tracking_dir: Path) -> None:
    run = expertrack.init(project="rm")
    run.log({"x": 1.0, "a": np.ones(3)})
    run.append_file("console.log", b"x")
    run.finish()
    api = expertrack.Api(tracking_dir)
    api.delete_run(run.id)
    with SQLiteStore(tracking_dir / "store.db") as store:
        for table in ("runs", "keys", "scalar_chunks", "arrays", "files"):
            assert store.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0, table


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(allow_nan=True, allow_infinity=False, width=64), min_size=1, max_size=3000),
    st.integers(min_value=1, max_value=200),
)
def test_minmax_downsampling_keeps_every_extreme(values: list[float], buckets: int) -> None:
    array = np.array(values)
    picked = minmax_indices(array, buckets)
    assert np.all(np.diff(picked) > 0)  # sorted, unique
    assert picked[0] == 0 and picked[-1] == len(values) - 1
    limit = (5 if np.isnan(array).any() else 4) * buckets  # 4 a bucket, and its first NaN
    assert len(picked) <= max(limit, len(values)) and len(picked) <= len(values)
    finite = array[~np.isnan(array)]
    if finite.size:
        kept = array[picked]
        assert np.nanmax(kept) == finite.max() and np.nanmin(kept) == finite.min()
    if len(values) > 4 * buckets:
        size = -(-len(values) // buckets)
        for start in range(0, len(values), size):  # every bucket keeps its own min and max
            bucket = array[start : start + size]
            in_bucket = array[picked[(picked >= start) & (picked < start + size)]]
            if np.isnan(bucket).any():  # a NaN (a diverged step) is never sampled away
                assert np.isnan(in_bucket).any()
            if np.isnan(bucket).all():
                continue
            assert np.nanmax(in_bucket) == np.nanmax(bucket) and np.nanmin(in_bucket) == np.nanmin(bucket)


# Processes that each start a run in a new directory at the same moment, as a sweep's seeds do.
OPEN_AT = """
import sys, time
import expertrack
start = float(sys.argv[2])
while time.time() < start:
    pass
run = expertrack.init(project="sweep", dir=sys.argv[1], mirror="off")
run.log({"loss": 1.0})
run.finish()
print(run.dir)
"""


def test_processes_creating_one_store_at_once_all_use_it(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    for round_ in range(4):
        directory = tmp_path / f"round{round_}"
        start = str(time.time() + 1.0)  # every process is up by then, then they open the new store together
        procs = [
            subprocess.Popen([sys.executable, "-c", OPEN_AT, str(directory), start], stdout=subprocess.PIPE, text=True)
            for _ in range(5)
        ]
        dirs = [proc.communicate(timeout=60)[0].strip() for proc in procs]
        assert all(proc.returncode == 0 for proc in procs)
        assert dirs == [str(directory)] * 5  # none fell back to a temporary directory
        assert len(expertrack.Api(directory).runs()) == 5


def test_minmax_downsampling_keeps_a_lone_nan_and_its_point_budget() -> None:
    values = np.arange(1000, dtype=float)
    values[500] = np.nan  # one diverged step in the middle of a bucket
    picked = minmax_indices(values, 3)
    assert 500 in picked.tolist()
    assert len(picked) <= 5 * 3  # the short last bucket is sampled too, not kept whole


def test_overview_of_a_running_run_counts_the_points_still_in_pieces(tracking_dir: Path, read_store: ReadStore) -> None:
    run = expertrack.init(project="chunks")
    for i in range(10):
        run.log({"loss": float(10 - i), "nan_free": float(i)})
    assert run.flush()  # written as a piece, not yet sealed into chunks
    with read_store() as store:
        assert store.conn.execute("SELECT COUNT(*) FROM scalar_chunks").fetchone()[0] == 0
        overview = store.scalar_overview(run.id)
        assert list(overview) == ["loss", "nan_free"]
        loss = overview["loss"]
        assert (loss.points, loss.last_step, loss.last, loss.min, loss.max) == (10, 9, 1.0, 1.0, 10.0)
        assert store.point_counts(run.id, "loss") == {"loss": 10}
    run.finish()
    with read_store() as store:
        assert store.scalar_overview(run.id)["loss"].points == 10  # the same once sealed


RACE_INIT = """
import sys, time
import expertrack
start = float(sys.argv[1])
time.sleep(max(0.0, start - time.time()))  # every process calls init() at the same moment
run = expertrack.init(project="race", id=sys.argv[2], resume="allow", mirror="off", system_metrics=False)
run.log({"v": float(sys.argv[3])}, step=int(sys.argv[3]))
run.finish()
"""


def test_processes_starting_one_run_id_at_once_all_write_to_it(tracking_dir: Path) -> None:
    """init(id=X, resume="allow") in several processes at once: the ones that lose the race to create the row
    resume it instead of failing on its unique id (CI saw one fail with IntegrityError)."""
    for attempt in range(3):
        run_id = f"race{attempt}"
        start = time.time() + 1.5
        procs = [
            subprocess.Popen([sys.executable, "-c", RACE_INIT, str(start), run_id, str(i)], stderr=subprocess.PIPE)
            for i in range(6)
        ]
        for proc in procs:
            assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else b""
        with SQLiteStore(tracking_dir / "store.db", readonly=True) as store:
            steps = store.read_scalars(run_id, "v")[0]
        assert sorted(steps.tolist()) == list(range(6))
