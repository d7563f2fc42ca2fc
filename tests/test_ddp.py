"""Lightning DDP on the CPU: two processes (torchrun, gloo) train the surname classifier for a few steps."""

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from conftest import run_task, scratch_env


@pytest.mark.slow
def test_two_ddp_processes_agree_and_only_rank_0_records(tmp_path):
    run_task(tmp_path, "surname")
    probes = tmp_path / "probes"
    probes.mkdir()
    env = scratch_env(tmp_path, RNNLAB_PROBE_DIR=str(probes), PYTHONPATH=str(Path(__file__).parent), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "rnnlab.cli", "train", "task=surname", "experiment=smoke_classifier", "paths=pipeline",
           "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs=1",
           "+trainer.limit_train_batches=4",
           "+trainer.limit_val_batches=2", "callbacks.progress_bar=null", "registry.enabled=false",
           "+callbacks.probe._target_=ddp_probe.ParamProbe"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]

    ranks = [json.loads((probes / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world_size"] == ranks[1]["world_size"] == 2
    assert ranks[0] == ranks[1]  # the same parameters after a step: the gradients were averaged

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("rnnlab-surname").experiment_id])
    assert sorted(r.data.tags["role"] for r in runs) == ["baseline", "model"]  # one run per model, from rank 0
    assert all(r.info.status == "FINISHED" for r in runs)
    assert json.loads((tmp_path / "metrics" / "surname.json").read_text())["test"]["accuracy"] > 0
    assert sorted(p.name for p in (tmp_path / "models" / "surname").iterdir()) == ["baseline.ckpt", "model.ckpt",
                                                                                   "run.json"]
    assert not any((tmp_path / "checkpoints").rglob("*.ckpt"))
