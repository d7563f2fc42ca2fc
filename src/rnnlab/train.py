"""Fit a task's model as the Hydra config says, track it in MLflow, keep the best checkpoint.

Every task trains its recurrent model (`module`, role "model"); a labelled task also trains its one-to-one
`baseline` (role "baseline") on the same data: each is its own MLflow run in the experiment
rnnlab-<task>, and its best checkpoint is kept as <model_dir>/<role>.ckpt.
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rnnlab import RnnlabError
from rnnlab.evaluate import run_evaluate
from rnnlab.io import atomic_path, write_text
from rnnlab.tracking import check_reachable, ends_run, redact, run_tags, save_run_refs
from rnnlab.validate import check_config


def curves_csv(client, run_id: str, val_metric: str) -> str:
    """One row per validation: the mean training loss since the previous one, and the validation scores."""
    train = client.get_metric_history(run_id, "train_loss_step")
    val = {k: {m.step: m.value for m in client.get_metric_history(run_id, k)} for k in ("val_loss", val_metric)}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["step", "train_loss", "val_loss", val_metric])
    prev = -1
    for step in sorted(val["val_loss"]):
        window = [m.value for m in train if prev < m.step <= step]
        mean = sum(window) / len(window) if window else float("nan")
        writer.writerow([step, f"{mean:.4f}", f"{val['val_loss'][step]:.4f}", f"{val[val_metric][step]:.4f}"])
        prev = step
    return out.getvalue()


def quiet_trainer(**kwargs) -> L.Trainer:
    """A Trainer that only trains: no logger, checkpoints, progress bar or summary unless asked for."""
    defaults = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    return L.Trainer(**{**defaults, **kwargs})


def train(cfg: DictConfig) -> dict:
    check_config(cfg)
    check_reachable(cfg.logger.tracking_uri)
    L.seed_everything(cfg.seed, workers=True)
    dm = instantiate(cfg.data)
    # plain containers in hparams keep checkpoints loadable with weights_only=True
    roles = {"model": instantiate(cfg.module, **dm.model_kwargs(), **cfg.model, _convert_="all")}
    if cfg.get("baseline"):  # the labelled tasks' one-to-one model (conf/task/)
        roles["baseline"] = instantiate(cfg.baseline, **dm.model_kwargs(), _convert_="all")
    model_dir = Path(cfg.paths.model_dir)
    run_ids = {}
    for role, module in roles.items():
        L.seed_everything(cfg.seed, workers=True)  # each model's run is reproducible on its own
        run_ids[role] = fit(cfg, dm, module, role)
    save_run_refs(model_dir / "run.json", run_ids, cfg.logger.tracking_uri, cfg.logger.experiment_name)
    return run_evaluate(cfg) if cfg.test else {}


def fit(cfg: DictConfig, dm, module, role: str) -> str:
    """Train `module`, copy its best checkpoint to <model_dir>/<role>.ckpt; returns its MLflow run id."""
    cell = cfg.model.cell if role == "model" else type(module).__name__
    tags = {**run_tags(cfg.task_name, cell, dm.processed_dir, cfg.stage), "role": role}
    run_name = f"{cfg.task_name}-{cell}" if role == "model" else f"{cfg.task_name}-{role}"
    logger = instantiate(cfg.logger, tags=tags, run_name=run_name)
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c]  # a null entry switches one off
    for cb in callbacks:
        if isinstance(cb, L.pytorch.callbacks.ModelCheckpoint):
            cb.dirpath = str(Path(cb.dirpath) / role)  # each role keeps its own best and last files
    trainer = instantiate(cfg.trainer, logger=logger, callbacks=callbacks)

    config = redact(OmegaConf.to_container(cfg, resolve=True))
    logger.log_hyperparams(config)
    run_id, client = logger.run_id, logger.experiment
    with ends_run(client, run_id):
        client.log_text(run_id, OmegaConf.to_yaml(config), "config.yaml")
        try:
            trainer.fit(module, datamodule=dm)
        except FloatingPointError as e:
            client.set_tag(run_id, "diverged", str(e))
            raise RnnlabError(f"{cfg.task_name} {role} diverged: {e}; MLflow run {run_id} marked FAILED "
                              "(a lower module.lr or trainer.gradient_clip_val helps)") from e
        ckpt_cb = trainer.checkpoint_callback
        best = ckpt_cb.best_model_path or ckpt_cb.last_model_path
        target = Path(cfg.paths.model_dir) / f"{role}.ckpt"
        with atomic_path(target) as tmp:
            shutil.copyfile(best, tmp)
        client.log_artifact(run_id, str(target), "checkpoints")
        if role == "model":
            write_text(Path(cfg.paths.metrics_dir) / f"{cfg.task_name}_curves.csv",
                       curves_csv(client, run_id, cfg.val_metric))
    print(f"{role}: best checkpoint {best} -> {target} (MLflow run {run_id})")
    return run_id
