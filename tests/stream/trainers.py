"""Training scripts the stream and snapshot tests run as real processes, with what they log, so tests can check."""

from __future__ import annotations

# A trainer that resumes: the run kept under the key on the snapshot directory is continued after a restart
# (expertrack.snapshots.resume_id), at the step after its last snapshotted one. argv: SNAPSHOT_DIR STEPS PAUSE_S
RESUMING = r"""
import sys, time
import numpy as np
import expertrack
from expertrack import snapshots

directory, steps, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
snapshots.enable(directory, every=0.2)
run_id = snapshots.resume_id(directory, "job-1")
run = expertrack.init(project="modal", name="resumable", id=run_id, resume="allow", config={"lr": 0.01})
if run_id is None:
    snapshots.keep_id(directory, "job-1", run.id)
print("started", run.id, "at", run.step, flush=True)
for step in range(run.step, steps):
    run.log({"loss": 1.0 / (step + 1), "step_x2": 2.0 * step, "experts": np.full(4, float(step))}, step=step)
    print("step", step, flush=True)
    time.sleep(pause)
run.summary["best"] = 0.5
run.finish()
"""
