"""The team stack, quickly (default suite, about a minute): `./run team up` brings PostgreSQL, SeaweedFS and the
MLflow server with basic auth up; the admin logs a run whose artifact lands in S3; the read-only user reads it but
is refused (HTTP 403) every write; no credentials, no access; no password printed, logged or tracked by git."""

import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import requests
from teamstack import READER, login, passwords, rest, team

from rnnlab.team.services import configure_dvc_remote
from rnnlab.team.stack import ADMIN, ARTIFACTS_BUCKET, Stack, major_version

pytestmark = pytest.mark.team
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def stack(team_stack):
    return team_stack


def test_status_names_every_server_and_no_password_is_printed_logged_or_tracked(stack):
    status = team(stack.root, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    for service in ("postgres", "s3", "mlflow"):
        assert f"{service:<9} up" in status.stdout
    logs = {p.name: p.read_text(errors="replace") for p in stack.root.glob("*.log")}
    assert set(logs) == {"postgres.log", "s3.log", "mlflow.log"}
    for secret in passwords(stack):
        assert secret not in stack.up_output + status.stdout + status.stderr
        assert not [name for name, text in logs.items() if secret in text]
        tracked = subprocess.run(["git", "grep", "-lF", secret], cwd=ROOT, capture_output=True, text=True)
        assert tracked.stdout == ""
    # the files that hold them are for their owner only
    for name in ("secrets.env", "admin.env", "reader.env", "pgpass", "s3.json"):
        assert (stack.root / name).stat().st_mode & 0o077 == 0, name


def test_the_admin_logs_a_run_and_its_artifact_lands_in_s3(stack, monkeypatch, tmp_path):
    for key, value in login(stack, ADMIN).items():
        monkeypatch.setenv(key, value)
    client = mlflow.MlflowClient(stack.tracking_uri, stack.tracking_uri)  # not URIs an earlier test set here
    experiment = client.create_experiment("team-quick")
    run = client.create_run(experiment, tags={"who": "admin"})
    client.log_param(run.info.run_id, "hidden_size", 8)
    client.log_metric(run.info.run_id, "val_loss", 0.25)
    (tmp_path / "curves.csv").write_text("step,val_loss\n1,0.25\n")
    client.log_artifact(run.info.run_id, str(tmp_path / "curves.csv"))
    client.set_terminated(run.info.run_id)

    got = client.get_run(run.info.run_id)
    assert got.data.params == {"hidden_size": "8"} and got.data.metrics == {"val_loss": 0.25}
    assert got.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied by the server: no S3 keys on clients
    keys = [o["Key"] for o in stack.s3_client().list_objects_v2(Bucket=ARTIFACTS_BUCKET).get("Contents", [])]
    assert [k for k in keys if k.endswith(f"{run.info.run_id}/artifacts/curves.csv")], keys


def test_the_reader_reads_but_every_write_is_refused_and_no_login_gets_nothing(stack):
    experiment = rest(stack, ADMIN, "POST", "experiments/create", name="team-acl").json()["experiment_id"]
    run_id = rest(stack, ADMIN, "POST", "runs/create", experiment_id=experiment).json()["run"]["info"]["run_id"]
    assert rest(stack, ADMIN, "POST", "registered-models/create", name="rnnlab-acl").status_code == 200
    version = rest(stack, ADMIN, "POST", "model-versions/create", name="rnnlab-acl", run_id=run_id,
                   source=f"mlflow-artifacts:/{experiment}/{run_id}/artifacts/model").json()["model_version"]["version"]
    alias = {"name": "rnnlab-acl", "alias": "champion", "version": version}
    assert rest(stack, ADMIN, "POST", "registered-models/alias", **alias).status_code == 200

    # reads: runs, the registry and the champion alias (what `rnnlab serve` and `rnnlab compare` need)
    assert rest(stack, READER, "GET", "runs/get", run_id=run_id).status_code == 200
    assert rest(stack, READER, "POST", "runs/search", experiment_ids=[experiment]).status_code == 200
    got = rest(stack, READER, "GET", "registered-models/alias", name="rnnlab-acl", alias="champion")
    assert got.status_code == 200 and got.json()["model_version"]["version"] == version
    # writes: a run, a metric, a model version, moving or deleting the alias
    refused = {
        "create a run": rest(stack, READER, "POST", "runs/create", experiment_id=experiment),
        "log a metric": rest(stack, READER, "POST", "runs/log-metric", run_id=run_id, key="x", value=1.0,
                             timestamp=0, step=0),
        "register a version": rest(stack, READER, "POST", "model-versions/create", name="rnnlab-acl",
                                   run_id=run_id, source=f"mlflow-artifacts:/{experiment}/{run_id}/artifacts/m"),
        "move the champion": rest(stack, READER, "POST", "registered-models/alias", **alias),
        "delete the champion": rest(stack, READER, "DELETE", "registered-models/alias", name="rnnlab-acl",
                                    alias="champion"),
    }
    assert {what: r.status_code for what, r in refused.items()} == dict.fromkeys(refused, 403)
    # no credentials, or a wrong password: 401 on a read already
    assert rest(stack, None, "GET", "runs/get", run_id=run_id).status_code == 401
    wrong = requests.get(f"{stack.tracking_uri}/api/2.0/mlflow/runs/get", params={"run_id": run_id},
                         auth=(READER, "not-the-password"), timeout=60)
    assert wrong.status_code == 401


def test_bad_arguments_and_a_missing_stack_are_one_line(tmp_path):
    bad = team(tmp_path / "team", "up", "nosuch")
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "./run team up: error: argument SERVICE: unknown service 'nosuch'; choose from postgres, s3, mlflow")
    missing = team(tmp_path / "team", "status")
    assert missing.returncode == 3 and missing.stdout.strip() == f"no team stack in {tmp_path / 'team'} (./run team up)"


def test_the_newest_postgres_folder_wins_by_number_not_by_text(tmp_path):
    folders = [tmp_path / version / "bin" for version in ("9.6", "16", "15", "stray")]
    assert [f.parent.name for f in sorted(folders, key=major_version, reverse=True)] == ["16", "15", "9.6", "stray"]


def test_the_dvc_remote_keys_go_to_config_local_for_its_owner_and_never_on_a_command_line(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    dvc = str(Path(sys.executable).parent / "dvc")
    for argv in (["git", "init", "-q"], [dvc, "init", "-q"]):
        subprocess.run(argv, cwd=repo, check=True)
    stack = Stack(tmp_path / "team")  # no server needed: ports and secrets only
    stack.root.mkdir()

    def no_process(*args, **kwargs):  # a command line is what `ps` shows to every user
        raise AssertionError(f"a process was started: {args}")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(subprocess, "run", no_process)
        mp.setattr(subprocess, "Popen", no_process)
        for _ in range(2):  # a second call replaces the remote
            configure_dvc_remote(stack, "team", repo=repo, default=True)
    local = repo / ".dvc" / "config.local"
    assert local.stat().st_mode & 0o077 == 0
    assert stack.secrets()["s3_secret_key"] in local.read_text() and local.read_text().count("[") == 2
    listed = subprocess.run([dvc, "remote", "list"], cwd=repo, capture_output=True, text=True, check=True).stdout
    assert listed.split() == ["team", "s3://rnnlab-dvc/dvc", "(default)"]
