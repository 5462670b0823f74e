"""seqlab's translator against Joey NMT 2.3.0 and OpenNMT-py 3.0.4, like for like: same data,
tokenizer, model size, schedule, validation and wall-clock budget, every system at 1 and at 2
threads, one command.

    python benchmarks/bench_translate_peer.py                      # the full run (about 6.5 h)
    python benchmarks/bench_translate_peer.py --minutes 0.5 --train-limit 3000 \
        --eval-limit 100 --work-dir /tmp/peer_smoke --out /tmp/peer_smoke.json   # a smoke run
    python benchmarks/bench_translate_peer.py --table              # the README's Markdown tables

One run does everything, and every figure comes from it:

1. Machine: CPU model, torch version, and the float32 matmul peak (1024x1024x1024 loop, at each
   thread count), the yardstick for the achieved training GFLOP/s.
2. Data: `load_corpus` (default tatoeba-fra-eng, en->fr; seqlab's deterministic grouped split),
   ONE shared sentencepiece model (seqlab's `TokenizerPair.train_pair`, 8k) trained on the
   training split, seqlab's length filter (both sides 1..100 subwords). Joey gets plain-text
   files of exactly these pairs plus that sentencepiece model and its pieces as vocabulary
   (benchmarks/peer/joey_config.py); OpenNMT-py the same pairs as space-separated pieces with
   the same vocabulary (benchmarks/peer/onmt_config.py).
3. For each thread count of `--threads` (default 1,2), Joey, OpenNMT-py, then seqlab (`--systems`),
   each a "unit":
   - Joey NMT (its own environment, `--joey-python`) in its recurrent configuration with the
     `warmupinversesquareroot` schedule (peak lr and warmup steps = seqlab's 2e-3 and 200; its
     `plateau` schedule fails on the pinned torch, see peer/joey_config.py), validating every
     `--eval-every` steps (greedy BLEU on the first 500 dev pairs, as seqlab does), trains for
     `--minutes` of wall clock counted from its first batch and is stopped with SIGINT (Joey
     saves its weights on KeyboardInterrupt). The evaluated checkpoint is the better of its
     best-validation and its final weights by dev-500 BLEU (what seqlab's training does at its
     end). The child gets default SIGINT handling, so a run started in the background works.
   - OpenNMT-py (its own environment, `--onmt-python`, benchmarks/.venv-onmt): its `brnn`/`rnn`
     LSTM model with `mlp` attention, input feeding and bridge on the same subword pieces,
     Joey's schedule (OpenNMT's `noam` decay scaled to the same peak and warmup), validation
     and a checkpoint every `--eval-every` steps, stopped with SIGINT after `--minutes`; the
     evaluated checkpoint is the better of the best-perplexity and the last one by dev-500
     BLEU. peer/onmt_config.py says where it cannot match the others (encoder 128 units per
     direction under a 256-unit decoder; final weights = last checkpoint).
   - seqlab: `train_translator` with the same corpus, budget (also from the first batch,
     periodic validation included) and validation interval.
   - Evaluation at the unit's thread count: dev and test, greedy and beam 5, batch 64
     sentences; hypotheses of all systems are scored by seqlab's `score_corpus` (sacreBLEU
     BLEU and chrF on detokenised text against the original references); decoding speed is
     sentences and output subword tokens per wall second of the decode call (tokenise +
     search + detokenise), with the mean hypothesis length (a model that writes longer
     hypotheses does more work per sentence).

Training figures of a unit, all over the whole budget (validation included): optimizer steps/s,
padded target tokens/s (B x (longest target + 1) per batch), real target tokens/s (subwords +
EOS) and the padding share. The padded positions are counted by replaying each system's own
batching for the steps it made (seqlab's length-bucketed `make_batches`; Joey's unbucketed
`TokenBatchSampler` in Joey's environment, peer/joey_decode.py `--replay-steps`), and each
replay is checked against the real-token count the system itself reports. Also the median
real tokens/s over logging windows (validation excluded), and the achieved GFLOP/s (analytic
FLOPs per target token of each system's model, `train_flops_per_target_token`) as a share of the
matmul peak measured before the unit at its thread count.

Resumable: each finished unit is cached in --work-dir (done/<system>_t<threads>.json) and
skipped when the script is started again with the same settings (corpus, languages, seed,
minutes, vocabulary, validation interval, limits; other thread lists are fine), so the run can
be spread over sessions. The results JSON is written after every unit ("complete": false
until all units are in).

OpenNMT-py as a second peer: 3.0.4 is the newest release whose torch requirement admits the
pinned torch 2.13 (3.1-3.2 require torch<2, 3.3 torch<2.1, 3.4 torch<2.2, 3.5 torch<2.3, and
the package index has those torch releases for Linux only as CUDA builds); it runs with
`TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1` (its checkpoints hold an argparse.Namespace, which torch's
weights-only loading refuses). Its padded target positions are not counted (its batches are
length-bucketed like seqlab's; the JSON leaves them empty).

The result goes to benchmarks/results/translate_peer_<corpus>.json (machine, commands, both
configs, all figures, the tables); working files (the peers' data, checkpoints and logs;
seqlab's run directories) go under --work-dir (default runs/bench_translate_peer/, git-ignored).
"""

from __future__ import annotations

import argparse
import copy
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, cast

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
from peer.onmt_config import (  # noqa: E402
    ONMT_ENV,
    ONMT_NOTES,
    ONMT_PIP_STEPS,
    OnmtSettings,
    onmt_config,
    parse_train_log,
    to_yaml_block,
    translation_seconds,
    write_pieces,
)

JOEY_PIP_STEPS = [["torch==2.13.0"],
                  ["joeynmt==2.3.0", "importlib_metadata", "sentencepiece==0.2.0", "sacrebleu"]]
JOEY_DECODE = HERE / "peer" / "joey_decode.py"
EVAL_JOBS = [("dev", 1), ("dev", 5), ("test", 1), ("test", 5)]
DEV_SMALL = 500            # dev pairs used for validation during training (as seqlab's default)
MAX_LEN = 100              # seqlab's DataConfig.max_len: training pairs with a longer side dropped
SYSTEMS = ("joey", "onmt", "seqlab")
PEERS = {"joey": "Joey NMT", "onmt": "OpenNMT-py"}
# the arguments a cached unit must share with the current command to be reused
KEY_ARGS = ("corpus", "src", "tgt", "seed", "minutes", "vocab_size", "eval_every", "joey_lr",
            "train_limit", "eval_limit")


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


def ensure_env(arg: str | None, env_var: str, venv_name: str,
               pip_steps: Sequence[Sequence[str]]) -> tuple[str, list[str]]:
    """The Python of a peer's separate environment: `arg`, else $`env_var`, else
    benchmarks/`venv_name`, created with `pip_steps` if missing.

    Returns (path, commands run to create it, if any).
    """
    given = arg or os.environ.get(env_var)
    path = given or str(HERE / venv_name / "bin" / "python")
    made: list[str] = []
    if not Path(path).exists():
        if given:
            fail(f"{path}: no such file (from --{venv_name[6:]}-python or ${env_var})")
        venv = HERE / venv_name
        cmds = [[sys.executable, "-m", "venv", str(venv)]]
        cmds += [[str(venv / "bin" / "pip"), "install", *pkgs] for pkgs in pip_steps]
        for cmd in cmds:
            print("+", shlex.join(cmd), flush=True)
            subprocess.run(cmd, check=True)
            made.append(shlex.join(cmd))
    return path, made


def package_versions(python: str, packages: Sequence[str]) -> dict[str, str]:
    """Installed versions of `packages` in another environment's `python`."""
    code = ("import json, sys, importlib.metadata as m; "
            "print(json.dumps({p: m.version(p) for p in sys.argv[1:]}))")
    out = subprocess.run([python, "-c", code, *packages], check=True, capture_output=True,
                         text=True)
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


def seqlab_replay(src_lens: Sequence[int], tgt_lens: Sequence[int], steps: int, seed: int,
                  batch_tokens: int | None, batch_size: int | None) -> dict[str, int]:
    """Padded (B x (max T + 1)) and real (sum of T + 1) target positions of seqlab's first
    `steps` training batches, replayed with the training loop's batching
    (seqlab.text.batching.make_batches per epoch, epochs from 0).

    src_lens: (N,) source lengths as the loop counts them (subwords + EOS); tgt_lens: (N,)
    target subwords (without EOS).
    """
    from seqlab.text.batching import make_batches

    padded = real = 0
    epoch, left = 0, steps
    while left > 0:
        for rows in make_batches(src_lens, tgt_lens, max_tokens=batch_tokens,
                                 batch_size=batch_size, seed=seed, epoch=epoch)[:left]:
            padded += len(rows) * (max(tgt_lens[i] for i in rows) + 1)
            real += sum(tgt_lens[i] + 1 for i in rows)
            left -= 1
        epoch += 1
    return {"steps": steps, "padded_target_positions": padded, "real_target_tokens": real}


def tree_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process and its live descendants, all threads, from
    /proc (None where there is no /proc): a unit's CPU per wall second shows whether it had its
    cores (about its thread count) or shared them with other jobs."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}          # pid -> (parent, CPU seconds)
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return None
    for entry in entries:
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue                                    # ended meanwhile
        fields = text[text.rindex(")") + 2:].split()    # after "pid (comm) "
        stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    if pid not in stats:
        return None
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += stats[p][1]
        todo += [c for c, (parent, _) in stats.items() if parent == p]
    return total


def run_budgeted(cmd: list[str], env: dict[str, str], budget_s: float, log_path: Path,
                 start_marker: str, name: str, start_timeout_s: float = 900.0
                 ) -> dict[str, Any]:
    """Run a peer's training command for `budget_s` seconds of wall clock after `start_marker`
    appears in its output (its first batch), then SIGINT it; its output goes to `log_path`.

    Returns the command, startup and training wall times, and the child's exit status.
    """
    t_launch = time.monotonic()
    # default SIGINT handling in the child: launched in the background (`cmd &`), this process
    # inherits SIGINT as ignored, and so would the child, which then never sees the
    # end-of-budget SIGINT (exec keeps ignored signals ignored)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            encoding="utf-8", errors="replace", env=env,
                            preexec_fn=_default_sigint)
    assert proc.stdout is not None
    out = proc.stdout
    started = threading.Event()
    state: dict[str, Any] = {"t_start": None}

    def reader() -> None:
        with open(log_path, "w", encoding="utf-8") as log:
            for line in out:
                log.write(line)
                log.flush()
                if not started.is_set() and start_marker in line:
                    state["t_start"] = time.monotonic()
                    state["cpu_start"] = tree_cpu_seconds(proc.pid)
                    started.set()

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    while not started.wait(0.5):
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited ({proc.returncode}) before training; "
                               f"see {log_path}")
        if time.monotonic() - t_launch > start_timeout_s:
            proc.kill()
            raise RuntimeError(f"{name} did not start training in {start_timeout_s:.0f} s")
    deadline = state["t_start"] + budget_s
    while (left := deadline - time.monotonic()) > 0 and proc.poll() is None:
        time.sleep(min(left, 0.5))
    t_stop = time.monotonic()
    cpu_stop = tree_cpu_seconds(proc.pid)
    ended_early = proc.poll() is not None
    if not ended_early:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=600)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    th.join(timeout=30)
    prefix = " ".join(f"{k}={v}" for k, v in env.items() if k not in os.environ
                      or os.environ[k] != v)
    return {"command": (prefix + " " if prefix else "") + shlex.join(cmd),
            "startup_s": state["t_start"] - t_launch,
            "train_wall_s": t_stop - state["t_start"], "ended_before_budget": ended_early,
            "train_cpu_s": (cpu_stop - state["cpu_start"] if None not in
                            (cpu_stop, state["cpu_start"]) else None),
            "shutdown_s": time.monotonic() - t_stop, "returncode": proc.returncode,
            "log": str(log_path)}


def run_joey_train(joey_python: str, cfg_path: Path, threads: int, budget_s: float,
                   log_path: Path) -> dict[str, Any]:
    """Train Joey for `budget_s` seconds after its first batch, then SIGINT it (Joey catches
    KeyboardInterrupt and saves the current weights, latest.ckpt). `run_budgeted`'s record
    plus the logged (step, tokens/s) windows."""
    # torch takes its thread count from OMP_NUM_THREADS (see joey_env)
    cmd = [joey_python, "-m", "joeynmt", "train", str(cfg_path), "--skip-test"]
    run = run_budgeted(cmd, joey_env(threads), budget_s, log_path, "EPOCH 1", "Joey")
    if run["returncode"] != 0:
        raise RuntimeError(f"Joey training failed ({run['returncode']}); see {log_path}")
    text = log_path.read_text(encoding="utf-8", errors="replace")
    run["windows"] = [{"step": int(m[1]), "tokens_per_s": float(m[2])}
                      for m in _TOKS_RE.finditer(text)]
    return run


def joey_decode(joey_python: str, cfg_path: Path, ckpt: Path, threads: int,
                jobs: Sequence[tuple[str, int]], out: Path, stats_only: bool = False,
                replay_steps: int | None = None) -> dict[str, Any]:
    """Run peer/joey_decode.py in Joey's environment: decode `jobs` (split, beam) with `ckpt`,
    or only read its statistics, or replay `replay_steps` training batches; its JSON result."""
    cmd = [joey_python, str(JOEY_DECODE), "--config", str(cfg_path), "--ckpt", str(ckpt),
           "--threads", str(threads), "--batch-size", "64", "--out", str(out)]
    cmd += [a for split, beam in jobs for a in ("--job", f"{split}:{beam}")]
    if stats_only:
        cmd.append("--stats-only")
    if replay_steps is not None:
        cmd += ["--replay-steps", str(replay_steps)]
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


def fail(message: str) -> NoReturn:
    """A one-line error on stderr and exit status 2 (bad input or settings; no traceback)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def thread_list(text: str) -> list[int]:
    """`--threads 1,2` -> [1, 2] (argparse type: a bad value is a one-line usage error)."""
    try:
        threads = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        threads = []
    if not threads or min(threads) < 1 or len(set(threads)) != len(threads):
        raise argparse.ArgumentTypeError(f"{text!r}: expected distinct thread counts >= 1, "
                                         "comma-separated, e.g. 1,2")
    return threads


def eval_interval(text: str) -> int:
    """`--eval-every`: steps >= 2 (Joey logs at least once between validations)."""
    if not text.isdigit() or int(text) < 2:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a step count >= 2")
    return int(text)


def system_list(text: str) -> list[str]:
    systems = [s.strip() for s in text.split(",") if s.strip()]
    if not systems or any(s not in SYSTEMS for s in systems):
        raise argparse.ArgumentTypeError(f"{text!r}: expected some of {', '.join(SYSTEMS)}")
    return systems


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="tatoeba-fra-eng")
    ap.add_argument("--src", default="en")
    ap.add_argument("--tgt", default="fr")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--seed", type=int, default=1234, help="split, tokenizer, init, data order")
    ap.add_argument("--minutes", type=float, default=60.0,
                    help="training budget (wall clock from the first batch) per system and "
                         "thread count")
    ap.add_argument("--threads", type=thread_list, default=[1, 2],
                    help="thread counts, comma-separated; every system trains and decodes at "
                         "each (default 1,2)")
    ap.add_argument("--systems", type=system_list, default=list(SYSTEMS),
                    help="which systems to run, comma-separated (default joey,onmt,seqlab)")
    ap.add_argument("--vocab-size", type=int, default=8000)
    ap.add_argument("--eval-every", type=eval_interval, default=JoeySettings.validation_freq,
                    help="validation interval in steps, both systems (greedy BLEU on the first "
                         f"{DEV_SMALL} dev pairs)")
    ap.add_argument("--joey-python", default=None,
                    help="Joey's Python (default: $JOEY_PYTHON, else benchmarks/.venv-joey, "
                         "created if missing)")
    ap.add_argument("--onmt-python", default=None,
                    help="OpenNMT-py's Python (default: $ONMT_PYTHON, else benchmarks/.venv-onmt, "
                         "created if missing)")
    ap.add_argument("--joey-lr", type=float, default=JoeySettings.lr,
                    help="Joey's peak Adam learning rate; default = seqlab's peak lr")
    ap.add_argument("--train-limit", type=int, default=None,
                    help="use a seeded random sample of this many training pairs (smoke runs)")
    ap.add_argument("--eval-limit", type=int, default=None,
                    help="evaluate on the first N dev and test pairs only (smoke runs)")
    ap.add_argument("--work-dir", default=str(REPO / "runs" / "bench_translate_peer"))
    ap.add_argument("--out", default=None,
                    help="default: benchmarks/results/translate_peer_<corpus>.json")
    ap.add_argument("--table", action="store_true",
                    help="print the Markdown table of the results in --out and exit")
    return ap.parse_args(argv)


def run_key(args: argparse.Namespace) -> dict[str, Any]:
    """The settings a cached unit must share with this command to be reused."""
    return {k: getattr(args, k) for k in KEY_ARGS}


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


class Setup:
    """Data, shared tokenizer and Joey's files of one benchmark (made once, reused on restart).

    train: the training pairs both systems use (after seqlab's length filter); src_len,
    tgt_len: (N,) their subword counts without EOS; dev_small: the validation pairs.
    """

    def __init__(self, args: argparse.Namespace):
        from seqlab.text.tokenizer import TokenizerPair
        from seqlab.translate.corpora import load_corpus

        self.args, self.key = args, run_key(args)
        self.work = Path(args.work_dir).resolve() / args.corpus
        corpus = load_corpus(args.corpus, args.src, args.tgt, data_dir=args.data_dir,
                             seed=args.seed)
        self.corpus = corpus = limited(corpus, args.train_limit, args.eval_limit, args.seed)
        setup_file = self.work / "setup.json"
        saved = (json.loads(setup_file.read_text(encoding="utf-8"))
                 if setup_file.exists() else None)
        reuse = saved is not None and saved["key"] == self.key
        if not reuse:
            finished = sorted(self.work.glob("done/*.json"))
            if finished:     # never throw away finished units (hours of training)
                fail(f"{self.work}: holds finished units of other settings "
                     f"({', '.join(f.stem for f in finished)}; {saved and saved['key']}); "
                     "pass another --work-dir, or delete that folder")
            if self.work.exists():
                print(f"{self.work}: made with other settings; starting afresh", flush=True)
                shutil.rmtree(self.work)
            self.work.mkdir(parents=True)
            t0 = time.perf_counter()
            self.tok = TokenizerPair.train_pair(corpus.train.src, corpus.train.tgt,
                                                self.work / "shared",
                                                vocab_size=args.vocab_size, shared=True)
            tok_seconds = time.perf_counter() - t0
        else:
            self.tok = TokenizerPair.load(self.work / "shared")
        self.spm_model = self.work / "shared" / "tokenizer" / "shared.model"
        src_ids, tgt_ids = self.tok.src.encode(corpus.train.src), self.tok.tgt.encode(
            corpus.train.tgt)
        keep = [i for i in range(len(src_ids))
                if 0 < len(src_ids[i]) <= MAX_LEN and 0 < len(tgt_ids[i]) <= MAX_LEN]
        self.train = corpus.train.subset(keep)
        self.src_len = [len(src_ids[i]) for i in keep]
        self.tgt_len = [len(tgt_ids[i]) for i in keep]
        self.dev_small = corpus.dev.subset(range(min(DEV_SMALL, len(corpus.dev))))
        self.jdata = self.work / "joey" / "data"
        if reuse:
            assert saved is not None
            self.data = saved["data"]
            print(f"{self.work}: data and tokenizer of an earlier start with these settings",
                  flush=True)
            if not (self.jdata / "vocab.txt").is_file():   # deleted meanwhile: the same again
                self.write_joey_data()
            return
        cleaned, joey_vocab_size = self.write_joey_data()
        a = args
        self.data = {
            "corpus": corpus.name, "description": getattr(corpus, "description", ""),
            "src_lang": a.src, "tgt_lang": a.tgt, "split_seed": a.seed,
            "train_pairs": len(corpus.train), "train_pairs_used": len(self.train),
            "filtered_by_length": len(corpus.train) - len(self.train), "max_len": MAX_LEN,
            "dev_pairs": len(corpus.dev), "test_pairs": len(corpus.test),
            "validation_pairs": len(self.dev_small),
            "train_target_tokens_per_epoch": sum(t + 1 for t in self.tgt_len),
            "tokenizer": {**self.tok.fingerprint(), "seconds": tok_seconds,
                          "model_file": str(self.spm_model),
                          "joey_vocab_size": joey_vocab_size},
            "joey_lines_cleaned": cleaned,
        }
        write_results(setup_file, {"key": self.key, "data": self.data})
        print(f"data: {len(self.train)} training pairs "
              f"({len(corpus.train) - len(self.train)} too long), dev {len(corpus.dev)}, test "
              f"{len(corpus.test)}; shared sentencepiece {self.tok.src.vocab_size} pieces "
              f"({tok_seconds:.0f} s)", flush=True)

    def write_joey_data(self) -> tuple[int, int]:
        """Joey's plain-text splits and vocabulary (deterministic: the same files on every
        call); returns (lines cleaned, Joey's vocabulary size)."""
        a, corpus = self.args, self.corpus
        cleaned = write_parallel(self.jdata / "train", a.src, a.tgt, self.train.src,
                                 self.train.tgt)
        cleaned += write_parallel(self.jdata / "dev500", a.src, a.tgt, self.dev_small.src,
                                  self.dev_small.tgt)
        cleaned += write_parallel(self.jdata / "dev", a.src, a.tgt, corpus.dev.src,
                                  corpus.dev.tgt)
        cleaned += write_parallel(self.jdata / "test", a.src, a.tgt, corpus.test.src,
                                  corpus.test.tgt)
        pieces = [self.tok.src.id_to_piece(i) for i in range(self.tok.src.vocab_size)]
        return cleaned, write_vocab(pieces, (0, 1, 2, 3), self.jdata / "vocab.txt")

    def model_cfg(self) -> dict[str, Any]:
        """seqlab's model, the size Joey is given (JoeySettings)."""
        s = JoeySettings()
        return {"embedding_dim": s.emb_dim, "encoder_hidden_size": s.enc_hidden,
                "decoder_hidden_size": s.dec_hidden, "attention": "additive",
                "input_feeding": True, "bridge": True}


def train_figures(steps: int, wall_s: float, real: int, padded: int | None,
                  window_rates: Sequence[float], cpu_s: float | None,
                  cpu_wall_s: float | None = None) -> dict[str, Any]:
    """A unit's training speed over its whole budget (validation included); padded None:
    not counted; cpu_s: the trainer's CPU seconds over cpu_wall_s (default wall_s) seconds of
    its budget (None: not measured)."""
    return {"steps": steps, "train_wall_s": wall_s, "steps_per_s": steps / wall_s,
            "train_cpu_s": cpu_s,
            "cpu_per_wall_s": None if cpu_s is None else cpu_s / (cpu_wall_s or wall_s),
            "real_target_tokens": real, "padded_target_positions": padded,
            "real_target_tokens_per_s": real / wall_s,
            "padded_target_tokens_per_s": None if padded is None else padded / wall_s,
            "padding_share": 1 - real / padded if padded else None,
            "real_target_tokens_per_s_window_median": window_rate(window_rates)}


def scored(st: Setup, split: str, hyps: Sequence[str], seconds: float) -> dict[str, Any]:
    """BLEU/chrF (seqlab's scorer for every system) and decoding speed of one decode call."""
    from seqlab.text.metrics import score_corpus

    refs = {"dev": st.corpus.dev.tgt, "test": st.corpus.test.tgt}[split]
    return {**score_corpus(list(hyps), refs, st.args.tgt), **decode_speed(hyps, seconds, st.tok),
            "examples": list(hyps[:3])}


def joey_unit(st: Setup, threads: int, joey_python: str) -> dict[str, Any]:
    """Train Joey for the budget at `threads` threads, pick its checkpoint, replay its batches,
    decode dev and test; the unit's record."""
    from seqlab.text.metrics import score_corpus

    args = st.args
    jwork = st.work / "joey" / f"t{threads}"
    if jwork.exists():                  # an unfinished earlier attempt
        shutil.rmtree(jwork)
    # Joey requires logging_freq < validation_freq and a divisor of it
    log_every = max(d for d in range(1, min(JoeySettings.logging_freq, args.eval_every - 1) + 1)
                    if args.eval_every % d == 0)
    settings = JoeySettings(seed=args.seed, lr=args.joey_lr, validation_freq=args.eval_every,
                            logging_freq=log_every)
    common = dict(src_lang=args.src, tgt_lang=args.tgt, spm_model=st.spm_model,
                  vocab_file=st.jdata / "vocab.txt", settings=settings)
    jcfg = joey_config(name=f"joey_t{threads}", model_dir=jwork / "model",
                       train_prefix=st.jdata / "train", dev_prefix=st.jdata / "dev500",
                       test_prefix=None, **common)
    jcfg_path = write_config(jcfg, jwork / "train.yaml")
    jcfg_eval = joey_config(name=f"joey_t{threads}", model_dir=jwork / "model",
                            train_prefix=None, dev_prefix=st.jdata / "dev",
                            test_prefix=st.jdata / "test", **common)
    jcfg_eval_path = write_config(jcfg_eval, jwork / "eval.yaml")
    print(f"Joey, {threads} thread(s): training {args.minutes:g} min", flush=True)
    loads: dict[str, list[float]] = {}
    with LoadSampler(loads, "train"):
        jrun = run_joey_train(joey_python, jcfg_path, threads, args.minutes * 60,
                              jwork / "train.log")
    # the checkpoint to evaluate: the better of best-validation and final weights on dev-500
    mdir = jwork / "model"
    latest, best = (mdir / "latest.ckpt").resolve(), (mdir / "best.ckpt").resolve()
    candidates = [latest] if (not best.exists() or best == latest) else [latest, best]
    choice: dict[str, float] = {}
    for ck in candidates:
        r = joey_decode(joey_python, jcfg_path, ck, threads, [("dev", 1)],
                        jwork / f"select_{ck.stem}.json")
        choice[ck.name] = score_corpus(r["jobs"][0]["hyps"], st.dev_small.tgt,
                                       args.tgt)["bleu"]
    ckpt = max(candidates, key=lambda c: choice[c.name])
    jstats = joey_decode(joey_python, jcfg_path, latest, threads, [], jwork / "stats.json",
                         stats_only=True)
    replay = joey_decode(joey_python, jcfg_path, latest, threads, [], jwork / "replay.json",
                         replay_steps=jstats["steps"])["replay"]
    # Joey counts a batch's tokens before its optimizer step (see joey_decode.py)
    replay_ok = jstats["total_tokens"] in (replay["real_target_tokens"],
                                           replay["real_target_tokens_one_more_batch"])
    real = replay["real_target_tokens"] if replay_ok else jstats["total_tokens"]
    train = train_figures(jstats["steps"], jrun["train_wall_s"], real,
                          replay["padded_target_positions"],
                          [w["tokens_per_s"] for w in jrun["windows"]], jrun["train_cpu_s"])
    print(f"Joey, {threads} thread(s): {train['steps']} steps, {train['steps_per_s']:.3f} "
          f"steps/s, {train['real_target_tokens_per_s']:.0f} real target tokens/s (padding "
          f"{100 * (train['padding_share'] or 0):.0f}%); checkpoint {ckpt.name}; decoding",
          flush=True)
    dec = joey_decode(joey_python, jcfg_eval_path, ckpt, threads, EVAL_JOBS,
                      jwork / "decode.json")
    evals = {f"{j['split']}_beam{j['beam']}": scored(st, j["split"], j["hyps"], j["seconds"])
             for j in dec["jobs"]}
    return {"system": "joey", "threads": threads, "config": jcfg, "eval_config": jcfg_eval,
            "settings": settings_dict(settings),
            "train_run": {k: v for k, v in jrun.items() if k != "windows"},
            "train": train, "reported_total_tokens": jstats["total_tokens"],
            "replay": replay, "replay_matches_reported_tokens": replay_ok,
            "windows": jrun["windows"], "checkpoint_selection_dev500_bleu": choice,
            "evaluated_checkpoint": str(ckpt), "decode_command": dec["command"],
            "num_parameters": dec.get("num_parameters"), "eval": evals,
            "load_average": loads["train"]}


def onmt_data(st: Setup) -> Path:
    """OpenNMT's piece files (train, dev500, dev, test; `.src`/`.tgt`), written once."""
    odata = st.work / "onmt" / "data"
    done = odata / "written"
    if not done.exists():
        splits = {"train": st.train, "dev500": st.dev_small, "dev": st.corpus.dev,
                  "test": st.corpus.test}
        for name, split in splits.items():
            write_pieces(odata / f"{name}.src", st.tok.src.encode_pieces(list(split.src)))
            write_pieces(odata / f"{name}.tgt", st.tok.tgt.encode_pieces(list(split.tgt)))
        done.write_text("", encoding="utf-8")
    return odata


def onmt_translate(st: Setup, onmt_python: str, ckpt: Path, src: Path, beam: int,
                   threads: int, out: Path) -> tuple[list[str], float, str]:
    """Decode a piece file with OpenNMT-py (batch 64 sentences); the detokenised hypotheses,
    OpenNMT's own translation seconds (model loading excluded) and the command."""
    cmd = [str(Path(onmt_python).parent / "onmt_translate"), "-model", str(ckpt), "-src",
           str(src), "-output", str(out), "-batch_size", "64", "-batch_type", "sents",
           "-beam_size", str(beam), "-report_time"]
    res = subprocess.run(cmd, env={**joey_env(threads), **ONMT_ENV}, capture_output=True,
                         text=True)
    seconds = translation_seconds(res.stdout + res.stderr)
    if res.returncode != 0 or seconds is None:
        raise RuntimeError(f"OpenNMT-py decoding failed ({res.returncode}):\n"
                           f"{res.stderr[-3000:]}")
    piece_id = {st.tok.tgt.id_to_piece(i): i for i in range(st.tok.tgt.vocab_size)}
    lines = out.read_text(encoding="utf-8").splitlines()
    # OpenNMT's own specials (<unk>) are not pieces of the model: dropped
    hyps = st.tok.tgt.decode([[piece_id[p] for p in line.split() if p in piece_id]
                              for line in lines])
    env = " ".join(f"{k}={v}" for k, v in ONMT_ENV.items())
    return hyps, seconds, f"OMP_NUM_THREADS={threads} {env} " + shlex.join(cmd)


def onmt_unit(st: Setup, threads: int, onmt_python: str) -> dict[str, Any]:
    """Train OpenNMT-py for the budget at `threads` threads, pick its checkpoint, decode dev
    and test; the unit's record (peer/onmt_config.py says how it is set up)."""
    from seqlab.text.metrics import score_corpus

    args = st.args
    owork = st.work / "onmt" / f"t{threads}"
    if owork.exists():                  # an unfinished earlier attempt
        shutil.rmtree(owork)
    owork.mkdir(parents=True)
    odata = onmt_data(st)
    settings = OnmtSettings(seed=args.seed, valid_steps=args.eval_every,
                            report_every=min(OnmtSettings.report_every, args.eval_every))
    cfg = onmt_config(model_dir=owork / "model", train_prefix=odata / "train",
                      valid_prefix=odata / "dev500", vocab_file=st.jdata / "vocab.txt",
                      settings=settings, train_pairs=len(st.train))
    cfg_path = owork / "train.yaml"
    cfg_path.write_text(to_yaml_block(cfg) + "\n", encoding="utf-8")
    print(f"OpenNMT-py, {threads} thread(s): training {args.minutes:g} min", flush=True)
    cmd = [str(Path(onmt_python).parent / "onmt_train"), "-config", str(cfg_path)]
    loads: dict[str, list[float]] = {}
    with LoadSampler(loads, "train"):
        run = run_budgeted(cmd, {**joey_env(threads), **ONMT_ENV}, args.minutes * 60,
                           owork / "train.log", "Start training loop", "OpenNMT-py")
    # OpenNMT has no SIGINT handler (a non-zero exit is expected); it must have reported
    log = parse_train_log((owork / "train.log").read_text(encoding="utf-8", errors="replace"))
    if not log["saved_steps"] or not log["steps"]:
        raise RuntimeError(f"OpenNMT-py saved no checkpoint in the budget (exit "
                           f"{run['returncode']}); see {owork / 'train.log'}")
    # the checkpoint to evaluate: the better of the best-perplexity and the last one by
    # dev-500 BLEU (as for the others)
    last = log["saved_steps"][-1]
    best = min(log["valid_ppl"], key=log["valid_ppl"].get) if log["valid_ppl"] else last
    choice: dict[str, float] = {}
    for step in sorted({last, best}):
        ck = owork / "model" / f"model_step_{step}.pt"
        hyps, _, _ = onmt_translate(st, onmt_python, ck, odata / "dev500.src", 1, threads,
                                    owork / f"select_{step}.txt")
        choice[ck.name] = score_corpus(hyps, st.dev_small.tgt, args.tgt)["bleu"]
    ckpt = owork / "model" / max(choice, key=lambda name: choice[name])
    # steps/s and tokens/s up to OpenNMT's last report, on its own clock
    train = train_figures(log["steps"], log["seconds"], log["real_target_tokens"], None,
                          [w["tokens_per_s"] for w in log["windows"]], run["train_cpu_s"],
                          run["train_wall_s"])
    print(f"OpenNMT-py, {threads} thread(s): {train['steps']} steps, "
          f"{train['steps_per_s']:.3f} steps/s, {train['real_target_tokens_per_s']:.0f} real "
          f"target tokens/s; checkpoint {ckpt.name}; decoding", flush=True)
    evals, commands = {}, {}
    for split, beam in EVAL_JOBS:
        key = f"{split}_beam{beam}"
        hyps, sec, commands[key] = onmt_translate(st, onmt_python, ckpt, odata / f"{split}.src",
                                                  beam, threads, owork / f"{key}.txt")
        evals[key] = scored(st, split, hyps, sec)
    return {"system": "onmt", "threads": threads, "config": cfg, "settings":
            settings_dict(settings), "train_run": run, "train": train,
            "valid_ppl": log["valid_ppl"], "saved_steps": log["saved_steps"],
            "windows": log["windows"], "checkpoint_selection_dev500_bleu": choice,
            "evaluated_checkpoint": str(ckpt), "decode_commands": commands, "eval": evals,
            "load_average": loads["train"],
            "notes": "real target tokens summed from the log's per-window means; padded "
                     "positions not counted (OpenNMT's batches are length-bucketed); decoding "
                     "time is OpenNMT's own -report_time figure (model loading excluded, "
                     "input already split into pieces)"}


def seqlab_unit(st: Setup, threads: int) -> dict[str, Any]:
    """Train seqlab's translator for the budget at `threads` threads, replay its batches,
    decode dev and test; the unit's record."""
    from seqlab.training.loop import torch_threads
    from seqlab.translate.api import Translator
    from seqlab.translate.train import DataConfig, TrainConfig, train_translator

    args = st.args
    run_dir = st.work / f"seqlab_t{threads}"
    if run_dir.exists():                # an unfinished earlier attempt
        shutil.rmtree(run_dir)
    model_cfg = st.model_cfg()
    data_cfg = DataConfig(corpus=args.corpus, src_lang=args.src, tgt_lang=args.tgt,
                          data_dir=args.data_dir, split_seed=args.seed,
                          vocab_size=args.vocab_size, shared_vocab=True, max_len=MAX_LEN)
    train_cfg = TrainConfig(time_budget_min=args.minutes, seed=args.seed, threads=threads,
                            max_epochs=10**6, eval_every=args.eval_every,
                            eval_sentences=DEV_SMALL)
    print(f"seqlab, {threads} thread(s): training {args.minutes:g} min", flush=True)
    loads: dict[str, list[float]] = {}
    with LoadSampler(loads, "train"):
        summary = train_translator(run_dir, model_cfg=model_cfg, train_cfg=train_cfg,
                                   data_cfg=data_cfg, corpus=st.corpus, progress=False)
    scfg = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    log = [json.loads(line) for line in
           (run_dir / "train_log.jsonl").read_text(encoding="utf-8").splitlines()]
    windows = [{"step": r["step"], "tokens_per_s": r["tokens_per_s"]} for r in log
               if r.get("tokens_per_s")]
    src_eos = int(scfg["data"].get("src_eos", True))
    replay = seqlab_replay([n + src_eos for n in st.src_len], st.tgt_len, summary["steps"],
                           args.seed, scfg["train"]["batch_tokens"], scfg["train"]["batch_size"])
    reported = round((summary.get("train_tokens_per_s") or 0.0) * summary["seconds"])
    replay_ok = abs(reported - replay["real_target_tokens"]) <= 1
    train = train_figures(summary["steps"], summary["seconds"], replay["real_target_tokens"]
                          if replay_ok else reported, replay["padded_target_positions"],
                          [w["tokens_per_s"] for w in windows], summary.get("cpu_seconds"))
    print(f"seqlab, {threads} thread(s): {train['steps']} steps, {train['steps_per_s']:.3f} "
          f"steps/s, {train['real_target_tokens_per_s']:.0f} real target tokens/s (padding "
          f"{100 * (train['padding_share'] or 0):.0f}%); decoding", flush=True)
    translator = Translator.load(run_dir)
    srcs = {"dev": st.corpus.dev.src, "test": st.corpus.test.src}
    evals = {}
    with torch_threads(threads):
        for split, beam in EVAL_JOBS:
            t0 = time.perf_counter()
            hyps = cast(list[str], translator.translate(list(srcs[split]), num_beams=beam,
                                                        batch_size=64))
            evals[f"{split}_beam{beam}"] = scored(st, split, hyps, time.perf_counter() - t0)
    return {"system": "seqlab", "threads": threads, "config": scfg, "train_summary": summary,
            "api_call": f"train_translator(run_dir, model_cfg, TrainConfig(time_budget_min="
                        f"{args.minutes:g}, seed={args.seed}, threads={threads}, "
                        f"eval_every={args.eval_every}, max_epochs=10**6), DataConfig(...), "
                        "corpus=<the corpus above>)",
            "equivalent_cli": None if (args.train_limit or args.eval_limit) else (
                f"seqlab translate train --corpus {args.corpus} --src {args.src} "
                f"--tgt {args.tgt} --out RUN --attention additive --encoder-hidden-size "
                f"{model_cfg['encoder_hidden_size']} --decoder-hidden-size "
                f"{model_cfg['decoder_hidden_size']} --embedding-dim "
                f"{model_cfg['embedding_dim']} --vocab-size {args.vocab_size} --time-budget "
                f"{args.minutes:g} --seed {args.seed} --threads {threads} --eval-every "
                f"{args.eval_every} --max-epochs 1000000"),
            "train": train, "reported_total_tokens": reported, "replay": replay,
            "replay_matches_reported_tokens": replay_ok, "windows": windows,
            "same_tokenizer_as_joey": scfg["tokenizer"]["src_sha256"] == st.tok.src.sha256,
            "same_training_pairs_as_joey": scfg["corpus"]["train_pairs_used"] == len(st.train),
            "evaluated_checkpoint": str(run_dir / "model.safetensors"),
            "num_parameters": translator.model.num_parameters(), "eval": evals,
            "load_average": loads["train"]}


def main() -> None:
    args = parse_args()
    out_json = Path(args.out) if args.out else (
        HERE / "results" / f"translate_peer_{args.corpus}.json")
    if args.table:
        if not out_json.exists():
            fail(f"{out_json}: no results yet (run the benchmark first)")
        done_record = json.loads(out_json.read_text(encoding="utf-8"))
        if "units" not in done_record:
            fail(f"{out_json}: written by an earlier version of this script (no 'units'); "
                 "run the benchmark again")
        print(markdown_table(done_record))
        return

    t_bench = time.perf_counter()
    record: dict[str, Any] = {
        "benchmark": "translate_peer", "date": utc_now(),
        "command": shlex.join([sys.executable, *sys.argv]), "args": vars(args),
        "key": run_key(args), "git": git_state(), "threads": args.threads,
        "systems": args.systems,
    }
    pythons = {"joey": "", "onmt": ""}
    envs: dict[str, Any] = {}
    for system, venv, var, steps, packages in (
            ("joey", ".venv-joey", "JOEY_PYTHON", JOEY_PIP_STEPS,
             ["joeynmt", "torch", "sentencepiece", "sacrebleu"]),
            ("onmt", ".venv-onmt", "ONMT_PYTHON", ONMT_PIP_STEPS, ["OpenNMT-py", "torch"])):
        if system in args.systems:
            pythons[system], made = ensure_env(getattr(args, f"{system}_python"), var, venv,
                                               steps)
            envs[system] = {"python": pythons[system],
                            "packages": package_versions(pythons[system], packages),
                            "setup": made or "existing environment"}
    record["machine"] = {
        "cpu_model": cpu_model(), "cpus": os.cpu_count(), "torch": torch.__version__,
        "torch_default_threads": torch.get_num_threads(), "python": platform.python_version(),
        "platform": platform.platform(), "loadavg_start": os.getloadavg(),
        "peer_environments": envs,
    }
    print(f"CPU {record['machine']['cpu_model']}; torch {torch.__version__}; peers "
          f"{ {k: v['packages'] for k, v in envs.items()} }", flush=True)
    st = Setup(args)
    record["data"] = st.data
    # per system: OpenNMT's encoder has half the units per direction (peer/onmt_config.py)
    model = {**st.model_cfg(), "tgt_vocab_size": st.tok.tgt.vocab_size}
    models = {"joey": model, "seqlab": model,
              "onmt": {**model, "encoder_hidden_size": OnmtSettings.hidden_size // 2}}
    record["flops"] = {
        **{system: train_flops_per_target_token(models[system], [n + 1 for n in st.src_len],
                                                [n + 1 for n in st.tgt_len])
           for system in args.systems},
        "formula": train_flops_per_target_token.__doc__}
    record["opennmt"] = ({"status": "run", "version": envs["onmt"]["packages"]["OpenNMT-py"],
                          "notes": ONMT_NOTES}
                         if "onmt" in envs else {"status": "not run (--systems)"})
    runners: dict[str, Callable[[int], dict[str, Any]]] = {
        "joey": lambda t: joey_unit(st, t, pythons["joey"]),
        "onmt": lambda t: onmt_unit(st, t, pythons["onmt"]),
        "seqlab": lambda t: seqlab_unit(st, t)}
    done = st.work / "done"
    record["units"], record["failed"] = {}, {}
    for threads in args.threads:
        for system in args.systems:
            name = f"{system}_t{threads}"
            path = done / f"{name}.json"
            cached = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
            if cached is not None and cached.get("key") == st.key:
                print(f"{name}: finished in an earlier start ({cached['date']}), reused",
                      flush=True)
                record["units"][name] = cached
                continue
            t0 = time.perf_counter()
            unit: dict[str, Any] = {"key": st.key, "date": utc_now(), "git": git_state(),
                    "loadavg_start": os.getloadavg(),
                    "matmul_peak_fp32_1024": matmul_peak(threads)}
            try:
                unit.update(runners[system](threads))
            except RuntimeError as e:
                # the other units still run; this one is tried again on the next start
                print(f"{name} failed: {e}", flush=True)
                record["failed"][name] = str(e)
                continue
            unit["loadavg_end"] = os.getloadavg()
            unit["unit_seconds"] = time.perf_counter() - t0
            write_results(path, unit)
            record["units"][name] = unit
            write_record(record, out_json, t_bench)
    write_record(record, out_json, t_bench)
    print(markdown_table(record))
    print(f"wrote {out_json}")
    if record["failed"]:
        sys.exit(f"failed units (started again with the same command, they run again): "
                 f"{', '.join(record['failed'])}")


def write_record(record: dict[str, Any], out_json: Path, t_bench: float) -> None:
    """The results JSON with the units so far and the table ("complete" once all are in)."""
    record["complete"] = len(record["units"]) == len(record["threads"]) * len(
        record["systems"])
    record["table"] = table_rows(record)
    record["markdown"] = markdown_table(record)
    record["machine"]["loadavg_end"] = os.getloadavg()
    record["total_seconds_this_start"] = time.perf_counter() - t_bench
    write_results(out_json, record)


# ---- the table -------------------------------------------------------------------------------

# (figure, where in a unit, format, whether seqlab/Joey is a speed ratio)
_ROWS: list[tuple[str, tuple[str, ...], str, bool]] = [
    ("training steps in the budget", ("train", "steps"), ",.0f", True),
    ("train steps/s", ("train", "steps_per_s"), ".3f", True),
    ("train padded target tokens/s", ("train", "padded_target_tokens_per_s"), ",.0f", True),
    ("train real target tokens/s", ("train", "real_target_tokens_per_s"), ",.0f", True),
    ("padding share of target positions", ("train", "padding_share"), ".0%", False),
    ("training CPU seconds per wall second (about the threads when nothing else ran)",
     ("cpu_per_wall",), ".2f", False),
    ("real target tokens/s, median logging window (no validation)",
     ("train", "real_target_tokens_per_s_window_median"), ",.0f", True),
    ("achieved training GFLOP/s (analytic)", ("gflops",), ".1f", True),
    ("share of the fp32 matmul peak, same threads", ("peak_share",), ".0%", False),
]
for _split in ("test", "dev"):
    for _beam, _name in ((1, "greedy"), (5, "beam 5")):
        _ROWS.append((f"{_split} BLEU {_name}", ("eval", f"{_split}_beam{_beam}", "bleu"),
                      ".1f", False))
        _ROWS.append((f"{_split} chrF {_name}", ("eval", f"{_split}_beam{_beam}", "chrf"),
                      ".1f", False))
for _beam, _name in ((1, "greedy"), (5, "beam 5")):
    _key = f"test_beam{_beam}"
    _ROWS += [(f"decoding {_name}: sentences/s (test, batch 64)",
               ("eval", _key, "sentences_per_s"), ",.0f", True),
              (f"decoding {_name}: output tokens/s", ("eval", _key, "output_tokens_per_s"),
               ",.0f", True),
              (f"decoding {_name}: mean hypothesis length (subwords)",
               ("eval", _key, "mean_hypothesis_tokens"), ".1f", False)]


def unit_value(unit: dict[str, Any] | None, path: tuple[str, ...], flops: dict[str, Any]
               ) -> float | None:
    """One figure of a unit (None if absent); gflops/peak_share derive from real tokens/s and
    the system's FLOPs per target token (`flops[system]`)."""
    if unit is None:
        return None
    fpt = flops[unit["system"]]["train_flops_per_target_token"]
    rate = unit["train"]["real_target_tokens_per_s"]
    if path == ("gflops",):
        return rate * fpt / 1e9
    if path == ("peak_share",):
        return rate * fpt / 1e9 / unit["matmul_peak_fp32_1024"]["gflops_peak"]
    if path == ("cpu_per_wall",):
        if unit["train"].get("cpu_per_wall_s") is not None:
            return unit["train"]["cpu_per_wall_s"]
        # units from before the figure was recorded: seqlab's loop always counted its CPU time
        summary = unit.get("train_summary") or {}
        return (summary["cpu_seconds"] / summary["seconds"]
                if summary.get("cpu_seconds") and summary.get("seconds") else None)
    value: Any = unit
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def table_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Every figure per unit ("<system>_t<threads>"), and seqlab's ratio to each peer per
    thread count for speeds ("seqlab/<peer>_t<threads>")."""
    rows = []
    for figure, path, fmt, is_ratio in _ROWS:
        row: dict[str, Any] = {"figure": figure, "fmt": fmt}
        for t in record["threads"]:
            for system in record["systems"]:
                row[f"{system}_t{t}"] = unit_value(record["units"].get(f"{system}_t{t}"),
                                                   path, record["flops"])
            s = row.get(f"seqlab_t{t}")
            for peer in PEERS:
                v = row.get(f"{peer}_t{t}")
                row[f"seqlab/{peer}_t{t}"] = s / v if (is_ratio and v and s is not None) \
                    else None
        rows.append(row)
    return rows


def markdown_table(record: dict[str, Any]) -> str:
    """The README's tables, one per thread count: each system, then seqlab / each peer."""
    def cell(v: float | None, fmt: str) -> str:
        return "" if v is None else format(v, fmt)

    names = {**PEERS, "seqlab": "seqlab"}
    systems = [s for s in SYSTEMS if s in record["systems"]]
    peers = [p for p in PEERS if p in systems] if "seqlab" in systems else []
    rows = table_rows(record)
    d, m = record["data"], record["machine"]
    lines = [f"{d['corpus']} {d['src_lang']}->{d['tgt_lang']}, {d['train_pairs_used']:,} "
             f"training pairs, {record['args']['minutes']:g} minutes of training per system "
             f"and thread count; {m['cpu_model']}; `{record['command']}`"
             + ("" if record.get("complete") else " (incomplete: some units still to run)")]
    for t in record["threads"]:
        head = [f"{t} thread{'s' if t > 1 else ''}"] + [names[s] for s in systems]
        head += [f"seqlab / {names[p]}" for p in peers]
        lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in rows:
            cells = [row["figure"]] + [cell(row[f"{s}_t{t}"], row["fmt"]) for s in systems]
            for p in peers:
                r = row[f"seqlab/{p}_t{t}"]
                cells.append("" if r is None else f"{r:.2f}x")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
