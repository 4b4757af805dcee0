"""W&B mirror (placeholder while the core lands)."""
