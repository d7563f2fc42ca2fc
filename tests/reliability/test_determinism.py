"""Two trainings of the same config and seed on the CPU write the same metrics files, byte for byte."""

import hashlib
from pathlib import Path

import pytest

from rnnlab.cli import main

from conftest import run_task


@pytest.mark.parametrize("task, experiment", [("surname", "smoke_classifier"), ("charlm", "smoke_charlm")])
def test_same_seed_same_metrics_files(tmp_path, monkeypatch, figures, task, experiment):
    run_task(tmp_path, task)
    monkeypatch.chdir(tmp_path)
    digests = []
    for attempt in ("first", "second"):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/{attempt}.db")
        main(["train", f"task={task}", f"experiment={experiment}", "paths=pipeline", f"paths.metrics_dir={attempt}",
              "callbacks.progress_bar=null", "registry.enabled=false"])
        files = sorted(Path(tmp_path, attempt).glob("*"))
        digests.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files})
    identical = digests[0] == digests[1] and f"{task}.json" in digests[0]
    figures("determinism", task=task, files=sorted(digests[0]), identical=identical)
    assert f"{task}.json" in digests[0] and f"{task}_curves.csv" in digests[0]
    assert digests[0] == digests[1]
