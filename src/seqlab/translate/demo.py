"""The README demo: a small translator trained for a few CPU minutes, with attention pictures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seqlab.training.checkpoint import CHECKPOINT_FILE
from seqlab.translate.api import Translator
from seqlab.translate.model import Seq2SeqConfig
from seqlab.translate.train import DataConfig, TrainConfig, train_translator
from seqlab.viz.attention_plot import plot_attention


def run_translate_demo(out_dir: str | Path, minutes: float = 5.0, corpus: str = "libreoffice-help",
                       sentences: list[str] | None = None, progress: bool = True,
                       seed: int = 1234, model_size: int = 128, vocab_size: int = 4000,
                       max_len: int = 32, device: str = "auto") -> dict[str, Any]:
    """The README demo: train a small translator for `minutes` on the built-in corpus,
    translate a few sentences and save their attention heat maps under out_dir/attention/.

    Running it again continues the same run (resume) for another `minutes`.
    Sized for a few CPU minutes: a 128-unit model, a 4k vocabulary and the pairs of at most
    `max_len` subwords (UI strings and short help sentences) see many epochs in that time.
    Returns {"run_dir", "train": summary, "translations": [{source, translation, plot}]}.
    """
    out = Path(out_dir)
    run = out / "translator"
    summary = train_translator(
        run,
        model_cfg=Seq2SeqConfig(embedding_dim=model_size, encoder_hidden_size=model_size,
                                decoder_hidden_size=model_size, attention="additive",
                                dropout=0.2),
        train_cfg=TrainConfig(time_budget_min=minutes, eval_every=400, eval_sentences=300,
                              batch_tokens=2048, lr=3e-3, seed=seed, max_epochs=1000,
                              device=device),
        data_cfg=DataConfig(corpus=corpus, src_lang="en", tgt_lang="fr", vocab_size=vocab_size,
                            max_len=max_len),
        resume=(run / CHECKPOINT_FILE).exists(), progress=progress,
        overrides={"time_budget_min": minutes, "device": device})
    tr = Translator.load(run, device=device)
    sentences = sentences or ["Click the OK button.", "Select the cells you want to delete.",
                              "Opens the Save As dialog.", "The table has three columns."]
    outs = tr.translate(sentences, num_beams=5, return_attention=True)
    shown = []
    for i, (s, r) in enumerate(zip(sentences, outs, strict=True)):
        assert not isinstance(r, str)
        path = out / "attention" / f"sentence_{i + 1}.png"
        if r.tgt_tokens:   # an empty output has nothing to draw
            plot_attention(r.attention, r.src_tokens, r.tgt_tokens, out_path=path,
                           title=f"{s} -> {r.text}")
        shown.append({"source": s, "translation": r.text,
                      "plot": str(path) if r.tgt_tokens else None})
    return {"run_dir": str(run), "train": summary, "translations": shown}
