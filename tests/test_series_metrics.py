"""Orion-style event counts and point AUCs on hand-made cases (counts worked out by hand)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqlab.series.metrics import event_confusion, event_prf, overlaps, point_auc


def test_partial_overlaps_count_once_per_window():
    windows = [(10, 20), (40, 50)]
    # (15, 25) overlaps the first window partly, (45, 60) the second; (70, 80) overlaps nothing.
    events = [(15, 25), (45, 60), (70, 80)]
    assert event_confusion(windows, events) == (2, 1, 0)


def test_event_spanning_two_windows_makes_two_true_positives():
    windows = [(10, 20), (30, 40)]
    assert event_confusion(windows, [(18, 32)]) == (2, 0, 0)


def test_two_events_inside_one_window_make_one_true_positive_and_no_false_positive():
    assert event_confusion([(0, 100)], [(5, 10), (50, 60)]) == (1, 0, 0)


def test_adjacent_but_not_overlapping_is_a_miss_and_a_false_alarm():
    # Closed integer intervals: (0, 4) and (5, 9) share no point.
    assert event_confusion([(5, 9)], [(0, 4)]) == (0, 1, 1)
    assert event_confusion([(5, 9)], [(10, 12)]) == (0, 1, 1)
    # Sharing one end point is an overlap.
    assert event_confusion([(5, 9)], [(9, 12)]) == (1, 0, 0)
    assert overlaps((5, 9), (9, 12)) and not overlaps((5, 9), (10, 12))


def test_empty_detections_and_no_windows():
    assert event_confusion([(1, 2), (5, 8)], []) == (0, 0, 2)
    assert event_confusion([], [(1, 2), (3, 3)]) == (0, 2, 0)
    assert event_confusion([], []) == (0, 0, 0)


def test_single_point_intervals():
    assert event_confusion([(7, 7)], [(7, 7)]) == (1, 0, 0)
    assert event_confusion([(7, 7)], [(6, 6), (8, 8)]) == (0, 2, 1)


def test_timestamp_intervals_match_index_intervals():
    ts = pd.date_range("2024-01-01", periods=100, freq="5min").to_numpy()
    win_idx = [(10, 20), (40, 50), (80, 85)]
    ev_idx = [(20, 22), (30, 39), (60, 90)]
    win_ts = [(ts[a], ts[b]) for a, b in win_idx]
    ev_ts = [(ts[a], ts[b]) for a, b in ev_idx]
    # (20,22) touches window 1 at 20; (30,39) ends just before window 2; (60,90) covers window 3.
    assert event_confusion(win_idx, ev_idx) == (2, 1, 1)
    assert event_confusion(win_ts, ev_ts) == (2, 1, 1)
    stamps = [(pd.Timestamp(a), pd.Timestamp(b)) for a, b in win_ts]
    assert event_confusion(stamps, [(pd.Timestamp(a), pd.Timestamp(b)) for a, b in ev_ts]) \
        == (2, 1, 1)


def test_bad_intervals_raise():
    with pytest.raises(ValueError, match=r"true_windows\[0\]"):
        event_confusion([(5, 1)], [])
    with pytest.raises(ValueError, match=r"detected_events\[1\]"):
        event_confusion([], [(0, 1), (3,)])


def test_event_prf_by_hand():
    p, r, f = event_prf(3, 1, 2)
    assert p == pytest.approx(0.75) and r == pytest.approx(0.6)
    assert f == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert event_prf(0, 0, 4) == (0.0, 0.0, 0.0)
    assert event_prf(2, 0, 0) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError):
        event_prf(-1, 0, 0)


def test_summed_counts_over_a_category():
    # Caller's protocol: sum counts over series, then one P/R/F1.
    series = [([(0, 10)], [(5, 6), (20, 30)]), ([(100, 110), (200, 210)], [(205, 300)])]
    tp, fp, fn = map(sum, zip(*(event_confusion(w, e) for w, e in series), strict=True))
    assert (tp, fp, fn) == (2, 1, 1)
    assert event_prf(tp, fp, fn)[2] == pytest.approx(2 / 3)


def _points(intervals):
    return [set(range(a, b + 1)) for a, b in intervals]


_interval = st.tuples(st.integers(0, 60), st.integers(0, 15)).map(lambda t: (t[0], t[0] + t[1]))


@settings(max_examples=200, deadline=None)
@given(st.lists(_interval, max_size=5), st.lists(_interval, max_size=5))
def test_event_confusion_equals_point_set_definition(windows, events):
    w_pts, e_pts = _points(windows), _points(events)
    tp = sum(any(w & e for e in e_pts) for w in w_pts)
    fp = sum(not any(e & w for w in w_pts) for e in e_pts)
    assert event_confusion(windows, events) == (tp, fp, len(windows) - tp)


def test_point_auc_perfect_inverted_and_hand_computed():
    labels = np.array([0, 0, 1, 1, 0, 0])
    roc, pr = point_auc(np.array([0.1, 0.2, 0.9, 0.8, 0.3, 0.0]), labels)
    assert roc == 1.0 and pr == 1.0
    roc, _ = point_auc(-np.array([0.1, 0.2, 0.9, 0.8, 0.3, 0.0]), labels)
    assert roc == 0.0
    # Sorted by score: 4 (pos), 3 (neg), 2 (pos), 1 (neg). Positive-negative pairs ranked right:
    # 4>3, 4>1, 2>1 but not 2>3 -> ROC-AUC 3/4. Positives at ranks 1 and 3 -> AP (1 + 2/3) / 2.
    roc, pr = point_auc(np.array([4.0, 1.0, 3.0, 2.0]), np.array([True, False, False, True]))
    assert roc == pytest.approx(0.75) and pr == pytest.approx(5 / 6)


def test_point_auc_single_class_is_nan_and_bad_input_raises():
    assert all(math.isnan(v) for v in point_auc(np.arange(5.0), np.zeros(5)))
    with pytest.raises(ValueError, match="scores and labels"):
        point_auc(np.arange(5.0), np.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        point_auc(np.array([0.0, np.nan]), np.array([0, 1]))
    with pytest.raises(ValueError, match="0/1"):
        point_auc(np.array([0.0, 1.0]), np.array([0, 2]))
