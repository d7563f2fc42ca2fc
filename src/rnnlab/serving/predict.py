"""`rnnlab predict TASK INPUT`: a trained classifier on raw input, from its checkpoint alone.

The checkpoint carries what turns raw input into tensors (the token vocabulary, the label names, the frame
standardisation), so predicting needs neither the processed data nor the config. The task's adapter
(rnnlab.serving.adapters.Labels, in the task's folder) reads INPUT and encodes it, as the pyfunc model does.
"""

from __future__ import annotations

from pathlib import Path

from rnnlab import RnnlabError, tasks
from rnnlab.serving.adapters import Labels
from rnnlab.shapes.classification import top_labels


def classifiers() -> tuple[str, ...]:
    """The tasks `rnnlab predict` serves: those whose adapter returns labels."""
    return tuple(t.name for t in tasks.discover().values()
                 if t.serve and issubclass(t.resolve(t.serve), Labels))


def predict(task: str, raw: str, checkpoint: str | Path, top_k: int) -> list[tuple[str, float]]:
    """The `top_k` most probable labels of one raw input, with their probabilities."""
    if task not in classifiers():
        raise RnnlabError(f"unknown task {task!r}; choose one of {', '.join(classifiers())}")
    spec = tasks.get(task)
    model = tasks.load_checkpoint(checkpoint, task=task, kinds=tuple(spec.module_classes()))
    labels = model.hparams["labels"]
    if not 1 <= top_k <= len(labels):
        raise RnnlabError(f"--top-k must be between 1 and {len(labels)} (the {task} classes), got {top_k}")
    adapter = spec.adapter()
    return top_labels(model, adapter.encode(adapter.read_argument(raw, model.hparams), model.hparams), top_k)
