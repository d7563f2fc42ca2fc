"""Nothing secret reaches the tracking store: secret-looking keys and URL passwords are masked in the params
and the config artifact of every run."""

import os
import socket
import subprocess
import sys
import time

import mlflow
import pytest

from rnnlab import RnnlabError
from rnnlab.core.tracking import check_reachable, redact
from rnnlab.pipeline.train import train

from conftest import ROOT, compose

SECRETS = ("s3cr3t-value", "hunter2", "tok-123")


def test_redact():
    config = {"db": {"password": "hunter2", "url": "postgresql://bob:hunter2@db:5432/mlflow"},
              "api_token": "tok-123", "AWS_SECRET_ACCESS_KEY": "x", "hosts": ["https://u:p@h/x", "plain"],
              "model": {"hidden_size": 8, "cell": "lstm"}}
    assert redact(config) == {"db": {"password": "***", "url": "postgresql://***@db:5432/mlflow"},
                              "api_token": "***", "AWS_SECRET_ACCESS_KEY": "***", "hosts": ["https://***@h/x", "plain"],
                              "model": {"hidden_size": 8, "cell": "lstm"}}


def test_no_secret_in_logged_params_or_artifacts(processed, workdir):
    store = f"sqlite:///{workdir}/mlflow.db"
    cfg = compose("experiment=smoke_charlm", "trainer.fast_dev_run=true", "test=false", "registry.enabled=false",
                  f"paths.data_dir={processed.parents[1]}", f"paths.output_dir={workdir}/out",
                  f"logger.tracking_uri={store}", "+extra.api_token=s3cr3t-value",
                  "+extra.store=https://bob:hunter2@tracking.example/", "+extra.password=tok-123")
    train(cfg)
    client = mlflow.MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("rnnlab-charlm").experiment_id])
    logged = [*run.data.params.items(), *run.data.tags.items()]
    assert not [(k, v) for k, v in logged if any(s in v for s in SECRETS)]
    assert run.data.params["extra/api_token"] == "***" and run.data.params["extra/store"] == "https://***@tracking.example/"
    config = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/config.yaml")
    assert "api_token: '***'" in config and not any(s in config for s in SECRETS)


def test_an_unreachable_tracking_server_fails_fast(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://bob:hunter2@127.0.0.1:{port}"
    started = time.monotonic()
    with pytest.raises(RnnlabError, match="is unreachable"):
        check_reachable(uri)
    assert time.monotonic() - started < 10  # the check waits at most 5 s
    # the command ends with it, well before MLflow's client would give up (7 retries with backoff: minutes); the
    # subprocess's limit leaves room for interpreter and Hydra start-up on a loaded machine (21 s at load 6)
    result = subprocess.run([sys.executable, "-m", "rnnlab.cli", "train", "experiment=smoke_charlm",
                             f"hydra.run.dir={tmp_path}/run"], cwd=ROOT, capture_output=True, text=True, timeout=90,
                            env={**os.environ, "MLFLOW_TRACKING_URI": uri})
    assert result.returncode == 2
    assert f"MLflow tracking server http://***@127.0.0.1:{port} is unreachable" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
