"""RouterStats logging into a real expertrack run, read back through the Api; and import lightness."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

import expertrack
from expertrack.moe import names, watch
from tests.moe.helpers import TinyMoE


def test_router_stats_into_a_real_run_and_back(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyMoE(num_experts=4, top_k=2, depth=2)
    run = expertrack.init(project="moe", name="moe-test", dir=tmp_path)
    watcher = watch(model, domains=["code", "math", "prose"])
    logged = []
    for step in range(1, 21):
        ids = torch.randint(0, 32, (3, 5))
        with watcher.batch(domain_ids=torch.tensor([0, 1, 2])):
            model(ids).sum().backward()
        if step % 10 == 0:
            logged.append(watcher.log_to(run, step=step))
    watcher.detach()
    run.finish()

    stored = expertrack.Api(tmp_path).run(run.id)
    steps, affinity = stored.arrays(names.AFFINITY)
    assert steps.tolist() == [10, 20]
    assert affinity.shape == (2, 2, 4, 3)
    np.testing.assert_array_equal(affinity, np.stack([m[names.AFFINITY] for m in logged]))
    assert affinity[0].sum() == 10 * 15 * 2 * 2  # steps x tokens x top-k x layers
    steps, utilization = stored.arrays(names.UTILIZATION)
    np.testing.assert_allclose(utilization.sum(-1), 1.0, rtol=1e-6)
    lb_steps, _, lb_values = stored.scalars(names.LB_LOSS)
    assert lb_steps.tolist() == [10, 20]
    np.testing.assert_allclose(lb_values, [m[names.LB_LOSS] for m in logged])
    assert set(names.SCALARS) <= set(stored.metric_keys())
    assert set(names.ARRAYS) <= set(stored.array_keys())
    assert stored.config["moe"] == {
        "num_experts": 4,
        "top_k": 2,
        "num_layers": 2,
        "domains": ["code", "math", "prose"],
        "lb_convention": "layers=mean;normalize_by_k=true;count=all_k",
    }


def test_importing_expertrack_moe_does_not_import_torch() -> None:
    code = (
        "import sys, expertrack, expertrack.moe, expertrack.moe.names, expertrack.moe.affinity\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "from expertrack.moe import RouterStats\n"
        "assert 'torch' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
