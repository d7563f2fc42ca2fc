"""The evaluator of the labelled many-to-one tasks (sentiment, speaker, surname): the recurrent model and its
one-to-one baseline on the test (and validation) split, the majority class, the classical peers the task's spec
names (rnnlab.evaluation.peers), a confusion CSV and the test rows it gets wrong, the most confident first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)

from rnnlab.core.io import write_text
from rnnlab.evaluation import table
from rnnlab.tasks import get


@torch.inference_mode()
def predict_proba(model, loader) -> torch.Tensor:
    """Class probabilities (N, classes) of every row the loader serves, in its order."""
    return torch.cat([model.predict_step((inputs.to(model.device), lengths), i).float().cpu()
                      for i, (inputs, lengths, _) in enumerate(loader)])


def classification_scores(probs: torch.Tensor, target: torch.Tensor, labels: list[str] | None = None) -> dict:
    """Accuracy (the fraction right), macro-F1 and, with `labels`, each class's precision and recall."""
    k, preds = probs.size(1), probs.argmax(1)
    scores: dict[str, Any] = {"accuracy": multiclass_accuracy(preds, target, k, average="micro"),
              "macro_f1": multiclass_f1_score(preds, target, k, average="macro")}
    scores = {name: round(float(value), 4) for name, value in scores.items()}
    if labels is not None:
        precision = multiclass_precision(preds, target, k, average=None)
        recall = multiclass_recall(preds, target, k, average=None)
        scores["per_class"] = {label: {"precision": round(float(p), 4), "recall": round(float(r), 4)}
                               for label, p, r in zip(labels, precision, recall)}
    return scores


def score(models: dict, dm, cfg: DictConfig, runs: dict, client) -> dict:
    labels = dm.labels
    target = {split: torch.tensor(dm.splits[split]["label"]) for split in ("validation", "test")}
    probs = predict_proba(models["model"], dm.test_dataloader())
    bag = classification_scores(predict_proba(models["baseline"], dm.test_dataloader()), target["test"])
    majority = int(dm.counts.argmax())  # the most frequent class in train
    scores = {
        "test": classification_scores(probs, target["test"], labels),
        "val": classification_scores(predict_proba(models["model"], dm.val_dataloader()), target["validation"]),
        "baseline": {"bag": bag,
                     "majority": {"accuracy": round(float((target["test"] == majority).float().mean()), 4)}},
    }
    task, reports = cfg.task_name, Path(cfg.paths.reports_dir)
    spec = get(task)
    peers = {name: spec.resolve(ref)(dm) for ref, name in zip(spec.peers, spec.peer_names)}
    scores["baseline"].update({name: peer.scores for name, peer in peers.items()})
    confidence, preds = probs.max(1)
    rows = [(labels[a], labels[p]) for a, p in zip(target["test"].tolist(), preds.tolist())]
    confusion = table(["actual", "predicted"], rows)
    # the most confident mistakes first: they show what the model gets systematically wrong
    wrong = sorted(((c, shown, labels[a], labels[p]) for shown, a, p, c in zip(
        dm.shown("test"), target["test"].tolist(), preds.tolist(), confidence.tolist()) if a != p), reverse=True)
    errors = [(shown, actual, predicted, f"{c:.4f}") for c, shown, actual, predicted in wrong]
    write_text(reports / f"{task}_confusion.csv", confusion)
    write_text(reports / f"{task}_errors.csv", table(["input", "actual", "predicted", "probability"], errors))
    if peers:  # their runtimes: beside the metrics, not in them (metrics/<task>.json is byte-identical run to run)
        write_text(reports / f"{task}_peers.csv", table(["peer", "seconds", "search_seconds", "settings"], [
            (name, p.seconds, p.search_seconds, p.settings) for name, p in peers.items()]))
    if runs.get("model"):
        client.log_text(runs["model"], confusion, f"{task}_confusion.csv")
        client.log_artifact(runs["model"], str(reports / f"{task}_errors.csv"))
        for name, peer in peers.items():
            client.log_metric(runs["model"], f"baseline_{name}_seconds", peer.seconds)
    if runs.get("baseline"):
        for name, value in bag.items():
            client.log_metric(runs["baseline"], f"test_{name}", value)
    return scores
