"""Surviving a killed training: checkpoints written atomically, and a re-run of the same config that resumes.

A role's checkpoints live in <paths.checkpoint_dir>/<fingerprint>/<role>/, the fingerprint being a hash of
the config that decides the result (everything but callbacks, logger, paths and the pipeline's bookkeeping).
Running the same command again -- or `dvc repro`, which deletes a stage's outputs but not this folder --
finds last.ckpt there and carries on: weights, optimizer, scheduler and the loop's position (Lightning), the
training loader's position and shuffle order (torchdata's StatefulDataLoader, rnnlab.data.sampling) and the
random number generators (ResumeCheckpoint). <role>.json lists the MLflow runs of the attempts; the folder
goes once every role's model is saved.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig, OmegaConf

from rnnlab.core.io import atomic_path, write_json

log = logging.getLogger(__name__)

# keys that do not change what is trained (a killed command re-run with another progress bar still resumes)
NOT_FINGERPRINTED = ("callbacks", "logger", "paths", "stage", "test", "registry", "evaluate", "resume")


def fingerprint(cfg: DictConfig) -> str:
    config: Any = OmegaConf.to_container(cfg, resolve=True)  # a DictConfig: a dict
    kept = {k: v for k, v in config.items() if k not in NOT_FINGERPRINTED}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning writes a checkpoint in place: a kill during the write would leave a truncated file where the
    last good one was. This writes a temporary sibling and renames it (conf/trainer/default.yaml: plugins)."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


def rng_states() -> dict:
    states = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
              "numpy": np.random.get_state()[1].tolist()}  # type: ignore[index]  # legacy=True: the tuple form
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate((3, tuple(states["python"]), None))
    np.random.set_state(("MT19937", np.array(states["numpy"], dtype=np.uint32), 0, 0, 0.0))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class ResumeCheckpoint(Checkpoint):
    """The whole training state in <dirpath>/last.ckpt, every `every_n_steps` optimizer steps and after each
    validation, plus the RNG states Lightning leaves out (dropout draws the same masks after a resume).
    A Checkpoint subclass: Lightning runs it after ModelCheckpoint, so the saved state knows the newest best."""

    def __init__(self, every_n_steps: int = 100):
        if not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError(f"every_n_steps must be an integer >= 1, got {every_n_steps!r}")
        self.every_n_steps = every_n_steps
        self.dirpath: str | None = None  # rnnlab.pipeline.train sets it
        self._rng = None

    @property
    def path(self) -> Path:
        return Path(self.dirpath) / "last.ckpt"  # type: ignore[arg-type]  # set by rnnlab.pipeline.train

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            trainer.save_checkpoint(self.path, weights_only=False)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            trainer.save_checkpoint(self.path, weights_only=False)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        checkpoint["rng_states"] = rng_states()

    def on_load_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self._rng = checkpoint.get("rng_states")

    def on_train_start(self, trainer, pl_module) -> None:
        fit_loop = trainer.fit_loop
        if fit_loop._combined_loader_states_to_load:
            # Lightning 2.6 restores the loader's position when it builds the loaders, but a scheduler asking
            # for trainer.estimated_stepping_batches in configure_optimizers has them built before the restore
            fit_loop._load_combined_loader_states()
            iter(fit_loop._data_fetcher)
        # not in on_load_checkpoint: building the loaders after it draws from the generator again
        if self._rng is not None:
            set_rng_states(self._rng)
            self._rng = None


class Attempts:
    """<dir>.json: the MLflow runs that trained this role of this config, oldest first, and whether the last
    one finished (beside the folder: Lightning warns about a checkpoint folder that is not empty)."""

    def __init__(self, dirpath: Path):
        self.dir, self.file = Path(dirpath), Path(dirpath).with_suffix(".json")
        try:
            self.state = json.loads(self.file.read_text())
        except (OSError, ValueError):
            self.state = {"runs": []}

    @property
    def checkpoint(self) -> Path | None:
        last = self.dir / "last.ckpt"
        return last if self.state["runs"] and last.is_file() else None

    @property
    def runs(self) -> list[str]:
        return self.state["runs"]

    def start(self, run_id: str, client) -> None:
        """Record a new attempt; a previous one the kill left RUNNING is marked KILLED and linked both ways. A
        previous run this tracking store does not hold (the store was wiped, or the attempt logged elsewhere) is
        only named: the checkpoint resumes all the same."""
        if self.runs:
            previous = self.runs[-1]
            try:
                status = client.get_run(previous).info.status
            except MlflowException as e:
                if e.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                log.warning("resuming %s: its previous attempt's MLflow run %s is not in this tracking store",
                            self.dir, previous)
            else:
                if status == "RUNNING":
                    client.set_terminated(previous, "KILLED")
                client.set_tag(previous, "rnnlab.resumed_by", run_id)
            client.set_tag(run_id, "rnnlab.resumed_from", previous)
        self.state = {"runs": [*self.runs, run_id]}
        write_json(self.file, self.state)

    def finish(self, best: str) -> None:
        write_json(self.file, {**self.state, "finished": True, "best": best})

    @property
    def finished(self) -> str | None:
        """The best checkpoint of a finished attempt, if it is still there."""
        best = self.state.get("best")
        return best if self.state.get("finished") and best and Path(best).is_file() else None

