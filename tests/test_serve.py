"""`rnnlab serve TASK`: MLflow's scoring server for rnnlab-TASK@champion, on a free loopback port."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import pytest

from rnnlab.serving.registry import register

from conftest import save_checkpoint, tiny_modules

RNNLAB = [sys.executable, "-m", "rnnlab.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture
def registered(tmp_path, monkeypatch):
    """rnnlab-surname@champion in a scratch store; returns (tracking URI, in-process champion)."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("rnnlab-surname")).info.run_id
    client.log_metric(run_id, "test_accuracy", 0.5)
    register("surname", save_checkpoint(tiny_modules()["surname"], tmp_path / "model.ckpt"), run_id, uri)
    yield uri, mlflow.pyfunc.load_model("models:/rnnlab-surname@champion")
    mlflow.set_tracking_uri(None)


def test_serves_the_champion_over_http(registered, tmp_path):
    uri, model = registered
    port = free_port()
    log = open(tmp_path / "serve.log", "w")
    server = subprocess.Popen([*RNNLAB, "serve", "surname", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                              cwd=tmp_path, start_new_session=True, env={**os.environ, "MLFLOW_TRACKING_URI": uri})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, Path(tmp_path / "serve.log").read_text()
            try:
                urllib.request.urlopen(f"{url}/ping", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not answer /ping within 120 s"
                time.sleep(1)

        names = ["Rossi", "Schmidt", "Nakamura"]
        status, body = post(f"{url}/invocations", json.dumps({"inputs": names, "params": {"top_k": 2}}).encode())
        assert status == 200
        expected = model.predict(names, params={"top_k": 2})
        assert [p["label"] for p in body["predictions"]] == list(expected["label"])
        for served, local in zip(body["predictions"], expected["top_probabilities"]):
            assert served["top_probabilities"] == pytest.approx(list(local), abs=1e-6)

        for bad, message in ((b'{"inputs": ["Ros', "valid JSON"),
                              (b'{"names": ["Rossi"]}', "exactly one of the input fields"),
                              (b'{"inputs": [""]}', "empty input: give the surname"),
                              (b'{"inputs": ["Rossi"], "params": {"top_k": 9}}', "top_k must be between 1 and 4")):
            status, body = post(f"{url}/invocations", bad)
            assert 400 <= status < 500 and message in body["message"], (bad, status, body)
        # still serving after the bad requests
        assert post(f"{url}/invocations", b'{"inputs": ["Rossi"]}')[0] == 200
        # bound to loopback only, as asked
        assert f"127.0.0.1:{port}" in Path(tmp_path / "serve.log").read_text()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()


def test_serve_without_a_champion_says_so(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    done = subprocess.run([*RNNLAB, "serve", "sentiment"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("rnnlab: error:")]
    assert len(errors) == 1 and "registered model rnnlab-sentiment has no alias 'champion'" in errors[0]
