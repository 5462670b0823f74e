"""Windows over a long series, standard scaling and the missing-value policy.

Windows are *views* (`numpy.lib.stride_tricks.sliding_window_view`): cutting a 1M-point series
into windows allocates nothing; only the batch being fed to the model is copied. The last
window always ends at the last point, so every point is covered at any stride.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from seqlab.errors import InputWarning, UserError


def window_starts(n: int, window: int, stride: int) -> np.ndarray:
    """Start indices of the windows of length `window` over `n` points, every `stride` points,
    plus one final window flush with the end when the stride does not land there.

    Returns (n_windows,) int64; raises UserError when the series is shorter than the window.
    """
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be >= 1, got window={window}, stride={stride}")
    if n < window:
        raise UserError(f"series has {n} points, shorter than the window ({window})")
    starts = np.arange(0, n - window + 1, stride, dtype=np.int64)
    if starts[-1] != n - window:
        starts = np.append(starts, n - window)
    return starts


def sliding_windows(x: np.ndarray, window: int) -> np.ndarray:
    """All windows of x as a read-only view, no copy.

    x: (N, C). Returns (N - window + 1, window, C).
    """
    return np.lib.stride_tricks.sliding_window_view(x, window, axis=0).transpose(0, 2, 1)


def iter_window_batches(x: np.ndarray, starts: np.ndarray, window: int,
                        batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (starts_b, windows_b) with windows_b (B, window, C) float32, copied per batch only.

    x: (N, C); starts: (n_windows,) window start indices.
    """
    view = sliding_windows(x, window)  # (N - window + 1, window, C), a view
    for i in range(0, len(starts), batch_size):
        s = starts[i:i + batch_size]
        yield s, np.ascontiguousarray(view[s], dtype=np.float32)


class WindowSet:
    """Training windows without materialising them: x (N, C) + window starts (n_windows,).

    `batch(idx)` copies only the windows asked for. `x` keeps the (n, T, C) form for a sample
    set (`from_samples`), for sample-level error fitting.
    """

    def __init__(self, x: np.ndarray, starts: np.ndarray, window: int):
        self.x, self.starts, self.window = x, starts, window
        self._view = np.lib.stride_tricks.sliding_window_view(x, window, axis=0)  # (., C, T)

    @classmethod
    def from_samples(cls, samples: np.ndarray) -> WindowSet:
        """samples: (n, T, C), each one window."""
        n, T, C = samples.shape
        ws = cls(np.ascontiguousarray(samples.reshape(n * T, C)), np.arange(n) * T, T)
        ws.x = samples
        return ws

    def __len__(self) -> int:
        return len(self.starts)

    def batch(self, idx: np.ndarray) -> np.ndarray:
        """(B, T, C) float32 copy of the windows idx."""
        return np.ascontiguousarray(self._view[self.starts[idx]].transpose(0, 2, 1),
                                    dtype=np.float32)


def point_coverage(n: int, starts: np.ndarray, window: int) -> np.ndarray:
    """How many windows cover each point. Returns (n,) int64 (>= 1 with `window_starts`)."""
    diff = np.zeros(n + 1, dtype=np.int64)
    np.add.at(diff, starts, 1)
    np.add.at(diff, starts + window, -1)
    return np.cumsum(diff[:-1])


@dataclass
class Scaler:
    """Per-column standard scaling, fitted on training data only and saved with the model.

    mean, scale: (C,) float64.
    """

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, columns: list[str], source: str = "training data") -> Scaler:
        """x: (N, C) finite values. A constant column cannot be scaled: UserError naming it."""
        with np.errstate(over="ignore", invalid="ignore"):
            mean = x.mean(axis=0)
            std = x.std(axis=0)
        for j, s in enumerate(std):
            if not (np.isfinite(s) and np.isfinite(mean[j])):
                big = float(np.abs(x[:, j]).max())
                raise UserError(f"{source}: column {columns[j]!r}: values too large to scale "
                                f"(largest magnitude {big:g}); rescale the column first")
            if not s > 1e-12 * max(1.0, abs(mean[j])):
                raise UserError(f"{source}: column {columns[j]!r} is constant ({mean[j]:g}); "
                                "it carries no signal and cannot be scaled: drop it with --columns")
        return cls(mean=mean, scale=std)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """(..., C) -> (..., C) float32 in units of training standard deviations."""
        return ((x - self.mean) / self.scale).astype(np.float32)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """(..., C) scaled -> original units, float64."""
        return z.astype(np.float64) * self.scale + self.mean

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Scaler:
        return cls(mean=np.asarray(d["mean"], dtype=np.float64),
                   scale=np.asarray(d["scale"], dtype=np.float64))


def fill_missing(x: np.ndarray, policy: str, columns: list[str], where) -> np.ndarray:
    """Apply the missing-value policy to NaN/inf cells.

    x: (N, C). policy: "interpolate" (linear between the neighbouring finite values of the same
    column; leading/trailing gaps take the nearest finite value) or "error" (UserError naming
    the first bad cell). `where(row) -> str` names a row in messages. Returns (N, C) finite.
    """
    if policy not in ("interpolate", "error"):
        raise ValueError(f"missing: expected 'interpolate' or 'error', got {policy!r}")
    bad = ~np.isfinite(x)
    if not bad.any():
        return x
    if policy == "error":
        i, j = np.argwhere(bad)[0]
        kind = "NaN/empty" if np.isnan(x[i, j]) else "infinite"
        raise UserError(f"{where(int(i))}: column {columns[j]!r}: {kind} value "
                        "(missing='error'; use missing='interpolate' to fill gaps)")
    x = x.copy()
    idx = np.arange(len(x))
    for j in range(x.shape[1]):
        b = bad[:, j]
        if not b.any():
            continue
        if b.all():
            raise UserError(f"{where(0)}: column {columns[j]!r} has no finite value to "
                            "interpolate from")
        # np.interp holds the end values constant outside the known range: edge filling.
        x[b, j] = np.interp(idx[b], idx[~b], x[~b, j])
    counts = ", ".join(f"{int(bad[:, j].sum())} in {columns[j]!r}"
                       for j in range(x.shape[1]) if bad[:, j].any())
    first = int(np.argwhere(bad)[0][0])
    warnings.warn(f"filled {int(bad.sum())} missing or infinite value(s) by interpolation "
                  f"({counts}; the first at {where(first)})", InputWarning, stacklevel=2)
    return x
