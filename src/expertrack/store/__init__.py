"""The local store: one SQLite file per tracking directory, the source of truth (DESIGN.md rule 2).

``Store`` opens (and migrates) the file; ``chunks`` packs scalar series into binary chunks; ``downsample`` reduces
long series for charts while keeping every spike. The store knows nothing of the layers above it.
"""

from expertrack.store.sqlite import Store

__all__ = ["Store"]
