"""Options shared by the training commands (`translate train`, `caption train`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
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


def renamed_option(new: str, old: str, dest: str, note: str = "",
                   **kwargs: Any) -> Callable[[F], F]:
    """Option `new` (shown in --help) plus its old spelling `old` (hidden, still accepted).

    Both fill the parameter `dest`; giving both is a one-line error; the old spelling prints a
    note naming the new one (on stderr, so scripts reading stdout are not disturbed).
    note: more words for that note (what changed besides the name). kwargs are the new
    option's (type, default, help, is_flag, ...).
    """
    default = kwargs.pop("default", False if kwargs.get("is_flag") else None)
    unset = (None, False)

    def store(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        given = value not in unset and (
            ctx.get_parameter_source(param.name or "") is not click.core.ParameterSource.DEFAULT)
        if not given:
            ctx.params.setdefault(dest, default)
            return
        if param.name == f"_old_{dest}":
            click.echo(f"note: {old} is the old name of {new}{note}", err=True)
        if ctx.params.get(dest) not in unset and ctx.params.get(dest) != default:
            raise click.UsageError(f"{old} is the old name of {new}; give one of them, not both",
                                   ctx)
        ctx.params[dest] = value

    shared = {k: v for k, v in kwargs.items() if k in ("type", "is_flag")}

    def decorate(f: F) -> F:
        f = click.option(old, f"_old_{dest}", hidden=True, expose_value=False, callback=store,
                         default=None if not kwargs.get("is_flag") else False, **shared)(f)
        return click.option(new, dest, expose_value=False, callback=store, default=default,
                            show_default=default not in unset, **kwargs)(f)

    return decorate


def time_budget_option(help_text: str, note: str = "") -> Callable[[F], F]:
    """`--time-budget MINUTES` (old spelling: --minutes)."""
    return renamed_option("--time-budget", "--minutes", "time_budget", note=note,
                          type=POSITIVE_FLOAT, help=help_text)


quiet_option = renamed_option("--quiet", "--no-progress", "quiet", is_flag=True,
                              help="No progress bars.")


def numbered_path(base: Path, i: int, n: int) -> Path:
    """The i-th (0-based) of n output files: `base` itself when n == 1, else FILE-1.png,
    FILE-2.png, ... (every command that writes one picture per input names them so)."""
    return base if n == 1 else base.with_name(f"{base.stem}-{i + 1}{base.suffix or '.png'}")


# ---- checked value types: a bad value is refused where it enters, before any work ------------

POSITIVE_INT = click.IntRange(min=1)      # counts: steps, sizes, beams, batch sizes, limits
VOCAB_SIZE = click.IntRange(min=300)      # seqlab.validate.MIN_VOCAB_SIZE (byte fallback)
NONNEG_INT = click.IntRange(min=0)


class FiniteFloat(click.FloatRange):
    """A float range that also refuses NaN and +-inf (click's FloatRange lets inf through)."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        import math

        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv


class ThreadsParam(click.ParamType):
    """A thread count: a positive integer, or "auto" (-> None: the command decides)."""

    name = "auto|N"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if value is None or value == "auto" or isinstance(value, int) and value > 0:
            return None if value == "auto" else value
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n < 1:
            self.fail(f"{value!r} is not 'auto' or a whole number >= 1.", param, ctx)
        return n


POSITIVE_FLOAT = FiniteFloat(min=0, min_open=True)   # rates, time budgets (minutes)
NONNEG_FLOAT = FiniteFloat(min=0)
FRACTION = FiniteFloat(min=0, max=1, max_open=True)  # dropout, label smoothing


class OutputFile(click.Path):
    """A file the command will write: refused at once (before any work) when it is an existing
    directory, sits under a regular file, or in a folder that cannot be written; a picture
    (`figure=True`) also needs a .png, .svg or .pdf name (or no suffix: PNG)."""

    def __init__(self, figure: bool = False) -> None:
        super().__init__(dir_okay=True, path_type=Path)
        self.figure = figure

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        from seqlab.validate import FIGURE_SUFFIXES, output_file_problem

        path = Path(os.fsdecode(super().convert(value, param, ctx)))
        problem = output_file_problem(path)
        if problem is None and self.figure and path.suffix.lower() not in ("", *FIGURE_SUFFIXES):
            problem = f"expected a .png, .svg or .pdf file name, got {path.suffix!r}"
        if problem is not None:
            self.fail(f"{path}: {problem}.", param, ctx)
        return path


class OutputDir(click.Path):
    """A directory the command will create or write into (a run directory, the demo's)."""

    def __init__(self) -> None:
        super().__init__(file_okay=True, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        from seqlab.validate import output_dir_problem

        path = Path(os.fsdecode(super().convert(value, param, ctx)))
        problem = output_dir_problem(path)
        if problem is not None:
            self.fail(f"{path}: {problem}.", param, ctx)
        return path
