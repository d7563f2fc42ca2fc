import json
import os
import subprocess
import sys

import mlflow
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from rnnlab.core.trainer import make_trainer
from rnnlab.pipeline.train import build, train

from conftest import ROOT, compose


def smoke_config(processed, workdir):
    return compose("experiment=smoke_charlm", f"paths.data_dir={processed.parents[1]}", f"paths.output_dir={workdir}/out",
                   f"logger.tracking_uri=sqlite:///{workdir}/mlflow.db")


def only_charlm_run(workdir):
    client = mlflow.MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("rnnlab-charlm").experiment_id])
    return run


@pytest.mark.parametrize("model, impl", [("rnn", "torch"), ("lstm", "torch"), ("gru", "torch"),
                                         ("rnn", "scratch"), ("lstm", "scratch"), ("gru", "scratch")])
def test_fast_dev_run_from_the_real_config(processed, tmp_path, model, impl):
    cfg = compose(f"model={model}", f"model.impl={impl}", "experiment=smoke_charlm", "trainer.fast_dev_run=true",
                  f"paths.data_dir={processed.parents[1]}", f"paths.output_dir={tmp_path}")
    dm = instantiate(cfg.data)
    module = build(cfg, dm)["model"]
    trainer = make_trainer(cfg.trainer, logger=False, callbacks=[])
    trainer.fit(module, datamodule=dm)
    assert trainer.state.finished
    assert type(module.rnn).__name__ == ("ScratchRNN" if impl == "scratch" else model.upper())
    # the optimizer and schedule nodes (conf/optimizer/adamw.yaml, conf/scheduler/cosine.yaml), completed
    (optimizer,), (schedule,) = trainer.optimizers, trainer.lr_scheduler_configs
    assert type(optimizer).__name__ == "AdamW" and optimizer.defaults["lr"] == cfg.optimizer.lr
    assert schedule.interval == "step" and schedule.scheduler.T_max == trainer.estimated_stepping_batches
    assert schedule.scheduler.eta_min == cfg.optimizer.lr * cfg.lr_floor


def test_train_tracks_everything_in_mlflow(processed, workdir):
    cfg = compose("model=gru", "experiment=smoke_charlm", f"paths.data_dir={processed.parents[1]}",
                  f"paths.output_dir={workdir}/out", f"logger.tracking_uri=sqlite:///{workdir}/mlflow.db")
    scores = train(cfg)
    assert set(scores) == {"val", "test", "baseline"} and scores["test"]["bpc"] > 0

    client = mlflow.MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    exp = client.get_experiment_by_name("rnnlab-charlm")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["model/cell"] == "gru" and run.data.params["data/seq_len"] == "32"
    assert {"test_bpc", "test_perplexity", "val_bpc", "val_loss", "train_loss_epoch", "grad_norm_before_clip",
            "grad_norm_after_clip", "grad_clipped"} <= set(run.data.metrics)
    assert run.data.tags["task"] == "charlm" and run.data.tags["cell"] == "gru" and run.data.tags["role"] == "model"
    assert run.data.tags["git_commit"] and run.data.tags["data_version"] == "untracked"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "sample.txt", "checkpoints"} <= artifacts

    out = workdir / "out"
    assert json.loads((out / "model" / "run.json").read_text())["runs"] == {"model": run.info.run_id}
    metrics = json.loads((out / "metrics" / "charlm.json").read_text())
    assert set(metrics["test"]) == {"bpc", "perplexity"}
    assert metrics["test"]["perplexity"] == pytest.approx(2 ** metrics["test"]["bpc"], rel=1e-3)
    assert (out / "reports" / "charlm_sample.txt").read_text().startswith("ROMEO:")
    assert (out / "metrics" / "charlm_curves.csv").read_text().startswith("step,train_loss,val_loss,val_bpc\n")


def test_multirun_makes_one_mlflow_run_per_model(processed, workdir):
    cmd = [sys.executable, "-m", "rnnlab.cli", "train", "-m", "model=rnn,lstm", "experiment=smoke_charlm",
           f"paths.data_dir={processed.parents[1]}", "test=false", f"hydra.sweep.dir={workdir}/multirun"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlflow.db",
                                 "HYDRA_FULL_ERROR": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    client = mlflow.MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("rnnlab-charlm").experiment_id])
    parent = [r for r in runs if "sweep" in r.data.tags]
    children = [r for r in runs if "sweep" not in r.data.tags]
    assert sorted(r.data.tags["cell"] for r in children) == ["lstm", "rnn"]
    assert len({r.info.run_id for r in children}) == 2
    # one parent run for the sweep, finished, and both jobs nested under it
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    assert parent[0].data.tags["sweep"].startswith("model=rnn,lstm experiment=smoke_charlm")
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent[0].info.run_id}


def test_a_nan_loss_stops_the_run_and_marks_it_failed(processed, workdir, monkeypatch):
    from rnnlab import RnnlabError
    from rnnlab.shapes.many_to_many import CharLanguageModel

    step = CharLanguageModel.training_step

    def poisoned(self, batch, batch_idx):
        loss = step(self, batch, batch_idx)
        return loss * float("nan") if self.global_step >= 2 else loss

    monkeypatch.setattr(CharLanguageModel, "training_step", poisoned)
    cfg = smoke_config(processed, workdir)
    with pytest.raises(RnnlabError, match="charlm model diverged: training loss is nan at step 3"):
        train(cfg)
    run = only_charlm_run(workdir)
    assert run.info.status == "FAILED" and run.data.tags["diverged"].startswith("training loss is nan")
    assert not (workdir / "out" / "model" / "model.ckpt").exists()


def test_a_sweep_that_dies_leaves_its_parent_run_failed(workdir):
    from rnnlab.core.tracking import PARENT_RUN_ENV, SweepParentRun

    cfg = OmegaConf.create({"task_name": "charlm", "hydra": {"overrides": {"task": ["model=rnn,gru"]}},
                            "logger": {"tracking_uri": f"sqlite:///{workdir}/mlflow.db", "experiment_name": "rnnlab-charlm"}})
    sweep = SweepParentRun()
    sweep.on_multirun_start(cfg)
    assert os.environ[PARENT_RUN_ENV] == sweep.run_id
    sweep.end("FAILED")  # what the exit hook does when a job ends the process
    assert sweep.client.get_run(sweep.run_id).info.status == "FAILED"
    assert PARENT_RUN_ENV not in os.environ


def test_unknown_config_group_fails_cleanly(workdir):
    result = subprocess.run([sys.executable, "-m", "rnnlab.cli", "train", "model=transformer"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "model/transformer" in result.stderr


def test_a_crash_marks_the_mlflow_run_failed(processed, workdir, monkeypatch):
    from rnnlab.shapes.many_to_many import CharLanguageModel

    def boom(self, batch, batch_idx):
        raise RuntimeError("loss exploded")

    monkeypatch.setattr(CharLanguageModel, "training_step", boom)
    cfg = smoke_config(processed, workdir)
    with pytest.raises(RuntimeError, match="loss exploded"):
        train(cfg)
    run = only_charlm_run(workdir)
    assert run.info.status == "FAILED"
    assert not (workdir / "out" / "model").exists()
