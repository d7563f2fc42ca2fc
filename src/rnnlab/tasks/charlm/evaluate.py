"""The character language model's evaluation: bits per character and perplexity on the validation and test
works, and a sample generated from the prompt of conf/task/charlm.yaml (reports/charlm_sample.txt)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from rnnlab.core.io import write_text
from rnnlab.core.trainer import make_trainer
from rnnlab.evaluation import bpc_scores


def score(models: dict, dm, cfg: DictConfig, runs: dict, client) -> dict:
    model, run_id = models["model"], runs.get("model")
    # scoring is one process, whatever strategy trained the model
    trainer = make_trainer(cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False, strategy="auto",
                           devices=1, num_nodes=1, enable_progress_bar=False, enable_model_summary=False)
    scores = {}
    for split, run in (("val", trainer.validate), ("test", trainer.test)):
        result = run(model, datamodule=dm, verbose=False)[0]
        scores[split] = bpc_scores(float(result[f"{split}_bpc"]))
    sample = model.generate(cfg.sample.prompt, cfg.sample.length, cfg.sample.temperature, seed=cfg.seed)
    write_text(Path(cfg.paths.reports_dir) / f"{cfg.task_name}_sample.txt", sample + "\n")
    if run_id:
        client.log_text(run_id, sample, "sample.txt")
    return scores
