"""Building blocks: the LSTM from its gates and the attention family."""

from seqlab.nn.lstm import LSTM, GateStore, LSTMCell, LSTMGates, record_gates

__all__ = ["LSTM", "LSTMCell", "LSTMGates", "GateStore", "record_gates"]
