"""The captioner's run directory: the config.json format, reading it (older layouts upgraded on
the way in) and loading the trained model.

Run directory (format tag "seqlab-captioner/2"):
    config.json              {"format", "model": CaptionerConfig, "train": TrainConfig,
                              "data": CaptionDataConfig, "tokenizer": fingerprint, "splits", ...}
    tokenizer/               the sentencepiece model (`TokenizerPair`, shared: one model)
    model.safetensors        the best weights so far (by dev BLEU, greedy)
    checkpoint.safetensors   last state: model + Adam tensors, RNG states, progress (metadata)
    train_log.jsonl          one JSON record per log interval / evaluation

Format "seqlab-captioner/1" (before the config names followed torch's) had the same layout with
model fields emb_dim and dec_hidden; `upgrade_run_config` renames them, so such runs load,
caption and resume unchanged (their config.json is not rewritten).
"""

from __future__ import annotations

from seqlab.caption.model import CaptionerConfig, CaptionModel
from seqlab.text.run import RunFormat

FORMAT_V1 = "seqlab-captioner/1"
MODEL_RENAMES_V1 = {"emb_dim": "embedding_dim", "dec_hidden": "hidden_size"}
RUN_FORMAT = RunFormat("seqlab-captioner/2", "captioner", CaptionModel, CaptionerConfig,
                       ("vocab_size", "vocab_size"),
                       {FORMAT_V1: MODEL_RENAMES_V1})
FORMAT = RUN_FORMAT.tag
upgrade_run_config = RUN_FORMAT.upgrade
read_run_config = RUN_FORMAT.read
load_run = RUN_FORMAT.load
