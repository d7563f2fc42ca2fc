"""Fit a task's model as the Hydra config says, track it in MLflow, keep the best checkpoint."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rnnlab.evaluate import evaluate, load_checkpoint
from rnnlab.io import atomic_path, write_text
from rnnlab.tracking import ends_run, run_tags, save_run_ref


def curves_csv(client, run_id: str) -> str:
    """One row per validation: the mean training loss since the previous one, and the validation scores."""
    train = client.get_metric_history(run_id, "train_loss_step")
    val = {k: {m.step: m.value for m in client.get_metric_history(run_id, k)} for k in ("val_loss", "val_bpc")}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["step", "train_loss", "val_loss", "val_bpc"])
    prev = -1
    for step in sorted(val["val_loss"]):
        window = [m.value for m in train if prev < m.step <= step]
        mean = sum(window) / len(window) if window else float("nan")
        writer.writerow([step, f"{mean:.4f}", f"{val['val_loss'][step]:.4f}", f"{val['val_bpc'][step]:.4f}"])
        prev = step
    return out.getvalue()


def quiet_trainer(**kwargs) -> L.Trainer:
    """A Trainer that only trains: no logger, checkpoints, progress bar or summary unless asked for."""
    defaults = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    return L.Trainer(**{**defaults, **kwargs})


def train(cfg: DictConfig) -> dict:
    L.seed_everything(cfg.seed, workers=True)
    dm = instantiate(cfg.data)
    # plain containers in hparams keep checkpoints loadable with weights_only=True
    model = instantiate(cfg.module, chars=list(dm.vocab.chars), _convert_="all", **cfg.model)
    logger = instantiate(cfg.logger, tags=run_tags(cfg.task_name, cfg.model.cell, dm.processed_dir, cfg.stage))
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c]  # a null entry switches one off
    trainer = instantiate(cfg.trainer, logger=logger, callbacks=callbacks)

    logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    run_id, client = logger.run_id, logger.experiment
    with ends_run(client, run_id):
        return fit_and_record(cfg, dm, model, trainer, run_id, client)


def fit_and_record(cfg: DictConfig, dm, model, trainer, run_id: str, client) -> dict:
    client.log_text(run_id, OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
    trainer.fit(model, datamodule=dm)

    ckpt_cb = trainer.checkpoint_callback
    best = ckpt_cb.best_model_path or ckpt_cb.last_model_path
    model_dir = Path(cfg.paths.model_dir)
    with atomic_path(model_dir / "model.ckpt") as tmp:
        shutil.copyfile(best, tmp)
    save_run_ref(model_dir / "run.json", run_id, cfg.logger.tracking_uri, cfg.logger.experiment_name)
    client.log_artifact(run_id, str(model_dir / "model.ckpt"), "checkpoints")
    write_text(Path(cfg.paths.metrics_dir) / f"{cfg.task_name}_curves.csv", curves_csv(client, run_id))
    print(f"best checkpoint: {best} -> {model_dir / 'model.ckpt'} (MLflow run {run_id})")

    if not cfg.test:
        return {}
    scores = evaluate(load_checkpoint(best), cfg, run_id=run_id)
    print(f"test bpc {scores['test']['bpc']:.4f}, perplexity {scores['test']['perplexity']:.4f}")
    return scores
