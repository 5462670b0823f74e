"""The README demo: the LSTM autoencoder on a real labelled series, offline.

UCR anomaly archive series 135 (InternalBleeding16, a patient's heart rate, 7,501 points) as
shipped in aeon 1.6.0: the first 1,200 points are declared normal training data (file name
and the TRAIN file), one anomaly is labelled later on. The detector is trained on the normal
prefix only (best epoch picked on the prefix's last 20%); the error model and threshold are
then fitted on the whole normal prefix (`fit_threshold`); the rest is scored without labels,
which are used only to report the result.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from seqlab.io import save_figure_atomic, write_json_atomic
from seqlab.series.datasets import load_kdd_tsad_135
from seqlab.series.estimator import SeriesAutoencoder
from seqlab.series.metrics import event_confusion, event_prf, overlaps, point_auc
from seqlab.series.plots import plot_anomalies, plot_reconstruction
from seqlab.series.scoring import event_peaks

# A window of 32 points is ~1/6 of a heartbeat: short enough to rebuild the normal shape
# closely, so a burst of jitter stands out. One thread: the recurrent matmuls are tiny.
# The default one-sided "sigma" score: the two-sided Gaussian score with a 0.999 quantile of
# the 1,200 normal points (about their second highest score) also flagged ordinary beats a
# little taller than any in the prefix.
# Every setting is written out (the plain autoencoder: no AER regression, no daily profile, no
# log scale: a heart rate has no timestamps and no bursts), so the demo does not move when the
# package defaults (chosen on NAB) do.
DEMO_PARAMS: dict[str, Any] = dict(window=32, stride=1, hidden_size=64, latent_size=16, epochs=40,
                   batch_size=32, lr=3e-3, val_fraction=0.2, threshold="sigma", seed=0,
                   num_threads=1, regression=0.0, season=None, log_scale=None)


def run_series_demo(out_dir: str | os.PathLike[str], epochs: int | None = None,
                    progress: bool = False) -> dict[str, Any]:
    """Train on KDD-TSAD 135's normal prefix, score the rest, save plots and a JSON summary.

    progress: show the training's progress bar (epochs, time left).
    out_dir: where `series_kdd_tsad_135.png`, `series_kdd_tsad_135_window.png` and
    `series_kdd_tsad_135.json` (every figure and setting) go. Returns the headline figures.
    """
    out = Path(out_dir)
    data = load_kdd_tsad_135()
    params = dict(DEMO_PARAMS, epochs=epochs or DEMO_PARAMS["epochs"])
    t0 = time.perf_counter()
    normal = data.values[:data.train_end]
    est = SeriesAutoencoder(**params, verbose=progress).fit(normal)
    # The held-out tail of the prefix (240 points) spans barely more than one heartbeat; the
    # error model and threshold are refitted on the whole normal prefix (still no labels).
    est.fit_threshold(normal)
    fit_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    scores = est.score_samples(data.values)                                  # (N,)
    score_s = time.perf_counter() - t0
    test = slice(data.train_end, None)
    # Events only after the training prefix: that is the part under test.
    events = [(s + data.train_end, e + data.train_end)
              for s, e in est.detect_events(data.values[test], scores=scores[test])]
    tp, fp, fn = event_confusion([data.anomaly], events)
    precision, recall, f1 = event_prf(tp, fp, fn)
    roc_auc, pr_auc = point_auc(scores[test], data.labels[test])
    top = int(np.argmax(scores[test])) + data.train_end
    # UCR archive convention: a hit when the top-scoring point is within 100 points of the
    # labelled anomaly.
    a0, a1 = data.anomaly
    top_hit = bool(a0 - 100 <= top <= a1 + 100)

    fig = plot_anomalies(data.values, scores, est.threshold_, events, columns=["heart rate"],
                         labels=data.labels, train_end=data.train_end,
                         zoom=(a0 - 4 * est.window, a1 + 4 * est.window),
                         title=f"{data.name}: {len(events)} event(s), event F1 {f1:.2f}, "
                               f"top score at {top} (anomaly {a0}..{a1})")
    plot_path = out / "series_kdd_tsad_135.png"
    save_figure_atomic(fig, plot_path, dpi=110)
    # The window centred on the anomaly and its reconstruction (mean of overlapping windows).
    w0 = max(0, min((a0 + a1) // 2 - est.window // 2, len(data.values) - est.window))
    recon = est.reconstruct(data.values[w0 - est.window:w0 + 2 * est.window])
    win_fig = plot_reconstruction(data.values[w0:w0 + est.window],
                                  recon[est.window:2 * est.window], ["heart rate"], start=w0,
                                  title="the labelled anomaly's window and its reconstruction")
    win_path = out / "series_kdd_tsad_135_window.png"
    save_figure_atomic(win_fig, win_path, dpi=110)

    result = {
        "dataset": data.name,
        "train_points": data.train_end,
        "test_points": len(data.values) - data.train_end,
        "labelled_anomaly": [a0, a1],
        "params": params,
        "threshold": est.threshold_,
        "threshold_source": est.threshold_source_,
        # each event: the labelled anomaly (it overlaps the label) or a false alarm
        "events": [{"start": s, "end": e, "peak_score": p,
                    "kind": "anomaly" if overlaps((s, e), data.anomaly) else "false alarm"}
                   for (s, e), p in zip(events, event_peaks(events, scores), strict=True)],
        "event_tp": tp, "event_fp": fp, "event_fn": fn,
        "event_precision": precision, "event_recall": recall, "event_f1": f1,
        "point_roc_auc": roc_auc, "point_pr_auc": pr_auc,
        "top_score_index": top, "top_score_in_anomaly_pm100": top_hit,
        "fit_seconds": round(fit_s, 2), "score_seconds": round(score_s, 2),
        "plot": str(plot_path), "window_plot": str(win_path),
    }
    write_json_atomic(out / "series_kdd_tsad_135.json", result)
    headline = ("dataset", "labelled_anomaly", "events", "event_f1", "point_roc_auc",
                "point_pr_auc", "top_score_index", "threshold_source", "fit_seconds",
                "score_seconds", "plot", "window_plot")
    summary = {k: result[k] for k in headline}
    summary["events"] = result["events"]
    summary["train_points"] = data.train_end
    summary["series_points"] = len(data.values)
    summary["details"] = str(out / "series_kdd_tsad_135.json")
    return summary


def describe_series_demo(summary: dict[str, Any]) -> list[str]:
    """The demo's result as lines of text: what was trained, each event found (the labelled
    anomaly, or a false alarm), the scores, and what each picture shows."""
    a0, a1 = summary["labelled_anomaly"]
    events = summary["events"]
    found = [e for e in events if e["kind"] == "anomaly"]
    false = [e for e in events if e["kind"] != "anomaly"]
    lines = [f"{summary['dataset']}: a patient's heart rate, {summary['series_points']:,} "
             f"points; trained on the first {summary['train_points']:,} (normal), then scored "
             f"the rest without labels (fit {summary['fit_seconds']:.0f} s)",
             f"the labelled anomaly: points {a0:,}..{a1:,}: "
             + ("FOUND" if found else "missed"),
             f"{len(events)} event(s) found, {len(false)} of them false alarm(s):"]
    for e in events:
        what = "the labelled anomaly" if e["kind"] == "anomaly" else "false alarm"
        lines.append(f"  points {e['start']:,}..{e['end']:,}  peak score {e['peak_score']:.1f}"
                     f"  -> {what}")
    top = summary["top_score_index"]
    lines += [f"highest score at point {top:,} ("
              + ("inside" if a0 - 100 <= top <= a1 + 100 else "outside")
              + " the labelled anomaly +-100, the UCR archive's rule); point ROC-AUC "
              f"{summary['point_roc_auc']:.3f}, event F1 {summary['event_f1']:.2f}",
              f"{summary['plot']}: the series, its anomaly score and the threshold; the "
              "detected events and the labelled anomaly shaded, with a zoom on the anomaly",
              f"{summary['window_plot']}: the window at the labelled anomaly and the "
              "autoencoder's reconstruction of it (the gap is the error that raised the alarm)",
              f"{summary['details']}: every figure and setting"]
    return lines


if __name__ == "__main__":
    import sys

    print("\n".join(describe_series_demo(run_series_demo(sys.argv[1] if len(sys.argv) > 1
                                                          else "."))))
