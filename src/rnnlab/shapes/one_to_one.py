"""One-to-one: the baseline without recurrence. An order-free summary of the sequence is one fixed-size
input for an MLP, so what a recurrent model adds over it is what order and context are worth."""

from __future__ import annotations

import torch
from torch import nn

from rnnlab.shapes.classification import SequenceClassifierBase, check_inputs, valid_steps


class BagClassifier(SequenceClassifierBase):
    """Token ids: the mean of their embeddings (a bag of tokens); frames: each channel's mean and standard
    deviation over the valid frames (2 x C features). Then one hidden layer with dropout."""

    def __init__(self, num_classes: int, vocab_size: int | None = None, input_size: int | None = None,
                 embedding_dim: int = 64, hidden_size: int = 128, dropout: float = 0.1,
                 class_weights: list[float] | None = None, optimizer: dict | None = None, scheduler: dict | None = None,
                 task: str | None = None, labels: list[str] | None = None, vocab: list[str] | None = None,
                 standardise: dict[str, list[float]] | None = None):
        super().__init__(num_classes, vocab_size, input_size, class_weights, task, labels, vocab, standardise)
        self.save_hyperparameters()
        self.input_size = input_size
        # padding_idx: the padding ids count neither in the sum nor in the number averaged over
        self.bag = nn.EmbeddingBag(vocab_size, embedding_dim, mode="mean", padding_idx=0) if vocab_size else None
        features = embedding_dim if vocab_size else 2 * input_size  # type: ignore[operator]  # set without vocab_size
        self.mlp = nn.Sequential(nn.Linear(features, hidden_size), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden_size, num_classes))

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        check_inputs(inputs, self.input_size)
        mask = valid_steps(lengths, inputs.size(1), inputs.device)
        return self.mlp(self.summary(inputs, mask))

    def summary(self, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.bag is not None:
            # lengths, not the pad value, say where a sequence ends: whatever lies past it becomes padding
            return self.bag(inputs.masked_fill(~mask, 0))
        pad = ~mask.unsqueeze(-1)
        count = mask.sum(1, keepdim=True)
        mean = inputs.masked_fill(pad, 0).sum(1) / count
        # population std (a one-frame sequence gets 0, not NaN)
        std = ((inputs - mean.unsqueeze(1)).masked_fill(pad, 0) ** 2).sum(1).div(count).sqrt()
        return torch.cat([mean, std], dim=-1)
