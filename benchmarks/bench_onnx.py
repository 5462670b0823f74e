"""onnxruntime vs PyTorch for a trained translator: same outputs? how much faster?

Both backends run the same search code (`seqlab.decoding.search`) over the same weights in this
one process: the PyTorch model (LSTM or Transformer) and the graphs `seqlab translate export`
writes (exported here when missing or stale), run by onnxruntime on the same number of threads.

1. Identical outputs on the test split: greedy and beam search (batch 64) with each backend; the
   share of identical strings, and for beam search the differing sentences whose best scores
   are equal within 1e-4 (ties: two hypotheses the model scores alike, picked differently).
2. Decoding speed, greedy, at batch 1 and 64 on the first `--speed-sentences` (batch 1) and
   `--speed-sentences-batched` (batch 64) test sentences: rounds interleaved (the order
   alternates), median wall and CPU seconds (CPU time counts only this process: the steadier
   figure on a busy machine), sentences/s and the onnx/torch ratio.

    python benchmarks/bench_onnx.py --run runs/onnx-enfr
    python benchmarks/bench_onnx.py --run runs/onnx-enfr --speed-sentences 200 --rounds 3

Writes benchmarks/results/onnx_cpu.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from _common import REPO, machine_info, write_results
from seqlab.errors import UserError
from seqlab.text.metrics import score_corpus
from seqlab.translate.api import Translator
from seqlab.translate.corpora import load_corpus
from seqlab.translate.onnx_backend import export_translator

TIE = 1e-4   # best scores this close: a tie between hypotheses


def timed(fn: Any) -> tuple[Any, float, float]:
    """fn() -> (its result, wall seconds, CPU seconds of this process)."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def load_backends(run: Path, threads: int) -> tuple[Translator, Translator, bool]:
    """The PyTorch and onnxruntime translators (exporting first when needed)."""
    exported = False
    try:
        ox = Translator.load(run, backend="onnx", threads=threads)
    except UserError as err:
        print(f"exporting ({err})")
        export_translator(run)
        exported = True
        ox = Translator.load(run, backend="onnx", threads=threads)
    return Translator.load(run), ox, exported


def compare(pt: Translator, ox: Translator, src: list[str], refs: list[str], lang: str,
            num_beams: int, batch_size: int) -> dict[str, Any]:
    """Translate `src` with both backends; identical share, ties, BLEU of each."""
    kw: dict[str, Any] = dict(num_beams=num_beams, batch_size=batch_size, return_attention=False)
    if num_beams > 1:
        kw["num_return_sequences"] = 2   # with n-best: Translation objects with scores
    out_pt, wall_pt, _ = timed(lambda: pt.translate(src, **kw))
    out_ox, wall_ox, _ = timed(lambda: ox.translate(src, **kw))
    text = _text
    same = sum(text(a) == text(b) for a, b in zip(out_pt, out_ox, strict=True))
    ties = 0
    differing: list[dict[str, Any]] = []
    for s, a, b in zip(src, out_pt, out_ox, strict=True):
        if text(a) == text(b):
            continue
        tie = (not isinstance(a, str) and not isinstance(b, str)
               and abs(a.score - b.score) < TIE)
        ties += tie
        if len(differing) < 10:
            differing.append({"source": s, "torch": text(a), "onnx": text(b), "tie": tie,
                              **({} if isinstance(a, str) else
                                 {"score_torch": a.score, "score_onnx": b.score})})
    n = len(src)
    return {"num_beams": num_beams, "batch_size": batch_size, "sentences": n,
            "identical": same, "identical_share": same / n,
            "differing_ties": ties, "differing_other": n - same - ties,
            "bleu_torch": score_corpus([text(r) for r in out_pt], refs, lang)["bleu"],
            "bleu_onnx": score_corpus([text(r) for r in out_ox], refs, lang)["bleu"],
            "wall_s_torch": wall_pt, "wall_s_onnx": wall_ox, "examples_differing": differing}


def _text(r: Any) -> str:
    return r if isinstance(r, str) else r.text


def speed(pt: Translator, ox: Translator, src: list[str], batch_size: int, rounds: int
          ) -> dict[str, Any]:
    """Greedy decoding, interleaved rounds; medians, sentences/s and the onnx/torch ratios."""
    times: dict[str, dict[str, list[float]]] = {k: {"wall": [], "cpu": []}
                                                for k in ("torch", "onnx")}
    outs: dict[str, list[str]] = {}
    for r in range(rounds):
        order = [("torch", pt), ("onnx", ox)]
        for name, tr in (order if r % 2 == 0 else order[::-1]):
            out, wall, cpu = timed(lambda tr=tr: tr.translate(src, num_beams=1,
                                                              batch_size=batch_size))
            times[name]["wall"].append(wall)
            times[name]["cpu"].append(cpu)
            outs[name] = list(out)
    rec: dict[str, Any] = {"batch_size": batch_size, "sentences": len(src), "rounds": rounds,
                           "identical": sum(a == b for a, b in zip(outs["torch"], outs["onnx"],
                                                                  strict=True))}
    for name in ("torch", "onnx"):
        for kind in ("wall", "cpu"):
            med = statistics.median(times[name][kind])
            rec[f"{kind}_s_{name}"] = med
            rec[f"sentences_per_s_{kind}_{name}"] = len(src) / med
    for kind in ("wall", "cpu"):
        rec[f"speedup_{kind}"] = rec[f"{kind}_s_torch"] / rec[f"{kind}_s_onnx"]
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, default=REPO / "runs" / "onnx-enfr")
    ap.add_argument("--split", default="test", choices=["dev", "test"])
    ap.add_argument("--limit", type=int, default=None, help="Only the first N sentences for "
                    "the identity check (default: the whole split).")
    ap.add_argument("--num-beams", type=int, default=5)
    ap.add_argument("--speed-sentences", type=int, default=300,
                    help="Sentences timed at batch size 1.")
    ap.add_argument("--speed-sentences-batched", type=int, default=2000,
                    help="Sentences timed at the larger batch sizes.")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "onnx_cpu.json")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    pt, ox, exported = load_backends(args.run, args.threads)
    data = pt.config["data"]
    corpus = load_corpus(data["corpus"], data["src_lang"], data["tgt_lang"],
                         data_dir=data.get("data_dir"), seed=data.get("split_seed", 1234))
    part = getattr(corpus, args.split)
    src, refs = list(part.src)[:args.limit], list(part.tgt)[:args.limit]
    record: dict[str, Any] = {
        "benchmark": "onnxruntime vs PyTorch decoding, same search code",
        "machine": machine_info(threads=args.threads),
        "run": str(args.run.resolve().relative_to(REPO) if args.run.resolve().is_relative_to(
            REPO) else args.run),
        "model": pt.config["model"], "train_steps": _train_steps(args.run),
        "corpus": corpus.name, "split": args.split, "exported_now": exported,
        "onnx_manifest": {k: ox.model.manifest[k] for k in ("opset", "versions",
                                                              "check_max_abs_diff")},
    }
    record["identity"] = []
    for beams in (1, args.num_beams):
        rec = compare(pt, ox, src, refs, data["tgt_lang"], beams, 64)
        print(f"beam {beams}: {rec['identical']}/{rec['sentences']} identical "
              f"({100 * rec['identical_share']:.2f}%), {rec['differing_ties']} ties, "
              f"{rec['differing_other']} other; BLEU torch {rec['bleu_torch']:.2f} onnx "
              f"{rec['bleu_onnx']:.2f}")
        record["identity"].append(rec)
    record["speed"] = []
    for bs in args.batch_sizes:
        n = args.speed_sentences if bs == 1 else args.speed_sentences_batched
        rec = speed(pt, ox, src[:n], bs, args.rounds)
        print(f"greedy batch {bs}: torch {rec['sentences_per_s_cpu_torch']:.1f}, onnx "
              f"{rec['sentences_per_s_cpu_onnx']:.1f} sentences/CPU-s: x{rec['speedup_cpu']:.2f}"
              f" (wall x{rec['speedup_wall']:.2f})")
        record["speed"].append(rec)
    print(f"wrote {write_results(args.out, record)}")


def _train_steps(run: Path) -> int | None:
    import json

    log = run / "train_log.jsonl"
    steps = [json.loads(line).get("step") for line in log.read_text().splitlines()
             if line.strip()] if log.is_file() else []
    return max((s for s in steps if s is not None), default=None)


if __name__ == "__main__":
    main()
