"""Image in, text out (issue 5): a CNN region encoder + the shared attention LSTM decoder.

    data.py     folder of images + captions.tsv reader, image conversion, random/grouped splits
    emoji.py    the emoji set (npm emoji-datasource-google@16.0.0) -> folder + captions.tsv
    encoder.py  small CNN -> G x G grid of region features (the decoder's memory)
    model.py    CaptionModel: encoder + seqlab.nn.decoder.AttentionDecoder + seqlab.decoding
    train.py    training in the translator's run-directory format, exact resume
    api.py      Captioner.load(run).caption([...], num_beams=5, return_attention=True)
    plots.py    per-word attention overlays and caption strips
"""
