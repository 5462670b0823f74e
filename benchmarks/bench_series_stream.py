"""Streaming cost of `seqlab.series.online.OnlineScorer`: time per point and memory over a long
stream, at the estimator's default sizes (window 64, hidden 64, latent 32, score stride 4), on
one core (torch.set_num_threads(1)).

- time per point, fed one point per `update` (windows run as each is ready, and batched 8 at a
  time: `batch_windows=8`), and 256 points per `update`, against the batch
  `score_samples` + `detect_events` on the same points (the competitor: same model, all
  windows at once);
- memory: resident set size (/proc/self/statm) after 10%, 50% and 100% of a `--points` stream
  fed 256 points at a time, and the process' peak (ru_maxrss): flat means the end is no higher
  than the 10% mark beyond noise (the scorer keeps ring buffers only).

The model is fitted for one epoch on a sine with noise: the cost does not depend on training.
`--regression 0.5` measures an AER regression model instead (the stride-1 regression windows
run as well: one window of model work per point; `results/series_stream_regression.json`).

    .venv/bin/python benchmarks/bench_series_stream.py                  # 1M-point stream
    .venv/bin/python benchmarks/bench_series_stream.py --points 200000 --timing-points 20000
    .venv/bin/python benchmarks/bench_series_stream.py --regression 0.5 --points 20000
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import numpy as np
import torch

from _common import RESULTS, machine_info, write_results
from seqlab.series.estimator import PLAIN_PARAMS, SeriesAutoencoder
from seqlab.series.online import OnlineScorer


def stream(n: int, seed: int = 0) -> np.ndarray:
    """A daily-like sine with noise and a few bumps, generated in pieces of any length."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = np.sin(2 * np.pi * t / 288) + 0.1 * rng.standard_normal(n)
    for s in range(5000, n, 50_000):
        x[s:s + 20] += 3.0
    return x


def rss_mb() -> float:
    """Current resident set size in MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def time_online(est: SeriesAutoencoder, x: np.ndarray, chunk: int, batch_windows: int) -> dict:
    scorer = OnlineScorer(est, batch_windows=batch_windows)
    t0, c0 = time.perf_counter(), time.process_time()
    n_events = 0
    for i in range(0, len(x), chunk):
        n_events += len(scorer.update(x[i:i + chunk]))
    n_events += len(scorer.close())
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"chunk": chunk, "batch_windows": batch_windows, "points": len(x),
            "ms_per_point": 1e3 * wall / len(x), "cpu_ms_per_point": 1e3 * cpu / len(x),
            "events": n_events}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--points", type=int, default=1_000_000)
    p.add_argument("--timing-points", type=int, default=20_000)
    p.add_argument("--regression", type=float, default=0.0,
                   help="the model's AER regression weight (0: a plain autoencoder)")
    p.add_argument("--out", default=None, help="[default: results/series_stream.json, "
                   "results/series_stream_regression.json with --regression]")
    args = p.parse_args()
    out = args.out or str(RESULTS / ("series_stream_regression.json" if args.regression
                                     else "series_stream.json"))
    torch.set_num_threads(1)
    x_fit = stream(4000, seed=1)
    est = SeriesAutoencoder(epochs=1, prune=0.0, num_threads=1,
                            **{**PLAIN_PARAMS, "regression": args.regression}).fit(x_fit)
    x = stream(args.timing_points)
    t0, c0 = time.perf_counter(), time.process_time()
    scores = est.score_samples(x)
    est.detect_events(x, scores=scores)
    batch = {"points": len(x), "ms_per_point": 1e3 * (time.perf_counter() - t0) / len(x),
             "cpu_ms_per_point": 1e3 * (time.process_time() - c0) / len(x)}
    runs = [time_online(est, x, 1, 1), time_online(est, x, 1, 8), time_online(est, x, 256, 1)]
    for r in runs:
        r["cpu_ratio_to_batch"] = r["cpu_ms_per_point"] / batch["cpu_ms_per_point"]
        print(f"online chunk {r['chunk']:>4} batch_windows {r['batch_windows']}: "
              f"{r['cpu_ms_per_point']:.3f} CPU ms/point ({r['ms_per_point']:.3f} wall), "
              f"{r['cpu_ratio_to_batch']:.1f}x batch", flush=True)
    print(f"batch score_samples: {batch['cpu_ms_per_point']:.3f} CPU ms/point")
    # Memory over a long stream, generated and fed in pieces (the input is never held whole).
    scorer = OnlineScorer(est)
    marks = {}
    chunk, piece = 256, 100_000
    fed = 0
    c0 = time.process_time()
    base = rss_mb()
    while fed < args.points:
        n = min(piece, args.points - fed)
        xs = stream(fed + n)[fed:]                  # the same stream, piece by piece
        for i in range(0, n, chunk):
            scorer.update(xs[i:i + chunk])
        fed += n
        for frac in (0.1, 0.5, 1.0):
            if fed >= frac * args.points and f"rss_mb_at_{frac:g}" not in marks:
                marks[f"rss_mb_at_{frac:g}"] = rss_mb()
        print(f"  {fed} points, rss {rss_mb():.1f} MiB", flush=True)
    scorer.close()
    memory = {"points": args.points, "chunk": chunk, "rss_mb_before": base, **marks,
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "cpu_ms_per_point": 1e3 * (time.process_time() - c0) / args.points,
              "growth_mb_10_to_100": marks["rss_mb_at_1"] - marks["rss_mb_at_0.1"]}
    print(f"memory: {memory}")
    write_results(Path(out), {
        "benchmark": "series_stream", "machine": machine_info(),
        "model": {"window": est.window, "hidden_size": est.hidden_size,
                  "latent_size": est.latent_size, "score_stride": est.effective_score_stride,
                  "regression": est.regression},
        "batch": batch, "online": runs, "memory": memory,
        "note": "CPU ms per point (process time, one torch thread) is the figure to compare; "
                "wall time depends on the machine's load. The stream generator's own cost is "
                "inside the memory run's CPU time."})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
