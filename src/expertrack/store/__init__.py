"""The store: the local SQLite file per tracking directory, the source of truth (DESIGN.md rule 2), and a shared
PostgreSQL database for teams.

``Store`` (store/interface.py) is the interface every engine offers; ``SQLiteStore`` (store/sqlite.py) and
``PostgresStore`` (store/postgres.py) are the two engines, sharing their reads (``sql.SqlStore``) and writes
(``writes.StoreWrites``); ``location.open_store`` opens either from a location. ``chunks`` packs scalar series
into binary chunks, ``levels`` keeps their min/max levels, ``downsample`` reduces long series for charts while
keeping every spike, ``copy`` copies runs between any two stores. The store knows nothing of the layers above it.
"""

from expertrack.store.interface import Store
from expertrack.store.sqlite import SQLiteStore

__all__ = ["SQLiteStore", "Store"]
