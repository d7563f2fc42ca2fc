import math

from rnnlab.gradients.lab import exploding


def test_without_clipping_the_relu_rnn_diverges_and_is_reported():
    run = exploding(clip=None, steps=60)
    assert run["diverged"] and "loss became" in run["reason"]
    assert run["steps_trained"] < 60
    norms = [r["grad_norm"] for r in run["curve"]]
    assert max(norms) > 100 * norms[0]  # the gradient norm blew up before the loss did


def test_with_clipping_the_same_run_trains():
    run = exploding(clip=1.0, steps=60)
    assert not run["diverged"] and run["steps_trained"] == 60
    assert all(math.isfinite(r["loss"]) for r in run["curve"])
    assert all(r["grad_norm_clipped"] <= 1.0 + 1e-4 for r in run["curve"])
    assert run["curve"][-1]["loss"] < run["curve"][0]["loss"]
