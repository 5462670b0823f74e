"""Building blocks: the LSTM from its gates and the attention family."""

from seqlab.nn.attention import (
    ATTENTION_KINDS,
    AdditiveAttention,
    Attention,
    AttentionCache,
    DotAttention,
    GeneralAttention,
    MultiHeadAttention,
    ScaledDotAttention,
    UniformAttention,
    build_attention,
    masked_softmax,
)
from seqlab.nn.lstm import LSTM, GateStore, LSTMCell, LSTMGates, record_gates

__all__ = [
    "LSTM",
    "LSTMCell",
    "LSTMGates",
    "GateStore",
    "record_gates",
    "ATTENTION_KINDS",
    "Attention",
    "AttentionCache",
    "UniformAttention",
    "AdditiveAttention",
    "DotAttention",
    "GeneralAttention",
    "ScaledDotAttention",
    "MultiHeadAttention",
    "build_attention",
    "masked_softmax",
]
