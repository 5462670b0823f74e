"""English in, French out: an attention-based LSTM translator (issue 3).

Data layer: `data` (parallel text reading, length filter, grouped split), `corpora` (named
datasets), `libreoffice` (the built-in offline corpus), `tokenizer` (sentencepiece),
`batching` (length-bucketed batches and padding), `metrics` (sacreBLEU BLEU/chrF).
Model layer: `model`, `train`, `search`, `api`.
"""
