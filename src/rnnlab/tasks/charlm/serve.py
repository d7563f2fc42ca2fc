"""Prompts in, text out: the pyfunc model of the character language model (`rnnlab generate` samples in-process)."""

from __future__ import annotations

import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import ColSpec, ParamSchema, Schema

from rnnlab.serving.adapters import Adapter, sampling, sampling_params, strings

DEFAULTS = {"length": 200, "temperature": 0.8, "seed": -1}


class Prompts(Adapter):
    """prompts -> DataFrame with "text" (prompt + generated characters); params `length`, `temperature` and
    `seed` (-1: unseeded)."""

    column = "prompt"

    def predict(self, model, values: list, params: dict) -> pd.DataFrame:
        p, seed = sampling(DEFAULTS, params)
        return pd.DataFrame({"text": [model.generate(prompt, int(p["length"]), float(p["temperature"]), seed=seed)
                                      for prompt in strings(values, "prompt")]})

    def signature(self, hparams: dict) -> tuple[ModelSignature, pd.DataFrame]:
        inputs = Schema([ColSpec("string")])  # unnamed: a plain list of prompts fits
        outputs = Schema([ColSpec("string", "text")])
        return ModelSignature(inputs, outputs, ParamSchema(sampling_params(DEFAULTS))), \
            pd.DataFrame({"prompt": ["ROMEO:\n"]})
