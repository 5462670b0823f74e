"""What the text generators (`seqlab.translate`, `seqlab.caption`) share.

    tokenizer.py  sentencepiece subword tokenizer (`SubwordTokenizer`, `TokenizerPair`), saved
                  with the run and checked against its fingerprint
    batching.py   length-bucketed, seeded batches (`make_batches`) and padding (`collate`,
                  `collate_src`)
    metrics.py    sacreBLEU BLEU and chrF with their signatures (`score_corpus`)
    config.py     field checks of the model config dataclasses (one-line `UserError` naming the
                  field)
    run.py        `RunFormat`: a run's config.json tag and model config class, reading it with
                  older layouts upgraded (old field names renamed)

The applications import from here and from `seqlab.nn` / `seqlab.decoding` /
`seqlab.training`, never from each other.
"""
