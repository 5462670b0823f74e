"""`seqlab demo`: the whole system in one go, offline, on built-in data.

1. the gates of a small LSTM, drawn over time (what it remembers and forgets);
2. the LSTM autoencoder finding the anomaly in a real ECG-like UCR series (KDD-TSAD_135);
3. a small English->French translator trained for a few minutes on the LibreOffice help,
   translating a few sentences and drawing where each output word looked.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from seqlab.cli.options import POSITIVE_FLOAT, OutputDir, device_option


@click.command()
@click.option("--out", "out_dir", type=OutputDir(), default=Path("demo_out"),
              show_default=True, help="Directory for the pictures and runs.")
@click.option("--minutes", type=POSITIVE_FLOAT, default=5.0, show_default=True,
              help="Training budget of the translator.")
@click.option("--skip", multiple=True, type=click.Choice(["gates", "series", "translate"]),
              help="Leave out a part (repeatable).")
@device_option(help_extra=" For the translator (the gates and series parts are tiny: CPU).")
def demo(out_dir: Path, minutes: float, skip: tuple[str, ...], device: str) -> None:
    """Run the built-in demo: gates, anomaly detection, translation with attention."""
    if out_dir.is_dir() and any(out_dir.iterdir()):
        click.echo(f"{out_dir} exists: the demo's files in it are replaced", err=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if "gates" not in skip:
        from seqlab.gates import run_builtin_gates_demo

        click.echo("== 1/3 An LSTM from its gates ==")
        for path in run_builtin_gates_demo(out_dir / "gates"):
            click.echo(f"  wrote {path}")
    if "series" not in skip:
        from seqlab.series.demo import run_series_demo

        click.echo("== 2/3 Anomalies by reconstruction error (LSTM autoencoder) ==")
        summary = run_series_demo(out_dir / "series")
        for key, value in summary.items():
            click.echo(f"  {key}: {value}")
    if "translate" not in skip:
        from seqlab.translate.demo import run_translate_demo

        click.echo(f"== 3/3 English -> French with attention ({minutes:g} min of training) ==")
        summary = run_translate_demo(out_dir / "translate", minutes=minutes, device=device)
        for key, value in summary.items():
            click.echo(f"  {key}: {value}")
    click.echo(f"done in {time.perf_counter() - t0:.0f} s; everything is under {out_dir}/")
