"""Synthetic sequence tasks that isolate long-range memory."""

from __future__ import annotations

import torch


def adding_problem(n: int, steps: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Hochreiter & Schmidhuber (1997), as in Le et al. (2015).

    Each sequence has `steps` frames of (value ~ U(0, 1), marker). Exactly two markers are 1, one in
    each half; the target is the sum of the two marked values. Predicting 1.0 scores MSE 1/6 ≈ 0.167.
    """
    if steps < 2:
        raise ValueError(f"the adding problem needs at least 2 steps, got {steps}")
    gen = torch.Generator().manual_seed(seed)
    values = torch.rand(n, steps, generator=gen)
    half = steps // 2
    first = torch.randint(0, half, (n,), generator=gen)
    second = torch.randint(half, steps, (n,), generator=gen)
    markers = torch.zeros(n, steps)
    rows = torch.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    target = values[rows, first] + values[rows, second]
    return torch.stack([values, markers], dim=-1), target
