"""The tracking server killed mid-training (slow: CI runs it with -m slow): the training stops with one line naming
the server; after `./run team up mlflow` the same command resumes from the last checkpoint into a new MLflow run
linked to the killed one (tags rnnlab.resumed_from / rnnlab.resumed_by), which is marked KILLED."""

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from teamstack import login, passwords, team

from rnnlab.team.stack import ADMIN

from conftest import ROOT, run_task

pytestmark = [pytest.mark.team, pytest.mark.slow]
# 2 epochs of 12 batches, a resume checkpoint every 5 steps (as tests/reliability/test_resume.py)
TRAIN = ["train", "task=charlm", "paths=pipeline", "experiment=smoke_charlm", "trainer.max_epochs=2",
         "trainer.limit_train_batches=12", "trainer.limit_val_batches=4", "trainer.val_check_interval=0.5",
         "callbacks.resume.every_n_steps=5", "callbacks.progress_bar=null"]
KILL_AT = 8  # after the checkpoints of steps 5 and 6 (a validation), before the one of step 10
# MLflow's client retries a dead server 7 times with exponential backoff (minutes); fewer here, as a user may set
FAST_GIVE_UP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


def train(root: Path, stack, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env |= {"OMP_NUM_THREADS": "1", "RNNLAB_CONFIG_DIR": str(ROOT / "conf"), "PYTHONPATH": str(Path(__file__).parent),
            **FAST_GIVE_UP, **login(stack, ADMIN)}
    rnnlab = str(Path(sys.executable).parent / "rnnlab")
    return subprocess.run([rnnlab, *TRAIN, *args], cwd=root, env=env, capture_output=True,
                          text=True, timeout=1200)


def test_a_killed_server_stops_training_in_one_line_and_the_rerun_resumes_linked(team_stack, tmp_path, monkeypatch):
    stack = team_stack
    run_task(tmp_path, "charlm")
    killed = train(tmp_path, stack, "+callbacks.kill_server._target_=teamkill.KillServerAt",
                   f"+callbacks.kill_server.step={KILL_AT}", f"+callbacks.kill_server.pidfile={stack.root / 'mlflow.pid'}")
    assert killed.returncode == 2, killed.stderr[-3000:]
    last = killed.stderr.strip().splitlines()[-1]
    assert last.startswith("rnnlab: error: MLflow tracking server") and stack.tracking_uri in last, last
    assert "Traceback" not in killed.stderr
    assert list((tmp_path / "checkpoints" / "charlm").rglob("last.ckpt")), "the resume checkpoint is gone"

    assert team(stack.root, "up", "mlflow").returncode == 0
    resumed = train(tmp_path, stack)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming the killed run" in resumed.stderr
    for secret in passwords(stack):
        assert secret not in killed.stdout + killed.stderr + resumed.stdout + resumed.stderr

    for key, value in login(stack, ADMIN).items():
        monkeypatch.setenv(key, value)
    client = mlflow.MlflowClient(stack.tracking_uri, stack.tracking_uri)  # not URIs an earlier test set here
    experiment = client.get_experiment_by_name("rnnlab-charlm").experiment_id
    runs = client.search_runs([experiment], order_by=["attribute.start_time ASC"])
    (new,) = [r for r in runs if "rnnlab.resumed_from" in r.data.tags]
    old = client.get_run(new.data.tags["rnnlab.resumed_from"])
    assert old.info.status == "KILLED" and old.data.tags["rnnlab.resumed_by"] == new.info.run_id
    assert new.info.status == "FINISHED"
    # the killed run logged its first steps before the server died; the new one carries on after the checkpoint
    old_steps = [m.step for m in client.get_metric_history(old.info.run_id, "train_loss_step")]
    new_steps = [m.step for m in client.get_metric_history(new.info.run_id, "train_loss_step")]
    assert old_steps and new_steps and min(new_steps) > 0 and max(new_steps) > max(old_steps)
