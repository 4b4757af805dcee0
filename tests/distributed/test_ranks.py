"""Rank awareness of init(): under a launcher an unmodified script makes one run, recorded by rank 0.

Real torch.distributed (gloo on CPU) in real processes: torch.multiprocessing for a group set up in code, torchrun
for a script that never mentions ranks, and SLURM's variables as srun sets them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.multiprocessing as mp

import expertrack
from expertrack import ranks
from tests.distributed.workers import unmodified_script_rank, write_script


def only_run(directory: Path) -> expertrack.ApiRun:
    runs = expertrack.Api(directory).runs()
    assert len(runs) == 1, [r.name for r in runs]
    return runs[0]


def assert_rank_zero_run(run: expertrack.ApiRun, world_size: int, source: str) -> None:
    assert run.state == "finished"
    steps, _, values = run.scalars("loss")
    assert steps.tolist() == [0, 1, 2, 3, 4]  # rank 0's points once, not one copy per rank
    assert values.tolist() == pytest.approx([1.0, 0.5, 1 / 3, 0.25, 0.2])
    assert run.config == {"lr": 0.1, "batch": 8}
    assert run.summary["best"] == 0.2
    distributed = run.environment["distributed"]
    assert distributed["rank"] == 0 and distributed["world_size"] == world_size
    assert distributed["source"] == source and distributed["ranks"] == "zero"


def test_torch_multiprocessing_group_makes_one_run(tmp_path: Path) -> None:
    directory = tmp_path / "runs"
    mp.spawn(unmodified_script_rank, args=(2, str(tmp_path / "rdzv"), str(directory)), nprocs=2, join=True)
    assert_rank_zero_run(only_run(directory), world_size=2, source="torch.distributed")


def test_torchrun_with_an_unmodified_script_makes_one_run(tmp_path: Path) -> None:
    script = write_script(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "SLURM_"))}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = [line.split() for line in proc.stdout.splitlines() if line.startswith("RUN ")]
    assert len(printed) == 2 and "rank-1" in {p[2] for p in printed}  # both ranks ran the whole script
    run = only_run(Path(env["EXPERTRACK_DIR"]))
    assert_rank_zero_run(run, world_size=2, source="torchrun")
    assert run.environment["distributed"]["local_rank"] == 0


@pytest.mark.parametrize("procid", ["0", "1"])
def test_slurm_variables_choose_the_recording_rank(tmp_path: Path, procid: str) -> None:
    script = write_script(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_RANK"))}
    env.update(SLURM_PROCID=procid, SLURM_NTASKS="2", SLURM_LOCALID=procid)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    runs = expertrack.Api(env["EXPERTRACK_DIR"]).runs()
    if procid == "0":
        assert len(runs) == 1
        assert_rank_zero_run(runs[0], world_size=2, source="slurm")
    else:
        assert runs == []  # rank 1 ran the whole script and stored nothing
        assert "rank-1" in proc.stdout


def test_explicit_rank_overrides_the_launcher(tracking_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "4")
    quiet = expertrack.init(project="p", rank=3)  # torchrun says 0, the script says 3: the script wins
    quiet.log({"loss": 1.0})
    quiet.finish()
    assert expertrack.Api(tracking_dir).runs() == []
    run = expertrack.init(project="p", rank=2, world_size=3, ranks=2)  # another rank may be the recording one
    run.log({"loss": 1.0})
    run.finish()
    stored = only_run(tracking_dir)
    assert stored.environment["distributed"] | {"node": None} == {
        "rank": 2,
        "world_size": 3,
        "local_rank": None,
        "node": None,
        "source": "init",
        "ranks": "2",
    }


def test_a_single_process_records_no_distributed_part(tracking_dir: Path) -> None:
    run = expertrack.init(project="p")
    run.log({"loss": 1.0})
    run.finish()
    assert "distributed" not in only_run(tracking_dir).environment


def test_detection_order_and_bad_values() -> None:
    torchrun_in_slurm = {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "SLURM_PROCID": "1", "SLURM_NTASKS": "2"}
    found = ranks.detect(environ=torchrun_in_slurm)
    assert (found.rank, found.world_size, found.local_rank, found.source) == (5, 8, 1, "torchrun")
    found = ranks.detect(environ={"RANK": "x", "WORLD_SIZE": "2", "SLURM_PROCID": "1", "SLURM_NTASKS": "2"})
    assert (found.rank, found.source) == (1, "slurm")  # a malformed variable is skipped, not fatal
    assert ranks.detect(environ={}).source == "single"
    assert ranks.detect(rank=3, environ={}).world_size == 4
    with pytest.raises(ValueError, match="rank 4 is not within world_size 4"):
        ranks.detect(rank=4, world_size=4, environ={})
    with pytest.raises(ValueError, match=r"init\(ranks=\.\.\.\) takes"):
        ranks.records(found, "some")


def test_show_names_the_recording_rank(tracking_dir: Path) -> None:
    from click.testing import CliRunner

    from expertrack.cli.main import cli

    run = expertrack.init(project="p", name="ddp", rank=0, world_size=4)
    run.log({"loss": 1.0})
    run.finish()
    result = CliRunner().invoke(cli, ["show", "ddp", "--dir", str(tracking_dir)])
    assert result.exit_code == 0, result.output
    [line] = [line for line in result.output.splitlines() if line.strip().startswith("distributed")]
    assert "rank 0 of 4 (init) on " in line and line.rstrip().endswith("recording ranks: zero")
