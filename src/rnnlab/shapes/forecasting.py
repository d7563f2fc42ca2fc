"""Many-to-many time series: a sequence-to-sequence recurrent forecaster.

The encoder (RNN/LSTM/GRU) reads a window of past values; the decoder, a second recurrent layer of the same
kind started from the encoder's final state, emits the whole horizon at once: one step per future value, each
step fed its position in the horizon and the series' embedding, a linear layer reading each step's state.
It is therefore sequence-to-sequence, not recursive: no one-step model is re-applied to its own output, no
forecast is fed back, and the loss covers every step of the horizon. (The decoder runs as one fused call,
which on a CPU trains several times faster than a step-by-step loop feeding back each prediction.)

One model serves several series (here CO2 and sunspots): every step carries a learned embedding of its
series. Values are scaled with each series' train mean and standard deviation, the window is read relative
to its last value, and the model predicts each future value as a change from it: a trending series (CO2)
then looks alike at every level, so the test years, above all training levels, need no extrapolation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from rnnlab import RnnlabError
from rnnlab.core.checkpoint import RecordsClass
from rnnlab.core.optim import configure_optimizers
from rnnlab.core.recurrent import make_rnn
from rnnlab.shapes.classification import check_sizes


class Forecaster(RecordsClass, L.LightningModule):
    """`series` (names), `horizons` (steps to forecast per series), `window` (past steps read) and `scale`
    ({name: [mean, std]} of the train part) come from the data: a checkpoint alone turns original values
    into a forecast in original units (`forecast`)."""

    if TYPE_CHECKING:  # Lightning types hparams AttributeDict | MutableMapping; it is read by attribute here
        hparams: Any

    def __init__(self, series: list[str], horizons: list[int], window: int, scale: dict[str, list[float]],
                 task: str = "forecast", cell: str = "gru", hidden_size: int = 64, num_layers: int = 1,
                 embedding_dim: int = 4, dropout: float = 0.0, nonlinearity: str = "tanh", impl: str = "torch",
                 optimizer: dict | None = None, scheduler: dict | None = None):
        super().__init__()
        if not series or len(horizons) != len(series) or set(scale) != set(series):
            raise RnnlabError(f"module: series {series!r}, horizons {horizons!r} and scale {sorted(scale)!r} "
                              "must name the same series")
        check_sizes(window=window, **{f"horizons[{i}]": h for i, h in enumerate(horizons)})
        self.save_hyperparameters()
        self.horizon = max(horizons)
        self.embedding = nn.Embedding(len(series), embedding_dim)
        # an encoder step reads its value (relative to the window's last one) and its series' embedding;
        # a decoder step its position in the horizon and the series' embedding
        self.encoder = make_rnn(cell, 1 + embedding_dim, hidden_size, num_layers, dropout, nonlinearity, impl=impl)
        self.decoder = make_rnn(cell, 1 + embedding_dim, hidden_size, num_layers, dropout, nonlinearity, impl=impl)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, inputs: torch.Tensor, series: torch.Tensor, horizon: int | None = None) -> torch.Tensor:
        """(B, window) scaled values and (B,) series ids -> (B, horizon) scaled forecasts."""
        if inputs.dim() != 2 or inputs.size(1) < 1:
            raise RnnlabError(f"inputs: expected scaled values of shape (B, window), got {tuple(inputs.shape)}")
        horizon = horizon or self.horizon
        last = inputs[:, -1:]
        emb = self.embedding(series)  # (B, E)
        steps = torch.cat([(inputs - last).unsqueeze(-1), emb[:, None].expand(-1, inputs.size(1), -1)], -1)
        _, state = self.encoder(steps)
        # the decoder runs all horizon steps in one call, each step fed its series' embedding and its
        # position in the horizon (h / horizon), started from the encoder's state
        position = torch.arange(1, horizon + 1, device=inputs.device, dtype=inputs.dtype) / self.horizon
        plan = torch.cat([position[None, :, None].expand(len(inputs), -1, -1),
                          emb[:, None].expand(-1, horizon, -1)], -1)
        out, _ = self.decoder(plan, state)
        return last + self.head(out).squeeze(-1)  # each step: the change from the last observed value

    def _loss(self, batch):
        inputs, series, target, mask = batch
        pred = self(inputs, series)
        err = (pred - target)[mask]
        return F.mse_loss(pred[mask], target[mask]), err.abs().mean()

    def training_step(self, batch, batch_idx):
        loss, _ = self._loss(batch)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch[0]))
        return loss

    def validation_step(self, batch, batch_idx):
        loss, mae = self._loss(batch)
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, batch_size=len(batch[0]))
        self.log("val_mae", mae, on_epoch=True, batch_size=len(batch[0]))

    @torch.inference_mode()
    def forecast(self, name: str, history) -> list[float]:
        """The next `horizons[name]` values of series `name` after `history` (original units, at least `window`
        values; the last `window` are read)."""
        if name not in self.hparams.series:
            raise RnnlabError(f"unknown series {name!r}; this model forecasts {', '.join(self.hparams.series)}")
        values = torch.as_tensor(history, dtype=torch.float32).flatten()
        window = self.hparams.window
        if len(values) < window:
            raise RnnlabError(f"{name}: {len(values)} values of history, the model reads {window}")
        if not torch.isfinite(values).all():
            raise RnnlabError(f"{name}: the history holds a value that is not a finite number")
        mean, std = self.hparams.scale[name]
        i = self.hparams.series.index(name)
        x = ((values[-window:] - mean) / std)[None].to(self.device)
        pred = self(x, torch.tensor([i], device=self.device), self.hparams.horizons[i])
        return (pred[0].float().cpu() * std + mean).tolist()

    def configure_optimizers(self):
        return configure_optimizers(self, self.hparams.optimizer, self.hparams.scheduler)
