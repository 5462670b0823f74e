"""Running a fitted `LSTMAutoencoder` over windows: reconstructions, embeddings, and the
per-point error vectors the anomaly scores are built from (see `seqlab.series.scoring`).

Everything streams windows in batches of `INFER_BATCH` over strided views (no
O(N * window) copy); the per-point sums are O(N * C).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from seqlab.device import resolve_device
from seqlab.series.model import LSTMAutoencoder
from seqlab.series.scoring import ErrorAccumulator, PositionProfile
from seqlab.series.windows import iter_window_batches, window_starts
from seqlab.training.loop import torch_threads

INFER_BATCH = 512  # windows per inference batch: bounds memory at 512 * window * C floats


@dataclass
class WindowRunner:
    """A model in eval mode over windows of `window` points, on `device`, with `num_threads`
    torch threads (None: torch's setting; the small recurrent matmuls are often fastest on 1)."""

    model: LSTMAutoencoder
    window: int
    device: str = "cpu"
    num_threads: int | None = None

    def run(self, x: np.ndarray, starts: np.ndarray, embedding: str | None = None
            ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]]:
        """Yield (starts_b, x_b (B, T, C), recon_b (B, T, C), z_b (B, Z)) numpy batches over
        the windows of x (N, C) starting at `starts`. With `embedding` (see
        `LSTMAutoencoder.embed`): recon_b is None and z_b that embedding."""
        device = resolve_device(self.device)
        self.model.eval()
        with torch.no_grad(), torch_threads(self.num_threads):
            for s, xb in iter_window_batches(x, starts, self.window, INFER_BATCH):
                t = torch.from_numpy(xb).to(device)
                if embedding is None:
                    recon, z = self.model(t)
                    yield s, xb, recon.cpu().numpy(), z.cpu().numpy()
                else:
                    yield s, xb, None, self.model.embed(t, embedding).cpu().numpy()

    def run_regression(self, x: np.ndarray, starts: np.ndarray
                       ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Yield (starts_b, prev_b (B, C), recon_b (B, T, C), next_b (B, C)) numpy batches of
        an AER model's `forward_regression` over the windows of x (N, C) starting at `starts`:
        the predicted points before and after each window, and its reconstruction."""
        device = resolve_device(self.device)
        self.model.eval()
        with torch.no_grad(), torch_threads(self.num_threads):
            for s, xb in iter_window_batches(x, starts, self.window, INFER_BATCH):
                prev, recon, nxt, _ = self.model.forward_regression(
                    torch.from_numpy(xb).to(device))
                yield s, prev.cpu().numpy(), recon.cpu().numpy(), nxt.cpu().numpy()

    def run_samples(self, x: np.ndarray, embedding: str | None = None):
        """`run` over a (n, T, C) sample set, each sample one window."""
        flat = x.reshape(-1, x.shape[2])
        return self.run(flat, np.arange(len(x)) * self.window, embedding)

    def position_profile(self, x: np.ndarray, stride: int) -> PositionProfile:
        """x: (N, C) scaled normal data -> the model's error level at each window position
        (windows every `stride` points), see `scoring.PositionProfile`."""
        total = np.zeros((self.window, x.shape[1]), dtype=np.float64)
        count = 0
        for _, xb, recon, _ in self.run(x, window_starts(len(x), self.window, stride)):
            total += np.abs(xb - recon).sum(axis=0)                          # (T, C)
            count += len(xb)
        return PositionProfile.fit(total, count)

    def point_errors(self, x: np.ndarray, stride: int, profile: PositionProfile | None,
                     regression: bool = False,
                     window_scores: tuple[Callable[[np.ndarray], np.ndarray], list] | None = None
                     ) -> np.ndarray:
        """x: (N, C) scaled -> (N, C) per-point errors: the mean over the windows (every
        `stride` points) covering each point of |x - x'|, equalised per window position by
        `profile` (None: plain mean, models saved before it existed), the series' ends shrunk
        towards the normal level (`PositionProfile.shrink`). With `regression` (AER): (N, 2C),
        the C regression errors (`regression_errors`) appended.

        window_scores: (score_fn, out): score_fn maps (..., T, C') time-ordered errors to
        (..., T) scores; each window's mean score is appended to `out` (level="window").
        """
        acc = ErrorAccumulator(len(x), x.shape[1])
        starts = window_starts(len(x), self.window, stride)
        for s, xb, recon, _ in self.run(x, starts):
            err = np.abs(xb - recon)                                          # (B, T, C)
            if profile is not None:
                err = profile.apply(err)
            acc.add(s, err)
            if window_scores is not None and not regression:
                score_fn, out = window_scores
                out.append(score_fn(err).mean(axis=1))                       # (B,)
        errors = acc.mean()                                                   # (N, C)
        if profile is not None:  # the ends: fewer windows, no noisier than the interior
            errors = profile.shrink(errors, acc.count, -(-self.window // stride))
        if not regression:
            return errors
        # AER: the regression errors are C more channels of the error vector, so the error model
        # and the relative score weigh reconstruction and prediction alike.
        errors = np.concatenate([errors, self.regression_errors(x)], axis=1)  # (N, 2C)
        if window_scores is not None:  # a window's score: the mean of its points' scores
            score_fn, out = window_scores
            point = score_fn(errors)                                          # (N,)
            csum = np.concatenate([[0.0], np.cumsum(point)])
            out.append((csum[starts + self.window] - csum[starts]) / self.window)
        return errors

    def regression_errors(self, x: np.ndarray) -> np.ndarray:
        """AER's bi-directional regression error. x: (N, C) scaled -> (N, C): for each point,
        |x - forward prediction| from the window that ends just before it and |x - backward
        prediction| from the window that starts just after it, averaged where both exist (one
        at the series' ends; a point neither reaches, possible only when N < 2 window + 1,
        takes its nearest neighbour's)."""
        N, C, T = len(x), x.shape[1], self.window
        fwd = np.full((N, C), np.nan)
        bwd = np.full((N, C), np.nan)
        for s, prev, _, nxt in self.run_regression(x, np.arange(N - T + 1)):
            ok = s + T < N                          # the window has a point after it
            fwd[s[ok] + T] = np.abs(x[s[ok] + T] - nxt[ok])
            ok = s >= 1                             # ... and one before it
            bwd[s[ok] - 1] = np.abs(x[s[ok] - 1] - prev[ok])
        both = np.stack([fwd, bwd])                                           # (2, N, C)
        have = np.isfinite(both).sum(axis=0)                                  # (N, C)
        out = np.where(have > 0, np.nansum(both, axis=0) / np.maximum(have, 1), np.nan)
        if np.isnan(out).any():
            idx = np.flatnonzero(np.isfinite(out[:, 0]))
            if len(idx) == 0:  # N == window: one window, no point before or after it
                return np.zeros((N, C))
            nearest = idx[np.abs(np.arange(N)[:, None] - idx[None]).argmin(axis=1)]
            out = out[nearest]
        return out

    def sample_errors(self, x: np.ndarray) -> np.ndarray:
        """x: (n, T, C) scaled samples -> (n, T, C) absolute reconstruction errors."""
        return np.concatenate([np.abs(xb - recon) for _, xb, recon, _ in self.run_samples(x)])

