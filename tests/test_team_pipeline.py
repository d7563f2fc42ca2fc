"""The pipeline against the real team stack (slow: CI runs it with -m slow): the speaker task's DVC stages in a
scratch project log to the MLflow server as the admin (runs, registry, champion alias; artifacts in S3), `dvc push`
stores the outputs in the S3 remote, and a fresh clone with an empty cache pulls them and `dvc repro` re-runs
nothing. MLFLOW_TRACKING_URI, MLFLOW_TRACKING_USERNAME/PASSWORD and the DVC remote's name are the only switches.
The faults: the object store down during `dvc push`, PostgreSQL restarted between runs."""

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from teamstack import READER, login, passwords, team
from test_pipeline import scratch_project, stages_run

from rnnlab.team.stack import ADMIN, ARTIFACTS_BUCKET, DVC_BUCKET

from conftest import run_task

pytestmark = [pytest.mark.team, pytest.mark.slow]
TASK = "speaker"
TARGET = f"register@{TASK}"


@pytest.fixture(scope="module")
def stack(team_stack):
    return team_stack


def run(cwd: Path, stack, user: str | None, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    """A command in the project as `user` of the team stack (no SQLite anywhere: the URI is the server's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env |= {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1",
            "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
            **login(stack, user)}
    done = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=2400)
    assert not check or done.returncode == 0, f"{cmd}: {done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def objects(stack, bucket: str) -> list[str]:
    pages = stack.s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.fixture(scope="module")
def project(stack, tmp_path_factory):
    """The speaker task's stages run once by the workflows' command, on the team stack, pushed to its S3 remote."""
    root = scratch_project(tmp_path_factory.mktemp("team"))
    run(root, stack, None, sys.executable, "-m", "rnnlab.team", "--dir", str(stack.root), "remote", "team", "--default")
    done = run(root, stack, ADMIN, ".ci/pipeline", "repro", TARGET)
    PRINTED[root] = done.stdout + done.stderr
    return root


PRINTED: dict[Path, str] = {}  # what the project fixture's pipeline run printed


def test_the_stages_log_to_the_server_and_register_the_champion(stack, project, monkeypatch):
    assert stages_run(PRINTED[project]) == {f"{kind}@{TASK}" for kind in ("pull", "preprocess", "train", "evaluate",
                                                                       "register")}
    for key, value in login(stack, READER).items():  # what the stages wrote, read back as the read-only user
        monkeypatch.setenv(key, value)
    client = mlflow.MlflowClient(stack.tracking_uri, stack.tracking_uri)  # not URIs an earlier test set here
    runs = client.search_runs([client.get_experiment_by_name(f"rnnlab-{TASK}").experiment_id])
    assert sorted(r.data.tags["role"] for r in runs) == ["baseline", "model"]  # each run once
    assert all(r.info.status == "FINISHED" for r in runs)
    champion = client.get_model_version_by_alias(f"rnnlab-{TASK}", "champion")
    assert int(champion.version) == 1 and client.get_run(champion.run_id).data.tags["role"] == "model"
    # the registered model's files went through the server into the artifacts bucket, and the reader can load it
    assert [k for k in objects(stack, ARTIFACTS_BUCKET) if champion.run_id in k or "models/" in k]
    model = mlflow.pyfunc.load_model(f"models:/rnnlab-{TASK}@champion")
    assert model.metadata.run_id == champion.run_id
    # `rnnlab compare` reads the runs through the server
    compare = run(project, stack, READER, "rnnlab", "compare", TASK)
    assert champion.run_id[:8] in compare.stdout, compare.stdout
    # no password in what the stages printed, in the runs' params, or in any file of the project
    for secret in passwords(stack):
        assert secret not in PRINTED[project] + compare.stdout + compare.stderr
        assert all(secret not in str(r.data.params) and secret not in str(r.data.tags) for r in runs)
    tracked = run(project, stack, None, "git", "ls-files", "-co", "--exclude-standard").stdout.split()
    leaked = [f for f in tracked if (project / f).is_file()
              and any(s.encode() in (project / f).read_bytes() for s in passwords(stack))]
    assert leaked == []


def test_a_fresh_clone_pulls_from_s3_and_reproduces_nothing(stack, project, tmp_path):
    assert [k for k in objects(stack, DVC_BUCKET) if k.startswith("dvc/files/md5/")], "dvc push left S3 empty"
    run(project, stack, None, "git", "add", "-A")
    run(project, stack, None, "git", "commit", "-qm", "speaker on the team stack")
    clone = tmp_path / "clone"
    run(tmp_path, stack, None, "git", "clone", "-q", str(project), str(clone))
    assert not (clone / ".dvc" / "config.local").exists()  # the keys did not travel with git
    run(clone, stack, None, sys.executable, "-m", "rnnlab.team", "--dir", str(stack.root), "remote", "team",
        "--default")
    run(clone, stack, None, "dvc", "pull", "--with-deps", TARGET)  # what was run and pushed: this task's stages
    assert (clone / "models" / TASK / "model.ckpt").is_file()
    out = run(clone, stack, ADMIN, "dvc", "repro", TARGET)
    assert stages_run(out.stdout + out.stderr) == set()
    assert "up to date" in run(clone, stack, None, "dvc", "status", "--with-deps", TARGET).stdout


def test_the_object_store_down_during_dvc_push_is_a_clear_error_and_nothing_is_lost(stack, project):
    extra = project / "data" / "extra.txt"
    extra.write_text("one more output\n")
    run(project, stack, None, "dvc", "add", "data/extra.txt")
    team(stack.root, "down", "s3")
    try:
        failed = run(project, stack, None, "dvc", "push", check=False)
    finally:
        assert team(stack.root, "up", "s3").returncode == 0
    assert failed.returncode != 0
    message = failed.stdout + failed.stderr
    # DVC's own words, one line naming the endpoint: "ERROR: unexpected error - Could not connect to the endpoint URL: ..."
    assert f'could not connect to the endpoint url: "{stack.s3_endpoint}/' in message.lower(), message
    assert extra.read_text() == "one more output\n" and any((project / ".dvc" / "cache").rglob("*"))
    run(project, stack, None, "dvc", "push")  # the store back: the push completes
    assert "cache and remote 'team' are in sync" in run(project, stack, None, "dvc", "status", "-c").stdout.lower()


def test_postgres_restarted_between_runs_loses_nothing(stack, project, monkeypatch):
    for key, value in login(stack, ADMIN).items():
        monkeypatch.setenv(key, value)
    client = mlflow.MlflowClient(stack.tracking_uri, stack.tracking_uri)  # not URIs an earlier test set here
    experiment = client.get_experiment_by_name(f"rnnlab-{TASK}").experiment_id
    before = {r.info.run_id: r.data.metrics for r in client.search_runs([experiment])}
    assert team(stack.root, "down", "postgres").returncode == 0
    assert team(stack.root, "up", "postgres").returncode == 0
    after = {r.info.run_id: r.data.metrics for r in client.search_runs([experiment])}
    assert after == before and client.get_model_version_by_alias(f"rnnlab-{TASK}", "champion")
    # and a new run is written and read back after the restart
    new = client.create_run(experiment)
    client.log_metric(new.info.run_id, "after_restart", 1.0)
    assert client.get_run(new.info.run_id).data.metrics == {"after_restart": 1.0}


def test_two_trainings_at_once_log_every_run_once(stack, tmp_path, monkeypatch):
    """A joblib sweep of two jobs side by side, both logging to the server: one parent run, each (cell, role) once."""
    run_task(tmp_path, "surname")
    cells = ("rnn", "gru")
    sweep = run(tmp_path, stack, ADMIN, "rnnlab", "train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                "task=surname", "experiment=smoke_classifier", "callbacks.progress_bar=null", f"model={','.join(cells)}")
    for key, value in login(stack, READER).items():
        monkeypatch.setenv(key, value)
    client = mlflow.MlflowClient(stack.tracking_uri, stack.tracking_uri)  # not URIs an earlier test set here
    runs = client.search_runs([client.get_experiment_by_name("rnnlab-surname").experiment_id])
    parents = [r for r in runs if "sweep" in r.data.tags]
    jobs = [r for r in runs if "sweep" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED", sweep.stderr[-2000:]
    recorded = sorted((r.data.params["model/cell"], r.data.tags["role"]) for r in jobs)
    assert recorded == sorted((cell, role) for cell in cells for role in ("model", "baseline"))
    assert {r.data.tags["mlflow.parentRunId"] for r in jobs} == {parents[0].info.run_id}
    assert all(r.info.status == "FINISHED" and r.data.metrics for r in jobs)
