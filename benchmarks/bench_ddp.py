"""Training throughput in one process and in several (DistributedDataParallel over gloo, CPU).

    .venv/bin/python benchmarks/bench_ddp.py                       # 3 runs of 75 s, Multi30k en->fr
    .venv/bin/python benchmarks/bench_ddp.py --seconds 20 --corpus multi30k --train-limit 3000

Three translator trainings with the same settings and the same global batch (`--batch-tokens`,
default 4096 padded tokens per optimizer step), each for `--seconds` of training wall time
(`--time-budget`, counted from the first batch; the tokenizer and data loading are not
included): 1 process x 1 thread, 1 process x 2 threads, and `torchrun --nproc-per-node 2` with
1 thread per process (each process computes half of every batch; the gradients are averaged
over gloo). The figure is target tokens (subwords + EOS) per second over the whole budget,
the loop's `train_tokens_per_s`. The load average of the machine is recorded before and after
each run: on a machine shared with other jobs, the figures move with it.

Each run is this script started again as a worker (`--worker`), under torchrun for the
2-process run; rank 0 writes the summary to the work directory. Result:
benchmarks/results/ddp_cpu.json. GPU scaling (NCCL) is not measured by this script's
defaults; `--device cuda --nproc 2` runs the same comparison on a machine with 2 GPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import REPO, RESULTS, machine_info, write_results


def _worker(args: argparse.Namespace) -> None:
    from seqlab.translate.corpora import load_corpus
    from seqlab.translate.train import DataConfig, TrainConfig, train_translator

    corpus = None
    if args.train_limit:
        corpus = load_corpus(args.corpus, "en", args.tgt, data_dir=args.data_dir)
        corpus.train = corpus.train.subset(range(min(args.train_limit, len(corpus.train))))
    summary = train_translator(
        args.out, None,
        TrainConfig(batch_tokens=args.batch_tokens, time_budget_min=args.seconds / 60,
                    eval_every=10**9, eval_sentences=args.eval_sentences, threads=args.threads,
                    device=args.device, log_every=20),
        DataConfig(corpus=args.corpus, tgt_lang=args.tgt, data_dir=args.data_dir,
                   vocab_size=8000),
        progress=False, corpus=corpus, echo=lambda s: None)
    if summary["rank"] == 0:
        Path(args.out, "bench_summary.json").write_text(json.dumps(summary), encoding="utf-8")


def _run(name: str, nproc: int, threads: int, args: argparse.Namespace,
         work: Path) -> dict[str, Any]:
    out = work / name
    if out.exists():
        import shutil
        shutil.rmtree(out)
    worker = [str(Path(__file__).resolve()), "--worker", "--out", str(out), "--threads",
              str(threads), "--seconds", str(args.seconds), "--corpus", args.corpus, "--tgt",
              args.tgt, "--batch-tokens", str(args.batch_tokens), "--device", args.device,
              "--eval-sentences", str(args.eval_sentences), "--train-limit",
              str(args.train_limit)]
    if args.data_dir:
        worker += ["--data-dir", args.data_dir]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", str(nproc), *worker]
    else:
        cmd = [sys.executable, *worker]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                          timeout=args.seconds * 4 + 600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    summary = json.loads((out / "bench_summary.json").read_text(encoding="utf-8"))
    rec = {"name": name, "processes": nproc, "threads_per_process": threads,
           "train_tokens_per_s": summary["train_tokens_per_s"], "steps": summary["steps"],
           "train_seconds": summary["seconds"], "wall_seconds_with_startup": wall,
           "load_average_1_5_15_before": list(load_before),
           "load_average_1_5_15_after": list(os.getloadavg())}
    print(json.dumps(rec), flush=True)
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=75.0)
    ap.add_argument("--corpus", default="multi30k")
    ap.add_argument("--tgt", default="fr")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--batch-tokens", type=int, default=4096)
    ap.add_argument("--eval-sentences", type=int, default=20)
    ap.add_argument("--train-limit", type=int, default=0, help="only the first N pairs (0: all)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--work-dir", default=str(REPO / "runs" / "bench_ddp"))
    ap.add_argument("--out-json", default=str(RESULTS / "ddp_cpu.json"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker(args)
        return
    work = Path(args.work_dir)
    runs = [_run("1proc_1thread", 1, 1, args, work),
            _run(f"1proc_{args.nproc}threads", 1, args.nproc, args, work),
            _run(f"{args.nproc}proc_1thread", args.nproc, 1, args, work)]
    base = runs[0]["train_tokens_per_s"]
    record = {"benchmark": "ddp_cpu", "machine": machine_info(),
              "settings": {"corpus": args.corpus, "direction": f"en->{args.tgt}",
                           "seconds": args.seconds, "batch_tokens_global": args.batch_tokens,
                           "train_limit": args.train_limit or None, "device": args.device,
                           "model": "translate train defaults (256-wide, additive attention)"},
              "runs": runs,
              "speedup_vs_1proc_1thread": {r["name"]: r["train_tokens_per_s"] / base
                                           for r in runs}}
    print(json.dumps(record["speedup_vs_1proc_1thread"]))
    write_results(args.out_json, record)


if __name__ == "__main__":
    main()
