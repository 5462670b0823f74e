"""Options shared by the training commands (`translate train`, `caption train`)."""

from __future__ import annotations

import click

decay_steps_option = click.option(
    "--decay-steps", type=click.IntRange(min=0), default=None,
    help="Anneal the learning rate linearly to its floor over the last N steps before "
         "--max-steps (warmup-stable-decay); with --resume, branches a decay off the run so far.")

precision_option = click.option(
    "--precision", type=click.Choice(["fp32", "bf16"]), default=None,
    help="Training arithmetic. bf16: mixed precision (torch.autocast to bfloat16; weights, "
         "optimizer, cell states and loss stay float32), about 1.4x faster on CPUs with "
         "AVX512-BF16 and on GPUs. [default: fp32; with --resume: the run's own]")
