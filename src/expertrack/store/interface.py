"""The ``Store`` interface: what every engine (SQLite today, PostgreSQL next) offers the layers above it.

Writers, readers and followers program against this Protocol; only the engines know SQL. The contract:

- **Writes are transactions.** ``write_batch`` stores one flush of a run's writer whole or not at all;
  ``replace_scalars`` swaps a run's points in one transaction. A reader sees a run before or after a batch, never
  half of one. Every other write method is its own short transaction.
- **One writer per run (per rank).** A run is changed by the process that writes it, through ``write_batch``;
  the other writes (``add_arrays``, ``replace_scalars``, ``set_run_times``, the followers' state) are for runs
  that already exist. Several processes may write their own runs to one store at once.
- **Readers never block writers.** A reader may see the newest points a little late (the writer's flush
  interval), never a point that was not committed.
- **Errors.** ``RunNotFoundError``/``AmbiguousRunError`` for a run that is not there or not unique,
  ``RunDeletedError`` from ``write_batch`` when the run was deleted meanwhile, ``StoreError`` for a location that
  is not a usable store. An engine's own errors (a lock held too long, a full disk) pass through as they are;
  ``is_busy`` and ``is_disk_full`` say which is which.

docs/storage.md, "The store interface", describes it with the records (expertrack.records) it carries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from expertrack.records import Batch, MirrorState, NewRun
    from expertrack.store.alerts import AlertRecord
    from expertrack.store.chunks import SeriesBuffer
    from expertrack.store.levels import Envelope
    from expertrack.store.sqlite import ArrayOverview, RankRecord, RunRecord, ScalarOverview


class Store(Protocol):
    """An open store. ``path`` says where it is (for messages: never with a password)."""

    path: Any
    version: int  # the schema version

    # ---- opening and closing ------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the store; a writer's last batch must have been written."""

    def __enter__(self) -> Store: ...

    def __exit__(self, *exc: object) -> None: ...

    def transaction(self) -> AbstractContextManager[Any]:
        """A write transaction: commits when the block ends, rolls back on an error (used by the write methods)."""

    # ---- a run's life ---------------------------------------------------------------------------------------------

    def create_run(self, run: NewRun, claim: bool = False) -> bool:
        """Insert a run's row, 'running'; False (nothing changed) when its id exists. ``claim``: fill in a
        placeholder row another rank made (``ranks="all"``)."""

    def reopen_run(self, run_id: str, name: str, group: str | None, tags: str, notes: str | None, config: str) -> None:
        """A run resumed by this process: running again, its end cleared, these fields written."""

    def write_batch(self, batch: Batch) -> list[int]:
        """One flush of a run's writer in one transaction (all or nothing); returns the new pieces' seqs.
        ``RunDeletedError`` when the run's row is gone."""

    def replace_scalars(
        self, run_id: str, series: list[SeriesBuffer], config: str | None = None, summary: str | None = None
    ) -> None:
        """Replace a run's scalar points (and its config and summary when given) atomically: a failure leaves
        the old series, and no reader ever sees the run without points."""

    def add_arrays(self, run_id: str, key: str, points: Iterable[tuple[int, float, Any]]) -> int:
        """Arrays ``(step, time, ndarray)`` of one key added to a stored run, in one transaction; a step the key
        has is replaced. Returns how many."""

    def set_run_times(self, run_id: str, created_at: float, ended_at: float | None) -> None:
        """The start (and end, when known) a run had elsewhere (an imported run)."""

    def delete_run(self, run_id: str) -> None:
        """Delete a run and everything recorded for it, in one transaction."""

    # ---- ranks="all" --------------------------------------------------------------------------------------------

    def rank_placeholder(self, run_id: str) -> bool:
        """Whether the run's row is another rank's placeholder, waiting for rank 0."""

    def rank_wrote_before(self, run_id: str, rank: int) -> bool:
        """Whether ``rank`` already wrote part of the run."""

    def join_rank(self, run_id: str, rank: int, project: str) -> None:
        """A rank other than 0 joins the run (a placeholder row if rank 0 has not made it) with its own row."""

    def register_rank(self, run_id: str, rank: int) -> None:
        """This process's row for ``rank`` of the run, running."""

    # ---- reads: runs ----------------------------------------------------------------------------------------------

    def runs(self, project: str | None = None) -> list[RunRecord]:
        """Every run (of ``project``), oldest first; a run whose writer died reads as 'crashed'."""

    def run(self, run_id: str) -> RunRecord:
        """The run with exactly this id (``RunNotFoundError`` otherwise)."""

    def find_run(self, ref: str) -> RunRecord:
        """A run by id, else name, else unique id prefix (``RunNotFoundError``, ``AmbiguousRunError``)."""

    def run_exists(self, run_id: str) -> bool:
        """Whether a run of exactly this id is stored."""

    def count_runs(self, project: str) -> int:
        """How many runs ``project`` has."""

    def projects(self) -> list[str]:
        """Every project with a run, sorted."""

    def ranks(self, run_id: str) -> list[int]:
        """The ranks that wrote keys of the run, ascending."""

    def rank_states(self, run_id: str) -> dict[int, RankRecord]:
        """Each writing rank's own state under ``ranks="all"``."""

    # ---- reads: metrics -------------------------------------------------------------------------------------------

    def scalar_keys(self, run_id: str, rank: int = 0) -> list[str]:
        """Names of the run's scalar series (``rank``'s), sorted."""

    def array_keys(self, run_id: str, rank: int = 0) -> list[str]:
        """Names of the run's array series (``rank``'s), sorted."""

    def point_counts(self, run_id: str, key: str | None = None, rank: int = 0) -> dict[str, int]:
        """Stored points per scalar key."""

    def scalar_overview(self, run_id: str, rank: int = 0) -> dict[str, ScalarOverview]:
        """Per scalar key: points, last step and value, min and max."""

    def array_overview(self, run_id: str) -> dict[str, ArrayOverview]:
        """Per array key: steps, last step, its shape, dtype and size."""

    def read_scalars(
        self, run_id: str, key: str, after_step: int | None = None, times: bool = True, rank: int = 0
    ) -> tuple[Any, Any, Any]:
        """(steps, times, values) NumPy arrays of one series, one point per step (the last logged)."""

    def read_scalars_many(
        self, run_ids: Sequence[str], key: str, times: bool = True, rank: int = 0
    ) -> dict[str, tuple[Any, Any, Any]]:
        """``read_scalars`` of one key in many runs, by run id (every run asked, empty arrays where the key is
        missing), in one query rather than one per run: what grouped charts read."""

    def read_envelope(self, run_id: str, key: str, rank: int = 0) -> Envelope | None:
        """A long series' min/max picks for charts, or None (read the points instead)."""

    def read_envelopes_many(self, run_ids: Sequence[str], key: str, rank: int = 0) -> dict[str, Envelope | None]:
        """``read_envelope`` of one key in many runs, by run id, in one query rather than one per run."""

    def last_step(self, run_id: str) -> int | None:
        """The highest step of any series of the run, or None."""

    def read_arrays(
        self, run_id: str, key: str, after_step: int | None = None, rank: int = 0
    ) -> list[tuple[int, float, Any]]:
        """[(step, time, ndarray)] of one array series, in step order."""

    def array_steps(self, run_id: str, key: str, rank: int = 0) -> list[int]:
        """The steps at which an array key was logged, ascending."""

    def read_array(self, run_id: str, key: str, step: int, rank: int = 0) -> Any:
        """The array of ``key`` at exactly ``step``, or None."""

    # ---- reads: files and alerts ----------------------------------------------------------------------------------

    def file_names(self, run_id: str) -> list[str]:
        """Names of the files attached to a run."""

    def read_file(self, run_id: str, name: str) -> bytes | None:
        """A file's whole content, or None."""

    def file_chunks(self, run_id: str, name: str) -> list[tuple[float, bytes]]:
        """A file's chunks with the time each was saved, in order."""

    def alerts(self, run_id: str) -> list[AlertRecord]:
        """The alerts raised for a run, oldest first."""

    # ---- followers' state -----------------------------------------------------------------------------------------

    def read_mirror_state(self, run_id: str, target: str) -> MirrorState | None:
        """A follower's saved position in a run (None: never followed)."""

    def write_mirror_state(self, state: MirrorState) -> None:
        """Insert or replace a follower's state of a run."""

    def advance_mirror_cursor(self, run_id: str, target: str, cursor_step: int) -> None:
        """Move a follower's saved position in a run."""

    # ---- what only the engine knows (the writer asks, never importing the engine) ---------------------------------

    @property
    def lock_wait_s(self) -> float:
        """The longest one write waits for another writer's lock."""

    def set_lock_wait(self, seconds: float) -> None:
        """How long the next writes wait for another writer's lock."""

    def is_busy(self, exc: BaseException) -> bool:
        """Whether ``exc`` means another writer holds the lock (ordinary contention, retried)."""

    def is_disk_full(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the disk (or the store's size limit) is full."""


if TYPE_CHECKING:  # the type checker holds each engine to the interface
    from expertrack.store import sqlite as _sqlite

    def _sqlite_is_a_store(store: _sqlite.SQLiteStore) -> Store:
        return store

    from expertrack.store import postgres as _postgres

    def _postgres_is_a_store(store: _postgres.PostgresStore) -> Store:
        return store
