"""One vocabulary of options across commands; the old spellings still work, hidden."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from seqlab.cli import main
from seqlab.cli.options import numbered_path, quiet_option, time_budget_option

COMMANDS = [("translate", "train"), ("caption", "train"), ("demo",)]


@pytest.mark.parametrize("cmd", COMMANDS, ids=" ".join)
def test_shared_names_shown_old_names_hidden(cmd):
    text = CliRunner().invoke(main, [*cmd, "--help"]).output
    assert "--time-budget" in text and "--quiet" in text
    assert "--minutes" not in text and "--no-progress" not in text


@click.command()
@time_budget_option("budget")
@quiet_option
def probe(time_budget: float | None, quiet: bool) -> None:
    click.echo(f"{time_budget} {quiet}")


@pytest.mark.parametrize("args, out", [
    ([], "None False"),
    (["--time-budget", "4"], "4.0 False"),
    (["--minutes", "3"], "3.0 False"),
    (["--quiet"], "None True"),
    (["--no-progress"], "None True"),
    (["--no-progress", "--minutes", "2.5"], "2.5 True"),
])
def test_old_spellings_give_the_same_values(args, out):
    r = CliRunner().invoke(probe, args)
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == out
    old = [a for a in args if a in ("--minutes", "--no-progress")]
    for a in old:   # a note on stderr names the new spelling
        assert f"{a} is the old name of" in r.stderr
    if not old:
        assert r.stderr == ""


@pytest.mark.parametrize("args", [["--minutes", "3", "--time-budget", "4"],
                                  ["--time-budget", "4", "--minutes", "3"]])
def test_old_and_new_spelling_together_is_an_error(args):
    r = CliRunner().invoke(probe, args)
    assert r.exit_code == 2
    assert "--minutes is the old name of --time-budget" in r.output


def test_real_command_takes_the_old_spelling():
    """`caption train --minutes` reaches the command as its time budget (it fails later, on the
    missing data folder, after the options were read)."""
    r = CliRunner().invoke(main, ["caption", "train", "--data", "/nonexistent/folder",
                                  "--out", "/nonexistent/run", "--minutes", "0.1"])
    assert "--minutes is the old name of --time-budget" in r.stderr
    assert "No such option" not in r.output


def test_numbered_plot_names():
    base = Path("out/attn.png")
    assert numbered_path(base, 0, 1) == base
    assert [numbered_path(base, i, 3).name for i in range(3)] == ["attn-1.png", "attn-2.png",
                                                                  "attn-3.png"]
    assert numbered_path(Path("strip"), 1, 2).name == "strip-2.png"


def test_demo_minutes_says_what_changed(tmp_path):
    """The demo's old --minutes was its whole budget; now the budget is --steps."""
    r = CliRunner().invoke(main, ["demo", "--minutes", "1", "--skip", "gates", "--skip",
                                  "series", "--skip", "translate", "--out", str(tmp_path / "d")])
    assert r.exit_code == 0, r.output
    assert "--minutes is the old name of --time-budget: now only a cap" in r.stderr
