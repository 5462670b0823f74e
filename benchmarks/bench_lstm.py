"""seqlab.nn.LSTM vs torch.nn.LSTM, same weights, same process, interleaved rounds.

Contenders per shape: torch.nn.LSTM, seqlab LSTM (fast path: the fused kernel), seqlab LSTM
with gate recording (the explicit gate loop, return_gates=True), and the same plus reading all
six gate tensors (which assembles them in the (L, D, B, T, H) layout). Each is timed for
forward (inference, no_grad) and forward+backward (sum of outputs). Rounds are interleaved so
load from other processes hits all contenders alike; we report medians and ratios:

    throughput ratio = median time of torch.nn.LSTM / median time of the contender
    (goal: >= 0.95 for the fast path; gate recording within 3x the time, i.e. ratio >= 0.33)

The ratio of the fastest rounds is printed too: on a shared machine it is the steadier one.

Usage: python benchmarks/bench_lstm.py [--rounds 25] [--threads N]
                                      [--out benchmarks/results/lstm_cpu.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

from _common import machine_info, write_results
from seqlab.nn import LSTM

SHAPES = [  # (B, T, I, H)
    (64, 100, 1, 64),
    (64, 30, 256, 512),
]


def make_runners(B: int, T: int, I: int, H: int, seed: int = 0
                 ) -> dict[str, Callable[[bool], None]]:
    torch.manual_seed(seed)
    ref = torch.nn.LSTM(I, H)
    ours = LSTM(I, H)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, I)

    def run(module: torch.nn.Module, gates: bool, read_fields: bool = False
            ) -> Callable[[bool], None]:
        def step(backward: bool) -> None:
            module.zero_grad(set_to_none=True)
            with torch.set_grad_enabled(backward):
                res = module(x, return_gates=True) if gates else module(x)
                if read_fields:  # assemble all six (L, D, B, T, H) tensors
                    res[2].as_dict()
                if backward:
                    res[0].sum().backward()
        return step

    return {"torch.nn.LSTM": run(ref, False), "seqlab fast": run(ours, False),
            "seqlab gates": run(ours, True), "seqlab gates+read": run(ours, True, True)}


def bench(rounds: int) -> list[dict]:
    rows = []
    for B, T, I, H in SHAPES:
        runners = make_runners(B, T, I, H)
        for backward in (False, True):
            times: dict[str, list[float]] = {k: [] for k in runners}
            for fn in runners.values():  # warm-up
                fn(backward)
            for _ in range(rounds):
                for name, fn in runners.items():
                    t0 = time.perf_counter()
                    fn(backward)
                    times[name].append(time.perf_counter() - t0)
            med = {k: statistics.median(v) for k, v in times.items()}
            best = {k: min(v) for k, v in times.items()}
            base, base_best = med["torch.nn.LSTM"], best["torch.nn.LSTM"]
            for name, t in med.items():
                rows.append({"B": B, "T": T, "I": I, "H": H,
                             "mode": "forward+backward" if backward else "forward",
                             "contender": name, "median_ms": round(t * 1e3, 3),
                             "min_ms": round(best[name] * 1e3, 3),
                             "throughput_ratio": round(base / t, 3),
                             "time_ratio": round(t / base, 3),
                             "throughput_ratio_of_minima": round(base_best / best[name], 3)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--out", default="benchmarks/results/lstm_cpu.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    rows = bench(args.rounds)
    load_after = os.getloadavg()[0]
    print(f"{'shape (B,T,I,H)':<16} {'mode':<17} {'contender':<18} {'median ms':>10} "
          f"{'throughput/nn.LSTM':>19} {'(of minima)':>12}")
    for r in rows:
        shape = f"{r['B']},{r['T']},{r['I']},{r['H']}"
        print(f"{shape:<16} {r['mode']:<17} {r['contender']:<18} {r['median_ms']:>10.2f} "
              f"{r['throughput_ratio']:>19.3f} {r['throughput_ratio_of_minima']:>12.3f}")
    write_results(args.out, {
        "benchmark": "lstm",
        **machine_info(),
        "dtype": "float32",
        "rounds": args.rounds,
        "load_average_1min": {"before": round(load_before, 2), "after": round(load_after, 2),
                              "cpus": os.cpu_count()},
        "goals": {"fast_throughput_ratio_min": 0.95, "gates_time_ratio_max": 3.0},
        "results": rows,
    })
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
