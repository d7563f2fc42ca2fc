"""Contiguous character streams for stateful truncated back-propagation through time.

The corpus is cut into `batch_size` parallel streams; batch i holds the i-th window of every stream,
so the hidden state left by batch i is the right context for batch i+1 (as in
pytorch/examples/word_language_model).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from rnnlab import RnnlabError


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
