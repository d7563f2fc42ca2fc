"""Score the trained models of a task on the test (and validation) split; record the scores in
metrics/<task>.json, the reports, and the MLflow runs that trained the models; then register the model
and let the champion gate decide whether it becomes rnnlab-<task>@champion (registry.py).

A character language model: bits per character and perplexity, and a generated sample. A surname generator:
bits per character (overall and per language), and names sampled for every language, scored for novelty and by
the many-to-one surname classifier. A classifier:
accuracy, macro-F1 and per-class precision/recall of the recurrent model, the same headline scores of its
one-to-one baseline and the majority-class accuracy, a confusion CSV and the misclassified test rows. A
forecaster: MAE and RMSE per series on its test horizon (and validation stretch), the same for the
task's statistical baselines fitted here, a CSV of every forecast and a PNG of history, truth and forecasts.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import mlflow
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torchmetrics.functional.classification import (multiclass_accuracy, multiclass_f1_score,
                                                    multiclass_precision, multiclass_recall)

from rnnlab import RnnlabError
from rnnlab.checkpoint import check_fits, load_checkpoint
from rnnlab.evaluate_translate import score_translator
from rnnlab.io import write_json, write_text
from rnnlab.predict import encode_tokens, probabilities
from rnnlab.pyfunc import TASKS as PYFUNC_TASKS
from rnnlab.registry import register
from rnnlab.shapes.forecasting import Forecaster
from rnnlab.shapes.many_to_many import CharLanguageModel
from rnnlab.shapes.one_to_many import SurnameGenerator
from rnnlab.shapes.seq2seq import Seq2SeqTranslator
from rnnlab.tracking import load_run_ref
from rnnlab.trainer import make_trainer
from rnnlab.validate import check_config


def run_evaluate(cfg: DictConfig) -> dict:
    """The pipeline's evaluate stage: score the trained models and add the scores to their MLflow runs."""
    check_config(cfg)
    model_dir = Path(cfg.paths.model_dir)
    dm = instantiate(cfg.data)
    roles = ("model", "baseline") if cfg.get("baseline") else ("model",)
    models = {}
    for role in roles:
        path = model_dir / f"{role}.ckpt"
        models[role] = load_checkpoint(path, task=cfg.task_name)
        check_fits(models[role], dm.model_kwargs(), path, dm.processed_dir)
    runs = (load_run_ref(model_dir / "run.json") or {}).get("runs", {})
    client = mlflow.MlflowClient(cfg.logger.tracking_uri)
    if isinstance(models["model"], CharLanguageModel):
        scores = score_language_model(models["model"], dm, cfg, runs.get("model"), client)
    elif isinstance(models["model"], SurnameGenerator):
        scores = score_generator(models["model"], dm, cfg, runs.get("model"), client)
    elif isinstance(models["model"], Forecaster):
        from rnnlab.forecast_report import score_forecaster  # statsmodels and matplotlib: this task only

        scores = score_forecaster(models["model"], dm, cfg, runs.get("model"), client)
    elif isinstance(models["model"], Seq2SeqTranslator):
        scores = score_translator(models["model"], dm, cfg, runs.get("model"), client)
    else:
        scores = score_classifiers(models, dm, cfg, runs, client)
    flat = flatten(scores)
    for name, value in flat.items():
        print(f"{name} {value:.4f}")
    if not all(math.isfinite(v) for v in flat.values()):  # before writing: the last good metrics file stays
        if runs.get("model"):
            client.set_tag(runs["model"], "diverged", f"non-finite test scores {flat}")
            client.set_terminated(runs["model"], "FAILED")
        raise RnnlabError(f"non-finite scores {scores}: the model in {model_dir} diverged")
    write_json(Path(cfg.paths.metrics_dir) / f"{cfg.task_name}.json", scores)
    if runs.get("model"):
        for name, value in flat.items():
            client.log_metric(runs["model"], name, value)
    if runs.get("model") and cfg.registry.enabled:
        if cfg.task_name in PYFUNC_TASKS:
            register(cfg.task_name, model_dir / "model.ckpt", runs["model"], cfg.logger.tracking_uri,
                     cfg.registry.margin, cfg.registry.alias)
        else:
            print(f"registry: no pyfunc wrapper for {cfg.task_name} yet; the model is not registered")
    return scores


def flatten(scores: dict, prefix: str = "") -> dict[str, float]:
    """{"test": {"accuracy": 0.9}} -> {"test_accuracy": 0.9}: MLflow metric names."""
    flat = {}
    for key, value in scores.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}_"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def score_language_model(model: CharLanguageModel, dm, cfg: DictConfig, run_id: str | None, client) -> dict:
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


def bpc_scores(bpc: float) -> dict:
    # a diverged model's bpc can pass 1024, where 2**bpc overflows: inf, which run_evaluate reports
    perplexity = math.inf if bpc >= 1024 else 2**bpc
    return {"bpc": round(bpc, 4), "perplexity": round(perplexity, 4)}


@torch.inference_mode()
def names_nll(model: SurnameGenerator, loader) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per name the loader serves: summed negative log-likelihood (nats), symbols scored, language id."""
    nll, count, language = [], [], []
    for ids, lengths, languages in loader:
        n, c = model.name_nll((ids.to(model.device), lengths, languages.to(model.device)))
        nll.append(n.float().cpu())
        count.append(c.cpu())
        language.append(languages)
    return torch.cat(nll), torch.cat(count), torch.cat(language)


def score_generator(model: SurnameGenerator, dm, cfg: DictConfig, run_id: str | None, client) -> dict:
    """Bits per character of the held-out names (each name's characters and its end symbol, given its language),
    and `sample.per_language` names sampled for every language: the share that are new (not in the training
    split, ignoring case), the share that are distinct, and the share the surname classifier assigns to the
    language they were generated for, against chance (1 / number of languages)."""
    classifier = load_checkpoint(cfg.classifier, task="surname", kinds=("SequenceClassifier", "BagClassifier"))
    labels = list(dm.labels)
    if classifier.hparams["labels"] != labels:
        raise RnnlabError(f"the classifier {cfg.classifier} knows the languages {classifier.hparams['labels']}, "
                          f"the generator {labels}: retrain them on the same data")
    def bits(nll, count):
        return float(nll.sum() / count.sum()) / math.log(2)

    scores = {"val": bpc_scores(bits(*names_nll(model, dm.val_dataloader())[:2]))}
    nll, count, language = names_nll(model, dm.test_dataloader())
    scores["test"] = bpc_scores(bits(nll, count))
    per_language = {label: {"test_bpc": round(bits(nll[language == i], count[language == i]), 4)}
                    for i, label in enumerate(labels)}

    train_names, sample = dm.train_names(), cfg.sample
    lines, novel, unique, agree = [], 0, 0, 0
    for i, label in enumerate(labels):
        names = model.generate(label, sample.per_language, sample.temperature, seed=cfg.seed + i)
        vocab = classifier.hparams["vocab"]
        judged = probabilities(classifier, [encode_tokens(list(name), vocab) for name in names]).argmax(1).tolist()
        new = [name.casefold() not in train_names for name in names]
        right = [j == i for j in judged]
        per_language[label].update(novel=round(sum(new) / len(names), 4),
                                   classifier_agreement=round(sum(right) / len(names), 4))
        novel, agree = novel + sum(new), agree + sum(right)
        unique += len(set(names))
        shown = [name + ("+" if n else "") + ("" if r else f" [{labels[j]}]")
                 for name, n, r, j in zip(names, new, right, judged)][:sample.shown]
        lines.append(f"{label} (new {per_language[label]['novel']:.2f}, classifier agrees "
                     f"{per_language[label]['classifier_agreement']:.2f}): {', '.join(shown)}")
    total, chance = len(labels) * sample.per_language, 1 / len(labels)
    scores["generated"] = {"novel": round(novel / total, 4), "unique": round(unique / total, 4),
                           "classifier_agreement": round(agree / total, 4), "chance": round(chance, 4),
                           "ratio": round(agree / total / chance, 4)}
    scores["per_language"] = per_language
    text = (f"# {sample.per_language} names per language sampled at temperature {sample.temperature} "
            f"(seed {cfg.seed} + language number); the first {sample.shown} of each.\n"
            "# name+ : not in the training split; [Language] : the surname classifier's language where it is "
            "another\n" + "\n".join(lines) + "\n")
    write_text(Path(cfg.paths.reports_dir) / f"{cfg.task_name}_samples.txt", text)
    if run_id:
        client.log_text(run_id, text, f"{cfg.task_name}_samples.txt")
    return scores


@torch.inference_mode()
def predict_proba(model, loader) -> torch.Tensor:
    """Class probabilities (N, classes) of every row the loader serves, in its order."""
    return torch.cat([model.predict_step((inputs.to(model.device), lengths), i).float().cpu()
                      for i, (inputs, lengths, _) in enumerate(loader)])


def classification_scores(probs: torch.Tensor, target: torch.Tensor, labels: list[str] | None = None) -> dict:
    """Accuracy (the fraction right), macro-F1 and, with `labels`, each class's precision and recall."""
    k, preds = probs.size(1), probs.argmax(1)
    scores = {"accuracy": multiclass_accuracy(preds, target, k, average="micro"),
              "macro_f1": multiclass_f1_score(preds, target, k, average="macro")}
    scores = {name: round(float(value), 4) for name, value in scores.items()}
    if labels is not None:
        precision = multiclass_precision(preds, target, k, average=None)
        recall = multiclass_recall(preds, target, k, average=None)
        scores["per_class"] = {label: {"precision": round(float(p), 4), "recall": round(float(r), 4)}
                               for label, p, r in zip(labels, precision, recall)}
    return scores


def score_classifiers(models: dict, dm, cfg: DictConfig, runs: dict, client) -> dict:
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
    confidence, preds = probs.max(1)
    rows = [(labels[a], labels[p]) for a, p in zip(target["test"].tolist(), preds.tolist())]
    confusion = table(["actual", "predicted"], rows)
    # the most confident mistakes first: they show what the model gets systematically wrong
    wrong = sorted(((c, shown, labels[a], labels[p]) for shown, a, p, c in zip(
        dm.shown("test"), target["test"].tolist(), preds.tolist(), confidence.tolist()) if a != p), reverse=True)
    errors = [(shown, actual, predicted, f"{c:.4f}") for c, shown, actual, predicted in wrong]
    write_text(Path(cfg.paths.metrics_dir) / f"{task}_confusion.csv", confusion)
    write_text(reports / f"{task}_errors.csv", table(["input", "actual", "predicted", "probability"], errors))
    if runs.get("model"):
        client.log_text(runs["model"], confusion, f"{task}_confusion.csv")
        client.log_artifact(runs["model"], str(reports / f"{task}_errors.csv"))
    if runs.get("baseline"):
        for name, value in bag.items():
            client.log_metric(runs["baseline"], f"test_{name}", value)
    return scores


def table(header: list[str], rows) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()
