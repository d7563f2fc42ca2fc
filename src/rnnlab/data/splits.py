"""The labelled datasets' preprocessing, shared by the many-to-one tasks' data.py (one label per sequence): read
the raw dataset, split it by class, save the splits.

Apart from rnnlab.data.labelled (LabelledDataModule, which serves the splits to a model) so that `rnnlab pull` and
`rnnlab preprocess` import neither Lightning nor torch: each is a DVC stage's process, and those imports are most of
its time (about 6 of 8 s on 2 cores)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict, load_from_disk

from rnnlab import RnnlabError
from rnnlab.core.io import atomic_path, write_json

SPLITS = ("train", "validation", "test")


def load_raw(raw_dir: Path) -> Dataset | DatasetDict:
    try:
        return load_from_disk(str(raw_dir))
    except (FileNotFoundError, ValueError) as e:
        raise RnnlabError(f"cannot read the raw data at {raw_dir}: {e}") from e


def stratified_split(labels: Sequence, held_out: dict[str, float], seed: int) -> dict[str, list[int]]:
    """Row indices per split, train first: each class is shuffled with `seed` and the first
    round(n * fraction) of its rows go to each held-out split in turn, the rest to train.

    Same labels in the same order and the same seed give the same split; every class is in every split
    in (nearly) the proportions asked for.
    """
    for name, fraction in held_out.items():
        if not 0 <= fraction < 1:
            raise RnnlabError(f"split fraction {name}={fraction!r} must be in [0, 1)")
    if sum(held_out.values()) >= 1:
        raise RnnlabError(f"split fractions {held_out} leave nothing for train")
    rows_of = defaultdict(list)
    for i, label in enumerate(labels):
        rows_of[label].append(i)
    rng = np.random.default_rng(seed)
    splits: dict[str, list[int]] = {"train": [], **{name: [] for name in held_out}}
    for label in sorted(rows_of):  # a fixed class order, so the generator's draws do not depend on row order
        rows = rng.permutation(rows_of[label]).tolist()
        start = 0
        for name, fraction in held_out.items():
            count = int(len(rows) * fraction + 0.5)
            splits[name] += rows[start:start + count]
            start += count
        if start >= len(rows):
            raise RnnlabError(f"class {label!r} has {len(rows)} rows: none left for train")
        splits["train"] += rows[start:]
    return {name: sorted(rows) for name, rows in splits.items()}


def class_counts(labels: Sequence[int], names: Sequence[str]) -> dict[str, int]:
    counts = Counter(labels)
    return {name: counts[i] for i, name in enumerate(names)}


def save_splits(out_dir: Path, splits: dict[str, Dataset], **json_files) -> None:
    """One DatasetDict (train/validation/test) plus side files, e.g. vocab=..., stats=... -> vocab.json."""
    with atomic_path(out_dir, is_dir=True) as tmp:
        DatasetDict(splits).save_to_disk(str(tmp))
        for name, obj in json_files.items():
            write_json(tmp / f"{name}.json", obj)


def read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RnnlabError(f"cannot read {path}: {e}") from e
