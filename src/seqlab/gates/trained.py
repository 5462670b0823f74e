"""The encoder gates of a trained seqlab run, loaded with the application's own loader."""

from __future__ import annotations

from pathlib import Path

import torch

from seqlab.device import resolve_device
from seqlab.errors import UserError
from seqlab.gates.record import GatesRun
from seqlab.nn import LSTMGates
from seqlab.runs import run_kind


def trained_run(run_dir: Path, text: str | None, csv_path: Path | None, start: int,
                max_steps: int, device: str = "cpu") -> GatesRun:
    """The encoder gates of a series autoencoder run (over the window of `csv_path` that
    begins at point `start`) or of a translator run (over the subword pieces of `text`, at
    most `max_steps` of them)."""
    kind = run_kind(run_dir)
    if kind == "series":
        return _series_run(run_dir, text, csv_path, start, device)
    if kind == "translator":
        return _translator_run(run_dir, text, csv_path, max_steps, device)
    raise UserError(f"--model: {run_dir} is a {kind} run; gates are drawn for series "
                    "autoencoder and translator runs")


def _series_run(run_dir: Path, text: str | None, csv_path: Path | None,
                start: int, device: str) -> GatesRun:
    from seqlab.series.estimator import SeriesAutoencoder

    if csv_path is None or text is not None:
        raise UserError("--model: a series autoencoder reads a CSV; give --csv FILE "
                        "(and --start INDEX for the window)")
    est = SeriesAutoencoder.load(run_dir, device=str(resolve_device(device)))
    data = est.read_data(csv_path)
    if not 0 <= start <= len(data.values) - est.window:
        raise UserError(f"--start: {start} leaves no full window of {est.window} points in "
                        f"{csv_path} ({len(data.values)} points)")
    gates, values = est.encoder_gates(data, start)  # (L,1,1,T,H), (T, C)
    inputs = {name: torch.as_tensor(values[:, k], dtype=torch.float32)
              for k, name in enumerate(est.columns_)}
    title = (f"Encoder gates of the series autoencoder {run_dir.name} over points "
             f"{start}-{start + est.window - 1} of {csv_path.name} (window {est.window}, "
             f"H={gates.f.shape[-1]})")
    return GatesRun(_on_cpu(gates), title, None, inputs)


def _translator_run(run_dir: Path, text: str | None, csv_path: Path | None,
                    max_steps: int, device: str) -> GatesRun:
    from seqlab.translate.api import Translator

    if text is None or csv_path is not None:
        raise UserError("--model: a translator reads a sentence; give --text \"...\"")
    if not text.strip():
        raise UserError("--text: empty sentence; give at least one word")
    tr = Translator.load(run_dir, device=device)
    if not tr.has_gates:
        raise UserError(f"--model: {run_dir} is a Transformer translator, which has no LSTM "
                        f"gates; draw its attention with `seqlab translate run {run_dir} "
                        f"\"...\" --attention-plot FILE.png`")
    gates, pieces = tr.encoder_gates(text, max_steps)
    title = (f"Encoder gates of the translator {run_dir.name} over {text[:40]!r} "
             f"({len(pieces)} subword steps, H={gates.f.shape[-1]}, --direction 1 = right-to-left)")
    return GatesRun(_on_cpu(gates), title, pieces)


def _on_cpu(gates: LSTMGates) -> LSTMGates:
    """A record made on a GPU, copied to the CPU for drawing."""
    values = gates.as_dict()
    f, i, g, o, c, h = (values[k].cpu() for k in ("f", "i", "g", "o", "c", "h"))
    return LSTMGates(f, i, g, o, c, h, lengths=gates.lengths)
