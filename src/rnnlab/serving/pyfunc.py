"""Each servable task's trained model as an MLflow `pyfunc` model that takes raw input and returns predictions.

Serialisation: "models from code" (MLflow >= 2.12). `save_pyfunc` passes `python_model` as the path of a
three-line script that imports `RnnlabModel` from this module and hands an instance to
`mlflow.models.set_model`; MLflow copies that script into the model directory and, when loading, runs it
instead of unpickling a `python_model.pkl`. Passing the instance itself would cloudpickle it, and loading
such a model unpickles whatever code the file names. The network travels as the rnnlab checkpoint artifact,
read by `rnnlab.tasks.load_checkpoint` (`torch.load(weights_only=True)`, allow-listed module classes),
and the checkpoint carries the vocabulary, label names and frame standardisation. So loading a model runs
only rnnlab's own code (which must be installed where the model is loaded) and reads only tensors and
plain data.

Inputs, outputs and params are the task's: its spec names an adapter (rnnlab.serving.adapters) in its folder,
e.g. sentiment and surname: texts -> "label", "probability", "top_labels", "top_probabilities"; speaker: the
column "frames"; charlm: prompts -> "text"; surname_gen: languages -> "names"; translate: -> "translation".
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from rnnlab import RnnlabError, tasks
from rnnlab.serving.adapters import input_values

# the script MLflow stores in the model directory and runs on loading ("models from code")
MODEL_CODE = """\
from mlflow.models import set_model

from rnnlab.serving.pyfunc import RnnlabModel

set_model(RnnlabModel())
"""


class RnnlabModel(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined]  # mlflow binds pyfunc to a LazyLoader
    """Raw input -> predictions, for the task named in the model config (`{"task": ...}`)."""

    def load_context(self, context):
        name = (context.model_config or {}).get("task")
        servable = [t.name for t in tasks.discover().values() if t.serve]
        if name not in servable:
            raise RnnlabError(f"model config: task must be one of {', '.join(sorted(servable))}, got {name!r}")
        self.task = tasks.get(name)
        self.adapter = self.task.adapter()
        self.model = tasks.load_checkpoint(context.artifacts["checkpoint"], task=name)

    def predict(self, context, model_input, params: dict | None = None):
        try:
            values = input_values(model_input, self.adapter.column)
            return self.adapter.predict(self.model, values, params or {})
        except RnnlabError as e:
            # MLflow's scoring server answers an MlflowException with its message and a 400; anything else
            # becomes an opaque "unexpected error"
            raise MlflowException(str(e), error_code=INVALID_PARAMETER_VALUE) from e


def signature_and_example(task: str, checkpoint: str | Path) -> tuple[ModelSignature, pd.DataFrame]:
    """The task's model signature and an input example, from the checkpoint's hyperparameters."""
    hparams = torch.load(checkpoint, map_location="cpu", weights_only=True)["hyper_parameters"]
    return tasks.get(task).adapter().signature(hparams)


def _requirements() -> list[str]:
    import lightning

    return [f"mlflow=={mlflow.__version__}", f"torch=={torch.__version__.split('+')[0]}",
            f"lightning=={lightning.__version__}", f"pandas=={pd.__version__}"]


def _model_kwargs(task: str, checkpoint: str | Path, code_dir: str) -> dict:
    tasks.get(task).adapter()  # a known task that can be served
    checkpoint = Path(checkpoint)
    # fail here, not in whoever loads the model: the checkpoint must be this task's
    tasks.load_checkpoint(checkpoint, task=task)
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
