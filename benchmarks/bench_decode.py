"""Decoding speed of the trained Tatoeba en->fr translator: seqlab now vs an earlier revision.

The earlier revision's package (default: the commit before the decoding speed-ups) is extracted
with `git archive` and imported in this same process as `seqlab_base`, so both versions
translate the same sentences with the same weights, interleaved round by round (the order
alternates), on the same thread count. Per system and beam size it reports the median wall and
CPU seconds (CPU time counts only this process, so it is the steadier figure on a busy machine),
sentences per second, the speed-up, and whether the outputs are identical (strings; scores to
the last bit). A breakdown of the current version's greedy time follows: encoder, decoder
steps by batch size, and the rest (search bookkeeping, tokenisation, detokenisation).

    python benchmarks/bench_decode.py                     # test split, greedy and beam 5
    python benchmarks/bench_decode.py --limit 500 --rounds 2

Writes benchmarks/results/decode_cpu.json.
"""

from __future__ import annotations

import argparse
import importlib
import io
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from _common import REPO, machine_info, write_results

BASELINE_REV = "28d0f70"   # before the decoding speed-ups (issue #3)
RUN_DIR = REPO / "runs" / "bench_translate_peer" / "tatoeba-fra-eng" / "seqlab_t1"


def import_baseline(rev: str, into: Path) -> Any:
    """Import src/seqlab at git revision `rev` as the package `seqlab_base`."""
    tar = subprocess.run(["git", "archive", rev, "src/seqlab"], cwd=REPO, check=True,
                         capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        tf.extractall(into, filter="data")
    pkg = into / "src" / "seqlab"
    for path in pkg.rglob("*.py"):   # absolute imports of seqlab -> seqlab_base
        text = path.read_text()
        path.write_text(re.sub(r"\bseqlab\.", "seqlab_base.", re.sub(
            r"^(\s*)(from|import) seqlab\b", r"\1\2 seqlab_base", text, flags=re.M)))
    pkg.rename(pkg.with_name("seqlab_base"))
    sys.path.insert(0, str(into / "src"))
    return importlib.import_module("seqlab_base.translate.api")


def timed(fn: Any) -> tuple[Any, float, float]:
    """fn() -> (its result, wall seconds, CPU seconds of this process)."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def breakdown(translator: Any, sentences: list[str], batch_size: int) -> dict[str, Any]:
    """Greedy with the current code, timed by part (CPU seconds): the encoder, the decoder's
    steps grouped by how many rows they ran, and everything else."""
    from seqlab.decoding import search

    model, dec = translator.model, translator.model.decoder
    parts: dict[str, float] = defaultdict(float)
    by_rows: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0])  # steps, rows, seconds
    encode, step = model.encode, dec.step

    def timed_encode(*a: Any, **k: Any) -> Any:
        c0 = time.process_time()
        out = encode(*a, **k)
        parts["encoder"] += time.process_time() - c0
        return out

    def timed_step(tokens: torch.Tensor, *a: Any) -> Any:
        c0 = time.process_time()
        out = step(tokens, *a)
        n = tokens.numel()
        key = "1-3" if n < 4 else "4-15" if n < 16 else "16-47" if n < 48 else f"48-{batch_size}"
        rec = by_rows[key]
        rec[0], rec[1], rec[2] = rec[0] + 1, rec[1] + n, rec[2] + time.process_time() - c0
        return out

    model.encode, dec.step = timed_encode, timed_step
    try:
        _, wall, cpu = timed(lambda: translator.translate(sentences, num_beams=1,
                                                           batch_size=batch_size))
    finally:
        del model.encode, dec.step
    steps_s = sum(r[2] for r in by_rows.values())
    parts["decoder steps"] = steps_s
    parts["search, batching, tokenisation, detokenisation"] = cpu - parts["encoder"] - steps_s
    return {"cpu_s": cpu, "wall_s": wall, "parts_cpu_s": dict(parts),
            "steps_by_rows": {k: {"steps": int(v[0]), "row_steps": int(v[1]), "cpu_s": v[2],
                                  "us_per_row": 1e6 * v[2] / max(v[1], 1)}
                              for k, v in sorted(by_rows.items())},
            "search_module": search.__file__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run-dir", default=str(RUN_DIR))
    ap.add_argument("--corpus", default="tatoeba-fra-eng")
    ap.add_argument("--split", default="test", choices=["dev", "test"])
    ap.add_argument("--limit", type=int, default=None, help="first N sentences only")
    ap.add_argument("--beams", default="1,5", help="comma-separated beam sizes (1 = greedy)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--baseline-rev", default=BASELINE_REV)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "decode_cpu.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from seqlab.translate.api import Translator
    from seqlab.translate.corpora import load_corpus

    run_dir = Path(args.run_dir)
    if not (run_dir / "model.safetensors").exists():
        sys.exit(f"{run_dir}: no trained model (run benchmarks/bench_translate_peer.py first)")
    corpus = load_corpus(args.corpus, "en", "fr")
    sentences = list(getattr(corpus, args.split).src)[:args.limit]
    tmp = tempfile.TemporaryDirectory(prefix="seqlab_base_")
    base_api = import_baseline(args.baseline_rev, Path(tmp.name))
    systems = {"baseline": base_api.Translator.load(run_dir), "current": Translator.load(run_dir)}
    beams = [int(b) for b in args.beams.split(",")]
    print(f"{len(sentences)} sentences ({args.corpus} {args.split}), batch {args.batch_size}, "
          f"{args.threads} thread(s), baseline = {args.baseline_rev}", flush=True)

    apis = {"baseline": base_api, "current": importlib.import_module("seqlab.translate.api")}

    def run(name: str, beam: int, subset: list[str] = sentences) -> list[Any]:
        tr = systems[name]
        return apis[name].translate_batched(tr.model, tr.tok, subset, num_beams=beam,
                                            batch_size=args.batch_size, src_eos=tr.src_eos)

    for name in systems:      # warm-up (caches, lazy inits)
        run(name, 1, sentences[:200])
    times: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    outputs: dict[tuple[str, int], Any] = {}
    for rnd in range(args.rounds):
        for beam in beams:
            order = list(systems) if rnd % 2 == 0 else list(reversed(systems))
            for name in order:
                res, wall, cpu = timed(lambda n=name, b=beam: run(n, b))
                times[name][f"beam{beam}"].append((wall, cpu))
                outputs[(name, beam)] = [(t.text, t.score) for t in res]
                print(f"round {rnd + 1} beam {beam} {name:8s}: wall {wall:6.2f} s, "
                      f"CPU {cpu:6.2f} s ({len(sentences) / cpu:5.0f} sentences/CPU-s)",
                      flush=True)

    rows, checks = [], {}
    for beam in beams:
        key = f"beam{beam}"
        med = {n: (statistics.median(w for w, _ in times[n][key]),
                   statistics.median(c for _, c in times[n][key])) for n in systems}
        b_out, c_out = outputs[("baseline", beam)], outputs[("current", beam)]
        same = sum(a[0] == b[0] for a, b in zip(b_out, c_out, strict=True))
        same_score = sum(a[1] == b[1] for a, b in zip(b_out, c_out, strict=True))
        checks[key] = {"sentences": len(sentences), "identical_strings": same,
                       "identical_scores_to_the_bit": same_score}
        rows.append({"search": "greedy" if beam == 1 else f"beam {beam}",
                     "baseline_cpu_s": med["baseline"][1], "current_cpu_s": med["current"][1],
                     "baseline_wall_s": med["baseline"][0], "current_wall_s": med["current"][0],
                     "baseline_sent_per_cpu_s": len(sentences) / med["baseline"][1],
                     "current_sent_per_cpu_s": len(sentences) / med["current"][1],
                     "speedup_cpu": med["baseline"][1] / med["current"][1],
                     "speedup_wall": med["baseline"][0] / med["current"][0],
                     "identical_outputs": same == len(sentences)})
    parts = breakdown(systems["current"], sentences, args.batch_size)

    print(f"\n{'search':8s} {'baseline sent/s':>16s} {'current sent/s':>15s} {'speed-up':>9s} "
          f"{'same text':>10s} {'same score':>11s}  (per CPU-second, medians of {args.rounds})")
    for r, c in zip(rows, checks.values(), strict=True):
        print(f"{r['search']:8s} {r['baseline_sent_per_cpu_s']:16.0f} "
              f"{r['current_sent_per_cpu_s']:15.0f} {r['speedup_cpu']:8.2f}x "
              f"{c['identical_strings']:10d} {c['identical_scores_to_the_bit']:11d}")
    print(f"\ncurrent greedy, CPU seconds by part (total {parts['cpu_s']:.2f} s):")
    for k, v in parts["parts_cpu_s"].items():
        print(f"  {k:48s} {v:6.2f} s  {100 * v / parts['cpu_s']:4.0f}%")
    for k, v in parts["steps_by_rows"].items():
        print(f"  steps with {k:>6s} rows: {v['steps']:5d} steps, {v['row_steps']:6d} row-steps, "
              f"{v['cpu_s']:5.2f} s, {v['us_per_row']:5.0f} us/row")
    record = {"machine": machine_info(baseline_rev=args.baseline_rev),
              "sentences": len(sentences), "corpus": args.corpus, "split": args.split,
              "batch_size": args.batch_size, "rounds": args.rounds, "table": rows,
              "checks": checks, "raw_times_wall_cpu": {n: dict(v) for n, v in times.items()},
              "breakdown_current_greedy": parts}
    write_results(args.out, record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
