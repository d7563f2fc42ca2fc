"""The real team stack for the tests (tests/test_team*.py): started by `python -m rnnlab.team` in a folder of its
own with free ports, stopped at the end; skipped only where PostgreSQL's server binaries are absent (failed there
when RNNLAB_TEAM_REQUIRED is set, as in CI's team job: a skip would pass unseen)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import requests

from rnnlab import RnnlabError
from rnnlab.team.stack import READER, Stack, pg_bin

REQUIRED_ENV = "RNNLAB_TEAM_REQUIRED"  # set (CI's team job): no PostgreSQL fails the tests instead of skipping them


def require_postgres() -> None:
    try:
        pg_bin()
    except RnnlabError as e:
        if os.environ.get(REQUIRED_ENV):
            pytest.fail(f"{REQUIRED_ENV} is set and the team stack cannot start: {e}")
        pytest.skip(f"team stack needs PostgreSQL: {e}")


def team(root: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`./run team ARGS` for the stack in `root` (output captured: the tests check it holds no password)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "rnnlab.team", "--dir", str(root), *args],
                          capture_output=True, text=True, env=env, timeout=timeout)


def start_stack() -> Stack:
    require_postgres()
    # mkdtemp's folder is 700: as root, PostgreSQL runs as user postgres and must get through it
    folder = Path(tempfile.mkdtemp(prefix="rnnlab-team-"))
    folder.chmod(0o711)
    stack = Stack(folder / "team")
    up = team(stack.root, "up")
    if up.returncode != 0:
        team(stack.root, "down")
        raise AssertionError(f"./run team up failed:\n{up.stdout}\n{up.stderr}")
    stack.up_output = up.stdout + up.stderr  # type: ignore[attr-defined]
    return stack


def stop_stack(stack: Stack) -> None:
    down = team(stack.root, "down")
    assert down.returncode == 0, down.stderr
    for service in ("s3", "mlflow"):
        assert stack.pid(service) is None, f"{service} still running after down"
    shutil.rmtree(stack.root.parent)


def login(stack: Stack, user: str | None) -> dict[str, str]:
    """The environment that makes MLflow's client work as `user` (None: no credentials)."""
    env = {"MLFLOW_TRACKING_URI": stack.tracking_uri}
    if user:
        env |= {"MLFLOW_TRACKING_USERNAME": user,
                "MLFLOW_TRACKING_PASSWORD": stack.secrets()[f"{user}_password"]}
    return env


def rest(stack: Stack, user: str | None, method: str, endpoint: str, **body) -> requests.Response:
    """One call of MLflow's REST API (https://mlflow.org/docs/latest/api_reference/rest-api.html) as `user`."""
    auth = (user, stack.secrets()[f"{user}_password"]) if user else None
    url = f"{stack.tracking_uri}/api/2.0/mlflow/{endpoint}"
    if method == "GET":
        return requests.get(url, params=body, auth=auth, timeout=60)
    return requests.request(method, url, json=body, auth=auth, timeout=60)


def passwords(stack: Stack) -> list[str]:
    return list(stack.secrets().values())


__all__ = ["READER", "login", "passwords", "rest", "start_stack", "stop_stack", "team"]
