"""Several nodes' stores of one ranks="all" run merged with ``pull`` into one run with every rank (issue 15's
multi-node mode, through issue 13's pull). Each "node" is its own tracking directory, written by real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import expertrack
from tests.conftest import expertrack_cli
from tests.store.copying import contents

_RANK = """
import sys, expertrack
rank, directory = int(sys.argv[1]), sys.argv[2]
run = expertrack.init(project="nodes", id="job-42", ranks="all", rank=rank, world_size=4, dir=directory,
                      config={"lr": 0.1}, mirror="off", system_metrics=False)
for step in range(300):
    run.log({"loss": rank * 1000.0 + step, f"only_rank_{rank}": float(step)}, step=step)
run.finish()
"""


def test_two_nodes_stores_pulled_into_one_make_one_run_with_every_rank(tmp_path: Path) -> None:
    node_a, node_b = tmp_path / "node-a", tmp_path / "node-b"
    env = {**os.environ, "EXPERTRACK_MIRROR": "off"}
    ranks = [
        subprocess.Popen([sys.executable, "-c", _RANK, str(rank), str(node_a if rank < 2 else node_b)], env=env)
        for rank in range(4)
    ]
    assert [p.wait(timeout=120) for p in ranks] == [0, 0, 0, 0]
    merged, reversed_order = tmp_path / "merged", tmp_path / "reversed"
    for target, nodes in ((merged, (node_a, node_b)), (reversed_order, (node_b, node_a))):
        for node in nodes:
            result = expertrack_cli("pull", "--from", str(node), "--dir", str(target))
            assert result.returncode == 0, result.stderr
    runs = expertrack.Api(merged).runs()
    assert [r.id for r in runs] == ["job-42"]
    run = runs[0]
    assert run.ranks() == [0, 1, 2, 3]
    assert (run.project, run.state, run.config["lr"]) == ("nodes", "finished", 0.1)  # rank 0's row
    for rank in range(4):
        steps, _times, values = run.scalars("loss", rank=rank)
        assert steps.tolist() == list(range(300)) and values.tolist() == [rank * 1000.0 + s for s in range(300)]
        assert run.scalars(f"only_rank_{rank}", rank=rank)[1].size == 300
    assert {rank: r.state for rank, r in expertrack.Api(merged).store.rank_states("job-42").items()} == {
        0: "finished",
        1: "finished",
        2: "finished",
        3: "finished",
    }
    assert contents(reversed_order) == contents(merged)  # the placeholder row never wins over rank 0's
    again = expertrack_cli("pull", "--from", str(node_b), "--dir", str(merged))
    assert again.returncode == 0 and ": 0 points" in again.stdout
