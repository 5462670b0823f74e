"""`seqlab gates`: run an LSTM over a sequence and draw its gates over time.

    seqlab gates                                   # built-in example, works offline
    seqlab gates --text "hello world" -o g.png     # characters as inputs
    seqlab gates --csv data.csv --column temp --units 0,3,5 -o g.svg
    seqlab gates --text "..." --weights lstm.safetensors   # torch.nn.LSTM-compatible names
    seqlab gates --model runs/series --csv data.csv --start 500   # a series model's encoder
    seqlab gates --model runs/translator --text "I am cold."     # a translator's encoder

Without --weights, a tiny LSTM first learns to predict the next character / value of the given
sequence (`seqlab.gates.sequence`); `--save-weights` keeps it for a later `--weights` run. With
no input at all it draws the built-in remember-until-recall example
(`seqlab.gates.memory_task`). This module only parses the options, calls `seqlab.gates` and
prints.
"""

from __future__ import annotations

from pathlib import Path

import click

from seqlab.cli.options import NONNEG_INT, OutputFile, device_option
from seqlab.errors import UserError
from seqlab.gates import (
    FIGURE_SUFFIXES,
    MemoryTaskConfig,
    builtin_memory_run,
    draw_run,
    sequence_run,
    trained_run,
)
from seqlab.validate import replaced_note


def parse_units(text: str | None) -> list[int] | None:
    """--units "0,3,5" -> [0, 3, 5] (None stays None)."""
    if text is None:
        return None
    try:
        units = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--units: expected comma-separated unit numbers like 0,3,5, got "
                        f"{text!r}") from None
    if not units:
        raise UserError(f"--units: expected comma-separated unit numbers like 0,3,5, got {text!r}")
    return units


@click.command("gates")
@click.option("--text", default=None, help="A text; each character is one input step.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), default=None,
              help="A CSV file; one numeric column (--column) is the input sequence.")
@click.option("--column", default=None, help="The CSV column to read.")
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="LSTM weights (.safetensors, torch.nn.LSTM names) instead of training.")
@click.option("--units", default=None,
              help="Units for the C/h line plots, e.g. 0,3,5 (default: the 4 most active).")
@click.option("-o", "--output", type=OutputFile(), default=Path("gates.png"),
              show_default=True, help="Picture to write: .png, .svg or .pdf.")
@click.option("--layer", type=NONNEG_INT, default=0, show_default=True, help="Layer to draw.")
@click.option("--direction", type=click.IntRange(0, 1), default=0, show_default=True,
              help="Direction to draw (1 = reverse, for bidirectional weights).")
@click.option("--hidden-size", type=click.IntRange(1, 256), default=16, show_default=True,
              help="Units of the LSTM trained on your input (without --weights).")
@click.option("--train-steps", type=click.IntRange(0, 100_000), default=300,
              show_default=True, help="Training steps on your input (without --weights).")
@click.option("--max-steps", type=click.IntRange(1, 2000), default=150, show_default=True,
              help="Draw at most this many time steps (from the start).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the training (initial weights and batches).")
@click.option("--save-weights", type=OutputFile(), default=None,
              help="Also save the trained LSTM (.safetensors) for later --weights use.")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
              help="A trained seqlab run directory (series autoencoder: with --csv; "
                   "translator: with --text): draw its encoder's gates.")
@click.option("--start", type=click.IntRange(0), default=0, show_default=True,
              help="With --model RUN --csv FILE: first point of the window to draw.")
@device_option("cpu", " Training and --model runs; the gates are drawn from the CPU.")
def gates(text: str | None, csv_path: Path | None, column: str | None, weights: Path | None,
          units: str | None, output: Path, layer: int, direction: int, hidden_size: int,
          train_steps: int, max_steps: int, seed: int, save_weights: Path | None,
          model_dir: Path | None, start: int, device: str) -> None:
    """Draw an LSTM's gates over time (forget, input, cell update, output; C and h).

    With no input, trains a tiny LSTM on a built-in remember-until-recall task and draws it.
    """
    if output.suffix.lower() not in FIGURE_SUFFIXES:
        raise UserError(f"-o/--output: expected a .png, .svg or .pdf file name, got {output}")
    if text is not None and csv_path is not None:
        raise UserError("--text and --csv: give one input, not both")
    if column is not None and csv_path is None:
        raise UserError("--column: only used with --csv FILE")
    unit_list = parse_units(units)
    notes = [replaced_note(output)] + ([replaced_note(save_weights)] if save_weights else [])
    if model_dir is not None:
        if weights is not None or column is not None:
            raise UserError("--model: the run directory fixes the weights and columns; drop "
                            "--weights/--column")
        run = trained_run(model_dir, text, csv_path, start, max_steps, device)
    elif text is None and csv_path is None:
        if weights is not None:
            raise UserError("--weights: also give the input to run them on (--text or --csv)")
        run = builtin_memory_run(MemoryTaskConfig(device=device))
    else:
        run, _ = sequence_run(text, csv_path, column, weights, hidden_size, train_steps, seed,
                              max_steps, save_weights, device)
    draw_run(run, output, layer=layer, direction=direction, units=unit_list)
    click.echo("; ".join(notes))
