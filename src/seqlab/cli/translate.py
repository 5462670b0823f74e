"""`seqlab translate`: train a translator, translate with it, evaluate it.

    seqlab translate train --corpus tatoeba-fra-eng --src en --tgt fr --out runs/en-fr
    seqlab translate run runs/en-fr "I am cold." --attention-plot cold.png
    seqlab translate run runs/en-fr -i sentences.txt          # one sentence a line; - = stdin
    seqlab translate eval runs/en-fr --split test
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from seqlab.cli.export import backend_option
from seqlab.cli.group import UserErrorGroup
from seqlab.cli.options import (
    FRACTION,
    NONNEG_FLOAT,
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
from seqlab.validate import replaced_note

if TYPE_CHECKING:
    from seqlab.translate.api import Translation

ARCHS = ("lstm", "transformer")   # seqlab.translate.transformer.ARCHS (not imported: CLI startup)


@click.group(cls=UserErrorGroup)
def translate() -> None:
    """English in, French out: an attention LSTM translator (train, run, eval)."""


def _corpus_arg(corpus: str) -> str:
    """User files become absolute paths, so a resumed run finds them from any directory."""
    if Path(corpus).exists():
        return str(Path(corpus).resolve())
    if "," in corpus:
        parts = [p.strip() for p in corpus.split(",", 1)]
        if all(Path(p).exists() for p in parts):
            return ",".join(str(Path(p).resolve()) for p in parts)
    return corpus


@translate.command()
@click.option("--corpus", default="libreoffice-help", show_default=True,
              help="tatoeba-fra-eng, multi30k, libreoffice-help, a TSV file or SRC,TGT files.")
@click.option("--src", "src_lang", default="en", show_default=True, help="Source language.")
@click.option("--tgt", "tgt_lang", default="fr", show_default=True, help="Target language.")
@click.option("--out", "out_dir", required=True, type=OutputDir(),
              help="Run directory (config, tokenizer, weights, checkpoint, log).")
@click.option("--data-dir", default=None, help="Where the named corpora live "
              "(default: $SEQLAB_DATA_DIR or ../shared/data).")
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly where it stopped.")
@click.option("--arch", type=click.Choice(ARCHS), default="lstm", show_default=True,
              help="lstm: bi-LSTM encoder + attention LSTM decoder; transformer: pre-norm "
                   "Transformer (--d-model, --num-heads, --num-*-layers, --dim-feedforward).")
@click.option("--attention", type=click.Choice(ATTENTION_KINDS), default="additive",
              show_default=True, help="lstm only.")
@click.option("--embedding-dim", type=POSITIVE_INT, default=256, show_default=True,
              help="Source and target embedding size.")
@click.option("--encoder-hidden-size", type=POSITIVE_INT, default=256, show_default=True,
              help="Encoder LSTM size per direction (the memory is twice as wide).")
@click.option("--num-encoder-layers", type=POSITIVE_INT, default=None,
              help="[default: 1 lstm, 3 transformer]")
@click.option("--num-decoder-layers", type=POSITIVE_INT, default=3, show_default=True,
              help="transformer only.")
@click.option("--d-model", type=POSITIVE_INT, default=256, show_default=True,
              help="transformer only.")
@click.option("--dim-feedforward", type=POSITIVE_INT, default=1024, show_default=True,
              help="transformer only.")
@click.option("--positions", type=click.Choice(["sinusoidal", "learned"]), default="sinusoidal",
              show_default=True, help="transformer only.")
@click.option("--decoder-hidden-size", type=POSITIVE_INT, default=256, show_default=True,
              help="Decoder LSTM size.")
@click.option("--attn-dim", type=POSITIVE_INT, default=None,
              help="additive: score MLP size; multihead: projection size "
                   "(default: --decoder-hidden-size).")
@click.option("--num-heads", type=POSITIVE_INT, default=4, show_default=True,
              help="multihead only.")
@click.option("--emb", type=POSITIVE_INT, default=None, hidden=True,
              help="Old spelling of --embedding-dim.")
@click.option("--hidden", type=POSITIVE_INT, default=None, hidden=True,
              help="Old flag: --encoder-hidden-size and --decoder-hidden-size at once.")
@click.option("--input-feeding/--no-input-feeding", default=True, show_default=True)
@click.option("--bridge/--no-bridge", default=True, show_default=True,
              help="Initial decoder state from the encoder's final state (else zeros).")
@click.option("--tie-embeddings", is_flag=True, help="Share target embeddings and output layer.")
@click.option("--dropout", type=FRACTION, default=None, help="[default: 0.2 lstm, 0.1 transformer]")
@click.option("--activation-dropout", type=FRACTION, default=0.0, show_default=True,
              help="transformer only: dropout inside the feed-forward blocks.")
@click.option("--label-smoothing", type=FRACTION, default=0.1, show_default=True)
@click.option("--vocab-size", type=VOCAB_SIZE, default=8000, show_default=True)
@click.option("--max-len", type=POSITIVE_INT, default=100, show_default=True,
              help="Drop training pairs with a side longer than this many subwords.")
@click.option("--batch-tokens", type=POSITIVE_INT, default=4096, show_default=True,
              help="Padded tokens per batch.")
@click.option("--lr", type=POSITIVE_FLOAT, default=2e-3, show_default=True)
@time_budget_option("Stop after this many minutes of training in total (with --resume, "
                    "earlier sessions count).")
@click.option("--max-steps", type=POSITIVE_INT, default=None)
@decay_steps_option
@click.option("--max-epochs", type=POSITIVE_INT, default=100, show_default=True)
@click.option("--eval-every", type=POSITIVE_INT, default=500, show_default=True,
              help="Dev BLEU every N steps.")
@click.option("--eval-sentences", type=POSITIVE_INT, default=500, show_default=True,
              help="Dev sentences used for the periodic BLEU.")
@click.option("--patience", type=POSITIVE_INT, default=8, show_default=True,
              help="Stop after N evaluations without a better dev BLEU.")
@click.option("--keep-checkpoints", type=int, default=0, show_default=True,
              help="Keep the weights of the last K evaluations and the final ones "
                   "(snapshots/) for `seqlab translate average`.")
@click.option("--snapshot-every", type=POSITIVE_INT, default=None,
              help="With --keep-checkpoints: a snapshot every N steps instead of at each "
                   "evaluation.")
@click.option("--seed", type=int, default=1234, show_default=True)
@click.option("--threads", type=POSITIVE_INT, default=None,
              help="torch threads (default: torch's).")
@precision_option
@device_option(None, " [default: auto; with --resume: the run's own]")
@click.option("--skip-bad-lines", is_flag=True, help="Count and skip malformed corpus lines.")
@quiet_option
@click.pass_context
def train(ctx: click.Context, corpus: str, src_lang: str, tgt_lang: str, out_dir: str,
          data_dir: str | None, resume: bool, arch: str, attention: str, embedding_dim: int,
          encoder_hidden_size: int, num_encoder_layers: int | None, num_decoder_layers: int,
          d_model: int, dim_feedforward: int, positions: str, decoder_hidden_size: int,
          attn_dim: int | None, num_heads: int, emb: int | None, hidden: int | None,
          input_feeding: bool, bridge: bool, tie_embeddings: bool, dropout: float | None,
          activation_dropout: float,
          label_smoothing: float, vocab_size: int, max_len: int, batch_tokens: int, lr: float,
          time_budget: float | None, max_steps: int | None, decay_steps: int | None,
          max_epochs: int, eval_every: int,
          eval_sentences: int, patience: int, keep_checkpoints: int,
          snapshot_every: int | None, seed: int, threads: int | None,
          precision: str | None, device: str | None, skip_bad_lines: bool,
          quiet: bool) -> None:
    """Train a translator on a corpus (or continue one with --resume)."""
    from seqlab.translate.model import Seq2SeqConfig
    from seqlab.translate.train import DataConfig, TrainConfig, train_translator
    from seqlab.translate.transformer import TransformerConfig

    echo = click.echo
    if resume:
        # only the stopping rules can change when continuing; everything else is the run's own
        overrides: dict[str, Any] = {"max_steps": max_steps, "time_budget_min": time_budget}
        if threads:
            overrides["threads"] = threads
        if decay_steps is not None:
            overrides["decay_steps"] = decay_steps
        if precision is not None:
            overrides["precision"] = precision
        if device is not None:
            overrides["device"] = device
        summary = train_translator(out_dir, resume=True, overrides=overrides,
                                   progress=not quiet, echo=echo)
    else:
        model_cfg: Seq2SeqConfig | TransformerConfig
        if arch == "transformer":
            model_cfg = TransformerConfig(
                d_model=d_model, num_heads=num_heads,
                num_encoder_layers=3 if num_encoder_layers is None else num_encoder_layers,
                num_decoder_layers=num_decoder_layers, dim_feedforward=dim_feedforward,
                positions=positions, dropout=0.1 if dropout is None else dropout,
                activation_dropout=activation_dropout, label_smoothing=label_smoothing)
        else:
            model_cfg = Seq2SeqConfig(
                embedding_dim=_old_flag(ctx, "emb", emb, ["embedding_dim"], embedding_dim),
                encoder_hidden_size=_old_flag(ctx, "hidden", hidden,
                                              ["encoder_hidden_size", "decoder_hidden_size"],
                                              encoder_hidden_size),
                num_encoder_layers=1 if num_encoder_layers is None else num_encoder_layers,
                decoder_hidden_size=_old_flag(ctx, "hidden", hidden,
                                              ["encoder_hidden_size", "decoder_hidden_size"],
                                              decoder_hidden_size),
                attention=attention, attn_dim=attn_dim,
                num_heads=num_heads if attention == "multihead" else 1,
                input_feeding=input_feeding, bridge=bridge, tie_embeddings=tie_embeddings,
                dropout=0.2 if dropout is None else dropout, label_smoothing=label_smoothing)
        train_cfg = TrainConfig(batch_tokens=batch_tokens, lr=lr, max_steps=max_steps,
                                decay_steps=decay_steps or 0,
                                max_epochs=max_epochs, time_budget_min=time_budget,
                                eval_every=eval_every, eval_sentences=eval_sentences,
                                patience=patience, keep_checkpoints=keep_checkpoints,
                                snapshot_every=snapshot_every, seed=seed,
                                threads=threads,
                                precision=precision or "fp32", device=device or "auto")
        data_cfg = DataConfig(corpus=_corpus_arg(corpus), src_lang=src_lang, tgt_lang=tgt_lang,
                              data_dir=data_dir, vocab_size=vocab_size, max_len=max_len,
                              skip_bad_lines=skip_bad_lines)
        summary = train_translator(out_dir, model_cfg, train_cfg, data_cfg,
                                   progress=not quiet, echo=echo)
    tps = summary.get("train_tokens_per_s")
    if summary["rank"] == 0:          # under torchrun: one line, not one per process
        echo(f"run directory: {summary['run_dir']} ({summary['steps']} steps, "
             f"{tps or 0:.0f} target tokens/s)")


def _old_flag(ctx: click.Context, old: str, old_value: int | None, new: list[str],
              value: int) -> int:
    """The value of a field given by its new flag or by an old spelling (not both)."""
    if old_value is None:
        return value
    given = [n for n in new
             if ctx.get_parameter_source(n) is click.core.ParameterSource.COMMANDLINE]
    if given:
        raise UserError(f"--{old} is the old spelling of "
                        f"{' and '.join('--' + n.replace('_', '-') for n in new)}; "
                        f"give one of them, not both")
    return old_value


def _read_sentences(sentences: tuple[str, ...], input_file: str | None) -> list[str]:
    if input_file is not None and sentences:
        raise UserError("give sentences as arguments or with -i FILE, not both")
    if input_file is None:
        if not sentences:
            raise UserError("nothing to translate: give a sentence, or -i FILE (- for stdin)")
        return list(sentences)
    if input_file == "-":
        return sys.stdin.read().splitlines()
    path = Path(input_file)
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"{path}: not found") from None
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not valid UTF-8") from None


average_option = click.option(
    "--average", type=click.IntRange(min=1), default=None, metavar="K",
    help="Decode with the mean of the run's last K weight snapshots (--keep-checkpoints).")
ensemble_option = click.option(
    "--ensemble", multiple=True, type=click.Path(file_okay=False), metavar="RUN",
    help="Decode with RUN_DIR and this run together, their log-probabilities averaged at each "
         "step (repeatable; the runs must share the tokenizer).")


@translate.command()
@click.argument("run_dir", type=click.Path())
@click.argument("sentences", nargs=-1)
@click.option("-i", "--input", "input_file", default=None,
              help="File with one sentence a line ('-' = stdin).")
@click.option("--num-beams", type=POSITIVE_INT, default=5, show_default=True)
@click.option("--length-penalty", type=NONNEG_FLOAT, default=1.0, show_default=True,
              help="GNMT alpha: score / ((5 + len) / 6) ** alpha.")
@click.option("--max-new-tokens", type=POSITIVE_INT, default=None,
              help="Output length limit (default: 2 x source length + 10).")
@click.option("--n-best", type=POSITIVE_INT, default=1, show_default=True,
              help="Print this many candidates per sentence (tab-separated with scores).")
@click.option("--batch-size", type=POSITIVE_INT, default=64, show_default=True)
@click.option("--attention-plot", type=OutputFile(figure=True), default=None,
              help="Save the attention heat map (several sentences: FILE-1.png, FILE-2.png...; "
                   "a Transformer also gets one per decoder layer with a map per head: "
                   "FILE-layer1.png, ...).")
@average_option
@ensemble_option
@device_option()
@backend_option
def run(run_dir: str, sentences: tuple[str, ...], input_file: str | None, num_beams: int,
        length_penalty: float, max_new_tokens: int | None, n_best: int, batch_size: int,
        attention_plot: str | None, average: int | None, ensemble: tuple[str, ...],
        device: str, backend: str) -> None:
    """Translate sentences with a trained run: RUN_DIR "I am cold." ..."""
    from seqlab.translate.api import Translator

    texts = _read_sentences(sentences, input_file)
    if num_beams < 1 or not 1 <= n_best <= num_beams:
        raise UserError(f"--num-beams must be >= 1 and --n-best in 1..num-beams, got "
                        f"{num_beams} and {n_best}")
    tr = Translator.load(run_dir, device=device, backend=backend, average=average,
                         ensemble=ensemble)
    res = tr.translate(texts, num_beams=num_beams, max_new_tokens=max_new_tokens,
                       length_penalty=length_penalty, return_attention=True,
                       batch_size=batch_size, num_return_sequences=n_best)
    for r in res:
        assert not isinstance(r, str)
        if n_best > 1:
            click.echo("\t".join([f"{r.text}\t{r.score:.4f}"]
                                 + [f"{t}\t{s:.4f}" for t, s in r.nbest]))
        else:
            click.echo(r.text)
    if attention_plot:
        from seqlab.viz.attention_plot import plot_attention

        base = Path(attention_plot)
        shown = [(s, r) for s, r in zip(texts, cast("list[str | Translation]", res), strict=True)
                 if s.strip()]
        for i, (s, r) in enumerate(shown):
            assert not isinstance(r, str)
            path = numbered_path(base, i, len(shown))
            if not r.tgt_tokens:
                click.echo(f"no attention plot for {s!r}: empty translation", err=True)
                continue
            note = replaced_note(path)
            plot_attention(r.attention, r.src_tokens, r.tgt_tokens, out_path=path,
                           title=f"{s}  ->  {r.text}")
            click.echo(f"attention plot: {note}", err=True)
            for layer, heads in enumerate(r.layer_attention if r.layer_attention is not None
                                          else []):
                lpath = path.with_name(f"{path.stem}-layer{layer + 1}{path.suffix or '.png'}")
                plot_attention(heads, r.src_tokens, r.tgt_tokens, out_path=lpath,
                               title=f"decoder layer {layer + 1}: {s}  ->  {r.text}")
                click.echo(f"attention plot: {lpath}", err=True)


@translate.command(name="eval")
@click.argument("run_dir", type=click.Path())
@click.option("--corpus", default=None, help="Default: the corpus the run was trained on.")
@click.option("--split", type=click.Choice(["dev", "test", "train"]), default="test",
              show_default=True)
@click.option("--data-dir", default=None)
@click.option("--num-beams", type=POSITIVE_INT, default=5, show_default=True)
@click.option("--length-penalty", type=NONNEG_FLOAT, default=1.0, show_default=True)
@click.option("--batch-size", type=POSITIVE_INT, default=64, show_default=True)
@click.option("--limit", type=POSITIVE_INT, default=None, help="Only the first N sentences.")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
@average_option
@ensemble_option
@device_option()
@backend_option
def eval_cmd(run_dir: str, corpus: str | None, split: str, data_dir: str | None,
             num_beams: int, length_penalty: float, batch_size: int, limit: int | None,
             as_json: bool, average: int | None, ensemble: tuple[str, ...],
             device: str, backend: str) -> None:
    """Score a run on a corpus split: sacreBLEU BLEU and chrF (with signatures)."""
    from seqlab.text.metrics import format_scores
    from seqlab.translate.api import Translator
    from seqlab.translate.corpora import load_corpus

    tr = Translator.load(run_dir, device=device, backend=backend, average=average,
                         ensemble=ensemble)
    data = tr.config["data"]
    c = load_corpus(_corpus_arg(corpus) if corpus else data["corpus"], data["src_lang"],
                    data["tgt_lang"], data_dir=data_dir or data.get("data_dir"),
                    seed=data.get("split_seed", 1234))
    part = getattr(c, split)
    scores = tr.evaluate(part, num_beams=num_beams, batch_size=batch_size,
                         length_penalty=length_penalty, limit=limit)
    if as_json:
        click.echo(json.dumps(scores, indent=2))
        return
    click.echo(f"{c.name} {split} ({scores['n_sentences']} sentences, {data['src_lang']}->"
               f"{data['tgt_lang']}, beam {num_beams})")
    click.echo(format_scores(scores))


@translate.command()
@click.argument("run_dir", type=click.Path())
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best",
              show_default=True, help="best: model.safetensors; last: checkpoint.safetensors.")
def export(run_dir: str, checkpoint: str) -> None:
    """Write the encoder and the one-step decoder as ONNX to RUN_DIR/onnx/ (for
    `translate run/eval --backend onnx`; needs pip install 'seqlab[onnx]')."""
    from seqlab.translate.onnx_backend import export_translator

    out = export_translator(run_dir, checkpoint=checkpoint)
    click.echo(f"ONNX export: {out}")


@translate.command()
@click.argument("run_dir", type=click.Path())
@click.option("--last", type=click.IntRange(min=1), required=True, metavar="K",
              help="Average the last K weight snapshots (train with --keep-checkpoints K).")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="New run directory for the averaged weights.")
def average(run_dir: str, last: int, out_dir: str) -> None:
    """Checkpoint averaging: write a run whose weights are the mean of RUN_DIR's last K."""
    from seqlab.translate.run import average_run

    out = average_run(run_dir, last, out_dir)
    click.echo(f"averaged the last {last} snapshots of {run_dir} into {out}")
