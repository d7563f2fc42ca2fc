"""Bad config values are rejected before any work starts, with the key and the value named."""

import subprocess
import sys

import pytest

from rnnlab import RnnlabError
from rnnlab.core.validate import check_config

from conftest import ROOT, compose


@pytest.mark.parametrize("task", sorted(p.stem for p in (ROOT / "conf" / "task").glob("*.yaml")))
def test_the_shipped_configs_pass(task):
    check_config(compose(f"task={task}"))


@pytest.mark.parametrize("override,message", [
    ("model.hidden_size=-1", "model.hidden_size=-1 must be an integer >= 1"),
    ("model.hidden_size=12.5", "model.hidden_size=12.5 must be an integer >= 1"),
    ("model.num_layers=0", "model.num_layers=0 must be an integer >= 1"),
    ("model.dropout=1.0", "model.dropout=1.0 must be a number in [0, 1)"),
    ("model.dropout=-0.1", "model.dropout=-0.1 must be a number in [0, 1)"),
    ("model.cell=transformer", "model.cell='transformer' must be one of rnn, lstm, gru"),
    ("model.impl=cuda", "model.impl='cuda' must be torch or scratch"),
    ("data.batch_size=0", "data.batch_size=0 must be an integer >= 1"),
    ("data.seq_len=0", "data.seq_len=0 must be an integer >= 1"),
    ("model.embedding_dim=0", "model.embedding_dim=0 must be an integer >= 1"),
    ("model.cell=rnn model.nonlinearity=sigmoid", "model.nonlinearity='sigmoid' must be tanh or relu"),
    ("optimizer.lr=0", "optimizer.lr=0 must be a number > 0"),
    ("optimizer.lr=abc", "optimizer.lr='abc' must be a number > 0"),
    ("optimizer.weight_decay=-0.1", "optimizer.weight_decay=-0.1 must be a number >= 0"),
    ("optimizer._target_=torch.optim.Adamm", "optimizer._target_='torch.optim.Adamm' must be an importable optimizer"),
    ("optimizer._partial_=false", "optimizer._partial_=False must be true"),
    ("scheduler._target_=torch.optim.lr_scheduler.Nope", "scheduler._target_='torch.optim.lr_scheduler.Nope' must be"),
    ("lr_floor=2", "lr_floor=2 must be a number in [0, 1]"),
    ("task=surname baseline.optimizer.lr=-1", "baseline.optimizer.lr=-1 must be a number > 0"),
    ("task=surname baseline.dropout=1.0", "baseline.dropout=1.0 must be a number in [0, 1)"),
    ("task=speaker baseline.hidden_size=0", "baseline.hidden_size=0 must be an integer >= 1"),
    ("task=speech module.stack=0", "module.stack=0 must be an integer >= 1"),
    ("task=speech module.beam_width=0", "module.beam_width=0 must be an integer >= 1"),
    ("task=translate module.beam_width=1.5", "module.beam_width=1.5 must be an integer >= 1"),
    ("task=speech baseline.context=-1", "baseline.context=-1 must be an integer >= 0"),
    ("task=speech evaluate.figures=-1", "evaluate.figures=-1 must be an integer >= 0"),
    ("trainer.max_epochs=0", "trainer.max_epochs=0 must be an integer >= 1 (or -1: no limit)"),
    ("registry.margin=-1", "registry.margin=-1 must be a number >= 0"),
    ("seed=true", "seed=True must be an integer"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(RnnlabError, match="bad config: .*" + message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[")):
        check_config(compose(*override.split()))


@pytest.mark.parametrize("overrides, optimizer, scheduler", [
    (["task=charlm", "optimizer=sgd", "optimizer.lr=0.1", "scheduler=none"], "SGD", None),
    (["task=surname", "scheduler=cosine"], "AdamW", "CosineAnnealingLR"),
    (["task=translate"], "AdamW", None),
    (["task=translate", "experiment=translate"], "AdamW", "CosineAnnealingLR"),
    # the captioning budget's warmup (conf/experiment/caption.yaml), and the command line over it
    (["task=caption", "experiment=caption"], "AdamW", "OneCycleLR"),
    (["task=caption", "experiment=caption", "scheduler=cosine"], "AdamW", "CosineAnnealingLR"),
])
def test_optimizer_and_schedule_switch_from_the_command_line(overrides, optimizer, scheduler):
    cfg = compose(*overrides)
    check_config(cfg)
    assert cfg.optimizer._target_.endswith("." + optimizer)
    assert (cfg.scheduler._target_.rsplit(".", 1)[1] if cfg.scheduler else None) == scheduler


def test_the_cosine_floor_follows_the_learning_rate():
    cfg = compose("task=charlm", "optimizer.lr=0.02")
    assert cfg.scheduler.eta_min == 0.02 * cfg.lr_floor and cfg.lr_floor == 0.1


def test_the_warmup_rises_to_the_learning_rate_then_decays_to_about_zero():
    """conf/scheduler/warmup_cosine.yaml: OneCycleLR's peak is optimizer.lr, its length the run's steps (filled by
    rnnlab.core.optim like CosineAnnealingLR's T_max), and AdamW's betas are not cycled."""
    import torch
    from hydra.utils import instantiate

    cfg = compose("task=caption", "optimizer.lr=0.004", "scheduler=warmup_cosine")
    opt = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(1))])
    schedule = instantiate(cfg.scheduler, total_steps=100)(opt)
    rates = []
    for _ in range(100):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    assert rates[0] == pytest.approx(0.004 / 25) and max(rates) == pytest.approx(0.004)
    assert rates.index(max(rates)) in (9, 10) and rates[-1] < 0.004 / 1000
    assert opt.param_groups[0]["betas"] == (0.9, 0.999)


def test_every_problem_is_listed_at_once():
    with pytest.raises(RnnlabError, match="hidden_size=0 .*; data.batch_size=-2"):
        check_config(compose("model.hidden_size=0", "data.batch_size=-2"))


def test_the_cli_stops_before_any_work(tmp_path):
    """Exit code 2, one error line, no MLflow store created and no model folder written."""
    result = subprocess.run([sys.executable, "-m", "rnnlab.cli", "train", "task=sentiment", "model.dropout=1.5",
                             f"hydra.run.dir={tmp_path}/run", f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "rnnlab: error: bad config: model.dropout=1.5 must be a number in [0, 1)" in result.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "run" / "model").exists()
