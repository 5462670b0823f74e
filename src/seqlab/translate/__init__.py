"""English in, French out: an attention-based LSTM translator (issue 3).

Data layer: `data` (parallel text reading, length filter, grouped split), `corpora` (named
datasets), `libreoffice` (the built-in offline corpus); the tokenizer, batching and BLEU/chrF
are shared with the captioner in `seqlab.text`.
Model layer: `model` (Seq2SeqConfig, Seq2Seq), `run` (the run directory: config.json format,
loading), `api` (Translator), `train`, `demo` (the README demo). Imports run one way:
model -> run -> api -> train -> demo.
"""
