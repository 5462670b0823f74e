"""`seqlab gates`: run an LSTM over a sequence and draw its gates over time.

    seqlab gates                                   # built-in example, works offline
    seqlab gates --text "hello world" -o g.png     # characters as inputs
    seqlab gates --csv data.csv --column temp --units 0,3,5 -o g.svg
    seqlab gates --text "..." --weights lstm.safetensors   # torch.nn.LSTM-compatible names
    seqlab gates --model runs/series --csv data.csv --start 500   # a series model's encoder
    seqlab gates --model runs/translator --text "I am cold."     # a translator's encoder

Without --weights, a tiny LSTM (seeded, a few seconds on one core) first learns to predict the
next character / value of the given sequence, so the gates show something learned rather than
random weights. `--save-weights` keeps that model (safetensors, torch.nn.LSTM names, with the
alphabet / scaling in the metadata) for a later `--weights` run.

The built-in example (no input given) trains an LSTM on "remember the value until recall":
it reads a stream of random values; at the step flagged STORE it must keep that value and
output it when RECALL comes, ignoring the distractors in between, which is what the input,
forget and output gates are for.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import torch
from torch import Tensor, nn

from seqlab.cli.options import device_option
from seqlab.device import model_device, resolve_device, to_device
from seqlab.errors import UserError
from seqlab.io import save_safetensors_atomic
from seqlab.nn import LSTM, LSTMGates

FIGURE_SUFFIXES = (".png", ".svg", ".pdf")


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Tiny models train faster (and identically on every machine) on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class GatesRun:
    """What to draw: the gates of one sequence plus its labels."""

    gates: LSTMGates
    title: str
    step_labels: list[str] | None = None
    inputs: dict[str, Tensor] | None = None
    marks: dict[int, str] | None = None


# ----------------------------------------------------------------------------- built-in task

@dataclass
class MemoryTaskConfig:
    steps: int = 20  # sequence length T
    hidden_size: int = 4  # few units, so each one's role is visible
    train_steps: int = 600  # ~5 s on one core; MSE ~1e-3 (the values span [-1, 1])
    batch_size: int = 256
    lr: float = 1e-2
    seed: int = 0
    device: str = "cpu"  # where it trains; the gates are recorded on the CPU


def memory_task_batch(n: int, T: int, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """n sequences (n, T, 3) of [value, store flag, recall flag]; recall steps (n,); targets (n,).

    The value channel is random in [-1, 1] at every step; the target is the value at the
    STORE step (1..5), due at the RECALL step (at least 4 steps later).
    """
    v = torch.rand(n, T, generator=gen) * 2 - 1
    store = torch.randint(1, 6, (n,), generator=gen)
    recall = store + 4 + (torch.rand(n, generator=gen) * (T - 2 - (store + 4))).long()
    x = torch.zeros(n, T, 3)
    x[..., 0] = v
    rows = torch.arange(n)
    x[rows, store, 1] = 1.0
    x[rows, recall, 2] = 1.0
    return x, recall, v[rows, store]


def train_memory_task(cfg: MemoryTaskConfig) -> tuple[LSTM, nn.Linear, float]:
    """Train LSTM(3, H) + linear read-out on the memory task; returns them and the last loss."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    lstm = LSTM(3, cfg.hidden_size, batch_first=True).to(device)
    head = nn.Linear(cfg.hidden_size, 1).to(device)
    opt = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=cfg.lr)
    loss = torch.tensor(math.nan)
    with _one_thread():
        for _ in range(cfg.train_steps):
            x, recall, target = to_device(memory_task_batch(cfg.batch_size, cfg.steps, gen),
                                          device)
            out, _ = lstm(x)  # (B, T, H)
            pred = head(out[torch.arange(cfg.batch_size, device=device), recall]).squeeze(1)
            loss = ((pred - target) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return lstm.cpu(), head.cpu(), float(loss.detach())


def builtin_memory_run(cfg: MemoryTaskConfig | None = None) -> GatesRun:
    """Train on the memory task and record the gates on one fixed example."""
    cfg = cfg or MemoryTaskConfig()
    lstm, head, loss = train_memory_task(cfg)
    T, store, recall = cfg.steps, 3, 15
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    x = torch.zeros(1, T, 3)
    x[0, :, 0] = torch.rand(T, generator=gen) * 2 - 1
    x[0, store, 1] = 1.0
    x[0, recall, 2] = 1.0
    with torch.no_grad():
        out, _, gates = lstm(x, return_gates=True)
        answer = float(head(out[0, recall]))
    labels = [str(t) for t in range(T)]
    labels[store], labels[recall] = f"{store}\nSTORE", f"{recall}\nRECALL"
    title = (f"LSTM gates on the remember-until-recall task (H={cfg.hidden_size}, trained "
             f"{cfg.train_steps} steps, MSE {loss:.4f}):\nkeep the value "
             f"{float(x[0, store, 0]):+.2f} seen at STORE (step {store}) until RECALL "
             f"(step {recall}); the LSTM outputs {answer:+.2f}")
    inputs = {"value": x[0, :, 0], "store flag": x[0, :, 1], "recall flag": x[0, :, 2]}
    return GatesRun(gates, title, labels, inputs, {store: "STORE", recall: "RECALL"})


def run_builtin_gates_demo(out_dir: Path) -> list[Path]:
    """Write the built-in example's picture(s) into out_dir; return their paths."""
    from seqlab.viz.gates_plot import plot_gates

    run = builtin_memory_run()
    path = Path(out_dir) / "gates_memory_task.png"
    plot_gates(run.gates, path, step_labels=run.step_labels, title=run.title,
               inputs=run.inputs, marks=run.marks)
    return [path]


# ----------------------------------------------------------------------------- user input

def read_csv_column(path: Path, column: str | None) -> Tensor:
    """The numeric column `column` of a CSV file as a float32 (T,) tensor (UserError if bad)."""
    import pandas as pd

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


def parse_units(text: str | None) -> list[int] | None:
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


def load_lstm_weights(path: Path) -> tuple[LSTM, dict[str, str]]:
    """An LSTM from a safetensors file with torch.nn.LSTM names (optionally under one prefix)."""
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


def _train_next_step(x: Tensor, target: Tensor, out_size: int, hidden_size: int, steps: int,
                     seed: int, classify: bool, device: str = "cpu") -> LSTM:
    """Fit LSTM + linear head to predict the next step; x: (T, I), target: (T,) -> LSTM (on
    the CPU, trained on `device`)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    T = x.shape[0]
    window = min(T, 64)
    dev = resolve_device(device)
    x, target = x.to(dev), target.to(dev)
    lstm = LSTM(x.shape[1], hidden_size, batch_first=True).to(dev)
    head = nn.Linear(hidden_size, out_size).to(dev)
    opt = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=1e-2)
    with _one_thread():
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


def user_run(text: str | None, csv_path: Path | None, column: str | None,
             weights: Path | None, hidden_size: int, train_steps: int, seed: int,
             max_steps: int, save_weights: Path | None, device: str = "cpu"
             ) -> tuple[GatesRun, LSTM]:
    """Encode the user's sequence, get an LSTM (load or train), record the gates."""
    metadata: dict[str, str] = {}
    lstm = None
    if weights is not None:
        lstm, metadata = load_lstm_weights(weights)
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
        labels: list[str] | None = list(text)
        inputs = None
        meta = {"input": "text", "alphabet": json.dumps(alphabet)}
        if lstm is None:
            if len(text) < 2:
                raise UserError("--text: need at least 2 characters to train on (or give "
                                "--weights)")
            lstm = _train_next_step(x[:-1], ids[1:], len(alphabet), hidden_size, train_steps,
                                    seed, classify=True, device=device)
    else:
        assert csv_path is not None
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
            lstm = _train_next_step(x[:-1], x[1:, 0], 1, hidden_size, train_steps, seed,
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


# ----------------------------------------------------------------------------- trained models

def model_run(model_dir: Path, text: str | None, csv_path: Path | None, start: int,
              max_steps: int, device: str = "cpu") -> GatesRun:
    """The encoder gates of a trained seqlab model: a series autoencoder run (over one window
    of --csv, from --start) or a translator run (over the subword pieces of --text)."""
    cfg_path = model_dir / "config.json"
    if not cfg_path.is_file():
        raise UserError(f"--model: {model_dir} is not a seqlab run directory (no config.json)")
    try:
        fmt = json.loads(cfg_path.read_text(encoding="utf-8")).get("format")
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{cfg_path}: not valid JSON ({err})") from None
    from seqlab.series.estimator import FORMAT as SERIES_FORMAT

    if fmt == SERIES_FORMAT:
        from seqlab.series.estimator import SeriesAutoencoder

        if csv_path is None or text is not None:
            raise UserError("--model: a series autoencoder reads a CSV; give --csv FILE "
                            "(and --start INDEX for the window)")
        est = SeriesAutoencoder.load(model_dir, device=str(resolve_device(device)))
        data = est.read_data(csv_path)
        if not 0 <= start <= len(data.values) - est.window:
            raise UserError(f"--start: {start} leaves no full window of {est.window} points in "
                            f"{csv_path} ({len(data.values)} points)")
        gates, values = est.encoder_gates(data, start)  # (L,1,1,T,H), (T, C)
        inputs = {name: torch.as_tensor(values[:, k], dtype=torch.float32)
                  for k, name in enumerate(est.columns_)}
        title = (f"Encoder gates of the series autoencoder {model_dir.name} over points "
                 f"{start}-{start + est.window - 1} of {csv_path.name} (window {est.window}, "
                 f"H={gates.f.shape[-1]})")
        return GatesRun(_on_cpu(gates), title, None, inputs)

    from seqlab.translate.api import Translator

    if text is None or csv_path is not None:
        raise UserError("--model: a translator reads a sentence; give --text \"...\"")
    if not text.strip():
        raise UserError("--text: empty sentence; give at least one word")
    tr = Translator.load(model_dir, device=device)
    pieces = tr.tok.src.encode_pieces([text])[0][:max_steps]
    ids = tr.tok.src.encode([text])[0][:max_steps]
    if tr.src_eos and len(ids) < max_steps:
        ids, pieces = ids + [tr.tok.src.eos_id], pieces + ["</s>"]
    src = torch.tensor([ids], device=model_device(tr.model))               # (1, S)
    with torch.no_grad():
        emb = tr.model.src_embed(src)                                       # (1, S, E)
        _, _, gates = tr.model.encoder(emb, return_gates=True)
    title = (f"Encoder gates of the translator {model_dir.name} over {text[:40]!r} "
             f"({len(ids)} subword steps, H={gates.f.shape[-1]}, --direction 1 = right-to-left)")
    return GatesRun(_on_cpu(gates), title, pieces)


def _on_cpu(gates: LSTMGates) -> LSTMGates:
    """A record made on a GPU, copied to the CPU for drawing."""
    values = gates.as_dict()
    return LSTMGates(*(values[k].cpu() for k in ("f", "i", "g", "o", "c", "h")),
                     lengths=gates.lengths)


# ----------------------------------------------------------------------------- command

@click.command("gates")
@click.option("--text", default=None, help="A text; each character is one input step.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), default=None,
              help="A CSV file; one numeric column (--column) is the input sequence.")
@click.option("--column", default=None, help="The CSV column to read.")
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="LSTM weights (.safetensors, torch.nn.LSTM names) instead of training.")
@click.option("--units", default=None,
              help="Units for the C/h line plots, e.g. 0,3,5 (default: the 4 most active).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("gates.png"),
              show_default=True, help="Picture to write: .png, .svg or .pdf.")
@click.option("--layer", type=int, default=0, show_default=True, help="Layer to draw.")
@click.option("--direction", type=int, default=0, show_default=True,
              help="Direction to draw (1 = reverse, for bidirectional weights).")
@click.option("--hidden-size", type=click.IntRange(1, 256), default=16, show_default=True,
              help="Units of the LSTM trained on your input (without --weights).")
@click.option("--train-steps", type=click.IntRange(0, 100_000), default=300,
              show_default=True, help="Training steps on your input (without --weights).")
@click.option("--max-steps", type=click.IntRange(1, 2000), default=150, show_default=True,
              help="Draw at most this many time steps (from the start).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the training (initial weights and batches).")
@click.option("--save-weights", type=click.Path(path_type=Path), default=None,
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
    from seqlab.viz.gates_plot import plot_gates

    if output.suffix.lower() not in FIGURE_SUFFIXES:
        raise UserError(f"-o/--output: expected a .png, .svg or .pdf file name, got {output}")
    if text is not None and csv_path is not None:
        raise UserError("--text and --csv: give one input, not both")
    if column is not None and csv_path is None:
        raise UserError("--column: only used with --csv FILE")
    unit_list = parse_units(units)
    if model_dir is not None:
        if weights is not None or column is not None:
            raise UserError("--model: the run directory fixes the weights and columns; drop "
                            "--weights/--column")
        run = model_run(model_dir, text, csv_path, start, max_steps, device)
    elif text is None and csv_path is None:
        if weights is not None:
            raise UserError("--weights: also give the input to run them on (--text or --csv)")
        run = builtin_memory_run(MemoryTaskConfig(device=device))
    else:
        run, _ = user_run(text, csv_path, column, weights, hidden_size, train_steps, seed,
                          max_steps, save_weights, device)
    L, D, _, _, H = run.gates.f.shape
    if not 0 <= layer < L:
        raise UserError(f"--layer: {layer} out of range; the LSTM has {L} layer(s)")
    if not 0 <= direction < D:
        raise UserError(f"--direction: {direction} out of range; the LSTM has {D} direction(s)")
    if unit_list is not None and not all(0 <= u < H for u in unit_list):
        raise UserError(f"--units: {units} out of range; the LSTM has {H} units (0..{H - 1})")
    plot_gates(run.gates, output, layer=layer, direction=direction, step_labels=run.step_labels,
               units=unit_list, title=run.title, inputs=run.inputs, marks=run.marks)
    click.echo(f"wrote {output}")
