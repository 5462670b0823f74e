"""Online scoring: a fitted `SeriesAutoencoder` watching points as they arrive.

`OnlineScorer(est).update(values, timestamps)` takes the next points and returns the events
that opened or closed with them. It computes what the batch path (`score_samples` +
`detect_events`) computes, incrementally, in bounded memory:

- the scoring windows are the batch ones (starts 0, s, 2s, ..., s = `effective_score_stride`):
  a window is run through the model as soon as its last point arrives, every window once (all
  the windows completed by one `update` call in one batch);
- each point's error is the batch's: the mean over its covering windows of the equalised
  window errors (`PositionProfile`), the series' start shrunk likewise; it is final once the
  last window covering it has run, so a point is scored at most `window - 1` points after it
  arrives (`close()` runs the batch's last window, flush with the end, and scores the rest);
- AER regression models (`regression` > 0): the windows at every start (stride 1) run too,
  in the same batch as the scoring windows (whose reconstructions they give), and their
  predictions of the point after and before each window wait in rings; a point's regression
  error is the batch's (`WindowRunner.regression_errors`: forward and backward errors averaged)
  once the window just after it has run, so the error vector is (C reconstruction, C
  regression) channels in the batch's order, scored by the same `score_errors`. A point is
  then scored at most `window + stride - 1` points after it arrives, for one stride-1 window
  of model work per point. `close()` scores the last `window` points with the forward error
  only, as the batch does at a series' end; in a stream shorter than 2 window + 1 points, the
  points no regression window reaches take their nearest neighbour's error, as in the batch;
- the score's EWMA, the threshold and the event merging (`min_gap`, default window // 2) are
  the batch's, carried across calls; an event opens at its first flagged point and closes once
  `min_gap` unflagged points follow it (it can no longer merge with the next one).

With `batch_windows` = b, the model runs once b scoring windows are ready: fewer, larger
model calls for (b - 1) * stride points more delay. Not streamed: the batch's event pruning
(`prune_events` compares each event with all the others, later ones included); the events
equal `detect_events` with `prune=0`.

Walk-forward refit (`refit_every` = N): every N scored points the model is trained further
(`SeriesAutoencoder.partial_fit`, seeded: deterministic) and its error model and threshold
refitted on the last `refit_span` scored points, the flagged ones blanked (interpolated); when
those are more than half, the change has lasted and all the points are used, so a new level
becomes normal (AER models too: `partial_fit` trains the regression as `fit` does).

Memory: ring buffers of max(`refit_span`, 2 window + 1 + batch_windows * stride, + 2 with
regression) points: the refit's points and the points still waiting to be scored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqlab.series.estimator import SeriesAutoencoder
from seqlab.series.io import SeriesData
from seqlab.series.scoring import ewma
from seqlab.series.windows import fill_missing


@dataclass
class StreamEvent:
    """An event opening ("open": end is None) or closing ("close"), in stream positions
    (0-based, inclusive), with the timestamps when the stream has them; peak: the highest
    score so far, threshold: the threshold in force."""

    kind: str
    start: int
    end: int | None
    peak: float
    threshold: float
    start_time: object = None
    end_time: object = None

    def as_dict(self) -> dict:
        return {"event": self.kind, "start_index": self.start, "end_index": self.end,
                "start": _text(self.start_time), "end": _text(self.end_time),
                "peak_score": self.peak, "threshold": self.threshold}


def _text(t: object) -> str | None:
    return None if t is None else str(t)


class OnlineScorer:
    """Incremental anomaly events from a fitted series `SeriesAutoencoder` (see the module
    docstring). update(values (n, C) or (n,), timestamps (n,) or None) -> new events;
    close() -> the events the end of the stream settles.

    batch_windows: run the model once `batch_windows` scoring windows are ready (1: as soon as
    each is; a regression model's stride-1 windows run with them): fewer, larger model calls
    for (batch_windows - 1) * stride more points of delay. An `update` with many points runs
    all its windows in one batch anyway.
    """

    def __init__(self, est: SeriesAutoencoder, min_gap: int | None = None,
                 refit_every: int | None = None, refit_span: int | None = None,
                 refit_epochs: int | None = None, batch_windows: int = 1):
        est._fitted()
        if est.input_kind_ != "series":
            raise ValueError("OnlineScorer: the model was fitted on (n, T, C) samples, not "
                             "one long series")
        self.est = est
        self.regression = bool(est.effective_regression)
        self.window = int(est.window)
        self.stride = est.effective_score_stride
        self.full = -(-self.window // self.stride)       # windows covering an interior point
        self.min_gap = self.window // 2 if min_gap is None else int(min_gap)
        self.refit_every = int(refit_every) if refit_every else 0
        span = int(refit_span) if refit_span else max(self.refit_every, 8 * self.window)
        self.refit_span = span
        self.refit_epochs = refit_epochs
        self.batch_windows = max(1, int(batch_windows))
        self._pending: list[int] = []                     # windows ready, not yet run
        self.refits = 0
        C = est.n_features_
        W = self.window
        self.n_seen = 0                                   # points received
        self.n_final = 0                                  # points scored
        self.next_start = 0                               # next scoring window's start
        # Rings indexed by point % span: model-unit and raw values, timestamps, flags, error
        # sums. They hold the points not scored yet (up to `_slack` of them: the windows read
        # them; regression: a point waits for the window after it, and the forward prediction
        # of the next point comes before it) plus what an `update` adds, and the refit's span.
        self._slack = W + self.batch_windows * self.stride + 2 * self.regression
        self.span = max(span, W + 1 + self._slack)
        self._x = np.zeros((self.span, C))
        self._raw = np.zeros((self.span, C))
        self._times: list = [None] * self.span
        self._flags = np.zeros(self.span, dtype=bool)
        self._sum = np.zeros((self.span, C))
        self._count = np.zeros(self.span, dtype=np.int64)
        # Regression: the next stride-1 window to run, and each point's forward / backward
        # prediction (from the window just before / after it), indexed by point % span.
        self._reg_next = 0
        self._fwd = np.zeros((self.span, C))
        self._bwd = np.zeros((self.span, C))
        self._ewma: float | None = getattr(est, "score_level_", None)
        self._event: list | None = None                   # [start, last flagged, peak, time]
        self._since_refit = 0

    # -------------------------------------------------------------------- input
    def _model_units(self, raw: np.ndarray, times: np.ndarray | None) -> np.ndarray:
        """raw (n, C) -> model units: log scale, minus the daily profile, scaled."""
        est = self.est
        z = est._transformed(raw)
        prof = getattr(est, "season_", None)
        if prof is not None and prof.any_active:
            if times is None:
                raise ValueError("update: this model removes a daily profile, so points need "
                                 "their timestamps")
            z = z - prof.values(np.asarray(times))
        return est.scaler_.transform(z)

    def update(self, values, timestamps=None) -> list[StreamEvent]:
        """The next points: values (n, C) or (n,) finite numbers in the model's columns,
        timestamps (n,) (needed when the model removes a daily profile). Returns the events
        that opened or closed."""
        raw = np.asarray(values, dtype=np.float64)
        if raw.ndim == 1:
            raw = raw[:, None] if self.est.n_features_ == 1 else raw[None]
        C = self.est.n_features_
        if raw.ndim != 2 or raw.shape[1] != C:
            raise ValueError(f"update: expected values of shape (n, {C}), got {raw.shape}")
        if not np.isfinite(raw).all():
            bad = int(np.flatnonzero(~np.isfinite(raw).all(axis=1))[0])
            raise ValueError(f"update: point {self.n_seen + bad} is not a finite number")
        times = None if timestamps is None else np.asarray(timestamps).reshape(-1)
        if times is not None and len(times) != len(raw):
            raise ValueError(f"update: {len(raw)} values but {len(times)} timestamps")
        if len(raw) == 0:
            return []
        events: list[StreamEvent] = []
        # In pieces of at most `span` points (the rings), each piece's windows in one batch.
        step = self.span - self._slack
        for lo in range(0, len(raw), step):
            part = slice(lo, lo + step)
            events += self._add(raw[part], None if times is None else times[part])
        return events

    def _add(self, raw: np.ndarray, times: np.ndarray | None) -> list[StreamEvent]:
        x = self._model_units(raw, times)                           # (n, C)
        slots = (self.n_seen + np.arange(len(raw))) % self.span
        self._x[slots] = x
        self._raw[slots] = raw
        self._flags[slots] = False
        for j, slot in enumerate(slots.tolist()):
            self._times[slot] = None if times is None else times[j]
        self.n_seen += len(raw)
        while self.next_start + self.window <= self.n_seen:
            self._pending.append(self.next_start)
            self.next_start += self.stride
        if len(self._pending) < self.batch_windows:
            return []
        starts, self._pending = self._pending, []
        return self._run_windows(starts)

    # -------------------------------------------------------------------- scoring
    def _run_windows(self, starts: list[int]) -> list[StreamEvent]:
        """Run the scoring windows at `starts` (their points still in the rings) in one batch,
        with a regression model also every stride-1 window not run yet; after each scoring
        window, score the points no later window covers."""
        est = self.est
        W = self.window
        reg = np.arange(self._reg_next, self.n_seen - W + 1) if self.regression else \
            np.zeros(0, dtype=np.int64)
        todo = np.union1d(np.asarray(starts, dtype=np.int64), reg)           # (B,) sorted
        if len(todo) == 0:
            return []
        idx = (todo[:, None] + np.arange(W)[None]) % self.span                # (B, W)
        xb = self._x[idx]                                                     # (B, W, C)
        flat, at = xb.reshape(-1, xb.shape[2]), np.arange(len(todo)) * W
        runner = est._runner()
        if self.regression:
            parts = list(runner.run_regression(flat, at))
            prev, recon, nxt = (np.concatenate([b[k] for b in parts]) for k in (1, 2, 3))
            new = todo >= self._reg_next                 # not run before (close's last window)
            self._fwd[(todo[new] + W) % self.span] = nxt[new]   # the point after the window
            self._bwd[(todo[new] - 1) % self.span] = prev[new]  # ... and the one before it
            self._reg_next = max(self._reg_next, self.n_seen - W + 1)
        else:
            recon = np.concatenate([r for _, _, r, _ in runner.run(flat, at)])
        pick = np.searchsorted(todo, starts)             # the scoring windows among them
        xb, recon = xb[pick], recon[pick]
        err = np.abs(xb - recon)                                              # (B, W, C)
        if est.position_profile_ is not None:
            err = est.position_profile_.apply(err)
        events: list[StreamEvent] = []
        for s, e in zip(starts, err, strict=True):
            at = (s + np.arange(W)) % self.span
            self._sum[at] += e
            self._count[at] += 1
            events += self._finalise(s + self.stride)
        return events

    def _finalise(self, upto: int, closing: bool = False) -> list[StreamEvent]:
        """Score points n_final .. upto - 1 (no window still to come covers them; with a
        regression model, only those whose backward window has run, unless `closing`)."""
        upto = min(upto, self.n_seen)
        if self.regression and not closing:
            upto = min(upto, self._reg_next - 1)
        if upto <= self.n_final:
            return []
        est = self.est
        pts = np.arange(self.n_final, upto)
        idx = pts % self.span
        count = self._count[idx].astype(np.float64)
        errors = self._sum[idx] / np.maximum(count, 1)[:, None]      # (n, C)
        if est.position_profile_ is not None:
            errors = est.position_profile_.shrink(errors, count, self.full)
        self._sum[idx] = 0.0
        self._count[idx] = 0
        if self.regression:                                          # (n, 2C)
            errors = np.concatenate([errors, self._regression_errors(pts)], axis=1)
        raw = est.score_errors(errors, smooth=False)                # (n,)
        span = est.effective_smoothing
        scores = ewma(raw, span, self._ewma) if span > 1 else raw
        if span > 1:
            self._ewma = float(scores[-1])
        self.n_final = upto
        return self._events(pts, scores)

    def _regression_errors(self, pts: np.ndarray) -> np.ndarray:
        """(n,) points -> (n, C) regression errors as `WindowRunner.regression_errors`: forward
        and backward errors averaged where both exist; a point neither window reaches (only
        in a stream shorter than 2 window + 1, at close) takes its nearest neighbour's."""
        W, N = self.window, self.n_seen
        slots = pts % self.span
        x = self._x[slots]                                           # (n, C)
        fwd = np.abs(x - self._fwd[slots])
        bwd = np.abs(x - self._bwd[slots])
        has_f = (pts >= W)[:, None]                                  # a window before it
        has_b = (pts <= min(self._reg_next, N - W + 1) - 2)[:, None]  # ... one after it ran
        out = np.where(has_f & has_b, (fwd + bwd) / 2, np.where(has_f, fwd, bwd))
        lonely = ~(has_f | has_b)[:, 0]
        if lonely.any():
            # The points N - W .. W - 1; the nearest reached ones: N - W - 1 (backward only)
            # and W (forward only), the earlier one on a tie, as the batch's argmin.
            near = [q for q in (N - W - 1, W) if 0 <= q < N]
            if not near:                     # N == window: one window, nothing before/after
                out[lonely] = 0.0
            else:
                lp = pts[lonely]
                dist = np.abs(lp[:, None] - np.asarray(near)[None])
                out[lonely] = self._regression_errors(np.asarray(near)[dist.argmin(axis=1)])
        return out

    def _events(self, pts: np.ndarray, scores: np.ndarray) -> list[StreamEvent]:
        thr = float(self.est.threshold_)
        out: list[StreamEvent] = []
        flagged = scores > thr
        self._flags[pts % self.span] = flagged
        for p, sc, f in zip(pts.tolist(), scores.tolist(), flagged.tolist(), strict=True):
            ev = self._event
            if f:
                if ev is None:
                    self._event = [p, p, sc, self._times[p % self.span]]
                    out.append(StreamEvent("open", p, None, sc, thr, self._event[3]))
                else:
                    ev[1], ev[2] = p, max(ev[2], sc)
            elif ev is not None and p - ev[1] >= self.min_gap:
                out.append(self._close(thr))
            self._since_refit += 1
            if self.refit_every and self._since_refit >= self.refit_every:
                self._refit(p + 1)
                thr = float(self.est.threshold_)
        return out

    def _close(self, thr: float) -> StreamEvent:
        start, end, peak, t0 = self._event  # type: ignore[misc]
        self._event = None
        end_time = self._times[end % self.span] if self.n_seen - end <= self.span else None
        return StreamEvent("close", start, end, peak, thr, t0, end_time)

    # -------------------------------------------------------------------- refit
    def _refit(self, upto: int) -> None:
        """partial_fit on the scored points still in the rings, up to `upto` (exclusive),
        flagged ones blanked unless most are."""
        self._since_refit = 0
        lo = max(0, self.n_seen - self.span, upto - self.span)
        split, _ = self.est._validation_split(upto - lo)
        # partial_fit needs a training window (regression: with a point either side)
        if upto - lo < 2 * self.window + 1 or split < self.window + 2 * self.regression:
            return
        slots = np.arange(lo, upto) % self.span
        values = self._raw[slots].copy()                              # (n, C)
        flags = self._flags[slots]
        if 0 < flags.mean() <= 0.5:
            values[flags] = np.nan
            values = fill_missing(values, "interpolate", list(self.est.columns_),
                                  lambda i: f"stream point {lo + i}")
        times = None if self._times[slots[0]] is None else \
            np.asarray([self._times[i] for i in slots.tolist()])
        data = SeriesData(values=values, columns=list(self.est.columns_), timestamps=times,
                          source="stream")
        self.est.partial_fit(data, epochs=self.refit_epochs)
        self.refits += 1

    def close(self) -> list[StreamEvent]:
        """End of stream: run the batch's last window (flush with the end), score the points
        left, close the open event."""
        events: list[StreamEvent] = []
        if self._pending:
            starts, self._pending = self._pending, []
            events += self._run_windows(starts)
        if self.n_seen >= self.window:
            last = self.n_seen - self.window
            # the last window unless already run (and a regression model's windows left)
            events += self._run_windows([last] if last > self.next_start - self.stride else [])
            events += self._finalise(self.n_seen, closing=True)
        if self._event is not None:
            events.append(self._close(float(self.est.threshold_)))
        return events


__all__ = ["OnlineScorer", "StreamEvent"]
