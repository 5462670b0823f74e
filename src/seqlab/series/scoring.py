"""From reconstruction errors to anomaly scores, thresholds and events.

1. Per-point error: each window's absolute error |x - x'| (scaled units), averaged over all
   windows that cover the point (`ErrorAccumulator`; mean, so points at the series' ends that
   fewer windows cover are on the same scale as the rest).
2. Error model (EncDec-AD, Malhotra et al. 2016): a Gaussian N(mu, Sigma) fitted to the per-point
   error vectors (one per time point, C channels) on normal validation data; the anomaly score
   is the squared Mahalanobis distance (e - mu)^T Sigma^-1 (e - mu), i.e. the Gaussian's negative
   log-likelihood up to a constant and a factor 2.
3. Threshold: the `q` quantile of the scores on normal data. Test labels are never used, except
   by `calibrated_threshold`, which the estimator records as a labelled calibration.
4. Events: flagged points merged into inclusive intervals, gaps shorter than `min_gap` bridged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class ErrorAccumulator:
    """Running sums of per-window errors onto the points they cover (bounded memory).

    n: series length; channels: C. After all windows are added, `mean()` is (n, C).
    """

    def __init__(self, n: int, channels: int):
        self.sum = np.zeros((n, channels), dtype=np.float64)
        self.count = np.zeros(n, dtype=np.int64)

    def add(self, starts: np.ndarray, errors: np.ndarray) -> None:
        """starts: (B,) window starts, distinct; errors: (B, T, C) per-window point errors."""
        for t in range(errors.shape[1]):  # distinct starts -> no index collisions per step
            self.sum[starts + t] += errors[:, t]
            self.count[starts + t] += 1

    def mean(self) -> np.ndarray:
        """(n, C) mean error of each point over its covering windows."""
        if (self.count == 0).any():
            raise ValueError("some points are covered by no window")
        return self.sum / self.count[:, None]


@dataclass
class GaussianErrorModel:
    """N(mean, cov) over C-dimensional error vectors; score = squared Mahalanobis distance.

    mean: (C,); cov: (C, C); precision: (C, C) = inverse of cov (+ a tiny ridge).
    """

    mean: np.ndarray
    cov: np.ndarray

    @classmethod
    def fit(cls, errors: np.ndarray) -> GaussianErrorModel:
        """errors: (M, C) error vectors from normal data, M >= 2."""
        if errors.ndim != 2 or len(errors) < 2:
            raise ValueError(f"errors: expected (M >= 2, C), got shape {errors.shape}")
        mean = errors.mean(axis=0)
        cov = np.atleast_2d(np.cov(errors, rowvar=False))
        return cls(mean=mean, cov=cov)

    @property
    def precision(self) -> np.ndarray:
        c = self.cov.shape[0]
        # Ridge relative to the error scale: a perfectly reconstructed channel (zero variance)
        # must not make the inverse blow up.
        ridge = 1e-6 * max(float(np.trace(self.cov)) / c, 1e-12)
        return np.linalg.inv(self.cov + ridge * np.eye(c))

    def score(self, errors: np.ndarray) -> np.ndarray:
        """errors: (..., C) -> (...) squared Mahalanobis distances."""
        d = errors - self.mean
        return np.einsum("...i,ij,...j->...", d, self.precision, d)

    def to_dict(self) -> dict:
        return {"kind": "gaussian", "mean": self.mean.tolist(), "cov": self.cov.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> GaussianErrorModel:
        return cls(mean=np.asarray(d["mean"], dtype=np.float64),
                   cov=np.atleast_2d(np.asarray(d["cov"], dtype=np.float64)))


def quantile_threshold(scores: np.ndarray, q: float) -> float:
    """The q quantile of scores on normal data (points above it are flagged)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"threshold_quantile: expected 0 < q < 1, got {q}")
    return float(np.quantile(scores, q))


def calibrated_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """LABELLED calibration: the threshold with the best point-wise F1 against `labels`.

    scores, labels: (N,). Returns (threshold, f1). Uses the labels: not an unsupervised result.
    """
    from sklearn.metrics import precision_recall_curve

    labels = np.asarray(labels).astype(bool)
    if labels.shape != scores.shape:
        raise ValueError(f"labels: expected shape {scores.shape}, got {labels.shape}")
    if not labels.any():
        raise ValueError("labels: no positive (anomalous) point to calibrate on")
    precision, recall, thr = precision_recall_curve(labels, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = int(np.argmax(f1[:-1]))  # the last (P=1, R=0) point has no threshold
    # predict() flags score > threshold; thr[best] is the smallest score flagged (>=), so step
    # just below it.
    return float(np.nextafter(thr[best], -np.inf)), float(f1[best])


def flags_to_events(flags: np.ndarray, min_gap: int = 0) -> list[tuple[int, int]]:
    """Merge flagged points into inclusive (start, end) intervals.

    flags: (N,) bool. Events separated by fewer than `min_gap` unflagged points are merged
    (min_gap=0 or 1: only touching runs form one event).
    """
    flags = np.asarray(flags, dtype=bool)
    if not flags.any():
        return []
    padded = np.concatenate([[False], flags, [False]])
    change = np.flatnonzero(padded[1:] != padded[:-1])
    starts, ends = change[0::2], change[1::2] - 1  # inclusive ends
    events: list[tuple[int, int]] = []
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        if events and s - events[-1][1] - 1 < min_gap:
            events[-1] = (events[-1][0], e)
        else:
            events.append((s, e))
    return events


def event_peaks(events: list[tuple[int, int]], scores: np.ndarray) -> list[float]:
    """Highest score inside each (start, end) inclusive event."""
    return [float(scores[s:e + 1].max()) for s, e in events]
