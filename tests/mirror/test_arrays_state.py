"""The array mapping (docs/wandb.md, "Arrays") and the mirror_state lines ``show`` prints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import expertrack
from expertrack.mirror import arrays
from expertrack.mirror.locks import RunLock, is_held
from expertrack.mirror.state import mirror_status, read_state, write_state
from expertrack.paths import store_path
from expertrack.store import SQLiteStore

from .fakes import FakeHistogram, FakeImage, FakeWandb


@pytest.mark.parametrize(
    ("shape", "kind"),
    [
        ((1,), "scalar"),
        ((8,), "series"),
        ((64,), "series"),
        ((65,), "histogram"),
        ((8, 3), "heatmap"),
        ((4, 8, 3), "layers"),
        ((300, 3), "histogram"),
        ((2, 2, 2, 2), "histogram"),
    ],
)
def test_array_kind(shape: tuple[int, ...], kind: str) -> None:
    assert arrays.array_kind(shape) == kind


def test_to_wandb_names_and_values() -> None:
    fake = FakeWandb()
    assert arrays.to_wandb("u", np.array([1, 2], dtype=np.int32), fake) == {"u/0": 1.0, "u/1": 2.0}
    layers = arrays.to_wandb("aff", np.random.rand(2, 8, 3), fake)
    assert sorted(layers) == ["aff/layer0", "aff/layer1"]
    assert all(isinstance(v, FakeImage) for v in layers.values())
    assert "rows = axis 0 (8), columns = axis 1 (3)" in (layers["aff/layer1"].caption or "")
    hist = arrays.to_wandb("w", np.array([np.nan, np.inf, *range(100)]), fake)["w"]
    assert isinstance(hist, FakeHistogram) and hist.np_histogram[0].sum() == 100  # NaN and inf have no bin


def test_heatmap_pixels() -> None:
    matrix = np.array([[0.0, 1.0], [np.nan, 0.5]])
    pixels = arrays.colorize(matrix, 0.0, 1.0, min_side=4)
    assert pixels.shape == (4, 4, 3) and pixels.dtype == np.uint8
    assert tuple(pixels[0, 0]) == (68, 1, 84)  # the ramp's dark end
    assert tuple(pixels[0, 3]) == (253, 231, 37)  # its bright end
    assert tuple(pixels[3, 0]) == (128, 128, 128)  # NaN is grey


def test_status_lines(tracking_dir: Path) -> None:
    run = expertrack.init(project="p", id="s1", dir=tracking_dir, mirror="off")
    run.finish()
    path = store_path(tracking_dir)
    with SQLiteStore(path) as store:
        assert mirror_status(store, "s1") == "never mirrored (run `expertrack sync` to mirror it)"
        write_state(store, "s1", "failed", None, None, "wandb.init raised CommError: offline")
        assert mirror_status(store, "s1") == "never started (wandb.init raised CommError: offline)"
        write_state(store, "s1", "partial", 1200, "e/p/s1", "W&B did not answer (wandb.log) within 120 s")
        assert mirror_status(store, "s1") == "partial up to step 1200 (W&B did not answer (wandb.log) within 120 s)"
        write_state(store, "s1", "partial", 7, "e/p/s1", "live mirror running")
        with RunLock(path, "s1") as lock:
            assert lock.acquire() and is_held(path, "s1")
            assert mirror_status(store, "s1") == "partial up to step 7 (live mirror running)"
        assert not is_held(path, "s1")
        assert "the mirror process stopped before it finished" in mirror_status(store, "s1")
        write_state(store, "s1", "complete", 1500, "e/p/s1")
        assert mirror_status(store, "s1") == "complete (e/p/s1)"
        state = read_state(store, "s1")
        assert state is not None and (state.cursor_step, state.remote_id) == (1500, "e/p/s1")
