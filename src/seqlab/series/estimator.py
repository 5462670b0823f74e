"""`SeriesAutoencoder`: the scikit-learn estimator (facade) around the series autoencoder.

The parts live beside it: the network and its loss (`model`), windows, scaling and missing
values (`windows`), training through the shared loop with checkpoints and exact resume
(`train`), running the model over windows into per-point errors (`reconstruction`), and
errors -> scores -> thresholds -> events (`scoring`). This module holds the parameters
(`sklearn.base.BaseEstimator`: get_params/set_params/clone; only what `fit` learns ends in
"_"), input handling, and persistence.

Inputs
- one long series: (N,) / (N, C) array, a DataFrame (numeric columns, or `columns=`), a pandas
  Series, a CSV path or `io.SeriesData`; it is cut into windows of `window` points;
- a set of samples: a 3-D array (n_samples, T, C), each sample one window (T must equal window).

Training: scaling fitted on the training series only; the last `val_fraction` of the series
(at least one window; series: a contiguous tail, so no training window overlaps it; samples:
a seeded random subset) is held out to pick the best epoch and to fit the error model and the
threshold on normal data. When the series is too short to hold out a window and still train on
two, the training windows are used for both (`validation_ == "train"`).

Scoring streams windows in batches over strided views: memory is O(N * C) for the per-point
sums, never O(N * window). Scoring uses windows every `score_stride` points (default
`max(1, window // 16)`: each point is still covered by ~16 windows; the last window is flush
with the end, so every point is scored). Per-point error = mean over the covering windows of
the window errors equalised per window position, the ends (fewer windows) shrunk towards the
normal level (`scoring.PositionProfile`, fitted on normal data); the score's EWMA starts at the
mean normal score. Without these, the first and last points (covered only by a window's worst
rebuilt positions, few windows, an unsmoothed start) scored as anomalies.

Scores (higher = more anomalous) and thresholds, per `threshold`:
- "gaussian": squared Mahalanobis distance of each point's error vector under the Gaussian
  error model fitted on normal validation errors (EncDec-AD); `threshold_` is the
  `threshold_quantile` quantile of those scores on the normal validation data;
- "quantile": the point's mean absolute reconstruction error over channels (scaled units),
  same threshold rule;
- "sigma" and "dynamic": a one-sided score, each channel's error relative to its mean normal
  error (`scoring.relative_error`), smoothed over time by an EWMA (Hundman et al. 2018);
  the threshold comes from these scores on ALL the normal fitting series (training part
  in-sample plus the held-out tail: the tail alone is too short to show the tail of the error
  distribution): mean + 4 std ("sigma", Orion's fixed threshold), that or the highest normal
  score, whichever is larger ("sigma_max": a level the normal data reaches, e.g. a recurring
  daily spike the model rebuilds badly, is never flagged), or Hundman's non-parametric dynamic
  threshold ("dynamic").
`smoothing` (EWMA span in points; None: window // 2 for "sigma"/"dynamic", off otherwise) and
`prune` (Hundman's minimum peak decrease for `detect_events`; None: 0.13 for "sigma"/"dynamic",
off otherwise) apply to every mode. `fit_threshold(X)` refits on other normal data;
`calibrate_threshold` is the only path that uses labels, and it is recorded in
`threshold_source_`. The parts of scoring are public for experiments that reuse one model's
errors (benchmarks/bench_series_nab.py): `scale(X)` (model units), `point_errors(x)`,
`score_errors(errors)`, `fit_error_model(errors)`.

Training (`fit(X, run_dir=..., resume=...)`): through `seqlab.training.loop` in `run_dir`
(a temporary directory by default), checkpointed at every epoch end; `resume=True` continues a
killed fit exactly (`seqlab series fit --resume`).

Defaults: `season="auto"`, `regression="auto"`, `log_scale="auto"`, `threshold="sigma"`, the
configuration a leave-one-category-out study on NAB picked on every held-out fold and seed
(benchmarks/bench_series_loco.py, benchmarks/results/series_loco.json). Each "auto" does
nothing where it cannot apply (no timestamps or no daily cycle, no skewed non-negative column,
(n, T, C) samples for regression and season), so samples train a plain autoencoder;
`regression=0, season=None, log_scale=None` gives the plain autoencoder on a series too.

`regression` (AER, Wong et al. 2022; 0 = off; default "auto": 0.5, AER's ratio, on one long
series with decoder_input="latent", else 0; `fit` stores the ratio used in `regression_`): the
autoencoder also predicts the point just before and just after each window
(`LSTMAutoencoder.forward_regression`), trained on (1 - r) * reconstruction MSE + r / 2 *
(backward + forward prediction MSE). Each point's error vector then has 2C channels: C
reconstruction errors and C regression errors (the forward prediction from the window ending
just before the point and the backward one from the window starting just after it, averaged),
so every score and threshold mode weighs both (the one-sided score averages the channels'
relative errors: AER's "sum" combination, each error normalised by its mean on normal data
instead of AER's min-max over the scored series). Series only: a (n, T, C) sample has no
neighbouring points (an explicit ratio > 0 is an error there).

`season` ("auto", "daily", None; default "auto"): remove the daily profile
(`seqlab.series.season`): the usual value at each time of day, learned from the timestamps, is
subtracted before scaling (the profile comes from all the fitting data: training part and
held-out tail), so the model sees the residual (a missing daytime plateau becomes a
large deviation rather than an ordinary flat stretch); reconstructions add it back. "auto" keeps
it only for columns whose first training day predicts the second (R^2 >= 0.5), and does nothing
without usable timestamps or on samples ("daily" is an error there); data scored by a model that
keeps a profile needs its timestamps.

`log_scale` ("auto", "all", None; default "auto"): a log-like transform, asinh(x / s) with s a
low non-zero level of the column (`seqlab.series.transform`), applied before the daily profile
and the scaling; "all" applies it to every column, "auto" to the columns whose training values are
non-negative and heavy-tailed (skewness > 2: bytes, counts, bursty CPU; samples too, over all
their training values), none otherwise. A burst twice as tall as the training bursts is then a
modest error rather than a huge one, and variation near zero counts. Outputs (reconstructions)
are back in original units.

Embeddings (`transform`), per `embedding`: "latent" (default), the bottleneck z
(latent_size); "states", the encoder's final h and c of every layer (2 * num_layers *
hidden_size); "pooled", mean and max over time of the encoder's top-layer hidden states
(2 * hidden_size), the features to use for classification (benchmarks/bench_series_ucr.py,
logistic regression on the embeddings: GunPoint test accuracy 0.97 pooled, 0.82 latent; equal
on ItalyPowerDemand). Training does not depend on it: it can be changed on a fitted or loaded
model with `set_params`.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from seqlab.device import resolve_device
from seqlab.errors import UserError
from seqlab.export.common import check_backend
from seqlab.io import save_safetensors_atomic, write_json_atomic
from seqlab.series.io import SeriesData, as_series, parse_columns, read_series_csv
from seqlab.series.model import DECODER_INPUTS, EMBEDDINGS, AutoencoderConfig, LSTMAutoencoder
from seqlab.series.reconstruction import WindowRunner
from seqlab.series.scoring import (
    ONE_SIDED,
    PRUNE_MIN_DECREASE,
    THRESHOLDS,
    ErrorAccumulator,
    GaussianErrorModel,
    PositionProfile,
    calibrated_threshold,
    error_scores,
    fit_threshold,
    flags_to_events,
    prune_events,
    threshold_rule,
)
from seqlab.series.season import SEASONS, DailyProfile, as_datetimes, unusable
from seqlab.series.train import RUN_FORMAT, train_autoencoder
from seqlab.series.transform import LOG_SCALES, ValueTransform
from seqlab.series.windows import Scaler, WindowSet, fill_missing, window_starts

FORMAT = "seqlab.series.SeriesAutoencoder/1"
TRAINING_DIR = "training"   # the training run inside a `seqlab series fit --out` directory
AUTO_REGRESSION = 0.5       # regression="auto" on one long series: AER's ratio
# the plain autoencoder (no AER regression, daily profile or log scale); also what a model
# saved before these parameters existed did
PLAIN_PARAMS: dict[str, Any] = {"regression": 0.0, "season": None, "log_scale": None}


class SeriesAutoencoder(BaseEstimator):
    def __init__(self, window: int = 64, stride: int = 1, hidden_size: int = 64,
                 latent_size: int = 32, num_layers: int = 1, dropout: float = 0.0,
                 reverse_target: bool = True, decoder_input: str = "latent", epochs: int = 20,
                 batch_size: int = 64, lr: float = 1e-3, val_fraction: float = 0.1,
                 threshold: str = "sigma", threshold_quantile: float = 0.995,
                 missing: str = "interpolate", seed: int = 0, device: str = "cpu",
                 verbose: bool = False, score_stride: int | None = None,
                 columns: str | list[str] | None = None, num_threads: int | None = None,
                 smoothing: int | None = None, prune: float | None = None,
                 regression: float | str = "auto", embedding: str = "latent",
                 season: str | None = "auto", log_scale: str | None = "auto"):
        self.window = window
        self.stride = stride
        self.hidden_size = hidden_size
        self.latent_size = latent_size
        self.num_layers = num_layers
        self.dropout = dropout
        self.reverse_target = reverse_target
        self.decoder_input = decoder_input
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.val_fraction = val_fraction
        self.threshold = threshold
        self.threshold_quantile = threshold_quantile
        self.missing = missing
        self.seed = seed
        self.device = device
        self.verbose = verbose
        self.score_stride = score_stride
        self.columns = columns
        self.num_threads = num_threads
        self.smoothing = smoothing
        self.prune = prune
        self.regression = regression
        self.embedding = embedding
        self.season = season
        self.log_scale = log_scale

    # ------------------------------------------------------------------ parameters
    def check_params(self) -> None:
        """Raise ValueError for a parameter (combination) that cannot work, before any work."""
        if self.threshold not in THRESHOLDS:
            raise ValueError(f"threshold: expected one of {', '.join(THRESHOLDS)}, "
                             f"got {self.threshold!r}")
        if self.smoothing is not None and int(self.smoothing) < 0:
            raise ValueError(f"smoothing: expected None or a span >= 0, got {self.smoothing}")
        if self.prune is not None and not 0.0 <= float(self.prune) < 1.0:
            raise ValueError(f"prune: expected None or 0 <= p < 1, got {self.prune}")
        if isinstance(self.regression, str):
            if self.regression != "auto":
                raise ValueError(f"regression: expected 'auto' or a ratio 0 <= r < 1, "
                                 f"got {self.regression!r}")
        elif not 0.0 <= float(self.regression) < 1.0:
            raise ValueError(f"regression: expected 'auto' or a ratio 0 <= r < 1, "
                             f"got {self.regression}")
        elif self.regression and self.decoder_input != "latent":
            raise ValueError("regression: needs decoder_input='latent'")
        if self.decoder_input not in DECODER_INPUTS:
            raise ValueError(f"decoder_input: expected one of {DECODER_INPUTS}, "
                             f"got {self.decoder_input!r}")
        if self.embedding not in EMBEDDINGS:
            raise ValueError(f"embedding: expected one of {EMBEDDINGS}, got {self.embedding!r}")
        if self.season is not None and self.season not in SEASONS:
            raise ValueError(f"season: expected None or one of {', '.join(SEASONS)}, "
                             f"got {self.season!r}")
        if self.log_scale is not None and self.log_scale not in LOG_SCALES:
            raise ValueError(f"log_scale: expected None or one of {', '.join(LOG_SCALES)}, "
                             f"got {self.log_scale!r}")
        if self.missing not in ("interpolate", "error"):
            raise ValueError(f"missing: expected 'interpolate' or 'error', got {self.missing!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction: expected 0 <= f < 1, got {self.val_fraction}")
        for name in ("window", "stride", "epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")

    @property
    def effective_score_stride(self) -> int:
        """Step between scoring windows: `score_stride`, or max(1, window // 16)."""
        return int(self.score_stride) if self.score_stride else max(1, self.window // 16)

    @property
    def effective_smoothing(self) -> int:
        """EWMA span (points) applied to the per-point score; 0 or 1 = none."""
        if self.smoothing is not None:
            return int(self.smoothing)
        return max(1, self.window // 2) if self.threshold in ONE_SIDED else 0

    @property
    def effective_prune(self) -> float:
        """Hundman's minimum peak decrease used by `detect_events`; 0 = no pruning."""
        if self.prune is not None:
            return float(self.prune)
        return PRUNE_MIN_DECREASE if self.threshold in ONE_SIDED else 0.0

    @property
    def effective_regression(self) -> float:
        """The fitted model's AER ratio: `regression_` (set by fit and load); for an estimator
        without it (assembled by hand from fitted parts), the parameter, and for "auto" what
        the model was built with."""
        fitted = getattr(self, "regression_", None)
        if fitted is not None:
            return float(fitted)
        if self.regression != "auto":
            return float(self.regression)
        self._fitted()
        return AUTO_REGRESSION if self.model_.cfg.regression else 0.0

    def _fitted(self) -> None:
        check_is_fitted(self, "model_", msg="this SeriesAutoencoder is not fitted yet: "
                                             "call fit(X) or load(dir)")

    def _runner(self) -> WindowRunner:
        self._fitted()
        return WindowRunner(self.model_, self.window, self.device, self.num_threads)

    # ------------------------------------------------------------------ input handling
    def _as_input(self, X, fitting: bool) -> tuple[str, np.ndarray, SeriesData | None]:
        """Validate X and return ("series", (N, C) raw values, data) or ("samples", (n, T, C),
        None). Values are finite (missing policy applied) but not yet scaled."""
        if isinstance(X, np.ndarray | torch.Tensor) and np.ndim(X) == 3:
            arr = np.asarray(X, dtype=np.float64)
            n, T, C = arr.shape
            if self.window != T:
                raise ValueError(f"X: samples have length {T} but window={self.window}; "
                                 f"pass window={T}")
            if n == 0:
                raise ValueError("X: no samples")
            if not fitting and self.n_features_ != C:
                raise ValueError(f"X: samples have {C} channels, the model was fitted on "
                                 f"{self.n_features_}")
            cols = self.columns_ if not fitting else [str(j) for j in range(C)]
            # Missing values are filled inside each sample, never across sample boundaries.
            filled = np.stack([fill_missing(s, self.missing, cols,
                                            lambda r, i=i: f"X: sample {i} step {r}")
                               for i, s in enumerate(arr)]) if not np.isfinite(arr).all() else arr
            return "samples", filled, None
        data = as_series(X, columns=self.columns) if fitting else self.read_data(X)
        values = fill_missing(data.values, self.missing, data.columns, data.location)
        if len(values) < self.window:
            raise UserError(f"{data.source}: series has {len(values)} points, shorter than the "
                            f"window ({self.window})")
        return "series", values, data

    def read_data(self, X, extra_columns: tuple[str, ...] | list[str] = (),
                  sort: bool = False) -> SeriesData:
        """Read a series for this fitted model: the model's columns (by name when it was
        trained on named columns), with a clear error when the data does not match.
        extra_columns: CSV columns to return in `.extra` (e.g. labels). sort: a CSV's rows
        are sorted by timestamp (else rows out of order are an error)."""
        self._fitted()
        if isinstance(X, str | os.PathLike):
            path = Path(X)
            header = _csv_header(path)
            missing = [c for c in self.columns_ if c not in header]
            if header and missing and self.columns_from_names_:
                raise UserError(f"{path}: the model was trained on columns "
                                f"{', '.join(self.columns_)}; missing here: {', '.join(missing)}"
                                f" (file has {', '.join(header)})")
            data = read_series_csv(path,
                                   columns=self.columns_ if self.columns_from_names_ else None,
                                   extra_columns=extra_columns, sort=sort)
        elif isinstance(X, pd.DataFrame) and self.columns_from_names_:
            names = [str(c) for c in X.columns]
            missing = [c for c in self.columns_ if c not in names]
            if missing:
                raise UserError(f"DataFrame: the model was trained on columns "
                                f"{', '.join(self.columns_)}; missing here: {', '.join(missing)}")
            data = as_series(X, columns=self.columns_)
        elif isinstance(X, SeriesData) and self.columns_from_names_ \
                and X.columns != self.columns_:
            missing = [c for c in self.columns_ if c not in X.columns]
            if missing:
                raise UserError(f"{X.source}: the model was trained on columns "
                                f"{', '.join(self.columns_)}; missing here: {', '.join(missing)}")
            idx = [X.columns.index(c) for c in self.columns_]
            data = dataclasses.replace(X, values=X.values[:, idx], columns=list(self.columns_))
        else:
            data = as_series(X)
        if data.values.shape[1] != self.n_features_:
            raise UserError(f"{data.source}: has {data.values.shape[1]} value columns "
                            f"({', '.join(data.columns)}), the model was trained on "
                            f"{self.n_features_} ({', '.join(self.columns_)})")
        return data

    def _scaled(self, X) -> tuple[str, np.ndarray, SeriesData | None]:
        """Model units: minus the daily profile (when `season` keeps one), then scaled."""
        return self._scaled_with_profile(X)[:3]

    def _scaled_with_profile(self, X) -> tuple[str, np.ndarray, SeriesData | None,
                                               np.ndarray | float]:
        """`_scaled` and the profile it removed ((N, C), or 0.0, in transformed units), for
        `_original`."""
        kind, raw, data = self._as_input(X, fitting=False)
        raw = self._transformed(raw)
        prof = self._season_values(data) if kind == "series" and data is not None else 0.0
        return kind, self.scaler_.transform(raw if np.isscalar(prof) else raw - prof), data, prof

    def _transformed(self, raw: np.ndarray) -> np.ndarray:
        """Raw values -> on the `log_scale` (unchanged without one)."""
        vt: ValueTransform | None = getattr(self, "log_scale_", None)
        return raw if vt is None else vt.apply(raw)

    def _original(self, z: np.ndarray, prof: np.ndarray | float = 0.0) -> np.ndarray:
        """Model units (..., C) -> original units: unscale, add the daily profile back, undo
        the log scale."""
        y = self.scaler_.inverse(z) + prof
        vt: ValueTransform | None = getattr(self, "log_scale_", None)
        return y if vt is None else vt.inverse(y)

    def _season_values(self, data: SeriesData) -> np.ndarray | float:
        """(N, C) the daily profile at each point of `data`, or 0.0 without one."""
        prof: DailyProfile | None = getattr(self, "season_", None)
        if prof is None or not prof.any_active:
            return 0.0
        ts = as_datetimes(data.timestamps)
        why = unusable(ts)
        if why is not None:
            raise UserError(f"{data.source}: this model removes a daily profile "
                            f"(season={self.season!r}), so the data {why}")
        assert ts is not None                     # unusable(None) gives a reason
        return prof.values(ts)

    def scale(self, X) -> np.ndarray:
        """X in model units: (N, C) for a series (log scale, minus the daily profile, scaled),
        (n, T, C) for samples; the input of `point_errors`."""
        return self._scaled(X)[1]

    # ------------------------------------------------------------------ training
    def fit(self, X, y=None, *, run_dir: str | os.PathLike[str] | None = None,
            resume: bool = False, run_metadata: dict[str, Any] | None = None
            ) -> SeriesAutoencoder:
        """Train on normal data X (see the module docstring for the accepted forms). y is
        ignored (unsupervised). run_dir: the training run directory (checkpoints, best
        weights, log, config.json with the parameters and `run_metadata`; default a
        temporary one); resume: continue the fit in run_dir exactly (same X and parameters).
        Returns self."""
        self.check_params()
        kind, raw, data = self._as_input(X, fitting=True)
        # "auto" settings do nothing where they cannot apply; explicit ones are errors there
        if kind == "samples" and self.season == "daily":
            raise ValueError("season: needs one long series with timestamps, not a (n, T, C) "
                             "sample array")
        if kind == "samples" and self.regression != "auto" and float(self.regression):
            raise ValueError("regression: needs one long series (the points before and after "
                             "each window), not a (n, T, C) sample array")
        self.regression_ = self._resolve_regression(kind)
        self.input_kind_ = kind
        self.season_: DailyProfile | None = None
        self.log_scale_: ValueTransform | None = None
        if kind == "samples":
            x, train_set, val_set = self._prepare_samples(raw)
        else:
            assert data is not None
            x, train_set, val_set = self._prepare_series(raw, data)
        self.n_features_ = x.shape[-1]
        self.model_config_ = AutoencoderConfig(
            n_features=self.n_features_, hidden_size=int(self.hidden_size),
            latent_size=int(self.latent_size), num_layers=int(self.num_layers),
            dropout=float(self.dropout), reverse_target=bool(self.reverse_target),
            decoder_input=self.decoder_input, regression=bool(self.regression_))
        with _run_directory(run_dir) as rd:
            self.model_, self.history_ = train_autoencoder(
                self.model_config_, train_set, val_set, run_dir=rd, epochs=int(self.epochs),
                batch_size=int(self.batch_size), lr=float(self.lr),
                regression=self.effective_regression, seed=int(self.seed), device=self.device,
                num_threads=self.num_threads, resume=resume, verbose=bool(self.verbose),
                run_config={"format": RUN_FORMAT, "params": self._portable_params(),
                            "metadata": run_metadata or {}})
        # Per-position error levels on all normal fitting data (series: a point's windows hold
        # it at different positions; samples: each step is always the same position).
        self.position_profile_ = (self._runner().position_profile(x, self.effective_score_stride)
                                  if kind == "series" else None)
        # Error model and threshold on normal held-out data (one-sided modes: all normal data).
        if kind == "samples":
            self.fit_error_model(self._runner().sample_errors(val_set.x))     # (n, T, C)
            where = f"normal validation data ({self.validation_})"
        elif self.threshold in ONE_SIDED:
            self.fit_error_model(self.point_errors(x))                       # (N, C)
            where = f"all {len(x)} normal fitting points (validation: {self.validation_})"
        else:
            self.fit_error_model(self.point_errors(val_set.x))
            where = f"normal validation data ({self.validation_})"
        self.threshold_source_ = f"{self._threshold_rule()} of {self.threshold} scores on {where}"
        return self

    def partial_fit(self, X, y=None, *, epochs: int | None = None) -> SeriesAutoencoder:
        """Continue training the fitted model on more normal data X (one series), then refit
        the position profile, the error model and the threshold on X: the walk-forward refit
        of `seqlab series watch --refit-every` (`seqlab.series.online`). Missing values (e.g.
        points flagged as anomalous and blanked) follow `missing`. The scaling, log scale and
        daily profile stay as `fit` learned them, so scores before and after stay comparable.

        epochs: training epochs from the current weights (default max(1, epochs // 4)).
        Deterministic: seeded by `seed`, the same call on the same state gives the same
        weights. An estimator not fitted yet is fitted (scikit-learn's convention). y ignored.
        """
        if not hasattr(self, "model_"):
            return self.fit(X)
        kind, x, _ = self._scaled(X)
        if kind != "series":
            raise ValueError("partial_fit: expects one long series, not (n, T, C) samples")
        split, validation = self._validation_split(len(x))
        if split < self.window + 2 * bool(self.effective_regression):
            raise UserError(f"partial_fit: {len(x)} points leave no training window of "
                            f"{self.window} points")
        train_set, val_set = self._series_sets(x, split)
        n_epochs = max(1, int(self.epochs) // 4) if epochs is None else int(epochs)
        with _run_directory(None) as rd:
            self.model_, self.partial_history_ = train_autoencoder(
                self.model_config_, train_set, val_set, run_dir=rd, epochs=n_epochs,
                batch_size=int(self.batch_size), lr=float(self.lr),
                regression=self.effective_regression, seed=int(self.seed), device=self.device,
                num_threads=self.num_threads, verbose=bool(self.verbose),
                init_state={k: v.detach().clone() for k, v in self.model_.state_dict().items()})
        self.position_profile_ = self._runner().position_profile(x, self.effective_score_stride)
        normal = x if self.threshold in ONE_SIDED or split == len(x) else x[split:]
        self.fit_error_model(self.point_errors(normal))
        self.threshold_source_ = (f"{self._threshold_rule()} of {self.threshold} scores on "
                                  f"{len(normal)} points given to partial_fit "
                                  f"(validation: {validation})")
        return self

    def _prepare_samples(self, raw: np.ndarray) -> tuple[np.ndarray, WindowSet, WindowSet]:
        """raw: (n, T, C) -> (scaled samples, training windows, validation windows); sets the
        columns, validation split, log scale and scaler."""
        n, T, C = raw.shape
        self.columns_ = [str(j) for j in range(C)]
        self.columns_from_names_ = False
        self.timestamp_name_: str | None = None
        rng = np.random.default_rng(self.seed)
        n_val = int(round(self.val_fraction * n))
        if n_val >= 1 and n - n_val >= 1:
            perm = rng.permutation(n)
            val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
            self.validation_ = "held-out samples"
        else:
            train_idx = val_idx = np.arange(n)
            self.validation_ = "train"
        if self.log_scale:
            self.log_scale_ = ValueTransform.fit(raw[train_idx].reshape(-1, C), self.log_scale)
            raw = self.log_scale_.apply(raw)
        self.scaler_ = Scaler.fit(raw[train_idx].reshape(-1, C), self.columns_, "samples")
        x = self.scaler_.transform(raw)                                       # (n, T, C)
        return x, WindowSet.from_samples(x[train_idx]), WindowSet.from_samples(x[val_idx])

    def _prepare_series(self, raw: np.ndarray, data: SeriesData
                        ) -> tuple[np.ndarray, WindowSet, WindowSet]:
        """raw: (N, C) -> (scaled series, training windows, validation windows): the held-out
        tail, log scale, daily profile and scaler."""
        self.columns_ = list(data.columns)
        self.columns_from_names_ = data.source != "array"
        self.timestamp_name_ = data.timestamp_name
        split, self.validation_ = self._validation_split(len(raw))
        if self.log_scale:  # decided on the training part, like the scaling
            self.log_scale_ = ValueTransform.fit(raw[:split], self.log_scale)
            raw = self.log_scale_.apply(raw)
        if self.season:
            # The daily profile from all the (normal) fitting data: the held-out tail is
            # often what completes the two days it needs.
            self.season_ = DailyProfile.fit(data.timestamps, raw, self.season, data.source)
            raw = raw - self._season_values(data)
        # Scaling statistics from the training part only.
        self.scaler_ = Scaler.fit(raw[:split], self.columns_, data.source)
        x = self.scaler_.transform(raw)                                       # (N, C)
        return x, *self._series_sets(x, split)

    def _resolve_regression(self, kind: str) -> float:
        """The AER ratio a fit on `kind` input uses: `regression`, or for "auto" 0.5 on one
        long series with decoder_input="latent" (the held-out winner on NAB,
        benchmarks/bench_series_loco.py) and 0.0 elsewhere (samples have no neighbouring
        points; other decoder inputs cannot predict them)."""
        if self.regression == "auto":
            return AUTO_REGRESSION if kind == "series" and self.decoder_input == "latent" \
                else 0.0
        return float(self.regression)

    def _validation_split(self, N: int) -> tuple[int, str]:
        """Where a series of N points splits into training part and held-out tail, and how
        that reads in `validation_`."""
        n_val = max(int(round(self.val_fraction * N)), self.window) if self.val_fraction else 0
        if n_val and N - n_val >= self.window + 1:
            return N - n_val, f"last {n_val} points"
        return N, "train"

    def _series_sets(self, x: np.ndarray, split: int) -> tuple[WindowSet, WindowSet]:
        """x: (N, C) model units -> training windows on x[:split], validation windows on the
        tail (all of x when there is none)."""
        N = len(x)
        # Regression (AER): each training window carries one extra point either side, the
        # targets of the backward and forward predictions.
        span = self.window + 2 if self.effective_regression else self.window
        train_set = WindowSet(x[:split], window_starts(split, span, self.stride), span)
        val_part = x[split:] if split < N and N - split >= span else x
        val_set = WindowSet(val_part, window_starts(len(val_part), span,
                                                    self.effective_score_stride), span)
        return train_set, val_set

    def _portable_params(self) -> dict[str, Any]:
        """get_params() as JSON, for a machine without this one's device."""
        params = self.get_params()
        params["device"] = "cpu"
        return params

    # ------------------------------------------------------------------ errors and scores
    def point_errors(self, x: np.ndarray, window_scores: list | None = None) -> np.ndarray:
        """x: (N, C) series in model units (`scale`) -> (N, C) per-point error vectors ((N, 2C)
        with `regression`), see `reconstruction.WindowRunner.point_errors`. When
        `window_scores` is a list, each scoring window's mean score is appended to it."""
        ws = None if window_scores is None else (self.score_errors, window_scores)
        return self._runner().point_errors(
            x, self.effective_score_stride, getattr(self, "position_profile_", None),
            bool(self.effective_regression), ws)

    def score_errors(self, errors: np.ndarray, smooth: bool = True) -> np.ndarray:
        """(..., T, C) time-ordered error vectors -> (..., T) anomaly scores (smoothed along T
        when `effective_smoothing` > 1 and `smooth`), under the fitted error model."""
        self._fitted()
        # The EWMA starts at the mean normal score (absent in models saved before it).
        return error_scores(errors, self.threshold, self.error_model_,
                            self.effective_smoothing if smooth else 0,
                            getattr(self, "score_level_", None))

    def _threshold_rule(self) -> str:
        return threshold_rule(self.threshold, self.threshold_quantile,
                              getattr(self, "threshold_z_", None))

    def fit_error_model(self, errors: np.ndarray, refit_model: bool = True) -> SeriesAutoencoder:
        """Fit the error model (unless not `refit_model`) and the threshold on errors of
        normal data: (..., T, C) per-point error vectors (`point_errors`), time-ordered along
        T. Does not touch `threshold_source_`."""
        if refit_model:
            self.error_model_ = GaussianErrorModel.fit(errors.reshape(-1, errors.shape[-1]))
            self.score_level_: float | None = float(self.score_errors(errors, smooth=False).mean())
        scores = self.score_errors(errors).ravel()
        self.threshold_, z = fit_threshold(scores, self.threshold, self.threshold_quantile)
        if z is not None:
            self.threshold_z_ = z
        return self

    def _sample_errors(self, x: np.ndarray) -> np.ndarray:
        """x: (n, T, C) scaled samples -> (n, T, C) absolute reconstruction errors."""
        if self.effective_regression:
            raise ValueError("X: a regression model scores one long series, not (n, T, C) "
                             "samples (a sample has no points before and after it)")
        return self._runner().sample_errors(x)

    # ------------------------------------------------------------------ public API
    def transform(self, X) -> np.ndarray:
        """Feature vectors: (n_windows, D) for a series (windows every `stride` points, last
        one flush with the end; see `window_starts`), (n_samples, D) for a (n, T, C) sample
        array. D depends on `embedding`: latent_size ("latent"), 2 * num_layers * hidden_size
        ("states"), 2 * hidden_size ("pooled")."""
        if self.embedding not in EMBEDDINGS:
            raise ValueError(f"embedding: expected one of {EMBEDDINGS}, got {self.embedding!r}")
        kind, x, _ = self._scaled(X)
        runner = self._runner()
        batches = runner.run_samples(x, self.embedding) if kind == "samples" else \
            runner.run(x, window_starts(len(x), self.window, self.stride), self.embedding)
        return np.concatenate([z for *_, z in batches])

    def encoder_gates(self, X, start: int = 0):
        """The encoder LSTM's gates over one window, for `seqlab gates`-style pictures.

        X: a series (window = points start..start+window-1) or a (n, T, C) sample array
        (window = sample `start`). Returns (LSTMGates with (L, 1, 1, T, H) fields, the window's
        values (T, C) in original units).
        """
        kind, x, _, prof = self._scaled_with_profile(X)
        win = x[start] if kind == "samples" else x[start:start + self.window]   # (T, C)
        if start < 0 or len(win) != self.window:
            raise ValueError(f"start: {start} leaves no full window of {self.window} points")
        if isinstance(prof, np.ndarray):        # else the scalar 0.0 (no profile)
            prof = prof[start:start + self.window]
        t = torch.from_numpy(np.ascontiguousarray(win[None], dtype=np.float32))
        t = t.to(resolve_device(self.device))
        with torch.no_grad():
            _, _, gates = self.model_.encoder(t, return_gates=True)
        return gates, self._original(win, prof)

    def window_starts(self, n: int) -> np.ndarray:
        """Start index of each row of `transform` for a series of n points."""
        return window_starts(n, self.window, self.stride)

    def reconstruct(self, X) -> np.ndarray:
        """The reconstruction in original units: (N, C) for a series (mean over the windows
        covering each point, every `effective_score_stride`), (n, T, C) for samples. A 1-D
        input gives a 1-D output."""
        kind, x, _, prof = self._scaled_with_profile(X)
        runner = self._runner()
        if kind == "samples":
            return self._original(np.concatenate([r for *_, r, _ in runner.run_samples(x)]))
        acc = ErrorAccumulator(len(x), x.shape[1])
        stride = self.effective_score_stride
        for s, _, recon, _ in runner.run(x, window_starts(len(x), self.window, stride)):
            assert recon is not None                 # None only with `embedding`
            acc.add(s, recon)
        out = self._original(acc.mean(), prof)
        return out[:, 0] if np.ndim(X) == 1 and not isinstance(X, str | os.PathLike) else out

    def score_samples(self, X, level: str = "point") -> np.ndarray:
        """Anomaly scores, higher = more anomalous.

        level="point": (N,) per time point for a series, (n, T) for samples.
        level="window": (n_windows,) for a series (windows every `effective_score_stride`
        points, each scored by the mean score of its own errors), (n,) for samples.
        """
        self._fitted()
        if level not in ("point", "window"):
            raise ValueError(f"level: expected 'point' or 'window', got {level!r}")
        kind, x, _ = self._scaled(X)
        if kind == "samples":
            scores = self.score_errors(self._sample_errors(x))               # (n, T)
            return scores if level == "point" else scores.mean(axis=1)
        per_window: list[np.ndarray] = []
        point = self.score_errors(self.point_errors(x, per_window))          # (N,)
        return point if level == "point" else np.concatenate(per_window)

    def predict(self, X) -> np.ndarray:
        """(N,) bool anomaly flags: the points inside `detect_events` (flagged points merged
        and pruned), so flags and events always agree; (n, T) score > threshold_ for samples."""
        s = self.score_samples(X)
        if s.ndim != 1:
            return s > self.threshold_
        flags = np.zeros(len(s), dtype=bool)
        for start, end in self.detect_events(X, scores=s):
            flags[start:end + 1] = True
        return flags

    def detect_events(self, X, min_gap: int | None = None,
                      scores: np.ndarray | None = None) -> list[tuple[int, int]]:
        """Flagged points merged into inclusive (start, end) index intervals. Events fewer than
        `min_gap` points apart are merged (default window // 2; 0 = only touching points), then
        pruned when `effective_prune` > 0 (`scoring.prune_events`: events whose peak is not
        clearly above the smaller ones and the unflagged scores of X are dropped; no labels
        involved).
        `scores` reuses already computed point scores of X."""
        s = self.score_samples(X) if scores is None else scores
        if s.ndim != 1:
            raise ValueError("detect_events: expects a single series, not samples")
        gap = self.window // 2 if min_gap is None else int(min_gap)
        return prune_events(flags_to_events(s > self.threshold_, gap), s, self.effective_prune)

    def fit_threshold(self, X_normal, refit_error_model: bool = True) -> SeriesAutoencoder:
        """Recompute the threshold (and by default the error model) from normal data only."""
        kind, x, _ = self._scaled(X_normal)
        if kind == "series" and refit_error_model:
            self.position_profile_ = self._runner().position_profile(
                x, self.effective_score_stride)
        errors = self._sample_errors(x) if kind == "samples" else self.point_errors(x)
        self.fit_error_model(errors, refit_error_model)
        n = int(np.prod(errors.shape[:-1]))
        self.threshold_source_ = f"{self._threshold_rule()} of {self.threshold} scores on " \
                                 f"normal data given to fit_threshold ({n} points)"
        return self

    def calibrate_threshold(self, X, labels) -> float:
        """LABELLED calibration: set threshold_ to the best point-F1 threshold on (X, labels).
        This uses ground truth; `threshold_source_` says so. Returns that F1."""
        scores = self.score_samples(X)
        thr, f1 = calibrated_threshold(scores.ravel(), np.asarray(labels).ravel())
        self.threshold_ = thr
        self.prune = 0.0  # the calibrated threshold is already the best one for point flags
        self.threshold_source_ = f"LABELLED calibration: best point F1 ({f1:.3f}) on " \
                                 f"{scores.size} labelled points"
        return f1

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write model.safetensors and config.json (last, so a directory with a config.json
        always has complete weights) into `directory`."""
        self._fitted()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        save_safetensors_atomic(self.model_.state_dict(), d / "model.safetensors")
        params = self._portable_params()
        config = {
            "format": FORMAT,
            "params": params,
            "model": vars(self.model_config_),
            "input_kind": self.input_kind_,
            "regression": self.effective_regression,
            "columns": self.columns_,
            "columns_from_names": self.columns_from_names_,
            "timestamp_name": self.timestamp_name_,
            "n_features": self.n_features_,
            "window": self.window,
            "scaler": self.scaler_.to_dict(),
            "season": None if self.season_ is None else self.season_.to_dict(),
            "log_scale": None if self.log_scale_ is None else self.log_scale_.to_dict(),
            "error_model": self.error_model_.to_dict(),
            "position_profile": None if self.position_profile_ is None
            else self.position_profile_.to_dict(),
            "threshold": self.threshold_,
            "score_level": self.score_level_,
            "threshold_source": self.threshold_source_,
            "validation": self.validation_,
            "history": self.history_,
        }
        write_json_atomic(d / "config.json", config)
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike[str], device: str = "cpu",
             backend: str = "torch") -> SeriesAutoencoder:
        """A saved estimator. backend="onnx": score with the graph `seqlab series export` wrote
        to directory/onnx/, run by onnxruntime (`num_threads` intra-op threads)."""
        from seqlab.training.checkpoint import load_model_tensors, load_safetensors

        d = Path(directory)
        cfg_path, weights = d / "config.json", d / "model.safetensors"
        for p in (cfg_path, weights):
            if not p.is_file():
                raise UserError(f"{d}: not a saved SeriesAutoencoder (missing {p.name})")
        try:
            config = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise UserError(f"{cfg_path}: not valid JSON ({err})") from None
        if not isinstance(config, dict):
            raise UserError(f"{cfg_path}: not a SeriesAutoencoder config (a JSON object)")
        if config.get("format") != FORMAT:
            raise UserError(f"{cfg_path}: format {config.get('format')!r}, expected {FORMAT!r}")
        try:
            # parameters added later are absent from older models, which had these values
            params = {**PLAIN_PARAMS, **config["params"], "device": device}
            est = cls(**params)
            est.model_config_ = AutoencoderConfig(**config["model"])
            model = LSTMAutoencoder(est.model_config_)
            load_model_tensors(model, load_safetensors(weights)[0], str(weights))
            est.model_ = model.to(resolve_device(device)).eval()
            est.input_kind_ = config["input_kind"]
            est.columns_ = list(config["columns"])
            est.columns_from_names_ = bool(config["columns_from_names"])
            est.timestamp_name_ = config["timestamp_name"]
            est.n_features_ = int(config["n_features"])
            est.scaler_ = Scaler.from_dict(config["scaler"])
            season = config.get("season")
            est.season_ = None if season is None else DailyProfile.from_dict(season)
            vt = config.get("log_scale")  # absent in models saved before the option existed
            est.log_scale_ = None if vt is None else ValueTransform.from_dict(vt)
            est.error_model_ = GaussianErrorModel.from_dict(config["error_model"])
            pp = config.get("position_profile")  # absent in models saved before it existed
            est.position_profile_ = None if pp is None else PositionProfile.from_dict(pp)
            est.threshold_ = float(config["threshold"])
            level = config.get("score_level")   # absent in models saved before it existed
            est.score_level_ = None if level is None else float(level)
            est.threshold_source_ = config["threshold_source"]
            est.validation_ = config["validation"]
            est.history_ = config["history"]
            # models saved before "auto" existed: the parameter was the ratio itself
            ratio = config.get("regression")
            est.regression_ = est.effective_regression if ratio is None else float(ratio)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise UserError(f"{cfg_path}: corrupt SeriesAutoencoder config ({err!r})") from None
        if check_backend(backend) == "onnx":
            from seqlab.series.onnx_backend import OnnxAutoencoder

            # a stand-in with the calls scoring makes (forward, encoder, eval, to)
            est.model_ = cast(LSTMAutoencoder,
                              OnnxAutoencoder.load(d, est.model_config_, est.num_threads))
        return est


@contextlib.contextmanager
def _run_directory(run_dir: str | os.PathLike[str] | None) -> Iterator[Path]:
    """run_dir as a Path, or a temporary directory removed afterwards."""
    if run_dir is not None:
        yield Path(run_dir)
        return
    with tempfile.TemporaryDirectory(prefix="seqlab-series-") as tmp:
        yield Path(tmp) / "run"


def _csv_header(path: Path) -> list[str]:
    """The header fields of a CSV (empty list if the file is missing or empty)."""
    try:
        # bad bytes are reported with their line by read_series_csv, which reads the file next
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            for row in csv.reader(f):
                if row and any(c.strip() for c in row):
                    return [c.strip() for c in row]
    except OSError:
        return []
    return []


__all__ = ["SeriesAutoencoder", "parse_columns"]
