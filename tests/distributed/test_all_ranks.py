"""init(ranks="all"): one run that every rank writes, each point labelled with its rank (issue 15).

Real torch.distributed (gloo on CPU) in real processes started by torch.multiprocessing, a real SQLite store that
both ranks write at once, and a real SIGKILL of one rank while the other goes on.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch.multiprocessing as mp

import expertrack
from expertrack.writer import LOSS_BOUND_S
from tests.distributed.all_ranks_workers import STEPS, every_rank_logs, logs_until_killed


def only_run(directory: Path) -> expertrack.ApiRun:
    runs = expertrack.Api(directory).runs()
    assert len(runs) == 1, [(r.id, r.name) for r in runs]
    return runs[0]


def test_every_rank_writes_one_run_read_back_per_rank(tmp_path: Path) -> None:
    directory = tmp_path / "runs"
    mp.spawn(every_rank_logs, args=(2, str(tmp_path / "rdzv"), str(directory)), nprocs=2, join=True)
    run = only_run(directory)
    assert run.ranks() == [0, 1]
    for rank in (0, 1):
        steps, _times, values = run.scalars("loss", rank=rank)
        assert steps.tolist() == list(range(STEPS))
        assert values.tolist() == [rank * 10.0 + s for s in range(STEPS)]
        frame = run.history(rank=rank)
        assert frame["loss"].tolist() == [rank * 10.0 + s for s in range(STEPS)]
        assert f"only_rank_{rank}" in frame.columns and f"only_rank_{1 - rank}" not in frame.columns
    # a reader that knows nothing of ranks sees rank 0's series, under plain names (nothing mangled)
    assert run.metric_keys() == ["loss", "only_rank_0"]
    assert run.history()["loss"].tolist() == [float(s) for s in range(STEPS)]
    # the run's row is rank 0's: its config, summary and end; rank 1 ended later with exit code 3, in its own row
    assert run.config == {"lr": 0.1, "seen_by": 0, "last_writer": 0}
    assert run.summary["best"] == 0.0 and run.summary["loss"] == STEPS - 1
    assert (run.state, run.exit_code) == ("finished", 0)
    assert run.environment["distributed"]["ranks"] == "all" and run.environment["distributed"]["rank"] == 0
    states = run.rank_states()
    assert sorted(states) == [0, 1]
    assert (states[0].state, states[0].exit_code) == ("finished", 0)
    assert (states[1].state, states[1].exit_code) == ("failed", 3)
    with pytest.raises(ValueError, match="has no series of rank 2; its ranks: \\[0, 1\\]"):
        run.history(rank=2)


def _poll(condition: object, what: str, limit_s: float = 120.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"waited {limit_s} s for {what}"
        time.sleep(0.05)


def _progress(path: Path) -> tuple[np.ndarray, np.ndarray]:
    lines = [line.split() for line in path.read_text().splitlines() if len(line.split()) == 2]
    return np.array([int(s) for s, _ in lines]), np.array([float(t) for _, t in lines])


def test_a_rank_killed_with_sigkill_loses_only_its_last_second(tmp_path: Path) -> None:
    directory, out = tmp_path / "runs", tmp_path / "out"
    out.mkdir()
    context = mp.spawn(
        logs_until_killed,
        args=(2, str(tmp_path / "rdzv"), str(directory), str(out)),
        nprocs=2,
        join=False,
    )
    assert context is not None
    rank1 = out / "rank1.log"
    _poll(lambda: rank1.exists() and _progress(rank1)[0].size > 300, "rank 1 to log 300 points")
    killed_at = time.time()
    os.kill(context.processes[1].pid, signal.SIGKILL)
    context.processes[1].join(60)
    assert context.processes[1].exitcode == -signal.SIGKILL
    (out / "finish").write_text("")
    context.processes[0].join(120)
    assert context.processes[0].exitcode == 0  # rank 0 went on and finished
    run = only_run(directory)
    assert run.state == "finished"  # the run is rank 0's: finished, although rank 1 crashed
    states = run.rank_states()
    assert states[0].state == "finished" and states[1].state == "crashed"
    # rank 0 lost nothing
    logged0 = int((out / "rank0.done").read_text())
    assert run.scalars("loss")[0].tolist() == list(range(logged0))
    # rank 1 lost only what it logged in the last LOSS_BOUND_S before the kill; what it stored has no gap
    stored, _times, values = run.scalars("loss", rank=1)
    assert stored.tolist() == list(range(stored.size)) and values.tolist() == [float(s) for s in stored]
    logged_steps, logged_times = _progress(rank1)
    older = logged_steps[logged_times < killed_at - LOSS_BOUND_S]
    assert older.size > 0 and stored.size > int(older.max()), (
        f"rank 1 lost points logged more than {LOSS_BOUND_S} s before SIGKILL: stored up to {stored.size - 1}, "
        f"logged {int(older.max())} by then"
    )


def test_ranks_started_with_an_explicit_id_share_it_and_rank_0_owns_the_row(tmp_path: Path) -> None:
    from tests.distributed.builders import two_rank_run

    two_rank_run(tmp_path)  # rank 1 first: its placeholder row is filled in by rank 0, not refused as a clash
    run = only_run(tmp_path)
    assert (run.id, run.name, run.config, run.state) == ("tworanks", "named-by-0", {"rank": 0}, "finished")
    assert run.ranks() == [0, 1] and run.scalars("loss", rank=1)[2].tolist() == [10.0, 11.0, 12.0, 13.0]
    assert run.at_rank(1).history()["loss"].tolist() == [10.0, 11.0, 12.0, 13.0]
    assert run.history()["loss"].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_without_a_way_to_share_an_id_rank_0_records_alone_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("TORCHELASTIC_RUN_ID", "SLURM_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    for rank in (1, 0):
        run = expertrack.init(project="p", rank=rank, world_size=2, ranks="all", dir=tmp_path, system_metrics=False)
        run.log({"loss": float(rank)})
        run.finish()
    assert "the ranks cannot agree on one run id" in capsys.readouterr().err
    run = only_run(tmp_path)  # rank 1 stored nothing, as under the default ranks="zero"
    assert run.ranks() == [0] and run.environment["distributed"]["ranks"] == "zero"


def test_ranks_of_one_job_derive_one_id_from_the_launchers_job_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    ids = set()
    for rank in (0, 1):
        monkeypatch.setattr("expertrack.allranks._calls", iter([0]))  # each rank is its own process: first init()
        run = expertrack.init(project="p", rank=rank, world_size=2, ranks="all", dir=tmp_path, system_metrics=False)
        run.log({"loss": float(rank)})
        run.finish()
        ids.add(run.id)
    assert len(ids) == 1
    assert only_run(tmp_path).ranks() == [0, 1]


def test_a_nodes_store_without_rank_0_holds_its_ranks_and_ends_with_them(tmp_path: Path) -> None:
    # the second node of a 2-node job: rank 0 writes another node's store, so rank 1's placeholder row stays
    run = expertrack.init(project="p", id="job7", rank=1, world_size=2, ranks="all", dir=tmp_path, system_metrics=False)
    run.log({"loss": 1.5})
    run.finish()
    stored = only_run(tmp_path)
    assert stored.state == "finished"  # not "crashed" a minute later: the last of this store's ranks ended it
    assert stored.ranks() == [1] and stored.scalars("loss", rank=1)[2].tolist() == [1.5]
    assert stored.rank_states()[1].state == "finished"


def test_torchrun_with_expertrack_ranks_all_makes_one_run_of_both_ranks(tmp_path: Path) -> None:
    # the unmodified script sets up no process group: the ranks agree on the id through TORCHELASTIC_RUN_ID
    import subprocess
    import sys

    from tests.distributed.workers import write_script

    script = write_script(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "SLURM_", "TORCHELASTIC"))}
    env.update(
        EXPERTRACK_DIR=str(tmp_path / "runs"), EXPERTRACK_RANKS="all", EXPERTRACK_MIRROR="off", OMP_NUM_THREADS="1"
    )
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = only_run(tmp_path / "runs")
    assert run.state == "finished" and run.ranks() == [0, 1]
    for rank in (0, 1):
        assert run.scalars("loss", rank=rank)[2].tolist() == pytest.approx([1.0, 0.5, 1 / 3, 0.25, 0.2])
    assert run.environment["distributed"]["source"] == "torchrun"
    assert {r: s.state for r, s in run.rank_states().items()} == {0: "finished", 1: "finished"}


def test_rank_0_claims_a_placeholder_made_after_it_looked(tmp_path: Path) -> None:
    # the race the SIGKILL test once lost: rank 0 found no row, rank 1 made its placeholder, rank 0 inserted
    from expertrack import allranks, session
    from expertrack.store import SQLiteStore

    with SQLiteStore(tmp_path / "store.db") as store:
        allranks.join(store, "race", 1, "p")  # rank 1 between rank 0's look and its insert
        fields = session._RunFields("p", "rank-0-name", None, None, None, {"lr": 1})
        session._insert(store, "race", fields, claim=True)  # once raised "UNIQUE constraint failed: runs.id"
    run = only_run(tmp_path)
    assert (run.name, run.config, run.state) == ("rank-0-name", {"lr": 1}, "running")


def test_a_rank_that_joins_after_rank_0_logged_counts_its_own_steps_from_0(tmp_path: Path) -> None:
    settings = {"project": "p", "id": "late", "world_size": 2, "ranks": "all", "dir": tmp_path, "system_metrics": False}
    first = expertrack.init(rank=0, **settings)
    for _ in range(5):
        first.log({"loss": 0.0})
    first.finish()  # rank 0's five steps are stored before rank 1 starts
    late = expertrack.init(rank=1, **settings)
    late.log({"loss": 1.0})  # wandb's automatic step: this rank's first
    late.finish()
    assert only_run(tmp_path).scalars("loss", rank=1)[0].tolist() == [0]


def test_reusing_an_id_is_refused_on_every_rank_unless_resumed(tmp_path: Path) -> None:
    from tests.distributed.builders import two_rank_run

    two_rank_run(tmp_path)
    for rank in (1, 0):
        with pytest.raises(expertrack.ExpertrackError, match="already"):
            expertrack.init(id="tworanks", rank=rank, world_size=2, ranks="all", dir=tmp_path, system_metrics=False)
    for rank in (1, 0):
        run = expertrack.init(
            id="tworanks", rank=rank, world_size=2, ranks="all", dir=tmp_path, resume="allow", system_metrics=False
        )
        run.log({"loss": 100.0 + rank})  # each rank goes on after its own last step (3)
        run.finish()
    stored = only_run(tmp_path)
    assert stored.scalars("loss", rank=1)[0].tolist() == [0, 1, 2, 3, 4]
    assert stored.scalars("loss", rank=1)[2].tolist()[-1] == 101.0
    assert stored.scalars("loss")[2].tolist()[-1] == 100.0 and stored.state == "finished"
