"""Variable-length sequences into one padded batch: `(inputs, lengths, labels)`, what the classifiers read.

Token ids (one id per step) become a LongTensor (B, T), frames (T, C real values per step) a FloatTensor
(B, T, C); both are padded with 0 after each sequence's end (id 0 is the padding id), and `lengths`
says where that end is, so no model has to trust the pad value. An item is a `(sequence, label)` pair or
a dataset row `{"tokens" or "frames": sequence, "label": label, ...}`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch.nn.utils.rnn import pad_sequence

from rnnlab import RnnlabError

SEQUENCE_KEYS = ("tokens", "frames")


def pad(sequences: Sequence) -> tuple[torch.Tensor, torch.Tensor]:
    """Lists, arrays or tensors of token ids (1-D) or of frames (2-D, T x C) -> (inputs, lengths)."""
    if len(sequences) == 0:
        raise RnnlabError("collate: the batch holds no sequences")
    tensors: list[torch.Tensor] = []
    for i, seq in enumerate(sequences):
        t = torch.as_tensor(seq)
        if t.dim() == 0 or len(t) == 0:
            # packing cannot run a sequence of no steps, and there is no state to classify
            raise RnnlabError(f"collate: sequence {i} of the batch is empty; drop empty sequences when "
                              "preprocessing")
        if t.dim() == 1 and (t.is_floating_point() or t.is_complex()):
            raise RnnlabError(f"collate: sequence {i} is 1-D but not integer token ids ({t.dtype}); "
                              "give frames as (steps, channels), even with one channel")
        if t.dim() > 2:
            raise RnnlabError(f"collate: sequence {i} has shape {tuple(t.shape)}; expected token ids (steps,) "
                              "or frames (steps, channels)")
        if tensors and t.shape[1:] != tensors[0].shape[1:]:
            raise RnnlabError(f"collate: sequence {i} has shape {tuple(t.shape)}, sequence 0 "
                              f"{tuple(tensors[0].shape)}; every sequence in a batch needs the same kind "
                              "and channel count")
        tensors.append(t.long() if t.dim() == 1 else t.float())
    lengths = torch.tensor([len(t) for t in tensors])
    return pad_sequence(tensors, batch_first=True, padding_value=0), lengths


def collate(items: Sequence) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`[(sequence, label), ...]` or dataset rows -> (inputs, lengths, labels); a DataLoader's collate_fn."""
    pairs = [as_pair(item, i) for i, item in enumerate(items)]
    inputs, lengths = pad([seq for seq, _ in pairs])
    labels = torch.tensor([int(label) for _, label in pairs], dtype=torch.long)
    return inputs, lengths, labels


def as_pair(item, i: int):
    if not isinstance(item, Mapping):
        sequence, label = item
        return sequence, label
    keys = [key for key in SEQUENCE_KEYS if key in item]
    if len(keys) != 1 or "label" not in item:
        raise RnnlabError(f"collate: row {i} has keys {sorted(item)}; a row needs 'label' and one of "
                          f"{', '.join(map(repr, SEQUENCE_KEYS))}")
    return item[keys[0]], item["label"]
