"""The records a run hands to its writer, and the writer to the store: one definition each, shared by every layer.

``Run`` makes these (for ``log()``, config, summary, files, the end; the console parser and the integrations log
through it), the writer adds the environment and the alerts its engine raises; it folds rows into series buffers
and hands the rest, in order, to ``Store.write_batch`` inside a ``Batch``. ``reparse`` and ``import wandb`` build
rows and batches themselves and go straight to the store. All are
frozen: a record queued is never changed afterwards. ``Row``, the one on ``log()``'s hot path, is a plain tuple
``(step, time, values)`` because it is the cheapest to make (benchmarks/log_overhead.py measures it); the writer
tells it from the others by ``isinstance(record, tuple)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from expertrack.store.alerts import AlertRecord
    from expertrack.store.chunks import Piece, SeriesBuffer


# Values logged at one step (``log()``'s committed row, or a system sample at its index), stamped with a wall
# time: ``(step, time, values)``. ``values`` maps flat keys to floats, ints, NumPy arrays or tensors; the writer
# decides which are scalars. A plain tuple, not a class: ``log()`` makes one per call, and a tuple display costs
# about 85 ns where a slots dataclass's ``__init__`` (or a NamedTuple's ``__new__``) costs 170-260 ns, 5% of a
# ``log()`` call (benchmarks/log_overhead.py). Unpack it (``step, t, values = row``); never change one queued.
Row = tuple[int, float, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class ArrayPoint:
    """One vector or matrix (a NumPy array) of ``key`` at ``step``: stored whole, with its shape and dtype."""

    key: str
    step: int
    time: float
    array: Any


@dataclass(frozen=True, slots=True)
class ConfigSet:
    """The run's whole config, as JSON text (it replaces what was stored)."""

    config: str


@dataclass(frozen=True, slots=True)
class MetricDefs:
    """Every ``define_metric`` declaration so far (they replace what was stored)."""

    defs: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class SummarySet:
    """``run.summary[key] = value``: kept in order with the rows logged around it (a later row of ``key`` wins)."""

    key: str
    value: Any


@dataclass(frozen=True, slots=True)
class SummaryDeleted:
    """``del run.summary[key]``: the summary is rewritten without it."""

    key: str


@dataclass(frozen=True, slots=True)
class FileChunk:
    """Bytes of a run's file ``name``: the whole file (``replace``) or appended to it (console logs)."""

    name: str
    data: bytes
    replace: bool


@dataclass(frozen=True, slots=True)
class Environment:
    """Where and how the run runs (host, Python, packages, git...), as JSON text."""

    environment: str


@dataclass(frozen=True, slots=True)
class End:
    """How the run (or, under ``ranks="all"``, this rank) ended: finished, failed or killed."""

    state: str
    exit_code: int
    signal: int | None
    ended_at: float


@dataclass(frozen=True, slots=True)
class AlertFired:
    """An alert raised for the run (a rule that fired, or ``run.alert``), stored with it."""

    alert: AlertRecord


# What a writer queues besides rows, written in order inside one batch.
Record = ArrayPoint | ConfigSet | MetricDefs | SummarySet | SummaryDeleted | FileChunk | Environment | End | AlertFired


@dataclass
class RunUpdate:
    """The run's own row (or this rank's), rewritten with a batch: heartbeat, dropped points and the summary
    (JSON text; None keeps the stored one)."""

    now: float
    dropped_points: int
    summary: str | None = None


@dataclass
class Batch:
    """What one flush of a writer stores, in one transaction (``Store.write_batch``).

    ``series`` are the scalar buffers this batch touches: their key ids are resolved (created when new) inside
    the transaction, and ``key_ids`` (the writer's cache, name -> id) gains the new ones; when the transaction
    fails both are put back as they were, so a retry creates them again. Then either ``pieces`` are inserted
    (their seqs returned), or, when ``seal``, every unsealed point of ``series`` becomes chunks and the pieces
    ``sealed_pieces`` (seqs this writer inserted before) are deleted. ``records`` follow, in order.

    ``rank`` is None for a run's only writer, else this process's rank under ``ranks="all"`` (rank 0 owns the
    run's row: config, metric definitions, environment, summary and end; the others only their ``run_ranks`` row).
    ``update`` None: the run's row is not rewritten this time, only checked to still exist.
    """

    run_id: str
    rank: int | None = None
    update: RunUpdate | None = None
    series: list[SeriesBuffer] = field(default_factory=list)
    key_ids: dict[str, int] = field(default_factory=dict)
    pieces: list[Piece] = field(default_factory=list)
    seal: bool = False
    sealed_pieces: list[int] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)

    @property
    def owns_run(self) -> bool:
        """Whether this writer writes the run's own row (a single writer, or rank 0)."""
        return self.rank in (None, 0)


@dataclass
class NewRun:
    """A run's row as ``init()`` (or an importer) creates it: state 'running' from ``created_at``.

    ``config`` and ``tags`` are JSON text; ``hostname`` and ``pid`` say which process writes it (None for a
    placeholder another rank made, or a run imported from elsewhere).
    """

    id: str
    project: str
    name: str
    group: str | None
    tags: str
    notes: str | None
    config: str
    created_at: float
    hostname: str | None
    pid: int | None


@dataclass
class MirrorState:
    """A follower's position in one run (a row of ``mirror_state``): ``partial`` up to ``cursor_step``,
    ``complete``, or ``failed`` (``reason`` says why; ``cursor_step`` None: nothing was sent)."""

    run_id: str
    target: str
    state: str  # partial | complete | failed
    cursor_step: int | None
    remote_id: str | None
    reason: str | None
    updated_at: float
