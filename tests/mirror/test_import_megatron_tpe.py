"""`expertrack import megatron-tpe DIR`: Megatron-LM's tokens_per_expert/rank<N>.jsonl (the format its
activation_logging.save_tpe writes, built here by hand) into moe/tokens_per_expert [L, E] arrays of a run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import expertrack
from tests.conftest import expertrack_cli


def write_rank(save: Path, rank: int, lines: list[dict[str, object]], tail: str = "") -> Path:
    folder = save / "tokens_per_expert"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"rank{rank}.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + tail)
    return path


def tpe_lines(iterations: range, layers: int, experts: int, offset: int = 0) -> list[dict[str, object]]:
    """Two microbatches per layer: [it + layer + e + offset] and [1] * experts, so each sum is known."""
    return [
        {"iter": it, "block": "decoder", "layer": layer,
         "tpe": [[it + layer + e + offset for e in range(experts)], [1] * experts]}
        for it in iterations for layer in range(layers)
    ]  # fmt: skip


def test_one_rank_becomes_per_layer_arrays_of_a_new_run(tmp_path: Path) -> None:
    save = tmp_path / "job-42"
    mtp = [{"iter": 1, "block": "mtp", "mtp_idx": 0, "layer": 0, "tpe": [[5, 5, 5, 5]]}]
    write_rank(save, 0, tpe_lines(range(1, 4), layers=2, experts=4) + mtp)
    result = expertrack_cli("import", "megatron-tpe", str(save), "--dir", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr
    assert "moe/tokens_per_expert: 3 steps of [2x4] (layers 0-1) into run job-42" in result.stdout
    (run,) = expertrack.Api(tmp_path / "runs").runs()
    assert (run.name, run.project, run.state) == ("job-42", "megatron", "finished")
    steps, counts = run.arrays("moe/tokens_per_expert")
    assert steps.tolist() == [0, 1, 2]  # Megatron's iteration i (counted after the step) is step i - 1
    assert counts[0].tolist() == [[2, 3, 4, 5], [3, 4, 5, 6]]  # microbatches summed: (1 + layer + e) + 1
    assert run.arrays("moe/mtp0/tokens_per_expert")[1].tolist() == [[[5, 5, 5, 5]]]
    assert run.config["megatron_tpe"]["layers"]["moe/tokens_per_expert"] == [0, 1]


def test_several_ranks_need_to_be_told_how_to_combine(tmp_path: Path) -> None:
    save = tmp_path / "ep"
    write_rank(save, 0, tpe_lines(range(1, 3), layers=1, experts=2))
    write_rank(save, 1, tpe_lines(range(1, 3), layers=1, experts=2, offset=100))
    runs = str(tmp_path / "runs")
    refused = expertrack_cli("import", "megatron-tpe", str(save), "--dir", runs)
    assert refused.returncode == 1 and "found 2 rank files" in refused.stderr and "--ranks concat" in refused.stderr
    assert not (tmp_path / "runs" / "store.db").exists()
    for how in ("concat", "sum"):
        done = expertrack_cli("import", "megatron-tpe", str(save), "--dir", runs, "--ranks", how, "--name", how)
        assert done.returncode == 0, done.stderr
    single = expertrack_cli("import", "megatron-tpe", str(save), "--dir", runs, "--rank", "1", "--name", "one")
    assert single.returncode == 0, single.stderr
    api = expertrack.Api(tmp_path / "runs")
    assert api.run("concat").arrays("moe/tokens_per_expert")[1][0].tolist() == [[2, 3, 102, 103]]
    assert api.run("sum").arrays("moe/tokens_per_expert")[1][0].tolist() == [[104, 106]]
    assert api.run("one").arrays("moe/tokens_per_expert")[1][0].tolist() == [[102, 103]]


def test_arrays_added_to_an_existing_run_and_bad_lines_named(tmp_path: Path) -> None:
    run = expertrack.init(project="wrapped", name="megatron-job", dir=tmp_path / "runs", mirror="off")
    run.log({"lm loss": 3.2}, step=0)
    run.finish(exit_code=3)
    good = tpe_lines(range(1, 3), layers=2, experts=2)
    missing_layer = [{"iter": 3, "block": "decoder", "layer": 0, "tpe": [[1, 1]]}]
    path = write_rank(tmp_path / "save", 0, good + missing_layer + [{"iter": 0, "layer": 0, "tpe": [[1]]}],
                      tail='{"iter": 4, "layer": 0, "tpe": [[1, ')  # fmt: skip
    result = expertrack_cli(
        "import", "megatron-tpe", str(path), "--dir", str(tmp_path / "runs"), "--run", "megatron-job"
    )
    assert result.returncode == 0, result.stderr
    assert f"skipped 2 bad lines; the first: {path}:6: iter must be an integer >= 1" in result.stdout
    assert "left out 1 iterations missing a layer or a rank" in result.stdout
    stored = expertrack.Api(tmp_path / "runs").run(run.id)
    assert (stored.state, stored.exit_code) == ("failed", 3)  # the run's own record is left as it was
    steps, counts = stored.arrays("moe/tokens_per_expert")
    assert steps.tolist() == [0, 1] and counts.shape == (2, 2, 2)
    again = expertrack_cli(
        "import", "megatron-tpe", str(path), "--dir", str(tmp_path / "runs"), "--run", "megatron-job"
    )
    assert again.returncode == 0  # importing again replaces the same steps, adds nothing
    assert len(expertrack.Api(tmp_path / "runs").run(run.id).arrays("moe/tokens_per_expert")[0]) == 2


def test_an_expert_that_gets_no_tokens_raises_the_dead_expert_alert(tmp_path: Path) -> None:
    lines = tpe_lines(range(1, 16), layers=1, experts=4)
    for line in lines[2:]:
        line["tpe"] = [[7, 7, 0, 7]]  # expert 2 dies at iteration 3 (step 2): its 10th empty log is step 11
    write_rank(tmp_path / "save", 0, lines)
    result = expertrack_cli("import", "megatron-tpe", str(tmp_path / "save"), "--dir", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr
    (run,) = expertrack.Api(tmp_path / "runs").runs()
    assert [(a.rule, a.step) for a in run.alerts()] == [("dead_expert", 11)]
    assert np.asarray(run.arrays("moe/tokens_per_expert")[1])[2:, 0, 2].sum() == 0


def test_a_directory_without_files_is_a_clear_error(tmp_path: Path) -> None:
    result = expertrack_cli("import", "megatron-tpe", str(tmp_path), "--dir", str(tmp_path / "runs"))
    assert result.returncode == 1 and "no Megatron-LM tokens-per-expert files (rank<N>.jsonl)" in result.stderr


def test_an_iteration_one_rank_never_wrote_is_left_out_and_counted(tmp_path: Path) -> None:
    save = tmp_path / "crashed"
    write_rank(save, 0, tpe_lines(range(1, 4), layers=2, experts=2))
    write_rank(save, 1, tpe_lines(range(1, 3), layers=2, experts=2))  # rank 1 died before iteration 3
    result = expertrack_cli("import", "megatron-tpe", str(save), "--dir", str(tmp_path / "runs"), "--ranks", "sum")
    assert result.returncode == 0, result.stderr
    assert "left out 1 iterations missing a layer or a rank" in result.stdout
    (run,) = expertrack.Api(tmp_path / "runs").runs()
    assert run.arrays("moe/tokens_per_expert")[0].tolist() == [0, 1]
