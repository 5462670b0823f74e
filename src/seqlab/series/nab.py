"""The Numenta Anomaly Benchmark's own score (Lavin & Ahmad 2015, numenta/NAB `nab/sweeper.py`,
`nab/runner.py`), written from the paper and the scorer's rules.

Per series, with labelled anomaly windows (inclusive index intervals) and a detector's per-point
detections (bool, True = "anomaly reported at this point"):

- Probation: the first min(floor(0.15 N), 0.15 * 5000) points are ignored (no TP, FP or FN).
- Inside a window [a, b] of width w = b - a + 1, a detection at point i is worth
  tpWeight * S(-(b - i + 1) / w) / S(-1), with the scaled sigmoid S(x) = 2 sigmoid(-5 x) - 1
  (S(x) = -1 for x >= 3): the window's first point earns exactly tpWeight, the last ~0.
  Only the window's best (earliest) detection counts; a window with no detection costs
  -fnWeight (a window entirely inside the probation is not scored).
- Outside the windows every detection costs fpWeight * S((i - r) / (w' - 1)), where r is the
  right end and w' the width of the previous window (a detection just after a window costs
  little, one 3 widths or more past it the full -fpWeight); before the first window, -fpWeight.
- A detector's raw score is the sum over the corpus. It is normalised between the null
  detector (no detections: -fnWeight per scored window) and the perfect one (tpWeight per
  labelled window): 100 * (raw - null) / (perfect - null). 0 = the null detector, 100 = perfect.

Profiles (NAB's config/profiles.json): "standard" (tp 1, fp 0.11, fn 1), "reward_low_FP_rate"
(fp 0.22), "reward_low_FN_rate" (fn 2).

NAB optimises one threshold on a detector's continuous scores over the whole corpus; a detector
that reports events (as this project's do) has no threshold left to tune, and reports each
event at its first point (`event_onsets`): NAB charges every detected point outside a window,
so flagging all the points of an event would count one false alarm many times.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

PROBATION_FRACTION = 0.15


@dataclass(frozen=True)
class CostProfile:
    """NAB's application profile: the weights of a true positive, a false positive, a miss."""

    tp_weight: float
    fp_weight: float
    fn_weight: float


PROFILES = {
    "standard": CostProfile(tp_weight=1.0, fp_weight=0.11, fn_weight=1.0),
    "reward_low_FP_rate": CostProfile(tp_weight=1.0, fp_weight=0.22, fn_weight=1.0),
    "reward_low_FN_rate": CostProfile(tp_weight=1.0, fp_weight=0.11, fn_weight=2.0),
}


def scaled_sigmoid(x: float) -> float:
    """NAB's reward curve: 2 sigmoid(-5 x) - 1, and -1 from x = 3 on (x is the position relative
    to a window's right end, in window widths: -1 = the window's first point)."""
    if x >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


def probation_length(n: int, fraction: float = PROBATION_FRACTION) -> int:
    """Points at the start of a series of n points that NAB does not score."""
    return int(math.ceil(min(math.floor(fraction * n), fraction * 5000)))


def point_values(n: int, windows: Sequence[tuple[int, int]], profile: CostProfile,
                 probation: int) -> tuple[np.ndarray, np.ndarray]:
    """What a detection at each point would be worth, and where each point belongs.

    windows: sorted, non-overlapping inclusive (start, end) positions. Returns (value (n,)
    float64: the weighted score of a detection there; window (n,) int64: the window's index,
    -1 outside every window, -2 inside the probation).
    """
    value = np.empty(n, dtype=np.float64)
    where = np.full(n, -1, dtype=np.int64)
    max_tp = scaled_sigmoid(-1.0)
    prev_right, prev_width = None, None
    pos = 0
    for k, (a, b) in enumerate(windows):
        if not 0 <= a <= b < n:
            raise ValueError(f"windows[{k}] = ({a}, {b}): expected 0 <= start <= end < {n}")
        if a < pos:
            raise ValueError(f"windows[{k}] = ({a}, {b}) overlaps or precedes the one before")
        _fill_outside(value, pos, a, prev_right, prev_width, profile)
        width = b - a + 1
        for i in range(a, b + 1):
            value[i] = scaled_sigmoid(-(b - i + 1) / width) * profile.tp_weight / max_tp
        where[a:b + 1] = k
        prev_right, prev_width, pos = b, width, b + 1
    _fill_outside(value, pos, n, prev_right, prev_width, profile)
    where[:probation] = -2
    return value, where


def _fill_outside(value: np.ndarray, lo: int, hi: int, prev_right: int | None,
                  prev_width: int | None, profile: CostProfile) -> None:
    """False-positive values of points lo..hi-1, after the window ending at prev_right."""
    # A one-point window has no width to scale by (NAB divides by zero there): 1 point.
    scale = 1.0 if prev_width is None else max(float(prev_width) - 1.0, 1.0)
    for i in range(lo, hi):
        x = 3.0 if prev_right is None else (i - prev_right) / scale
        value[i] = scaled_sigmoid(x) * profile.fp_weight


@dataclass
class NabSeriesScore:
    """One series under one profile: raw score and counts (windows detected / missed, false
    detections), and the number of windows NAB scores (outside the probation)."""

    score: float
    tp: int
    fn: int
    fp: int
    windows: int
    scored_windows: int


def score_series(detections: np.ndarray, windows: Sequence[tuple[int, int]],
                 profile: CostProfile | str = "standard",
                 probation: int | None = None) -> NabSeriesScore:
    """NAB's raw score of one series. detections: (N,) bool; windows: inclusive (start, end)
    positions; probation: points not scored (default `probation_length(N)`)."""
    prof = PROFILES[profile] if isinstance(profile, str) else profile
    det = np.asarray(detections, dtype=bool)
    n = len(det)
    probation = probation_length(n) if probation is None else int(probation)
    value, where = point_values(n, sorted(windows), prof, probation)
    scored = sorted(set(where[where >= 0].tolist()))
    score, tp = 0.0, 0
    for k in scored:
        hit = det & (where == k)
        if hit.any():
            score += float(value[hit].max())
            tp += 1
        else:
            score -= prof.fn_weight
    false = det & (where == -1)
    score += float(value[false].sum())
    return NabSeriesScore(score=score, tp=tp, fn=len(scored) - tp, fp=int(false.sum()),
                          windows=len(windows), scored_windows=len(scored))


def event_onsets(events: Iterable[tuple[int, int]], n: int) -> np.ndarray:
    """(N,) bool detections: True at the first point of each (start, end) event."""
    out = np.zeros(n, dtype=bool)
    for start, _ in events:
        out[int(start)] = True
    return out


def normalised(raw: float, null: float, n_windows: int, profile: CostProfile | str) -> float:
    """100 * (raw - null) / (perfect - null), perfect = tpWeight per labelled window."""
    prof = PROFILES[profile] if isinstance(profile, str) else profile
    perfect = n_windows * prof.tp_weight
    return 100.0 * (raw - null) / (perfect - null) if perfect != null else float("nan")


def score_corpus(series: Sequence[tuple[np.ndarray, Sequence[tuple[int, int]]]],
                 profiles: Iterable[str] = tuple(PROFILES)) -> dict[str, dict[str, float]]:
    """NAB scores of one detector over a corpus of (detections (N,) bool, windows) pairs.

    Returns {profile: {"score": normalised, "raw", "null", "perfect", "tp", "fp", "fn"}}; the
    null score is the corpus scored with no detections (NAB's null detector never detects at
    its optimal threshold)."""
    out: dict[str, dict[str, float]] = {}
    for name in profiles:
        prof = PROFILES[name]
        parts = [score_series(d, w, prof) for d, w in series]
        nulls = [score_series(np.zeros_like(d, dtype=bool), w, prof) for d, w in series]
        raw, null = sum(p.score for p in parts), sum(p.score for p in nulls)
        n_windows = sum(p.windows for p in parts)
        out[name] = {"score": normalised(raw, null, n_windows, prof), "raw": raw, "null": null,
                     "perfect": n_windows * prof.tp_weight, "tp": sum(p.tp for p in parts),
                     "fp": sum(p.fp for p in parts), "fn": sum(p.fn for p in parts)}
    return out


__all__ = ["PROFILES", "CostProfile", "NabSeriesScore", "event_onsets", "normalised",
           "point_values", "probation_length", "scaled_sigmoid", "score_corpus", "score_series"]
