"""seqlab's translator against Joey NMT 2.3.0: same data, tokenizer, model size and CPU budget.

    .venv/bin/python benchmarks/bench_translate_peer.py --minutes 15          # the full run
    .venv/bin/python benchmarks/bench_translate_peer.py --minutes 1 \
        --train-limit 5000 --eval-limit 200 --calib-seconds 20                # a smoke run

One run does everything, in this order:

1. Machine: CPU model, torch version, and the float32 matmul peak (1024x1024x1024 loop, 1 and 2
   threads), the yardstick for the model's achieved GFLOP/s.
2. Data: `load_corpus` (default tatoeba-fra-eng, en->fr; seqlab's deterministic grouped split),
   ONE shared sentencepiece model (seqlab's `TokenizerPair.train_pair`, 8k) trained on the
   training split, seqlab's length filter (both sides 1..100 subwords). Joey gets plain-text
   files of exactly these pairs plus that sentencepiece model and its pieces as vocabulary
   (benchmarks/peer/joey_config.py).
3. Joey NMT (a separate Python environment, `--joey-python`): a short training with 1 and with
   2 threads picks the faster setting (`--joey-threads auto`), then Joey trains for `--minutes`
   of wall clock counted from its first batch and is stopped with SIGINT (Joey saves its weights
   on KeyboardInterrupt). Like seqlab, it validates every 500 steps with greedy BLEU on the
   first 500 dev pairs; the evaluated checkpoint is the better of its best-validation and its
   final weights by that dev-500 BLEU (what seqlab's training does at its end).
4. seqlab: the same thread calibration (`--seqlab-threads auto`, on a 20k-pair sample), then
   `train_translator` with the same corpus object and budget (its time budget also counts from
   the first batch and includes its periodic dev evaluations).
5. Evaluation, interleaved system by system: dev and test, greedy and beam 5, batch 64
   sentences; hypotheses are scored by seqlab's `score_corpus` (sacreBLEU BLEU and chrF on
   detokenised text against the original references) for both systems; decoding speed is
   sentences / wall seconds of the decode call (tokenise + search + detokenise).

Training speed is target tokens per second (subwords + EOS, what both systems count): the
median over each system's logging windows (50 steps; windows exclude validation time; the first
window is dropped as warm-up), and also the total over the whole budget including validation.

Achieved GFLOP/s = training FLOPs per target token (`train_flops_per_target_token`, an analytic
count documented there) x target tokens/s, reported as a share of the measured matmul peak with
the same number of threads.

The result goes to benchmarks/results/translate_peer_<corpus>.json (machine, commands, both
configs, all figures); working files (Joey's data, checkpoints and logs; seqlab's run directory)
go under --work-dir (default runs/bench_translate_peer/, git-ignored).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from _common import cpu_model, git_state, utc_now, write_results  # noqa: E402
from peer.joey_config import (  # noqa: E402
    JoeySettings,
    joey_config,
    settings_dict,
    write_config,
    write_parallel,
    write_vocab,
)

JOEY_PIP_STEPS = [["torch==2.13.0"],
                  ["joeynmt==2.3.0", "importlib_metadata", "sentencepiece==0.2.0", "sacrebleu"]]
JOEY_DECODE = HERE / "peer" / "joey_decode.py"
EVAL_JOBS = [("dev", 1), ("dev", 5), ("test", 1), ("test", 5)]
DEV_SMALL = 500            # dev pairs used for validation during training (as seqlab's default)
MAX_LEN = 100              # seqlab's DataConfig.max_len: training pairs with a longer side dropped


# ---- machine -------------------------------------------------------------------------------


def matmul_peak(threads: int, n: int = 1024, seconds: float = 3.0) -> dict[str, float]:
    """float32 (n x n) @ (n x n) in a loop with `threads` threads: GFLOP/s (2 n^3 per matmul).

    Returns the best and the median over rounds of 4 matmuls; the best is the peak.
    """
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        a = torch.randn(n, n, generator=g)
        b = torch.randn(n, n, generator=g)
        out = torch.empty(n, n)
        for _ in range(3):
            torch.mm(a, b, out=out)
        rates = []
        t_end = time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            t0 = time.perf_counter()
            for _ in range(4):
                torch.mm(a, b, out=out)
            rates.append(4 * 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    finally:
        torch.set_num_threads(prev)
    return {"threads": threads, "gflops_peak": max(rates),
            "gflops_median": statistics.median(rates), "rounds": len(rates)}


def train_flops_per_target_token(model_cfg: dict[str, Any], src_lens: Sequence[int],
                                 tgt_lens: Sequence[int]) -> dict[str, float]:
    """Training FLOPs per target token of the attention LSTM translator, counted analytically.

    src_lens: (N,) source positions per training pair (subwords + EOS); tgt_lens: (N,) target
    positions (subwords + EOS). With E = embedding size, He = encoder hidden per direction,
    Hd = decoder hidden, A = additive-attention size, V = target vocabulary, the multiply-adds
    (MACs) of one forward pass over a pair of S source and T target positions are

        encoder  S * 2 * 4He(E + He)        bidirectional LSTM, input and recurrent matmuls
        keys     S * 2He * A                additive attention's key projection (once)
        bridge   2He * 2Hd                  (h0, c0) from the final encoder states
        decoder  T * ( 4Hd(E + 2Hd)         LSTM cell on [embedding; attentional vector]
                     + Hd * A               query projection
                     + S * (A + 2He)        scores v . tanh(q + k_s), then the context sum
                     + (Hd + 2He) * Hd      attentional vector tanh(W_c [h; ctx])
                     + Hd * V )             vocabulary projection

    and training costs 3 forward passes (the backward pass is about twice the forward) at 2
    FLOPs per MAC: FLOPs = 6 * MACs. Summed over the training set and divided by the number of
    target positions. Element-wise work (gates, tanh, softmax, loss) and embedding lookups are
    not counted, so the achieved GFLOP/s derived from this is a slight underestimate.
    Checked against `torch.utils.flop_counter.FlopCounterMode` on seqlab's Seq2Seq (forward +
    backward, B=16, S=12, T=13): everything but the encoder agrees to 0.1% (the counter does not
    see the fused LSTM kernel, whose count is the standard 4H(I + H) MACs per step).
    """
    if model_cfg.get("attention", "additive") != "additive":
        raise ValueError("train_flops_per_target_token: only the additive attention is counted")
    E, He = model_cfg["embedding_dim"], model_cfg["encoder_hidden_size"]
    Hd = model_cfg["decoder_hidden_size"]
    A = model_cfg.get("attn_dim") or Hd
    V = model_cfg["tgt_vocab_size"]
    if model_cfg.get("num_encoder_layers", 1) != 1:
        raise ValueError("train_flops_per_target_token: only a 1-layer encoder is counted")
    enc_per_src = 2 * 4 * He * (E + He) + 2 * He * A
    dec_fixed = 4 * Hd * (E + 2 * Hd) + Hd * A + (Hd + 2 * He) * Hd + Hd * V
    dec_per_src = A + 2 * He
    macs = 0
    for S, T in zip(src_lens, tgt_lens, strict=True):
        macs += S * enc_per_src + 2 * He * 2 * Hd + T * (dec_fixed + S * dec_per_src)
    n_tgt = sum(tgt_lens)
    return {"train_flops_per_target_token": 6 * macs / n_tgt,
            "forward_macs_per_target_token": macs / n_tgt,
            "vocab_projection_share": Hd * V * n_tgt / macs,
            "mean_src_positions": sum(src_lens) / len(src_lens),
            "mean_tgt_positions": n_tgt / len(tgt_lens)}


# ---- Joey's environment ----------------------------------------------------------------------


def ensure_joey_python(arg: str | None) -> tuple[str, list[str]]:
    """The Python of Joey's separate environment; creates benchmarks/.venv-joey if needed.

    Returns (path, commands run to create it, if any).
    """
    path = arg or os.environ.get("JOEY_PYTHON") or str(HERE / ".venv-joey" / "bin" / "python")
    made: list[str] = []
    if not Path(path).exists():
        if arg or os.environ.get("JOEY_PYTHON"):
            sys.exit(f"--joey-python {path}: no such file")
        venv = HERE / ".venv-joey"
        cmds = [[sys.executable, "-m", "venv", str(venv)]]
        cmds += [[str(venv / "bin" / "pip"), "install", *pkgs] for pkgs in JOEY_PIP_STEPS]
        for cmd in cmds:
            print("+", shlex.join(cmd), flush=True)
            subprocess.run(cmd, check=True)
            made.append(shlex.join(cmd))
    return path, made


def joey_version(joey_python: str) -> dict[str, str]:
    code = ("import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in "
            "['joeynmt', 'torch', 'sentencepiece', 'sacrebleu']}))")
    out = subprocess.run([joey_python, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


# ---- Joey training and decoding --------------------------------------------------------------

_TOKS_RE = re.compile(r"Step:\s+(\d+),.*Tokens per Sec:\s+([\d.]+)")


def joey_env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "PYTHONUNBUFFERED": "1"}


def _default_sigint() -> None:
    """In the child, before exec: SIGINT raises KeyboardInterrupt again (Joey saves on it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def decode_speed(hyps: Sequence[str], seconds: float, tok: Any) -> dict[str, float]:
    """Sentences/s, output subword tokens/s (the shared sentencepiece model, EOS not counted)
    and the mean hypothesis length: per-sentence rates compare unequal work when one system
    writes longer hypotheses."""
    n_tok = sum(len(t) for t in tok.tgt.encode(list(hyps)))
    return {"seconds": seconds, "sentences_per_s": len(hyps) / seconds,
            "output_tokens_per_s": n_tok / seconds,
            "mean_hypothesis_tokens": n_tok / max(1, len(hyps))}


def seqlab_padded_target_tokens(src_lens: Sequence[int], tgt_lens: Sequence[int], steps: int,
                                seed: int, batch_tokens: int = 4096) -> int:
    """Padded target positions (B x max(T + 1)) of seqlab's first `steps` batches, replayed
    with the training loop's batching (seqlab.text.batching.make_batches, per epoch)."""
    from seqlab.text.batching import make_batches

    total, epoch, left = 0, 0, steps
    while left > 0:
        for rows in make_batches(src_lens, tgt_lens, max_tokens=batch_tokens, seed=seed,
                                 epoch=epoch)[:left]:
            total += len(rows) * (max(tgt_lens[i] for i in rows) + 1)
            left -= 1
        epoch += 1
    return total


def run_joey_train(joey_python: str, cfg_path: Path, threads: int, budget_s: float,
                   log_path: Path, start_timeout_s: float = 900.0) -> dict[str, Any]:
    """Train Joey for `budget_s` seconds of wall clock after its first batch, then SIGINT it.

    Joey catches KeyboardInterrupt and saves the current weights (latest.ckpt). Returns the
    command, startup and training wall times and the logged (step, tokens/s) windows.
    """
    # torch takes its thread count from OMP_NUM_THREADS (see joey_env)
    cmd = [joey_python, "-m", "joeynmt", "train", str(cfg_path), "--skip-test"]
    t_launch = time.monotonic()
    # default SIGINT handling in the child: launched in the background (`cmd &`), this process
    # inherits SIGINT as ignored, and so would Joey, which then never sees the end-of-budget
    # SIGINT (exec keeps ignored signals ignored)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            encoding="utf-8", errors="replace", env=joey_env(threads),
                            preexec_fn=_default_sigint)
    assert proc.stdout is not None
    started = threading.Event()
    state: dict[str, Any] = {"t_start": None, "windows": []}

    def reader() -> None:
        with open(log_path, "w", encoding="utf-8") as log:
            for line in proc.stdout:
                log.write(line)
                if not started.is_set() and "EPOCH 1" in line:
                    state["t_start"] = time.monotonic()
                    started.set()
                m = _TOKS_RE.search(line)
                if m:
                    state["windows"].append({"step": int(m[1]), "tokens_per_s": float(m[2])})

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    while not started.wait(0.5):
        if proc.poll() is not None:
            raise RuntimeError(f"Joey exited ({proc.returncode}) before training; see {log_path}")
        if time.monotonic() - t_launch > start_timeout_s:
            proc.kill()
            raise RuntimeError(f"Joey did not start training in {start_timeout_s:.0f} s")
    deadline = state["t_start"] + budget_s
    while (left := deadline - time.monotonic()) > 0 and proc.poll() is None:
        time.sleep(min(left, 0.5))
    t_stop = time.monotonic()
    ended_early = proc.poll() is not None
    if not ended_early:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=600)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    th.join(timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"Joey training failed ({proc.returncode}); see {log_path}")
    env = f"OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
    return {"command": env + shlex.join(cmd),
            "threads": threads, "startup_s": state["t_start"] - t_launch,
            "train_wall_s": t_stop - state["t_start"], "ended_before_budget": ended_early,
            "shutdown_s": time.monotonic() - t_stop, "windows": state["windows"],
            "log": str(log_path)}


def joey_decode(joey_python: str, cfg_path: Path, ckpt: Path, threads: int,
                jobs: Sequence[tuple[str, int]], out: Path, stats_only: bool = False
                ) -> dict[str, Any]:
    cmd = [joey_python, str(JOEY_DECODE), "--config", str(cfg_path), "--ckpt", str(ckpt),
           "--threads", str(threads), "--batch-size", "64", "--out", str(out)]
    cmd += [a for split, beam in jobs for a in ("--job", f"{split}:{beam}")]
    if stats_only:
        cmd.append("--stats-only")
    res = subprocess.run(cmd, env=joey_env(threads), capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"Joey decoding failed ({res.returncode}):\n{res.stderr[-3000:]}")
    result = json.loads(out.read_text(encoding="utf-8"))
    result["command"] = shlex.join(cmd)
    return result


def window_rate(rates: Sequence[float]) -> float | None:
    """Median tokens/s over logging windows, the first (warm-up) one dropped when others exist."""
    rates = list(rates[1:] if len(rates) > 1 else rates)
    return statistics.median(rates) if rates else None


# ---- the benchmark ---------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="tatoeba-fra-eng")
    ap.add_argument("--src", default="en")
    ap.add_argument("--tgt", default="fr")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--seed", type=int, default=1234, help="split, tokenizer, init, data order")
    ap.add_argument("--minutes", type=float, default=15.0, help="training budget per system")
    ap.add_argument("--vocab-size", type=int, default=8000)
    ap.add_argument("--joey-python", default=None,
                    help="Joey's Python (default: $JOEY_PYTHON, else benchmarks/.venv-joey, "
                         "created if missing)")
    ap.add_argument("--joey-threads", default="auto", choices=["auto", "1", "2"],
                    help="auto: a short training with 1 and 2 threads picks the faster")
    ap.add_argument("--calib-seconds", type=float, default=60.0,
                    help="training seconds per thread setting in the Joey calibration")
    ap.add_argument("--joey-lr", type=float, default=JoeySettings.lr,
                    help="Joey's (constant) Adam learning rate; default = seqlab's peak lr")
    ap.add_argument("--seqlab-threads", default="auto", choices=["auto", "1", "2"],
                    help="auto: the same calibration as for Joey (on a 20k-pair sample)")
    ap.add_argument("--train-limit", type=int, default=None,
                    help="use a seeded random sample of this many training pairs (smoke runs)")
    ap.add_argument("--eval-limit", type=int, default=None,
                    help="evaluate on the first N dev and test pairs only (smoke runs)")
    ap.add_argument("--skip-seqlab", action="store_true", help="Joey only (development)")
    ap.add_argument("--eval-only", action="store_true",
                    help="skip training: evaluate the trained systems of an earlier run in "
                         "--work-dir (its state is saved in trained.json after training)")
    ap.add_argument("--work-dir", default=str(REPO / "runs" / "bench_translate_peer"))
    ap.add_argument("--out", default=None,
                    help="default: benchmarks/results/translate_peer_<corpus>.json")
    return ap.parse_args()


def limited(corpus: Any, train_limit: int | None, eval_limit: int | None, seed: int) -> Any:
    """A copy of `corpus` with a seeded training sample and/or truncated dev/test splits."""
    if train_limit is None and eval_limit is None:
        return corpus
    c = copy.copy(corpus)
    if train_limit is not None and train_limit < len(corpus.train):
        idx = sorted(random.Random(seed).sample(range(len(corpus.train)), train_limit))
        c.train = corpus.train.subset(idx)
    if eval_limit is not None:
        c.dev = corpus.dev.subset(range(min(eval_limit, len(corpus.dev))))
        c.test = corpus.test.subset(range(min(eval_limit, len(corpus.test))))
    return c


def main() -> None:
    args = parse_args()
    from seqlab.text.metrics import score_corpus
    from seqlab.text.tokenizer import TokenizerPair
    from seqlab.translate.corpora import load_corpus

    t_bench = time.perf_counter()
    work = Path(args.work_dir).resolve() / args.corpus
    out_json = Path(args.out) if args.out else (
        HERE / "results" / f"translate_peer_{args.corpus}.json")
    budget_s = args.minutes * 60
    record: dict[str, Any] = {
        "benchmark": "translate_peer",
        "date": utc_now(),
        "command": shlex.join([sys.executable, *sys.argv]),
        "args": vars(args),
        "git": git_state(),
    }

    if args.eval_only:
        state = json.loads((work / "trained.json").read_text(encoding="utf-8"))
        state["record"]["eval_only_command"] = record["command"]
        corpus = load_corpus(args.corpus, args.src, args.tgt, data_dir=args.data_dir,
                             seed=args.seed)
        evaluate_and_write(args, state, limited(corpus, args.train_limit, args.eval_limit,
                                                args.seed), out_json)
        return

    # 1. machine ------------------------------------------------------------------------------
    joey_python, joey_setup = ensure_joey_python(args.joey_python)
    peaks = {t: matmul_peak(t) for t in (1, 2)}
    record["machine"] = {
        "cpu_model": cpu_model(), "cpus": os.cpu_count(), "torch": torch.__version__,
        "torch_default_threads": torch.get_num_threads(), "python": platform.python_version(),
        "platform": platform.platform(), "loadavg_start": os.getloadavg(),
        "matmul_peak_fp32_1024": {str(t): p for t, p in peaks.items()},
        "joey_python": joey_python, "joey_env": joey_version(joey_python),
        "joey_env_setup": joey_setup or "existing environment",
    }
    print(f"CPU {record['machine']['cpu_model']}; torch {torch.__version__}; matmul peak "
          f"{peaks[1]['gflops_peak']:.0f} GFLOP/s (1 thread), {peaks[2]['gflops_peak']:.0f} "
          f"(2 threads); Joey env {record['machine']['joey_env']}", flush=True)

    # 2. data and the shared tokenizer --------------------------------------------------------
    corpus = load_corpus(args.corpus, args.src, args.tgt, data_dir=args.data_dir, seed=args.seed)
    corpus = limited(corpus, args.train_limit, args.eval_limit, args.seed)
    if work.exists():
        shutil.rmtree(work)
    (work / "joey").mkdir(parents=True)
    t0 = time.perf_counter()
    tok = TokenizerPair.train_pair(corpus.train.src, corpus.train.tgt, work / "shared",
                                   vocab_size=args.vocab_size, shared=True)
    tok_seconds = time.perf_counter() - t0
    spm_model = work / "shared" / "tokenizer" / "shared.model"
    src_ids, tgt_ids = tok.src.encode(corpus.train.src), tok.tgt.encode(corpus.train.tgt)
    keep = [i for i in range(len(src_ids))
            if 0 < len(src_ids[i]) <= MAX_LEN and 0 < len(tgt_ids[i]) <= MAX_LEN]
    train = corpus.train.subset(keep)
    src_pos = [len(src_ids[i]) + 1 for i in keep]     # + EOS (seqlab appends one to sources)
    tgt_pos = [len(tgt_ids[i]) + 1 for i in keep]     # + EOS
    jdata = work / "joey" / "data"
    cleaned = write_parallel(jdata / "train", args.src, args.tgt, train.src, train.tgt)
    dev_small = corpus.dev.subset(range(min(DEV_SMALL, len(corpus.dev))))
    cleaned += write_parallel(jdata / "dev500", args.src, args.tgt, dev_small.src, dev_small.tgt)
    cleaned += write_parallel(jdata / "dev", args.src, args.tgt, corpus.dev.src, corpus.dev.tgt)
    cleaned += write_parallel(jdata / "test", args.src, args.tgt, corpus.test.src,
                              corpus.test.tgt)
    pieces = [tok.src.id_to_piece(i) for i in range(tok.src.vocab_size)]
    joey_vocab_size = write_vocab(pieces, (0, 1, 2, 3), jdata / "vocab.txt")
    record["data"] = {
        "corpus": corpus.name, "description": getattr(corpus, "description", ""),
        "src_lang": args.src, "tgt_lang": args.tgt, "split_seed": args.seed,
        "train_pairs": len(corpus.train), "train_pairs_used": len(train),
        "filtered_by_length": len(corpus.train) - len(train), "max_len": MAX_LEN,
        "dev_pairs": len(corpus.dev), "test_pairs": len(corpus.test),
        "train_target_tokens_per_epoch": sum(tgt_pos),
        "tokenizer": {**tok.fingerprint(), "seconds": tok_seconds, "model_file": str(spm_model),
                      "joey_vocab_size": joey_vocab_size},
        "joey_lines_cleaned": cleaned,
    }
    print(f"data: {len(train)} training pairs ({len(corpus.train) - len(train)} too long), "
          f"dev {len(corpus.dev)}, test {len(corpus.test)}; shared sentencepiece "
          f"{tok.src.vocab_size} pieces ({tok_seconds:.0f} s)", flush=True)

    settings = JoeySettings(seed=args.seed, lr=args.joey_lr)
    common = dict(src_lang=args.src, tgt_lang=args.tgt, spm_model=spm_model,
                  vocab_file=jdata / "vocab.txt")
    jwork = work / "joey"

    # 3. Joey: thread calibration, then the budgeted training ---------------------------------
    calib: dict[str, Any] = {}
    if args.joey_threads == "auto":
        calib_settings = dataclasses.replace(settings, logging_freq=10, validation_freq=10**6)
        for threads in (1, 2):
            cfg = joey_config(name=f"calib{threads}", model_dir=jwork / f"calib{threads}",
                              train_prefix=jdata / "train", dev_prefix=jdata / "dev500",
                              test_prefix=None, settings=calib_settings, **common)
            path = write_config(cfg, jwork / f"calib{threads}.yaml")
            run = run_joey_train(joey_python, path, threads, args.calib_seconds,
                                 jwork / f"calib{threads}.log")
            st = joey_decode(joey_python, path, jwork / f"calib{threads}" / "latest.ckpt",
                             threads, [], jwork / f"calib{threads}.json", stats_only=True)
            # whole-run rate from the checkpoint's token count (robust to few log windows)
            rate = st["total_tokens"] / run["train_wall_s"]
            calib[str(threads)] = {"tokens_per_s": rate, "steps": st["steps"],
                                   "seconds": run["train_wall_s"],
                                   "window_median": window_rate(
                                       [w["tokens_per_s"] for w in run["windows"]])}
            shutil.rmtree(jwork / f"calib{threads}", ignore_errors=True)
            print(f"Joey calibration, {threads} thread(s): {rate or 0:.0f} target tokens/s",
                  flush=True)
        joey_threads = max((1, 2), key=lambda t: calib[str(t)]["tokens_per_s"] or 0.0)
    else:
        joey_threads = int(args.joey_threads)

    jcfg = joey_config(name="joey_peer", model_dir=jwork / "model",
                       train_prefix=jdata / "train", dev_prefix=jdata / "dev500",
                       test_prefix=None, settings=settings, **common)
    jcfg_path = write_config(jcfg, jwork / "train.yaml")
    jcfg_eval = joey_config(name="joey_peer", model_dir=jwork / "model", train_prefix=None,
                            dev_prefix=jdata / "dev", test_prefix=jdata / "test",
                            settings=settings, **common)
    jcfg_eval_path = write_config(jcfg_eval, jwork / "eval.yaml")
    print(f"Joey: training {args.minutes:g} min with {joey_threads} thread(s)", flush=True)
    load_samples: dict[str, list[float]] = {}
    with LoadSampler(load_samples, "joey_train"):
        jrun = run_joey_train(joey_python, jcfg_path, joey_threads, budget_s,
                              jwork / "train.log")
    # the checkpoint to evaluate: the better of best-validation and final weights on dev-500
    mdir = jwork / "model"
    latest, best = (mdir / "latest.ckpt").resolve(), (mdir / "best.ckpt").resolve()
    candidates = [latest] if (not best.exists() or best == latest) else [latest, best]
    choice: dict[str, Any] = {}
    for ck in candidates:
        r = joey_decode(joey_python, jcfg_path, ck, joey_threads, [("dev", 1)],
                        jwork / f"select_{ck.stem}.json")
        choice[ck.name] = score_corpus(r["jobs"][0]["hyps"], dev_small.tgt, args.tgt)["bleu"]
    joey_ckpt = max(candidates, key=lambda c: choice[c.name])
    jstats = joey_decode(joey_python, jcfg_path, latest, joey_threads, [],
                         jwork / "stats.json", stats_only=True)
    joey_rate = window_rate([w["tokens_per_s"] for w in jrun["windows"]])
    record["joey"] = {
        "config": jcfg, "eval_config": jcfg_eval, "settings": settings_dict(settings),
        "threads": joey_threads, "thread_calibration": calib or "fixed by --joey-threads",
        "train": {k: v for k, v in jrun.items() if k != "windows"},
        "steps": jstats["steps"], "train_target_tokens": jstats["total_tokens"],
        "tokens_per_s_windows_median": joey_rate,
        "tokens_per_s_overall": jstats["total_tokens"] / jrun["train_wall_s"],
        "steps_per_s": jstats["steps"] / jrun["train_wall_s"],
        "real_target_tokens_per_s": jstats["total_tokens"] / jrun["train_wall_s"],
        # Joey's own (unbucketed) batches are not replayed here
        "padded_target_tokens_per_s": None,
        "windows": jrun["windows"],
        "checkpoint_selection_dev500_bleu": choice, "evaluated_checkpoint": str(joey_ckpt),
    }
    print(f"Joey: {jstats['steps']} steps, {joey_rate or 0:.0f} target tokens/s (windows), "
          f"{record['joey']['tokens_per_s_overall']:.0f} overall; checkpoint {joey_ckpt.name}",
          flush=True)

    # 4. seqlab ---------------------------------------------------------------------------------
    run_dir = work / "seqlab"
    seqlab_threads = 2 if args.seqlab_threads == "auto" else int(args.seqlab_threads)
    scalib: dict[str, Any] = {}
    if not args.skip_seqlab:
        from seqlab.translate.train import DataConfig, TrainConfig, train_translator

        model_cfg = {"embedding_dim": settings.emb_dim,
                     "encoder_hidden_size": settings.enc_hidden,
                     "decoder_hidden_size": settings.dec_hidden, "attention": "additive",
                     "input_feeding": True, "bridge": True}
        data_cfg = DataConfig(corpus=args.corpus, src_lang=args.src, tgt_lang=args.tgt,
                              data_dir=args.data_dir, split_seed=args.seed,
                              vocab_size=args.vocab_size, shared_vocab=True, max_len=MAX_LEN)
        if args.seqlab_threads == "auto":
            # as for Joey: a short training per setting (on a sample, so the tokenizer that
            # train_translator trains first is quick), whole-run target tokens/s
            sample = limited(corpus, min(20000, len(corpus.train)), None, args.seed)
            for threads in (1, 2):
                cdir = work / f"seqlab_calib{threads}"
                cal = train_translator(
                    cdir, model_cfg=model_cfg, data_cfg=data_cfg, corpus=sample,
                    train_cfg=TrainConfig(time_budget_min=args.calib_seconds / 60,
                                          seed=args.seed, threads=threads, max_epochs=10**6,
                                          eval_sentences=50),
                    progress=False, echo=lambda _msg: None)
                scalib[str(threads)] = {"tokens_per_s": cal["train_tokens_per_s"],
                                        "steps": cal["steps"], "seconds": cal["seconds"]}
                shutil.rmtree(cdir, ignore_errors=True)
                print(f"seqlab calibration, {threads} thread(s): "
                      f"{cal['train_tokens_per_s'] or 0:.0f} target tokens/s", flush=True)
            seqlab_threads = max((1, 2), key=lambda t: scalib[str(t)]["tokens_per_s"] or 0.0)
        train_cfg = TrainConfig(time_budget_min=args.minutes, seed=args.seed,
                                threads=seqlab_threads, max_epochs=10**6)
        print(f"seqlab: training {args.minutes:g} min with {seqlab_threads} thread(s)",
              flush=True)
        with LoadSampler(load_samples, "seqlab_train"):
            summary = train_translator(run_dir, model_cfg=model_cfg, train_cfg=train_cfg,
                                       data_cfg=data_cfg, corpus=corpus, progress=False)
        scfg = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        log = [json.loads(line) for line in
               (run_dir / "train_log.jsonl").read_text(encoding="utf-8").splitlines()]
        s_windows = [r["tokens_per_s"] for r in log if r.get("tokens_per_s")]
        seqlab_rate = window_rate(s_windows)
        record["seqlab"] = {
            "config": scfg, "threads": seqlab_threads,
            "thread_calibration": scalib or "fixed by --seqlab-threads",
            "train_summary": summary,
            "api_call": "train_translator(run_dir, model_cfg, TrainConfig(time_budget_min="
                        f"{args.minutes:g}, seed={args.seed}, threads={seqlab_threads}), "
                        "DataConfig(...), corpus=<the corpus above>)",
            "equivalent_cli": None if (args.train_limit or args.eval_limit) else (
                f"seqlab translate train --corpus {args.corpus} --src {args.src} "
                f"--tgt {args.tgt} --out RUN --attention additive --encoder-hidden-size "
                f"{settings.enc_hidden} --decoder-hidden-size {settings.dec_hidden} "
                f"--embedding-dim {settings.emb_dim} --vocab-size "
                f"{args.vocab_size} --time-budget {args.minutes:g} --seed {args.seed} "
                f"--threads {seqlab_threads} --max-epochs 1000000"),
            "tokens_per_s_windows_median": seqlab_rate,
            "tokens_per_s_overall": summary.get("train_tokens_per_s"),
            "steps_per_s": summary["steps"] / summary["seconds"],
            "real_target_tokens_per_s": summary.get("train_tokens_per_s"),
            "padded_target_tokens_per_s": seqlab_padded_target_tokens(
                [len(src_ids[i]) for i in keep], [len(tgt_ids[i]) for i in keep],
                summary["steps"], args.seed) / summary["seconds"],
            "windows": [{"step": r["step"], "tokens_per_s": r["tokens_per_s"]} for r in log
                        if r.get("tokens_per_s")],
            "same_tokenizer_as_joey": scfg["tokenizer"]["src_sha256"] == tok.src.sha256,
            "same_training_pairs_as_joey": scfg["corpus"]["train_pairs_used"] == len(train),
            "evaluated_checkpoint": str(run_dir / "model.safetensors"),
        }
        print(f"seqlab: {summary['steps']} steps, {seqlab_rate or 0:.0f} target tokens/s "
              f"(windows); same tokenizer: {record['seqlab']['same_tokenizer_as_joey']}",
              flush=True)
        flops = train_flops_per_target_token(scfg["model"], src_pos, tgt_pos)
    else:
        flops = train_flops_per_target_token(
            {"embedding_dim": 256, "encoder_hidden_size": 256, "decoder_hidden_size": 256,
             "attention": "additive", "tgt_vocab_size": tok.tgt.vocab_size}, src_pos, tgt_pos)
    record["flops"] = {**flops, "formula": train_flops_per_target_token.__doc__}
    record["load_average_during_training"] = load_samples
    state = {"record": record, "peaks": {str(k): v for k, v in peaks.items()},
             "joey_python": joey_python, "joey_ckpt": str(joey_ckpt),
             "joey_threads": joey_threads, "seqlab_threads": seqlab_threads,
             "jcfg_eval_path": str(jcfg_eval_path), "run_dir": str(run_dir),
             "t_bench": time.perf_counter() - t_bench}
    write_results(work / "trained.json", state)
    evaluate_and_write(args, state, corpus, out_json)


def evaluate_and_write(args: argparse.Namespace, state: dict[str, Any], corpus: Any,
                       out_json: Path) -> None:
    """Steps 5-6: decode dev and test with both systems (interleaved), print, write JSON."""
    from seqlab.text.metrics import score_corpus

    t_eval = time.perf_counter()
    record = state["record"]
    peaks = {int(k): v for k, v in state["peaks"].items()}
    joey_python, joey_threads = state["joey_python"], state["joey_threads"]
    joey_ckpt, jcfg_eval_path = Path(state["joey_ckpt"]), Path(state["jcfg_eval_path"])
    seqlab_threads, run_dir = state["seqlab_threads"], Path(state["run_dir"])
    jwork = jcfg_eval_path.parent
    flops = record["flops"]

    # 5. evaluation, interleaved --------------------------------------------------------------
    refs = {"dev": corpus.dev.tgt, "test": corpus.test.tgt}
    srcs = {"dev": corpus.dev.src, "test": corpus.test.src}
    evals: dict[str, dict[str, Any]] = {"joey": {}, "seqlab": {}}
    from seqlab.text.tokenizer import TokenizerPair

    tok = TokenizerPair.load(Path(args.work_dir).resolve() / args.corpus / "shared")
    translator = None
    if "seqlab" in record:
        from seqlab.translate.api import Translator

        translator = Translator.load(run_dir)
    for split, beam in EVAL_JOBS:
        key = f"{split}_beam{beam}"
        r = joey_decode(joey_python, jcfg_eval_path, joey_ckpt, joey_threads, [(split, beam)],
                        jwork / f"decode_{key}.json")
        job = r["jobs"][0]
        evals["joey"][key] = {**score_corpus(job["hyps"], refs[split], args.tgt),
                              **decode_speed(job["hyps"], job["seconds"], tok),
                              "command": r["command"], "examples": job["hyps"][:3]}
        if translator is not None:
            torch.set_num_threads(seqlab_threads)
            t0 = time.perf_counter()
            hyps = translator.translate(list(srcs[split]), num_beams=beam, batch_size=64)
            sec = time.perf_counter() - t0
            evals["seqlab"][key] = {**score_corpus(hyps, refs[split], args.tgt),
                                    **decode_speed(hyps, sec, tok), "examples": hyps[:3]}
        line = f"{key}: Joey BLEU {evals['joey'][key]['bleu']:.2f} " \
               f"({evals['joey'][key]['sentences_per_s']:.0f} sent/s)"
        if translator is not None:
            line += (f", seqlab BLEU {evals['seqlab'][key]['bleu']:.2f} "
                     f"({evals['seqlab'][key]['sentences_per_s']:.0f} sent/s)")
        print(line, flush=True)
    record["joey"]["eval"] = evals["joey"]
    record["joey"]["num_parameters"] = r.get("num_parameters")
    if translator is not None:
        record["seqlab"]["eval"] = evals["seqlab"]
        record["seqlab"]["num_parameters"] = translator.model.num_parameters()

    # 6. the table ------------------------------------------------------------------------------
    peak = {1: peaks[1]["gflops_peak"], 2: peaks[2]["gflops_peak"]}
    fpt = flops["train_flops_per_target_token"]
    rows = build_rows(record, fpt, peak, joey_threads, seqlab_threads)
    record["table"] = rows
    record["machine"]["loadavg_end"] = os.getloadavg()
    record["total_seconds"] = state["t_bench"] + time.perf_counter() - t_eval
    print_table(rows, record)
    write_results(out_json, record)
    print(f"wrote {out_json}")


def build_rows(record: dict[str, Any], fpt: float, peak: dict[int, float], joey_threads: int,
               seqlab_threads: int) -> list[dict[str, Any]]:
    """Side-by-side figures: (name, Joey, seqlab, seqlab/Joey)."""
    j, s = record["joey"], record.get("seqlab")

    def row(name: str, jv: float | None, sv: float | None, fmt: str) -> dict[str, Any]:
        ratio = sv / jv if (jv and sv is not None) else None
        return {"figure": name, "joey": jv, "seqlab": sv, "ratio": ratio, "fmt": fmt}

    def ev(sysrec: dict[str, Any] | None, key: str, what: str) -> float | None:
        return None if sysrec is None else sysrec["eval"][key].get(what)

    jr, sr = j["tokens_per_s_windows_median"], s and s["tokens_per_s_windows_median"]
    rows = [
        row("train target tokens/s (median window)", jr, sr, ".0f"),
        row("train target tokens/s (overall, incl. validation)", j["tokens_per_s_overall"],
            s and s["tokens_per_s_overall"], ".0f"),
        row("train GFLOP/s (analytic)", jr and jr * fpt / 1e9, sr and sr * fpt / 1e9, ".1f"),
        row("share of matmul peak, own threads (%)", jr and 100 * jr * fpt / 1e9
            / peak[joey_threads], sr and 100 * sr * fpt / 1e9 / peak[seqlab_threads], ".1f"),
        row("training steps", j["steps"], s and s["train_summary"]["steps"], ".0f"),
        row("train steps/s", j.get("steps_per_s"), s and s.get("steps_per_s"), ".2f"),
        row("train padded target tokens/s", j.get("padded_target_tokens_per_s"),
            s and s.get("padded_target_tokens_per_s"), ".0f"),
    ]
    for split in ("dev", "test"):
        for beam in (1, 5):
            key = f"{split}_beam{beam}"
            name = f"{split} {'greedy' if beam == 1 else 'beam 5'}"
            rows.append(row(f"{name} BLEU", ev(j, key, "bleu"), ev(s, key, "bleu"), ".2f"))
            rows.append(row(f"{name} chrF", ev(j, key, "chrf"), ev(s, key, "chrf"), ".2f"))
    for split in ("dev", "test"):
        for beam in (1, 5):
            key = f"{split}_beam{beam}"
            name = f"{split} {'greedy' if beam == 1 else 'beam 5'}"
            rows.append(row(f"{name} sentences/s (batch 64)", ev(j, key, "sentences_per_s"),
                            ev(s, key, "sentences_per_s"), ".0f"))
            rows.append(row(f"{name} output tokens/s (batch 64)",
                            ev(j, key, "output_tokens_per_s"),
                            ev(s, key, "output_tokens_per_s"), ".0f"))
            rows.append(row(f"{name} mean hypothesis length (subwords)",
                            ev(j, key, "mean_hypothesis_tokens"),
                            ev(s, key, "mean_hypothesis_tokens"), ".1f"))
    return rows


def print_table(rows: list[dict[str, Any]], record: dict[str, Any]) -> None:
    m = record["machine"]
    print(f"\n{record['data']['corpus']} {record['data']['src_lang']}->"
          f"{record['data']['tgt_lang']}, {record['args']['minutes']:g} min each; "
          f"{m['cpu_model']}; Joey {record['joey']['threads']} thread(s), seqlab "
          f"{record['seqlab']['threads'] if 'seqlab' in record else '-'}")
    print(f"{'figure':<52} {'Joey NMT':>10} {'seqlab':>10} {'seqlab/Joey':>12}")
    for r in rows:
        def f(v: float | None, fmt: str) -> str:
            return "-" if v is None else format(v, fmt)
        print(f"{r['figure']:<52} {f(r['joey'], r['fmt']):>10} {f(r['seqlab'], r['fmt']):>10} "
              f"{f(r['ratio'], '.2f'):>12}")


class LoadSampler:
    """Samples the 1-minute load average every 15 s while a block runs (for the record)."""

    def __init__(self, sink: dict[str, list[float]], name: str):
        self.sink, self.name = sink, name
        self.stop = threading.Event()

    def __enter__(self) -> LoadSampler:
        self.sink[self.name] = []

        def loop() -> None:
            while not self.stop.wait(15.0):
                self.sink[self.name].append(round(os.getloadavg()[0], 2))

        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


if __name__ == "__main__":
    main()
