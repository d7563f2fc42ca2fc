"""Runs that share one SQLite MLflow store at the same time: a Hydra sweep on the joblib launcher (2 jobs),
and two DVC experiments from the queue run by 2 workers. Every run is recorded once, none lost or merged."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from test_pipeline import scratch_project, sh

from conftest import rnnlab, run_task

CELLS = ("rnn", "lstm", "gru")


@pytest.mark.slow
def test_a_parallel_sweep_records_every_run_once(tmp_path, figures):
    run_task(tmp_path, "surname")
    store = f"sqlite:///{tmp_path}/mlflow.db"
    sweep = rnnlab(tmp_path, "train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "task=surname",
                   "experiment=smoke_classifier", "callbacks.progress_bar=null", f"model={','.join(CELLS)}")
    assert sweep.returncode == 0, sweep.stderr[-3000:]

    client = mlflow.MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("rnnlab-surname").experiment_id])
    parents = [r for r in runs if "sweep" in r.data.tags]
    jobs = [r for r in runs if "sweep" not in r.data.tags]
    launched = [(cell, role) for cell in CELLS for role in ("model", "baseline")]
    recorded = sorted((r.data.params["model/cell"], r.data.tags["role"]) for r in jobs)
    complete = [r for r in jobs if r.info.status == "FINISHED"]
    figures("concurrent", how="hydra joblib launcher, 2 jobs", launched=len(launched), recorded=len(complete))
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert recorded == sorted(launched)  # each (cell, role) exactly once
    assert {r.data.tags["mlflow.parentRunId"] for r in jobs} == {parents[0].info.run_id}
    assert len({r.info.run_id for r in jobs}) == len(jobs) == len(complete)
    # each model run holds its own job's scores, not another's
    for r in jobs:
        if r.data.tags["role"] == "model":
            assert r.data.params["model/cell"] == r.data.tags["cell"] and "val_accuracy" in r.data.metrics


@pytest.mark.slow
def test_two_queued_dvc_experiments_run_side_by_side(tmp_path, figures):
    root = scratch_project(tmp_path)  # every task at its smoke experiment
    sh(root, "dvc", "repro", "preprocess@surname")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "scratch")
    names = {"rnn": "exp-rnn", "gru": "exp-gru"}
    for cell, name in names.items():
        sh(root, "dvc", "exp", "run", "--queue", "-n", name, "-S", f"tasks.surname.model={cell}",
           "evaluate@surname")
    sh(root, "dvc", "queue", "start", "-j", "2")
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        status = sh(root, "dvc", "queue", "status")
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(5)
    shown = json.loads(subprocess.run(["dvc", "exp", "show", "--json"], cwd=root, capture_output=True, text=True,
                                      env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
                                      check=True).stdout)
    found = {}
    for commit in shown:
        for exp in commit.get("experiments") or []:
            for revision in exp.get("revs", []):
                metrics = revision.get("data", {}).get("metrics", {}).get("metrics/surname.json", {}).get("data", {})
                if revision.get("name") in names.values() and metrics:
                    found[revision["name"]] = metrics["test"]["accuracy"]
    client = mlflow.MlflowClient(f"sqlite:///{root}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("rnnlab-surname").experiment_id])
    cells = sorted(r.data.params["model/cell"] for r in runs if r.data.tags.get("role") == "model")
    figures("concurrent", how="dvc queue start -j 2", launched=len(names), recorded=len(found))
    assert "Success" in status and "Failed" not in status, status
    assert set(found) == set(names.values()), shown
    assert cells == sorted(names)
