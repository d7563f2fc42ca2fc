import numpy as np
import pytest
import torch
from torch.profiler import profile

import rnnlab.core.resolvers as resolvers
from rnnlab.core.resume import AtomicCheckpointIO
from rnnlab.core.trainer import CachedMixedPrecision, make_trainer, quiet_trainer
from rnnlab.data.streams import StreamWindows
from rnnlab.shapes.many_to_many import CharLanguageModel

from conftest import compose

STEPS = 24  # time steps per window: one uncached autocast casts the weights once per step


def one_step_grads(context) -> tuple[dict, int]:
    """The gradients of one training step of a vanilla char RNN run under `context`, and how many dtype casts
    (aten::_to_copy) it made."""
    torch.manual_seed(0)
    model = CharLanguageModel(list("abcdefgh"), cell="rnn", embedding_dim=8, hidden_size=16, num_layers=1,
                              dropout=0.0)
    ids = np.random.default_rng(0).integers(1, 9, 400).astype(np.int16)
    x, y = next(iter(StreamWindows(ids, 4, STEPS)))
    with profile() as prof:
        with context:
            loss = model._step((x, y), "train")
        loss.backward()
    casts = sum(e.count for e in prof.key_averages() if e.key == "aten::_to_copy")
    return {n: p.grad.clone() for n, p in model.named_parameters()}, casts


def test_cached_autocast_gives_the_same_gradients_up_to_bf16_rounding_with_far_fewer_weight_casts():
    cached, cached_casts = one_step_grads(CachedMixedPrecision("bf16-mixed", "cpu").forward_context())
    uncached, uncached_casts = one_step_grads(torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False))
    assert cached.keys() == uncached.keys()
    for name in cached:  # cached: a weight's gradient sums over the steps in bf16, uncached in float32
        assert (cached[name] - uncached[name]).norm() <= 0.02 * uncached[name].norm(), name
    # without the cache both recurrent weights are cast again at every time step
    assert uncached_casts - cached_casts >= STEPS


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_goes_through_the_cached_plugin_beside_the_configured_ones(precision):
    cfg = compose("task=charlm", f"trainer.precision={precision}")
    trainer = make_trainer(cfg.trainer, logger=False, callbacks=[])
    plugin = trainer.precision_plugin
    assert isinstance(plugin, CachedMixedPrecision)
    assert plugin.precision == "bf16-mixed" and plugin.device == "cpu"  # no float16 autocast on a CPU
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_full_precision_keeps_lightnings_own_plugin():
    assert not isinstance(quiet_trainer(precision="32-true").precision_plugin, CachedMixedPrecision)
    assert isinstance(quiet_trainer(precision="bf16-mixed").precision_plugin, CachedMixedPrecision)


@pytest.mark.parametrize("native, expected", [(True, "bf16-mixed"), (False, "32-true")])
def test_the_char_lm_trains_in_bf16_only_where_the_processor_has_it(monkeypatch, native, expected):
    monkeypatch.setattr(resolvers, "native_bf16", lambda: native)
    assert compose("experiment=charlm").trainer.precision == expected
    assert compose("experiment=charlm", "trainer.precision=bf16-mixed").trainer.precision == "bf16-mixed"


def test_native_bf16_reads_the_cpu_flags(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for flags, expected in (("fpu sse avx512bw avx512_bf16", True), ("fpu sse avx2", False)):
        cpuinfo = tmp_path / "cpuinfo"
        cpuinfo.write_text(f"flags\t\t: {flags}\n")
        monkeypatch.setattr(resolvers, "Path", lambda _, path=cpuinfo: path)
        assert resolvers.native_bf16() is expected


def test_a_resumed_attempt_whose_previous_run_the_store_lacks_still_starts(tmp_path, caplog):
    """checkpoints/ outlives a wiped MLflow store (or one the attempt never logged to): the next attempt resumes,
    names the missing run and links to it, instead of a traceback (found by a full `dvc repro` on a fresh store)."""
    import mlflow

    from rnnlab.core.resume import Attempts

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("resume")
    attempts = Attempts(tmp_path / "ckpt" / "model")
    attempts.state = {"runs": ["0" * 32]}  # a run of another store
    new = client.create_run(experiment).info.run_id
    attempts.start(new, client)
    assert attempts.runs == ["0" * 32, new]
    assert client.get_run(new).data.tags["rnnlab.resumed_from"] == "0" * 32
    assert "is not in this tracking store" in caplog.text
    # a run the store does hold is still marked KILLED and linked both ways
    killed = client.create_run(experiment).info.run_id
    attempts.state = {"runs": [killed]}
    third = client.create_run(experiment).info.run_id
    attempts.start(third, client)
    assert client.get_run(killed).info.status == "KILLED"
    assert client.get_run(killed).data.tags["rnnlab.resumed_by"] == third
