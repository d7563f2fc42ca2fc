"""Raw input -> predictions: the part of the pyfunc model, `rnnlab serve` and `rnnlab predict` that depends on the
task. Each servable task names one adapter class in its spec (rnnlab.tasks.Task.serve), kept in its folder;
the classes here are what they share.

An adapter has the input `column` of its signature, `signature(hparams)` (MLflow's signature and an input
example, from the checkpoint's hyperparameters) and `predict(model, values, params)` (one raw input per
value -> a DataFrame). The classifiers' `Labels` adds `encode` (one raw input -> the tensor the model reads)
and `read_argument` (the command line's INPUT -> a raw input).
"""

from __future__ import annotations

import math
import reprlib

import numpy as np
import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

from rnnlab import RnnlabError
from rnnlab.shapes.classification import encode_tokens, top_labels


class Adapter:
    column = "text"

    def __init__(self, task):
        self.task = task

    def signature(self, hparams: dict) -> tuple[ModelSignature, pd.DataFrame]:
        raise NotImplementedError

    def predict(self, model, values: list, params: dict) -> pd.DataFrame:
        raise NotImplementedError


class Labels(Adapter):
    """A many-to-one classifier: raw inputs -> DataFrame with "label" and "probability" (the most probable
    class) and "top_labels" / "top_probabilities" (the `top_k` best; the task's top_k unless the param says)."""

    # longer input is a mistake, not a sentence, a name or an utterance: at most `max_steps` `unit`
    max_steps = 500
    unit = "words"
    # what an input is, for messages; an input example for the signature
    what = "text"
    example = ""

    def tokens(self, raw: str) -> list[str]:
        """A text input's tokens (words or characters), as the task's preprocess made them."""
        raise NotImplementedError

    def read_argument(self, argument: str, hparams):
        """`rnnlab predict TASK INPUT`: the raw input that INPUT stands for (a text by default)."""
        return argument

    def encode_value(self, raw, i: int, hparams) -> torch.Tensor:
        """The pyfunc model's input `i` -> what the model reads, or an error naming the input."""
        if not isinstance(raw, str):
            raise RnnlabError(f"input {i}: expected a string, got {type(raw).__name__} {raw!r}")
        return self.encode(raw, hparams)

    def encode(self, raw, hparams) -> torch.Tensor:
        """One raw input -> the (steps,) token ids the model reads; unknown tokens become <unk>, as in training."""
        if not raw.strip():
            raise RnnlabError(f"empty input: give the {self.what} to classify")
        tokens = self.tokens(raw)
        if not tokens:
            raise RnnlabError(f"input {raw!r} holds no {self.unit}")
        return self.check_length(encode_tokens(tokens, hparams["vocab"]))

    def check_length(self, steps: torch.Tensor) -> torch.Tensor:
        if len(steps) > self.max_steps:
            raise RnnlabError(f"input of {len(steps)} {self.unit} is too long for {self.task.name}: at most "
                              f"{self.max_steps}")
        return steps

    def top_k(self, params: dict, labels: list) -> int:
        top_k = int(params.get("top_k") or self.task.top_k)
        if not 1 <= top_k <= len(labels):
            raise RnnlabError(f"top_k must be between 1 and {len(labels)} (the {self.task.name} classes), got {top_k}")
        return top_k

    def predict(self, model, values: list, params: dict) -> pd.DataFrame:
        top_k = self.top_k(params, model.hparams["labels"])
        rows = []
        for i, raw in enumerate(values):
            names, probs = zip(*top_labels(model, self.encode_value(raw, i, model.hparams), top_k))
            rows.append({"label": names[0], "probability": probs[0], "top_labels": list(names),
                         "top_probabilities": list(probs)})
        return pd.DataFrame(rows, columns=["label", "probability", "top_labels", "top_probabilities"])

    def input_schema(self) -> Schema:
        return Schema([ColSpec("string")])  # unnamed: a plain list of texts fits, or a column "text"

    def example_input(self, hparams: dict) -> pd.DataFrame:
        return pd.DataFrame({self.column: [self.example]})

    def signature(self, hparams: dict) -> tuple[ModelSignature, pd.DataFrame]:
        outputs = Schema([ColSpec("string", "label"), ColSpec("double", "probability"),
                          ColSpec(Array("string"), "top_labels"), ColSpec(Array("double"), "top_probabilities")])
        params = ParamSchema([ParamSpec("top_k", "long", self.task.top_k)])
        return ModelSignature(self.input_schema(), outputs, params), self.example_input(hparams)


def strings(values: list, what: str) -> list[str]:
    """The inputs of a text-in model, each checked to be a string."""
    for i, value in enumerate(values):
        if not isinstance(value, str):
            # reprlib: a wrong value can be a whole recording
            raise RnnlabError(f"{what} {i}: expected a string, got {type(value).__name__} {reprlib.repr(value)}")
    return values


def sampling(defaults: dict, params: dict) -> tuple[dict, int | None]:
    """The sampling params over their defaults, and the seed (a negative one: unseeded)."""
    p = {**defaults, **{k: v for k, v in params.items() if v is not None}}
    seed = int(p["seed"])
    return p, None if seed < 0 else seed


def sampling_params(defaults: dict) -> list[ParamSpec]:
    kinds = {int: "long", float: "double"}
    return [ParamSpec(name, kinds[type(value)], value) for name, value in defaults.items()]


def input_values(model_input, column: str) -> list:
    """The raw inputs, one per row: a DataFrame's `column` (or its only column), a dict's `column`, a Series,
    a list or array, or a single value."""
    if isinstance(model_input, pd.DataFrame):
        if column in model_input.columns:
            values = model_input[column]
        elif len(model_input.columns) == 1:
            values = model_input.iloc[:, 0]
        else:
            raise RnnlabError(f"input DataFrame needs a column {column!r}, got {list(model_input.columns)}")
        return list(values)
    if isinstance(model_input, dict):
        if column not in model_input:
            raise RnnlabError(f"input needs the key {column!r}, got {list(model_input)}")
        model_input = model_input[column]
    if isinstance(model_input, pd.Series):
        return list(model_input)
    if isinstance(model_input, str):
        return [model_input]
    if column == "frames" and _depth(model_input) == 2:  # one utterance
        return [model_input]
    if isinstance(model_input, (list, tuple, np.ndarray)):
        return list(model_input)
    raise RnnlabError(f"unsupported input of type {type(model_input).__name__}: give a DataFrame with a column "
                      f"{column!r} or a list")


def _depth(value) -> int:
    depth = 0
    while isinstance(value, (list, tuple, np.ndarray)) and len(value) and not isinstance(value, str):
        value, depth = value[0], depth + 1
    return depth


def is_number(value) -> bool:
    try:
        return math.isfinite(float(value)) and not isinstance(value, (bool, np.bool_))
    except (TypeError, ValueError):
        return False
