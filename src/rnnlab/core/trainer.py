"""Lightning Trainers: from cfg.trainer (make_trainer) or for a quick in-process fit (quiet_trainer), with mixed
precision through CachedMixedPrecision, Lightning's autocast with the weight cast cache on. The config's
resolvers (`${bf16_if_supported:}`, `${times:a,b}`) live in rnnlab.core.resolvers, which this module imports so
that a config composed beside an in-process Trainer resolves as in the `rnnlab` command.

Lightning 2.6 runs every step under `torch.autocast(..., cache_enabled=False)` (Lightning #20921, against a
`no_grad()` forward inside a training step poisoning the cache). A recurrent layer that is not one fused kernel
(the vanilla RNN on a CPU, the from-scratch cells) reuses its weights at every time step, so without the cache
autocast casts them to bf16 again at each step and sums their gradients back at each step: the pipeline's
char RNN trained 10-15 % slower through Lightning than in a plain loop. Lightning #21616 restores the cache for
steps; until a release ships it, CachedMixedPrecision does the same. rnnlab's training steps never run a
forward under `no_grad()`, the case the cache cannot handle.
"""

from __future__ import annotations

from contextlib import contextmanager

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.plugins.precision import MixedPrecision
from omegaconf import DictConfig

import rnnlab.core.resolvers  # noqa: F401  registers the config's resolvers

MIXED = ("16-mixed", "bf16-mixed")


class CachedMixedPrecision(MixedPrecision):
    @contextmanager
    def forward_context(self):
        dtype = torch.bfloat16 if self.precision == "bf16-mixed" else torch.half
        with torch.autocast(self.device, dtype=dtype, cache_enabled=True):
            yield


def precision_kwargs(precision, accelerator: str = "auto", plugins=()) -> dict:
    """Trainer keyword arguments for `precision`: a mixed one becomes a CachedMixedPrecision plugin beside
    `plugins` (Lightning refuses both a precision flag and a precision plugin); any other is passed on."""
    precision = str(precision) if precision is not None else None
    if precision not in MIXED:
        return {"precision": precision, "plugins": list(plugins)}
    device = "cuda" if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available() else "cpu"
    if device == "cpu":
        precision = "bf16-mixed"  # as Lightning does: no float16 autocast on the CPU
    return {"precision": None, "plugins": [*plugins, CachedMixedPrecision(precision, device)]}


def make_trainer(trainer_cfg: DictConfig, **kwargs) -> L.Trainer:
    """cfg.trainer as a Trainer, `kwargs` over its keys."""
    precision = kwargs.pop("precision", trainer_cfg.get("precision"))
    plugins = list(instantiate(trainer_cfg.get("plugins") or []))
    return instantiate(trainer_cfg, **kwargs,
                       **precision_kwargs(precision, trainer_cfg.get("accelerator", "auto"), plugins))


def quiet_trainer(**kwargs) -> L.Trainer:
    """A Trainer that only trains: no logger, checkpoints, progress bar or summary unless asked for."""
    defaults = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    kwargs = {**defaults, **kwargs}
    kwargs.update(precision_kwargs(kwargs.get("precision", "32-true"), kwargs.get("accelerator", "auto"),
                                   kwargs.get("plugins") or []))
    return L.Trainer(**kwargs)
