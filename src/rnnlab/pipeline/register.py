"""The register stage (`rnnlab register task=TASK`): the evaluated model becomes a version of the MLflow
registered model rnnlab-<task>, and the champion gate (rnnlab.serving.registry) decides whether the alias
moves to it. Its own stage, after evaluate: scoring a model and publishing it are separate steps."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from rnnlab import RnnlabError
from rnnlab.core.tracking import load_run_ref
from rnnlab.core.validate import check_config
from rnnlab.serving.registry import Decision, register
from rnnlab.tasks import get


def run_register(cfg: DictConfig) -> Decision | None:
    check_config(cfg)
    task = get(cfg.task_name)
    model_dir = Path(cfg.paths.model_dir)
    if not cfg.registry.enabled:
        print("registry: disabled (registry.enabled=false); the model is not registered")
        return None
    if task.serve is None:
        print(f"registry: no pyfunc adapter for {task.name} yet; the model is not registered")
        return None
    run_id = ((load_run_ref(model_dir / "run.json") or {}).get("runs") or {}).get("model")
    if not run_id:
        raise RnnlabError(f"{model_dir / 'run.json'} names no MLflow run of the model: train and evaluate it first")
    return register(task.name, model_dir / "model.ckpt", run_id, cfg.logger.tracking_uri, cfg.registry.margin,
                    cfg.registry.alias)
