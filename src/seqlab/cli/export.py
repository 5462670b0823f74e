"""The option the commands that run a model share to pick PyTorch or onnxruntime."""

from __future__ import annotations

import click

from seqlab.export.common import BACKENDS

backend_option = click.option(
    "--backend", type=click.Choice(list(BACKENDS)), default="torch", show_default=True,
    help="onnx: run the graphs `export` wrote to RUN/onnx/ with onnxruntime (needs "
         "pip install 'seqlab[onnx]').")
