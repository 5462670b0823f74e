"""Options shared by the training commands (`translate train`, `caption train`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

decay_steps_option = click.option(
    "--decay-steps", type=click.IntRange(min=0), default=None,
    help="Anneal the learning rate linearly to its floor over the last N steps before "
         "--max-steps (warmup-stable-decay); with --resume, branches a decay off the run so far.")

precision_option = click.option(
    "--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default=None,
    help="Training arithmetic. bf16/fp16: mixed precision (torch.autocast; weights, optimizer, "
         "cell states and loss stay float32; fp16 is CUDA-only, with a gradient scaler). auto: "
         "bf16 on a GPU with bfloat16 (else fp16) and on a CPU with native bfloat16 "
         "(AVX512-BF16/AMX), fp32 elsewhere; config.json records the choice. "
         "[default: fp32; with --resume: the run's own]")


def _check_device(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Fail before any work when the device is not there (one line, exit status 2)."""
    if value is not None:
        from seqlab.device import resolve_device

        resolve_device(value)
    return value


def device_option(default: str | None = "auto", help_extra: str = "") -> Callable[[F], F]:
    """`--device auto|cpu|cuda[:N]|mps` for commands that run a model."""
    return click.option(
        "--device", default=default, show_default=default is not None, callback=_check_device,
        help="Where the model runs: auto (cuda if available, else mps, else cpu), cpu, cuda, "
             "cuda:N or mps." + help_extra)
