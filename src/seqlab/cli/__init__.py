"""The `seqlab` command line: the main group and its subcommands (one module each)."""

from __future__ import annotations

import click

from seqlab import __version__
from seqlab.cli.caption import caption
from seqlab.cli.demo import demo
from seqlab.cli.gates import gates
from seqlab.cli.group import UserErrorGroup
from seqlab.cli.series import series
from seqlab.cli.studio import studio
from seqlab.cli.translate import translate


@click.group(cls=UserErrorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="seqlab")
def main() -> None:
    """seqlab: LSTMs from their gates, sequence autoencoders, attention encoder-decoders."""


for command in (gates, demo, series, translate, caption, studio):
    main.add_command(command)
