"""The click group class every seqlab command group uses: user errors become one line.

What the user can fix is one line on stderr, "error: ...", and exit status 2, never a
traceback:
- `UserError` (raised by the library with the file/line/field and what was expected);
- click's usage errors (a bad option value, a missing argument): click's own message, on one
  line, with the command it belongs to;
- an `OSError` that names a path (a file that cannot be read or written: permissions, a
  directory where a file was expected, a full disk, ...): the path and the system's reason.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any, NoReturn

import click

from seqlab.errors import InputWarning, UserError


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {' '.join(message.split())}", err=True)
    sys.exit(2)


def os_error_message(err: OSError) -> str | None:
    """'PATH: reason' for an OSError about a path (None: not about a path)."""
    if err.filename is None:
        return None
    where = err.filename if err.filename2 is None else f"{err.filename} -> {err.filename2}"
    return f"{where}: {err.strerror or err}"


def _show_input_warnings() -> None:
    """`InputWarning`s (input changed to make it usable) -> "warning: ..." on stderr, each
    time; other warnings as Python shows them."""
    default = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        if issubclass(category, InputWarning):
            click.echo(f"warning: {' '.join(str(message).split())}", err=True)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.simplefilter("always", InputWarning)
    warnings.showwarning = show


class UserErrorGroup(click.Group):
    """`UserError`, usage errors and OSErrors on a path -> "error: ..." on stderr and exit
    code 2, no traceback (also when the group is invoked on its own, e.g. in tests)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with warnings.catch_warnings():
                _show_input_warnings()
                return super().invoke(ctx)
        except UserError as err:
            _fail(str(err))
        except click.UsageError as err:
            where = err.ctx.command_path if err.ctx is not None else ctx.command_path
            _fail(f"{where}: {err.format_message()}")
        except OSError as err:
            message = os_error_message(err)
            if message is None:
                raise
            _fail(message)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
