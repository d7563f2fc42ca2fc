"""From-scratch recurrent cells: one neuron (one set of weights and biases) applied at every time step.

Readable, not fast: `torch.nn.RNN/LSTM/GRU` run the same arithmetic in fused kernels. The parameters
have the names, shapes and gate order of those modules (`weight_ih_l0`, `bias_hh_l1_reverse`, ...),
so a state dict loads into either.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnlab import RnnlabError

# gate blocks of W_ih / W_hh, in PyTorch's order
GATE_NAMES = {"rnn": ("h",), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}
GATES = {mode: len(names) for mode, names in GATE_NAMES.items()}


def rnn_cell(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity="tanh"):
    """Elman: h' = f(W_ih x + b_ih + W_hh h + b_hh)."""
    pre = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    return torch.tanh(pre) if nonlinearity == "tanh" else torch.relu(pre)


def lstm_cell(x, state, w_ih, w_hh, b_ih, b_hh):
    """Input, forget, cell and output gates, in PyTorch's order (i, f, g, o)."""
    h, c = state
    i, f, g, o = (x @ w_ih.T + b_ih + h @ w_hh.T + b_hh).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def gru_cell(x, h, w_ih, w_hh, b_ih, b_hh):
    """Reset and update gates (r, z) and the candidate n; the reset gate scales W_hh h + b_hh as PyTorch does."""
    x_r, x_z, x_n = (x @ w_ih.T + b_ih).chunk(3, dim=-1)
    h_r, h_z, h_n = (h @ w_hh.T + b_hh).chunk(3, dim=-1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return (1 - z) * n + z * h


def keep_past_end(valid, new, old):
    """The new state where the step lies inside its sequence, the old one past its end."""
    if isinstance(new, tuple):
        return tuple(torch.where(valid, n, o) for n, o in zip(new, old))
    return torch.where(valid, new, old)


class ScratchRNN(nn.Module):
    """Drop-in for nn.RNN / nn.LSTM / nn.GRU (batch_first): layers, bidirectional, initial state, dropout,
    padded tensors or PackedSequence."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", dropout: float = 0.0, bidirectional: bool = False,
                 batch_first: bool = True):
        super().__init__()
        if mode not in GATES:
            raise RnnlabError(f"model.cell: unknown cell {mode!r}; choose one of {', '.join(GATES)}")
        if not batch_first:
            raise RnnlabError("ScratchRNN takes batch-first input only")
        self.mode, self.nonlinearity = mode, nonlinearity
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.dropout, self.bidirectional = dropout, bidirectional
        self.directions = 2 if bidirectional else 1
        gates = GATES[mode] * hidden_size
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * self.directions
            for suffix in ("", "_reverse")[: self.directions]:
                self.register_parameter(f"weight_ih_l{layer}{suffix}", nn.Parameter(torch.empty(gates, layer_input)))
                self.register_parameter(f"weight_hh_l{layer}{suffix}", nn.Parameter(torch.empty(gates, hidden_size)))
                self.register_parameter(f"bias_ih_l{layer}{suffix}", nn.Parameter(torch.empty(gates)))
                self.register_parameter(f"bias_hh_l{layer}{suffix}", nn.Parameter(torch.empty(gates)))
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1 / math.sqrt(self.hidden_size)  # PyTorch's initialisation
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def step(self, x, state, layer: int, suffix: str):
        """One time step: the same four tensors, whatever the step."""
        w = [getattr(self, f"{name}_l{layer}{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        if self.mode == "lstm":
            return lstm_cell(x, state, *w)
        if self.mode == "gru":
            return gru_cell(x, state, *w)
        return rnn_cell(x, state, *w, nonlinearity=self.nonlinearity)  # type: ignore[misc]  # w is the four weights

    def forward(self, x, state=None):
        packed, lengths = x, None
        if isinstance(x, PackedSequence):
            # step through the padded batch but freeze each sequence's state past its end: the forward
            # direction then ends on its own last step and the reverse one starts there, as torch's packed
            # kernels do; states and lengths come back in the caller's batch order
            x, lengths = pad_packed_sequence(x, batch_first=True)
            lengths = lengths.to(x.device)
        batch, steps, _ = x.shape
        shape = (self.num_layers * self.directions, batch, self.hidden_size)
        if state is None:
            zeros = x.new_zeros(shape)
            state = (zeros, zeros) if self.mode == "lstm" else zeros
        h0, c0 = state if self.mode == "lstm" else (state, None)
        finals_h, finals_c = [], []
        for layer in range(self.num_layers):
            outputs = []
            for d, suffix in enumerate(("", "_reverse")[: self.directions]):
                k = layer * self.directions + d
                s = (h0[k], c0[k]) if self.mode == "lstm" else h0[k]
                order = range(steps - 1, -1, -1) if suffix else range(steps)
                out = [None] * steps
                for t in order:
                    new = self.step(x[:, t], s, layer, suffix)
                    s = new if lengths is None else keep_past_end((t < lengths)[:, None], new, s)
                    out[t] = s[0] if self.mode == "lstm" else s
                outputs.append(torch.stack(out, dim=1))
                finals_h.append(s[0] if self.mode == "lstm" else s)
                if self.mode == "lstm":
                    finals_c.append(s[1])
            x = torch.cat(outputs, dim=-1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = nn.functional.dropout(x, self.dropout, training=True)
        h_n = torch.stack(finals_h)
        final = (h_n, torch.stack(finals_c)) if self.mode == "lstm" else h_n
        if lengths is None:
            return x, final
        return repack(x, lengths, like=packed), final


def repack(padded: torch.Tensor, lengths: torch.Tensor, like: PackedSequence) -> PackedSequence:
    """Pack `padded` in exactly `like`'s order, so its rows line up with `like.batch_sizes`."""
    order = like.sorted_indices
    if order is None:  # packed with enforce_sorted=True: the batch is already longest first
        order = torch.arange(len(lengths), device=padded.device)
    data = pack_padded_sequence(padded[order], lengths[order].cpu(), batch_first=True).data
    return like._replace(data=data)
