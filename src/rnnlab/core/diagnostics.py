"""Gradient diagnostics: the global gradient norm during training, and how far back a gradient reaches."""

from __future__ import annotations

import math

import lightning as L
import torch
from torch import nn

from rnnlab.core.cells import GATE_NAMES, ScratchRNN

TORCH_MODES = {"RNN_TANH": "rnn", "RNN_RELU": "rnn", "LSTM": "lstm", "GRU": "gru"}


def global_norm(module: nn.Module) -> float:
    norms = [p.grad.detach().norm(2) for p in module.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


class GradientNormMonitor(L.Callback):
    """Logs the global gradient norm before and after clipping every `every_n_steps`, and whether clipping fired.

    Lightning calls `on_before_optimizer_step` after backward and before it clips; the gradients are
    still in place (clipped) at `on_train_batch_end`.
    """

    def __init__(self, every_n_steps: int = 50):
        self.every_n_steps = every_n_steps
        self._before = None

    def _due(self, trainer) -> bool:
        return trainer.global_step % self.every_n_steps == 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self._before = global_norm(pl_module) if self._due(trainer) else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self._before is None:
            return
        after = global_norm(pl_module)
        clipped = float(not math.isclose(after, self._before, rel_tol=1e-4, abs_tol=1e-8))
        pl_module.log_dict({"grad_norm_before_clip": self._before, "grad_norm_after_clip": after,
                            "grad_clipped": clipped}, on_step=True, on_epoch=False)
        self._before = None


class StopOnNonFiniteLoss(L.Callback):
    """Stop a run whose training loss became NaN or infinite: the steps after it only waste time, and the
    checkpoints it would still write are worthless."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(loss).all():
            raise FloatingPointError(f"training loss is {float(loss)} at step {trainer.global_step}")


def as_scratch(rnn: nn.Module) -> ScratchRNN:
    """The same weights in the step-by-step layer, whose per-step states autograd can reach."""
    if isinstance(rnn, ScratchRNN):
        return rnn
    scratch = ScratchRNN(cell_of(rnn), rnn.input_size, rnn.hidden_size, rnn.num_layers,  # type: ignore[arg-type]  # nn.Module types it Tensor | Module
                         nonlinearity="relu" if rnn.mode == "RNN_RELU" else "tanh", bidirectional=rnn.bidirectional)  # type: ignore[arg-type]  # nn.Module types it Tensor | Module
    scratch.load_state_dict(rnn.state_dict())
    return scratch.to(next(rnn.parameters()).device)


def gradient_profile(rnn: nn.Module, inputs: torch.Tensor, readout: torch.Tensor) -> list[float]:
    """‖∂L/∂h_t‖ for every step t of `inputs` (batch, steps, features), mean over the batch, first layer.

    L = h_T · readout depends on the last state alone, so the norm at step t is how much of the loss
    signal survives the trip back from T to t.
    """
    scratch = as_scratch(rnn).eval()
    param = next(scratch.parameters())
    x, readout = inputs.to(param), readout.to(param)
    h = x.new_zeros(x.shape[0], scratch.hidden_size)
    state = (h, h) if scratch.mode == "lstm" else h
    hs = []
    for t in range(x.shape[1]):
        state = scratch.step(x[:, t], state, 0, "")
        hs.append(state[0] if scratch.mode == "lstm" else state)
    # total derivatives through every later step; autograd.grad leaves the parameters' .grad alone
    grads = torch.autograd.grad((hs[-1] @ readout).sum(), hs)
    return [float(g.norm(dim=-1).mean()) for g in grads]


def cell_of(rnn: nn.Module) -> str:
    """"rnn", "lstm" or "gru", for PyTorch's modules and the scratch layer alike."""
    return rnn.mode if isinstance(rnn, ScratchRNN) else TORCH_MODES[rnn.mode]  # type: ignore[index]  # nn.Module types it Tensor | Module


def spectral_radius(rnn: nn.Module) -> dict[str, float]:
    """Largest |eigenvalue| of each gate's block of the first layer's recurrent matrix W_hh."""
    names = GATE_NAMES[cell_of(rnn)]
    blocks = rnn.weight_hh_l0.detach().double().cpu().chunk(len(names), dim=0)  # type: ignore[operator]  # nn.Module types it Tensor | Module
    return {g: float(torch.linalg.eigvals(b).abs().max()) for g, b in zip(names, blocks)}
