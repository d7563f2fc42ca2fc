"""Contiguous character streams for stateful truncated back-propagation through time.

The corpus is cut into `batch_size` parallel streams; batch i holds the i-th window of every stream,
so the hidden state left by batch i is the right context for batch i+1 (as in
pytorch/examples/word_language_model).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from rnnlab import RnnlabError
from rnnlab.data.sampling import PIN_MEMORY
from rnnlab.data.shakespeare import load_split
from rnnlab.data.vocab import CharVocab


class StreamWindows(Dataset):
    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int):
        streams = ids.size // batch_size
        if streams < 2:
            raise RnnlabError(f"{ids.size} characters cannot fill {batch_size} streams")
        self.data = torch.from_numpy(ids[: streams * batch_size].astype(np.int64)).view(batch_size, streams)
        self.seq_len = seq_len

    def __len__(self) -> int:
        return -(-(self.data.size(1) - 1) // self.seq_len)

    def __getitem__(self, i: int):
        start = i * self.seq_len
        end = min(start + self.seq_len, self.data.size(1) - 1)
        return self.data[:, start:end], self.data[:, start + 1 : end + 1]


class CharStreamDataModule(L.LightningDataModule):
    def __init__(self, processed_dir: str, batch_size: int = 64, seq_len: int = 128,
                 eval_batch_size: int = 16):
        super().__init__()
        for key, value in (("batch_size", batch_size), ("seq_len", seq_len), ("eval_batch_size", eval_batch_size)):
            if int(value) < 1:
                raise RnnlabError(f"data.{key} must be a positive integer, got {value}")
        self.processed_dir = Path(processed_dir)
        self.batch_size, self.seq_len, self.eval_batch_size = batch_size, seq_len, eval_batch_size
        self.vocab = CharVocab.load(self.processed_dir / "vocab.json")

    def model_kwargs(self) -> dict:
        """What the model takes from the data (plain lists: checkpoints load with weights_only=True)."""
        return {"chars": list(self.vocab.chars)}

    def _loader(self, split: str, batch_size: int) -> DataLoader:
        windows = StreamWindows(load_split(self.processed_dir, split), batch_size, self.seq_len)
        # batch_size=None: each item already is a whole (streams x seq_len) batch, served in order
        # its position is in the checkpoints (rnnlab.resume)
        return StatefulDataLoader(windows, batch_size=None, shuffle=False, pin_memory=PIN_MEMORY)

    def train_dataloader(self):
        return self._loader("train", self.batch_size)

    def val_dataloader(self):
        return self._loader("validation", self.eval_batch_size)

    def test_dataloader(self):
        return self._loader("test", self.eval_batch_size)
