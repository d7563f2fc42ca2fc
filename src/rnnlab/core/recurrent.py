"""The recurrent backbone every task shares: nn.RNN (tanh/relu), nn.LSTM or nn.GRU, chosen by config; and the
optimizer the AdamW-trained models share."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rnnlab import RnnlabError
from rnnlab.core.cells import ScratchRNN

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def make_rnn(cell: str, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
             nonlinearity: str = "tanh", bidirectional: bool = False, impl: str = "torch") -> nn.Module:
    """`impl=torch`: PyTorch's fused modules; `impl=scratch`: rnnlab.core.cells, the same maths step by step."""
    if cell not in CELLS:
        raise RnnlabError(f"model.cell: unknown cell {cell!r}; choose one of {', '.join(CELLS)}")
    for key, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
        if not isinstance(value, int) or value < 1:
            raise RnnlabError(f"model.{key} must be a positive integer, got {value!r}")
    if not 0.0 <= dropout < 1.0:
        raise RnnlabError(f"model.dropout must be in [0, 1), got {dropout!r}")
    if impl not in ("torch", "scratch"):
        raise RnnlabError(f"model.impl must be 'torch' or 'scratch', got {impl!r}")
    if cell == "rnn" and nonlinearity not in ("tanh", "relu"):
        raise RnnlabError(f"model.nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
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


def adamw_cosine(module, lr: float, weight_decay: float, scheduler: str, eta_min: float = 0.0):
    """configure_optimizers' answer for the AdamW-trained models: AdamW, and with scheduler="cosine" a cosine
    decay to `eta_min` stepped every batch over the whole run."""
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    if scheduler != "cosine":
        return optimizer
    total = max(1, int(module.trainer.estimated_stepping_batches))
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=eta_min)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": cosine, "interval": "step"}}
