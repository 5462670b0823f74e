"""The `seqlab` command line. Each application registers its own subcommand group here."""

from __future__ import annotations

import click

from seqlab import __version__
from seqlab.cli.group import UserErrorGroup


@click.group(cls=UserErrorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="seqlab")
def main() -> None:
    """seqlab: LSTMs from their gates, sequence autoencoders, attention encoder-decoders."""


def _register() -> None:
    from seqlab.cli.demo import demo
    from seqlab.cli.gates import gates

    main.add_command(gates)
    main.add_command(demo)
    main.add_command(__import__("seqlab.cli.series", fromlist=["series"]).series)
    main.add_command(__import__("seqlab.cli.translate", fromlist=["translate"]).translate)
    main.add_command(__import__("seqlab.cli.caption", fromlist=["caption"]).caption)
    main.add_command(__import__("seqlab.cli.studio", fromlist=["studio"]).studio)


_register()
