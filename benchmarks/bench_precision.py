"""Training speed of the translator in float32 and in mixed precision (bf16 autocast), same
process, same batches, interleaved rounds.

The model and batches are those of the Multi30k quality runs (bench_translate_quality.py
multi30k: bi-LSTM 256, additive attention, input feeding, 6k shared sentencepiece vocabulary,
4096-token length-bucketed batches of real en->fr training pairs). Each round trains one step
on each of `--batches` batches in float32, then the same batches in bf16 (the order alternates
between rounds); the optimizer is plain Adam with a tiny rate so the model barely moves.

Reported per precision: target tokens/s from wall time and from the process's CPU time (with
one thread, CPU time is what a step costs even when other jobs share the machine: the robust
figure on a busy machine), the median over all steps; the ratio bf16 / fp32 of those medians;
and the mean relative difference of the step losses (the same batches and weights, so the
difference is the arithmetic's). The quality side (a whole run in bf16 against the float32 one,
same seed and schedule) is in results/translate_multi30k.json, entry "en-fr+bf16".

    .venv/bin/python benchmarks/bench_precision.py                  # Multi30k en->fr, 1 thread
    .venv/bin/python benchmarks/bench_precision.py --threads 2 --rounds 3

Writes benchmarks/results/precision_cpu.json (or --out), with the CPU's capabilities
(seqlab.device.capabilities: instruction set, native bfloat16, oneDNN's bf16 LSTM) and what
`--precision auto` picks on it. On a CPU without bfloat16 instructions the bf16 steps are
expected to be slower (emulated bfloat16; the LSTM kernel falls back to float32).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from _common import REPO, machine_info, write_results
from seqlab.device import autocast, capabilities, resolve_precision
from seqlab.text.batching import collate, make_batches
from seqlab.text.tokenizer import TokenizerPair
from seqlab.translate.model import Seq2Seq, Seq2SeqConfig
from seqlab.translate.train import DataConfig, load_run_corpus

# bench_translate_quality.py's multi30k job
MODEL = dict(embedding_dim=256, encoder_hidden_size=256, decoder_hidden_size=256,
             attention="additive", dropout=0.3, label_smoothing=0.1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=20000, help="training pairs to batch from")
    p.add_argument("--batches", type=int, default=8, help="batches per round and precision")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--attention", default="additive")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "precision_cpu.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    data = DataConfig(corpus="multi30k", src_lang="en", tgt_lang="fr", vocab_size=6000,
                      data_dir=args.data_dir)
    corpus = load_run_corpus(data)
    src_text, tgt_text = corpus.train.src[:args.pairs], corpus.train.tgt[:args.pairs]
    tok_dir = REPO / "runs" / "bench_precision"
    tok = TokenizerPair.train_pair(src_text, tgt_text, tok_dir, vocab_size=6000, shared=True)
    src, tgt = tok.src.encode(src_text), tok.tgt.encode(tgt_text)
    batches = make_batches([len(s) + 1 for s in src], [len(t) for t in tgt], max_tokens=4096,
                           batch_size=None, seed=1234, epoch=0)[:args.batches]
    torch.manual_seed(1234)
    cfg = Seq2SeqConfig(**{**MODEL, "attention": args.attention},
                           src_vocab_size=tok.src.vocab_size, tgt_vocab_size=tok.tgt.vocab_size,
                           pad_id=tok.src.pad_id, bos_id=tok.tgt.bos_id, eos_id=tok.tgt.eos_id)
    model = Seq2Seq(cfg)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-7)

    def step(rows: list[int], precision: str) -> tuple[int, float, float, float]:
        b = collate(src, tgt, rows, pad_id=cfg.pad_id, bos_id=cfg.bos_id, eos_id=cfg.eos_id,
                    src_eos=True)
        t0, c0 = time.perf_counter(), time.process_time()
        with autocast("cpu", precision):
            loss, n = model.loss(b.src, b.src_lengths, b.src_mask, b.tgt_in, b.tgt_out)
        (loss / n).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return n, time.perf_counter() - t0, time.process_time() - c0, float(loss.detach()) / n

    for rows in batches[:2]:                      # warm-up: allocator, oneDNN kernels
        step(rows, "fp32"), step(rows, "bf16")
    rates: dict[str, dict[str, list[float]]] = {p: {"wall": [], "cpu": []} for p in PRECISIONS}
    loss_diff = []
    for r in range(args.rounds):
        order = PRECISIONS if r % 2 == 0 else PRECISIONS[::-1]
        losses: dict[str, list[float]] = {}
        for prec in order:
            losses[prec] = []
            for rows in batches:
                n, wall, cpu, loss = step(rows, prec)
                rates[prec]["wall"].append(n / wall)
                rates[prec]["cpu"].append(n / cpu)
                losses[prec].append(loss)
        loss_diff += [abs(a - b) / b for a, b in zip(losses["bf16"], losses["fp32"],
                                                      strict=True)]
        print(f"round {r + 1}/{args.rounds}: " + "  ".join(
            f"{p} {statistics.median(rates[p]['cpu'][-len(batches):]):.0f} tok/cpu-s"
            for p in PRECISIONS), flush=True)

    med = {p: {k: statistics.median(v) for k, v in rates[p].items()} for p in PRECISIONS}
    ratio = {k: med["bf16"][k] / med["fp32"][k] for k in ("wall", "cpu")}
    print()
    print("| precision | target tokens/s (wall) | target tokens/s (CPU time) |")
    print("|---|---|---|")
    for prec in PRECISIONS:
        print(f"| {prec} | {med[prec]['wall']:.0f} | {med[prec]['cpu']:.0f} |")
    print(f"| bf16 / fp32 | {ratio['wall']:.2f}x | {ratio['cpu']:.2f}x |")
    print(f"mean relative loss difference on the same batches: {statistics.mean(loss_diff):.2e}")
    print(f"--precision auto picks {resolve_precision('auto', 'cpu')} on the CPU it ran on "
          f"({capabilities()['cpu_capability']})")
    record = {
        "benchmark": "precision_cpu",
        "machine": machine_info(threads=args.threads, load_average=os.getloadavg()),
        "capabilities": capabilities(), "auto_picks": resolve_precision("auto", "cpu"),
        "setup": {"corpus": "multi30k en-fr (train)", "pairs": len(src), "model": MODEL,
                  "attention": args.attention, "batches": args.batches, "rounds": args.rounds,
                  "batch_tokens": 4096, "num_parameters": model.num_parameters(),
                  "target_tokens_per_round": sum(
                      int((collate(src, tgt, rows, pad_id=cfg.pad_id, bos_id=cfg.bos_id,
                                   eos_id=cfg.eos_id, src_eos=True).tgt_out != cfg.pad_id).sum())
                      for rows in batches)},
        "tokens_per_s_median": med, "ratio_bf16_over_fp32": ratio,
        "mean_relative_loss_difference": statistics.mean(loss_diff),
        "note": "CPU-time rates are robust when other jobs share the machine (1 thread); wall "
                "rates are what a user sees on an idle machine. Quality: "
                "translate_multi30k.json 'en-fr+bf16' against 'en-fr' (same seed and schedule).",
    }
    write_results(Path(args.out), record)
    print(f"wrote {args.out}")


PRECISIONS = ("fp32", "bf16")

if __name__ == "__main__":
    main()
