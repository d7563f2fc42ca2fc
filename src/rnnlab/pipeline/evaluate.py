"""The evaluate stage: score the trained models of a task on the test (and validation) split with the task's
evaluator (its spec in rnnlab.tasks), and record the scores in metrics/<task>.json, the reports, and the
MLflow runs that trained the models. Registering the model is the register stage's (rnnlab.pipeline.register).

Each evaluator says what it scores: a language model its bits per character and a sample, a classifier its
accuracy, macro-F1 and per-class precision/recall beside its one-to-one baseline and the majority class, a
forecaster its MAE/RMSE beside statistical baselines, a translator BLEU/chrF beside copying the source.
"""

from __future__ import annotations

import math
from pathlib import Path

import mlflow
from hydra.utils import instantiate
from omegaconf import DictConfig

from rnnlab import RnnlabError
from rnnlab.core.checkpoint import check_fits
from rnnlab.core.io import write_json
from rnnlab.core.threads import set_threads
from rnnlab.core.tracking import load_run_ref
from rnnlab.core.validate import check_config
from rnnlab.evaluation import flatten
from rnnlab.tasks import get, load_checkpoint


def run_evaluate(cfg: DictConfig) -> dict:
    """Score the trained models and add the scores to their MLflow runs."""
    check_config(cfg)
    set_threads(cfg.get("threads", "auto"))
    task = get(cfg.task_name)
    model_dir = Path(cfg.paths.model_dir)
    dm = instantiate(cfg.data)
    roles = ("model", "baseline") if cfg.get("baseline") else ("model",)
    models = {}
    for role in roles:
        path = model_dir / f"{role}.ckpt"
        models[role] = load_checkpoint(path, task=task.name)
        check_fits(models[role], dm.model_kwargs(), path, dm.processed_dir)
    runs = (load_run_ref(model_dir / "run.json") or {}).get("runs", {})
    client = mlflow.MlflowClient(cfg.logger.tracking_uri)
    scores = task.resolve(task.evaluate)(models, dm, cfg, runs, client)
    flat = flatten(scores)
    for name, value in flat.items():
        print(f"{name} {value:.4f}")
    if not all(math.isfinite(v) for v in flat.values()):  # before writing: the last good metrics file stays
        if runs.get("model"):
            client.set_tag(runs["model"], "diverged", f"non-finite test scores {flat}")
            client.set_terminated(runs["model"], "FAILED")
        raise RnnlabError(f"non-finite scores {scores}: the model in {model_dir} diverged")
    write_json(Path(cfg.paths.metrics_dir) / f"{task.name}.json", scores)
    if runs.get("model"):
        for name, value in flat.items():
            client.log_metric(runs["model"], name, value)
    return scores
