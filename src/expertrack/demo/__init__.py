"""The reference experiment: dense vs MoE vs MoE without load balancing, on code, math and prose (docs/demo.md).

``corpus`` builds the three-domain byte corpus from the Python installation; ``model`` is the tiny dense/MoE
transformer; ``train`` runs one tracked variant; ``experiment`` runs them all and ``report`` prints the results.
Run it with ``expertrack demo`` or ``python -m expertrack.demo``. Importing this package imports nothing heavy.
"""
