"""The recurrent backbone every task shares: nn.RNN (tanh/relu), nn.LSTM or nn.GRU, chosen by config."""

from __future__ import annotations

from typing import Any

from torch import nn

from rnnlab.core.cells import ScratchRNN

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def make_rnn(cell: str, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
             nonlinearity: str = "tanh", bidirectional: bool = False, impl: str = "torch") -> nn.Module:
    """`impl=torch`: PyTorch's fused modules; `impl=scratch`: rnnlab.core.cells, the same maths step by step.
    The config's values are checked before (rnnlab.core.validate)."""
    if impl == "scratch":
        return ScratchRNN(cell, input_size, hidden_size, num_layers, nonlinearity,
                          dropout if num_layers > 1 else 0.0, bidirectional)
    kwargs: dict[str, Any] = dict(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers, batch_first=True,
                  dropout=dropout if num_layers > 1 else 0.0, bidirectional=bidirectional)
    if cell == "rnn":
        kwargs["nonlinearity"] = nonlinearity
    return CELLS[cell](**kwargs)


def detach_state(state):
    """Cut the graph at a batch boundary (truncated BPTT) but keep the values as context."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()

