"""Classical peers of the labelled tasks: the strongest simple method beside the recurrent model, fitted in the
evaluate stage on the same splits (a task's spec names its own, `Task.peers`; rnnlab.evaluation.classify
scores them). Each setting of a peer's hyperparameters is fitted on train and judged on validation alone;
the chosen one predicts the test split once, so the test split decides nothing."""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Any, NamedTuple

import numpy as np
import torch
from sklearn.model_selection import ParameterGrid

from rnnlab import RnnlabError
from rnnlab.evaluation.classify import classification_scores


class Peer(NamedTuple):
    # baseline.<name> in metrics/<task>.json: test accuracy and macro-F1 (the keys of the bag baseline), the
    # validation accuracy the setting was chosen by, the chosen setting
    scores: dict
    # wall-clock time of the chosen setting's fit on train and prediction of validation and test, and of the
    # whole search; kept out of the metrics file, which must stay byte-identical between runs of one seed
    seconds: float
    search_seconds: float
    settings: int


def tune(dm, name: str, make: Callable[..., Any], grid: dict[str, list],
         inputs: Callable[[str], Any] | None = None) -> Peer:
    """Peer `name` (for messages): `make(**setting)`, an object with scikit-learn's fit(inputs, labels) and
    predict(inputs), for every setting of `grid`, fitted on the train split's `inputs(split)` (by default the
    raw texts or names that dm.shown gives); the setting with the best validation accuracy wins, the first one
    on a tie (list C ascending: a tie goes to the stronger regularisation)."""
    splits = ("train", "validation", "test")
    data = {s: (inputs or dm.shown)(s) for s in splits}
    labels = {s: np.asarray(dm.splits[s]["label"]) for s in splits}
    try:
        settings = list(ParameterGrid(grid))
    except (TypeError, ValueError) as e:  # a value that is not a list, an empty list
        raise RnnlabError(f"peer {name}: its grid {grid} is not one to search: {e}") from e
    start, best = perf_counter(), None
    for setting in settings:
        began = perf_counter()
        try:
            model = make(**setting).fit(data["train"], labels["train"])
        except ValueError as e:  # scikit-learn's word for unusable data: one class, an empty vocabulary
            raise RnnlabError(f"peer {name} {setting}: cannot fit the train split of "
                              f"{dm.processed_dir}: {e}") from e
        val = float(np.mean(model.predict(data["validation"]) == labels["validation"]))
        if best is None or val > best[0]:
            best = (val, setting, model, perf_counter() - began)
    assert best is not None  # a grid holds one setting at least (an empty dict: one, the defaults)
    val, setting, model, seconds = best
    began = perf_counter()
    predicted = torch.as_tensor(np.asarray(model.predict(data["test"])))
    seconds += perf_counter() - began
    # one-hot "probabilities": the same scorer, so the same keys and rounding, as the bag baseline
    one_hot = torch.nn.functional.one_hot(predicted.long(), len(dm.labels)).float()
    scores = {**classification_scores(one_hot, torch.as_tensor(labels["test"])), "val_accuracy": round(val, 4),
              "chosen": {key: float(value) for key, value in setting.items()}}
    return Peer(scores, round(seconds, 2), round(perf_counter() - start, 2), len(settings))
