"""Seeds as one curve (expertrack.seeds): the numbers the figures and the dashboard's grouped charts share."""

from __future__ import annotations

import numpy as np
import pytest

from expertrack.seeds import aggregate, spread


def test_spread_of_runs_at_the_same_steps() -> None:
    steps = np.arange(5)
    curves = [(steps, np.full(5, v)) for v in (1.0, 2.0, 6.0)]
    curve = spread(curves)
    assert curve.n == 3 and curve.x.tolist() == [0, 1, 2, 3, 4]
    assert np.allclose(curve.mean, 3.0) and np.allclose(curve.std, np.std([1, 2, 6], ddof=1))
    assert np.allclose(curve.band("minmax"), [[1.0] * 5, [6.0] * 5])
    low, high = curve.band("std")
    assert np.allclose(high - low, 2 * np.std([1, 2, 6], ddof=1))
    with pytest.raises(ValueError, match="band"):
        curve.band("iqr")


def test_a_nan_in_one_run_is_left_out_of_that_step_only() -> None:
    steps = np.arange(3)
    curves = [(steps, np.array([1.0, np.nan, 3.0])), (steps, np.array([3.0, 4.0, 5.0]))]
    _, mean, _ = aggregate(curves)
    assert mean.tolist() == [2.0, 4.0, 4.0]
    curve = spread(curves)
    assert curve.low.tolist() == [1.0, 4.0, 3.0] and curve.high.tolist() == [3.0, 4.0, 5.0]


def test_runs_at_different_steps_meet_on_their_common_range() -> None:
    curves = [
        (np.array([0, 2, 4, 6]), np.array([0.0, 2.0, 4.0, 6.0])),
        (np.array([1, 3, 5]), np.array([1.0, 3.0, 5.0])),
    ]
    x, mean, std = aggregate(curves)
    assert x.tolist() == [1, 2, 3, 4, 5] and np.allclose(mean, x) and np.allclose(std, 0)


def test_one_run_and_no_runs() -> None:
    one = spread([(np.arange(3), np.array([1.0, 2.0, 3.0]))])
    assert one.n == 1 and one.std.tolist() == [0, 0, 0] and one.low.tolist() == [1, 2, 3]
    assert spread([]).n == 0 and aggregate([])[0].size == 0
