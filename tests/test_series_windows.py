"""Windowing, scaling, the missing-value policy and aggregation over overlapping windows."""

from __future__ import annotations

import numpy as np
import pytest

from seqlab.errors import UserError
from seqlab.series.scoring import ErrorAccumulator
from seqlab.series.windows import (
    Scaler,
    fill_missing,
    iter_window_batches,
    point_coverage,
    sliding_windows,
    window_starts,
)


def test_window_starts_cover_every_point_and_end_flush():
    assert window_starts(10, 4, 1).tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert window_starts(10, 4, 3).tolist() == [0, 3, 6]          # 6 + 4 = 10: already flush
    assert window_starts(11, 4, 3).tolist() == [0, 3, 6, 7]       # extra window at the end
    assert window_starts(4, 4, 5).tolist() == [0]
    for n, w, s in [(10, 4, 3), (11, 4, 3), (100, 7, 5), (64, 64, 9)]:
        cov = point_coverage(n, window_starts(n, w, s), w)
        assert (cov >= 1).all()


def test_window_starts_rejects_short_series():
    with pytest.raises(UserError, match="5 points, shorter than the window \\(8\\)"):
        window_starts(5, 8, 1)


def test_sliding_windows_is_a_view_with_the_right_values():
    x = np.arange(20, dtype=np.float64).reshape(10, 2)              # (N, C)
    v = sliding_windows(x, 4)
    assert v.shape == (7, 4, 2)
    assert np.shares_memory(v, x)                                   # no copy
    np.testing.assert_array_equal(v[3], x[3:7])
    starts = window_starts(10, 4, 3)
    got = np.concatenate([b for _, b in iter_window_batches(x, starts, 4, batch_size=2)])
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.stack([x[s:s + 4] for s in starts]))


def test_aggregation_over_overlapping_windows_hand_checked():
    # n=5, window=3, stride=1 -> windows at 0, 1, 2; each window's error is its index + 1.
    acc = ErrorAccumulator(5, 1)
    errors = np.array([1.0, 2.0, 3.0])[:, None, None] * np.ones((3, 3, 1))
    acc.add(np.array([0, 1, 2]), errors)
    # point 0: window 0 only -> 1; point 1: windows 0,1 -> 1.5; point 2: all -> 2;
    # point 3: windows 1,2 -> 2.5; point 4: window 2 -> 3.
    np.testing.assert_allclose(acc.mean()[:, 0], [1.0, 1.5, 2.0, 2.5, 3.0])
    assert acc.count.tolist() == [1, 2, 3, 2, 1]


def test_aggregation_in_several_batches_equals_one_batch():
    rng = np.random.default_rng(0)
    starts = window_starts(50, 8, 3)
    err = rng.random((len(starts), 8, 2))
    one = ErrorAccumulator(50, 2)
    one.add(starts, err)
    many = ErrorAccumulator(50, 2)
    for i in range(0, len(starts), 4):
        many.add(starts[i:i + 4], err[i:i + 4])
    np.testing.assert_allclose(one.mean(), many.mean())


def test_scaler_standardises_and_inverts():
    rng = np.random.default_rng(1)
    x = rng.normal([5.0, -3.0], [2.0, 0.5], size=(500, 2))
    sc = Scaler.fit(x, ["a", "b"])
    z = sc.transform(x)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-5)
    np.testing.assert_allclose(sc.inverse(z), x, rtol=1e-5, atol=1e-5)
    again = Scaler.from_dict(sc.to_dict())
    np.testing.assert_array_equal(again.mean, sc.mean)


def test_scaler_names_the_constant_column():
    x = np.column_stack([np.arange(10.0), np.full(10, 3.0)])
    with pytest.raises(UserError, match="column 'flat' is constant"):
        Scaler.fit(x, ["ramp", "flat"], "data.csv")


def test_fill_missing_interpolates_linearly_and_fills_edges():
    x = np.array([[np.nan], [1.0], [np.nan], [np.nan], [4.0], [np.inf]])
    out = fill_missing(x, "interpolate", ["v"], lambda r: f"row {r}")
    np.testing.assert_allclose(out[:, 0], [1.0, 1.0, 2.0, 3.0, 4.0, 4.0])
    assert np.isnan(x[0, 0])                                        # input untouched


def test_fill_missing_error_policy_names_row_and_column():
    x = np.array([[1.0, 2.0], [3.0, np.inf]])
    with pytest.raises(UserError, match="line 3: column 'b': infinite value"):
        fill_missing(x, "error", ["a", "b"], lambda r: f"line {r + 2}")
    with pytest.raises(UserError, match="no finite value"):
        fill_missing(np.full((3, 1), np.nan), "interpolate", ["a"], str)
