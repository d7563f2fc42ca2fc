import math

import pytest
import torch
from torch import nn

from rnnlab.core.diagnostics import GradientNormMonitor, gradient_profile, spectral_radius
from rnnlab.core.trainer import quiet_trainer
from rnnlab.data.streams import StreamWindows
from rnnlab.shapes.many_to_many import CharLanguageModel


def fit_with_monitor(clip: float):
    import numpy as np

    torch.manual_seed(0)
    model = CharLanguageModel(list("abcdefgh"), embedding_dim=8, hidden_size=16, num_layers=1)
    ids = np.random.default_rng(0).integers(1, 9, 4000).astype(np.int16)
    loader = torch.utils.data.DataLoader(StreamWindows(ids, 4, 16), batch_size=None)
    trainer = quiet_trainer(max_steps=3, gradient_clip_val=clip, limit_val_batches=0,
                            callbacks=[GradientNormMonitor(every_n_steps=1)])
    trainer.fit(model, train_dataloaders=loader)
    return {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("grad_")}


def test_monitor_sees_clipping_fire():
    logged = fit_with_monitor(clip=1e-3)
    assert logged["grad_clipped"] == 1.0
    assert logged["grad_norm_before_clip"] > 1e-2
    assert logged["grad_norm_after_clip"] == pytest.approx(1e-3, rel=1e-3)


def test_monitor_reports_no_clipping_under_a_loose_limit():
    logged = fit_with_monitor(clip=1e6)
    assert logged["grad_clipped"] == 0.0
    assert logged["grad_norm_after_clip"] == pytest.approx(logged["grad_norm_before_clip"])


def test_gradient_vanishes_backwards_through_a_small_tanh_rnn():
    torch.manual_seed(0)
    rnn = nn.RNN(4, 16, batch_first=True)
    with torch.no_grad():
        rnn.weight_hh_l0.mul_(0.3)  # spectral radius well below 1: contraction at every step
    norms = gradient_profile(rnn, torch.randn(16, 40, 4), readout=torch.randn(16))
    assert len(norms) == 40 and all(math.isfinite(n) for n in norms)
    assert norms[-1] > 0 and norms[0] < 1e-6 * norms[-1]
    assert all(a <= b * 1.0001 for a, b in zip(norms[:-1], norms[1:]))  # monotone decay going back in time
    assert rnn.weight_hh_l0.grad is None  # the probe leaves the model untouched


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
def test_profile_of_gated_cells_is_finite(cls):
    torch.manual_seed(0)
    norms = gradient_profile(cls(4, 16, batch_first=True), torch.randn(8, 25, 4), readout=torch.randn(16))
    assert len(norms) == 25 and all(math.isfinite(n) and n >= 0 for n in norms)


def test_spectral_radius_per_gate():
    rnn = nn.RNN(3, 5)
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(0.5 * torch.eye(5))
    assert spectral_radius(rnn) == {"h": pytest.approx(0.5)}
    assert set(spectral_radius(nn.LSTM(3, 5))) == {"i", "f", "g", "o"}
    assert set(spectral_radius(nn.GRU(3, 5))) == {"r", "z", "n"}
