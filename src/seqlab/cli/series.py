"""`seqlab series`: fit the LSTM autoencoder on a CSV series, score new data, embed windows.

    seqlab series fit data.csv --columns a,b --window 64 --out RUN [--epochs 20 ...]
    seqlab series score RUN new.csv -o scores.csv --events events.csv --plot anomalies.png
    seqlab series embed RUN data.csv -o embeddings.csv [--plot embeddings.png]
    seqlab series export RUN          # RUN/onnx/, then score/embed ... --backend onnx
    tail -f feed.csv | seqlab series watch RUN - --events-out alarms.csv [--refit-every N]

Every file is written atomically (seqlab.io); bad input is one line on stderr and exit code 2,
with nothing written.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import pandas as pd

from seqlab.cli.export import backend_option
from seqlab.cli.group import UserErrorGroup
from seqlab.cli.options import FRACTION, POSITIVE_FLOAT, OutputDir, OutputFile, device_option
from seqlab.errors import UserError
from seqlab.io import atomic_path, save_figure_atomic
from seqlab.validate import replaced_note


class RatioOrAuto(click.ParamType):
    """"auto" or a number in [0, 1) (`--regression`)."""

    name = "auto|RATIO"

    def convert(self, value, param, ctx):
        if isinstance(value, float) or str(value).strip().lower() == "auto":
            return value if isinstance(value, float) else "auto"
        try:
            ratio = float(value)
        except ValueError:
            ratio = float("nan")
        if not 0.0 <= ratio < 1.0:          # NaN fails too
            self.fail(f"expected 'auto' or a number in [0, 1), got {value!r}", param, ctx)
        return ratio


@click.group(cls=UserErrorGroup)
def series() -> None:
    """LSTM autoencoder for time series: reconstructions, embeddings, anomalies."""


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def _check_outputs(*paths: Path | None) -> None:
    """Fail before any work if an output cannot be written (missing parent is created)."""
    for p in paths:
        if p is not None and p.exists() and p.is_dir():
            raise UserError(f"{p}: is a directory, expected a file path")


sort_option = click.option(
    "--sort", is_flag=True,
    help="Sort the rows by timestamp (and say how many moved); without it, a row whose "
         "timestamp is not after the previous row's is an error naming its line.")


def _sorted_note(series_data):
    if series_data.rows_moved:
        click.echo(f"sorted by timestamp: {series_data.rows_moved} row(s) moved", err=True)
    return series_data


@series.command("fit")
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=OutputDir(),
              help="Run directory for model.safetensors + config.json.")
@click.option("--columns", default=None, help="Value columns, comma-separated (default: all "
              "numeric columns except the timestamp).")
@click.option("--timestamp", default="auto", show_default=True,
              help="Timestamp column name, 'auto' (detect) or 'none'.")
@click.option("--window", default=64, show_default=True, type=click.IntRange(2))
@click.option("--stride", default=1, show_default=True, type=click.IntRange(1),
              help="Step between training windows.")
@click.option("--score-stride", default=None, type=click.IntRange(1),
              help="Step between scoring windows [default: window // 16].")
@click.option("--hidden-size", default=64, show_default=True, type=click.IntRange(1))
@click.option("--latent-size", default=32, show_default=True, type=click.IntRange(1))
@click.option("--num-layers", default=1, show_default=True, type=click.IntRange(1))
@click.option("--dropout", default=0.0, show_default=True,
              type=FRACTION)
@click.option("--reverse/--no-reverse", "reverse_target", default=True, show_default=True,
              help="Rebuild the window last step first (Srivastava 2015).")
@click.option("--decoder-input", default="latent", show_default=True,
              type=click.Choice(["latent", "teacher"]))
@click.option("--epochs", default=20, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
@click.option("--lr", default=1e-3, show_default=True, type=POSITIVE_FLOAT)
@click.option("--val-fraction", default=0.1, show_default=True,
              type=FRACTION)
@click.option("--threshold", default="sigma", show_default=True,
              type=click.Choice(["sigma", "sigma_max", "dynamic", "gaussian", "quantile"]),
              help="sigma: smoothed one-sided error, mean + 4 std on the training data, pruned "
                   "events; sigma_max: the same, at least the highest training score; dynamic: "
                   "Hundman's threshold search; gaussian: EncDec-AD error model; quantile: a "
                   "quantile of the plain error.")
@click.option("--regression", default="auto", show_default=True, type=RatioOrAuto(),
              help="AER: share of the loss for also predicting the point before and after "
                   "each window; the prediction error joins the score. auto: 0.5 (AER's) with "
                   "--decoder-input latent, else 0; 0 = off; a number in [0, 1).")
@click.option("--season", type=click.Choice(["auto", "daily", "none"]), default="auto",
              show_default=True,
              help="Remove the daily profile (the usual value at each time of day, learned from "
                   "the timestamps of DATA): the model sees the residual, so a missing daytime "
                   "peak stands out. auto: only for columns with a daily cycle that predicts "
                   "(R^2 >= 0.5 on a held-out day), nothing without timestamps; daily: always "
                   "(needs timestamps); none: off.")
@click.option("--log-scale", type=click.Choice(["auto", "all", "none"]), default="auto",
              show_default=True,
              help="Log-like transform asinh(x / s) (s: a low non-zero level of the column) "
                   "before scaling, for bursty metrics (bytes, counts): a burst is judged "
                   "relative to the level. auto: only non-negative heavy-tailed columns "
                   "(skewness > 2); all: every column; none: off.")
@click.option("--quantile", "threshold_quantile", default=0.995, show_default=True,
              type=click.FloatRange(0, 1, min_open=True, max_open=True))
@click.option("--missing", default="interpolate", show_default=True,
              type=click.Choice(["interpolate", "error"]))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--threads", default=None, type=click.IntRange(1),
              help="torch threads [default: torch's]; 1 is often fastest for small models.")
@click.option("--resume", is_flag=True,
              help="Continue the fit in --out (checkpointed at every epoch end) exactly, with "
                   "its stored settings (--epochs may raise the number of epochs); DATA must "
                   "be the same file.")
@sort_option
@device_option()
def fit_cmd(data: Path, out_dir: Path, columns: str | None, timestamp: str, window: int,
            stride: int, score_stride: int | None, hidden_size: int, latent_size: int,
            num_layers: int, dropout: float, reverse_target: bool, decoder_input: str,
            epochs: int, batch_size: int, lr: float, val_fraction: float, threshold: str,
            threshold_quantile: float, regression: float | str, season: str,
            log_scale: str, missing: str, seed: int, threads: int | None,
            resume: bool, sort: bool, device: str) -> None:
    """Train on DATA (a CSV of normal behaviour) and save the model to --out (the training
    run, with its checkpoint, in --out/training).

    The defaults (--season auto --regression auto --log-scale auto --threshold sigma) are the
    configuration chosen by leave-one-category-out on NAB; --season none --regression 0
    --log-scale none trains the plain autoencoder."""
    from seqlab.series.estimator import PLAIN_PARAMS, TRAINING_DIR, SeriesAutoencoder
    from seqlab.series.io import read_series_csv
    from seqlab.training.checkpoint import check_run_dir, new_run_cleanup

    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a directory")
    run_dir = out_dir / TRAINING_DIR
    check_run_dir(run_dir, resume)
    with new_run_cleanup(run_dir, resume):   # a refused fit leaves no folder behind
        if resume:
            stored = _read_fit_args(run_dir / "config.json")
            columns, ts = stored["columns"], stored["timestamp"]
            params = {**PLAIN_PARAMS, **stored["params"], "verbose": True}
            ctx = click.get_current_context()
            if ctx.get_parameter_source("epochs") == click.core.ParameterSource.COMMANDLINE:
                params["epochs"] = epochs
            if ctx.get_parameter_source("device") == click.core.ParameterSource.COMMANDLINE:
                params["device"] = device
            series_data = _sorted_note(read_series_csv(data, columns=columns, timestamp=ts,
                                                      sort=sort))
            est = SeriesAutoencoder(**params)
            click.echo(f"resuming the fit in {run_dir} with its stored settings "
                       f"({est.epochs} epochs)")
            est.fit(series_data, run_dir=run_dir, resume=True)
        else:
            ts = None if timestamp.lower() == "none" else timestamp
            series_data = _sorted_note(read_series_csv(data, columns=columns, timestamp=ts,
                                                      sort=sort))
            est = _new_estimator(
                window=window, stride=stride, hidden_size=hidden_size, latent_size=latent_size,
                num_layers=num_layers, dropout=dropout, reverse_target=reverse_target,
                decoder_input=decoder_input, epochs=epochs, batch_size=batch_size, lr=lr,
                val_fraction=val_fraction, threshold=threshold,
                threshold_quantile=threshold_quantile, missing=missing, seed=seed, verbose=True,
                score_stride=score_stride, num_threads=threads, regression=regression,
                season=None if season == "none" else season,
                log_scale=None if log_scale == "none" else log_scale, device=device)
            est.fit(series_data, run_dir=run_dir,
                    run_metadata={"columns": columns, "timestamp": ts})
        est.save(out_dir)
    last = est.history_[-1]
    best = min(h["val_loss"] for h in est.history_)
    click.echo(f"trained on {len(series_data.values)} points x {len(est.columns_)} column(s) "
               f"({', '.join(est.columns_)}); final train loss {last['train_loss']:.4g}, "
               f"best val loss {best:.4g} ({est.validation_})")
    click.echo(f"threshold {est.threshold_:.4g}: {est.threshold_source_}")
    if est.regression_:
        click.echo(f"AER: regression ratio {est.regression_:g} (the predicted points before "
                   "and after each window join the score)")
    if est.season_ is not None:
        used = [f"{c} (R^2 {r:.2f})" if r is not None else c
                for c, a, r in zip(est.columns_, est.season_.active, est.season_.r2,
                                   strict=True) if a]
        click.echo("daily profile removed from: " + (", ".join(used) if used else
                   "no column (none has a daily cycle that predicts a held-out day)"))
    if est.log_scale_ is not None:
        used = [c for c, a in zip(est.columns_, est.log_scale_.log, strict=True) if a]
        click.echo("log transform on: " + (", ".join(used) if used else
                   "no column (none is non-negative and heavy-tailed)"))
    click.echo(f"saved {out_dir}/model.safetensors and {out_dir}/config.json")


def _new_estimator(**params):
    """A SeriesAutoencoder from the fit options; a bad combination is a UserError before any
    work."""
    from seqlab.series.estimator import SeriesAutoencoder

    est = SeriesAutoencoder(**params)
    try:
        est.check_params()
    except ValueError as err:
        raise UserError(f"series fit: {err}") from None
    return est


def _read_fit_args(path: Path) -> dict:
    """The stored `series fit` settings of a training run (its config.json), for --resume."""
    import json

    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        meta = stored["metadata"]
        return {"columns": meta["columns"], "timestamp": meta["timestamp"],
                "params": dict(stored["params"])}
    except FileNotFoundError:
        raise UserError(f"{path}: not found; nothing to resume") from None
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise UserError(f"{path}: corrupt fit settings ({err!r})") from None


def _load_for(run: Path, data: Path, label_column: str | None = None, device: str = "auto",
              backend: str = "torch", sort: bool = False):
    from seqlab.series.estimator import SeriesAutoencoder

    est = SeriesAutoencoder.load(run, device=device, backend=backend)
    series_data = _sorted_note(est.read_data(
        data, extra_columns=[label_column] if label_column else [], sort=sort))
    if label_column and label_column in series_data.columns:
        raise UserError(f"{data}: label column {label_column!r} is one of the model's inputs")
    return est, series_data


@series.command("score")
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("data", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=OutputFile(),
              help="Scores CSV: timestamp (if any), value columns, score, is_anomaly.")
@click.option("--events", "events_path", default=None, type=OutputFile(),
              help="Events CSV: start, end, start_index, end_index, peak_score.")
@click.option("--plot", "plot_path", default=None, type=OutputFile(figure=True),
              help="Picture of the series, the score and the events (.png/.svg/.pdf).")
@click.option("--min-gap", default=None, type=click.IntRange(0),
              help="Merge events fewer than this many points apart [default: window // 2].")
@click.option("--label-column", default=None,
              help="0/1 column of known anomalies in DATA: shaded in the plot, not scored.")
@click.option("--calibrate", is_flag=True,
              help="LABELLED calibration: set the threshold to the best point-F1 one against "
                   "--label-column (uses ground truth; reported as such; RUN is not changed).")
@sort_option
@device_option()
@backend_option
def score_cmd(run: Path, data: Path, output: Path, events_path: Path | None,
              plot_path: Path | None, min_gap: int | None, label_column: str | None,
              calibrate: bool, sort: bool, device: str, backend: str) -> None:
    """Score DATA with the model in RUN: per-point anomaly scores, flags and events."""
    from seqlab.series.plots import plot_anomalies
    from seqlab.series.scoring import event_peaks

    _check_outputs(output, events_path, plot_path)
    if calibrate and not label_column:
        raise UserError("--calibrate needs --label-column (the known anomalies to calibrate on)")
    est, sd = _load_for(run, data, label_column, device, backend, sort)
    scores = est.score_samples(sd)                                           # (N,)
    if calibrate:
        from seqlab.series.scoring import calibrated_threshold

        try:
            est.threshold_, f1 = calibrated_threshold(scores, sd.extra[label_column] > 0)
        except ValueError as err:
            raise UserError(f"{data}: --calibrate: {err}") from None
        est.prune = 0.0  # the calibrated threshold is already the best one for point flags
        click.echo(f"threshold {est.threshold_:.4g} from a LABELLED calibration on "
                   f"{label_column!r} (best point F1 {f1:.3f}): not an unsupervised result",
                   err=True)
    events = est.detect_events(sd, min_gap=min_gap, scores=scores)
    flags = np.zeros(len(scores), dtype=bool)  # is_anomaly: inside a detected event
    for start, end in events:
        flags[start:end + 1] = True
    frame = pd.DataFrame({c: sd.values[:, j] for j, c in enumerate(sd.columns)})
    if sd.timestamps is not None:
        frame.insert(0, sd.timestamp_name or "timestamp", sd.timestamps)
    frame["score"] = scores
    frame["is_anomaly"] = flags.astype(int)
    # Everything is computed before the first file is written.
    notes = [replaced_note(p) for p in (output, events_path, plot_path) if p is not None]
    fig = None
    if plot_path is not None:
        labels = sd.extra[label_column] > 0 if label_column else None
        fig = plot_anomalies(sd.values, scores, est.threshold_, events, sd.columns,
                             timestamps=sd.timestamps, labels=labels,
                             title=f"{data.name}: {len(events)} event(s), "
                                   f"{int(flags.sum())} flagged point(s)")
    _write_csv(frame, output)
    if events_path is not None:
        ev = pd.DataFrame({
            "start": [sd.timestamps[s] if sd.timestamps is not None else s for s, _ in events],
            "end": [sd.timestamps[e] if sd.timestamps is not None else e for _, e in events],
            "start_index": [s for s, _ in events], "end_index": [e for _, e in events],
            "peak_score": event_peaks(events, scores)},
            columns=["start", "end", "start_index", "end_index", "peak_score"])
        _write_csv(ev, events_path)
    if fig is not None and plot_path is not None:   # fig only exists with a plot path
        save_figure_atomic(fig, plot_path, dpi=110)
    click.echo(f"{len(scores)} points scored, {int(flags.sum())} in events (threshold "
               f"{est.threshold_:.4g}), {len(events)} event(s); " + ", ".join(notes))


@series.command("embed")
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("data", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=OutputFile(),
              help="Embeddings CSV: start, end (timestamps if any), start_index, end_index, "
                   "z0..z{latent-1}.")
@click.option("--stride", default=None, type=click.IntRange(1),
              help="Step between windows [default: the model's training stride].")
@click.option("--plot", "plot_path", default=None, type=OutputFile(figure=True),
              help="2-D PCA projection of the embeddings.")
@click.option("--label-column", default=None,
              help="Column of classes in DATA: a window's class is its last point's class; "
                   "colours the plot and is written to the CSV.")
@click.option("--embedding", type=click.Choice(["latent", "states", "pooled"]), default=None,
              help="latent: the bottleneck z; states: the encoder's final h and c of every "
                   "layer; pooled: mean and max over time of the encoder's states (best for "
                   "classifying shapes) [default: the model's setting].")
@sort_option
@device_option()
@backend_option
def embed_cmd(run: Path, data: Path, output: Path, stride: int | None, plot_path: Path | None,
              label_column: str | None, embedding: str | None, sort: bool,
              device: str, backend: str) -> None:
    """Feature vectors of the windows of DATA (the autoencoder's latent unless --embedding)."""
    from seqlab.series.plots import plot_embeddings

    _check_outputs(output, plot_path)
    est, sd = _load_for(run, data, label_column, device, backend, sort)
    if stride is not None:
        est.stride = stride
    if embedding is not None:
        est.embedding = embedding
    Z = est.transform(sd)                                                    # (W, latent)
    starts = est.window_starts(len(sd.values))
    ends = starts + est.window - 1
    frame = pd.DataFrame(Z, columns=[f"z{k}" for k in range(Z.shape[1])])
    frame.insert(0, "end_index", ends)
    frame.insert(0, "start_index", starts)
    if sd.timestamps is not None:
        frame.insert(0, "end", sd.timestamps[ends])
        frame.insert(0, "start", sd.timestamps[starts])
    labels = None
    if label_column:
        labels = sd.extra[label_column][ends]
        if np.isfinite(labels).all() and (labels == np.round(labels)).all():
            labels = labels.astype(np.int64)  # class ids, not 0.0/1.0
        frame["label"] = labels
    notes = [replaced_note(p) for p in (output, plot_path) if p is not None]
    fig = plot_embeddings(Z, labels, title=f"{data.name}: {len(Z)} window embeddings") \
        if plot_path is not None else None
    _write_csv(frame, output)
    if fig is not None and plot_path is not None:   # fig only exists with a plot path
        save_figure_atomic(fig, plot_path, dpi=110)
    click.echo(f"{len(Z)} windows x {Z.shape[1]} features; " + ", ".join(notes))


@series.command("export")
@click.argument("run", type=click.Path(path_type=Path))
def export_cmd(run: Path) -> None:
    """Write the autoencoder as ONNX to RUN/onnx/ (for score/embed --backend onnx; needs
    pip install 'seqlab[onnx]')."""
    from seqlab.series.onnx_backend import export_series

    click.echo(f"ONNX export: {export_series(run)}")


# `series watch` lives in its own module (streaming input).
from seqlab.cli.series_watch import watch_cmd  # noqa: E402

series.add_command(watch_cmd)

__all__ = ["series"]
