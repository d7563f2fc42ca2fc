"""The character language model's evaluation: bits per character and perplexity on the validation and test
works, its classical peer (a Kneser-Ney n-gram model, rnnlab.tasks.charlm.peers) on the same works, and a sample
generated from the prompt of conf/task/charlm.yaml (reports/charlm_sample.txt)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from rnnlab.core.io import write_text
from rnnlab.core.trainer import make_trainer
from rnnlab.evaluation import bpc_scores, table
from rnnlab.tasks.charlm.peers import kn_ngram


def score(models: dict, dm, cfg: DictConfig, runs: dict, client) -> dict:
    model, run_id = models["model"], runs.get("model")
    # scoring is one process, whatever strategy trained the model
    trainer = make_trainer(cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False, strategy="auto",
                           devices=1, num_nodes=1, enable_progress_bar=False, enable_model_summary=False)
    scores = {}
    for split, run in (("val", trainer.validate), ("test", trainer.test)):
        result = run(model, datamodule=dm, verbose=False)[0]
        scores[split] = bpc_scores(float(result[f"{split}_bpc"]))
    peer = kn_ngram(dm)
    scores["baseline"] = {"kn_ngram": peer.scores}
    reports = Path(cfg.paths.reports_dir)
    # its runtime beside the metrics, not in them (metrics/charlm.json is byte-identical run to run)
    write_text(reports / f"{cfg.task_name}_peers.csv", table(["peer", "seconds"], [("kn_ngram", peer.seconds)]))
    sample = model.generate(cfg.sample.prompt, cfg.sample.length, cfg.sample.temperature, seed=cfg.seed)
    write_text(reports / f"{cfg.task_name}_sample.txt", sample + "\n")
    if run_id:
        client.log_text(run_id, sample, "sample.txt")
        client.log_metric(run_id, "baseline_kn_ngram_seconds", peer.seconds)
    return scores
