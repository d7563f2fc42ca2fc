"""Training-time augmentation of real-valued frames (speaker: standardised LPC cepstra, T x 12): each time a
training utterance is drawn it is changed a little, so the model sees a new variant of it every epoch.

FrameAugment draws every change from a generator it is given; AugmentedFrames wraps the training rows with
its own generator (seeded from the global one, which seed_everything has seeded, so runs stay reproducible)
and follows torchdata's Stateful protocol: a resumed training draws the same variants as an unbroken one.
Validation and test rows are never augmented.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields

import torch
from torch.utils.data import Dataset

from rnnlab import RnnlabError

# the time warp's speed changes at this many evenly spaced knots: a few, as a speaker's tempo varies
WARP_SEGMENTS = 4


@dataclass(frozen=True)
class FrameAugment:
    """Applied in this order, each off at 0: `crop` drops up to that many frames in all from the start and
    end (never more than a third of an utterance); `warp` resamples the frame axis along a random monotone
    curve, the length scaled by a factor in [1 - warp, 1 + warp] and the local speed varying as much;
    `scale` multiplies each channel by 1 + N(0, scale^2), one draw per utterance; `jitter` adds N(0,
    jitter^2) to every value (the frames are standardised, so these are in units of a channel's sd)."""

    jitter: float = 0.0
    scale: float = 0.0
    warp: float = 0.0
    crop: int = 0

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0 or (f.name == "crop" and value != int(value)):
                kind = "an integer" if f.name == "crop" else "a number"
                raise RnnlabError(f"data.augment.{f.name} must be {kind} >= 0, got {value!r}")
        if self.warp >= 1:
            raise RnnlabError(f"data.augment.warp must be below 1 (a factor of 1 - warp must stay positive), "
                              f"got {self.warp!r}")

    @classmethod
    def from_config(cls, config: Mapping | None) -> FrameAugment | None:
        """`data.augment` (null, or a mapping of the fields) -> a FrameAugment, or None when every change is 0."""
        if not config:
            return None
        unknown = sorted(set(config) - {f.name for f in fields(cls)})
        if unknown:
            raise RnnlabError(f"data.augment: unknown key(s) {', '.join(unknown)}; "
                              f"known: {', '.join(f.name for f in fields(cls))}")
        augment = cls(**config)
        return augment if augment.active else None

    @property
    def active(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def __call__(self, frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One utterance (T, C) -> a variant (T', C), T' >= 2 unless T is smaller."""
        x = frames
        if self.crop:
            x = crop(x, int(self.crop), generator)
        if self.warp:
            x = time_warp(x, self.warp, generator)
        if self.scale:
            x = x * (1 + self.scale * torch.randn(x.size(1), generator=generator))
        if self.jitter:
            x = x + self.jitter * torch.randn(x.shape, generator=generator)
        return x


def uniform(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(shape, generator=generator, dtype=torch.float64)


def crop(x: torch.Tensor, most: int, generator: torch.Generator) -> torch.Tensor:
    """Up to `most` frames (and at most a third of them) dropped, split at random between start and end."""
    k = int(torch.randint(min(most, len(x) // 3) + 1, (), generator=generator))
    start = int(torch.randint(k + 1, (), generator=generator))
    return x[start:len(x) - k + start]


def time_warp(x: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """The frames read back at new, unevenly spaced times: a new length round(T * U(1 +- strength)), and
    WARP_SEGMENTS stretches of the original whose speeds are U(1 +- strength) before normalising, joined into a
    monotone map from output to input time; frames in between are interpolated linearly."""
    steps = len(x)
    if steps < 2:
        return x
    length = max(2, round(steps * float(1 + strength * (2 * uniform(generator, 1) - 1))))
    speeds = 1 + strength * (2 * uniform(generator, WARP_SEGMENTS) - 1)
    knots = torch.cat([torch.zeros(1, dtype=torch.float64), speeds.cumsum(0)])
    knots = knots / knots[-1]  # input time (0..1) reached at each segment's end
    u = torch.linspace(0, WARP_SEGMENTS, length, dtype=torch.float64)
    segment = u.floor().clamp(max=WARP_SEGMENTS - 1).long()
    at = (knots[segment] + (knots[segment + 1] - knots[segment]) * (u - segment)) * (steps - 1)
    low = at.floor().long().clamp(max=steps - 2)
    w = (at - low).clamp(0, 1).to(x.dtype).unsqueeze(-1)
    return x[low] * (1 - w) + x[low + 1] * w


class AugmentedFrames(Dataset):
    """Training rows `(frames, label)`, each read through `augment` with this dataset's own generator."""

    def __init__(self, rows: list, augment: FrameAugment):
        self.rows, self.augment = rows, augment
        self.generator = torch.Generator().manual_seed(int(torch.randint(2**62, ())))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        frames, label = self.rows[i]
        return self.augment(frames, self.generator), label

    # torchdata's Stateful protocol: StatefulDataLoader keeps this in each checkpoint with its sampler's position
    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
