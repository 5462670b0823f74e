"""The series autoencoder as one ONNX graph, run by onnxruntime.

    autoencoder.onnx   x (B, T, C) float32, T = the model's window
                       -> recon (B, T, C) in the original order, latent (B, Z),
                          [prev (B, C), next (B, C): AER's regression], states (B, 2LH),
                          pooled (B, 2H)

`OnnxAutoencoder` offers what `SeriesAutoencoder` calls on its `model_` when scoring
(`model(x)`, `forward_regression`, `embed`, `eval`), so `SeriesAutoencoder.load(run,
backend="onnx")` scores through the same windows, error accumulation and error model. The
window length is fixed in the graph (the decoder's steps are unrolled); the batch is dynamic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from seqlab.errors import UserError
from seqlab.export.common import (
    EXPORT_DIR,
    atomic_dir,
    check_unchanged,
    export_graph,
    file_sha256,
    make_session,
    read_manifest,
    require_onnx,
    write_manifest,
)
from seqlab.series.model import EMBEDDINGS, AutoencoderConfig, LSTMAutoencoder

KIND = "series-autoencoder"
FORMAT = 1
GRAPH_FILE = "autoencoder.onnx"
WEIGHTS_FILE = "model.safetensors"


def _export_cmd(run: Path) -> str:
    return f"seqlab series export {run}"


def _outputs(cfg: AutoencoderConfig) -> list[str]:
    return ["recon", "latent"] + (["prev", "next"] if cfg.regression else []) + [
        e for e in EMBEDDINGS if e != "latent"]


class _AutoencoderGraph(nn.Module):
    """x (B, T, C) -> the outputs of `_outputs` (the encoder's duplicate work for the
    embeddings is merged by onnxruntime's common-subexpression elimination)."""

    def __init__(self, model: LSTMAutoencoder):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        m = self.model
        if m.cfg.regression:
            prev, recon, nxt, z = m.forward_regression(x)
            head: tuple[Tensor, ...] = (recon, z, prev, nxt)
        else:
            head = m(x)
        return (*head, *(m.embed(x, e) for e in EMBEDDINGS if e != "latent"))


def export_series(run_dir: str | Path) -> Path:
    """Export a saved SeriesAutoencoder's network to `run_dir/onnx/`; returns that directory.

    The graph is checked against PyTorch on random windows (the largest difference goes into
    the manifest as `check_max_abs_diff`).
    """
    from seqlab.series.estimator import SeriesAutoencoder

    onnx, ort = require_onnx("seqlab series export")
    run = Path(run_dir)
    weights = run / WEIGHTS_FILE
    # hashed before loading and checked again at the end
    weights_sha256 = file_sha256(weights) if weights.is_file() else ""
    est = SeriesAutoencoder.load(run)
    model, cfg, T = est.model_.eval(), est.model_config_, int(est.window)
    x = torch.randn(3, T, cfg.n_features, generator=torch.Generator().manual_seed(0))
    graph = _AutoencoderGraph(model)
    outputs = _outputs(cfg)
    with torch.no_grad():
        ref = graph(x)
    out_dir = run / EXPORT_DIR
    with atomic_dir(out_dir) as tmp:
        export_graph(graph, (x,), tmp / GRAPH_FILE, input_names=["x"], output_names=outputs,
                     dynamic_axes={n: {0: "B"} for n in ["x", *outputs]})
        got = make_session(tmp / GRAPH_FILE).run(None, {"x": x.numpy()})
        diff = max(float(np.abs(a - b.numpy()).max()) for a, b in zip(got, ref, strict=True))
        if not diff < 1e-3:
            raise RuntimeError(f"ONNX export of {run}: onnxruntime differs from PyTorch by "
                               f"{diff:g} on random windows")
        write_manifest(tmp, {
            "kind": KIND, "format": FORMAT,
            "weights_file": weights.name, "weights_sha256": weights_sha256,
            "files": {"autoencoder": GRAPH_FILE},
            "inputs": ["x"], "outputs": outputs,
            "window": T, "n_features": cfg.n_features, "model": vars(cfg),
            "versions": {"torch": torch.__version__, "onnx": onnx.__version__,
                         "onnxruntime": ort.__version__},
            "check_max_abs_diff": diff,
        })
        check_unchanged(weights, weights_sha256)
    return out_dir


class OnnxAutoencoder:
    """What `SeriesAutoencoder` calls on `model_` when scoring, over an onnxruntime session.
    Inputs and outputs are torch tensors (numpy at the boundary, zero-copy on CPU)."""

    training = False

    def __init__(self, session: Any, cfg: AutoencoderConfig, manifest: dict[str, Any]):
        self.session, self.cfg, self.manifest = session, cfg, manifest
        self.outputs: list[str] = list(manifest["outputs"])
        self.window = int(manifest["window"])

    @classmethod
    def load(cls, run_dir: str | Path, cfg: AutoencoderConfig, threads: int | None = None
             ) -> OnnxAutoencoder:
        """The export in `run_dir/onnx/`; missing or stale -> one-line UserError."""
        require_onnx()
        run = Path(run_dir)
        d = run / EXPORT_DIR
        manifest = read_manifest(d, KIND, _export_cmd(run), run / WEIGHTS_FILE)
        if manifest.get("format") != FORMAT or manifest.get("model") != vars(cfg):
            raise UserError(f"{d}: exported from another model or format; run "
                            f"`{_export_cmd(run)}` again")
        return cls(make_session(d / manifest["files"]["autoencoder"], threads), cfg, manifest)

    def eval(self) -> OnnxAutoencoder:
        return self

    def _run(self, x: Tensor, names: list[str]) -> list[Tensor]:
        if x.dim() != 3 or x.shape[1:] != (self.window, self.cfg.n_features):
            raise ValueError(f"x: expected (B, {self.window}, {self.cfg.n_features}) windows "
                             f"(the exported window), got {tuple(x.shape)}")
        xs = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return [torch.from_numpy(a) for a in self.session.run(names, {"x": xs})]

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, C) -> (x' (B, T, C), z (B, Z)), as `LSTMAutoencoder.forward`."""
        recon, z = self._run(x, ["recon", "latent"])
        return recon, z

    def forward_regression(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """As `LSTMAutoencoder.forward_regression`: (x_prev', x', x_next', z)."""
        if not self.cfg.regression:
            raise ValueError("forward_regression: the model was built with regression=False")
        prev, recon, nxt, z = self._run(x, ["prev", "recon", "next", "latent"])
        return prev, recon, nxt, z

    def embed(self, x: Tensor, kind: str = "latent") -> Tensor:
        """As `LSTMAutoencoder.embed`."""
        if kind not in EMBEDDINGS:
            raise ValueError(f"embedding: expected one of {EMBEDDINGS}, got {kind!r}")
        return self._run(x, [kind])[0]
