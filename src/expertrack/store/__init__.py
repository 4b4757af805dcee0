"""The store: the local SQLite file per tracking directory, the source of truth (DESIGN.md rule 2), and a shared
PostgreSQL database for teams.

``location.open_store`` opens either from a location; ``sql.SqlStore`` holds the reads both engines share,
``sqlite.SQLiteStore`` (``Store``) and ``postgres.PostgresStore`` connect and migrate; ``chunks`` packs scalar series
into binary chunks; ``downsample`` reduces long series for charts while keeping every spike. The store knows
nothing of the layers above it.
"""

from expertrack.store.sqlite import Store

__all__ = ["Store"]
