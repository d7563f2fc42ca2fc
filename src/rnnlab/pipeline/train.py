"""Fit a task's model as the Hydra config says, track it in MLflow, keep the best checkpoint.

Every task trains its recurrent model (`module`, role "model"); a labelled task also trains its one-to-one
`baseline` (role "baseline") on the same data: each is its own MLflow run in the experiment
rnnlab-<task>, and its best checkpoint is kept as <model_dir>/<role>.ckpt. A killed training resumes when
the same command runs again (rnnlab.core.resume).
"""

from __future__ import annotations

import csv
import io
import logging
import shutil
from pathlib import Path
from typing import Any

import lightning as L
import mlflow
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from rnnlab import RnnlabError, tasks
from rnnlab.core.io import atomic_path, write_text, write_yaml
from rnnlab.core.resume import Attempts, fingerprint
from rnnlab.core.threads import set_threads
from rnnlab.core.tracking import check_reachable, ends_run, redact, run_tags, save_run_refs
from rnnlab.core.trainer import make_trainer
from rnnlab.core.validate import check_config

log = logging.getLogger(__name__)


def curves_csv(client, run_ids: list[str], val_metric: str) -> str:
    """One row per validation: the mean training loss since the previous one, and the validation scores.
    `run_ids`: the attempts of one training, oldest first; a resumed attempt's values replace the killed
    one's from the step it resumed at."""
    history: dict[str, dict[int, float]] = {k: {} for k in ("train_loss_step", "val_loss", val_metric)}
    for run_id in run_ids:
        for key, values in history.items():
            values.update({m.step: m.value for m in client.get_metric_history(run_id, key)})
    train, val = history["train_loss_step"], history["val_loss"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["step", "train_loss", "val_loss", val_metric])
    prev = -1
    for step in sorted(val):
        window = [v for s, v in train.items() if prev < s <= step]
        mean = sum(window) / len(window) if window else float("nan")
        writer.writerow([step, f"{mean:.4f}", f"{val[step]:.4f}", f"{history[val_metric][step]:.4f}"])
        prev = step
    return out.getvalue()


def is_main_process() -> bool:
    """Rank 0 of a DDP run (torchrun / SLURM set RANK), or the only process."""
    return rank_zero_only.rank == 0  # type: ignore[attr-defined]  # Lightning sets rank on the function


def train(cfg: DictConfig) -> dict:
    check_config(cfg)
    set_threads(cfg.get("threads", "auto"))
    check_reachable(cfg.logger.tracking_uri)
    L.seed_everything(cfg.seed, workers=True)
    dm = instantiate(cfg.data)
    roles = build(cfg, dm)
    model_dir = Path(cfg.paths.model_dir)
    checkpoints = Path(cfg.paths.checkpoint_dir) / fingerprint(cfg)  # rnnlab.core.resume
    if not cfg.resume:
        shutil.rmtree(checkpoints, ignore_errors=True)
    run_ids = {}
    for role, module in roles.items():
        L.seed_everything(cfg.seed, workers=True)  # each model's run is reproducible on its own
        run_ids[role] = fit(cfg, dm, module, role, Attempts(checkpoints / role))
    if not is_main_process():
        return {}
    save_run_refs(model_dir / "run.json", run_ids, cfg.logger.tracking_uri, cfg.logger.experiment_name)
    write_yaml(Path(cfg.paths.params_file), trained_with(cfg))
    shutil.rmtree(checkpoints)  # every role's model is saved: nothing left to resume
    if not cfg.test:  # the pipeline evaluates and registers in stages of their own
        return {}
    from rnnlab.pipeline.evaluate import run_evaluate  # stage-deps: not run by the train stage (test=false)
    from rnnlab.pipeline.register import run_register  # stage-deps: not run by the train stage (test=false)

    scores = run_evaluate(cfg)
    run_register(cfg)
    return scores


def build(cfg: DictConfig, dm) -> dict:
    """The modules to train, by role: "model" (cfg.module with the data's sizes and vocabulary, cfg.model's
    cell and sizes, the optimizer and schedule) and, for a labelled task, its one-to-one "baseline" (which
    has an optimizer node of its own). Not recursive, so the optimizer and schedule nodes reach the module as
    plain dicts (rnnlab.core.optim completes them), and plain containers in the hyperparameters keep its
    checkpoints loadable with weights_only=True."""
    data = dm.model_kwargs()
    roles = {"model": instantiate(cfg.module, **data, **cfg.model, optimizer=cfg.optimizer,
                                  scheduler=cfg.get("scheduler"), _convert_="all", _recursive_=False)}
    if cfg.get("baseline"):  # the labelled tasks' one-to-one model (conf/base/classifier.yaml)
        roles["baseline"] = instantiate(cfg.baseline, **data, _convert_="all", _recursive_=False)
    return roles


# the budget a model was trained with, besides the model's own settings (which are all kept)
TRAINER_KEYS = ("max_epochs", "max_steps", "precision", "gradient_clip_val", "accumulate_grad_batches")


def trained_with(cfg: DictConfig) -> dict:
    """The numbers the model was trained with, resolved (experiment, model and overrides applied): its cell
    and sizes, the optimiser's settings, the batch and the training budget; the pipeline declares the file
    as DVC params, so `dvc exp show` and `dvc params diff` compare them across runs."""
    def scalars(node) -> dict:
        values: Any = OmegaConf.to_container(node, resolve=True) if node is not None else {}
        return {k: v for k, v in values.items() if not k.startswith("_") and not isinstance(v, (dict, list))}

    def partial(node) -> dict | None:  # an optimizer or schedule: its class and its values
        return None if node is None else {"name": node._target_.rsplit(".", 1)[-1], **scalars(node)}

    out = {"task": cfg.task_name, "seed": cfg.seed, "model": scalars(cfg.model), "module": scalars(cfg.module),
           "optimizer": partial(cfg.optimizer), "scheduler": partial(cfg.get("scheduler"))}
    if cfg.get("baseline"):
        out["baseline"] = {**scalars(cfg.baseline), "optimizer": partial(cfg.baseline.optimizer)}
    out["data"] = {k: v for k, v in scalars(cfg.data).items() if k != "processed_dir"}
    trainer = scalars(cfg.trainer)
    out["trainer"] = {k: trainer[k] for k in TRAINER_KEYS if k in trainer}
    return out


def fit(cfg: DictConfig, dm, module, role: str, attempts: Attempts) -> str:
    """Train `module` (resuming a killed attempt of the same config), copy its best checkpoint to
    <model_dir>/<role>.ckpt; returns its MLflow run id."""
    cell = cfg.model.cell if role == "model" else type(module).__name__
    client = mlflow.MlflowClient(cfg.logger.tracking_uri)
    best = attempts.finished  # killed after this role was done, while a later one trained
    if not best:
        best = train_attempt(cfg, dm, module, role, cell, attempts)
    if not is_main_process():
        return ""
    run_id = attempts.runs[-1]
    target = Path(cfg.paths.model_dir) / f"{role}.ckpt"
    with atomic_path(target) as tmp:
        shutil.copyfile(best, tmp)
    client.log_artifact(run_id, str(target), "checkpoints")
    if role == "model":
        write_text(Path(cfg.paths.metrics_dir) / f"{cfg.task_name}_curves.csv",
                   curves_csv(client, attempts.runs, tasks.get(cfg.task_name).val_metric))
    log.info("%s: best checkpoint %s -> %s (MLflow run %s)", role, best, target, run_id)
    return run_id


def run_config(cfg: DictConfig, role: str) -> dict:
    """The resolved config an MLflow run logs (secrets redacted). A baseline's run logs the baseline's optimizer
    as `optimizer`, without a schedule: Lightning also logs each module's hyperparameters, its optimizer among
    them, in the same flattened namespace, and MLflow refuses a parameter logged twice with two values."""
    config: Any = redact(OmegaConf.to_container(cfg, resolve=True))
    if role == "baseline":
        config.update(optimizer=config["baseline"]["optimizer"], scheduler=None)
    return config


def train_attempt(cfg: DictConfig, dm, module, role: str, cell: str, attempts: Attempts) -> str:
    """One MLflow run of trainer.fit, from attempts' last checkpoint if there is one; returns the best one's path."""
    tags = {**run_tags(cfg.task_name, cell, dm.processed_dir, cfg.stage), "role": role}
    run_name = f"{cfg.task_name}-{cell}" if role == "model" else f"{cfg.task_name}-{role}"
    logger = instantiate(cfg.logger, tags=tags, run_name=run_name)
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c]  # a null entry switches one off
    for cb in callbacks:
        if isinstance(cb, Checkpoint):
            cb.dirpath = str(attempts.dir)  # type: ignore[attr-defined]  # ModelCheckpoint's; each role of each config keeps its own best and last files
    trainer = make_trainer(cfg.trainer, logger=logger, callbacks=callbacks)
    resume_from = attempts.checkpoint

    config = run_config(cfg, role)
    logger.log_hyperparams(config)
    run_id, client = logger.run_id, logger.experiment
    with ends_run(client, run_id):
        if not is_main_process():  # another DDP process: it trains; rank 0 logs, checkpoints and writes
            trainer.fit(module, datamodule=dm, ckpt_path=resume_from)
            return ""
        attempts.start(run_id, client)
        client.log_text(run_id, OmegaConf.to_yaml(config), "config.yaml")
        if len(attempts.runs) > 1:
            log.info("%s: resuming the killed run %s from %s", role, attempts.runs[-2],
                     resume_from or "the start (it was killed before its first checkpoint)")
        try:
            trainer.fit(module, datamodule=dm, ckpt_path=resume_from)
        except FloatingPointError as e:
            client.set_tag(run_id, "diverged", str(e))
            raise RnnlabError(f"{cfg.task_name} {role} diverged: {e}; MLflow run {run_id} marked FAILED "
                              "(a lower optimizer.lr or trainer.gradient_clip_val helps)") from e
        best = next((cb.best_model_path for cb in callbacks if isinstance(cb, ModelCheckpoint)), "")
        best = best or str(attempts.dir / "last.ckpt")  # nothing monitored (fast_dev_run): the final state
        attempts.finish(best)
    return best
