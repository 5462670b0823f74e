"""The built-in demo's translator: a small English->French model trained on the LibreOffice
help for a fixed number of steps, a few translations and their attention heat maps.

The budget is in optimizer steps, not minutes, so every machine ends with the same model (a
slow or busy one just takes longer; the progress bar shows the time left). The last fifth of
the steps anneals the learning rate to its floor (warmup-stable-decay), so the weights settle.
A second call reuses the trained run (or trains on to a larger `steps`); `fresh=True` deletes
it and starts again.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from seqlab.training.checkpoint import checkpoint_progress
from seqlab.training.loop import torch_threads
from seqlab.translate.api import Translation, Translator
from seqlab.translate.model import Seq2SeqConfig
from seqlab.translate.train import DataConfig, TrainConfig, train_translator
from seqlab.viz.attention_plot import plot_attention

# Sized so the demo's sentences come out right with focused attention maps (at 800 steps the
# dev BLEU is about 7 and some outputs repeat words; at 1600 about 20): a 128-unit model, a 4k
# vocabulary, the pairs of at most 32 subwords (UI strings and short help sentences).
DEMO_STEPS = 1600
# Help-style sentences (the corpus's domain); the last one's heat map shows the adjective moving
# after its noun ("selected rows" -> "lignes sélectionnées").
DEMO_SENTENCES = ["Click the OK button.", "Select the cells you want to delete.",
                  "Opens the Save As dialog.", "Deletes the selected rows."]


@dataclass
class DemoTranslation:
    source: str
    translation: str
    plot: Path | None          # the attention heat map (None: empty translation, nothing to draw)


@dataclass
class TranslateDemoResult:
    run_dir: Path
    trained: str               # "trained", "continued" or "reused": what this call did
    steps: int                 # optimizer steps of the run
    best_dev_bleu: float | None
    translations: list[DemoTranslation]


def run_translate_demo(out_dir: str | Path, steps: int = DEMO_STEPS, *, fresh: bool = False,
                       time_budget: float | None = None, corpus: str = "libreoffice-help",
                       sentences: list[str] | None = None, progress: bool = True,
                       seed: int = 1234, model_size: int = 128, vocab_size: int = 4000,
                       max_len: int = 32, device: str = "auto", threads: int | None = None,
                       echo: Callable[[str], None] = print) -> TranslateDemoResult:
    """Train (or reuse) the demo translator in out_dir/translator, translate `sentences` and
    save their attention heat maps as out_dir/attention/sentence-1.png, ...

    steps: the training budget in optimizer steps. An existing run that has reached it is
    reused; one that stopped short (killed, or a smaller `steps` before) is continued exactly
    to `steps`. fresh: delete any existing run first. time_budget: an optional cap in minutes
    on the run's training time (then the run may end short of `steps`, and says so).
    threads: torch threads on a CPU (None: torch's default; `seqlab.device.idle_threads()`
    is what the CLI passes, so a busy machine is not oversubscribed).
    """
    out = Path(out_dir)
    run = out / "translator"
    done = checkpoint_progress(run)
    if run.exists() and (fresh or done is None):
        # no checkpoint: a run killed before its first one; nothing to continue
        echo(f"starting fresh: deleting {run}" + ("" if fresh else " (no checkpoint in it)"))
        shutil.rmtree(run)
        done = None
    decay = steps // 5
    if done is not None and done["step"] >= steps:
        trained = "reused"
        echo(f"reusing the translator trained earlier in {run} ({done['step']} steps; "
             f"--fresh trains a new one)")
        summary: dict[str, Any] = {"steps": done["step"], "best_dev_bleu": done["best_bleu"]}
    elif done is not None:
        trained = "continued"
        echo(f"continuing the translator in {run} from step {done['step']} to {steps}")
        summary = train_translator(
            run, resume=True, progress=progress, echo=echo,
            overrides={"max_steps": steps, "decay_steps": decay, "time_budget_min": time_budget,
                       "device": device, "threads": threads})
    else:
        trained = "trained"
        summary = train_translator(
            run,
            model_cfg=Seq2SeqConfig(embedding_dim=model_size, encoder_hidden_size=model_size,
                                    decoder_hidden_size=model_size, attention="additive",
                                    dropout=0.2),
            train_cfg=TrainConfig(max_steps=steps, decay_steps=decay, time_budget_min=time_budget,
                                  eval_every=max(50, steps // 4), eval_sentences=300,
                                  batch_tokens=2048, lr=3e-3, seed=seed, max_epochs=1000,
                                  patience=100, device=device, threads=threads),
            data_cfg=DataConfig(corpus=corpus, src_lang="en", tgt_lang="fr",
                                vocab_size=vocab_size, max_len=max_len),
            progress=progress, echo=echo)
    if summary["steps"] < steps:
        echo(f"note: the run stopped at step {summary['steps']} of {steps} "
             f"({summary.get('stopped')}); the translations below come from that model")
    tr = Translator.load(run, device=device)
    sentences = sentences or DEMO_SENTENCES
    with torch_threads(threads):
        outs = cast("list[str | Translation]",
                    tr.translate(sentences, num_beams=5, return_attention=True))
    shown = []
    for i, (s, r) in enumerate(zip(sentences, outs, strict=True)):
        assert not isinstance(r, str)
        path: Path | None = out / "attention" / f"sentence-{i + 1}.png"
        if r.tgt_tokens:
            plot_attention(r.attention, r.src_tokens, r.tgt_tokens, out_path=path,
                           title=f"{s} -> {r.text}")
        else:
            path = None
        shown.append(DemoTranslation(s, r.text, path))
    return TranslateDemoResult(run, trained, int(summary["steps"]),
                               summary.get("best_dev_bleu"), shown)
