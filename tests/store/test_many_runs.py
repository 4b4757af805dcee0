"""One key of many runs in one query (``read_scalars_many``, ``read_envelopes_many``): the arrays run-by-run reads
give, bit for bit, on both engines; what grouped and compared charts read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import expertrack
from expertrack import writer
from expertrack.store import chunks, levels, sql
from tests.store.conftest import ReadStore


def same(a: object, b: object) -> bool:
    """Equal arrays, dtype and bits (NaN included), or both None."""
    if a is None or b is None:
        return a is None and b is None
    x, y = np.asarray(a), np.asarray(b)
    return x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


def test_many_runs_read_in_one_query_equal_run_by_run_reads(
    tracking_dir: Path, read_store: ReadStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finished runs (chunks with levels), a run still writing (its newest points in pieces, one replaced), a
    run without the key, an unknown id, a repeated id; batches of two runs per query, so the batching is crossed
    too. (Writers interleaving one key answer no envelope: test_levels.py, through ``read_envelope``, which reads
    as ``read_envelopes_many`` does.)"""
    monkeypatch.setattr(chunks, "CHUNK_POINTS", 1000)
    monkeypatch.setattr(writer, "SEAL_FLUSHES", 1)
    monkeypatch.setattr(sql, "_RUNS_PER_QUERY", 2)
    monkeypatch.setattr(levels, "_RUNS_PER_QUERY", 2)
    ids, logged = [], {}
    for r in range(3):
        run = expertrack.init(project="many", mirror="off", system_metrics=False, alerts=False)
        values = np.sin(np.arange(2500 + 700 * r) / (50 + r))
        values[100 * r + 7] = np.nan
        for step, value in enumerate(values.tolist()):
            run.log({"loss": value, "other": float(step)}, step=step)
        run.finish()
        ids.append(run.id)
        logged[run.id] = values
    keyless = expertrack.init(project="many", mirror="off", system_metrics=False, alerts=False)
    keyless.log({"other": 1.0}, step=0)
    keyless.finish()
    live = expertrack.init(project="many", mirror="off", system_metrics=False, alerts=False)
    for step in range(1500):
        live.log({"loss": float(step % 13)}, step=step)
    live.flush()
    live.log({"loss": -5.0}, step=1500)
    live.flush()
    live.log({"loss": -6.0}, step=1500)  # replaces the point already in a piece
    live.flush()
    asked = [*ids, keyless.id, "no-such-run", live.id, ids[1]]
    try:
        with read_store() as store:
            assert store.conn.execute("SELECT COUNT(*) FROM scalar_pieces").fetchone()[0] > 0
            for times in (True, False):
                many = store.read_scalars_many(asked, "loss", times=times)
                assert list(many) == list(dict.fromkeys(asked))
                for run_id in asked:
                    one = store.read_scalars(run_id, "loss", times=times)
                    assert all(same(a, b) for a, b in zip(many[run_id], one, strict=True)), (run_id, times)
            for run_id, values in logged.items():  # what was logged, bit for bit
                assert same(many[run_id][0], np.arange(len(values))) and same(many[run_id][2], values)
            assert len(many[live.id][0]) == 1501 and many[live.id][2][-1] == -6.0
            assert len(many[keyless.id][0]) == 0 and len(many["no-such-run"][0]) == 0
            envelopes = store.read_envelopes_many(asked, "loss")
            assert list(envelopes) == list(dict.fromkeys(asked))
            assert envelopes[keyless.id] is None and envelopes["no-such-run"] is None
            for run_id in asked:
                one, got = store.read_envelope(run_id, "loss"), envelopes[run_id]
                assert (one is None) == (got is None), run_id
                if one is not None and got is not None:
                    assert (one.points, one.block_count) == (got.points, got.block_count)
                    assert same(one.steps, got.steps) and same(one.values, got.values) and same(one.blocks, got.blocks)
            assert envelopes[live.id] is not None and envelopes[live.id].points == 1501
            assert store.read_scalars_many([], "loss") == {} and store.read_envelopes_many([], "loss") == {}
    finally:
        live.finish()
