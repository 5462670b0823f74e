"""`seqlab demo`: the whole system in one go, offline, on built-in data.

1. the gates of a small LSTM, drawn over time (what it remembers and forgets);
2. the LSTM autoencoder finding the anomaly in a real heart-rate series (UCR KDD-TSAD_135);
3. a small English->French translator trained on the LibreOffice help for a fixed number of
   steps, translating a few sentences and drawing where each output word looked.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from seqlab.cli.options import (
    OutputDir,
    ThreadsParam,
    device_option,
    quiet_option,
    time_budget_option,
)
from seqlab.translate.demo import DEMO_STEPS


@click.command()
@click.option("--out", "out_dir", type=OutputDir(), default=Path("demo_out"),
              show_default=True, help="Directory for the pictures and runs.")
@click.option("--steps", type=click.IntRange(min=1), default=DEMO_STEPS, show_default=True,
              help="Training steps of the translator: the same result on any machine (a slow "
                   "one takes longer). A translator already trained under --out is reused; a "
                   "larger --steps trains it on.")
@click.option("--fresh", is_flag=True,
              help="Delete the translator trained earlier under --out and train a new one.")
@time_budget_option("Optional cap in minutes on the translator's training time in total (it "
                    "may then stop short of --steps, and says so).",
                    note=": now only a cap; the demo's budget is --steps, the same on any "
                         "machine")
@click.option("--skip", multiple=True, type=click.Choice(["gates", "series", "translate"]),
              help="Leave out a part (repeatable).")
@click.option("--threads", default="auto", show_default=True, type=ThreadsParam(),
              help="Torch threads of the translator on a CPU; auto: the idle cores (the cores "
                   "less the load average, at least 1), so a busy machine is not "
                   "oversubscribed.")
@quiet_option
@device_option(help_extra=" For the translator (the gates and series parts are tiny: CPU).")
def demo(out_dir: Path, steps: int, fresh: bool, time_budget: float | None,
         skip: tuple[str, ...], threads: int | None, quiet: bool, device: str) -> None:
    """Run the built-in demo: gates, anomaly detection, translation with attention."""
    if out_dir.is_dir() and any(out_dir.iterdir()):
        click.echo(f"{out_dir} exists: the demo's files in it are replaced", err=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    echo = click.echo
    if "gates" not in skip:
        from seqlab.gates import run_builtin_gates_demo

        echo("== 1/3 An LSTM from its gates ==")
        echo("  a 4-unit LSTM learns to remember a value until a recall cue (seconds)")
        for path in run_builtin_gates_demo(out_dir / "gates"):
            echo(f"  {path}: the input gate opening at STORE, the forget gate holding the "
                 "memory, the output gate opening at RECALL")
    if "series" not in skip:
        from seqlab.series.demo import describe_series_demo, run_series_demo

        echo("== 2/3 Anomalies by reconstruction error (LSTM autoencoder) ==")
        for line in describe_series_demo(run_series_demo(out_dir / "series", progress=not quiet)):
            echo(f"  {line}")
    if "translate" not in skip:
        from seqlab.device import idle_threads
        from seqlab.translate.demo import run_translate_demo

        n_threads = idle_threads() if threads is None else threads
        echo(f"== 3/3 English -> French with attention ({steps} training steps) ==")
        if threads is None:
            echo(f"  {n_threads} torch thread(s): the idle cores now (--threads to choose)")
        res = run_translate_demo(out_dir / "translate", steps=steps, fresh=fresh,
                                 time_budget=time_budget, progress=not quiet, device=device,
                                 threads=n_threads, echo=lambda m: echo(f"  {m}"))
        bleu = "" if res.best_dev_bleu is None else f", dev BLEU {res.best_dev_bleu:.1f}"
        echo(f"  translator: {res.run_dir} ({res.steps} steps{bleu}; "
             f"`seqlab translate run {res.run_dir} \"...\"` translates more)")
        for t in res.translations:
            echo(f"  {t.source!r} -> {t.translation!r}")
        for t in res.translations:
            if t.plot is None:
                echo(f"  (no picture for {t.source!r}: the translation is empty)")
            else:
                echo(f"  {t.plot}: which English subword (column) each French subword (row) "
                     "looked at")
    echo(f"done in {time.perf_counter() - t0:.0f} s; everything is under {out_dir}/")
