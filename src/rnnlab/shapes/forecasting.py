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

The model corrects a classical forecast rather than starting from nothing: each series may name a classical
model (`classical`, e.g. the SARIMAX or AutoReg its peer is), fitted once on the train part; from every origin
its path, re-conditioned on the history with those parameters fixed (rnnlab.shapes.classical), is fed to the
decoder (relative to the last value) and the network predicts the correction to it. A series without one gets
the last value repeated, the plain change-from-last forecast. With a few hundred windows, learning what a good
linear model misses is far easier than learning the series from scratch.

It forecasts quantiles (`quantiles`, pinball loss), not one value: the median is the point forecast (the
MAE-optimal one), the outer ones bound an interval. They are ordered by construction: the median plus or minus
sums of positive (softplus) steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rnnlab import RnnlabError
from rnnlab.core.checkpoint import RecordsClass
from rnnlab.core.ensemble import Ensemble, training_loss
from rnnlab.core.optim import configure_optimizers
from rnnlab.core.recurrent import make_rnn
from rnnlab.shapes import classical
from rnnlab.shapes.classification import check_sizes


class Member(nn.Module):
    """One network of the ensemble: series embedding, encoder, decoder and head (raw quantile corrections)."""

    def __init__(self, n_series: int, n_quantiles: int, cell: str, hidden_size: int, num_layers: int,
                 embedding_dim: int, dropout: float, nonlinearity: str, impl: str):
        super().__init__()
        self.embedding = nn.Embedding(n_series, embedding_dim)
        # an encoder step reads its value (relative to the window's last one) and its series' embedding;
        # a decoder step its position in the horizon, the classical path there (relative to the last value)
        # and the series' embedding
        self.encoder = make_rnn(cell, 1 + embedding_dim, hidden_size, num_layers, dropout, nonlinearity, impl=impl)
        self.decoder = make_rnn(cell, 2 + embedding_dim, hidden_size, num_layers, dropout, nonlinearity, impl=impl)
        self.head = nn.Linear(hidden_size, n_quantiles)

    def forward(self, relative: torch.Tensor, series: torch.Tensor, plan: torch.Tensor) -> torch.Tensor:
        """(B, window) inputs and (B, horizon, 2) decoder features (position, path), both relative to the last
        value -> (B, horizon, Q) raw corrections."""
        emb = self.embedding(series)  # (B, E)
        _, state = self.encoder(torch.cat([relative.unsqueeze(-1), emb[:, None].expand(-1, relative.size(1), -1)], -1))
        # the decoder runs all horizon steps in one call, started from the encoder's state
        out, _ = self.decoder(torch.cat([plan, emb[:, None].expand(-1, plan.size(1), -1)], -1), state)
        return self.head(out)


class Forecaster(RecordsClass, Ensemble):
    """`series` (names), `horizons` (steps to forecast per series), `window` (past steps read), `scale`
    ({name: [mean, std]} of the train part) and `classical` ({name: {"spec": ..., "params": [...]}}, the fitted
    classical model each series' forecast corrects) come from the data: a checkpoint alone turns original
    values into a forecast in original units (`forecast`, `quantile_forecast`). `members` > 1: a deep ensemble
    (rnnlab.core.ensemble), each member trained on its own loss with its own gradient clipping, their quantiles
    averaged, which evens out how differently each overfits a few hundred windows."""

    if TYPE_CHECKING:  # Lightning types hparams AttributeDict | MutableMapping; it is read by attribute here
        hparams: Any

    def __init__(self, series: list[str], horizons: list[int], window: int, scale: dict[str, list[float]],
                 classical: dict[str, dict] | None = None, quantiles: tuple[float, ...] = (0.1, 0.5, 0.9),
                 members: int = 1, task: str = "forecast", cell: str = "gru", hidden_size: int = 64,
                 num_layers: int = 1, embedding_dim: int = 4, dropout: float = 0.0, nonlinearity: str = "tanh",
                 impl: str = "torch", optimizer: dict | None = None, scheduler: dict | None = None):
        super().__init__()
        if not series or len(horizons) != len(series) or set(scale) != set(series):
            raise RnnlabError(f"module: series {series!r}, horizons {horizons!r} and scale {sorted(scale)!r} "
                              "must name the same series")
        if not set(classical or {}) <= set(series):
            raise RnnlabError(f"module: classical models for {sorted(classical or {})}, series {series!r}")
        check_sizes(window=window, members=members, **{f"horizons[{i}]": h for i, h in enumerate(horizons)})
        self.save_hyperparameters()  # quantiles: increasing, with 0.5 (rnnlab.core.validate checks the config)
        self.horizon = max(horizons)
        self.register_buffer("levels", torch.tensor(list(quantiles)), persistent=False)
        self.median = list(quantiles).index(0.5)
        self.members = nn.ModuleList(Member(len(series), len(quantiles), cell, hidden_size, num_layers, embedding_dim,
                                            dropout, nonlinearity, impl) for _ in range(members))

    def forward(self, inputs: torch.Tensor, series: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """(B, window) scaled values, (B,) series ids and (B, horizon) scaled classical forecasts -> (B, horizon,
        quantiles) scaled forecasts, increasing along the last axis: the members' mean."""
        return self.each_member(inputs, series, base).mean(0)

    def each_member(self, inputs: torch.Tensor, series: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """(members, B, horizon, quantiles): every member's forecast, the classical path plus its correction."""
        if inputs.dim() != 2 or inputs.size(1) < 1 or base.dim() != 2 or len(base) != len(inputs):
            raise RnnlabError(f"inputs: expected scaled values (B, window) and a classical path (B, horizon), got "
                              f"{tuple(inputs.shape)} and {tuple(base.shape)}")
        last = inputs[:, -1:]
        position = torch.arange(1, base.size(1) + 1, device=inputs.device, dtype=inputs.dtype) / self.horizon
        plan = torch.stack([position.expand_as(base), base - last], -1)
        return torch.stack([base.unsqueeze(-1) + self.ordered(m(inputs - last, series, plan)) for m in self.members])

    def ordered(self, raw: torch.Tensor) -> torch.Tensor:
        """(..., Q) head outputs -> increasing corrections: the median's as it is, each other quantile one
        positive step further out than its neighbour towards the median."""
        m = self.median
        below = -torch.flip(torch.cumsum(torch.flip(F.softplus(raw[..., :m]), [-1]), -1), [-1])
        above = torch.cumsum(F.softplus(raw[..., m + 1:]), -1)
        mid = raw[..., m:m + 1]
        return torch.cat([mid + below, mid, mid + above], -1)

    def _loss(self, batch):
        """Each member's pinball loss of its quantiles (each learns on its own, rnnlab.core.ensemble), and the MAE
        of the ensemble's median."""
        inputs, series, base, target, mask = batch
        pred = self.each_member(inputs, series, base)[:, mask]  # (members, valid steps, Q)
        err = target[mask].unsqueeze(-1) - pred
        pinball = torch.maximum(self.levels * err, (self.levels - 1) * err).mean((1, 2))
        return list(pinball), err.mean(0)[:, self.median].abs().mean()

    def training_step(self, batch, batch_idx):
        loss, shown = training_loss(self._loss(batch)[0])
        self.log("train_loss", shown, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch[0]))
        return loss

    def validation_step(self, batch, batch_idx):
        losses, mae = self._loss(batch)
        self.log("val_loss", training_loss(losses)[1], on_epoch=True, prog_bar=True, batch_size=len(batch[0]))
        self.log("val_mae", mae, on_epoch=True, batch_size=len(batch[0]))

    def forecast(self, name: str, history) -> list[float]:
        """The next `horizons[name]` values of series `name` after `history` (original units, at least `window`
        values; the encoder reads the last `window`, the classical model all of them): the median forecast."""
        return self.quantile_forecast(name, history)[self.median].tolist()

    @torch.inference_mode()
    def quantile_forecast(self, name: str, history) -> np.ndarray:
        """(quantiles, horizons[name]) forecasts in original units, one row per level of `quantiles`."""
        if name not in self.hparams.series:
            raise RnnlabError(f"unknown series {name!r}; this model forecasts {', '.join(self.hparams.series)}")
        values = np.asarray(history, dtype=float).ravel()
        window = self.hparams.window
        if len(values) < window:
            raise RnnlabError(f"{name}: {len(values)} values of history, the model reads {window}")
        if not np.isfinite(values).all():
            raise RnnlabError(f"{name}: the history holds a value that is not a finite number")
        mean, std = self.hparams.scale[name]
        i = self.hparams.series.index(name)
        model = (self.hparams.classical or {}).get(name) or {"spec": {}, "params": []}
        base = classical.path(model["spec"], model["params"], values, self.hparams.horizons[i])
        x, b = (torch.tensor((v - mean) / std, dtype=torch.float32, device=self.device)[None]
                for v in (values[-window:], base))
        pred = self(x, torch.tensor([i], device=self.device), b)[0].T  # (Q, horizon)
        return pred.float().cpu().numpy() * std + mean

    def configure_optimizers(self):
        return configure_optimizers(self, self.hparams.optimizer, self.hparams.scheduler)
