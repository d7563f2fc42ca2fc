"""The DVC pipeline end to end on the corpus slice with the smoke experiment, in a scratch project."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import yaml

from conftest import slice_params, tree_copy


def sh(cwd: Path, *cmd: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlflow.db", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{cmd}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '(\w+)'", output))


def write_params(root: Path, **train) -> None:
    params = slice_params()
    params["train"].update(experiment="smoke", **train)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_dvc_pipeline_end_to_end(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    tree_copy(root, "conf", "src", "dvc.yaml", ".gitignore")
    write_params(root)
    sh(root, "git", "init", "-q")
    sh(root, "dvc", "init", "-q")
    sh(root, "dvc", "config", "core.analytics", "false")

    out = sh(root, "dvc", "repro")
    assert stages_run(out) == {"pull", "preprocess", "train", "evaluate"}
    metrics = json.loads((root / "metrics" / "charlm.json").read_text())
    assert set(metrics) == {"test", "val"} and set(metrics["test"]) == {"bpc", "perplexity"}
    assert (root / "reports" / "charlm_sample.txt").read_text().startswith("ROMEO:")
    assert (root / "metrics" / "charlm_curves.csv").is_file()
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"pull", "preprocess", "train", "evaluate"}
    processed_md5 = next(o["md5"] for o in lock["stages"]["preprocess"]["outs"])

    client = mlflow.MlflowClient(f"sqlite:///{root}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("rnnlab-charlm").experiment_id])
    assert run.data.tags["data_version"] == processed_md5
    assert run.data.tags["dvc_stage"] == "train"
    assert run.data.metrics["test_bpc"] == metrics["test"]["bpc"]  # evaluate logged into the training run

    assert stages_run(sh(root, "dvc", "repro")) == set()
    assert "metrics/charlm.json" in sh(root, "dvc", "metrics", "show")

    write_params(root, model="gru")
    assert stages_run(sh(root, "dvc", "repro")) == {"train", "evaluate"}
    with open(root / "conf" / "model" / "gru.yaml", "a") as f:
        f.write("# an edit under conf/\n")
    assert stages_run(sh(root, "dvc", "repro")) == {"train", "evaluate"}

    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "baseline")
    sh(root, "dvc", "exp", "run", "-n", "rnn-variant", "-S", "train.model=rnn",
       "-S", "train.overrides='model.hidden_size=24 model.nonlinearity=relu'")
    shown = sh(root, "dvc", "exp", "show", "--no-pager", "--csv")
    assert "rnn-variant" in shown
    latest = client.search_runs([run.info.experiment_id], order_by=["attributes.start_time DESC"])[0]
    assert (latest.data.params["model/cell"], latest.data.params["model/hidden_size"],
            latest.data.params["model/nonlinearity"]) == ("rnn", "24", "relu")
