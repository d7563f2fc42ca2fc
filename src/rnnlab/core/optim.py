"""configure_optimizers for every model the config builds. The optimizer and the learning-rate schedule are
Hydra `_partial_` config nodes (conf/optimizer/, conf/scheduler/), as in ashleve/lightning-hydra-template; a
module keeps them in its hyperparameters as plain dicts, so its checkpoint says how it was trained and still
loads with `torch.load(weights_only=True)`."""

from __future__ import annotations

from hydra.utils import instantiate

# a module built in code rather than from the config: AdamW with torch's defaults (lr 1e-3, weight decay 0.01)
ADAMW = {"_target_": "torch.optim.AdamW", "_partial_": True}
# a schedule's length argument left null in its node is the run's number of optimizer steps
# (CosineAnnealingLR's T_max, OneCycleLR's total_steps, LinearLR's and PolynomialLR's total_iters)
RUN_LENGTH = ("T_max", "total_steps", "total_iters")


def configure_optimizers(module, optimizer: dict | None, scheduler: dict | None):
    """The optimizer over the module's parameters and, with a schedule, Lightning's lr_scheduler dict: the
    schedule steps after every batch (interval "step")."""
    opt = instantiate(optimizer or ADAMW)(module.parameters())
    if not scheduler:
        return opt
    steps = max(1, int(module.trainer.estimated_stepping_batches))
    length = {key: steps for key in RUN_LENGTH if key in scheduler and scheduler[key] is None}
    schedule = instantiate(scheduler, **length)(opt)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
