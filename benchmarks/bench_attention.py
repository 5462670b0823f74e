"""Speed of the attention family against torch's own attention, in one process.

Cases (B=64, S=30, H=512 by default; multi-head with 8 heads):
  step     one decoder step: query (B, H) against a precomputed cache (once per source)
  seq      all T=30 target steps in one call, projections included (no cache)
  seq+bwd  the same, forward + backward (training with teacher forcing)
Competitors: torch.nn.functional.scaled_dot_product_attention (SDPA) and
torch.nn.MultiheadAttention (batch_first, eval; it re-projects K and V on every call).

Rounds are interleaved (every case once per round, in a shuffled order) and the median per
case is reported, with ratios against SDPA and nn.MultiheadAttention in the same mode.

    .venv/bin/python benchmarks/bench_attention.py            # writes attention_cpu.json
    .venv/bin/python benchmarks/bench_attention.py --quick    # a smoke run, no JSON

On a shared 2-core machine, 2-thread timings thrash whenever another process runs (OpenMP
threads wait on each other); `--threads 1` gives steadier ratios there.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from _common import command_line, machine_info, utc_now, write_results
from seqlab.nn.attention import ATTENTION_KINDS, MultiHeadAttention, build_attention

RESULTS = Path(__file__).resolve().parent / "results"


def calibrate(fn: Callable[[], object], target_s: float) -> int:
    """Repetitions so that one timed measurement takes about target_s."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-6)
    return max(1, int(target_s / once))


def build_cases(B: int, S: int, T: int, H: int, heads: int, seed: int):
    """{(mode, name): zero-argument callable}; mode in step, seq, seq+bwd."""
    torch.manual_seed(seed)
    keys = torch.randn(B, S, H)  # encoder outputs: keys = values
    mask = torch.ones(B, S, dtype=torch.bool)
    mask[B // 2 :, S - 5 :] = False  # half the batch padded: the mask path is exercised
    q_step = torch.randn(B, H)
    q_seq = torch.randn(B, T, H)
    mods = {
        kind: build_attention(kind, H, H, attn_dim=H, num_heads=heads if kind == "multihead"
                              else 1).eval()
        for kind in ATTENTION_KINDS
    }
    mha = torch.nn.MultiheadAttention(H, heads, batch_first=True).eval()
    ours_mha = MultiHeadAttention.from_torch(mha)
    mods["multihead"] = ours_mha
    caches = {kind: m.precompute(keys) for kind, m in mods.items()}
    sdpa_mask = mask[:, None, :]  # (B, 1, S) broadcast over query positions
    kpm = ~mask  # torch MHA: True = padding

    # the competitor gives the same numbers (checked once, before timing)
    with torch.inference_mode():
        ours = mods["scaled_dot"](q_seq, keys, keys, mask)[0]
        ref = F.scaled_dot_product_attention(q_seq, keys, keys, attn_mask=sdpa_mask)
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
        ours = ours_mha(q_seq, keys, keys, mask)[0]
        ref = mha(q_seq, keys, keys, key_padding_mask=kpm)[0]
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)

    cases: dict[tuple[str, str], Callable[[], object]] = {}
    for kind, m in mods.items():
        cache = caches[kind]
        cases[("step", kind)] = lambda m=m, c=cache: m(q_step, keys, keys, mask, cache=c)
        cases[("seq", kind)] = lambda m=m: m(q_seq, keys, keys, mask)
    cases[("step", "multihead (no cache)")] = lambda: ours_mha(q_step, keys, keys, mask)
    q1 = q_step[:, None, :]
    cases[("step", "torch SDPA")] = lambda: F.scaled_dot_product_attention(
        q1, keys, keys, attn_mask=sdpa_mask)
    cases[("step", "torch MHA")] = lambda: mha(q1, keys, keys, key_padding_mask=kpm)
    cases[("step", "torch MHA need_weights=False")] = lambda: mha(
        q1, keys, keys, key_padding_mask=kpm, need_weights=False)
    cases[("seq", "torch SDPA")] = lambda: F.scaled_dot_product_attention(
        q_seq, keys, keys, attn_mask=sdpa_mask)
    cases[("seq", "torch MHA")] = lambda: mha(q_seq, keys, keys, key_padding_mask=kpm)
    cases[("seq", "torch MHA need_weights=False")] = lambda: mha(
        q_seq, keys, keys, key_padding_mask=kpm, need_weights=False)

    # the additive formula written directly (as in most tutorials): keys re-projected on
    # every call, tanh over the whole (B, Tq, S, A) tensor, saved for backward by autograd
    add_mod = mods["additive"]

    def additive_naive(q):
        q3 = q[:, None, :] if q.dim() == 2 else q
        pk = add_mod.key_layer(keys)  # (B, S, A)
        e = torch.tanh(add_mod.query_layer(q3)[:, :, None, :] + pk[:, None, :, :])
        scores = add_mod.energy_layer(e).squeeze(-1).masked_fill(~mask[:, None, :], -1e30)
        return torch.bmm(torch.softmax(scores, -1), keys)

    with torch.inference_mode():
        torch.testing.assert_close(additive_naive(q_seq), add_mod(q_seq, keys, keys, mask)[0],
                                   atol=1e-5, rtol=1e-5)
    cases[("step", "additive naive (re-projects keys)")] = lambda: additive_naive(q_step)
    cases[("seq", "additive naive")] = lambda: additive_naive(q_seq)

    # training: forward + backward through query, keys and parameters
    qg = q_seq.clone().requires_grad_(True)
    kg = keys.clone().requires_grad_(True)
    for kind, m in mods.items():
        def fwd_bwd(m=m):
            ctx, w = m(qg, kg, kg, mask)
            ctx.sum().backward()
        cases[("seq+bwd", kind)] = fwd_bwd

    def sdpa_bwd():
        F.scaled_dot_product_attention(qg, kg, kg, attn_mask=sdpa_mask).sum().backward()

    def mha_bwd():
        mha(qg, kg, kg, key_padding_mask=kpm)[0].sum().backward()

    def additive_naive_bwd():
        q3 = qg
        pk = add_mod.key_layer(kg)
        e = torch.tanh(add_mod.query_layer(q3)[:, :, None, :] + pk[:, None, :, :])
        scores = add_mod.energy_layer(e).squeeze(-1).masked_fill(~mask[:, None, :], -1e30)
        torch.bmm(torch.softmax(scores, -1), kg).sum().backward()

    cases[("seq+bwd", "additive naive")] = additive_naive_bwd
    cases[("seq+bwd", "torch SDPA")] = sdpa_bwd
    cases[("seq+bwd", "torch MHA")] = mha_bwd
    return cases


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    cases = build_cases(args.batch, args.source, args.target, args.hidden, args.heads, args.seed)
    if args.only:
        cases = {k: f for k, f in cases.items() if any(s in k[1] for s in args.only)}
    reps = {}
    for key, fn in cases.items():
        with torch.inference_mode(key[0] != "seq+bwd"):
            reps[key] = calibrate(fn, args.target_ms / 1000)
    times: dict[tuple[str, str], list[float]] = {k: [] for k in cases}
    order = list(cases)
    rng = random.Random(args.seed)
    load_before = os.getloadavg()
    for _ in range(args.rounds):
        rng.shuffle(order)
        for key in order:
            fn, n = cases[key], reps[key]
            with torch.inference_mode(key[0] != "seq+bwd"):
                t0 = time.perf_counter()
                for _ in range(n):
                    fn()
                times[key].append((time.perf_counter() - t0) / n)
    load_after = os.getloadavg()

    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}  # ms
    rows = []
    for mode in ("step", "seq", "seq+bwd"):
        sdpa = med.get((mode, "torch SDPA"))
        tmha = med.get((mode, "torch MHA"))
        for (m, name), ms in med.items():
            if m != mode:
                continue
            rows.append({
                "mode": mode, "case": name, "median_ms": round(ms, 4),
                "min_ms": round(min(times[(m, name)]) * 1e3, 4),
                "x_sdpa": round(ms / sdpa, 3) if sdpa else None,
                "x_torch_mha": round(ms / tmha, 3) if tmha else None,
                "reps_per_round": reps[(m, name)],
            })
    rows.sort(key=lambda r: (("step", "seq", "seq+bwd").index(r["mode"]), r["median_ms"]))
    print(f"B={args.batch} S={args.source} T={args.target} H={args.hidden} heads={args.heads} "
          f"threads={args.threads} rounds={args.rounds}  load {load_before[0]:.2f}->"
          f"{load_after[0]:.2f}")
    print(f"{'mode':8} {'case':34} {'median ms':>10} {'min ms':>9} {'x SDPA':>8} {'x nn.MHA':>9}")
    for r in rows:
        xs = f"{r['x_sdpa']:.2f}" if r["x_sdpa"] else "-"
        xm = f"{r['x_torch_mha']:.3f}" if r["x_torch_mha"] else "-"
        print(f"{r['mode']:8} {r['case']:34} {r['median_ms']:10.3f} {r['min_ms']:9.3f} {xs:>8} "
              f"{xm:>9}")
    return {
        "benchmark": "attention",
        "command": command_line(),
        "date": utc_now(),
        "machine": machine_info(loadavg_before=load_before, loadavg_after=load_after),
        "config": {"B": args.batch, "S": args.source, "T": args.target, "H": args.hidden,
                   "heads": args.heads, "rounds": args.rounds, "target_ms": args.target_ms,
                   "mask": "half the batch has its last 5 source positions padded"},
        "results": rows,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--source", type=int, default=30)
    p.add_argument("--target", type=int, default=30)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--target-ms", type=float, default=30.0, help="time per measurement")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="*", help="only cases whose name contains one of these")
    p.add_argument("--out", type=Path, default=RESULTS / "attention_cpu.json")
    p.add_argument("--quick", action="store_true", help="3 short rounds, no JSON")
    args = p.parse_args()
    if args.quick:
        args.rounds, args.target_ms = 3, 5.0
    result = run(args)
    if not args.quick:
        write_results(args.out, result)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
