"""Shared by the many-to-one datasets (one label per sequence): serve the processed splits to a model
(LabelledDataModule). Reading, splitting and saving them is rnnlab.data.splits, which the data stages import
without Lightning."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from datasets import DatasetDict, concatenate_datasets, load_from_disk
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from rnnlab import RnnlabError
from rnnlab.data.augment import AugmentedFrames, FrameAugment
from rnnlab.data.padding import SEQUENCE_KEYS, collate
from rnnlab.data.sampling import PIN_MEMORY, WeightedSampler
from rnnlab.data.splits import SPLITS, read_json

BALANCES = (None, "class_weights", "sampler")


class LabelledDataModule(L.LightningDataModule):
    """data/processed/TASK as padded batches `(inputs, lengths, labels)`: token ids (sentiment, surname) or
    standardised frames (speaker). `balance`: null (as sampled), class_weights (inverse class frequency in
    the loss) or sampler (batches drawn with every class equally likely). `folds` (with `fold`): k-fold
    cross-validation for choosing settings, train and validation pooled and split again (`cross_validation`).
    `augment` (frames only; rnnlab.data.augment.FrameAugment's fields): training rows changed a little each
    time they are drawn (jitter, channel scaling, time warp, crop); null or all 0 leaves them as they are."""

    def __init__(self, task: str, processed_dir: str, batch_size: int = 32, eval_batch_size: int = 256,
                 balance: str | None = None, folds: int | None = None, fold: int = 0,
                 augment: dict | None = None):
        super().__init__()
        for key, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if not isinstance(value, int) or value < 1:
                raise RnnlabError(f"data.{key} must be a positive integer, got {value!r}")
        if balance not in BALANCES:
            raise RnnlabError(f"data.balance must be null, class_weights or sampler, got {balance!r}")
        self.task, self.processed_dir = task, Path(processed_dir)
        self.batch_size, self.eval_batch_size, self.balance = batch_size, eval_batch_size, balance
        try:
            splits = load_from_disk(str(self.processed_dir))
        except (OSError, ValueError) as e:  # missing, or an arrow file cut short
            raise RnnlabError(f"cannot read the processed data at {self.processed_dir} "
                              f"(run `rnnlab preprocess {task}` or dvc repro): {e}") from e
        missing = [s for s in SPLITS if s not in splits]
        kinds = [k for k in SEQUENCE_KEYS if k in splits[SPLITS[0]].column_names] if not missing else []
        if missing or len(kinds) != 1:
            raise RnnlabError(f"{self.processed_dir}: expected splits {', '.join(SPLITS)} with a tokens or "
                              f"frames column; found {dict(splits.column_names)}")
        self.kind = kinds[0]
        self.augment = FrameAugment.from_config(augment)
        if self.augment is not None and self.kind != "frames":
            raise RnnlabError(f"data.augment changes real-valued frames; {task}'s rows are {self.kind}: "
                              "set it to null")
        self.splits = splits if folds is None else cross_validation(splits, folds, fold)
        self.labels = read_json(self.processed_dir / "labels.json")
        # converted once: a tensor per sequence is what collate pads, and far faster than row-wise arrow reads
        self.data = {split: list(zip((torch.tensor(x) for x in self.splits[split][self.kind]),
                                     self.splits[split]["label"])) for split in SPLITS}
        self.counts = np.bincount(self.splits["train"]["label"], minlength=len(self.labels))
        if (self.counts == 0).any():
            raise RnnlabError(f"{self.processed_dir}: no training rows for class "
                              f"{self.labels[int(np.argmin(self.counts))]!r}")

    def model_kwargs(self) -> dict:
        """What the model takes from the data, and what turns raw input into tensors again (plain lists:
        checkpoints load with weights_only=True)."""
        kwargs = {"task": self.task, "num_classes": len(self.labels), "labels": list(self.labels)}
        if self.kind == "tokens":
            vocab = read_json(self.processed_dir / "vocab.json")["tokens"]
            kwargs.update(vocab_size=len(vocab), vocab=vocab)
        else:
            scale = read_json(self.processed_dir / "standardise.json")
            kwargs.update(input_size=len(scale["mean"]), standardise={"mean": scale["mean"], "std": scale["std"]})
        if self.balance == "class_weights":
            # inverse frequency, scaled so that a balanced training set gets weight 1 everywhere
            kwargs["class_weights"] = (self.counts.sum() / (len(self.counts) * self.counts)).tolist()
        return kwargs

    def shown(self, split: str) -> list[str]:
        """Each row of `split` as a person reads it: the text, the name, or its number of frames."""
        columns = self.splits[split].column_names
        for column in ("text", "name"):
            if column in columns:
                return list(self.splits[split][column])
        return [f"{len(x)} frames" for x, _ in self.data[split]]

    def train_dataloader(self):
        # a new generator for each fit, drawn from the global one only when augmenting (plain runs keep their draws)
        rows = self.data["train"] if self.augment is None else AugmentedFrames(self.data["train"], self.augment)
        if self.balance != "sampler":
            return StatefulDataLoader(rows, batch_size=self.batch_size, shuffle=True, collate_fn=collate,
                                      pin_memory=PIN_MEMORY)
        sampler = WeightedSampler([1.0 / self.counts[label] for _, label in self.data["train"]])
        return StatefulDataLoader(rows, batch_size=self.batch_size, sampler=sampler, collate_fn=collate,
                                  pin_memory=PIN_MEMORY)

    def _eval_loader(self, split: str) -> DataLoader:
        # in row order: predictions line up with the rows of the split
        return DataLoader(self.data[split], batch_size=self.eval_batch_size, shuffle=False, collate_fn=collate,  # type: ignore[arg-type]  # a list is a map-style dataset
                          pin_memory=PIN_MEMORY)

    def val_dataloader(self):
        return self._eval_loader("validation")

    def test_dataloader(self):
        return self._eval_loader("test")


def cross_validation(splits: DatasetDict, folds, fold) -> DatasetDict:
    """Train and validation pooled and split into `folds` stratified folds, fold `fold` the validation: the
    j-th pooled row of class c (in row order) falls in fold (j + c) % folds, so every class is spread over the
    folds. For choosing settings when the validation split is too small to tell them apart (speaker: 45
    utterances, one of them 0.022); test stays untouched. The speaker frames' standardisation keeps the
    original train split's statistics."""
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise RnnlabError(f"data.folds must be an integer >= 2 or null, got {folds!r}")
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < folds:
        raise RnnlabError(f"data.fold must be an integer in 0..{folds - 1}, got {fold!r}")
    pooled = concatenate_datasets([splits["train"], splits["validation"]])
    seen: dict[int, int] = {}
    train: list[int] = []
    validation: list[int] = []
    for i, label in enumerate(pooled["label"]):
        j = seen[label] = seen.get(label, -1) + 1
        (validation if (j + label) % folds == fold else train).append(i)
    return DatasetDict(train=pooled.select(train), validation=pooled.select(validation), test=splits["test"])
