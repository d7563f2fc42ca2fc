"""Check a composed config before any work starts: a bad value is reported with its key, not as a shape
error from deep inside torch minutes later."""

from __future__ import annotations

import math

from hydra.utils import get_method
from omegaconf import DictConfig, ListConfig, OmegaConf

from rnnlab import RnnlabError

CELLS = ("rnn", "lstm", "gru")


def positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def importable(v) -> bool:
    """A `_target_` that names a callable Hydra can import (torch.optim.AdamW, ...)."""
    try:
        get_method(v)
    except Exception:
        return False
    return True


def quantile_levels(v) -> bool:
    v = list(v) if isinstance(v, (list, tuple, ListConfig)) else None
    return bool(v) and all(number(q) and 0 < q < 1 for q in v) and v == sorted(set(v))


def fraction(v) -> bool:
    return number(v) and 0 <= v < 1


# the optimizer and schedule nodes (conf/optimizer/, conf/scheduler/; the labelled tasks' baseline has its own
# optimizer): partials that configure_optimizers completes (rnnlab.core.optim)
OPTIMIZER_RULES = {
    "_target_": (importable, "an importable optimizer class (torch.optim.AdamW, ...)"),
    "_partial_": (lambda v: v is True, "true (configure_optimizers gives it the parameters)"),
    "lr": (lambda v: number(v) and v > 0, "a number > 0"),
    "weight_decay": (lambda v: number(v) and v >= 0, "a number >= 0"),
}
SCHEDULER_RULES = {
    "_target_": (importable, "an importable schedule class (torch.optim.lr_scheduler.CosineAnnealingLR, ...)"),
    "_partial_": (lambda v: v is True, "true (configure_optimizers gives it the optimizer)"),
}


# key -> (test, what it must be); a key a task's config does not have is skipped. Every value of the config is
# checked here or, when it only makes sense beside the data (a vocabulary's size, the class weights), by the
# module that takes it: never in both places.
RULES = {
    "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "model.cell": (lambda v: v in CELLS, f"one of {', '.join(CELLS)}"),
    "model.impl": (lambda v: v in ("torch", "scratch"), "torch or scratch"),
    "model.nonlinearity": (lambda v: v in ("tanh", "relu"), "tanh or relu"),
    "model.hidden_size": (positive_int, "an integer >= 1"),
    "model.embedding_dim": (positive_int, "an integer >= 1"),
    "model.num_layers": (positive_int, "an integer >= 1"),
    "model.dropout": (fraction, "a number in [0, 1)"),
    "baseline.embedding_dim": (positive_int, "an integer >= 1"),
    "baseline.hidden_size": (positive_int, "an integer >= 1"),
    "baseline.dropout": (fraction, "a number in [0, 1)"),
    "baseline.context": (lambda v: positive_int(v) or v == 0, "an integer >= 0"),
    "module.beam_width": (positive_int, "an integer >= 1"),
    "module.stack": (positive_int, "an integer >= 1"),
    # the forecaster's levels: the median is its point forecast, 0.1 and 0.9 bound the 80 % interval scored
    "module.quantiles": (lambda v: quantile_levels(v) and {0.1, 0.5, 0.9} <= set(v),
                         "increasing numbers in (0, 1) that include 0.1, 0.5 and 0.9"),
    "evaluate.figures": (lambda v: positive_int(v) or v == 0, "an integer >= 0"),
    "data.batch_size": (positive_int, "an integer >= 1"),
    "data.eval_batch_size": (positive_int, "an integer >= 1"),
    "data.seq_len": (positive_int, "an integer >= 1"),
    **{f"optimizer.{key}": rule for key, rule in OPTIMIZER_RULES.items()},
    **{f"baseline.optimizer.{key}": rule for key, rule in OPTIMIZER_RULES.items()},
    **{f"scheduler.{key}": rule for key, rule in SCHEDULER_RULES.items()},
    "lr_floor": (lambda v: number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "trainer.max_epochs": (lambda v: positive_int(v) or v == -1, "an integer >= 1 (or -1: no limit)"),
    "trainer.gradient_clip_val": (lambda v: v is None or (number(v) and v > 0), "a number > 0 or null"),
    "registry.margin": (lambda v: number(v) and v >= 0, "a number >= 0"),
    "threads": (lambda v: v in (None, "auto") or positive_int(v), "an integer >= 1, auto or null"),
}


def check_config(cfg: DictConfig) -> None:
    """Raise RnnlabError naming every key whose value is out of range or of the wrong type."""
    problems = []
    for key, (test, must_be) in RULES.items():
        try:
            value = OmegaConf.select(cfg, key, throw_on_missing=True, default=KeyError)
        except Exception as e:  # a missing value (???) or an interpolation that does not resolve
            problems.append(f"{key}: {e}")
            continue
        if value is KeyError:
            continue
        if not test(value):
            problems.append(f"{key}={value!r} must be {must_be}")
    if problems:
        raise RnnlabError("bad config: " + "; ".join(problems))
