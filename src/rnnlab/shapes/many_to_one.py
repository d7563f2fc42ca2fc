"""Many-to-one: a sequence in, one value out.

SequenceRegressor reads the last hidden state of fixed-length sequences with a linear layer;
SequenceClassifier reads variable-length ones (packed, so padding never enters the state) and pools
the hidden states into one vector for a class.
"""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlab import RnnlabError
from rnnlab.core.recurrent import make_rnn
from rnnlab.shapes.classification import SequenceClassifierBase, check_inputs, check_sizes, valid_steps

POOLINGS = ("last", "mean", "max", "attention")


class SequenceRegressor(L.LightningModule):
    def __init__(self, input_size: int, cell: str = "lstm", hidden_size: int = 128, num_layers: int = 1,
                 nonlinearity: str = "tanh", impl: str = "torch", lr: float = 1e-3, forget_bias: float = 1.0,
                 optimizer: str = "adam"):
        super().__init__()
        self.save_hyperparameters()
        self.rnn = make_rnn(cell, input_size, hidden_size, num_layers, nonlinearity=nonlinearity, impl=impl)
        if cell == "lstm":
            # a forget-gate bias of 1 keeps the cell's memory open at the start (Gers et al. 2000;
            # Jozefowicz et al. 2015): it shortens the LSTM's plateau on long-range tasks a lot
            with torch.no_grad():
                for name, p in self.rnn.named_parameters():
                    if name.startswith("bias_ih"):
                        p[hidden_size : 2 * hidden_size].fill_(forget_bias)
                    elif name.startswith("bias_hh"):
                        p[hidden_size : 2 * hidden_size].zero_()
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1]).squeeze(-1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.mse_loss(self(x), y)
        if not math.isfinite(loss.item()):
            # stop this run only, with the reason, instead of training on NaN weights
            raise FloatingPointError(f"loss became {loss.item()} at step {self.global_step}")
        self.log("train_mse", loss, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_mse", F.mse_loss(self(x), y), on_epoch=True)

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_mse", F.mse_loss(self(x), y), on_epoch=True)

    def configure_optimizers(self):
        if self.hparams.lr <= 0:
            raise RnnlabError(f"lr must be positive, got {self.hparams.lr}")
        # plain SGD lets an exploding gradient become an exploding step; Adam's scaling would hide it
        optimizers = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}
        if self.hparams.optimizer not in optimizers:
            raise RnnlabError(f"optimizer must be 'adam' or 'sgd', got {self.hparams.optimizer!r}")
        return optimizers[self.hparams.optimizer](self.parameters(), lr=self.hparams.lr)


class AdditiveAttention(nn.Module):
    """Bahdanau-style scores v . tanh(W h_t + b) against one learned query; softmax over valid steps only."""

    def __init__(self, size: int, attention_dim: int):
        super().__init__()
        self.proj = nn.Linear(size, attention_dim)
        self.score = nn.Linear(attention_dim, 1, bias=False)

    def forward(self, out: torch.Tensor, mask: torch.Tensor):
        scores = self.score(torch.tanh(self.proj(out))).squeeze(-1).masked_fill(~mask, -math.inf)
        weights = torch.softmax(scores, dim=1)
        return (weights.unsqueeze(-1) * out).sum(1), weights


class SequenceClassifier(SequenceClassifierBase):
    """Embedding (token ids) or linear projection (frames) -> RNN/LSTM/GRU over packed sequences -> pooling
    ("last", "mean", "max" or "attention") -> dropout -> linear layer over the classes."""

    def __init__(self, num_classes: int, vocab_size: int | None = None, input_size: int | None = None,
                 embedding_dim: int = 64, cell: str = "lstm", hidden_size: int = 128, num_layers: int = 1,
                 dropout: float = 0.1, nonlinearity: str = "tanh", bidirectional: bool = False,
                 pooling: str = "last", attention_dim: int = 64, impl: str = "torch",
                 class_weights: list[float] | None = None, optimizer: dict | None = None, scheduler: dict | None = None,
                 task: str | None = None, labels: list[str] | None = None, vocab: list[str] | None = None,
                 standardise: dict[str, list[float]] | None = None):
        super().__init__(num_classes, vocab_size, input_size, class_weights, task, labels, vocab, standardise)
        check_sizes(attention_dim=attention_dim)
        if pooling not in POOLINGS:
            raise RnnlabError(f"model.pooling: unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
        self.save_hyperparameters()
        self.input_size, self.pooling = input_size, pooling
        if vocab_size is not None:
            self.encoder: nn.Module = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        else:
            self.encoder = nn.Linear(input_size, embedding_dim)  # type: ignore[arg-type]  # set without vocab_size
        self.rnn = make_rnn(cell, embedding_dim, hidden_size, num_layers, dropout, nonlinearity, bidirectional, impl)
        self.directions = 2 if bidirectional else 1
        features = hidden_size * self.directions
        self.attention = AdditiveAttention(features, attention_dim) if pooling == "attention" else None
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(features, num_classes)

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        check_inputs(inputs, self.input_size)
        x = self.drop(self.encoder(inputs))
        # packing runs each sequence for its own length only, so padding never reaches the state
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        h_n = state[0] if isinstance(state, tuple) else state
        return self.head(self.drop(self.pool(out, h_n, valid_steps(lengths, x.size(1), x.device))))

    def pool(self, out: torch.Tensor, h_n: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, features) hidden states of the last layer -> (B, features), padded steps left out."""
        if self.pooling == "last":
            # the last layer's final states: forward ends on each sequence's last step, backward on its first
            return torch.cat(list(h_n[-self.directions:]), dim=-1)
        if self.pooling == "mean":
            return out.masked_fill(~mask.unsqueeze(-1), 0).sum(1) / mask.sum(1, keepdim=True)
        if self.pooling == "max":
            return out.masked_fill(~mask.unsqueeze(-1), -math.inf).amax(1)
        return self.attention(out, mask)[0]  # type: ignore[misc]  # pooling is attention: set in __init__
