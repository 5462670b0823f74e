"""Building blocks: the LSTM from its gates and the attention family."""
