"""LSTM against Transformer at equal CPU time: Multi30k en->fr, test2016.

    .venv/bin/python benchmarks/bench_translate_arch.py train --arch lstm --cpu-minutes 15
    .venv/bin/python benchmarks/bench_translate_arch.py train --arch transformer --cpu-minutes 15
    .venv/bin/python benchmarks/bench_translate_arch.py report       # evaluate both, write JSON

`train` trains one run directory (under --work-dir) with one torch thread until the process has
used `--cpu-minutes` of CPU time (`TrainConfig.cpu_budget_min`: CPU seconds, not wall seconds,
so the two architectures get the same work when they share a loaded machine; dev evaluation
counts too). Started again with
the same command it resumes from the checkpoint with the CPU time still left (the CPU time of
each session is recorded in the run's `bench_cpu.json`). Run both side by side (`nice`, logs to
files); the load average is recorded at the start and end of each session.

`report` evaluates each finished run's best weights (by dev BLEU) on test2016, greedy and
beam 5 (batch 64): sacreBLEU BLEU and chrF, the lowercased-tokenised BLEU of the Multi30k papers
(`bleu_lc_tok`), decoding speed (sentences/s and output subword tokens/s over the whole call,
with the mean hypothesis length), parameters, training tokens/s (median of the 50-step log
windows) and steps, into benchmarks/results/translate_arch_multi30k.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from _common import machine_info, utc_now, write_results  # noqa: E402
from bench_translate_quality import JOBS, median_tokens_per_s  # noqa: E402
from seqlab.io import write_json_atomic  # noqa: E402
from seqlab.training.checkpoint import CHECKPOINT_FILE  # noqa: E402
from seqlab.training.loop import TrainConfig  # noqa: E402
from seqlab.translate.api import Translator  # noqa: E402
from seqlab.translate.train import DataConfig, load_run_corpus, train_translator  # noqa: E402
from seqlab.translate.transformer import TransformerConfig  # noqa: E402

OUT = HERE / "results" / "translate_arch_multi30k.json"
DATA = DataConfig(**JOBS["multi30k"]["data"], tgt_lang="fr")
# the LSTM is bench_translate_quality's Multi30k model; the Transformer is the base recipe
# scaled to the same width (d_model 256, 3 + 3 layers), with more dropout for 29k pairs
MODELS: dict[str, dict[str, Any]] = {
    "lstm": dict(JOBS["multi30k"]["model"]),
    "transformer": dict(arch="transformer", d_model=256, num_heads=4, num_encoder_layers=3,
                        num_decoder_layers=3, dim_feedforward=1024, dropout=0.3,
                        label_smoothing=0.1),
}
TRAIN: dict[str, dict[str, Any]] = {
    "lstm": dict(JOBS["multi30k"]["train"]),
    "transformer": {**JOBS["multi30k"]["train"], "lr": 1e-3, "warmup_steps": 400},
}
CPU_FILE = "bench_cpu.json"


def load() -> list[float]:
    return list(os.getloadavg())


def train(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    run = Path(args.work_dir) / args.arch
    cpu_file = run / CPU_FILE
    sessions = json.loads(cpu_file.read_text())["sessions"] if cpu_file.is_file() else []
    used = sum(s["cpu_seconds"] for s in sessions)
    left = args.cpu_minutes - used / 60
    if left <= 0:
        print(f"{run}: {used / 60:.1f} CPU minutes already used; nothing to do")
        return
    session: dict[str, Any] = {"start": utc_now(), "load_start": load()}
    cpu0, wall0 = time.process_time(), time.perf_counter()
    common = dict(progress=False, echo=lambda s: print(s, flush=True))
    overrides = {"cpu_budget_min": left, "time_budget_min": None, "threads": 1}
    if (run / CHECKPOINT_FILE).is_file():
        # the wall-clock cap is per session here: the loop's time budget counts all sessions
        summary = train_translator(run, resume=True, overrides=overrides, **common)
    else:
        run.parent.mkdir(parents=True, exist_ok=True)
        train_cfg = TrainConfig(**{**TRAIN[args.arch], "eval_sentences": args.eval_sentences},
                                keep_checkpoints=5, threads=1, cpu_budget_min=left,
                                seed=args.seed)
        model = MODELS[args.arch]
        mcfg: Any = (TransformerConfig(**{k: v for k, v in model.items() if k != "arch"})
                     if args.arch == "transformer" else model)
        summary = train_translator(run, mcfg, train_cfg, DATA, **common)
    session.update(end=utc_now(), load_end=load(), cpu_seconds=time.process_time() - cpu0,
                   wall_seconds=time.perf_counter() - wall0, steps=summary["steps"],
                   stopped=summary["stopped"])
    sessions.append(session)
    write_json_atomic(cpu_file, {"cpu_minutes_budget": args.cpu_minutes, "sessions": sessions})
    print(json.dumps(session))


def decode(tr: Translator, src: list[str], refs: list[str], beams: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    hyps = tr.translate(src, num_beams=beams, batch_size=64)
    dt = time.perf_counter() - t0
    from seqlab.text.metrics import score_corpus

    n_tok = sum(len(t) for t in tr.tok.tgt.encode([str(h) for h in hyps]))
    scores = dict(score_corpus([str(h) for h in hyps], refs, "fr"))
    scores.update(n_sentences=len(src), seconds=dt, sentences_per_s=len(src) / dt,
                  output_tokens_per_s=n_tok / dt, mean_hypothesis_tokens=n_tok / len(src))
    print(f"  beam {beams}: BLEU {scores['bleu']:.2f} chrF {scores['chrf']:.2f} lc-tok "
          f"{scores['bleu_lc_tok']:.2f}  {scores['sentences_per_s']:.1f} sent/s "
          f"{scores['output_tokens_per_s']:.0f} tok/s", flush=True)
    return scores


def report(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    corpus = load_run_corpus(DATA)
    src, refs = list(corpus.test.src), list(corpus.test.tgt)
    if args.eval_limit:
        src, refs = src[:args.eval_limit], refs[:args.eval_limit]
    record: dict[str, Any] = {
        "machine": machine_info(load_average=load()),
        "corpus": "multi30k en->fr, test_2016_flickr", "runs": {}}
    for arch in ("lstm", "transformer"):
        run = Path(args.work_dir) / arch
        if not (run / CHECKPOINT_FILE).is_file():
            print(f"{run}: not trained; skipped")
            continue
        print(arch, flush=True)
        tr = Translator.load(run, device="cpu")
        cfg = json.loads((run / "config.json").read_text())
        state = json.loads(_checkpoint_meta(run)["state"])["progress"]
        cpu = json.loads((run / CPU_FILE).read_text()) if (run / CPU_FILE).is_file() else {}
        record["runs"][arch] = {
            "model": cfg["model"], "train": cfg["train"],
            "parameters": sum(p.numel() for p in tr.model.parameters()),
            "steps": state["step"], "best_dev_bleu": state["best_bleu"],
            "train_cpu_seconds": sum(s["cpu_seconds"] for s in cpu.get("sessions", [])),
            "train_wall_seconds": sum(s["wall_seconds"] for s in cpu.get("sessions", [])),
            "sessions": cpu.get("sessions", []),
            "train_tokens_per_s_median": median_tokens_per_s(run),
            "test_beam1": decode(tr, src, refs, 1), "test_beam5": decode(tr, src, refs, 5)}
    write_results(args.out, record)
    print(f"wrote {args.out}")


def _checkpoint_meta(run: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(run / CHECKPOINT_FILE), framework="pt") as f:
        return dict(f.metadata() or {})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["train", "report"])
    p.add_argument("--arch", choices=sorted(MODELS), default="lstm")
    p.add_argument("--cpu-minutes", type=float, default=15.0)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--eval-sentences", type=int, default=1014,
                   help="dev sentences of the periodic BLEU (short runs: fewer)")
    p.add_argument("--eval-limit", type=int, default=None, help="smoke runs: fewer test pairs")
    p.add_argument("--work-dir", default=str(REPO / "runs" / "bench_translate_arch"))
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    train(args) if args.command == "train" else report(args)


if __name__ == "__main__":
    main()
