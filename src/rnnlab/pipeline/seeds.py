"""The seeds stage: the same training from `seeds` seeds (seed, seed + 1, ...), each scored on the test split, and
every score's mean and standard deviation over them in metrics/<task>_seeds.json.

A CPU run is deterministic on one machine at a fixed thread count, not across CPUs (oneDNN picks other kernels:
the same commit gave sentiment 0.791 on one machine and 0.767 on another) nor across counts (`threads: auto` may
pick others under other load; rnnlab.core.threads), so a comparison that decides anything rests on the spread
over seeds, not on one run. The first seed is the pipeline's own training (train@TASK, scored by evaluate@TASK
into metrics/<task>.json): it is read, not trained again. Each other seed trains and evaluates here as
`rnnlab train` does (test=true), its own MLflow runs tagged with this stage, its files in a scratch folder that
goes when the stage ends; none is registered.
"""

from __future__ import annotations

import copy
import logging
import math
import statistics
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict

from rnnlab import RnnlabError
from rnnlab.core.io import write_json
from rnnlab.core.validate import check_config
from rnnlab.data.splits import read_json

log = logging.getLogger(__name__)


def run_seeds(cfg: DictConfig) -> dict:
    check_config(cfg)
    count = cfg.get("seeds")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise RnnlabError(f"seeds must be a positive integer (how many seeds: +seeds=N; the pipeline's "
                          f"params.yaml tasks.{cfg.task_name}.seeds), got {count!r}")
    first = Path(cfg.paths.metrics_dir) / f"{cfg.task_name}.json"
    if not first.is_file():
        raise RnnlabError(f"{first} is missing: the first seed's scores come from the evaluate stage "
                          f"(dvc repro evaluate@{cfg.task_name})")
    scores = [read_json(first)]
    seeds = list(range(cfg.seed, cfg.seed + count))
    with tempfile.TemporaryDirectory(prefix=f"rnnlab-seeds-{cfg.task_name}-") as scratch:
        for seed in seeds[1:]:
            from rnnlab.pipeline.train import train

            log.info("seeds: training %s with seed %d (%d of %d)", cfg.task_name, seed, seed - cfg.seed + 1, count)
            scores.append(train(one_seed(cfg, seed, Path(scratch) / str(seed))))
    result = {"seeds": seeds, **spread(scores)}
    write_json(Path(cfg.paths.metrics_dir) / f"{cfg.task_name}_seeds.json", result)
    return result


def one_seed(cfg: DictConfig, seed: int, folder: Path) -> DictConfig:
    """cfg for one more seed: trained and evaluated at once, not registered, every file under `folder`."""
    one = copy.deepcopy(cfg)  # keeps the interpolations, resolved later as the original's
    with open_dict(one):
        one.seed, one.test, one.registry.enabled = seed, True, False
        for key in ("model_dir", "metrics_dir", "reports_dir"):
            one.paths[key] = str(folder / key.removesuffix("_dir"))
        one.paths.params_file = str(folder / "params.yaml")
    return one


def spread(runs: list[dict]) -> dict[str, Any]:
    """The scores of several runs (same keys) -> the same tree with {"mean", "std"} at each number: the sample
    standard deviation (n - 1), 0 for one run. A key some run lacks is left out."""
    first = runs[0]
    if isinstance(first, dict):
        keys = [k for k in first if all(isinstance(r, dict) and k in r for r in runs)]
        tree = {k: spread([r[k] for r in runs]) for k in keys}
        return {k: v for k, v in tree.items() if v != {}}
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in runs):
        return {}
    values = [float(v) for v in runs]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.fmean(values), 4), "std": round(std, 4)}
