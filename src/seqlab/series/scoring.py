"""From reconstruction errors to anomaly scores, thresholds and events.

1. Per-point error: each window's absolute error |x - x'| (scaled units), equalised per window
   position (`PositionProfile`), averaged over all windows that cover the point
   (`ErrorAccumulator`).
2. Error model (EncDec-AD, Malhotra et al. 2016): a Gaussian N(mu, Sigma) fitted to the per-point
   error vectors (one per time point, C channels) on normal validation data; the anomaly score
   is the squared Mahalanobis distance (e - mu)^T Sigma^-1 (e - mu), i.e. the Gaussian's negative
   log-likelihood up to a constant and a factor 2.
   One-sided alternative (`relative_error`): the mean over channels of each channel's error
   divided by its mean error on normal data. Only a larger-than-normal error raises it; the
   Mahalanobis distance also flags errors that are unusually *small*.
3. Smoothing (`ewma`): an exponentially weighted moving average of the per-point score, as in
   Hundman et al. 2018 ("telemanom", the error smoothing Orion's LSTM pipelines use): a single
   noisy point no longer crosses the threshold, a sustained rise does.
4. Threshold, from scores on normal data only: the `q` quantile (`quantile_threshold`), mean +
   k std (`sigma_threshold`; Orion's fixed threshold, k=4), that or the highest normal score,
   whichever is larger (`sigma_max_threshold`), or Hundman's non-parametric dynamic
   threshold (`dynamic_threshold`). Test labels are never used, except by
   `calibrated_threshold`, which the estimator records as a labelled calibration.
5. Events: flagged points merged into inclusive intervals, gaps shorter than `min_gap` bridged;
   optionally Hundman's pruning (`prune_events`): events whose peak is not clearly (by a
   fraction `min_decrease`) above the next smaller peak, or above the highest unflagged score,
   are dropped.
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
class PositionProfile:
    """How well the model rebuilds each position of a window, from normal data; equalises it.

    An autoencoder does not rebuild every position of a window equally well: the first and last
    steps (where the encoder has seen least context, or the decoder starts from the latent
    state alone) typically have a normal error several times the middle's. A point inside the
    series is averaged over windows at every position, so that bias averages out; a point at
    the series' ends is covered only by windows that hold it at their first (or last) few
    positions, so its error, hence its anomaly score, was inflated by the position alone: the
    spurious "anomaly" at index 0 or at the series' end.

    The fix makes each position's error comparable before any averaging: an error at window
    position t, channel c is multiplied by weight[t, c] = m[c] / m[t, c], where m[t, c] is the
    model's mean error at that position on normal data and m[c] its mean over positions. On
    normal data every position then has the same expected error m[c] (the channel's usual
    level, so error units and thresholds keep their meaning), and a point's error no longer
    depends on where the windows covering it put it: an edge point is judged against what the
    model normally gets wrong at the edge. Error statistics come from normal data only, as the
    error model's do (no labels).

    That equalises the mean, not the spread: an interior point averages ~T / stride windows, a
    point at the series' ends only a few, so its error is noisier and crosses a threshold set
    on interior points by chance. `shrink` gives a point covered by k of the full K windows
    the deviation sqrt(k / K) * (mean error - level): the same variance as an interior point
    when the windows' errors are independent, less when they are correlated (overlapping
    windows share the point's noise), so the ends are never noisier than the interior. Seen
    another way, the windows the series' ends cut off count as normal ones (error = level),
    weighted for independent evidence; the same prior starts the score's EWMA (`ewma`).

    weight: (T, C) float64, mean 1 over T for each channel; level: (C,) mean normal error m[c].
    """

    weight: np.ndarray
    level: np.ndarray

    @classmethod
    def fit(cls, position_sum: np.ndarray, count: int) -> PositionProfile:
        """position_sum: (T, C) summed absolute errors at each window position over `count`
        windows of normal data."""
        m = np.asarray(position_sum, dtype=np.float64) / max(int(count), 1)  # (T, C)
        level = m.mean(axis=0, keepdims=True)                                # (1, C)
        # A position (or channel) rebuilt perfectly keeps weight 1 instead of dividing by ~0.
        floor = np.maximum(level, 1e-12) * 1e-3
        weight = np.where(m > floor, level / np.maximum(m, floor), 1.0)
        return cls(weight=weight, level=level[0])

    def apply(self, errors: np.ndarray) -> np.ndarray:
        """errors: (B, T, C) per-window absolute errors -> (B, T, C) equalised errors."""
        return errors * self.weight

    def shrink(self, errors: np.ndarray, count: np.ndarray, full: int) -> np.ndarray:
        """errors: (N, C) per-point means of equalised errors over count (N,) windows each;
        full: the windows covering an interior point. Returns (N, C): interior points
        unchanged, the others' deviation from `level` scaled by sqrt(count / full)."""
        k = np.sqrt(np.minimum(count / max(int(full), 1), 1.0))[:, None]  # (N, 1)
        return self.level + k * (errors - self.level)

    def to_dict(self) -> dict:
        return {"weight": self.weight.tolist(), "level": self.level.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> PositionProfile:
        return cls(weight=np.asarray(d["weight"], dtype=np.float64),
                   level=np.asarray(d["level"], dtype=np.float64))


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


def ewma(scores: np.ndarray, span: float, initial: float | None = None) -> np.ndarray:
    """Exponentially weighted moving average along the last axis (time).

    scores: (..., N). span >= 1: smoothing factor alpha = 2 / (span + 1) (pandas' `span`,
    `adjust=False`). initial: the average's value before the first point; None starts at the
    first value (y[0] = scores[0], pandas). Starting at the first value leaves the first points
    almost unsmoothed, so a series' start has the variance of a raw score and crosses a
    threshold set on smoothed scores by chance; the estimator passes the mean normal score, as
    if the series were preceded by normal behaviour. span <= 1 returns scores unchanged.
    Causal: y[t] depends on scores[..., :t + 1] only, so it streams.
    """
    from scipy.signal import lfilter

    scores = np.asarray(scores, dtype=np.float64)
    if span <= 1 or scores.shape[-1] == 0:
        return scores
    alpha = 2.0 / (float(span) + 1.0)
    # y[t] = alpha x[t] + (1 - alpha) y[t-1], with y[-1] = initial (default x[0]: y[0] = x[0]).
    start = scores[..., :1] if initial is None else np.full_like(scores[..., :1], initial)
    zi = (1.0 - alpha) * start
    y, _ = lfilter([alpha], [1.0, alpha - 1.0], scores, axis=-1, zi=zi)
    return y


def relative_error(errors: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """One-sided score: (..., C) errors -> (...) mean over channels of errors / scale.

    scale: (C,) each channel's typical (mean) error on normal data, so that every channel
    weighs the same; 1.0 = a normal error, larger = worse reconstruction than normal.
    """
    scale = np.asarray(scale, dtype=np.float64)
    if scale.shape != errors.shape[-1:]:
        raise ValueError(f"scale: expected shape {errors.shape[-1:]}, got {scale.shape}")
    # A channel rebuilt perfectly on normal data: fall back to the other channels' scale.
    floor = max(float(scale.max()), 1e-12) * 1e-6
    return (errors / np.maximum(scale, floor)).mean(axis=-1)


SIGMA_K = 4.0  # Orion's `find_anomalies(fixed_threshold=True)`: mean + 4 std


def sigma_threshold(scores: np.ndarray, k: float = SIGMA_K) -> float:
    """mean + k std of scores on normal data (N,)."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    return float(scores.mean() + k * scores.std())


def sigma_max_threshold(scores: np.ndarray, k: float = SIGMA_K) -> float:
    """max(mean + k std, highest score) of scores on normal data (N,).

    mean + k std alone assumes rare excursions; a recurring normal pattern that the model
    rebuilds badly (a daily spike seen a few times in the normal data) makes a heavy tail that
    the k std rule cuts through, flagging every recurrence. The data given as normal is normal
    by definition, so no level it reaches is anomalous (the "max normal error" rule common in
    autoencoder detectors); light-tailed scores keep the mean + k std threshold.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    return max(sigma_threshold(scores, k), float(scores.max()))


def _runs(mask: np.ndarray) -> int:
    """Number of maximal runs of True in a (N,) bool mask."""
    return int(np.count_nonzero(np.diff(np.concatenate([[0], mask.astype(np.int8)])) == 1))


def dynamic_threshold(scores: np.ndarray, z_values: np.ndarray | None = None,
                      buffer: int = 0, max_sequences: int = 5) -> tuple[float, float]:
    """Hundman et al. 2018's non-parametric threshold eps = mean + z std over scores (N,).

    Among z in `z_values` (default 2.5, 3, ..., 11.5, telemanom's grid) picks the one whose
    removal of the points >= eps shrinks the mean and std the most, relative to how many points
    (n_above) and separate sequences (n_seq, after widening each point by `buffer` either side)
    it takes:  ((dmean / mean) + (dstd / std)) / (n_seq ** 2 + n_above),
    with at most `max_sequences` sequences and fewer than half the points above. When no z
    qualifies (e.g. nothing stands out), eps = mean + 12 std. Returns (eps, z).
    """
    e = np.asarray(scores, dtype=np.float64).ravel()
    if len(e) == 0:
        raise ValueError("scores: expected at least one value")
    z_values = np.arange(2.5, 12.0, 0.5) if z_values is None else np.asarray(z_values)
    mean, std = float(e.mean()), float(e.std())
    best_z, best = 12.0, -np.inf
    if std <= 0.0 or mean == 0.0:
        return mean + best_z * std, best_z
    for z in z_values.tolist():
        eps = mean + z * std
        above = e >= eps
        n_above = int(above.sum())
        if n_above == 0 or n_above >= len(e) / 2:
            continue
        if buffer > 0:  # widen each flagged point, as telemanom's error_buffer does
            above = np.convolve(above, np.ones(2 * buffer + 1), mode="same") > 0
        n_seq = _runs(above)
        if n_seq > max_sequences:
            continue
        rest = e[e < eps]
        gain = (mean - rest.mean()) / mean + (std - rest.std()) / std
        cost = gain / (n_seq ** 2 + int(above.sum()))
        if cost >= best:
            best, best_z = cost, float(z)
    return mean + best_z * std, best_z


PRUNE_MIN_DECREASE = 0.13  # telemanom's default p


def prune_events(events: list[tuple[int, int]], scores: np.ndarray,
                 min_decrease: float = PRUNE_MIN_DECREASE) -> list[tuple[int, int]]:
    """Hundman et al. 2018's pruning of (start, end) inclusive events over scores (N,).

    The event peaks sorted in decreasing order, followed by the highest score outside every
    event: each step down is d_i = (p_i - p_{i+1}) / p_i. The events above the last step with
    d_i >= min_decrease are kept, the rest (peaks not clearly above the next smaller one, down to
    the unflagged level) are dropped. Keeps the input order. min_decrease <= 0: no pruning.
    """
    if min_decrease <= 0 or not events:
        return list(events)
    scores = np.asarray(scores, dtype=np.float64)
    peaks = np.asarray(event_peaks(events, scores))
    outside = np.ones(len(scores), dtype=bool)
    for s, e in events:
        outside[s:e + 1] = False
    nominal = float(scores[outside].max()) if outside.any() else 0.0
    order = np.argsort(-peaks, kind="stable")
    levels = np.concatenate([peaks[order], [nominal]])
    with np.errstate(divide="ignore", invalid="ignore"):
        drops = (levels[:-1] - levels[1:]) / np.abs(levels[:-1])
    big = np.flatnonzero(np.nan_to_num(drops, nan=0.0) >= min_decrease)
    n_keep = int(big[-1]) + 1 if len(big) else 0
    keep = set(order[:n_keep].tolist())
    return [ev for i, ev in enumerate(events) if i in keep]


THRESHOLDS = ("gaussian", "quantile", "sigma", "sigma_max", "dynamic")
ONE_SIDED = ("sigma", "sigma_max", "dynamic")  # smoothed relative error, threshold on all data


def error_scores(errors: np.ndarray, mode: str, error_model: GaussianErrorModel,
                 smoothing: int = 0, initial: float | None = None) -> np.ndarray:
    """(..., T, C) time-ordered error vectors -> (..., T) anomaly scores for threshold `mode`:
    "gaussian" the error model's Mahalanobis distance, "quantile" the mean error over channels,
    the one-sided modes `relative_error` to the model's mean; then `ewma(span=smoothing)`
    starting at `initial` (see `ewma`)."""
    if mode == "gaussian":
        s = error_model.score(errors)
    elif mode == "quantile":
        s = errors.mean(axis=-1)
    else:
        s = relative_error(errors, error_model.mean)
    return ewma(s, smoothing, initial)


def fit_threshold(scores: np.ndarray, mode: str, quantile: float) -> tuple[float, float | None]:
    """The threshold of `mode` from scores (N,) on normal data: (threshold, Hundman's z for
    "dynamic", else None)."""
    if mode == "sigma":
        return sigma_threshold(scores), None
    if mode == "sigma_max":
        return sigma_max_threshold(scores), None
    if mode == "dynamic":
        return dynamic_threshold(scores)
    return quantile_threshold(scores, quantile), None


def threshold_rule(mode: str, quantile: float, z: float | None = None) -> str:
    """How `fit_threshold` set the threshold, in words (for `threshold_source_`)."""
    return {"sigma": "mean + 4 std", "sigma_max": "max(mean + 4 std, highest score)",
            "dynamic": f"Hundman's dynamic threshold (z = {float('nan') if z is None else z:g})"
            }.get(mode, f"quantile {quantile}")
