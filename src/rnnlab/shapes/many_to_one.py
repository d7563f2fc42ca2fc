"""Many-to-one: a sequence in, one value out (the last hidden state read by a linear layer)."""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from rnnlab import RnnlabError
from rnnlab.recurrent import make_rnn


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
