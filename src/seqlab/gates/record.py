"""`GatesRun`, what a gates picture shows, and `draw_run`, which writes it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from seqlab.errors import UserError
from seqlab.nn import LSTMGates

FIGURE_SUFFIXES = (".png", ".svg", ".pdf")


@dataclass
class GatesRun:
    """What to draw: the gates of one sequence plus its labels.

    gates: the record, fields (L, D, 1, T, H); step_labels: T labels for the time axis;
    inputs: name -> (T,) input channels for the input panel; marks: step -> label of steps to
    highlight.
    """

    gates: LSTMGates
    title: str
    step_labels: list[str] | None = None
    inputs: dict[str, Tensor] | None = None
    marks: dict[int, str] | None = None


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Tiny models train faster (and identically on every machine) on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def draw_run(run: GatesRun, output: Path, layer: int = 0, direction: int = 0,
             units: list[int] | None = None) -> Path:
    """Write the picture of `run` (.png, .svg or .pdf by suffix); out-of-range choices are a
    one-line UserError naming the option."""
    from seqlab.viz.gates_plot import plot_gates

    L, D, _, _, H = run.gates.f.shape
    if not 0 <= layer < L:
        raise UserError(f"--layer: {layer} out of range; the LSTM has {L} layer(s)")
    if not 0 <= direction < D:
        raise UserError(f"--direction: {direction} out of range; the LSTM has {D} direction(s)")
    if units is not None and not all(0 <= u < H for u in units):
        shown = ",".join(map(str, units))
        raise UserError(f"--units: {shown} out of range; the LSTM has {H} units (0..{H - 1})")
    plot_gates(run.gates, output, layer=layer, direction=direction, step_labels=run.step_labels,
               units=units, title=run.title, inputs=run.inputs, marks=run.marks)
    return output
