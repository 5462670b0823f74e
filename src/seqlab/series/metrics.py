"""Anomaly-detection metrics: Orion-style event counts and point-level ROC-AUC / PR-AUC.

Event level (the Orion benchmark's overlap rule, unweighted): compare labelled anomaly windows
with detected events, both as intervals.
- a labelled window that overlaps at least one detected event is one true positive,
- a labelled window that overlaps none is one false negative,
- a detected event that overlaps no labelled window is one false positive.
An event spanning two windows makes both true positives; two events inside one window make one.
Counts are summed over the series of a category by the caller, then turned into P/R/F1.

Intervals are closed, (start, end) with start <= end, in any comparable unit: integer positions
(as `SeriesAutoencoder.detect_events` returns them), floats, or timestamps (np.datetime64,
pandas.Timestamp). Closed means two intervals that share an end point overlap; Orion compares
timestamps strictly, which differs only for intervals that touch at exactly one instant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

Interval = tuple[Any, Any]


def _check_intervals(name: str, intervals: Sequence[Interval]) -> list[Interval]:
    out = []
    for i, iv in enumerate(intervals):
        if len(iv) != 2:
            raise ValueError(f"{name}[{i}] must be a (start, end) pair, got {iv!r}")
        start, end = iv
        if end < start:
            raise ValueError(f"{name}[{i}] = ({start}, {end}) has end before start")
        out.append((start, end))
    return out


def overlaps(a: Interval, b: Interval) -> bool:
    """Whether the closed intervals a = (start, end) and b share at least one point."""
    return bool(a[0] <= b[1] and b[0] <= a[1])


def event_confusion(true_windows: Sequence[Interval],
                    detected_events: Sequence[Interval]) -> tuple[int, int, int]:
    """Orion-style (tp, fp, fn) for one series.

    true_windows:    labelled anomaly windows, (start, end) closed intervals
    detected_events: detected events, (start, end) closed intervals in the same unit
    """
    windows = _check_intervals("true_windows", true_windows)
    events = _check_intervals("detected_events", detected_events)
    tp = sum(any(overlaps(w, e) for e in events) for w in windows)
    fn = len(windows) - tp
    fp = sum(not any(overlaps(e, w) for w in windows) for e in events)
    return tp, fp, fn


def event_prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """(precision, recall, F1) from event counts; 0.0 where a ratio has a zero denominator."""
    if min(tp, fp, fn) < 0:
        raise ValueError(f"counts must be non-negative, got tp={tp} fp={fp} fn={fn}")
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def point_auc(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Point-level (ROC-AUC, PR-AUC) of anomaly scores against 0/1 labels, via scikit-learn.

    scores: (N,) float, higher = more anomalous
    labels: (N,) bool or 0/1, True inside a labelled anomaly
    PR-AUC is average precision. Both are NaN when the labels hold a single class (undefined).
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(f"scores and labels must both be (N,), got {scores.shape} and "
                         f"{labels.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0/1 or bool")
    labels = labels.astype(bool)
    if labels.all() or not labels.any():
        return math.nan, math.nan
    return (float(roc_auc_score(labels, scores)),
            float(average_precision_score(labels, scores)))
