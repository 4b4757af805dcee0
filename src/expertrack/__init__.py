"""expertrack: local-first experiment tracking for dense and MoE language-model training.

The public surface mirrors wandb's, so ``import expertrack as wandb`` works for the common calls.
Importing this package loads no torch, matplotlib, wandb or web server (DESIGN.md, rule 4).
"""

__version__ = "0.1.0"
