"""NAB anomaly detection with the seqlab LSTM autoencoder, scored the way Orion does.

Unsupervised protocol, per series: the autoencoder is trained, and its threshold set, on the
series' first 15% only (NAB's probationary period; the estimator holds out `val_fraction` of
those windows as normal validation data for its error model and threshold). The whole series is
then scored; flagged points are merged into events by the estimator (`detect_events`).

Metrics per category:
- event level, Orion-style: a labelled window overlapping any detected event is one TP, one
  overlapping none is one FN, an event overlapping no window is one FP; counts summed over the
  category's series, then precision / recall / F1;
- point level: ROC-AUC and PR-AUC (average precision) of the per-point scores against "inside a
  labelled window", mean over the series that have windows;
- seconds per series (fit + score + events).

Published F1 (Orion 0.7.1 leaderboard, quoted in the issue): LSTM autoencoder artificial 0.545,
AWS 0.750; AER artificial 0.750, AWS 0.702. Orion trains on each whole series; here training
sees only the first 15%, which is stricter. `--protocol whole` runs Orion's protocol for a
like-for-like comparison (and the common use: fit on a history, then score that same history):
train on the whole series and threshold its own smoothed scores at mean + 4 std (Orion's fixed
threshold, here over the whole series rather than Orion's sliding thirds); runs are named
whole:CONFIG... . Variants that need a held-apart first 15% (sigma_max, *_probation) are refused.

Nothing is tuned on the labels. `--config` picks one of the named settings below, fixed before
any run; every configuration that was run is kept in the JSON under its name and reported.

`--variants` scores the same trained model (one training per series) with several scoring /
threshold / event rules (VARIANTS below, an ablation ladder from the original EncDec-AD rule
to Hundman-style smoothed one-sided scores with a dynamic threshold and pruning). Each variant's
threshold still comes from the first 15% only. The variants are compared on the benchmark's
labels, so the best of them is an optimistic figure: the JSON says so.

    .venv/bin/python benchmarks/bench_series_nab.py                       # default config, all 3
    .venv/bin/python benchmarks/bench_series_nab.py --config day --categories realKnownCause
    .venv/bin/python benchmarks/bench_series_nab.py --series nyc_taxi,art_daily_jumpsup --epochs 5
    .venv/bin/python benchmarks/bench_series_nab.py --config day --variants all   # ablation

`--regression 0.5` trains the AER variant of the autoencoder (Wong et al. 2022: it also predicts
the points before and after each window; see `SeriesAutoencoder`); runs are then named
CONFIG+aer+VARIANT. The recommended rule (issue #4; see 'aer_note' in the JSON):
`--regression 0.5 --variants sigma_max`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from _common import machine_info, write_results
from seqlab.errors import UserError
from seqlab.series.datasets import NAB_CATEGORIES, NabSeries, load_nab
from seqlab.series.estimator import SeriesAutoencoder
from seqlab.series.io import SeriesData
from seqlab.series.metrics import event_confusion, event_prf, point_auc
from seqlab.series.season import step_minutes

PUBLISHED_F1 = {
    "artificialWithAnomaly": {"lstm_ae_orion_0.7.1": 0.545, "aer_orion": 0.750},
    "realAWSCloudwatch": {"lstm_ae_orion_0.7.1": 0.750, "aer_orion": 0.702},
    "realKnownCause": {},
}

# Named settings, fixed a priori. "native": the estimator's defaults (64-point windows at the
# data's own rate: 5h20 of 5-minute data). "day": block-average the series so one day is at most
# 96 points (5-min -> 15-min; 30-min and hourly data untouched) and make the window one day, so
# the autoencoder sees whole daily cycles.
CONFIGS = {
    "native": {"window_days": None, "window": 64, "max_points_per_day": None},
    "day": {"window_days": 1.0, "window": None, "max_points_per_day": 96},
    # "season": native windows on the series minus its daily profile (the mean value at each
    # time of day over the first 15%), where that profile predicts the training data's second
    # day from its first (R^2 >= 0.5); other series are left as they are: the estimator's
    # season="auto" (seqlab.series.season). A 64-point window cannot tell a missing daytime
    # plateau from a night; the residual can.
    "season": {"window_days": None, "window": 64, "max_points_per_day": None, "season": "auto"},
}
PROBATION = 0.15

# Scoring variants on one trained model (estimator parameters; "refit": threshold (and error
# model) refitted on ALL of the first 15% rather than kept from `fit`'s held-out tail).
VARIANTS = {
    # the original rule: two-sided Mahalanobis score, 0.995 quantile of the held-out tail
    "gaussian": {"threshold": "gaussian", "smoothing": 0, "prune": 0.0, "refit": False},
    # same score, threshold from all normal points (in-sample training part + tail)
    "gaussian_all": {"threshold": "gaussian", "smoothing": 0, "prune": 0.0, "refit": True},
    # one-sided relative error, mean + 4 std of all normal points; no smoothing, no pruning
    "sigma_raw": {"threshold": "sigma", "smoothing": 0, "prune": 0.0, "refit": True},
    # + EWMA smoothing (span window // 2)
    "sigma_smooth": {"threshold": "sigma", "smoothing": None, "prune": 0.0, "refit": True},
    # + Hundman pruning (p = 0.13): the estimator's "sigma" defaults
    "sigma": {"threshold": "sigma", "smoothing": None, "prune": None, "refit": True},
    # Hundman's dynamic threshold on the smoothed normal scores, without / with pruning
    "dynamic_noprune": {"threshold": "dynamic", "smoothing": None, "prune": 0.0, "refit": True},
    "dynamic": {"threshold": "dynamic", "smoothing": None, "prune": None, "refit": True},
    # "sigma", events detected (merged, pruned) on the scores after the probationary period
    # only: the first 15% is the training data, declared normal; NAB's own scorer ignores
    # detections there, and the first points' scores are an edge artefact (fewer covering
    # windows, EWMA start; AER masks them too). Measured: no better (pruning's reference, the
    # highest unflagged score, drops without the first 15%, so more events survive)
    "sigma_probation": {"threshold": "sigma", "smoothing": None, "prune": None, "refit": True,
                        "skip_probation": True},
    # threshold max(mean + 4 std, highest normal score): a level the normal data reaches is
    # not anomalous (recurring patterns, e.g. a daily spike, no longer flag every recurrence)
    "sigma_max": {"threshold": "sigma_max", "smoothing": None, "prune": None, "refit": True},
    "sigma_max_probation": {"threshold": "sigma_max", "smoothing": None, "prune": None,
                            "refit": True, "skip_probation": True},
}


def block_mean(x: np.ndarray, k: int) -> np.ndarray:
    """(N,) -> (ceil(N / k),) means of consecutive blocks of k points (last block may be short)."""
    if k == 1:
        return x
    n = len(x)
    pad = (-n) % k
    sums = np.concatenate([x, np.zeros(pad)]).reshape(-1, k).sum(axis=1)
    counts = np.full(len(sums), k, dtype=np.float64)
    counts[-1] = k - pad
    return sums / counts


def run_series(s: NabSeries, cfg: dict, args: argparse.Namespace,
               variants: list[str]) -> dict[str, dict]:
    """Train once on the first 15%, then score with each variant. Returns {variant: row}."""
    n = len(s)
    per_day = 1440.0 / step_minutes(s.timestamps)   # NAB series have gaps and DST repeats
    k = 1
    if cfg["max_points_per_day"]:
        k = max(1, int(np.ceil(per_day / cfg["max_points_per_day"])))
    x = block_mean(s.values, k)                       # (n / k,)
    window = cfg["window"] or max(8, int(round(cfg["window_days"] * per_day / k)))
    # "whole" (Orion's own protocol): train and threshold on the whole series, as a user who
    # fits and scores the same history does.
    n_train = len(x) if args.protocol == "whole" else int(PROBATION * len(x))
    if n_train < window + 16:                          # keep a few dozen training windows
        window = max(8, n_train // 4)
    # With timestamps (block starts when downsampled), so that season="auto" can find the
    # time of day of every point.
    data = SeriesData(values=x[:, None], columns=["value"], timestamps=s.timestamps[::k],
                      source=s.name)
    train = dataclasses.replace(data, values=data.values[:n_train],
                                timestamps=data.timestamps[:n_train])
    first = VARIANTS[variants[0]]
    est = SeriesAutoencoder(window=window, hidden_size=args.hidden, latent_size=args.latent,
                            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                            val_fraction=args.val_fraction, threshold=first["threshold"],
                            smoothing=first["smoothing"], prune=first["prune"],
                            threshold_quantile=args.quantile, seed=args.seed,
                            regression=args.regression, season=cfg.get("season"),
                            log_scale=args.log_scale)
    base = {"series": s.name, "n": n, "downsample": k, "window": window, "train_points": n_train}
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        est.fit(train)                                 # first 15% only: model and threshold
    except UserError as err:
        # E.g. a constant probationary period cannot be scaled: nothing is detected, so every
        # labelled window counts as missed (and the series has no point AUC).
        dt_s = time.perf_counter() - t0
        return {v: dict(base, events=0, tp=0, fp=0, fn=len(s.window_indices), roc_auc=None,
                        pr_auc=None, fit_s=0.0, total_s=dt_s, flagged_fraction=None,
                        skipped=str(err)) for v in variants}
    t_fit = time.perf_counter() - t0
    if est.season_ is not None:
        base.update(season_r2=est.season_.r2[0], season_active=est.season_.active[0])
    if est.log_scale_ is not None:
        base.update(log_transform=bool(est.log_scale_.log[0]))
    # Per-point errors once, on the whole series and on the normal first 15%; each variant's
    # scores and threshold are then what `fit_threshold(x[:n_train])` + `score_samples(x)`
    # give, without re-running the network (the public parts of that code path).
    t0 = time.perf_counter()
    x_scaled = est.scale(data)                          # (n / k, 1), minus any daily profile
    err_all = est.point_errors(x_scaled)                # (n / k, 1)
    err_normal = est.point_errors(x_scaled[:n_train]) if any(
        VARIANTS[v]["refit"] for v in variants) else None
    t_err = time.perf_counter() - t0
    # --ensemble N: N - 1 more models (next seeds, same data and scaling); each point's errors
    # are averaged over the N models before scoring, a plain variance reduction.
    for extra in range(1, args.ensemble):
        t0 = time.perf_counter()
        other = SeriesAutoencoder(**{**est.get_params(), "seed": args.seed + extra}).fit(train)
        xs = other.scale(data)
        err_all = err_all + (other.point_errors(xs) - err_all) / (extra + 1)
        if err_normal is not None:
            err_normal = err_normal + (other.point_errors(xs[:n_train]) - err_normal) / (extra + 1)
        t_fit += time.perf_counter() - t0
    out = {}
    for v in variants:
        spec = VARIANTS[v]
        t0 = time.perf_counter()
        est.set_params(threshold=spec["threshold"], smoothing=spec["smoothing"],
                       prune=spec["prune"])
        if spec["refit"]:
            est.fit_error_model(err_normal)
        elif v != variants[0]:
            raise ValueError(f"variant {v!r} keeps fit's threshold: it must come first")
        scores = est.score_errors(err_all)              # (n / k,)
        if spec.get("skip_probation"):  # detect on the scores after the first 15% only
            events_k = [(a + n_train, b + n_train)
                        for a, b in est.detect_events(x, scores=scores[n_train:])]
        else:
            events_k = est.detect_events(x, scores=scores)  # inclusive (start, end), downsampled
        t_v = time.perf_counter() - t0
        # Back to the original resolution: block j covers points [j*k, (j+1)*k - 1].
        scores_full = np.repeat(scores, k)[:n]
        events = [(a * k, min(n - 1, (b + 1) * k - 1)) for a, b in events_k]
        tp, fp, fn = event_confusion(s.window_indices, events)
        roc, pr = point_auc(scores_full, s.label_points) if s.window_indices else (None, None)
        # cpu_s: this process' CPU seconds (fit + all variants so far), robust to a shared CPU
        out[v] = dict(base, events=len(events), tp=tp, fp=fp, fn=fn, roc_auc=roc, pr_auc=pr,
                      cpu_s=time.process_time() - c0,
                      event_intervals=events, label_windows=list(s.window_indices),
                      fit_s=t_fit, total_s=t_fit + t_err + t_v, threshold=est.threshold_,
                      flagged_fraction=float(np.mean(scores > est.threshold_)))
    return out


def summarise(rows: list[dict]) -> dict:
    tp, fp, fn = (sum(r[k] for r in rows) for k in ("tp", "fp", "fn"))
    p, r, f1 = event_prf(tp, fp, fn)
    rocs = [x["roc_auc"] for x in rows if x["roc_auc"] is not None and np.isfinite(x["roc_auc"])]
    prs = [x["pr_auc"] for x in rows if x["pr_auc"] is not None and np.isfinite(x["pr_auc"])]
    return {"series": len(rows), "not_fitted": sum("skipped" in x for x in rows),
            "tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r,
            "f1": f1, "roc_auc_mean": float(np.mean(rocs)) if rocs else None,
            "pr_auc_mean": float(np.mean(prs)) if prs else None,
            "seconds_per_series": float(np.mean([x["total_s"] for x in rows])),
            "cpu_seconds_per_series": float(np.mean([x.get("cpu_s", x["total_s"]) for x in rows]))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", choices=sorted(CONFIGS), default="native")
    p.add_argument("--categories", default=",".join(NAB_CATEGORIES))
    p.add_argument("--series", default=None, help="comma-separated subset (file stems)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--latent", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--val-fraction", type=float, default=0.2)
    # Default: the original rule ("before") and the recommended one ("sigma").
    p.add_argument("--variants", default="gaussian,sigma",
                   help=f"comma-separated scoring variants, or 'all': {', '.join(VARIANTS)}")
    p.add_argument("--quantile", type=float, default=0.995)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ensemble", type=int, default=1,
                   help="average each point's errors over N models (seeds seed..seed+N-1); "
                        "runs are named CONFIG[+aer]+ensN+VARIANT when N > 1")
    p.add_argument("--regression", type=float, default=0.0,
                   help="AER regression ratio (0: plain autoencoder); runs are named "
                        "CONFIG+aer+VARIANT when > 0")
    p.add_argument("--log-scale", choices=["auto", "all"], default=None,
                   help="SeriesAutoencoder(log_scale=...): log-like transform of heavy-tailed "
                        "columns; runs are named CONFIG+log... ('auto') / +logall ('all')")
    p.add_argument("--protocol", choices=["probation", "whole"], default="probation",
                   help="probation: train and threshold on each series' first 15%% (the "
                        "issue's protocol); whole: on the whole series, as Orion's published "
                        "figures do (runs are named whole:CONFIG...)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="benchmarks/results/series_nab.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = CONFIGS[args.config]
    variants = list(VARIANTS) if args.variants == "all" else args.variants.split(",")
    for v in variants:
        if v not in VARIANTS:
            p.error(f"--variants: unknown {v!r}; known: {', '.join(VARIANTS)}")
    # A variant that keeps fit's threshold must be the one the model was fitted with.
    variants.sort(key=lambda v: VARIANTS[v]["refit"])
    if args.ensemble > 1 and not all(VARIANTS[v]["refit"] for v in variants):
        p.error("--ensemble: only variants that refit the threshold on the averaged errors")
    if args.protocol == "whole":
        bad = [v for v in variants
               if VARIANTS[v]["threshold"] == "sigma_max" or VARIANTS[v].get("skip_probation")]
        if bad:  # sigma_max on the scored data itself flags nothing; there is no probation
            p.error(f"--protocol whole: variants {', '.join(bad)} need a held-apart first 15%")
    categories = args.categories.split(",")
    subset = args.series.split(",") if args.series else None
    # A subset may name series of only some categories: keep the categories that have one.
    series = []
    for cat in categories:
        names = None
        if subset is not None:
            have = {s.name.split("/")[1] for s in load_nab(args.data_dir, (cat,))}
            names = [x for x in subset if x.split("/")[-1] in have]
            if not names:
                continue
        series += load_nab(args.data_dir, (cat,), names)

    rows: dict[str, dict[str, list[dict]]] = {v: {} for v in variants}
    for s in series:
        res = run_series(s, cfg, args, variants)
        for v, r in res.items():
            rows[v].setdefault(s.category, []).append(r)
        r = res[variants[0]]
        if "skipped" in r:
            print(f"  {s.name:<58} not fitted ({r['skipped']}): all windows missed")
            continue
        per_v = "  ".join(f"{v}:{x['tp']}/{x['fp']}/{x['fn']}" for v, x in res.items())
        print(f"  {s.name:<50} k={r['downsample']} w={r['window']:<4} {r['total_s']:.1f}s  "
              f"tp/fp/fn {per_v}", flush=True)

    out_path = Path(args.out)
    previous = json.loads(out_path.read_text()) if out_path.is_file() else {}
    runs = previous.get("runs", {})
    suffix = "" if subset is None and len(categories) == 3 else "_subset"
    prefix = "whole:" if args.protocol == "whole" else ""
    method = ("+aer" if args.regression else "") + \
        {None: "", "auto": "+log", "all": "+logall"}[args.log_scale] + \
        (f"+seed{args.seed}" if args.seed else "") + \
        (f"+ens{args.ensemble}" if args.ensemble > 1 else "")
    print(f"\nconfig {args.config!r}, epochs {args.epochs}, train+threshold on "
          f"{'the whole series' if args.protocol == 'whole' else 'the first 15%'}")
    print(f"{'variant':<16}{'category':<23}{'n':>3}{'P':>7}{'R':>7}{'F1':>7}{'ROC':>7}{'PR':>7}"
          f"{'s/ser':>7}{'LSTM-AE':>9}{'AER':>7}{'F1/AER':>8}")
    for v in variants:
        summary = {cat: summarise(rs) for cat, rs in rows[v].items()}
        for cat, m in summary.items():
            pub = PUBLISHED_F1.get(cat, {})
            aer, lstm = pub.get("aer_orion"), pub.get("lstm_ae_orion_0.7.1")
            ratio = f"{m['f1'] / aer:.2f}" if aer else "-"
            print(f"{v:<16}{cat:<23}{m['series']:>3}{m['precision']:>7.3f}{m['recall']:>7.3f}"
                  f"{m['f1']:>7.3f}{m['roc_auc_mean'] or float('nan'):>7.3f}"
                  f"{m['pr_auc_mean'] or float('nan'):>7.3f}{m['seconds_per_series']:>7.1f}"
                  f"{lstm if lstm else '-':>9}{aer if aer else '-':>7}{ratio:>8}")
        key = f"{prefix}{args.config}{method}+{v}{suffix}"
        runs[key] = {"machine": machine_info(), "config": cfg, "variant": VARIANTS[v],
                     "settings": {k: v for k, v in vars(args).items() if k != "out"},
                     "summary": summary, "per_series": rows[v]}
    write_results(out_path, {
        "benchmark": "series_nab",
        "protocol": "train and threshold on each series' first 15% (NAB probationary period); "
                    "runs named whole:... train and threshold on the whole series (Orion's "
                    "protocol, --protocol whole); Orion-style event counts summed per "
                    "category; point AUCs mean over series",
        "published_f1": PUBLISHED_F1,
        "note": "CPU shared with other engineers' jobs during the runs; times are indicative. "
                "Configs and scoring variants were fixed a priori from the literature (no "
                "per-series tuning, no parameter searched on labels); all runs are kept here. "
                "Runs named CONFIG+VARIANT score one trained model with several variants; the "
                "variants were compared on this benchmark's labels, so the best variant's F1 is "
                "an optimistic (selected-on-test) figure. See 'variants_note'.",
        **{k: v for k, v in previous.items() if k.endswith("_note")},   # the runs' notes
        "runs": runs})
    print(f"wrote {out_path} (runs "
          f"{', '.join(prefix + args.config + method + '+' + v + suffix for v in variants)})")


if __name__ == "__main__":
    main()
