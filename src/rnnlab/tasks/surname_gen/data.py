"""The surname task's data (its archive reader and preprocess, with the same parameters in params.yaml: the same
splits, vocabulary and languages as the classifier) served to a conditional character model: each name becomes
`<s> c1 ... cn </s>` with its language.

A batch is `(ids, lengths, languages)` (rnnlab.data.padding.collate): ids (B, n + 2) padded with 0, each row's
length counting both symbols. The model reads ids[:, :-1] and predicts ids[:, 1:]; padding (id 0) is never a
target, so no state past a name's end is scored.
"""

from __future__ import annotations

import torch

from rnnlab.data.labelled import LabelledDataModule
from rnnlab.data.splits import SPLITS
from rnnlab.data.vocab import BOS, EOS
from rnnlab.tasks.surname.data import preprocess, read_archive

__all__ = ["SurnameGenDataModule", "preprocess", "read_archive"]


class SurnameGenDataModule(LabelledDataModule):
    """The vocabulary is the classifier's (`<pad>`, `<unk>`, the training characters) with `<s>` and `</s>`
    appended, so a character has the same id in both tasks."""

    def __init__(self, processed_dir: str, task: str = "surname_gen", batch_size: int = 64,
                 eval_batch_size: int = 256):
        super().__init__(task, processed_dir, batch_size, eval_batch_size)
        tokens = super().model_kwargs()["vocab"]
        self.vocab = [*tokens, BOS, EOS]
        bos, eos = len(tokens), len(tokens) + 1
        self.data = {split: [(torch.cat([torch.tensor([bos]), ids, torch.tensor([eos])]), label)
                             for ids, label in self.data[split]] for split in SPLITS}

    def model_kwargs(self) -> dict:
        return {"task": self.task, "num_classes": len(self.labels), "labels": list(self.labels),
                "vocab_size": len(self.vocab), "vocab": list(self.vocab)}

    def train_names(self) -> set[str]:
        """The training split's names, case-folded: a generated name is new if it is not among them."""
        return {name.casefold() for name in self.shown("train")}
