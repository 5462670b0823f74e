"""Load on `seqlab studio`: N concurrent clients for T seconds against the translate and series
endpoints, on the loopback interface only.

The server is the real command (`seqlab studio RUN ...` in its own process, on 127.0.0.1 and a
free port); the clients are asyncio tasks (httpx), each sending its next request as soon as the
last one is answered, alternating POST /api/translate (beam 5) and POST /api/series/score (a
CSV upload). Reports per endpoint the requests served, p50/p95/max latency and the errors
(anything but a 200, a 503 "queue full" included, and requests that got no answer), and
writes benchmarks/results/studio_load.json.

    python benchmarks/bench_studio_load.py                      # tiny runs trained here
    python benchmarks/bench_studio_load.py --seconds 30 --clients 50
    python benchmarks/bench_studio_load.py --translator runs/enfr --series runs/series

Bounded: at most --max-requests requests and --seconds of sending (each request has a
--timeout); the server process is always stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from _common import REPO, machine_info, write_results

HOST = "127.0.0.1"   # loopback only, on purpose
WORDS = {"one": "un", "two": "deux", "three": "trois", "red": "rouge", "blue": "bleu",
         "cat": "chat", "dog": "chien", "big": "grand", "small": "petit", "house": "maison"}


def tiny_runs(root: Path) -> tuple[Path, Path]:
    """A small translator and a series autoencoder, trained for a few seconds."""
    from seqlab.series.estimator import SeriesAutoencoder
    from seqlab.translate.train import DataConfig, TrainConfig, train_translator

    rng = random.Random(0)
    lines = set()
    while len(lines) < 300:
        ws = rng.choices(list(WORDS), k=rng.randint(3, 8))
        lines.add(" ".join(ws) + " .\t" + " ".join(WORDS[w] for w in ws) + " .")
    corpus = root / "pairs.tsv"
    corpus.write_text("\n".join(sorted(lines)) + "\n", encoding="utf-8")
    translator = root / "enfr"
    train_translator(translator, model_cfg={"emb_dim": 64, "enc_hidden": 64, "dec_hidden": 64,
                                            "attention": "additive", "dropout": 0.0},
                     train_cfg=TrainConfig(batch_tokens=1000, lr=5e-3, warmup_steps=5,
                                           eval_every=50, eval_sentences=20, seed=0, threads=1,
                                           max_steps=50),
                     data_cfg=DataConfig(corpus=str(corpus), vocab_size=320), progress=False,
                     echo=lambda s: None)
    series = root / "series"
    t = np.arange(3000)
    frame = pd.DataFrame({"a": np.sin(t / 8), "b": np.cos(t / 13)})
    SeriesAutoencoder(window=32, hidden_size=32, latent_size=16, epochs=2, seed=0,
                      num_threads=1).fit(frame).save(series)
    return translator, series


def series_csv(n: int) -> bytes:
    t = np.arange(n)
    a = np.sin(t / 8) + 0.05 * np.random.default_rng(1).standard_normal(n)
    a[n // 2:n // 2 + 20] += 4.0
    return pd.DataFrame({"a": a, "b": np.cos(t / 13)}).to_csv(index=False).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def start_server(runs: list[Path], port: int, max_queue: int, threads: int) -> subprocess.Popen:
    cmd = [sys.executable, "-c", "from seqlab.cli import main; main()", "studio",
           *map(str, runs), "--host", HOST, "--port", str(port), "--max-queue", str(max_queue),
           "--threads", str(threads)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


async def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as c:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                out = proc.stdout.read() if proc.stdout else ""
                raise RuntimeError(f"the server exited: {out}")
            try:
                if (await c.get(base + "/api/health")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("the server did not start in time")


async def load(base: str, clients: int, seconds: float, max_requests: int, timeout: float,
               csv: bytes, sentences: list[str]) -> dict[str, list]:
    import httpx

    results: dict[str, list] = {"translate": [], "series": []}   # (latency_s, outcome)
    sent = 0
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(k: int, c: httpx.AsyncClient) -> None:
        nonlocal sent
        rng = random.Random(k)
        i = k
        while time.monotonic() < stop_at and sent < max_requests:
            sent += 1
            kind = "translate" if i % 2 == 0 else "series"
            i += 1
            t0 = time.perf_counter()
            try:
                if kind == "translate":
                    r = await c.post(base + "/api/translate",
                                     json={"text": rng.choice(sentences), "num_beams": 5})
                else:
                    r = await c.post(base + "/api/series/score",
                                     files={"file": ("load.csv", csv, "text/csv")})
                ok = r.status_code == 200 and (kind != "translate" or
                                               "translation" in r.json())
                outcome = "ok" if ok else f"http {r.status_code}: {r.text[:120]}"
            except httpx.HTTPError as err:
                outcome = f"no answer: {type(err).__name__}"
            results[kind].append((time.perf_counter() - t0, outcome))

    async with httpx.AsyncClient(limits=limits, timeout=timeout) as c:
        await asyncio.gather(*(client(k, c) for k in range(clients)))
    return results


def summarise(rows: list[tuple[float, str]], seconds: float) -> dict[str, Any]:
    ok = [t for t, o in rows if o == "ok"]
    errors = Counter(o for _, o in rows if o != "ok")
    q = (lambda p: float(np.percentile(ok, p))) if ok else (lambda p: None)
    return {"requests": len(rows), "served": len(ok), "errors": sum(errors.values()),
            "error_kinds": dict(errors), "per_s": len(ok) / seconds if seconds else None,
            "latency_s": {"p50": q(50), "p95": q(95), "max": max(ok) if ok else None,
                          "mean": statistics.fmean(ok) if ok else None}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--max-requests", type=int, default=100_000)
    ap.add_argument("--timeout", type=float, default=300.0, help="per request, seconds")
    ap.add_argument("--max-queue", type=int, default=256,
                    help="the server's --max-queue (>= clients: queued, not rejected)")
    ap.add_argument("--threads", type=int, default=1, help="the server's --threads")
    ap.add_argument("--csv-rows", type=int, default=1000, help="rows of the uploaded CSV")
    ap.add_argument("--translator", type=Path, default=None, help="a translator run "
                    "(default: a tiny one trained here)")
    ap.add_argument("--series", type=Path, default=None, help="a series autoencoder run")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/studio_load.json")
    a = ap.parse_args()
    if not 1 <= a.clients <= 1000 or not 0 < a.seconds <= 3600:
        ap.error("--clients must be in 1..1000 and --seconds in (0, 3600]")

    names = {"translator": a.translator, "series": a.series}
    with tempfile.TemporaryDirectory(prefix="bench-studio-") as tmp:
        if a.translator is None or a.series is None:
            print("training tiny runs ...", flush=True)
            tr, se = tiny_runs(Path(tmp))
            a.translator, a.series = a.translator or tr, a.series or se
        sentences = [" ".join(random.Random(k).choices(list(WORDS), k=5 + k % 5)) + " ."
                     for k in range(40)]
        port = free_port()
        base = f"http://{HOST}:{port}"
        proc = start_server([a.translator, a.series], port, a.max_queue, a.threads)
        try:
            asyncio.run(wait_ready(base, proc))
            print(f"{a.clients} clients for {a.seconds:.0f} s against {base} ...", flush=True)
            load_before = os.getloadavg()[0]   # other work on the machine shows in latency
            t0 = time.perf_counter()
            res = asyncio.run(load(base, a.clients, a.seconds, a.max_requests, a.timeout,
                                   series_csv(a.csv_rows), sentences))
            wall = time.perf_counter() - t0
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()

    per = {k: summarise(v, wall) for k, v in res.items()}
    total = summarise(res["translate"] + res["series"], wall)

    def rel(p: Path | None, tiny: str) -> str:   # relative to the repository, else the name
        if p is None:
            return f"tiny, trained by this script ({tiny})"
        p = Path(p).resolve()
        return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else p.name

    record = {"benchmark": "studio_load",
              "setup": {"clients": a.clients, "seconds": a.seconds, "wall_s": wall,
                        "max_queue": a.max_queue, "threads": a.threads, "csv_rows": a.csv_rows,
                        "translator": rel(names["translator"], "64 units, 50 steps"),
                        "series": rel(names["series"], "window 32, 32 units, 2 epochs"),
                        "num_beams": 5, "host": HOST,
                        "load_average_1min_before": load_before},
              "translate": per["translate"], "series": per["series"], "total": total,
              "machine": machine_info()}
    print(f"{'endpoint':<10} {'served':>7} {'errors':>6} {'per s':>7} {'p50 s':>7} "
          f"{'p95 s':>7} {'max s':>7}")
    for name, s in [*per.items(), ("total", total)]:
        lat = s["latency_s"]
        f = lambda v: f"{v:7.3f}" if v is not None else "      -"  # noqa: E731
        print(f"{name:<10} {s['served']:>7} {s['errors']:>6} {s['per_s']:7.1f} {f(lat['p50'])} "
              f"{f(lat['p95'])} {f(lat['max'])}")
        for kind, n in s["error_kinds"].items():
            print(f"    {n} x {kind}")
    print(f"wrote {write_results(a.out, record)}")


if __name__ == "__main__":
    main()
