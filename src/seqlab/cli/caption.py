"""`seqlab caption`: train an attention captioner, caption images, evaluate, prepare data.

    seqlab caption train --data emoji --out runs/emoji [--split random|grouped --minutes 5]
    seqlab caption run runs/emoji face.png [more.png ...] --attention-plot strip.png
    seqlab caption eval runs/emoji [--split-name test --beams 5]
    seqlab caption emoji OUT_DIR           (write the emoji set as folder + captions.tsv)
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from seqlab.cli.group import UserErrorGroup
from seqlab.cli.options import (
    POSITIVE_FLOAT,
    POSITIVE_INT,
    VOCAB_SIZE,
    OutputDir,
    OutputFile,
    decay_steps_option,
    device_option,
    numbered_path,
    precision_option,
    quiet_option,
    time_budget_option,
)
from seqlab.errors import UserError
from seqlab.nn.attention import ATTENTION_KINDS


@click.group(cls=UserErrorGroup)
def caption() -> None:
    """Image in, text out: an attention captioner that shows where it looked."""


@caption.command()
@click.option("--data", default="emoji", show_default=True,
              help="'emoji' (the built-in emoji set, fetched once with npm) or a folder with "
                   "captions.tsv (lines 'filename<TAB>caption[<TAB>group]') or a .tsv file.")
@click.option("--out", "out_dir", required=True, type=OutputDir(),
              help="Run directory (config.json, model.safetensors, tokenizer/, log).")
@click.option("--split", type=click.Choice(["random", "grouped"]), default="random",
              show_default=True, help="Held-out split: random images, or whole groups.")
@time_budget_option("Stop after this many minutes of training in total (with --resume, "
                    "earlier sessions count).")
@click.option("--max-steps", type=POSITIVE_INT, default=None, help="Stop after this many updates.")
@decay_steps_option
@click.option("--attention", default="additive", show_default=True,
              type=click.Choice(ATTENTION_KINDS))
@click.option("--embedding-dim", type=POSITIVE_INT, default=None,
              help="Caption embedding size [default: CaptionerConfig's, 128].")
@click.option("--hidden-size", type=POSITIVE_INT, default=None,
              help="Decoder LSTM size [default: CaptionerConfig's, 256].")
@click.option("--attn-dim", type=POSITIVE_INT, default=None,
              help="additive: score MLP size; multihead: projection size "
                   "[default: CaptionerConfig's, 128].")
@click.option("--num-heads", type=POSITIVE_INT, default=None,
              help="multihead only [default: 4 with multihead, else 1].")
@click.option("--vocab-size", type=VOCAB_SIZE, default=1000, show_default=True,
              help="Sentencepiece vocabulary (>= 300: 260 pieces are specials and bytes).")
@click.option("--image-size", type=POSITIVE_INT, default=64, show_default=True,
              help="Images are resized to this square size (multiple of 8; size/8 regions a side).")
@click.option("--batch-size", type=POSITIVE_INT, default=64, show_default=True)
@click.option("--lr", type=POSITIVE_FLOAT, default=3e-3, show_default=True)
@click.option("--eval-every", type=POSITIVE_INT, default=150, show_default=True)
@click.option("--seed", type=int, default=1234, show_default=True)
@click.option("--threads", type=POSITIVE_INT, default=None,
              help="torch threads (default: torch's).")
@precision_option
@device_option(None, " [default: auto; with --resume: the run's own]")
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly.")
@quiet_option
def train(data: str, out_dir: Path, split: str, time_budget: float | None, max_steps: int | None,
          decay_steps: int | None, attention: str, embedding_dim: int | None,
          hidden_size: int | None, attn_dim: int | None, num_heads: int | None,
          vocab_size: int, image_size: int,
          batch_size: int, lr: float, eval_every: int, seed: int, threads: int | None,
          precision: str | None, device: str | None, resume: bool, quiet: bool) -> None:
    """Train a captioner, then report BLEU/chrF/exact match on the held-out test images."""
    from seqlab.caption.api import Captioner
    from seqlab.caption.data import CaptionDataConfig
    from seqlab.caption.train import default_train_config, train_captioner

    if image_size % 8 or image_size < 8:
        raise UserError(f"--image-size must be a positive multiple of 8, got {image_size}")
    if resume:
        overrides = {k: v for k, v in (("time_budget_min", time_budget), ("max_steps", max_steps),
                                       ("decay_steps", decay_steps),
                                       ("precision", precision), ("device", device))
                     if v is not None}
        summary = train_captioner(out_dir, resume=True, overrides=overrides,
                                  progress=not quiet, echo=click.echo)
    else:
        tcfg = default_train_config(batch_size=batch_size, lr=lr, eval_every=eval_every,
                                    seed=seed, threads=threads, max_steps=max_steps,
                                    decay_steps=decay_steps or 0, time_budget_min=time_budget,
                                    precision=precision or "fp32", device=device or "auto")
        if data != "emoji":   # absolute, so `eval` finds the data from any directory
            data = str(Path(data).resolve())
        dcfg = CaptionDataConfig(data=data, split=split, split_seed=seed, vocab_size=vocab_size,
                                 image_size=image_size)
        if num_heads is None:
            num_heads = 4 if attention == "multihead" else 1
        given = {"embedding_dim": embedding_dim, "hidden_size": hidden_size,
                 "attn_dim": attn_dim}
        model_cfg = {"attention": attention, "num_heads": num_heads,
                     **{k: v for k, v in given.items() if v is not None}}
        summary = train_captioner(out_dir, model_cfg=model_cfg, train_cfg=tcfg,
                                  data_cfg=dcfg, progress=not quiet, echo=click.echo)
    if summary["rank"] != 0:          # under torchrun: rank 0 alone tests and reports
        return
    cap = Captioner.load(out_dir, device=device or "auto")
    test = cap.test_split("test")
    if len(test):
        scores = cap.evaluate(test, num_beams=5)
        click.echo(f"test ({len(test)} images, beam 5): BLEU {scores['bleu']:.2f}  "
                   f"chrF {scores['chrf']:.2f}  exact match {scores['exact_match']:.1f}%")
    click.echo(f"trained {summary['steps']} steps in {summary['seconds']:.0f}s -> {out_dir}")


@caption.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--beams", type=POSITIVE_INT, default=5, show_default=True)
@click.option("--attention-plot", type=OutputFile(figure=True), default=None,
              help="Save the attention strip here (several images: FILE-1.png, FILE-2.png...).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image.")
@device_option()
def run(run_dir: Path, images: tuple[Path, ...], beams: int, attention_plot: Path | None,
        as_json: bool, device: str) -> None:
    """Caption IMAGES with the model in RUN_DIR."""
    from seqlab.caption.api import Caption, Captioner
    from seqlab.caption.plots import plot_attention_strip

    if beams < 1:
        raise UserError(f"--beams must be >= 1, got {beams}")
    cap = Captioner.load(run_dir, device=device)
    res = cap.caption(list(images), num_beams=beams, return_attention=True)
    for i, (path, c) in enumerate(zip(images, res, strict=True)):
        assert isinstance(c, Caption)
        plot = None
        if attention_plot is not None and c.image is not None and c.word_attention is not None:
            plot = numbered_path(attention_plot, i, len(images))
            if plot.exists():
                click.echo(f"replaced {plot}", err=True)
            plot_attention_strip(c.image, c.words, c.word_attention, plot,
                                 title=f"{path.name}: {c.text}")
        if as_json:
            click.echo(json.dumps({"image": str(path), "caption": c.text, "score": c.score,
                                   "attention_plot": str(plot) if plot else None}))
        else:
            click.echo(f"{path}\t{c.text}" + (f"\t(attention: {plot})" if plot else ""))


@caption.command("eval")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--split-name", type=click.Choice(["test", "dev"]), default="test",
              show_default=True, help="Which of the run's held-out splits.")
@click.option("--beams", type=POSITIVE_INT, default=5, show_default=True)
@click.option("--limit", type=POSITIVE_INT, default=None, help="Only the first N images.")
@device_option()
def evaluate(run_dir: Path, split_name: str, beams: int, limit: int | None, device: str) -> None:
    """BLEU, chrF (sacreBLEU) and exact match on the run's held-out split."""
    from seqlab.caption.api import Captioner

    cap = Captioner.load(run_dir, device=device)
    scores = cap.evaluate(cap.test_split(split_name), num_beams=beams, limit=limit)
    click.echo(f"{split_name} ({scores['n_images']} images, beam {beams}): "
               f"BLEU {scores['bleu']:.2f}  chrF {scores['chrf']:.2f}  "
               f"exact match {scores['exact_match']:.1f}%")
    click.echo(f"  BLEU: {scores['bleu_signature']}\n  chrF: {scores['chrf_signature']}")


@caption.command()
@click.argument("out_dir", type=click.Path(path_type=Path), required=False)
def emoji(out_dir: Path | None) -> None:
    """Fetch emoji-datasource-google@16.0.0 (npm) and print (or copy to OUT_DIR) the folder
    with images/ and captions.tsv."""
    import shutil

    from seqlab.caption.emoji import prepare_emoji

    folder = prepare_emoji()
    if out_dir is not None:
        if out_dir.exists():
            raise UserError(f"{out_dir}: already exists; choose a new folder")
        shutil.copytree(folder, out_dir)
        folder = out_dir
    n = sum(1 for line in (folder / "captions.tsv").read_text(encoding="utf-8").splitlines()
            if line and not line.startswith("#"))
    click.echo(f"{folder}: {n} captioned images (captions.tsv, images/)")
