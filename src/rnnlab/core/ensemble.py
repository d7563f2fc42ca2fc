"""Deep ensembles in one LightningModule (Lakshminarayanan et al. 2017): `members` independently initialised
networks in an nn.ModuleList `self.members`, trained side by side on the same batches, each on its own loss and
with its own gradient clipping, so each learns as it would alone; the model predicts their average. The
classifiers (rnnlab.shapes.many_to_one) average class probabilities, the forecaster (rnnlab.shapes.forecasting)
quantiles."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn


def training_loss(losses: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each member's own loss -> (the loss to minimise, the loss to log): their sum, whose gradient for each
    member is that of its own loss alone, and their mean, one member's loss on the curve whatever their number."""
    stacked = torch.stack(losses)
    return stacked.sum(), stacked.mean()


class Ensemble(L.LightningModule):
    """A LightningModule whose parameters all belong to `self.members` (nn.ModuleList): the trainer's gradient
    clipping applies to each member on its own (one global norm over all of them would tie them together)."""

    members: nn.ModuleList

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        if len(self.members) == 1 or not gradient_clip_val:
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        for member in self.members:
            if gradient_clip_algorithm == "value":
                nn.utils.clip_grad_value_(member.parameters(), gradient_clip_val)
            else:
                nn.utils.clip_grad_norm_(member.parameters(), gradient_clip_val)
