"""Everything `seqlab studio` takes from the rest of seqlab, in one module.

The web app (`studio.app`) only calls the functions here; they load runs through the
applications' public APIs (`Translator`, `Captioner`, `SeriesAutoencoder`, the gates tools) and
turn their results into plain JSON-ready dicts. When those modules move, only the imports here
change.

A run is known by its name (the directory's name, made unique) and never by a path from a
request: `RunRegistry` holds the runs given at start and nothing else.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqlab.errors import UserError

TRANSLATE, CAPTION, SERIES = "translate", "caption", "series"
CHAR_MODEL = "char"   # the built-in gates model's name

# ----------------------------------------------------------------------------- the runs


def run_kind(path: Path) -> str:
    """translate | caption | series, from the run's config.json (UserError if not a run)."""
    from seqlab.runs import run_kind as application_kind

    return {"translator": TRANSLATE, "captioner": CAPTION, "series": SERIES}[
        application_kind(path)]


def load_model(kind: str, path: Path) -> Any:
    if kind == TRANSLATE:
        from seqlab.translate.api import Translator

        return Translator.load(path)
    if kind == CAPTION:
        from seqlab.caption.api import Captioner

        return Captioner.load(path)
    from seqlab.series.estimator import SeriesAutoencoder

    return SeriesAutoencoder.load(path)


@dataclass
class Run:
    name: str
    kind: str
    path: Path
    model: Any = field(repr=False, default=None)


class RunRegistry:
    """The runs given at start, by name; each model is loaded once, at start."""

    def __init__(self, paths: Sequence[str | Path]):
        self.runs: dict[str, Run] = {}
        for p in paths:
            path = Path(p).resolve()
            kind = run_kind(path)
            name, k = path.name, 2
            while name in self.runs or name == CHAR_MODEL:
                name, k = f"{path.name}-{k}", k + 1
            self.runs[name] = Run(name, kind, path, load_model(kind, path))
        self._char: CharModel | None = None

    def get(self, name: str | None, kind: str) -> Run:
        """The run `name` of `kind` (None: the first one of that kind); LookupError if none."""
        of_kind = [r for r in self.runs.values() if r.kind == kind]
        if name is None:
            if not of_kind:
                raise LookupError(f"no {kind} run was given to seqlab studio")
            return of_kind[0]
        run = self.runs.get(name)
        if run is None or run.kind != kind:
            names = ", ".join(r.name for r in of_kind) or "none"
            raise LookupError(f"no {kind} run named {name!r} (the {kind} runs: {names})")
        return run

    def char_model(self) -> CharModel:
        if self._char is None:
            self._char = CharModel.train()
        return self._char


def _curve(records: list[dict[str, Any]], x: str, y: str) -> list[list[float]]:
    return [[r[x], r[y]] for r in records
            if isinstance(r.get(x), int | float) and isinstance(r.get(y), int | float)
            and math.isfinite(r[y])]


def run_summary(run: Run) -> dict[str, Any]:
    """The run's config and its training curves, read fresh from disk (a training that is still
    running keeps appending to its log)."""
    from seqlab.training.checkpoint import LOG_FILE

    try:
        config = json.loads((run.path / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):   # being rewritten: show the model's own copy
        config = getattr(run.model, "config", {}) or {}
    curves: dict[str, list[list[float]]] = {}
    x_name = "step"
    if run.kind == SERIES:
        history = config.get("history") or []
        x_name = "epoch"
        curves = {"train_loss": _curve(history, "epoch", "train_loss"),
                  "val_loss": _curve(history, "epoch", "val_loss")}
    else:
        records = []
        log = run.path / LOG_FILE
        if log.is_file():
            for line in log.read_text(encoding="utf-8").splitlines():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:      # a line being written
                    continue
        curves["loss"] = _curve(records, "step", "loss")
        for key in sorted({k for r in records for k in r
                           if k.startswith("dev_") and not k.startswith("dev_best")}):
            curves[key] = _curve(records, "step", key)
    config.pop("history", None)
    return {"name": run.name, "kind": run.kind, "config": config, "x": x_name,
            "curves": curves}


# ----------------------------------------------------------------------------- translate


def _rounded(a: np.ndarray | torch.Tensor, digits: int = 4) -> list:
    """Array -> nested lists, rounded (smaller JSON), NaN/inf -> None."""
    arr = np.asarray(a, dtype=np.float64)
    out = np.round(arr, digits).astype(object)
    out[~np.isfinite(arr)] = None
    return out.tolist()


def translate_many(run: Run, texts: list[str], num_beams: int, length_penalty: float,
                   n_best: int) -> list[dict[str, Any]]:
    """Sentences through one `Translator.translate` call (a batch): translation, tokens,
    (T, S) attention and n-best of each."""
    out = []
    for res in run.model.translate(texts, num_beams=num_beams, length_penalty=length_penalty,
                                   return_attention=True, num_return_sequences=n_best):
        att = res.attention if res.attention is not None else np.zeros((0, len(res.src_tokens)))
        out.append({
            "run": run.name, "translation": res.text, "source_tokens": res.src_tokens,
            "target_tokens": res.tgt_tokens, "attention": _rounded(att, 5), "score": res.score,
            "nbest": [{"translation": res.text, "score": res.score}]
                     + [{"translation": t, "score": s} for t, s in res.nbest],
            "heads": None, "tree": None})
    return out


def translate(run: Run, text: str, num_beams: int, length_penalty: float, n_best: int,
              details: bool) -> dict[str, Any]:
    """One sentence; with `details` also the beam search tree and, for multi-head attention,
    one (T, S) map per head (a Transformer's: every decoder layer's, `layers`)."""
    [out] = translate_many(run, [text], num_beams, length_penalty, n_best)
    if details and text.strip():
        tree, best_ids = beam_tree(run.model, text, num_beams, length_penalty)
        out["tree"] = tree
        layers = head_attention(run.model, text, best_ids)
        if layers is not None:
            out["heads"] = _rounded(layers[-1], 5)
            if hasattr(run.model.model, "cross_attention"):    # the Transformer's layers
                out["layers"] = _rounded(layers, 5)
    return out


def _encode_source(tr: Any, text: str) -> tuple[Any, Any]:
    """The sentence as the model reads it: its encoder memory and initial decoder state."""
    from seqlab.text.batching import collate_src

    ids = tr.tok.src.encode([text.strip()])
    sb = collate_src(ids, [0], pad_id=tr.model.cfg.pad_id, eos_id=tr.model.cfg.eos_id,
                     src_eos=tr.src_eos)
    return sb, tr.model.encode(sb.src, sb.src_lengths, sb.src_mask)


@torch.no_grad()
def beam_tree(tr: Any, text: str, num_beams: int, length_penalty: float
              ) -> tuple[dict[str, Any], list[int]]:
    """The beam search tree of one sentence (`beam_search(record_tree=True)`), as nodes:
    {id, parent, step, token, logprob, alive, closed, best}; node 0 is the start (BOS).
    Returns it and the best hypothesis' token ids."""
    from seqlab.decoding.search import beam_search
    from seqlab.translate.model import default_max_new_tokens

    model = tr.model
    sb, (memory, state) = _encode_source(tr, text)
    res = beam_search(model.decoder, memory, state, bos_id=model.cfg.bos_id,
                      eos_id=model.cfg.eos_id, max_len=default_max_new_tokens(sb.src_lengths),
                      num_beams=num_beams, length_penalty=length_penalty, record_tree=True)
    best = res.hypotheses[0][0]
    nodes: list[dict[str, Any]] = [{"id": 0, "parent": None, "step": -1, "token": "<s>",
                                    "logprob": 0.0, "alive": True, "closed": False,
                                    "best": True}]
    prefix: dict[int, tuple[int, ...]] = {0: ()}
    beam_node = {0: 0}
    end_node, end_closed = None, False
    assert res.trees is not None
    for t, step in enumerate(res.trees[0]):
        nxt = {}
        for c in step:
            nid = len(nodes)
            parent = beam_node[c.parent]
            prefix[nid] = prefix[parent] + ((c.token,) if not c.closed else ())
            nodes.append({"id": nid, "parent": parent, "step": t,
                          "token": tr.tok.tgt.id_to_piece(c.token), "logprob": c.logprob,
                          "alive": c.beam >= 0, "closed": c.closed, "best": False})
            if c.beam >= 0:
                nxt[c.beam] = nid
            if prefix[nid] == tuple(best.tokens) and not end_closed and (c.closed or c.beam >= 0):
                end_node, end_closed = nid, c.closed   # closed by EOS, or by the length limit
        beam_node = nxt
    node = end_node
    while node is not None:           # mark the best hypothesis' path
        nodes[node]["best"] = True
        node = nodes[node]["parent"]
    return {"num_beams": num_beams, "nodes": nodes}, list(best.tokens)


@torch.no_grad()
def head_attention(tr: Any, text: str, tgt_ids: list[int]) -> np.ndarray | None:
    """(layers, heads, T, S) attention of each decoder layer's heads for the output `tgt_ids`
    (teacher-forced), or None for single-head attention; the LSTM decoder has one layer of
    attention. The search reports the head average (a Transformer's: of its last layer). For
    the LSTM decoder a forward hook on its attention module asks the same call again for the
    per-head weights."""
    model = tr.model
    if not tgt_ids:
        return None
    tgt_in = torch.tensor([[model.cfg.bos_id, *tgt_ids[:-1]]])             # (1, T)
    if hasattr(model, "cross_attention"):                                  # the Transformer
        sb, _ = _encode_source(tr, text)
        w = model.cross_attention(sb.src, sb.src_lengths, sb.src_mask, tgt_in)
        return w[0].float().numpy()                                        # (L, h, T, S)
    if model.cfg.attention != "multihead" or model.cfg.num_heads < 2:
        return None
    sb, (memory, state) = _encode_source(tr, text)
    per_step: list[torch.Tensor] = []
    busy = False

    def hook(module: Any, args: tuple, kwargs: dict, output: Any) -> None:
        nonlocal busy
        if busy:
            return
        busy = True
        try:
            per_step.append(module(*args, **{**kwargs, "return_head_weights": True})[1])
        finally:
            busy = False

    handle = model.decoder.attention.register_forward_hook(hook, with_kwargs=True)
    try:
        model.decoder(tgt_in, memory, state)
    finally:
        handle.remove()
    w = torch.stack(per_step, 0)[:, 0]                     # (T, heads, S)
    return w.transpose(0, 1)[None].float().numpy()         # (1, heads, T, S)


# ----------------------------------------------------------------------------- gates

# The built-in char model learns to predict the next character of this text (every printable
# ASCII character appears, so any such text can be shown).
CHAR_TEXT = (
    "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs! "
    "An LSTM keeps a cell state c; the forget gate f decides what stays, the input gate i "
    "what enters (through the cell update g), and the output gate o what is shown as h. "
    "(Quotes \"open\" and 'close'; brackets [nest] and {nest}; 3 + 4 = 7, 10% of 250 is 25.) "
    "Email: me@example.org # tag ~ tilde ^ caret | pipe \\ backslash / slash < > * & $ _ `"
)


@dataclass
class CharModel:
    """A tiny LSTM trained (a few seconds, seeded) to predict the next character of CHAR_TEXT,
    the way `seqlab gates --text` trains one."""

    lstm: Any
    alphabet: list[str]

    @classmethod
    def train(cls, hidden_size: int = 16, train_steps: int = 300) -> CharModel:
        from seqlab.gates import sequence_run

        _, lstm = sequence_run(CHAR_TEXT, None, None, None, hidden_size, train_steps, 0, 1, None)
        return cls(lstm.eval(), sorted(set(CHAR_TEXT)))

    def encode(self, text: str) -> torch.Tensor:
        index = {ch: k for k, ch in enumerate(self.alphabet)}
        unknown = sorted(set(text) - set(index))
        if unknown:
            raise UserError(f"text: characters {''.join(unknown)!r} are not in the char "
                            "model's alphabet (printable ASCII)")
        ids = torch.tensor([index[ch] for ch in text])
        return torch.nn.functional.one_hot(ids, len(self.alphabet)).float()   # (T, V)


def gates_payload(gates: Any, layer: int, direction: int, labels: list[str],
                  title: str, inputs: dict[str, list] | None = None) -> dict[str, Any]:
    """LSTMGates (L, D, 1, T, H) -> {f, i, g, o, c, h: (T, H) lists} of one layer/direction."""
    L, D = gates.f.shape[:2]
    if not 0 <= layer < L:
        raise UserError(f"layer: {layer} is out of range (the LSTM has {L} layer(s))")
    if not 0 <= direction < D:
        raise UserError(f"direction: {direction} is out of range (the LSTM has {D})")
    out = {name: _rounded(getattr(gates, name)[layer, direction, 0]) for name in "figoch"}
    return {"title": title, "labels": labels, "num_layers": int(L), "num_directions": int(D),
            "hidden_size": int(gates.f.shape[-1]), "gates": out, "inputs": inputs or {}}


def gates_text(registry: RunRegistry, model: str, text: str, layer: int,
               direction: int) -> dict[str, Any]:
    """Gates over a text: the built-in char model, or a translator's encoder (subwords)."""
    if model == CHAR_MODEL:
        cm = registry.char_model()                 # trained on first use (a few seconds)
        x = cm.encode(text)
        with torch.no_grad():
            _, _, gates = cm.lstm(x[None], return_gates=True)
        return gates_payload(gates, layer, direction, list(text),
                             f"built-in char model (H={cm.lstm.hidden_size}) over the text")
    tr = registry.get(model, TRANSLATE).model
    if not tr.has_gates:
        raise UserError(f"model: {model} is a Transformer translator, which has no LSTM "
                        f"gates; its attention is in the translation's details")
    gates, pieces = tr.encoder_gates(text)
    return gates_payload(gates, layer, direction, pieces,
                         f"encoder of the translator {model} over the subwords")


def gates_series(run: Run, csv_path: Path, start: int, layer: int) -> dict[str, Any]:
    """The series autoencoder's encoder gates over the window of `csv_path` from `start`."""
    est = run.model
    data = est.read_data(csv_path)
    n = len(data.values)
    if not 0 <= start <= n - est.window:
        raise UserError(f"start: {start} leaves no full window of {est.window} points in "
                        f"{csv_path.name} ({n} points)")
    gates, values = est.encoder_gates(data, start)                  # (L,1,1,T,H), (T, C)
    labels = [str(start + t) for t in range(est.window)]
    inputs = {name: _rounded(values[:, k]) for k, name in enumerate(est.columns_)}
    out = gates_payload(gates, layer, 0, labels,
                        f"encoder of the series autoencoder {run.name}, points {start}-"
                        f"{start + est.window - 1}", inputs)
    out.update(window=est.window, n_points=n)
    return out


# ----------------------------------------------------------------------------- series


def series_scores(run: Run, csv_path: Path) -> dict[str, Any]:
    """Series, reconstruction, per-point score, threshold and events of a CSV."""
    from seqlab.series.scoring import event_peaks

    est = run.model
    data = est.read_data(csv_path)
    scores = est.score_samples(data)                                  # (N,)
    recon = est.reconstruct(data)                                     # (N, C)
    events = est.detect_events(data, scores=scores)
    peaks = event_peaks(events, scores)
    ts = data.timestamps

    def when(i: int) -> Any:
        if ts is None:
            return i
        v = ts[i]
        return str(np.datetime_as_string(v, unit="s")) if isinstance(v, np.datetime64) \
            else v.item() if hasattr(v, "item") else v

    return {
        "run": run.name, "columns": list(data.columns), "n_points": len(scores),
        "timestamps": None if ts is None else [when(i) for i in range(len(ts))],
        "values": _rounded(data.values), "reconstruction": _rounded(recon),
        "scores": _rounded(scores), "threshold": float(est.threshold_),
        "window": int(est.window),
        "events": [{"start_index": int(s), "end_index": int(e), "start": when(s), "end": when(e),
                    "peak_score": float(p)} for (s, e), p in zip(events, peaks, strict=True)]}


# ----------------------------------------------------------------------------- caption


def read_image(data: bytes, name: str, max_pixels: int) -> Any:
    """Uploaded bytes -> a loaded PIL image (UserError if not an image or too many pixels)."""
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
        if img.width * img.height > max_pixels:
            raise UserError(f"{name}: {img.width}x{img.height} pixels, more than the "
                            f"{max_pixels:,} allowed")
        img.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
        raise UserError(f"{name}: not an image file Pillow can read ({err})") from None
    return img


def caption(run: Run, image: Any, num_beams: int) -> dict[str, Any]:
    """The caption of one image with each word's attention map over the G x G regions."""
    import base64

    from PIL import Image

    [c] = run.model.caption([image], num_beams=num_beams, return_attention=True)
    buf = io.BytesIO()
    Image.fromarray(c.image).save(buf, format="PNG")
    G = int(c.word_attention.shape[-1]) if c.word_attention is not None else 0
    return {"run": run.name, "caption": c.text, "words": c.words, "tokens": c.tokens,
            "grid": G, "word_attention": _rounded(c.word_attention, 5),
            "image": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(),
            "score": c.score}
