"""A training SIGKILLed at seeded points resumes when the same command runs again, and ends where an
uninterrupted run of the same seed ends (the metrics files compared byte for byte)."""

import json
import random
import subprocess
from pathlib import Path

import mlflow
import pytest
import torch
import yaml

from conftest import ROOT, compose, rnnlab, run_task

# 2 epochs of 12 batches, validation every 6, a resume checkpoint every 5 steps and after each validation
TRAIN = ["train", "task=charlm", "paths=pipeline", "experiment=smoke_charlm", "trainer.max_epochs=2",
         "trainer.limit_train_batches=12", "trainer.limit_val_batches=4", "trainer.val_check_interval=0.5",
         "callbacks.resume.every_n_steps=5", "callbacks.progress_bar=null"]
SEED = 2026


def kill_points(seed: int) -> list[tuple[str, int]]:
    """Three points drawn from `seed`: mid-epoch in epoch 1 (after its first checkpoints, at steps 5 and 6),
    inside a validation, mid-epoch in epoch 2."""
    rng = random.Random(seed)
    return [("train", rng.choice(range(7, 12))),
            ("validation", rng.choice([6, 12, 18])),
            ("train", rng.choice([s for s in range(13, 24) if s % 6]))]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    run_task(root, "charlm")
    return root


def train(root: Path, *args: str) -> subprocess.CompletedProcess:
    return rnnlab(root, *TRAIN, *args, PYTHONPATH=str(Path(__file__).parent))  # killer.py


def outputs(root: Path) -> dict[str, bytes]:
    return {name: (root / "metrics" / name).read_bytes() for name in ("charlm.json", "charlm_curves.csv")}


def runs(root: Path) -> list:
    client = mlflow.MlflowClient(f"sqlite:///{root}/mlflow.db")
    experiment = client.get_experiment_by_name("rnnlab-charlm")
    return client.search_runs([experiment.experiment_id], order_by=["attribute.start_time ASC"])


@pytest.mark.slow
def test_killed_training_resumes_to_the_same_result(project, figures):
    done = train(project)
    assert done.returncode == 0, done.stderr[-2000:]
    reference = outputs(project)
    bpc = json.loads(reference["charlm.json"])["test"]["bpc"]
    assert not list((project / "checkpoints" / "charlm").iterdir())  # a finished training leaves nothing

    for during, step in kill_points(SEED):
        killed = train(project, "+callbacks.kill._target_=killer.KillAt", f"+callbacks.kill.step={step}",
                        f"+callbacks.kill.during={during}")
        assert killed.returncode == -9, killed.stderr[-2000:]
        killed_run = runs(project)[-1]
        assert killed_run.info.status == "RUNNING"  # nothing in a SIGKILLed process could end it

        resumed = train(project)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert f"resuming the killed run {killed_run.info.run_id}" in resumed.stderr  # a log message
        after = outputs(project)
        drift = abs(json.loads(after["charlm.json"])["test"]["bpc"] - bpc) / bpc
        last = runs(project)
        status = {r.info.run_id: r.info.status for r in last}
        survived = (after == reference and status[killed_run.info.run_id] == "KILLED"
                    and last[-1].data.tags.get("rnnlab.resumed_from") == killed_run.info.run_id)
        figures("kill", during=during, step=step, drift=drift, survived=survived)
        assert drift <= 0.01
        assert after == reference  # metrics and learning curve, byte for byte
        assert status[killed_run.info.run_id] == "KILLED"
        assert last[-1].data.tags["rnnlab.resumed_from"] == killed_run.info.run_id
        assert status[last[-1].info.run_id] == "FINISHED"
    assert "RUNNING" not in {r.info.status for r in runs(project)}


def test_kill_points_cover_mid_epoch_and_validation():
    points = kill_points(SEED)
    assert {during for during, _ in points} == {"train", "validation"}
    assert any(step < 12 for during, step in points if during == "train")
    assert any(step > 12 for during, step in points if during == "train")


def test_checkpoints_live_outside_every_dvc_output():
    """dvc repro deletes a stage's outputs before running it: the resume checkpoints must not be among them."""
    cfg = compose("task=charlm", "paths=pipeline")
    folder = Path(cfg.paths.checkpoint_dir)
    outs = [Path(next(iter(o)) if isinstance(o, dict) else o)
            for stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].values()
            for o in (stage.get("do") or stage).get("outs", [])]  # a foreach stage's outs are under `do`
    assert Path("models/${key}") in outs and not any(folder == o or o in folder.parents for o in outs)


def test_a_failed_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch):
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    from rnnlab import RnnlabError
    from rnnlab.core.resume import AtomicCheckpointIO

    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1}, path)

    def partial_then_full_disk(self, checkpoint, path, storage_options=None):
        Path(path).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", partial_then_full_disk)
    with pytest.raises((OSError, RnnlabError)):
        AtomicCheckpointIO().save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
