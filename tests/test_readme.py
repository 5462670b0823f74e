"""Every code block of README.md and docs/*.md runs.

```python blocks run as written (exec, in document order, in one working directory), so they
must define what they use. ```sh blocks run line by line: each `seqlab ...` line is invoked
in-process, after the substitutions in SMALL (the README's sizes and time budgets -> a few
steps) and with the files in make_files. Earlier blocks make the runs later ones use
(`runs/enfr`, `runs/series`, ...), as a reader following the README would. A block preceded by
`<!-- test: skip (reason) -->` is not run; its `seqlab` lines are still parsed (`--help`
appended: every option named must exist).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw

from seqlab.cli import main
from test_translate_train import write_corpus

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\s*$")
SKIP = re.compile(r"<!--\s*test:\s*skip\s*\((.+)\)\s*-->")

TINY_TRANSLATOR = ("--embedding-dim 16 --encoder-hidden-size 16 --decoder-hidden-size 16 "
                   "--vocab-size 300 --batch-tokens 600 --eval-every 4 --eval-sentences 8 "
                   "--threads 1 --quiet")
TINY_CAPTIONER = ("--embedding-dim 16 --hidden-size 16 --attn-dim 16 --vocab-size 300 "
                  "--image-size 32 --batch-size 4 --eval-every 2 --threads 1 --quiet")
# (pattern, replacement) applied to each shell line: the README's real sizes -> seconds.
SMALL = [
    (r"--corpus tatoeba-fra-eng", "--corpus {corpus}"),
    (r"--out runs/enfr --time-budget 30", "--out runs/enfr --max-steps 4 " + TINY_TRANSLATOR),
    (r"--resume --time-budget 60 --max-steps 4000 --decay-steps 2000",
     "--resume --max-steps 6 --decay-steps 2 --quiet"),
    (r"^seqlab gates --text (.*)$", r"seqlab gates --text \1 --train-steps 20"),
    (r"--window 64", "--window 8 --epochs 1 --hidden-size 8 --latent-size 4 --threads 1"),
    (r"--data emoji", "--data {captions}"),
    (r"--time-budget 6", "--max-steps 2 " + TINY_CAPTIONER),
    # the demo's translator and series parts train for minutes: their functions are tested
    # in test_cli_translate.py and test_series_demo.py; here the options parse and the gates run
    (r"^seqlab demo (.*)$", r"seqlab demo \1 --skip series --skip translate --out demo_out"),
]


@dataclass
class Block:
    path: Path
    line: int          # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None   # the reason, for a block marked skip

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def code_blocks(path: Path) -> list[Block]:
    blocks, lines = [], path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        prev = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        skip = SKIP.search(prev)
        blocks.append(Block(path, start + 1, m.group(1), "\n".join(body) + "\n",
                            skip.group(1) if skip else None))
        i += 1
    return blocks


ALL = [b for p in DOCS for b in code_blocks(p) if b.lang in ("python", "sh")]


def seqlab_lines(block: Block, files: dict[str, str] | None = None) -> list[list[str]]:
    """The block's `seqlab` commands as argument lists (after SMALL when files are given)."""
    out = []
    for raw in block.code.splitlines():
        line = shlex.join(shlex.split(raw, comments=True))
        if files is not None:
            for pattern, repl in SMALL:
                line = re.sub(pattern, repl.format(**files) if "{" in repl else repl, line)
        args = shlex.split(line)
        if args and args[0] == "seqlab":
            out.append(args[1:])
    return out


def test_blocks_found_and_marked_only_with_reasons():
    assert any(b.lang == "python" for b in ALL) and any(b.lang == "sh" for b in ALL)
    for b in ALL:
        if b.skip is not None:
            assert len(b.skip) > 10, f"{b.where()}: say why the block cannot run"


@pytest.mark.parametrize("block", [b for b in ALL if b.lang == "sh"], ids=Block.where)
def test_every_command_and_option_exists(block):
    """Each `seqlab ...` line of a shell block names real commands and options (fast)."""
    for args in seqlab_lines(block):
        r = CliRunner().invoke(main, [*args, "--help"])
        assert r.exit_code == 0, f"{block.where()}: seqlab {shlex.join(args)}\n{r.output}"


def make_files(work: Path) -> dict[str, str]:
    """The input files the README's commands name, small."""
    import numpy as np
    import pandas as pd

    corpus = write_corpus(work / "pairs.tsv", n=120)
    (work / "sentences.txt").write_text("I see two red cats .\nI have one dog .\n",
                                        encoding="utf-8")
    t = np.arange(400)
    frame = pd.DataFrame({"cpu": np.sin(t / 8), "mem": np.cos(t / 13), "temp": np.sin(t / 30)})
    frame.to_csv(work / "normal.csv", index=False)
    frame.to_csv(work / "data.csv", index=False)
    burst = frame.copy()
    burst.loc[300:305, "cpu"] += 3
    burst.to_csv(work / "new.csv", index=False)
    captions = work / "captions"
    captions.mkdir()
    lines = []
    for colour, rgb in (("red", (220, 30, 30)), ("blue", (30, 60, 220)),
                        ("green", (30, 170, 60)), ("yellow", (230, 200, 20))):
        for shape in ("square", "disc"):
            im = Image.new("RGB", (32, 32))
            draw = ImageDraw.Draw(im)
            (draw.rectangle if shape == "square" else draw.ellipse)((4, 8, 20, 24), fill=rgb)
            im.save(captions / f"{colour}_{shape}.png")
            lines.append(f"{colour}_{shape}.png\ta {colour} {shape}")
    (captions / "captions.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    Image.open(captions / "red_disc.png").save(work / "face.png")
    return {"corpus": str(corpus), "captions": str(captions)}


@contextlib.contextmanager
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_every_block_runs(tmp_path, monkeypatch):
    """All blocks, in order, as a reader would run them (a minute or two on 2 quiet cores)."""
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    files = make_files(tmp_path)
    runner = CliRunner()
    with one_thread():
        for block in ALL:
            if block.skip is not None:
                continue
            if block.lang == "python":
                try:
                    exec(compile(block.code, block.where(), "exec"), {"__name__": "__readme__"})
                except Exception as err:   # name the block, keep the traceback
                    raise AssertionError(f"{block.where()}: {err!r}") from err
                continue
            for args in seqlab_lines(block, files):
                r = runner.invoke(main, args)
                assert r.exit_code == 0, (f"{block.where()}: seqlab {shlex.join(args)}\n"
                                          f"{r.output}\n{r.exception!r}")


def test_dev_script_is_valid_bash():
    """The two set-up commands at the top (skipped above: they build .venv and run all)."""
    res = subprocess.run(["bash", "-n", str(ROOT / "scripts" / "dev.sh")], capture_output=True,
                         text=True, env={**os.environ})
    assert res.returncode == 0, res.stderr
    text = (ROOT / "scripts" / "dev.sh").read_text()
    assert "demo)" in text and "test)" in text
