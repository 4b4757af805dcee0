"""A ranks="all" run made in one process, for the readers' tests (CLI, dashboard) that need no process group."""

from __future__ import annotations

from pathlib import Path

import expertrack


def two_rank_run(directory: Path, run_id: str = "tworanks") -> str:
    """Rank 1 then rank 0 of a 2-rank job write one run with an explicit shared id; loss = 10 * rank + step.

    Rank 1 starts first, so it makes the run's placeholder row, which rank 0 then fills in (its name, config)."""
    for rank in (1, 0):
        run = expertrack.init(
            project="ddp",
            name=f"named-by-{rank}",
            config={"rank": rank},
            id=run_id,
            rank=rank,
            world_size=2,
            ranks="all",
            dir=directory,
            mirror="off",
            system_metrics=False,
        )
        for step in range(4):
            run.log({"loss": 10.0 * rank + step})
        run.finish()
    return run_id
