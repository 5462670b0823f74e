"""Image in, text out (issue 5): a CNN region encoder + the shared attention LSTM decoder.

    data.py     folder of images + captions.tsv reader, image conversion, random/grouped splits,
                CaptionDataConfig
    emoji.py    the emoji set (npm emoji-datasource-google@16.0.0) -> folder + captions.tsv
    encoder.py  small CNN -> G x G grid of region features (the decoder's memory)
    model.py    CaptionerConfig, CaptionModel: encoder + seqlab.nn.decoder.AttentionDecoder +
                seqlab.decoding
    run.py      the run directory: config.json format (old layouts upgraded), load_run
    train.py    training (seqlab.training loop, seqlab.text tokenizer/batching), exact resume
    api.py      Captioner.load(run).caption([...], num_beams=5, return_attention=True)
    plots.py    per-word attention overlays and caption strips
"""
