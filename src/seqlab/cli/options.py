"""Options shared by the training commands (`translate train`, `caption train`)."""

from __future__ import annotations

import click

decay_steps_option = click.option(
    "--decay-steps", type=click.IntRange(min=0), default=None,
    help="Anneal the learning rate linearly to its floor over the last N steps before "
         "--max-steps (warmup-stable-decay); with --resume, branches a decay off the run so far.")
