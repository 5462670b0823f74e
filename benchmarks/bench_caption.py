"""Emoji captioning on CPU: the attention captioner on both held-out splits, in minutes.

For each split of the emoji set (emoji-datasource-google@16.0.0, 3,786 images, official names
as captions) -- "random" (images) and "grouped" (by base emoji: skin-tone variants of one emoji
never on both sides) -- train `seqlab caption` for a fixed CPU budget, then score the test
images with beam search and greedy decoding: sacreBLEU BLEU and chrF against the official name,
and the exact-match rate. Side by side, in the same process and on the same split, a
memorisation baseline: nearest-neighbour retrieval (the caption of the most similar training
image, cosine similarity of 16x16 thumbnails). The gap between the two splits tells memorising
names from composing them ("...: medium skin tone" on an emoji never seen with that tone).

    .venv/bin/python benchmarks/bench_caption.py --minutes 5 --threads 1

Writes benchmarks/results/caption_emoji.json (scores, train time, machine) and, per split,
attention strips of a few test images under the run directory (--runs, default a temp dir).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _common import machine_info, write_results
from seqlab.caption.api import Captioner, exact_match
from seqlab.caption.data import CaptionDataConfig, CaptionSplits, load_dataset, load_splits
from seqlab.caption.plots import plot_attention_strip
from seqlab.caption.train import default_train_config, train_captioner
from seqlab.text.metrics import score_corpus

RESULTS = Path(__file__).resolve().parent / "results" / "caption_emoji.json"


def nearest_neighbour(splits: CaptionSplits) -> tuple[list[str], float]:
    """Caption each test image with its most similar training image's caption; seconds."""
    t0 = time.perf_counter()

    def thumbs(pixels: np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(pixels).permute(0, 3, 1, 2).float() / 255.0       # (N, 3, S, S)
        x = torch.nn.functional.adaptive_avg_pool2d(x, 16).flatten(1)          # (N, 768)
        x = x - x.mean(1, keepdim=True)
        return x / x.norm(dim=1, keepdim=True).clamp_min(1e-6)

    tr, te = thumbs(splits.train.load_pixels()), thumbs(splits.test.load_pixels())
    best = (te @ tr.T).argmax(1).tolist()                                     # (N_test,)
    caps = splits.train.first_captions()
    return [caps[i] for i in best], time.perf_counter() - t0


def scores(hyps: list[str], splits: CaptionSplits) -> dict[str, float]:
    refs = [it.captions for it in splits.test.items]
    s = score_corpus(hyps, [r[0] for r in refs], "en")
    return {"bleu": round(s["bleu"], 2), "chrf": round(s["chrf"], 2),
            "exact_match": round(exact_match(hyps, refs), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0, help="training budget per split")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--splits", nargs="+", default=["random", "grouped"])
    ap.add_argument("--attention", default="additive")
    ap.add_argument("--runs", type=Path, default=None, help="run directories (default: temp)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    runs = args.runs or Path(tempfile.mkdtemp(prefix="bench_caption_"))
    dataset = load_dataset(CaptionDataConfig())
    dataset.load_pixels()
    results: dict[str, dict] = {}
    for split in args.splits:
        data_cfg = CaptionDataConfig(split=split, split_seed=args.seed)
        splits = load_splits(data_cfg, dataset)
        run = runs / f"emoji-{split}"
        print(f"== {split} split: {splits.info()}", flush=True)
        summary = train_captioner(
            run, model_cfg={"attention": args.attention},
            train_cfg=default_train_config(time_budget_min=args.minutes, seed=args.seed,
                                           threads=args.threads, max_epochs=10_000),
            data_cfg=data_cfg, splits=splits, progress=False)
        cap = Captioner.load(run)
        row: dict = {"split_info": splits.info(), "train": {
            "seconds": round(summary["seconds"], 1), "steps": summary["steps"],
            "epochs": summary["epochs"], "images_per_s": round(summary["train_images_per_s"], 1),
            "best_dev_bleu": round(summary["best_dev_bleu"], 2), "stopped": summary["stopped"],
            "num_parameters": sum(p.numel() for p in cap.model.parameters())}}
        test_pixels = splits.test.load_pixels()
        for beams in (1, 5):
            t0 = time.perf_counter()
            out = cap.caption(list(test_pixels), num_beams=beams, batch_size=128)
            sec = time.perf_counter() - t0
            row[f"seqlab_beam{beams}"] = {**scores(list(out), splits),
                                          "images_per_s": round(len(out) / sec, 1)}
        nn_hyps, nn_sec = nearest_neighbour(splits)
        row["nearest_neighbour"] = {**scores(nn_hyps, splits),
                                    "images_per_s": round(len(nn_hyps) / nn_sec, 1)}
        # examples and attention strips: the first test images of a few kinds
        kinds = {"flag": lambda c: c.startswith("flag: "),
                 "skin tone": lambda c: "skin tone" in c,
                 "other": lambda c: "skin tone" not in c and not c.startswith("flag")}
        picks = []
        for pred in kinds.values():
            picks += [i for i, it in enumerate(splits.test.items) if pred(it.captions[0])][:2]
        res = cap.caption([test_pixels[i] for i in picks], num_beams=5, return_attention=True)
        row["examples"] = []
        for i, c in zip(picks, res, strict=True):
            it = splits.test.items[i]
            plot = run / "attention" / f"{it.path.stem}.png"
            plot_attention_strip(c.image, c.words, c.word_attention, plot,
                                 title=f"{it.captions[0]}  ->  {c.text}")
            row["examples"].append({"file": it.path.name, "reference": it.captions[0],
                                    "output": c.text, "attention_plot": str(plot)})
        results[split] = row
    print(f"\n{'split':8} {'system':18} {'BLEU':>6} {'chrF':>6} {'exact%':>7} {'img/s':>7}")
    for split, row in results.items():
        nn = row["nearest_neighbour"]
        for name in ("seqlab_beam5", "seqlab_beam1", "nearest_neighbour"):
            r = row[name]
            print(f"{split:8} {name:18} {r['bleu']:6.2f} {r['chrf']:6.2f} "
                  f"{r['exact_match']:7.2f} {r['images_per_s']:7.1f}")
        b5 = row["seqlab_beam5"]
        print(f"{split:8} {'ratio beam5/NN':18} {b5['bleu'] / max(nn['bleu'], 1e-9):6.2f} "
              f"{b5['chrf'] / max(nn['chrf'], 1e-9):6.2f}   (train {row['train']['seconds']}s, "
              f"{row['train']['steps']} steps)")
    write_results(args.out, {
        "benchmark": "caption_emoji",
        "data": "emoji-datasource-google@16.0.0, img/google/64 (3,786 images), official "
                "names lowercased; test 10%, dev 5%, split seed " + str(args.seed),
        "model": {"encoder": "CNN (16,32,64) -> 8x8 regions x 256", "decoder":
                  f"seqlab AttentionDecoder, {args.attention} attention, hidden 256",
                  "tokenizer": "sentencepiece unigram 1000 (shared SubwordTokenizer)"},
        "minutes_per_split": args.minutes,
        "results": results,
        "machine": machine_info(),
    })
    print(f"wrote {args.out}; runs in {runs}")


if __name__ == "__main__":
    main()
