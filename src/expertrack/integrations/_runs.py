"""Which run an integration records into, the same rule for the Trainer callback and the Lightning logger."""

from __future__ import annotations

from collections.abc import Callable

import expertrack

# set on a run that an integration started (not the user): a later integration object does not join it
_STARTED_BY_INTEGRATION = "_started_by_expertrack_integration"


def run_for(mine: expertrack.Run | None, start: Callable[[], expertrack.Run]) -> expertrack.Run:
    """The run an integration object records into: the one it has, else the user's current run (started with
    ``expertrack.init()``), else a new one from ``start()``. A current run that another integration object
    started (an earlier Trainer in the same script: dense, then MoE) is finished first, so each training gets its
    own run, and its steps, which start again at 0, are all kept."""
    run = expertrack.current_run()
    if run is not None and run is mine:
        return run
    if run is not None and getattr(run, _STARTED_BY_INTEGRATION, False):
        run.finish()
        run = None
    if run is None:
        run = start()
        setattr(run, _STARTED_BY_INTEGRATION, True)
    return run
