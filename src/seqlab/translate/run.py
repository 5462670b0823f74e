"""The translator's run directory: the config.json format, reading it (older layouts upgraded on
the way in) and loading the trained model.

Run directory (format tag "seqlab-translator/2"):
    config.json              {"format", "model": Seq2SeqConfig, "train": TrainConfig,
                              "data": DataConfig, "tokenizer": fingerprint, "corpus", ...}
    tokenizer/               the sentencepiece model(s) (seqlab.text.tokenizer)
    model.safetensors        the best weights so far (by dev BLEU)
    checkpoint.safetensors   the last state (seqlab.training.checkpoint)
    train_log.jsonl          one JSON record per log interval / evaluation

config.json's "model" has `arch: "transformer"` for a Transformer (`TransformerConfig`); runs
without it are LSTM translators (`Seq2SeqConfig`).

Format "seqlab-translator/1" (before the config names followed torch's) had the same layout
with model fields emb_dim, enc_hidden, enc_layers, dec_hidden; `upgrade_run_config` renames
them, so such runs load, translate and resume unchanged (their config.json is not rewritten).
"""

from __future__ import annotations

from seqlab.text.run import RunFormat
from seqlab.translate.transformer import build_model, model_config_from_dict

FORMAT_V1 = "seqlab-translator/1"
MODEL_RENAMES_V1 = {"emb_dim": "embedding_dim", "enc_hidden": "encoder_hidden_size",
                    "enc_layers": "num_encoder_layers", "dec_hidden": "decoder_hidden_size"}


class TranslatorConfig:
    """config.json's "model" of either architecture (see `model_config_from_dict`)."""

    from_dict = staticmethod(model_config_from_dict)


RUN_FORMAT = RunFormat("seqlab-translator/2", "translator", build_model, TranslatorConfig,
                       ("src_vocab_size", "tgt_vocab_size"),
                       {FORMAT_V1: MODEL_RENAMES_V1})
FORMAT = RUN_FORMAT.tag
upgrade_run_config = RUN_FORMAT.upgrade
read_run_config = RUN_FORMAT.read
load_run = RUN_FORMAT.load
