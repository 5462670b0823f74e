"""LSTM against Transformer at equal CPU minutes: Tatoeba en->fr, Multi30k en->fr and en->de.

    python benchmarks/bench_translate_arch.py train --job multi30k-fr --arch transformer
    python benchmarks/bench_translate_arch.py train --job tatoeba --arch lstm --marks 15,30,60
    python benchmarks/bench_translate_arch.py combine --job tatoeba   # averaging, ensemble at 60
    python benchmarks/bench_translate_arch.py table        # the Markdown table of the results

`train` trains one run (runs/bench_translate_arch/JOB-ARCH) on one torch thread to each mark
in turn (CPU minutes of the training process, evaluation of the dev split included:
`TrainConfig.cpu_budget_min`, so runs sharing a loaded machine get the same work), and at each
mark evaluates the best weights so far (by dev BLEU) on the job's test split, greedy and beam 5
(batch 64): sacreBLEU BLEU and chrF, the lowercased-tokenised BLEU of the Multi30k papers
(`bleu_lc_tok`), decoding speed (sentences and output subword tokens per wall second and per
CPU second of the whole call, with the mean hypothesis length), parameters, steps and training
tokens/s (median of the log's 50-step windows, wall time). Results go to
benchmarks/results/translate_arch.json (under a file lock, so several jobs may run side by
side) as soon as each mark is evaluated. The table reports training speed as optimizer steps
per CPU minute (both architectures draw the same 4096-token batches) and decoding speed per
CPU second, the figures a reniced run beside other jobs does not distort.

`combine`, once a job's runs reached the last mark: each run's best weights decoded again for
speed, the mean of its last `--average` weight snapshots, and the LSTM + Transformer ensemble.

Resumable across sessions: started again with the same command it skips the marks already in
the results and continues the run from its checkpoint with the CPU minutes still left to the
next mark (the loop's CPU time is kept in the checkpoint, so a sitting killed between
checkpoints loses only its uncounted work; each sitting is logged in the run's bench_cpu.json).
The learning rate has no decay tied to a total budget (warmup, then constant), so a run at
15 minutes is the same run that later reaches 60: each mark is "what this much CPU time buys".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from _common import RESULTS, machine_info, utc_now  # noqa: E402
from bench_translate_quality import JOBS, locked, median_tokens_per_s  # noqa: E402
from seqlab.io import write_json_atomic  # noqa: E402
from seqlab.text.metrics import score_corpus  # noqa: E402
from seqlab.training.checkpoint import (  # noqa: E402
    CHECKPOINT_FILE,
    checkpoint_progress,
    snapshot_paths,
)
from seqlab.training.loop import TrainConfig  # noqa: E402
from seqlab.translate.api import Translator  # noqa: E402
from seqlab.translate.train import DataConfig, load_run_corpus, train_translator  # noqa: E402
from seqlab.translate.transformer import TransformerConfig  # noqa: E402

OUT = RESULTS / "translate_arch.json"
CPU_FILE = "bench_cpu.json"
MARKS = [15.0, 30.0, 60.0]

# Data and LSTM settings are bench_translate_quality's (the README's earlier tables).
DATASETS: dict[str, dict[str, Any]] = {
    "tatoeba": {"data": JOBS["tatoeba"]["data"], "base": "tatoeba"},
    "multi30k-fr": {"data": {**JOBS["multi30k"]["data"], "tgt_lang": "fr"}, "base": "multi30k"},
    "multi30k-de": {"data": {**JOBS["multi30k"]["data"], "tgt_lang": "de"}, "base": "multi30k"},
}


def model_and_train(job: str, arch: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (model, train) settings of one job and architecture."""
    base = JOBS[DATASETS[job]["base"]]
    if arch == "lstm":
        return dict(base["model"]), dict(base["train"])
    if arch == "lstm512":   # the wider LSTM: 512 units everywhere, same recipe
        model = {**base["model"], "embedding_dim": 512, "encoder_hidden_size": 512,
                 "decoder_hidden_size": 512}
        return model, dict(base["train"])
    # the Transformer: the base recipe scaled to the LSTM's width (d_model 256, 3 + 3 layers,
    # pre-norm); more dropout on the 29k Multi30k pairs than on Tatoeba's 135k
    dropout = 0.3 if base is JOBS["multi30k"] else 0.1
    model = dict(arch="transformer", d_model=256, num_heads=4, num_encoder_layers=3,
                 num_decoder_layers=3, dim_feedforward=1024, dropout=dropout,
                 label_smoothing=0.1)
    # warmup as the LSTM's (200 steps): at one thread a 4096-token Transformer step costs a few
    # CPU seconds, so 60 CPU minutes are only about a thousand steps
    return model, {**base["train"], "lr": 1e-3}


ARCHS = ("lstm", "lstm512", "transformer")


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def used_cpu_minutes(run: Path) -> tuple[float, list[dict[str, Any]]]:
    """CPU minutes of the run's training loop so far, as of its checkpoint (a sitting killed
    between checkpoints loses its work since the last one, and that time is not counted),
    and the sittings recorded."""
    f = run / CPU_FILE
    sessions = json.loads(f.read_text())["sessions"] if f.is_file() else []
    prog = checkpoint_progress(run) or {}
    return prog.get("cpu_seconds", 0.0) / 60, sessions


SNAPSHOT_EVERY = 50


def train_to(run: Path, job: str, arch: str, mark: float, corpus: Any, seed: int,
             eval_sentences: int | None) -> dict[str, Any] | None:
    """Train `run` until it has used `mark` CPU minutes; None when it already has."""
    used, sessions = used_cpu_minutes(run)
    left = mark - used
    if left <= 0.05:
        return None
    session: dict[str, Any] = {"start": utc_now(), "load_start": load(), "to_mark": mark}
    cpu0, wall0 = time.process_time(), time.perf_counter()
    common: dict[str, Any] = dict(progress=False, echo=lambda s: print(s, flush=True),
                                  corpus=corpus)
    # a snapshot every SNAPSHOT_EVERY steps: the last 5 (averaged by `combine`) lie close
    # together at the run's end (runs begun before this setting take it on their next resume)
    overrides = {"cpu_budget_min": left, "time_budget_min": None, "threads": 1,
                 "snapshot_every": SNAPSHOT_EVERY}
    if (run / CHECKPOINT_FILE).is_file():
        summary = train_translator(run, resume=True, overrides=overrides, **common)
    else:
        if run.exists():   # killed before its first checkpoint: nothing to continue
            shutil.rmtree(run)
        run.parent.mkdir(parents=True, exist_ok=True)
        model, train = model_and_train(job, arch)
        if eval_sentences:
            train["eval_sentences"] = eval_sentences
        train_cfg = TrainConfig(**train, keep_checkpoints=5, snapshot_every=SNAPSHOT_EVERY,
                                threads=1, cpu_budget_min=left,
                                seed=seed, max_epochs=1000)
        mcfg: Any = (TransformerConfig(**{k: v for k, v in model.items() if k != "arch"})
                     if arch == "transformer" else model)
        summary = train_translator(run, mcfg, train_cfg, DataConfig(**DATASETS[job]["data"]),
                                   **common)
    # the loop's CPU time (what the budget counts); preparing data and tokenizer is not training
    session.update(end=utc_now(), load_end=load(), cpu_seconds=summary["cpu_seconds"],
                   process_cpu_seconds=time.process_time() - cpu0,
                   wall_seconds=time.perf_counter() - wall0, steps=summary["steps"],
                   stopped=summary["stopped"])
    sessions.append(session)
    write_json_atomic(run / CPU_FILE, {"sessions": sessions})
    print(json.dumps(session), flush=True)
    return summary


def decode(tr: Translator, src: list[str], refs: list[str], beams: int) -> dict[str, Any]:
    """Test scores and decoding speed (one thread): per wall second, and per CPU second of the
    process, which a run sharing a loaded machine (or reniced) does not distort."""
    t0, c0 = time.perf_counter(), time.process_time()
    hyps = [str(h) for h in tr.translate(src, num_beams=beams, batch_size=64)]
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    n_tok = sum(len(t) for t in tr.tok.tgt.encode(hyps))
    scores = dict(score_corpus(hyps, refs, tr.tgt_lang))
    scores.update(n_sentences=len(src), seconds=dt, sentences_per_s=len(src) / dt,
                  output_tokens_per_s=n_tok / dt, cpu_seconds=dc,
                  sentences_per_cpu_s=len(src) / dc, output_tokens_per_cpu_s=n_tok / dc,
                  mean_hypothesis_tokens=n_tok / len(src))
    print(f"  beam {beams}: BLEU {scores['bleu']:.2f} chrF {scores['chrf']:.2f} lc-tok "
          f"{scores['bleu_lc_tok']:.2f}  {scores['sentences_per_cpu_s']:.1f} sent/CPU-s "
          f"{scores['output_tokens_per_cpu_s']:.0f} tok/CPU-s", flush=True)
    return scores


def evaluate(run: Path, corpus: Any, limit: int | None) -> dict[str, Any]:
    src, refs = list(corpus.test.src), list(corpus.test.tgt)
    if limit:
        src, refs = src[:limit], refs[:limit]
    tr = Translator.load(run, device="cpu")
    used, sessions = used_cpu_minutes(run)
    prog = checkpoint_progress(run) or {}
    return {
        "date": utc_now(), "cpu_minutes": used, "steps": prog.get("step"),
        "best_dev_bleu_greedy": prog.get("best_bleu"),
        "wall_minutes": sum(s["wall_seconds"] for s in sessions) / 60,
        "load_average": [s.get("load_start") for s in sessions],
        "train_tokens_per_s_median": median_tokens_per_s(run),
        "test_beam1": decode(tr, src, refs, 1), "test_beam5": decode(tr, src, refs, 5)}


def train(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    job, arch = args.job, args.arch
    key = f"{job}-{arch}"
    run = Path(args.work_dir) / key
    marks = sorted(float(m) for m in args.marks.split(","))
    data = DataConfig(**DATASETS[job]["data"])
    corpus = load_run_corpus(data)
    out = Path(args.out)
    for mark in marks:
        with locked(out) as rec:
            if f"{mark:g}" in rec.get("runs", {}).get(key, {}).get("marks", {}):
                print(f"{key}: mark {mark:g} CPU min already in {out.name}", flush=True)
                continue
        print(f"{key}: training to {mark:g} CPU minutes", flush=True)
        summary = train_to(run, job, arch, mark, corpus, args.seed, args.eval_sentences)
        stopped = summary["stopped"] if summary else "cpu_budget"
        entry = evaluate(run, corpus, args.eval_limit)
        entry["stopped"] = stopped
        cfg = json.loads((run / "config.json").read_text())
        with locked(out) as rec:
            rec["benchmark"] = "translate_arch"
            rec["doc"] = __doc__.split("\n\n")[2].replace("\n", " ")
            node = rec.setdefault("runs", {}).setdefault(key, {})
            node.update(job=job, arch=arch, machine=machine_info(threads=1),
                        config={k: cfg[k] for k in ("model", "train", "data")},
                        parameters=cfg.get("num_parameters"),
                        run_dir=str(run.relative_to(REPO) if run.is_relative_to(REPO) else run))
            node.setdefault("marks", {})[f"{mark:g}"] = entry
        if stopped in ("early_stopping", "max_epochs"):
            print(f"{key}: {stopped}; later marks would not change", flush=True)
            break


def combine(args: argparse.Namespace) -> None:
    """Checkpoint averaging and ensembles at the job's last mark, on the test split (beam 5):
    each finished run's mean of its last `--average` snapshots (what `Translator.load(run,
    average=k)` decodes), the ensemble of its LSTM and Transformer and that of all its finished
    runs (best weights, their log-probabilities averaged per step). Results go to the JSON's
    "combined" entry of the job; a run that has not reached the mark is left out and said so."""
    torch.set_num_threads(1)
    job, mark = args.job, f"{max(float(m) for m in args.marks.split(',')):g}"
    corpus = load_run_corpus(DataConfig(**DATASETS[job]["data"]))
    src, refs = list(corpus.test.src), list(corpus.test.tgt)
    if args.eval_limit:
        src, refs = src[:args.eval_limit], refs[:args.eval_limit]
    rec = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    ready = [a for a in ARCHS if mark in rec.get("runs", {}).get(f"{job}-{a}", {}).get("marks", {})]
    missing = sorted(set(ARCHS) - set(ready))
    if missing:
        print(f"{job}: not at mark {mark} yet: {', '.join(missing)}", flush=True)
    runs = {a: Path(args.work_dir) / f"{job}-{a}" for a in ready}
    results: dict[str, Any] = {}
    for arch, run in runs.items():
        # the run's own evaluation timed wall seconds in earlier versions: decoding speed again,
        # per CPU second (the same weights, so the same scores)
        print(f"{job}-{arch}: best weights, decoding speed", flush=True)
        tr = Translator.load(run, device="cpu")
        results[f"{arch}:best"] = {"arch": arch, "test_beam1": decode(tr, src, refs, 1),
                                   "test_beam5": decode(tr, src, refs, 5)}
        k = min(args.average, len(snapshot_paths(run)))
        if k < 2:
            print(f"{job}-{arch}: {k} snapshot(s), nothing to average", flush=True)
            continue
        print(f"{job}-{arch}: mean of the last {k} snapshots", flush=True)
        steps = [p.stem for p in snapshot_paths(run)[-k:]]
        results[f"{arch}:average{k}"] = {
            "arch": arch, "average": k, "snapshots": steps,
            "test_beam5": decode(Translator.load(run, average=k, device="cpu"), src, refs, 5)}
    # the LSTM with the Transformer, and every finished run together (their best weights)
    for members in (["lstm", "transformer"], list(runs)):
        name = "+".join(members)
        if len(members) < 2 or not set(members) <= set(runs) or name in results:
            continue
        print(f"{job}: ensemble {' + '.join(members)}", flush=True)
        tr = Translator.load(runs[members[0]], device="cpu",
                             ensemble=[runs[a] for a in members[1:]])
        results[name] = {"ensemble": members, "test_beam5": decode(tr, src, refs, 5)}
    with locked(Path(args.out)) as out:
        node = out.setdefault("combined", {}).setdefault(job, {})
        node.update(mark=float(mark), date=utc_now(), machine=machine_info(threads=1),
                    doc=(combine.__doc__ or "").replace("\n", " "),
                    results={**node.get("results", {}), **results})


def table(path: Path = OUT) -> str:
    """Two Markdown tables: quality at each mark (test, beam 5; training speed as optimizer
    steps per CPU minute, the batches being the same token budget for both architectures), and
    at the last mark the decoding speed per CPU second, checkpoint averaging and ensembles."""
    rec = json.loads(path.read_text())
    lines = ["| data | model | params | CPU min | steps | steps / CPU min | BLEU | chrF "
             "| lc BLEU |", "|" + "---|" * 9]
    for _key, node in sorted(rec.get("runs", {}).items()):
        for mark, m in sorted(node["marks"].items(), key=lambda kv: float(kv[0])):
            b = m["test_beam5"]
            lines.append(
                f"| {node['job']} | {node['arch']} | {node['parameters'] / 1e6:.1f}M | {mark} "
                f"| {m['steps']} | {m['steps'] / m['cpu_minutes']:.1f} | {b['bleu']:.1f} "
                f"| {b['chrf']:.1f} | {b['bleu_lc_tok']:.1f} |")
    combined = rec.get("combined", {})
    if combined:
        lines += ["", "| data | at CPU min | decoded with | BLEU | chrF | lc BLEU | greedy "
                  "sent / CPU s | beam-5 sent / CPU s | beam-5 tokens / CPU s |",
                  "|" + "---|" * 9]
        for job, node in sorted(combined.items()):
            for _, r in sorted(node["results"].items()):
                b, g = r["test_beam5"], r.get("test_beam1")
                steps = [int(x.split("-")[-1]) for x in r.get("snapshots", [])]
                what = (f"{r['arch']}, mean of its last {r['average']} snapshots (steps "
                        f"{', '.join(map(str, steps))})"
                        if "average" in r else "ensemble: " + " + ".join(r["ensemble"])
                        if "ensemble" in r else f"{r['arch']}, best weights")
                greedy = f"{g['sentences_per_cpu_s']:.0f}" if g else ""
                lines.append(f"| {job} | {node['mark']:g} each | {what} | {b['bleu']:.1f} "
                             f"| {b['chrf']:.1f} | {b['bleu_lc_tok']:.1f} | {greedy} "
                             f"| {b['sentences_per_cpu_s']:.0f} "
                             f"| {b['output_tokens_per_cpu_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["train", "combine", "table"])
    p.add_argument("--job", choices=sorted(DATASETS), default="multi30k-fr")
    p.add_argument("--arch", choices=ARCHS, default="lstm")
    p.add_argument("--marks", default=",".join(f"{m:g}" for m in MARKS),
                   help="CPU minutes at which to evaluate")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--eval-sentences", type=int, default=None,
                   help="dev sentences of the periodic BLEU (default: the job's)")
    p.add_argument("--eval-limit", type=int, default=None, help="smoke runs: fewer test pairs")
    p.add_argument("--work-dir", default=str(REPO / "runs" / "bench_translate_arch"))
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--average", type=int, default=5,
                   help="combine: average the last this many snapshots")
    args = p.parse_args()
    if args.command == "train":
        train(args)
    elif args.command == "combine":
        combine(args)
    else:
        print(table(Path(args.out)))


if __name__ == "__main__":
    main()
