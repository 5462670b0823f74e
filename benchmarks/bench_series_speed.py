"""Speed and memory of the seqlab series autoencoder against a plain torch.nn.LSTM autoencoder.

Both sides are the same model (encoder LSTM -> linear to the latent -> linear/tanh to the decoder's
initial state -> decoder LSTM fed the latent at every step -> linear readout, reversed target),
trained with Adam on MSE over the same sliding windows with the same batch size, and scored with
the same windows (every `score_stride` points) and the same per-point mean of |x - x'|.

- "seqlab" is the user-facing `SeriesAutoencoder` end to end: `fit` (includes its per-epoch
  validation pass, scaling, error model and threshold) and `score_samples(level="point")`
  (includes the Gaussian error model).
- "torch" is a minimal hand loop around `torch.nn.LSTM` written here: no validation, no scaling,
  no error model. The ratio therefore includes everything the estimator adds.

Rounds are interleaved (seqlab, torch, seqlab, torch, ...) and medians reported. Peak memory is
measured in a fresh subprocess per side (ru_maxrss is a high-water mark for the whole process),
scoring a 1M-point series after a short fit; the increase over the RSS right before scoring is
what scoring costs.

    .venv/bin/python benchmarks/bench_series_speed.py
    .venv/bin/python benchmarks/bench_series_speed.py --rounds 5 --memory-points 1000000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from torch import nn

from _common import machine_info, write_results
from seqlab.series.estimator import PLAIN_PARAMS, SeriesAutoencoder


def make_series(n: int, seed: int = 0) -> np.ndarray:
    """(n,) a noisy daily-like sine with a slow trend; float64."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return np.sin(2 * np.pi * t / 288) + 0.3 * np.sin(2 * np.pi * t / 37) + 1e-4 * t \
        + 0.1 * rng.standard_normal(n)


class PlainAutoencoder(nn.Module):
    """The same architecture as seqlab's LSTMAutoencoder, on torch.nn.LSTM."""

    def __init__(self, c: int, h: int, z: int):
        super().__init__()
        self.encoder = nn.LSTM(c, h, batch_first=True)
        self.to_latent = nn.Linear(h, z)
        self.latent_to_state = nn.Linear(z, h)
        self.decoder = nn.LSTM(z, h, batch_first=True)
        self.readout = nn.Linear(h, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, C) -> reconstruction (B, T, C)."""
        _, (h_n, _) = self.encoder(x)                          # (1, B, H)
        z = self.to_latent(h_n[-1])                            # (B, Z)
        h0 = torch.tanh(self.latent_to_state(z)).unsqueeze(0)  # (1, B, H)
        out, _ = self.decoder(z.unsqueeze(1).expand(-1, x.shape[1], -1), (h0, torch.zeros_like(h0)))
        return self.readout(out).flip(1)                       # decoder order is reversed


def torch_fit(x: np.ndarray, window: int, args: argparse.Namespace) -> tuple[PlainAutoencoder, int]:
    """Train the plain autoencoder on all stride-1 windows of x (N,). Returns (model, windows)."""
    torch.manual_seed(0)
    model = PlainAutoencoder(1, args.hidden, args.latent)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    view = np.lib.stride_tricks.sliding_window_view(x.astype(np.float32), window)  # (W, T)
    rng = np.random.default_rng(0)
    seen = 0
    for _ in range(args.epochs):
        order = rng.permutation(len(view))
        for i in range(0, len(order), args.batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(view[order[i:i + args.batch_size]]))
            xb = xb.unsqueeze(-1)                              # (B, T, 1)
            loss = nn.functional.mse_loss(model(xb), xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            seen += len(xb)
    return model.eval(), seen


def torch_score(model: PlainAutoencoder, x: np.ndarray, window: int, stride: int,
                batch: int = 512) -> np.ndarray:
    """Per-point mean |x - x'| over the windows every `stride` points (last flush). (N,)."""
    n = len(x)
    starts = np.arange(0, n - window + 1, stride)
    if starts[-1] != n - window:
        starts = np.append(starts, n - window)
    view = np.lib.stride_tricks.sliding_window_view(x.astype(np.float32), window)
    total = np.zeros(n)
    count = np.zeros(n)
    with torch.no_grad():
        for i in range(0, len(starts), batch):
            s = starts[i:i + batch]
            xb = torch.from_numpy(np.ascontiguousarray(view[s])).unsqueeze(-1)
            err = (model(xb) - xb).abs().squeeze(-1).numpy()   # (B, T)
            for t in range(window):
                total[s + t] += err[:, t]
                count[s + t] += 1
    return total / count


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def memory_child(side: str, n: int, args: argparse.Namespace) -> None:
    """Fit briefly on 5k points, then score an n-point series; print peak RSS numbers as JSON."""
    torch.set_num_threads(args.threads)
    x = make_series(n)
    train = x[:5000]
    if side == "seqlab":
        est = SeriesAutoencoder(window=args.window, hidden_size=args.hidden,
                                latent_size=args.latent, epochs=1, batch_size=args.batch_size,
                                score_stride=args.score_stride, **PLAIN_PARAMS).fit(train)
        before = rss_mb()
        t0 = time.perf_counter()
        scores = est.score_samples(x, level="point")
    else:
        model, _ = torch_fit(train, args.window, argparse.Namespace(**{**vars(args), "epochs": 1}))
        before = rss_mb()
        t0 = time.perf_counter()
        scores = torch_score(model, x, args.window, args.score_stride)
    secs = time.perf_counter() - t0
    assert scores.shape == (n,) and np.isfinite(scores).all()
    print(json.dumps({"side": side, "points": n, "peak_rss_before_scoring_mb": before,
                      "peak_rss_mb": rss_mb(), "scoring_s": secs,
                      "input_mb": x.nbytes / 2**20}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train-points", type=int, default=4000)
    p.add_argument("--score-points", type=int, default=100_000)
    p.add_argument("--memory-points", type=int, default=1_000_000)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--score-stride", type=int, default=4,
                   help="the estimator's default is window // 16 = 4 for window 64")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--latent", type=int, default=32)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--child", choices=("seqlab", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--out", default="benchmarks/results/series_speed.json")
    args = p.parse_args()
    if args.child:
        memory_child(args.child, args.memory_points, args)
        return
    torch.set_num_threads(args.threads)

    x_train = make_series(args.train_points, seed=1)
    x_score = make_series(args.score_points, seed=2)
    n_windows = args.train_points - args.window + 1
    times: dict[str, dict[str, list[float]]] = {k: {"train": [], "score": []}
                                                for k in ("seqlab", "torch")}
    windows_trained: dict[str, int] = {}
    for r in range(-1, args.rounds):  # round -1 warms up both sides (oneDNN primitives), dropped
        # seqlab: val_fraction=0 so both sides train on exactly the same windows each epoch.
        est = SeriesAutoencoder(window=args.window, hidden_size=args.hidden,
                                latent_size=args.latent, epochs=args.epochs,
                                batch_size=args.batch_size, val_fraction=0.0,
                                score_stride=args.score_stride, seed=max(r, 0),
                                **PLAIN_PARAMS)   # the same network as the torch side
        t0 = time.perf_counter()
        est.fit(x_train)
        times["seqlab"]["train"].append(time.perf_counter() - t0)
        windows_trained["seqlab"] = n_windows * args.epochs
        t0 = time.perf_counter()
        est.score_samples(x_score, level="point")
        times["seqlab"]["score"].append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        model, seen = torch_fit(x_train, args.window, args)
        times["torch"]["train"].append(time.perf_counter() - t0)
        windows_trained["torch"] = seen
        t0 = time.perf_counter()
        torch_score(model, x_score, args.window, args.score_stride)
        times["torch"]["score"].append(time.perf_counter() - t0)
        t = {k: {m: v[-1] for m, v in d.items()} for k, d in times.items()}
        if r < 0:
            for d in times.values():
                for v in d.values():
                    v.clear()
            continue
        print(f"  round {r}: train seqlab {t['seqlab']['train']:.2f}s torch "
              f"{t['torch']['train']:.2f}s | score seqlab {t['seqlab']['score']:.2f}s"
              f" torch {t['torch']['score']:.2f}s", flush=True)

    res = {}
    for side in ("seqlab", "torch"):
        tr, sc = np.median(times[side]["train"]), np.median(times[side]["score"])
        res[side] = {"train_windows_per_s": windows_trained[side] / tr,
                     "score_points_per_s": args.score_points / sc,
                     "train_s_rounds": times[side]["train"], "score_s_rounds": times[side]["score"]}

    memory = {}
    for side in ("seqlab", "torch"):
        cmd = [sys.executable, __file__, "--child", side, *sys.argv[1:]]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        memory[side] = json.loads(out.strip().splitlines()[-1])
        m = memory[side]
        m["scoring_extra_rss_mb"] = m["peak_rss_mb"] - m["peak_rss_before_scoring_mb"]

    print(f"\n{'':<28}{'seqlab':>12}{'torch.nn':>12}{'ratio':>8}")
    rows = [("train windows/s", "train_windows_per_s", res),
            ("score points/s", "score_points_per_s", res)]
    for label, key, src in rows:
        a, b = src["seqlab"][key], src["torch"][key]
        print(f"{label:<28}{a:>12,.0f}{b:>12,.0f}{a / b:>8.2f}")
    for label, key in (("peak RSS MB (1M score)", "peak_rss_mb"),
                       ("  of which scoring MB", "scoring_extra_rss_mb"),
                       ("1M-point scoring s", "scoring_s")):
        a, b = memory["seqlab"][key], memory["torch"][key]
        ratio = f"{a / b:>8.2f}" if b > 0 else f"{'-':>8}"
        print(f"{label:<28}{a:>12,.1f}{b:>12,.1f}{ratio}")

    ratios = {"train": res["seqlab"]["train_windows_per_s"] / res["torch"]["train_windows_per_s"],
              "score": res["seqlab"]["score_points_per_s"] / res["torch"]["score_points_per_s"]}
    write_results(args.out, {
        "benchmark": "series_speed", "machine": machine_info(),
        "note": "2 shared vCPUs, other engineers' jobs running; interleaved rounds, medians. "
                "seqlab = SeriesAutoencoder end to end (scaling, error model); torch = minimal "
                "hand loop over torch.nn.LSTM with the same architecture and windows.",
        "settings": {k: v for k, v in vars(args).items() if k not in ("child", "out")},
        "speed": res, "memory_1m": memory, "ratios": ratios})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
