"""Samplers a resumed training can put back where the killed one stopped, and the loaders' memory setting.

torchdata's StatefulDataLoader (every task's training loader) saves its position in each Lightning
checkpoint and, for a plain shuffle, the shuffle's generator too. A sampler of our own keeps up by drawing
from its own generator and following torchdata's Stateful protocol: its state is the generator at the start
of the epoch and how many items the epoch has yielded, so the restored epoch replays the same order from there.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Sampler

# every task's loaders: page-locked host memory makes the copies to a GPU faster (and is useless without one)
PIN_MEMORY = torch.cuda.is_available()


class ResumableSampler(Sampler):
    """Subclasses draw one epoch's items (indices or batches) from self.generator in `draw`."""

    def __init__(self):
        # seeded from the global generator, which seed_everything has seeded: runs stay reproducible
        self.generator = torch.Generator().manual_seed(int(torch.randint(2**62, ())))
        self._start, self._skip, self._yielded = None, 0, 0

    def draw(self) -> list:
        raise NotImplementedError

    def __iter__(self):
        self._start = self.generator.get_state()
        items = self.draw()
        skip, self._skip = self._skip, 0
        self._yielded = skip
        for item in items[skip:]:
            self._yielded += 1
            yield item

    def state_dict(self) -> dict:
        start = self._start if self._start is not None else self.generator.get_state()
        return {"generator": start, "yielded": self._yielded}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self._skip = state["yielded"]


class WeightedSampler(ResumableSampler):
    """Rows drawn with replacement in proportion to `weights` (class balancing), one epoch = len(weights)."""

    def __init__(self, weights: list[float]):
        super().__init__()
        self.weights = torch.as_tensor(weights, dtype=torch.double)

    def draw(self) -> list[int]:
        return torch.multinomial(self.weights, len(self.weights), replacement=True, generator=self.generator).tolist()

    def __len__(self) -> int:
        return len(self.weights)


class BucketSampler(ResumableSampler):
    """Batches of rows of similar length (translate, summarize, caption): a recurrent decoder runs as many steps
    as a batch's longest row, so one long row among short ones makes every row pay for it. Shuffle, cut into
    pools of `pool` batches, sort each pool by length, cut it into batches, shuffle the batches (a resumed run
    replays them)."""

    def __init__(self, lengths: Sequence[int], batch_size: int, pool: int = 50):
        super().__init__()
        self.lengths, self.batch_size, self.pool = list(lengths), batch_size, pool

    def draw(self) -> list[list[int]]:
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        size = self.batch_size * self.pool
        batches = []
        for start in range(0, len(order), size):
            chunk = sorted(order[start:start + size], key=self.lengths.__getitem__)
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        return [batches[i] for i in torch.randperm(len(batches), generator=self.generator).tolist()]

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size
