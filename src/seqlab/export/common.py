"""What the ONNX exporters and onnxruntime backends share.

An export directory (`RUN/onnx/`) holds one or more `.onnx` graphs and `manifest.json`: the
graphs' input and output names, the opset, the model's own settings the runtime side needs
(vocabulary and special ids, window length, ...) and the SHA-256 of the weights file the graphs
were made from, so a backend never runs graphs older than the run's weights. The directory is
built in a temporary sibling and swapped in whole: a failed export leaves the previous one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from seqlab.errors import UserError

OPSET = 17
MANIFEST_FILE = "manifest.json"
EXPORT_DIR = "onnx"
BACKENDS = ("torch", "onnx")
INSTALL_HINT = "pip install 'seqlab[onnx]'"


def require_onnx(what: str = "the ONNX backend") -> tuple[Any, Any]:
    """Import onnx and onnxruntime, or raise a one-line UserError saying how to install them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as err:
        raise UserError(f"{what} needs the optional packages onnx and onnxruntime "
                        f"({err.name or 'import'} is missing): {INSTALL_HINT}") from None
    return onnx, onnxruntime


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise UserError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_unchanged(weights: Path, sha256: str) -> None:
    """The weights an export read must still be the file's (else the manifest would vouch for
    graphs of other weights): a run that saved new ones meanwhile -> UserError."""
    if file_sha256(weights) != sha256:
        raise UserError(f"{weights}: changed while exporting (is the run still training?); "
                        f"export again")


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty temporary directory next to `path`; it replaces `path` (and whatever was
    there) only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    umask = os.umask(0)   # mkdtemp makes it 0700: give it what a plain mkdir would
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    try:
        yield tmp
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def export_graph(module: torch.nn.Module, args: tuple[torch.Tensor, ...], path: Path, *,
                 input_names: Sequence[str], output_names: Sequence[str],
                 dynamic_axes: dict[str, dict[int, str]]) -> None:
    """Trace `module(*args)` into an ONNX graph at `path` and check it.

    The TorchScript-based exporter: it maps seqlab's fused LSTM (`aten::lstm`, packed or not) to
    ONNX's LSTM op with `sequence_lens`, and the Python-level argument checks run once at trace
    time. The example inputs must take the branches every input takes (e.g. padded sources).
    """
    onnx, _ = require_onnx("ONNX export")
    module.eval()
    with warnings.catch_warnings(), torch.no_grad(), _quiet_shape_inference():
        # the tracer's warnings are about the argument checks that run once, by design
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=list(input_names),
                          output_names=list(output_names), dynamic_axes=dynamic_axes,
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)
    onnx.checker.check_model(str(path))


@contextlib.contextmanager
def _quiet_shape_inference() -> Iterator[None]:
    """Drop the C++ log lines of the exporter's shape inference about the packed-sequence ops
    (it has no rule for them; the LSTM's sequence_lens carries the lengths): stderr is captured
    at the file-descriptor level and every other line is passed on."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):   # no real stderr (e.g. captured by a test)
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            yield
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode(errors="replace").splitlines(keepends=True):
                if "shape inference of prim::Pad" not in line and \
                        "shape inference of prim::Pack" not in line:
                    sys.stderr.write(line)


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    from seqlab.io import write_json_atomic

    write_json_atomic(directory / MANIFEST_FILE, {"opset": OPSET, **manifest})


def read_manifest(directory: Path, kind: str, export_cmd: str, weights: Path) -> dict[str, Any]:
    """The manifest of an export directory of `kind`; missing, corrupt, of another kind, with
    missing graphs or made from other weights than `weights` (SHA-256) -> one-line UserError
    naming `export_cmd`."""
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise UserError(f"{directory}: no ONNX export (missing {MANIFEST_FILE}); run "
                        f"`{export_cmd}` first")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != kind:
        got = manifest.get("kind") if isinstance(manifest, dict) else type(manifest).__name__
        raise UserError(f"{path}: kind {got!r}, expected {kind!r}")
    for name in manifest.get("files", {}).values():
        if not (directory / name).is_file():
            raise UserError(f"{directory / name}: missing; run `{export_cmd}` again")
    if manifest.get("weights_file") != weights.name:
        raise UserError(f"{directory}: exported from {manifest.get('weights_file')!r}, not "
                        f"{weights.name!r}; run `{export_cmd}`")
    if not weights.is_file():
        raise UserError(f"{weights}: not found (the weights {directory} was exported from)")
    if manifest.get("weights_sha256") != file_sha256(weights):
        raise UserError(f"{directory}: exported from other weights than {weights}; run "
                        f"`{export_cmd}` again")
    return manifest


def make_session(path: Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session: all graph optimisations, `threads` intra-op threads (None:
    onnxruntime's default), sequential execution (the graphs are chains of small ops)."""
    _, ort = require_onnx()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = 1
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
    try:
        return ort.InferenceSession(str(path), sess_options=opts,
                                    providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own error types for broken files
        raise UserError(f"{path}: onnxruntime cannot load it ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''})") from None
