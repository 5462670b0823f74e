"""The click group class every seqlab command group uses: user errors become one line."""

from __future__ import annotations

import sys
from typing import Any

import click

from seqlab.errors import UserError


class UserErrorGroup(click.Group):
    """`UserError` -> "error: ..." on stderr and exit code 2, no traceback (also when the group
    is invoked on its own, e.g. in tests)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)
