"""The surname generator's evaluation: bits per character of the held-out names (overall and per language), and
names sampled for every language, scored for novelty and by the many-to-one surname classifier."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from omegaconf import DictConfig

from rnnlab import RnnlabError
from rnnlab.core.io import write_text
from rnnlab.evaluation import bpc_scores
from rnnlab.shapes.classification import encode_tokens, probabilities
from rnnlab.shapes.one_to_many import SurnameGenerator
from rnnlab.tasks import load_checkpoint


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


def score(models: dict, dm, cfg: DictConfig, runs: dict, client) -> dict:
    """Bits per character of the held-out names (each name's characters and its end symbol, given its language),
    and `sample.per_language` names sampled for every language: the share that are new (not in the training
    split, ignoring case), the share that are distinct, and the share the surname classifier assigns to the
    language they were generated for, against chance (1 / number of languages)."""
    model, run_id = models["model"], runs.get("model")
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
