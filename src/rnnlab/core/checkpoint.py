"""Checkpoints that say what they hold, and a loader that builds only rnnlab's own modules from them.

A checkpoint records its module's class name; loading looks that name up in an allow-list (the classes the
registered tasks name, rnnlab.tasks.load_checkpoint) and reads
the file with `torch.load(weights_only=True)`, so a checkpoint never names code to import or run.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch

from rnnlab import RnnlabError

CLASS_KEY = "rnnlab_module"


class RecordsClass:
    """Mixed into every rnnlab LightningModule: the checkpoint records which class wrote it."""

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[CLASS_KEY] = type(self).__name__


def load_module(path: str | Path, modules: dict[str, type], task: str | None = None,
                kinds: tuple[str, ...] | None = None, owners: dict[str, str] | None = None):
    """The module in `path`, in eval mode, if its class is one of `modules` (class name -> class: the
    allow-list, rnnlab.tasks.load_checkpoint passes every task's). `task`: the checkpoint must be that task's
    (modules record theirs in their hyperparameters; `owners` names the task of a class only one task uses);
    `kinds`: the class names the caller can use."""
    path = Path(path)
    if not path.is_file():
        raise RnnlabError(f"checkpoint not found: {path} (train first: dvc repro, or pass --checkpoint)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        name, hparams = ckpt.get(CLASS_KEY), ckpt["hyper_parameters"]
    except Exception as e:  # a truncated, foreign or tampered file: say which one
        raise RnnlabError(f"cannot load checkpoint {path}: {type(e).__name__}: {e}") from e
    if name not in modules:
        raise RnnlabError(f"checkpoint {path} records module class {name!r}; rnnlab loads only "
                          f"{', '.join(modules)} (a checkpoint from an older rnnlab or another program: retrain)")
    found = hparams.get("task") or (owners or {}).get(name)
    if task is not None and found != task:
        raise RnnlabError(f"checkpoint {path} is a {name} for task {found!r}, not {task!r}")
    if kinds is not None and name not in kinds:
        raise RnnlabError(f"checkpoint {path} holds a {name} (task {found!r}); this command needs a "
                          f"{' or '.join(kinds)}")
    try:
        model = modules[name](**arguments(modules[name], hparams))
        model.load_state_dict(ckpt["state_dict"])
    except RnnlabError:
        raise
    except Exception as e:
        raise RnnlabError(f"cannot load checkpoint {path}: {type(e).__name__}: {e}") from e
    return model.to("cuda" if torch.cuda.is_available() else "cpu").eval()


def arguments(cls: type, hparams: dict) -> dict:
    """The constructor's arguments from a checkpoint's hyperparameters. A checkpoint written before the
    optimizer and schedule became config nodes (rnnlab.core.optim, December 2026) holds lr, weight_decay and
    a schedule's name instead: training settings a loaded model does not use, so they are left out."""
    kwargs = {k: v for k, v in hparams.items() if not k.startswith("_")}
    if "lr" in kwargs and "lr" not in inspect.signature(cls).parameters:
        kwargs.pop("lr")
        kwargs.pop("weight_decay", None)
        if not isinstance(kwargs.get("scheduler"), dict):
            kwargs.pop("scheduler", None)
    return kwargs


def check_fits(model, model_kwargs: dict, path: str | Path, data_dir: str | Path) -> None:
    """The checkpoint's vocabulary, labels and scaling must be those of the processed data it is scored on."""
    for key, value in model_kwargs.items():
        if key != "class_weights" and model.hparams.get(key) != value:
            raise RnnlabError(f"checkpoint {path}: its {key} differs from that of {data_dir}: the data changed "
                              "since training, retrain the model")
