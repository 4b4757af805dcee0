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

# A trainer that streams (EXPERTRACK_STREAM=stdout is set by the test) and prints lines of its own between them.
# argv: STEPS [PAUSE_S]
STREAMING = r"""
import sys, time
import numpy as np
import expertrack

steps = int(sys.argv[1])
pause = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
run = expertrack.init(project="remote", name="streamed", config={"lr": 0.01, "layers": 2}, tags=["modal"])
run.define_metric("loss", summary="min")
for step in range(steps):
    values = {"loss": 1.0 / (step + 1), "nan": float("nan"), "tokens": step * 1024}
    if step % 10 == 0:  # an array now and then: the rows between are sent as columns
        values["experts"] = np.arange(4.0) * step
    run.log(values, step=step)
    print(f"step {step} of my own output", flush=True)
    time.sleep(pause)
run.summary["best"] = 0.25
run.summary["gone"] = 1.0
del run.summary["gone"]  # a deletion streams too
run.attach_file("notes.txt", b"hello")
run.finish()
"""

# A stand-in for a launcher (modal run, ssh, kubectl logs -f): starts the command and relays its stdout in small
# pieces of varying size, so tagged lines arrive cut anywhere. argv: COMMAND...
RELAY = r"""
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE)
sizes, i = [1, 7, 300, 4096, 13], 0
while True:
    data = child.stdout.read1(sizes[i % len(sizes)])
    if not data:
        break
    os.write(1, data)
    i += 1
sys.exit(child.wait())
"""

# A stand-in for Modal retrying a preempted call: runs the resuming trainer, relays its stdout, sends it SIGTERM
# once it printed "step 100", then runs it again (a new container: its own local store) to the end.
# argv: SNAPSHOT_DIR TRAINER STEPS
PREEMPTING_RELAY = r"""
import os, signal, subprocess, sys
directory, trainer, steps = sys.argv[1:4]
for attempt, local in enumerate(["container-1", "container-2"]):
    env = {**os.environ, "EXPERTRACK_DIR": local, "EXPERTRACK_STREAM": "stdout"}
    pause = "0.005" if attempt == 0 else "0"
    child = subprocess.Popen([sys.executable, trainer, directory, steps, pause], stdout=subprocess.PIPE, env=env)
    for line in child.stdout:
        os.write(1, line)
        if attempt == 0 and line.startswith(b"step 100"):
            child.send_signal(signal.SIGTERM)
    child.wait()
"""
