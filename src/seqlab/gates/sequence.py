"""Gates over a user's sequence: characters of a text or one numeric column of a CSV file.

The LSTM comes from a safetensors file with torch.nn.LSTM names, or is a tiny one (seeded, a
few seconds on one core) trained here to predict the next character / value, so the gates show
something learned rather than random weights. The trained weights can be saved (safetensors,
torch.nn.LSTM names, the alphabet or scaling in the metadata) for a later run with `weights=`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import Tensor, nn

from seqlab.device import resolve_device
from seqlab.errors import UserError
from seqlab.gates.record import GatesRun, one_thread
from seqlab.io import save_safetensors_atomic
from seqlab.nn import LSTM


def read_csv_column(path: Path, column: str | None) -> Tensor:
    """The numeric column `column` of a CSV file as a float32 (T,) tensor (UserError if bad)."""
    import pandas as pd

    if path.is_dir():
        raise UserError(f"--csv: {path} is a directory, expected a CSV file")
    if not path.is_file():
        raise UserError(f"--csv: file not found: {path}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise UserError(f"--csv: cannot read {path} as CSV: {str(err).splitlines()[0]}") from None
    available = ", ".join(map(str, df.columns)) or "(none)"
    if column is None:
        raise UserError(f"--column: required with --csv; columns in {path}: {available}")
    if column not in df.columns:
        raise UserError(f"--column: no column {column!r} in {path}; available: {available}")
    values = []
    for row, cell in enumerate(df[column]):
        try:
            value = float(cell)
        except ValueError:
            # line numbers count the header as line 1
            raise UserError(f"{path}, line {row + 2}, column {column!r}: expected a number, "
                            f"got {cell!r}") from None
        if not math.isfinite(value):
            raise UserError(f"{path}, line {row + 2}, column {column!r}: expected a finite "
                            f"number, got {cell!r}")
        values.append(value)
    if not values:
        raise UserError(f"--csv: {path} has no data rows")
    return torch.tensor(values, dtype=torch.float32)


def load_lstm_weights(path: Path) -> tuple[LSTM, dict[str, str]]:
    """An LSTM from a safetensors file with torch.nn.LSTM names (optionally under one prefix),
    and the file's metadata."""
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    if not path.is_file():
        raise UserError(f"--weights: file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as err:
        raise UserError(f"--weights: cannot read {path} as safetensors: {err}") from None
    prefixes = {k[: -len("weight_ih_l0")] for k in tensors if k.endswith("weight_ih_l0")}
    if len(prefixes) != 1:
        raise UserError(f"--weights: {path} must hold exactly one LSTM with torch.nn.LSTM names "
                        f"(weight_ih_l0, weight_hh_l0, ...); found "
                        f"{len(prefixes)} (keys: {', '.join(sorted(tensors)[:8])})")
    prefix = prefixes.pop()
    state = {k[len(prefix):]: v.float() for k, v in tensors.items() if k.startswith(prefix)}
    layers = sum(1 for k in state if k.startswith("weight_ih_l") and not k.endswith("_reverse"))
    w_ih, w_hh = state["weight_ih_l0"], state.get("weight_hh_l0")
    if w_hh is None or w_ih.dim() != 2 or w_hh.dim() != 2 or w_ih.shape[0] % 4:
        raise UserError(f"--weights: {path}: {prefix}weight_ih_l0/weight_hh_l0 do not have "
                        "LSTM shapes (4H, I) and (4H, H)")
    lstm = LSTM(w_ih.shape[1], w_hh.shape[1], num_layers=layers,
                bias="bias_ih_l0" in state, bidirectional="weight_ih_l0_reverse" in state,
                batch_first=True)
    try:
        lstm.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()
        raise UserError(f"--weights: {path} does not fit a torch.nn.LSTM layout: "
                        f"{' '.join(s.strip() for s in first[:3])}") from None
    return lstm, metadata


def train_next_step(x: Tensor, target: Tensor, out_size: int, hidden_size: int, steps: int,
                    seed: int, classify: bool, device: str = "cpu") -> LSTM:
    """Fit LSTM + linear head to predict the next step; returns the LSTM (on the CPU,
    trained on `device`).

    x: (T, I) inputs; target: (T,) class ids (`classify`, `out_size` classes) or values.
    Trains on random windows of up to 64 steps, 16 per batch, Adam at 1e-2.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    T = x.shape[0]
    window = min(T, 64)
    dev = resolve_device(device)
    x, target = x.to(dev), target.to(dev)
    lstm = LSTM(x.shape[1], hidden_size, batch_first=True).to(dev)
    head = nn.Linear(hidden_size, out_size).to(dev)
    opt = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=1e-2)
    with one_thread():
        for _ in range(steps):
            starts = torch.randint(0, T - window + 1, (16,), generator=gen)
            idx = (starts[:, None] + torch.arange(window)[None, :]).to(dev)  # (16, window)
            out, _ = lstm(x[idx])
            pred = head(out)
            if classify:
                loss = nn.functional.cross_entropy(pred.reshape(-1, out_size),
                                                   target[idx].reshape(-1))
            else:
                loss = ((pred.squeeze(-1) - target[idx]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return lstm.cpu()


def sequence_run(text: str | None, csv_path: Path | None, column: str | None,
                 weights: Path | None, hidden_size: int, train_steps: int, seed: int,
                 max_steps: int, save_weights: Path | None, device: str = "cpu"
                 ) -> tuple[GatesRun, LSTM]:
    """Encode the sequence (`text`, else column `column` of `csv_path`), get an LSTM (load
    `weights` or train one), record its gates over the first `max_steps` steps; optionally
    save the LSTM to `save_weights`. Returns the run and the LSTM."""
    metadata: dict[str, str] = {}
    lstm = None
    if weights is not None:
        lstm, metadata = load_lstm_weights(weights)
    labels: list[str] | None
    inputs: dict[str, Tensor] | None
    if text is not None:
        if text == "":
            raise UserError("--text: empty text; give at least one character")
        alphabet = (json.loads(metadata["alphabet"]) if "alphabet" in metadata
                    else sorted(set(text)))
        index = {ch: k for k, ch in enumerate(alphabet)}
        unknown = sorted(set(text) - set(index))
        if unknown:
            raise UserError(f"--text: characters {''.join(unknown)!r} are not in the weights' "
                            f"alphabet {''.join(alphabet)!r}")
        ids = torch.tensor([index[ch] for ch in text])
        x = nn.functional.one_hot(ids, len(alphabet)).float()  # (T, V)
        source = f"the text {text[:30]!r}" + ("..." if len(text) > 30 else "")
        labels = list(text)
        inputs = None
        meta = {"input": "text", "alphabet": json.dumps(alphabet)}
        if lstm is None:
            if len(text) < 2:
                raise UserError("--text: need at least 2 characters to train on (or give "
                                "--weights)")
            lstm = train_next_step(x[:-1], ids[1:], len(alphabet), hidden_size, train_steps,
                                   seed, classify=True)
    else:
        if csv_path is None:
            raise ValueError("sequence_run: give text or csv_path")
        values = read_csv_column(csv_path, column)
        mean = float(metadata.get("mean", values.mean()))
        std = float(metadata.get("std", values.std() if len(values) > 1 else 1.0)) or 1.0
        x = ((values - mean) / std)[:, None]  # (T, 1), standardised
        source = f"column {column!r} of {csv_path.name}"
        labels = None
        inputs = {f"{column} (standardised)": x[:, 0]}
        meta = {"input": "csv", "mean": repr(mean), "std": repr(std)}
        if lstm is None:
            if len(values) < 2:
                raise UserError(f"--csv: {csv_path} needs at least 2 values to train on (or "
                                "give --weights)")
            lstm = train_next_step(x[:-1], x[1:, 0], 1, hidden_size, train_steps, seed,
                                   classify=False, device=device)
    if x.shape[1] != lstm.input_size:
        raise UserError(f"--weights: the LSTM expects input_size={lstm.input_size}, but "
                        f"{source} gives {x.shape[1]} input features per step")
    T_all = x.shape[0]
    T = min(T_all, max_steps)
    with torch.no_grad():
        _, _, gates = lstm(x[None, :T], return_gates=True)
    if save_weights is not None:
        save_safetensors_atomic(lstm.state_dict(), save_weights,
                                metadata={"seqlab": "gates-lstm", **meta})
    how = (f"weights from {weights.name}" if weights is not None
           else f"trained {train_steps} steps to predict the next "
                f"{'character' if text is not None else 'value'}")
    shown = f"steps 0-{T - 1} of {T_all}" if T_all > T else f"{T_all} steps"
    title = (f"LSTM gates over {source} ({shown}); H={lstm.hidden_size}, {how}")
    if inputs is not None:
        inputs = {k: v[:T] for k, v in inputs.items()}
    return GatesRun(gates, title, labels[:T] if labels else None, inputs), lstm
