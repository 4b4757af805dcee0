"""Exceptions the public API raises. Tracking failures inside the writer are never raised (DESIGN.md rule 1)."""

from __future__ import annotations


class ExpertrackError(Exception):
    """Base class for every error expertrack raises on purpose."""


class NoRunError(ExpertrackError):
    """A module-level call (``expertrack.log`` and friends) came before ``expertrack.init()``."""


class RunNotFoundError(ExpertrackError, LookupError):
    """No run matches the given id, id prefix or name."""


class AmbiguousRunError(ExpertrackError, LookupError):
    """Several runs match the given reference; ``candidates`` lists them as (id, name, project)."""

    def __init__(self, message: str, candidates: list[tuple[str, str, str]]) -> None:
        super().__init__(message)
        self.candidates = candidates


class StoreError(ExpertrackError):
    """The store file cannot be opened or is not an expertrack store."""


class RunDeletedError(Exception):
    """The run's row is no longer in the store: it was deleted (``expertrack rm``) while the run was logging."""
