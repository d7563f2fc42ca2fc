"""Test-split metrics, a generated sample, and their record in MLflow and in the pipeline's files."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import mlflow
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from rnnlab import RnnlabError
from rnnlab.io import write_json, write_text
from rnnlab.shapes.many_to_many import CharLanguageModel
from rnnlab.tracking import load_run_ref


def load_checkpoint(path: str | Path) -> CharLanguageModel:
    path = Path(path)
    if not path.is_file():
        raise RnnlabError(f"checkpoint not found: {path} (train first: dvc repro, or pass --checkpoint)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        hparams = ckpt["hyper_parameters"]
        model = CharLanguageModel(**{k: v for k, v in hparams.items() if not k.startswith("_")})
        model.load_state_dict(ckpt["state_dict"])
    except RnnlabError:
        raise
    except Exception as e:  # a truncated, foreign or tampered file: say which one
        raise RnnlabError(f"cannot load checkpoint {path}: {type(e).__name__}: {e}") from e
    return model.to("cuda" if torch.cuda.is_available() else "cpu").eval()


def evaluate(model: CharLanguageModel, cfg: DictConfig, run_id: str | None = None) -> dict:
    dm = instantiate(cfg.data)
    if tuple(dm.vocab.chars) != model.vocab.chars:
        raise RnnlabError(f"the checkpoint's vocabulary differs from {dm.processed_dir}/vocab.json: "
                          "the data changed since training, retrain the model")
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False,
                          enable_progress_bar=False, enable_model_summary=False)
    scores = {}
    for split, run in (("val", trainer.validate), ("test", trainer.test)):
        result = run(model, datamodule=dm, verbose=False)[0]
        bpc = float(result[f"{split}_bpc"])
        scores[split] = {"bpc": round(bpc, 4), "perplexity": round(2**bpc, 4)}
    sample = model.generate(cfg.sample.prompt, cfg.sample.length, cfg.sample.temperature, seed=cfg.seed)

    task = cfg.task_name
    write_json(Path(cfg.paths.metrics_dir) / f"{task}.json", scores)
    write_text(Path(cfg.paths.reports_dir) / f"{task}_sample.txt", sample + "\n")
    if run_id:
        client = mlflow.MlflowClient(cfg.logger.tracking_uri)
        for split, values in scores.items():
            for name, value in values.items():
                client.log_metric(run_id, f"{split}_{name}", value)
        client.log_text(run_id, sample, "sample.txt")
    return scores


def run_evaluate(cfg: DictConfig) -> dict:
    """The pipeline's evaluate stage: score the trained model and add the scores to its MLflow run."""
    model_dir = Path(cfg.paths.model_dir)
    model = load_checkpoint(model_dir / "model.ckpt")
    ref = load_run_ref(model_dir / "run.json")
    scores = evaluate(model, cfg, run_id=ref["run_id"] if ref else None)
    for split, values in scores.items():
        print(f"{split}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
    if not all(math.isfinite(v) for values in scores.values() for v in values.values()):
        raise RnnlabError(f"non-finite scores {scores}: the model in {model_dir} diverged")
    return scores
