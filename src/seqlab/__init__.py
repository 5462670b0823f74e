"""seqlab: LSTMs built from their gates, LSTM autoencoders, attention encoder-decoders."""

__version__ = "0.1.0"
