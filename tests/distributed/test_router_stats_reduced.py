"""RouterStats over a real gloo process group: the reduced window equals one RouterStats that saw the concatenated
batches of all ranks (exact counts, metrics to 1e-6), every rank logs the same values, and update() never reads a
value back to the host on the distributed path either."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from expertrack.moe import RouterStats, names
from tests.distributed import workers
from tests.distributed.workers import CONVENTIONS, DOMAINS, EXPERTS, STEPS_PER_WINDOW, TOP_K, WINDOWS, batch
from tests.moe.helpers import Recorder

COUNTS = (names.TOKENS_PER_EXPERT, names.AFFINITY)


def spawn(target: object, world_size: int, tmp_path: Path) -> list[object]:
    mp.spawn(target, args=(world_size, str(tmp_path / "rdzv"), str(tmp_path)), nprocs=world_size, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(world_size)]


def concatenated_reference(world_size: int, convention: str) -> list[dict[str, object]]:
    """One RouterStats fed each step's batches of all ranks joined along the token axis."""
    stats = RouterStats(EXPERTS, TOP_K, domains=DOMAINS, lb_convention=convention)
    recorder = Recorder()
    for window in range(WINDOWS):
        for step in range(window * STEPS_PER_WINDOW, (window + 1) * STEPS_PER_WINDOW):
            parts = [batch(rank, step) for rank in range(world_size)]
            logits = [torch.cat([p[0][layer] for p in parts]) for layer in range(len(parts[0][0]))]
            stats.update(logits, torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts]))
        stats.log_to(recorder, step=window)
    return [values for _, values in recorder.logged]


def own_maxvio(rank: int, window: int, convention: str) -> float:
    """What rank ``rank`` alone would log as moe/maxvio for ``window``."""
    stats = RouterStats(EXPERTS, TOP_K, domains=DOMAINS, lb_convention=convention)
    for step in range(window * STEPS_PER_WINDOW, (window + 1) * STEPS_PER_WINDOW):
        logits, domains, mask = batch(rank, step)
        stats.update(logits, domain_ids=domains, mask=mask)
    return float(stats.compute()[names.MAXVIO])


@pytest.mark.parametrize("world_size", [2, 4])
def test_reduced_stats_equal_the_concatenated_batches(tmp_path: Path, world_size: int) -> None:
    per_rank = spawn(workers.router_stats_rank, world_size, tmp_path)
    for convention in CONVENTIONS:
        expected = concatenated_reference(world_size, convention)
        for rank, logged in enumerate(per_rank):
            windows = logged[convention]  # type: ignore[index]
            assert [step for step, _ in windows] == list(range(WINDOWS))
            for window, ((_, got), want) in enumerate(zip(windows, expected)):
                assert set(got) == set(want) | {names.MAXVIO_RANK_MAX}, (rank, window)
                for name in COUNTS:  # exact
                    assert got[name].dtype == np.int64
                    np.testing.assert_array_equal(got[name], want[name], err_msg=f"{name} rank {rank}")
                for name in set(want) - set(COUNTS):
                    np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-6, err_msg=name)
                imbalance = max(own_maxvio(r, window, convention) for r in range(world_size))
                assert got[names.MAXVIO_RANK_MAX] == pytest.approx(imbalance, rel=1e-6)
    # the ranks route differently, so the global batch is better balanced than its worst rank
    first = per_rank[0]["default"][0][1]  # type: ignore[index]
    assert first[names.MAXVIO_RANK_MAX] > first[names.MAXVIO]


def test_update_never_syncs_with_the_host_when_reduced(tmp_path: Path) -> None:
    per_rank = spawn(workers.no_sync_rank, 2, tmp_path)
    layers, slots = 3, TOP_K
    # per rank and step: one update with the padding mask, one without; every one of them was counted
    expected = sum(int(batch(r, step)[2].sum()) + len(batch(r, step)[2]) for r in range(2) for step in range(4))
    for logged in per_rank:
        [(step, values)] = logged  # type: ignore[misc]
        assert step == 0
        assert values[names.TOKENS_PER_EXPERT].sum() == expected * layers * slots
    np.testing.assert_array_equal(
        per_rank[0][0][1][names.AFFINITY],  # type: ignore[index]
        per_rank[1][0][1][names.AFFINITY],  # type: ignore[index]
    )


def test_watch_with_a_process_group_logs_the_global_batch(tmp_path: Path) -> None:
    from expertrack.moe import watch
    from tests.moe.helpers import TinyMoE

    per_rank = spawn(workers.watch_rank, 2, tmp_path)
    torch.manual_seed(0)
    model = TinyMoE(num_experts=4, top_k=2, depth=2)  # the same weights as every rank's
    recorder = Recorder()
    with watch(model, domains=None) as watcher, torch.no_grad():
        for step in range(2):  # each step's batches of both ranks as one batch (routing is per token)
            model(torch.cat([workers.watch_ids(rank, step) for rank in range(2)]))
        watcher.log_to(recorder, step=1)
    [(_, want)] = recorder.logged
    for logged in per_rank:
        [(step, got)] = logged  # type: ignore[misc]
        assert step == 1
        np.testing.assert_array_equal(got[names.TOKENS_PER_EXPERT], want[names.TOKENS_PER_EXPERT])
        assert want[names.TOKENS_PER_EXPERT].sum() == 2 * 2 * (2 * 15) * 2  # steps x layers x tokens x top-k
        for name in set(want) - {names.TOKENS_PER_EXPERT}:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-6, err_msg=name)


def test_watch_refuses_a_group_given_twice() -> None:
    from expertrack.moe import watch
    from tests.moe.helpers import TinyMoE

    with pytest.raises(ValueError, match="pass process_group to the RouterStats"):
        watch(TinyMoE(num_experts=4, top_k=2), stats=RouterStats(4, 2), process_group=object())
