"""English sentences in, Spanish out: the pyfunc model of the translator (`rnnlab translate` in-process)."""

from __future__ import annotations

import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

from rnnlab import RnnlabError
from rnnlab.serving.adapters import Adapter, strings


class Sentences(Adapter):
    """sentences -> DataFrame with "translation"; param `beam_width` (0: the model's own)."""

    def predict(self, model, values: list, params: dict) -> pd.DataFrame:
        beam = int(params.get("beam_width") or 0)
        if beam < 0:
            raise RnnlabError(f"beam_width must be >= 1 (or 0: the model's), got {beam}")
        return pd.DataFrame({"translation": [model.translate(sentence, beam or None)
                                             for sentence in strings(values, "sentence")]})

    def signature(self, hparams: dict) -> tuple[ModelSignature, pd.DataFrame]:
        inputs = Schema([ColSpec("string")])
        outputs = Schema([ColSpec("string", "translation")])
        params = ParamSchema([ParamSpec("beam_width", "long", 0)])
        example = pd.DataFrame({"text": ["In the beginning God created the heaven and the earth."]})
        return ModelSignature(inputs, outputs, params), example
