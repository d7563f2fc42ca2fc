"""Languages in, sampled surnames out: the pyfunc model of the surname generator (`rnnlab generate surname`
samples in-process)."""

from __future__ import annotations

import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import Array, ColSpec, ParamSchema, Schema

from rnnlab.serving.adapters import Adapter, sampling, sampling_params, strings

DEFAULTS = {"n": 5, "temperature": 0.8, "seed": -1}


class Names(Adapter):
    """languages -> DataFrame with "language" and "names" (a list of `n` names); params `n`, `temperature`,
    `seed` (-1: unseeded)."""

    column = "language"

    def predict(self, model, values: list, params: dict) -> pd.DataFrame:
        p, seed = sampling(DEFAULTS, params)
        names = [model.generate(language, int(p["n"]), float(p["temperature"]), seed=seed)
                 for language in strings(values, "language")]
        return pd.DataFrame({"language": list(values), "names": names})

    def signature(self, hparams: dict) -> tuple[ModelSignature, pd.DataFrame]:
        inputs = Schema([ColSpec("string")])
        outputs = Schema([ColSpec("string", "language"), ColSpec(Array("string"), "names")])
        return ModelSignature(inputs, outputs, ParamSchema(sampling_params(DEFAULTS))), \
            pd.DataFrame({"language": [hparams["labels"][0]]})
