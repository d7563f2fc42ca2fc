"""The DVC pipeline end to end on the archive slices with the smoke experiments, in a scratch project.

The char LM's and the speaker classifier's stages here, with the workflows' story (no-op re-run, params and
conf edits, `dvc exp run`, the metrics diff, a retrain, a fresh pull from the remote); the other tasks' stages
in tests/test_pipeline_tasks.py (a second file, so that pytest-xdist runs the two halves side by side); the
gradient lab's section in another project."""

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

from conftest import slice_params, tree_copy


def sh(cwd: Path, *cmd: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlflow.db", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"{cmd}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


# sentiment, surname, surname_gen, forecast: tests/test_pipeline_tasks.py; translate: tests/test_translate.py
TASKS = ("charlm", "speaker")
LABELLED = ("speaker",)
TARGETS = tuple(f"register@{task}" for task in TASKS)
KINDS = ("pull", "preprocess", "train", "evaluate", "register")


def task_stages(tasks) -> set[str]:
    return {f"{kind}@{task}" for kind in KINDS for task in tasks}


TASK_STAGES = task_stages(TASKS)


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([\w@]+)'", output))


def stale(root: Path, targets) -> set[str]:
    """The stages `dvc status` reports changed."""
    return set(re.findall(r"^([\w@]+):", sh(root, "dvc", "status", "--with-deps", *targets), re.M))


def assert_classifier_outputs(root: Path, task: str) -> None:
    """What the stages of a labelled task leave: its scores beside the baselines, its reports and checkpoints."""
    scores = json.loads((root / "metrics" / f"{task}.json").read_text())
    assert {"accuracy", "macro_f1", "per_class"} <= set(scores["test"]) and "majority" in scores["baseline"]
    assert (root / "reports" / task / f"{task}_confusion.csv").read_text().startswith("actual,predicted\n")
    assert (root / "reports" / task / f"{task}_errors.csv").read_text().startswith("input,actual,predicted,probability")
    assert {p.name for p in (root / "models" / task).iterdir()} == {"model.ckpt", "baseline.ckpt", "run.json"}


def write_params(root: Path, **charlm) -> None:
    params = slice_params()
    for task in params["tasks"]:
        params["tasks"][task]["experiment"] = f"smoke_{task}"
    params["tasks"]["charlm"].update(charlm)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def scratch_project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    tree_copy(root, "conf", "src", "dvc.yaml", ".gitignore", ".ci")
    write_params(root)
    sh(root, "git", "init", "-q")
    sh(root, "dvc", "init", "-q")
    sh(root, "dvc", "config", "core.analytics", "false")
    # as the project's .dvc/config: a local-directory remote by default
    sh(root, "dvc", "remote", "add", "-d", "local", str(tmp_path / "dvc-remote"))
    return root


def test_dvc_pipeline_end_to_end(tmp_path):
    root = scratch_project(tmp_path)

    # the workflows' command (.ci/pipeline): pull what the remote has (nothing yet), reproduce, push
    out = sh(root, ".ci/pipeline", "repro", *TARGETS)
    assert stages_run(out) == TASK_STAGES
    assert any((tmp_path / "dvc-remote").rglob("*")), "dvc push left the remote empty"
    metrics = json.loads((root / "metrics" / "charlm.json").read_text())
    assert set(metrics) == {"test", "val", "baseline"} and set(metrics["test"]) == {"bpc", "perplexity"}
    # the classical peer, a Kneser-Ney n-gram model, its order chosen on validation
    assert set(metrics["baseline"]["kn_ngram"]) == {"bpc", "perplexity", "order", "val_bpc"}
    assert (root / "reports" / "charlm" / "charlm_peers.csv").read_text().startswith("peer,seconds\nkn_ngram,")
    assert (root / "reports" / "charlm" / "charlm_sample.txt").read_text().startswith("ROMEO:")
    assert (root / "metrics" / "charlm_curves.csv").is_file()
    # the resolved model config the train stage declares as DVC params
    trained = yaml.safe_load((root / "params" / "charlm.yaml").read_text())
    assert trained["model"]["cell"] == "lstm" and trained["model"]["hidden_size"] == 32
    assert trained["optimizer"]["name"] == "AdamW" and {"lr", "weight_decay"} <= set(trained["optimizer"])
    assert trained["scheduler"]["name"] == "CosineAnnealingLR" and "max_epochs" in trained["trainer"]
    assert trained["data"]["batch_size"] == 8
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    assert set(lock["stages"]) == TASK_STAGES
    processed_md5 = next(o["md5"] for o in lock["stages"]["preprocess@charlm"]["outs"])
    for task in LABELLED:
        assert_classifier_outputs(root, task)

    client = mlflow.MlflowClient(f"sqlite:///{root}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("rnnlab-charlm").experiment_id])
    assert run.data.tags["data_version"] == processed_md5
    assert run.data.tags["dvc_stage"] == "train@charlm"
    assert run.data.metrics["test_bpc"] == metrics["test"]["bpc"]  # evaluate logged into the training run
    runs = client.search_runs([client.get_experiment_by_name("rnnlab-speaker").experiment_id])
    assert {(r.data.tags["role"], r.data.tags["dvc_stage"]) for r in runs} == {
        ("model", "train@speaker"), ("baseline", "train@speaker")}
    # each register stage registered its model, and the first version of each became the champion
    for task in ("charlm", *LABELLED):
        champion = client.get_model_version_by_alias(f"rnnlab-{task}", "champion")
        assert int(champion.version) == 1 and client.get_run(champion.run_id).data.tags["role"] == "model"

    assert stages_run(sh(root, "dvc", "repro", *TARGETS)) == set()
    assert "metrics/charlm.json" in sh(root, "dvc", "metrics", "show")

    write_params(root, model="rnn")
    assert stages_run(sh(root, "dvc", "repro", *TARGETS)) == {"train@charlm", "evaluate@charlm", "register@charlm"}
    rnn = root / "conf" / "model" / "rnn.yaml"
    committed = rnn.read_text()
    rnn.write_text(committed + "# an edit under conf/\n")
    # a stage reads only the conf/ files its task composes: the char LM (now rnn) goes stale, the speaker
    # classifier (gru) does not
    assert stale(root, TARGETS) == {"train@charlm", "evaluate@charlm"}
    rnn.write_text(committed)

    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "baseline")
    sh(root, "dvc", "exp", "run", "register@charlm", "-n", "rnn-variant", "-S", "tasks.charlm.model=rnn",
       "-S", "tasks.charlm.overrides='model.hidden_size=24 model.nonlinearity=relu'")
    shown = list(csv.DictReader(io.StringIO(sh(root, "dvc", "exp", "show", "--no-pager", "--csv"))))
    variant = next(row for row in shown if row["Experiment"] == "rnn-variant")
    # the resolved model config (params/charlm.yaml), not only the experiment's name, is in the table
    trained = [variant[f"params/charlm.yaml:model.{key}"] for key in ("cell", "hidden_size", "nonlinearity")]
    assert trained == ["rnn", "24", "relu"]
    latest = client.search_runs([run.info.experiment_id], order_by=["attributes.start_time DESC"])[0]
    assert (latest.data.params["model/cell"], latest.data.params["model/hidden_size"],
            latest.data.params["model/nonlinearity"]) == ("rnn", "24", "relu")

    # the pull-request workflow's report: the experiment's metrics against the committed ones, as markdown
    diff = sh(root, ".ci/pipeline", "diff", "HEAD")
    assert re.search(r"^\| metrics/charlm\.json\s+\| test\.bpc ", diff, re.M), diff

    # the retrain workflow: one task's train, evaluate and register stages forced (its data stages, up to date,
    # are not), with an extra override; register makes version 2 and the gate decides
    out = sh(root, ".ci/pipeline", "retrain", "speaker", "trainer.max_epochs=1")
    assert stages_run(out) == {"train@speaker", "evaluate@speaker", "register@speaker"}
    assert "registry: rnnlab-speaker v2: test_accuracy" in out and "champion v1" in out
    assert yaml.safe_load((root / "params.yaml").read_text())["tasks"]["speaker"]["overrides"] == (
        "trainer.max_epochs=1")
    result = subprocess.run([".ci/pipeline", "retrain", "translation"], cwd=root, capture_output=True, text=True)
    assert result.returncode == 2 and "unknown task 'translation'" in result.stderr

    # a fresh checkout with an empty DVC cache gets every output from the remote and re-runs nothing
    for folder in (".dvc/cache", "models", "data"):
        shutil.rmtree(root / folder)
    assert stages_run(sh(root, ".ci/pipeline", "repro", *TARGETS)) == set()
    assert (root / "models" / "speaker" / "model.ckpt").is_file()
    assert (root / "data" / "processed" / "charlm").is_dir()


@pytest.mark.slow  # seven stage processes (about a minute on a quiet machine): CI runs it with -m slow
def test_gradient_lab_section(tmp_path):
    root = scratch_project(tmp_path)  # slice_params shrinks the gradient lab to seconds
    lab = {"adding@rnn", "adding@lstm", "adding@gru", "exploding", "gradients_report"}
    assert stages_run(sh(root, "dvc", "repro", "gradients_report")) == lab
    metrics = json.loads((root / "metrics" / "gradients.json").read_text())
    assert set(metrics["adding"]) == {"rnn", "lstm", "gru"} and metrics["exploding"]["no_clip"]["diverged"]
    assert stages_run(sh(root, "dvc", "repro", "gradients_report")) == set()

    params = yaml.safe_load((root / "params.yaml").read_text())
    params["gradients"]["exploding"]["radius"] = 1.4
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert stages_run(sh(root, "dvc", "repro", "gradients_report")) == {"exploding", "gradients_report"}
