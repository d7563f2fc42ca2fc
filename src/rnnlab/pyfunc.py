"""Each task's trained model as an MLflow `pyfunc` model that takes raw input and returns predictions.

Serialisation: "models from code" (MLflow >= 2.12). `save_pyfunc` passes `python_model` as the path of a
three-line script that imports `RnnlabModel` from this module and hands an instance to
`mlflow.models.set_model`; MLflow copies that script into the model directory and, when loading, runs it
instead of unpickling a `python_model.pkl`. Passing the instance itself would cloudpickle it, and loading
such a model unpickles whatever code the file names. The network travels as the rnnlab checkpoint artifact,
read by `rnnlab.checkpoint.load_checkpoint` (`torch.load(weights_only=True)`, allow-listed module classes),
and the checkpoint carries the vocabulary, label names and frame standardisation. So loading a model runs
only rnnlab's own code (which must be installed where the model is loaded) and reads only tensors and
plain data.

Inputs and outputs, per task (text tasks: one unnamed string column in the signature, so a plain list of
strings, or a DataFrame with one column, e.g. "text"; speaker: a DataFrame or dict with the column "frames"):
- sentiment, surname: texts (snippets / surnames) -> DataFrame with "label" and "probability" (the
  most probable class) and "top_labels" / "top_probabilities" (the `top_k` best; 3 for surname, 1 otherwise,
  changed with the `top_k` param);
- speaker: column "frames", one utterance per row: frames x channels numbers (nested lists) -> as above;
- charlm: prompts -> DataFrame with "text" (prompt + generated characters); params `length`,
  `temperature` and `seed` (-1: unseeded).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

from rnnlab import RnnlabError
from rnnlab.checkpoint import load_checkpoint
from rnnlab.predict import check_length, encode, standardise, top_labels

TASKS = ("sentiment", "surname", "speaker", "charlm", "surname_gen", "translate")
INPUT_COLUMN = {"sentiment": "text", "surname": "text", "speaker": "frames", "charlm": "prompt",
                "surname_gen": "language", "translate": "text"}
DEFAULT_TOP_K = {"sentiment": 1, "surname": 3, "speaker": 1}
GENERATE_DEFAULTS = {"length": 200, "temperature": 0.8, "seed": -1}
NAMES_DEFAULTS = {"n": 5, "temperature": 0.8, "seed": -1}
MODULE_KINDS = {"charlm": ("CharLanguageModel",), "surname_gen": ("SurnameGenerator",),
                "translate": ("Seq2SeqTranslator",)}

# the script MLflow stores in the model directory and runs on loading ("models from code")
MODEL_CODE = """\
from mlflow.models import set_model

from rnnlab.pyfunc import RnnlabModel

set_model(RnnlabModel())
"""


class RnnlabModel(mlflow.pyfunc.PythonModel):
    """Raw input -> predictions, for the task named in the model config (`{"task": ...}`)."""

    def load_context(self, context):
        self.task = (context.model_config or {}).get("task")
        if self.task not in TASKS:
            raise RnnlabError(f"model config: task must be one of {', '.join(TASKS)}, got {self.task!r}")
        kinds = MODULE_KINDS.get(self.task, ("SequenceClassifier", "BagClassifier"))
        self.model = load_checkpoint(context.artifacts["checkpoint"], task=self.task, kinds=kinds)

    def predict(self, context, model_input, params: dict | None = None):
        try:
            return self._predict(model_input, params or {})
        except RnnlabError as e:
            # MLflow's scoring server answers an MlflowException with its message and a 400; anything else
            # becomes an opaque "unexpected error"
            raise MlflowException(str(e), error_code=INVALID_PARAMETER_VALUE) from e

    def _predict(self, model_input, params: dict):
        values = input_values(model_input, INPUT_COLUMN[self.task])
        if self.task == "charlm":
            return self._generate(values, params)
        if self.task == "surname_gen":
            return self._names(values, params)
        if self.task == "translate":
            return self._translate(values, params)
        labels = self.model.hparams["labels"]
        top_k = int(params.get("top_k") or DEFAULT_TOP_K[self.task])
        if not 1 <= top_k <= len(labels):
            raise RnnlabError(f"top_k must be between 1 and {len(labels)} (the {self.task} classes), got {top_k}")
        rows = []
        for i, raw in enumerate(values):
            names, probs = zip(*top_labels(self.model, self._encode(raw, i), top_k))
            rows.append({"label": names[0], "probability": probs[0], "top_labels": list(names),
                         "top_probabilities": list(probs)})
        return pd.DataFrame(rows, columns=["label", "probability", "top_labels", "top_probabilities"])

    def _encode(self, raw, i: int) -> torch.Tensor:
        if self.task != "speaker":
            if not isinstance(raw, str):
                raise RnnlabError(f"input {i}: expected a string, got {type(raw).__name__} {raw!r}")
            return encode(self.task, raw, self.model.hparams)
        hparams = self.model.hparams
        steps = standardise(check_frames(raw, len(hparams["standardise"]["mean"]), i), hparams)
        check_length(self.task, steps)
        return steps

    def _generate(self, prompts: list, params: dict) -> pd.DataFrame:
        p, seed = sampling(GENERATE_DEFAULTS, params)
        return pd.DataFrame({"text": [self.model.generate(prompt, int(p["length"]), float(p["temperature"]), seed=seed)
                                      for prompt in strings(prompts, "prompt")]})

    def _names(self, languages: list, params: dict) -> pd.DataFrame:
        p, seed = sampling(NAMES_DEFAULTS, params)
        names = [self.model.generate(language, int(p["n"]), float(p["temperature"]), seed=seed)
                 for language in strings(languages, "language")]
        return pd.DataFrame({"language": list(languages), "names": names})

    def _translate(self, sentences: list, params: dict) -> pd.DataFrame:
        beam = int(params.get("beam_width") or 0)  # 0: the model's own beam width
        if beam < 0:
            raise RnnlabError(f"beam_width must be >= 1 (or 0: the model's), got {beam}")
        return pd.DataFrame({"translation": [self.model.translate(sentence, beam or None)
                                             for sentence in strings(sentences, "sentence")]})


def strings(values: list, what: str) -> list[str]:
    """The inputs of a text-in model, each checked to be a string."""
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise RnnlabError(f"{what} {i}: expected a string, got {type(value).__name__} {value!r}")
    return values


def sampling(defaults: dict, params: dict) -> tuple[dict, int | None]:
    """The sampling params over their defaults, and the seed (a negative one: unseeded)."""
    p = {**defaults, **{k: v for k, v in params.items() if v is not None}}
    seed = int(p["seed"])
    return p, None if seed < 0 else seed


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


def check_frames(utterance, channels: int, i: int) -> list[list[float]]:
    """One utterance as frames x `channels` finite floats, or an error naming the frame and the problem."""
    if isinstance(utterance, np.ndarray):
        utterance = list(utterance)
    if not isinstance(utterance, (list, tuple)) or not len(utterance):
        raise RnnlabError(f"utterance {i}: empty input, expected frames x {channels} numbers")
    frames = []
    for n, frame in enumerate(utterance, 1):
        if isinstance(frame, (str, bytes)) or not hasattr(frame, "__len__"):
            raise RnnlabError(f"utterance {i} frame {n}: {frame!r} is not a list of {channels} numbers")
        if len(frame) != channels:
            raise RnnlabError(f"utterance {i} frame {n}: {len(frame)} values, expected {channels} channels "
                              "per frame")
        row = []
        for value in frame:
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            if isinstance(value, (bool, np.bool_)) or not math.isfinite(number):
                raise RnnlabError(f"utterance {i} frame {n}: value {value!r} is not a finite number")
            row.append(number)
        frames.append(row)
    return frames


def signature_and_example(task: str, checkpoint: str | Path) -> tuple[ModelSignature, pd.DataFrame]:
    """The task's model signature and an input example (for speaker: a short utterance of the checkpoint's
    channel count, at the training data's mean)."""
    hparams = torch.load(checkpoint, map_location="cpu", weights_only=True)["hyper_parameters"]
    if task == "charlm":
        inputs = Schema([ColSpec("string")])  # unnamed: a plain list of prompts fits
        outputs = Schema([ColSpec("string", "text")])
        params = ParamSchema([ParamSpec("length", "long", GENERATE_DEFAULTS["length"]),
                              ParamSpec("temperature", "double", GENERATE_DEFAULTS["temperature"]),
                              ParamSpec("seed", "long", GENERATE_DEFAULTS["seed"])])
        return ModelSignature(inputs, outputs, params), pd.DataFrame({"prompt": ["ROMEO:\n"]})
    if task == "translate":
        inputs = Schema([ColSpec("string")])
        outputs = Schema([ColSpec("string", "translation")])
        params = ParamSchema([ParamSpec("beam_width", "long", 0)])
        example = pd.DataFrame({"text": ["In the beginning God created the heaven and the earth."]})
        return ModelSignature(inputs, outputs, params), example
    if task == "surname_gen":
        inputs = Schema([ColSpec("string")])
        outputs = Schema([ColSpec("string", "language"), ColSpec(Array("string"), "names")])
        params = ParamSchema([ParamSpec("n", "long", NAMES_DEFAULTS["n"]),
                              ParamSpec("temperature", "double", NAMES_DEFAULTS["temperature"]),
                              ParamSpec("seed", "long", NAMES_DEFAULTS["seed"])])
        return ModelSignature(inputs, outputs, params), pd.DataFrame({"language": [hparams["labels"][0]]})
    if task == "speaker":
        inputs = Schema([ColSpec(Array(Array("double")), "frames")])
        mean = [float(m) for m in hparams["standardise"]["mean"]]
        example = pd.DataFrame({"frames": [[mean, mean, mean]]})
    else:
        inputs = Schema([ColSpec("string")])  # unnamed: a plain list of texts fits, or a column "text"
        example = pd.DataFrame({"text": ["What a lovely, happy day!" if task == "sentiment" else "Nakamura"]})
    outputs = Schema([ColSpec("string", "label"), ColSpec("double", "probability"),
                      ColSpec(Array("string"), "top_labels"), ColSpec(Array("double"), "top_probabilities")])
    params = ParamSchema([ParamSpec("top_k", "long", DEFAULT_TOP_K[task])])
    return ModelSignature(inputs, outputs, params), example


def _requirements() -> list[str]:
    import lightning

    return [f"mlflow=={mlflow.__version__}", f"torch=={torch.__version__.split('+')[0]}",
            f"lightning=={lightning.__version__}", f"pandas=={pd.__version__}"]


def _model_kwargs(task: str, checkpoint: str | Path, code_dir: str) -> dict:
    if task not in TASKS:
        raise RnnlabError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    checkpoint = Path(checkpoint)
    # fail here, not in whoever loads the model: the checkpoint must be this task's
    load_checkpoint(checkpoint, task=task)
    signature, example = signature_and_example(task, checkpoint)
    code = Path(code_dir) / "rnnlab_model.py"
    code.write_text(MODEL_CODE)
    return {"python_model": str(code), "artifacts": {"checkpoint": str(checkpoint)},
            "model_config": {"task": task}, "signature": signature, "input_example": example,
            "pip_requirements": _requirements()}


def save_pyfunc(task: str, checkpoint: str | Path, path: str | Path) -> Path:
    """Write the MLflow model directory for `task` from `checkpoint` to `path` (which must not exist)."""
    with tempfile.TemporaryDirectory() as code_dir:
        mlflow.pyfunc.save_model(str(path), **_model_kwargs(task, checkpoint, code_dir))
    return Path(path)


def log_pyfunc(task: str, checkpoint: str | Path, run_id: str | None = None):
    """Log the model to run `run_id` (default: the active run, or a new one) under the name `task`;
    returns MLflow's ModelInfo."""
    active = mlflow.active_run()
    with tempfile.TemporaryDirectory() as code_dir:
        kwargs = _model_kwargs(task, checkpoint, code_dir)
        if active is not None and run_id in (None, active.info.run_id):
            return mlflow.pyfunc.log_model(name=task, **kwargs)
        with mlflow.start_run(run_id=run_id, nested=active is not None):
            return mlflow.pyfunc.log_model(name=task, **kwargs)
