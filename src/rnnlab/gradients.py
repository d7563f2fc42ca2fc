"""Gradient experiments: what an exploding gradient does to training, with and without clipping."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from rnnlab.data.synthetic import adding_problem
from rnnlab.diagnostics import GradientNormMonitor, spectral_radius
from rnnlab.shapes.many_to_one import SequenceRegressor


class CurveRecorder(L.Callback):
    """Per-step training loss and gradient norms, kept in memory for plots and metrics."""

    def __init__(self):
        self.rows = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        metrics = trainer.callback_metrics
        self.rows.append({"step": trainer.global_step, "loss": float(outputs["loss"]),
                          "grad_norm": float(metrics["grad_norm_before_clip"]),
                          "grad_norm_clipped": float(metrics["grad_norm_after_clip"])})


def scale_recurrent_weights(model: SequenceRegressor, radius: float) -> None:
    with torch.no_grad():
        model.rnn.weight_hh_l0.mul_(radius / spectral_radius(model.rnn)["h"])


def exploding(clip: float | None, steps: int = 300, seq_len: int = 50, hidden_size: int = 64,
              radius: float = 1.5, lr: float = 1e-2, seed: int = 0) -> dict:
    """A relu RNN whose recurrent matrix has spectral radius `radius` > 1, trained by SGD on the adding problem.

    Without clipping the gradient norm grows until the loss is inf/NaN: the run is stopped and reported
    as diverged (it does not raise). With clipping the same run trains.
    """
    L.seed_everything(seed, verbose=False)
    model = SequenceRegressor(2, cell="rnn", nonlinearity="relu", hidden_size=hidden_size, lr=lr, optimizer="sgd")
    scale_recurrent_weights(model, radius)
    x, y = adding_problem(steps * 64, seq_len, seed=seed + 1)
    recorder = CurveRecorder()
    trainer = L.Trainer(max_steps=steps, gradient_clip_val=clip, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[GradientNormMonitor(every_n_steps=1), recorder])
    diverged = None
    try:
        trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=64))
    except FloatingPointError as e:
        diverged = str(e)
    return {"clip": clip, "diverged": diverged is not None, "reason": diverged, "steps_trained": len(recorder.rows),
            "curve": recorder.rows}
