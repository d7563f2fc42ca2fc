import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from rnnlab.core.trainer import quiet_trainer
from rnnlab.gradients.synthetic import adding_problem
from rnnlab.shapes.many_to_one import SequenceRegressor


def fit(model, x, y, steps):
    trainer = quiet_trainer(max_steps=steps, gradient_clip_val=1.0)
    trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=64))
    return trainer


def test_lstm_learns_a_short_adding_problem():
    L.seed_everything(0, verbose=False)
    x, y = adding_problem(64 * 400, 10, seed=1)
    xt, yt = adding_problem(1000, 10, seed=2)
    model = SequenceRegressor(2, cell="lstm", hidden_size=32, lr=1e-2)
    fit(model, x, y, 400)
    with torch.no_grad():
        mse = float(((model(xt) - yt) ** 2).mean())
    assert mse < 0.01  # the trivial answer 1.0 scores 0.167


def test_lstm_forget_gate_bias_starts_at_one():
    model = SequenceRegressor(2, cell="lstm", hidden_size=8, forget_bias=1.0)
    assert torch.equal(model.rnn.bias_ih_l0[8:16], torch.ones(8))
    assert torch.equal(model.rnn.bias_hh_l0[8:16], torch.zeros(8))


def test_a_nan_loss_stops_the_run_with_the_reason():
    x, y = adding_problem(64 * 4, 10, seed=1)
    y[:] = float("nan")
    with pytest.raises(FloatingPointError, match="loss became nan at step 0"):
        fit(SequenceRegressor(2, cell="rnn", hidden_size=8), x, y, 4)
