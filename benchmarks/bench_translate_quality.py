"""Translation quality at a CPU budget: Tatoeba en->fr after 30 and 60 minutes, Multi30k en->fr
and en->de (the papers' lowercased-tokenised BLEU), and the attention ablation on Multi30k.

    .venv/bin/python benchmarks/bench_translate_quality.py tatoeba              # marks 30,60 min
    .venv/bin/python benchmarks/bench_translate_quality.py multi30k --tgt fr    # budget 40 min
    .venv/bin/python benchmarks/bench_translate_quality.py multi30k --tgt de
    .venv/bin/python benchmarks/bench_translate_quality.py ablation --attention dot   # 12 min
    .venv/bin/python benchmarks/bench_translate_quality.py ablation --attention all
    .venv/bin/python benchmarks/bench_translate_quality.py table     # the results as Markdown

Each job trains ONE run directory (under --work-dir, default runs/bench_translate_quality/) with
`train_translator` and looks at it at each time mark ("--marks 30,60": train until 30 minutes of
training in total, evaluate, resume until 60, evaluate; identical to one 60-minute run, because
resuming is exact and the time budget counts earlier sessions). A job killed at any point (the
end of a session) resumes from its checkpoint when started again with the same command; marks
already in the result file are not redone.

At each mark the run's best weights by dev BLEU (`model.safetensors`, what `seqlab translate
run` uses) are evaluated on the test split, greedy and beam 5, batch 64 sentences: sacreBLEU
BLEU and chrF on detokenised output against the original references, the lowercased 13a BLEU
that Multi30k papers report (labelled `bleu_lc_tok`), and decoding speed (sentences / wall
seconds of the whole call: tokenise, search, detokenise). Training speed is target tokens per
second, the median of the run's 50-step log windows (validation excluded).

Results (machine, command, config, figures) are merged into
    benchmarks/results/translate_tatoeba.json           tatoeba
    benchmarks/results/translate_multi30k.json          multi30k, one entry per direction
    benchmarks/results/translate_ablation_multi30k.json ablation, one entry per attention
under a file lock, so jobs can run side by side (use --threads 1 for each when they do).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from _common import machine_info, utc_now, write_results  # noqa: E402
from seqlab.training.loop import TrainConfig  # noqa: E402
from seqlab.translate.api import Translator  # noqa: E402
from seqlab.translate.train import DataConfig, load_run_corpus, train_translator  # noqa: E402

RESULTS = HERE / "results"
ATTENTIONS = ["none", "additive", "dot", "general", "scaled_dot", "multihead"]
EVALS = [("test", 1), ("test", 5)]
# --tune-decoding: (num_beams, length_penalty) tried on the dev split; GNMT-style alpha.
DECODE_GRID = [(b, a) for b in (5, 10) for a in (0.6, 1.0, 1.4, 2.0)]

# The configurations, fixed before the runs (no search on test scores). Tatoeba: the model size
# of the Joey comparison (bench_translate_peer.py), which trained well at 15 minutes. Multi30k:
# 29k short captions, so a smaller vocabulary and more dropout against overfitting.
JOBS: dict[str, dict[str, Any]] = {
    "tatoeba": {
        "data": dict(corpus="tatoeba-fra-eng", src_lang="en", tgt_lang="fr", vocab_size=8000),
        "model": dict(embedding_dim=256, encoder_hidden_size=256, decoder_hidden_size=256,
                      attention="additive", dropout=0.2, label_smoothing=0.1),
        "train": dict(batch_tokens=4096, lr=2e-3, warmup_steps=200, eval_every=500,
                      eval_sentences=500, patience=8),
        "marks": [30.0, 60.0],
    },
    "multi30k": {
        "data": dict(corpus="multi30k", src_lang="en", vocab_size=6000),
        "model": dict(embedding_dim=256, encoder_hidden_size=256, decoder_hidden_size=256,
                      attention="additive", dropout=0.3, label_smoothing=0.1),
        "train": dict(batch_tokens=4096, lr=2e-3, warmup_steps=200, eval_every=300,
                      eval_sentences=1014, patience=8),
        "marks": [40.0],
    },
}
# The ablation: the Multi30k setting with 128 units per encoder direction, so the memory (2 x 128)
# is as wide as the decoder (256) and dot / scaled-dot attention need no projection (OpenNMT's
# split of a bidirectional encoder); everything but the attention is the same for every variant.
JOBS["ablation"] = {**JOBS["multi30k"],
                    "model": {**JOBS["multi30k"]["model"], "encoder_hidden_size": 128},
                    "marks": [12.0]}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("job", choices=[*sorted(JOBS), "table"],
                   help="a job to run, or 'table': print the results as Markdown tables")
    p.add_argument("--tgt", default="fr", choices=["fr", "de"], help="multi30k target language")
    p.add_argument("--attention", default="all",
                   help=f"ablation: one of {ATTENTIONS} or 'all' (one after another)")
    p.add_argument("--marks", default=None, help="minutes at which to evaluate, e.g. 30,60")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop at this step (with --decay-steps: where the decay ends)")
    p.add_argument("--decay-steps", type=int, default=None,
                   help="anneal the rate over the last N steps before --max-steps; on a resumed "
                        "run this branches a decay off the constant-rate run so far")
    p.add_argument("--variant", default=None,
                   help="a named variant of the job's run: its own run directory "
                        "(JOB-DIRECTION-VARIANT) and result entry (DIRECTION+VARIANT), e.g. a "
                        "schedule change, or a decay branch copied from another run's directory")
    p.add_argument("--precision", choices=["fp32", "bf16"], default=None,
                   help="training arithmetic (TrainConfig.precision; default fp32, on a resumed "
                        "run its own)")
    p.add_argument("--tune-decoding", action="store_true",
                   help="after the marks: choose beam size and length penalty on the DEV split "
                        "(grid DECODE_GRID, the goal's metric), then score the test split once "
                        "with the choice; stored under the last mark's 'tuned_decoding'")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--heads", type=int, default=4, help="heads of the multihead variant")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--work-dir", default=str(REPO / "runs" / "bench_translate_quality"))
    p.add_argument("--train-limit", type=int, default=None, help="smoke runs: fewer pairs")
    p.add_argument("--eval-limit", type=int, default=None, help="smoke runs: fewer test pairs")
    p.add_argument("--out", default=None, help="result file (default by job)")
    return p.parse_args()


@contextlib.contextmanager
def locked(path: Path) -> Iterator[dict[str, Any]]:
    """Read-modify-write a JSON result file under an exclusive lock (jobs run side by side)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = json.loads(path.read_text()) if path.exists() else {}
        before = json.dumps(record, sort_keys=True)
        yield record
        if json.dumps(record, sort_keys=True) != before:
            write_results(path, record)


def median_tokens_per_s(run: Path) -> float | None:
    """Median of the training log's tokens/s windows, the first (warm-up) one dropped."""
    rates = [r["tokens_per_s"] for r in map(json.loads, (run / "train_log.jsonl").read_text()
                                            .splitlines()) if r.get("tokens_per_s")]
    return statistics.median(rates[1:] or rates) if rates else None


def evaluate(run: Path, corpus: Any, limit: int | None, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    tr = Translator.load(run)
    out: dict[str, Any] = {}
    for split_name, beams in EVALS:
        split = getattr(corpus, split_name)
        t0 = time.perf_counter()
        scores = tr.evaluate(split, num_beams=beams, batch_size=64, limit=limit)
        dt = time.perf_counter() - t0
        scores.update(seconds=dt, sentences_per_s=scores["n_sentences"] / dt)
        out[f"{split_name}_beam{beams}"] = scores
        print(f"  {split_name} beam {beams}: BLEU {scores['bleu']:.2f}  chrF {scores['chrf']:.2f}"
              f"  lc-tok BLEU {scores['bleu_lc_tok']:.2f}  {scores['sentences_per_s']:.0f} sent/s",
              flush=True)
    return out


def run_job(args: argparse.Namespace, key: str, spec: dict[str, Any], data: DataConfig,
            model: dict[str, Any], out_file: Path, path: list[str]) -> None:
    """Train `key`'s run to each mark in turn and store the evaluation under record[path]."""
    marks = [float(m) for m in args.marks.split(",")] if args.marks else spec["marks"]
    run = Path(args.work_dir) / key
    corpus = load_run_corpus(data)
    if args.train_limit:
        corpus.train = corpus.train.subset(range(min(args.train_limit, len(corpus.train))))
    for mark in marks:
        with locked(out_file) as rec:
            node = rec
            for p in path:
                node = node.get(p, {})
            if f"{mark:g}" in node.get("marks", {}):
                print(f"{key}: mark {mark:g} min already in {out_file.name}", flush=True)
                continue
        resume = (run / "checkpoint.safetensors").exists()
        print(f"{key}: training to {mark:g} min ({'resume' if resume else 'new run'})",
              flush=True)
        schedule = {k: v for k, v in (("max_steps", args.max_steps),
                                      ("decay_steps", args.decay_steps),
                                      ("precision", args.precision)) if v is not None}
        tc = TrainConfig(**{**spec["train"], "time_budget_min": mark, "seed": args.seed,
                            "threads": args.threads, "max_epochs": 1000, **schedule})
        summary = train_translator(run, model, tc, data, resume=resume, corpus=corpus,
                                   overrides={"time_budget_min": mark, "threads": args.threads,
                                              **schedule},
                                   progress=False, echo=lambda s: print(s, flush=True))
        cfg = json.loads((run / "config.json").read_text())
        ev = evaluate(run, corpus, args.eval_limit, args.threads)
        entry = {"date": utc_now(), "train": {
            "steps": summary["steps"], "epochs": summary["epochs"],
            "stopped": summary["stopped"], "best_dev_bleu_greedy": summary["best_dev_bleu"],
            "total_train_seconds": summary["total_train_seconds"],
            "tokens_per_s_median": median_tokens_per_s(run),
            "command": " ".join(sys.argv[1:]), "schedule_overrides": schedule}, "eval": ev}
        with locked(out_file) as rec:
            node = rec
            for p in path:
                node = node.setdefault(p, {})
            node["machine"] = machine_info(threads=args.threads)
            node["config"] = {k: cfg[k] for k in ("model", "train", "data", "corpus",
                                                  "num_parameters")}
            node["run_dir"] = str(run.relative_to(REPO) if run.is_relative_to(REPO) else run)
            node.setdefault("marks", {})[f"{mark:g}"] = entry
            rec.setdefault("benchmark", f"translate_{args.job}")
            rec["doc"] = ("bench_translate_quality.py: test BLEU/chrF (sacreBLEU, detokenised), "
                          "bleu_lc_tok = lowercased 13a BLEU (Multi30k papers' scoring), at "
                          "time marks in minutes of training on the machine it ran on; best "
                          "weights by dev BLEU; decode speed at batch 64")
        if summary["stopped"] in ("early_stopping", "max_steps"):
            print(f"{key}: {summary['stopped']} at {summary['total_train_seconds'] / 60:.1f} min; "
                  "later marks would not change", flush=True)
            break


def tune_decoding(args: argparse.Namespace, key: str, data: DataConfig, out_file: Path,
                  path: list[str], metric: str) -> None:
    """Pick (num_beams, length_penalty) by `metric` on the dev split, then score test once.

    The usual practice for decoding settings: chosen on held-out dev data, never on test; the
    test figure is computed for the chosen setting only. Stored under the last mark's entry.
    """
    run = Path(args.work_dir) / key
    corpus = load_run_corpus(data)
    torch.set_num_threads(args.threads)
    tr = Translator.load(run)
    grid = []
    for beams, alpha in DECODE_GRID:
        sc = tr.evaluate(corpus.dev, num_beams=beams, batch_size=64, length_penalty=alpha,
                         limit=args.eval_limit)
        grid.append({"num_beams": beams, "length_penalty": alpha, "dev_bleu": sc["bleu"],
                     "dev_chrf": sc["chrf"], "dev_bleu_lc_tok": sc["bleu_lc_tok"]})
        print(f"  dev beam {beams} alpha {alpha}: {metric} {sc[metric]:.2f}", flush=True)
    best = max(grid, key=lambda g: g[f"dev_{metric}"])   # first of any tie: smaller beam, alpha
    t0 = time.perf_counter()
    test = tr.evaluate(corpus.test, num_beams=best["num_beams"], batch_size=64,
                       length_penalty=best["length_penalty"], limit=args.eval_limit)
    dt = time.perf_counter() - t0
    test.update(seconds=dt, sentences_per_s=test["n_sentences"] / dt,
                length_penalty=best["length_penalty"])
    print(f"  chosen on dev: beam {best['num_beams']} alpha {best['length_penalty']}; test BLEU "
          f"{test['bleu']:.2f}  chrF {test['chrf']:.2f}  lc-tok BLEU {test['bleu_lc_tok']:.2f}",
          flush=True)
    with locked(out_file) as rec:
        node = rec
        for p in path:
            node = node[p]
        last = max(node["marks"], key=float)
        node["marks"][last]["tuned_decoding"] = {
            "date": utc_now(), "selected_on": f"dev split, {metric}", "grid": grid,
            "chosen": {"num_beams": best["num_beams"], "length_penalty": best["length_penalty"]},
            "test": test}


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def tables() -> str:
    """The three result files as Markdown tables (what the README shows)."""
    out: list[str] = []

    def load(name: str) -> dict[str, Any]:
        f = RESULTS / name
        return json.loads(f.read_text()) if f.exists() else {}

    def figures(m: dict[str, Any]) -> list[str]:
        g, b = m["eval"]["test_beam1"], m["eval"]["test_beam5"]
        t = m["train"]
        return [f"{g['bleu']:.1f} / {b['bleu']:.1f}", f"{g['chrf']:.1f} / {b['chrf']:.1f}",
                f"{g['bleu_lc_tok']:.1f} / {b['bleu_lc_tok']:.1f}",
                f"{t['tokens_per_s_median'] or 0:,.0f}",
                f"{g['sentences_per_s']:.0f} / {b['sentences_per_s']:.0f}",
                f"{t['steps']:,} steps, {t['epochs']} epochs"]

    head = ["test BLEU greedy / beam 5", "chrF greedy / beam 5",
            "lowercased-tokenised BLEU greedy / beam 5", "train tokens/s",
            "decode sent/s greedy / beam 5", "training"]
    for name, title in (("translate_tatoeba.json", "minutes"),
                        ("translate_multi30k.json", "minutes")):
        rec = load(name)
        for direction, node in sorted((k, v) for k, v in rec.items() if isinstance(v, dict)):
            out += [f"{name} {direction}", "", _row([title, *head]),
                    _row(["---"] * (len(head) + 1))]
            for mark, m in sorted(node.get("marks", {}).items(), key=lambda kv: float(kv[0])):
                spent = m["train"]["total_train_seconds"] / 60
                out.append(_row([f"{mark} ({m['train']['stopped']} at {spent:.1f})",
                                 *figures(m)]))
            out.append("")
    rec = load("translate_ablation_multi30k.json")
    for direction, node in sorted((k, v) for k, v in rec.items() if isinstance(v, dict)):
        out += [f"ablation {direction}", "", _row(["attention", *head]),
                _row(["---"] * (len(head) + 1))]
        for kind in ATTENTIONS:
            for _, m in sorted(node.get(kind, {}).get("marks", {}).items()):
                out.append(_row([kind, *figures(m)]))
        out.append("")
    return "\n".join(out)


def main() -> None:
    args = parse_args()
    if args.job == "table":
        print(tables())
        return
    spec = JOBS[args.job]
    run_sfx, rec_sfx = (f"-{args.variant}", f"+{args.variant}") if args.variant else ("", "")
    if args.job == "tatoeba":
        data = DataConfig(**spec["data"], data_dir=args.data_dir)
        out = Path(args.out or RESULTS / "translate_tatoeba.json")
        run_job(args, f"tatoeba-en-fr{run_sfx}", spec, data, spec["model"], out,
                [f"en-fr{rec_sfx}"])
        if args.tune_decoding:
            tune_decoding(args, f"tatoeba-en-fr{run_sfx}", data, out, [f"en-fr{rec_sfx}"],
                          "bleu")
    elif args.job == "multi30k":
        data = DataConfig(**spec["data"], tgt_lang=args.tgt, data_dir=args.data_dir)
        out = Path(args.out or RESULTS / "translate_multi30k.json")
        run_job(args, f"multi30k-en-{args.tgt}{run_sfx}", spec, data, spec["model"], out,
                [f"en-{args.tgt}{rec_sfx}"])
        if args.tune_decoding:   # the papers' (and the goal's) metric
            tune_decoding(args, f"multi30k-en-{args.tgt}{run_sfx}", data, out,
                          [f"en-{args.tgt}{rec_sfx}"], "bleu_lc_tok")
    else:
        kinds = ATTENTIONS if args.attention == "all" else args.attention.split(",")
        bad = [k for k in kinds if k not in ATTENTIONS]
        if bad:
            sys.exit(f"--attention: unknown {bad}; expected {ATTENTIONS} or all")
        data = DataConfig(**spec["data"], tgt_lang=args.tgt, data_dir=args.data_dir)
        out = Path(args.out or RESULTS / "translate_ablation_multi30k.json")
        for kind in kinds:
            model = {**spec["model"], "attention": kind,
                     "num_heads": args.heads if kind == "multihead" else 1}
            run_job(args, f"ablation-en-{args.tgt}-{kind}", spec, data, model, out,
                    [f"en-{args.tgt}", kind])


if __name__ == "__main__":
    main()
