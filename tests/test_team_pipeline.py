"""The pipeline against the real team stack (slow: CI runs it with -m slow): the speaker task's DVC stages in a
scratch project log to the MLflow server as the admin (runs, registry, champion alias; artifacts in S3), `dvc push`
stores the outputs in the S3 remote, and a fresh clone with an empty cache pulls them and `dvc repro` re-runs
nothing. MLFLOW_TRACKING_URI, MLFLOW_TRACKING_USERNAME/PASSWORD and the DVC remote's name are the only switches.
The faults: the object store down during `dvc push`, PostgreSQL restarted between runs. Then a `dvc exp` queue of
two experiments on the server, and `rnnlab serve` of the champion as the read-only user."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.exceptions import MlflowException
from teamstack import READER, login, passwords, team
from test_pipeline import scratch_project, stages_run
from test_serve import free_port, post

from rnnlab import tasks
from rnnlab.serving.registry import beats
from rnnlab.team.stack import ADMIN, ARTIFACTS_BUCKET, DVC_BUCKET

from conftest import ROOT, run_task

pytestmark = [pytest.mark.team, pytest.mark.slow]
TASK = "speaker"
TARGET = f"register@{TASK}"


@pytest.fixture(scope="module")
def stack(team_stack):
    return team_stack


def user_env(stack, user: str | None) -> dict[str, str]:
    """This environment without any MLflow setting, logged in to the team stack as `user` (None: no credentials)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return env | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1",
                  "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                  "GIT_COMMITTER_EMAIL": "t@t", **login(stack, user)}


def run(cwd: Path, stack, user: str | None, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    """A command in the project as `user` of the team stack (no SQLite anywhere: the URI is the server's)."""
    done = subprocess.run(list(cmd), cwd=cwd, env=user_env(stack, user), capture_output=True, text=True, timeout=2400)
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


QUEUED = {"hidden-6": 6, "hidden-10": 10}  # dvc exp name -> the speaker model's hidden size


def reader_client(stack, monkeypatch) -> mlflow.MlflowClient:
    for key, value in login(stack, READER).items():
        monkeypatch.setenv(key, value)
    return mlflow.MlflowClient(stack.tracking_uri, stack.tracking_uri)  # not URIs an earlier test set here


def test_a_dvc_exp_queue_logs_each_experiment_once_and_keeps_one_champion(stack, project, monkeypatch):
    """Two experiments queued without credentials (`dvc exp run --queue -S ...`), then run one at a time by DVC's
    queue worker (`dvc exp run --run-all --jobs 1`) in copies of the project under .dvc/tmp/exps. The worker is
    spawned by `--run-all` and inherits its environment: that is how the MLflow login reaches the stages, and the
    only way (nothing of it is written to a file)."""
    client = reader_client(stack, monkeypatch)
    name, spec = f"rnnlab-{TASK}", tasks.get(TASK)
    experiment = client.get_experiment_by_name(name).experiment_id
    runs_before = {r.info.run_id for r in client.search_runs([experiment])}
    versions_before = {int(v.version) for v in client.search_model_versions(f"name='{name}'")}
    holder = client.get_model_version_by_alias(name, "champion")
    # a queued experiment starts from the last commit (plus the workspace's changes to tracked files)
    run(project, stack, None, "git", "add", "-A")
    run(project, stack, None, "git", "commit", "-qm", "before the queue", check=False)  # nothing new: fine
    for exp, size in QUEUED.items():
        run(project, stack, None, "dvc", "exp", "run", "--queue", "-n", exp, TARGET,
            "-S", f"tasks.{TASK}.overrides='model.hidden_size={size}'")
    done = run(project, stack, ADMIN, "dvc", "exp", "run", "--run-all", "--jobs", "1")
    logs = done.stdout + done.stderr

    # every run once: each experiment's model and baseline, finished, with its metrics
    new = [r for r in client.search_runs([experiment], order_by=["attribute.start_time ASC"])
           if r.info.run_id not in runs_before]
    recorded = sorted((int(r.data.params["model/hidden_size"]), r.data.tags["role"]) for r in new)
    assert recorded == sorted((size, role) for size in QUEUED.values() for role in ("baseline", "model")), logs[-3000:]
    assert all(r.info.status == "FINISHED" and spec.metric in r.data.metrics for r in new)
    models = [r for r in new if r.data.tags["role"] == "model"]
    for r in models:
        # the test score logged once, the gate's decision once, its files in the S3 bucket behind the server
        assert len(client.get_metric_history(r.info.run_id, spec.metric)) == 1
        assert [a.path for a in client.list_artifacts(r.info.run_id)].count("champion_gate.json") == 1
        assert [k for k in objects(stack, ARTIFACTS_BUCKET) if f"{r.info.run_id}/artifacts/champion_gate.json" in k]
    # DVC's record of each experiment agrees with the server's
    by_size = {int(r.data.params["model/hidden_size"]): r.data.metrics[spec.metric] for r in models}
    assert exp_scores(project, stack) == pytest.approx({exp: by_size[size] for exp, size in QUEUED.items()})

    # the registry: one new version per model run, numbered on in the order the runs ran
    versions = sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))
    added = [v for v in versions if int(v.version) not in versions_before]
    assert [int(v.version) for v in added] == [max(versions_before) + 1, max(versions_before) + 2]
    assert [v.run_id for v in added] == [r.info.run_id for r in models]
    # the champion: the gate of rnnlab.serving.registry replayed over the new versions, one alias on one version
    margin = yaml.safe_load((ROOT / "conf" / "registry" / "default.yaml").read_text())["margin"]
    score = {int(v.version): client.get_run(v.run_id).data.metrics[spec.metric] for v in versions}
    for v in added:
        promoted = beats(score[int(v.version)], score[int(holder.version)], margin, spec.lower_is_better)
        holder = v if promoted else holder
        assert v.tags["gate"] == ("promoted" if promoted else "kept"), (v.version, score)
    assert client.get_registered_model(name).aliases == {"champion": holder.version}
    best = (min if spec.lower_is_better else max)(score.values())
    assert margin > 0 or score[int(holder.version)] == best, score

    # the login reached the stages through the environment only: no secret in what DVC printed, nor in any file of
    # the project (.dvc/tmp/exps included) but the S3 keys in .dvc/config.local (`./run team remote`; git ignores it)
    files = {p.relative_to(project).as_posix(): p.read_bytes() for p in project.rglob("*") if p.is_file()}
    for key, secret in stack.secrets().items():
        assert secret not in logs, key
        allowed = {".dvc/config.local"} if key.startswith("s3_") else set()
        assert {f for f, data in files.items() if secret.encode() in data} <= allowed, key


def exp_scores(project: Path, stack) -> dict[str, float]:
    """`dvc exp show`'s test accuracy of each named experiment of the task (its metrics file, test.accuracy)."""
    shown = json.loads(run(project, stack, None, "dvc", "exp", "show", "--json").stdout)
    scores = {}
    for commit in shown:
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs", []):
                metrics = rev.get("data", {}).get("metrics", {}).get(f"metrics/{TASK}.json", {}).get("data", {})
                if rev.get("name") and metrics:
                    scores[rev["name"]] = metrics["test"]["accuracy"]
    return scores


def test_the_reader_serves_the_champion_over_http_and_cannot_move_it(stack, project, tmp_path, monkeypatch):
    """`rnnlab serve` as the read-only user: it loads rnnlab-TASK@champion through the server (the model's files
    come from S3 through the server's artifact proxy) and answers a prediction; moving the alias is refused."""
    client = reader_client(stack, monkeypatch)
    name = f"rnnlab-{TASK}"
    champion = client.get_model_version_by_alias(name, "champion")
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        server = subprocess.Popen([str(Path(sys.executable).parent / "rnnlab"), "serve", TASK, "--port", str(port)],
                                  cwd=tmp_path, env=user_env(stack, READER), stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_ping(server, url, log)
        rng = np.random.default_rng(0)
        utterances = [rng.normal(size=(n, 12)).round(4).tolist() for n in (7, 12, 20)]
        status, body = post(f"{url}/invocations", json.dumps({"dataframe_split": {
            "columns": ["frames"], "data": [[u] for u in utterances]}}).encode())
        assert status == 200, body
        # the same champion in this process, through the server by name (not this process's global MLflow URIs)
        local = mlflow.artifacts.download_artifacts(f"models:/{name}@champion", dst_path=str(tmp_path / "model"),
                                                    tracking_uri=stack.tracking_uri, registry_uri=stack.tracking_uri)
        model = mlflow.pyfunc.load_model(local)
        assert model.metadata.run_id == champion.run_id
        expected = model.predict(pd.DataFrame({"frames": utterances}))
        assert [p["label"] for p in body["predictions"]] == list(expected["label"])
        served = [p["probability"] for p in body["predictions"]]
        assert served == pytest.approx(list(expected["probability"]), abs=1e-6)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    printed = log.read_text()
    assert f"serving models:/{name}@champion from {stack.tracking_uri}" in printed, printed[-2000:]
    assert not [s for s in passwords(stack) if s in printed]
    # the reader may load the champion but not move or delete it: HTTP 403, and the alias stays
    for write in (lambda: client.set_registered_model_alias(name, "champion", "1"),
                  lambda: client.delete_registered_model_alias(name, "champion")):
        with pytest.raises(MlflowException) as refused:
            write()
        assert refused.value.get_http_status_code() == 403, refused.value
    assert client.get_model_version_by_alias(name, "champion").version == champion.version


def wait_for_ping(server: subprocess.Popen, url: str, log: Path, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while True:
        assert server.poll() is None, log.read_text()[-3000:]
        try:
            urllib.request.urlopen(f"{url}/ping", timeout=2)
            return
        except OSError:
            assert time.monotonic() < deadline, f"rnnlab serve did not answer /ping within {seconds:.0f} s"
            time.sleep(1)


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
