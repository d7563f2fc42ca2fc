"""Character LM benchmarks, at the pipeline's char LM settings (composed from conf/ as `dvc repro` trains it):
training throughput of rnn/lstm/gru at fp32 and bf16 autocast through the Lightning module; the same model in a
plain PyTorch loop at two sizes, each plain step paired with a Lightning step (the ratio); the data loader's share
of a step; and the pipeline's char LM trained for equal wall time at each precision, then scored on the test plays.

    python benchmarks/bench_charlm.py --out metrics/bench_gpu.json   # (benchmarks/bench.py runs it for metrics/bench.json)

Step times come from interleaved rounds, pooled: a throughput is the batch's characters over the lower decile
of the step times (the steps the shared machine's neighbours left alone: they only ever add time, and a median
swings by 15 % from round to round here). The equal-time runs give the whole fit's wall-clock rate instead.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np
import torch
import torch.nn.functional as F
import yaml
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.profilers import SimpleProfiler

from rnnlab.core.config import compose
from rnnlab.core.io import write_json
from rnnlab.core.optim import ADAMW
from rnnlab.core.recurrent import detach_state
from rnnlab.core.trainer import quiet_trainer
from rnnlab.data.streams import StreamWindows
from rnnlab.data.vocab import CharVocab
from rnnlab.shapes.many_to_many import CharLanguageModel

ROOT = Path(__file__).resolve().parents[1]
PROCESSED = Path("data/processed/charlm")


def pipeline_settings() -> dict:
    """The char LM `dvc repro` trains: params.yaml's tasks.charlm.experiment and .model composed with conf/."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())["tasks"]["charlm"]
    cfg = compose(f"experiment={params['experiment']}", f"model={params['model']}", conf=ROOT / "conf")
    return {"cell": cfg.model.cell, "embedding_dim": cfg.model.embedding_dim, "hidden_size": cfg.model.hidden_size,
            "num_layers": cfg.model.num_layers, "dropout": cfg.model.dropout, "batch_size": cfg.data.batch_size,
            "seq_len": cfg.data.seq_len, "lr": cfg.optimizer.lr, "weight_decay": cfg.optimizer.weight_decay,
            "gradient_clip_val": cfg.trainer.gradient_clip_val, "precision": cfg.trainer.precision,
            "experiment": params["experiment"]}


def synchronized_clock() -> float:
    if torch.cuda.is_available():  # CUDA runs ahead of the host: time finished work only
        torch.cuda.synchronize()
    return time.perf_counter()


class StepTimes(Callback):
    """Seconds between the ends of consecutive training steps, after `warmup` steps (allocation, thread start)."""

    def __init__(self, warmup: int):
        self.warmup, self.ends = warmup, []

    def on_train_batch_end(self, trainer, *args):
        self.ends.append(synchronized_clock())

    @property
    def seconds(self) -> list[float]:
        ends = self.ends[self.warmup:]
        return [b - a for a, b in zip(ends, ends[1:])]


def corpus() -> tuple[list[str], np.ndarray]:
    if (PROCESSED / "train.npy").is_file():
        return list(CharVocab.load(PROCESSED / "vocab.json").chars), np.load(PROCESSED / "train.npy")
    chars = [chr(c) for c in range(32, 117)]  # no pipeline data yet: random ids of the same vocabulary size
    return chars, np.random.default_rng(0).integers(1, len(chars) + 1, 2_000_000).astype(np.int16)


def model_and_loader(s: dict, cell: str, size: dict) -> tuple[CharLanguageModel, torch.utils.data.DataLoader]:
    chars, ids = corpus()
    torch.manual_seed(0)
    optimizer = {**ADAMW, "lr": s["lr"], "weight_decay": s["weight_decay"]}  # no schedule: steps are timed, not fits
    model = CharLanguageModel(chars, cell=cell, embedding_dim=s["embedding_dim"], dropout=s["dropout"],
                              optimizer=optimizer, **size)
    loader = torch.utils.data.DataLoader(StreamWindows(ids, s["batch_size"], s["seq_len"]), batch_size=None)
    return model, loader


def lightning_steps(s: dict, cell: str, precision: str, size: dict, steps: int, warmup: int,
                    profiler=None, callbacks: tuple = ()) -> list[float]:
    model, loader = model_and_loader(s, cell, size)
    timer = StepTimes(warmup)
    trainer = quiet_trainer(max_steps=warmup + steps + 1, precision=precision, limit_val_batches=0,
                            gradient_clip_val=s["gradient_clip_val"], callbacks=[timer, *callbacks],
                            profiler=profiler)
    trainer.fit(model, train_dataloaders=loader)
    return timer.seconds


class PlainTwin(Callback):
    """The same model, batches and update as the Lightning run (carried state, AdamW, clipping, the same autocast,
    the same device), written as a bare PyTorch loop on a twin of the model, one step after each Lightning step:
    the two steps of a pair run within a few milliseconds of each other, so a busy spell on the shared machine
    slows both (timed in rounds, one path after the other, the ratio swung from 0.84 to 1.13 here)."""

    def __init__(self, s: dict, cell: str, precision: str, size: dict, warmup: int):
        self.model, loader = model_and_loader(s, cell, size)
        self.batches = iter(loader)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model.to(self.device).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=s["lr"], weight_decay=s["weight_decay"])
        self.autocast = torch.autocast(self.device, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")
        self.clip, self.warmup, self.state = s["gradient_clip_val"], warmup, None
        self.lightning, self.plain, self.last = [], [], None

    def step(self):
        x, y = next(self.batches)
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        with self.autocast:
            logits, state = self.model(x, self.state)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        self.state = detach_state(state)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()

    def on_train_batch_end(self, trainer, *args):
        # a Lightning step: from the end of the previous plain step to here (fetch, hooks, step, logging)
        start = synchronized_clock()
        self.step()
        end = synchronized_clock()
        if trainer.global_step > self.warmup + 1:  # the first pair needs a previous plain step
            self.lightning.append(start - self.last)
            self.plain.append(end - start)
        self.last = end


def chars_per_second(s: dict, rounds: list[list[float]], quantile: float = 0.1) -> float:
    """Characters/s at a quantile (by default the lower decile) of the step times of all rounds."""
    return s["batch_size"] * s["seq_len"] / float(np.quantile([t for r in rounds for t in r], quantile))


def throughput(s: dict, cells: list[str], precisions: list[str], steps: int, warmup: int,
               rounds: int) -> tuple[dict, dict]:
    """Characters/s at the lower decile and at the median step time, by cell and precision."""
    size = {"hidden_size": s["hidden_size"], "num_layers": s["num_layers"]}
    timed = {}
    for _ in range(rounds):
        for cell in cells:
            for precision in precisions:
                timed.setdefault((cell, precision), []).append(lightning_steps(s, cell, precision, size, steps, warmup))
    result, median = {}, {}
    for (cell, precision), r in timed.items():
        result.setdefault(cell, {})[precision] = round(chars_per_second(s, r))
        median.setdefault(cell, {})[precision] = round(chars_per_second(s, r, 0.5))
        print(f"{cell:5s} {precision:11s} {result[cell][precision]:10,d} chars/s (median step "
              f"{median[cell][precision]:,d})", file=sys.stderr)
    return result, median


def lightning_vs_plain(s: dict, sizes: dict, cells: list[str], steps: int, warmup: int) -> dict:
    """Each Lightning step paired with a plain-loop step of a twin model (PlainTwin): characters/s at each path's
    median step, the median of the pairs' time ratios, and Lightning's own time a step (median difference)."""
    precision = s["precision"]
    result = {"precision": precision, "sizes": sizes, "steps": steps, "target_ratio": 0.95}
    for cell in cells:
        for name, size in sizes.items():
            twin = PlainTwin(s, cell, precision, size, warmup)
            lightning_steps(s, cell, precision, size, steps, warmup, callbacks=[twin])
            light, plain = np.array(twin.lightning), np.array(twin.plain)
            chars = s["batch_size"] * s["seq_len"]
            pair = {"lightning": round(chars / np.median(light)), "plain": round(chars / np.median(plain)),
                    "ratio": round(float(np.median(plain / light)), 3),
                    "lightning_ms_per_step": round(float(np.median(light - plain)) * 1e3, 2)}
            result.setdefault(cell, {})[name] = pair
            print(f"{cell:5s} {name:8s} lightning {pair['lightning']:9,d}  plain {pair['plain']:9,d}  "
                  f"ratio {pair['ratio']:.3f}  Lightning's own {pair['lightning_ms_per_step']} ms a step",
                  file=sys.stderr)
    return result


def loader_share(s: dict, steps: int, warmup: int) -> dict:
    """The share of the step loop spent fetching batches, from Lightning's SimpleProfiler."""
    profiler = SimpleProfiler(dirpath=tempfile.gettempdir(), filename="bench_charlm_profile")  # table to a file
    size = {"hidden_size": s["hidden_size"], "num_layers": s["num_layers"]}
    lightning_steps(s, s["cell"], s["precision"], size, steps, warmup, profiler=profiler)
    fetch = sum(profiler.recorded_durations["[_TrainingEpochLoop].train_dataloader_next"])
    step = sum(profiler.recorded_durations["run_training_batch"])
    return {"cell": s["cell"], "precision": s["precision"], "share_of_step_loop": round(fetch / (fetch + step), 4),
            "target_at_most": 0.05}


def equal_time(s: dict, seconds: int, precisions: list[str]) -> dict:
    """The pipeline's char LM (the real data) trained for the same wall time at each precision, then scored:
    characters/s over the whole fit (validations and checkpoints included) and test bits per character."""
    result = {"seconds": seconds, "experiment": s["experiment"]}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in precisions:
            store = f"sqlite:///{tmp}/mlflow.db"
            subprocess.run([sys.executable, "-m", "rnnlab.cli", "train", f"experiment={s['experiment']}", f"model={s['cell']}",
                            f"trainer.precision={precision}", f"+trainer.max_time=00:00:{seconds // 60:02d}:{seconds % 60:02d}",
                            f"paths.metrics_dir={tmp}/{precision}", f"paths.model_dir={tmp}/{precision}/model",
                            f"paths.checkpoint_dir={tmp}/{precision}/checkpoints", "registry.enabled=false",
                            "callbacks.progress_bar=null"], check=True, cwd=ROOT,
                           env={**os.environ, "MLFLOW_TRACKING_URI": store})
            client = mlflow.MlflowClient(store)
            run = client.search_runs([client.get_experiment_by_name("rnnlab-charlm").experiment_id],
                                     order_by=["attribute.start_time DESC"], max_results=1)[0]
            steps = max(m.step for m in client.get_metric_history(run.info.run_id, "train_loss_step")) + 1
            bpc = json.loads(Path(tmp, precision, "charlm.json").read_text())["test"]["bpc"]
            chars = steps * s["batch_size"] * s["seq_len"]
            result[precision] = {"steps": steps, "chars_per_second": round(chars / seconds), "test_bpc": bpc}
            print(f"{precision:11s} {steps} steps in {seconds} s: {chars / seconds:,.0f} chars/s, test bpc {bpc}",
                  file=sys.stderr)
    if {"32-true", "bf16-mixed"} <= set(precisions):
        result["bf16_minus_fp32_bpc"] = round(result["bf16-mixed"]["test_bpc"] - result["32-true"]["test_bpc"], 4)
        result["quality_holds"] = result["bf16_minus_fp32_bpc"] <= 0.02  # the bar
    return result


def pipeline() -> dict:
    start = time.perf_counter()
    subprocess.run(["dvc", "repro", "--force", "evaluate"], check=True, cwd=ROOT)  # charlm's stages only
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run(["dvc", "repro", "evaluate"], check=True, cwd=ROOT)  # nothing changed: must do nothing, quickly
    noop = time.perf_counter() - start
    scores = json.loads((ROOT / "metrics/charlm.json").read_text())
    return {"seconds": round(seconds, 1), "noop_seconds": round(noop, 2), "test_bpc": scores["test"]["bpc"],
            "target_seconds": 900, "target_noop_seconds": 2.0, "target_test_bpc": 2.20,
            "meets_targets": seconds <= 900 and noop <= 2.0 and scores["test"]["bpc"] <= 2.20}


def main(argv=None, settings: dict | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds, best kept")
    parser.add_argument("--cells", default="rnn,lstm,gru")
    parser.add_argument("--precisions", default="32-true,bf16-mixed")
    parser.add_argument("--batch-size", type=int, help="default: the pipeline's (a GPU wants more)")
    parser.add_argument("--hidden-size", type=int, help="default: the pipeline's")
    parser.add_argument("--no-compare", action="store_true", help="skip Lightning vs plain loop and loader share")
    parser.add_argument("--equal-time", type=int, default=240, metavar="SECONDS",
                        help="train the pipeline's char LM SECONDS at each precision and score it (0: skip)")
    parser.add_argument("--pipeline", action="store_true", help="also time a forced dvc repro of the char LM")
    parser.add_argument("--out", help="write the figures to this JSON file")
    opts = parser.parse_args(argv)

    s = settings or pipeline_settings()
    if opts.batch_size:
        s["batch_size"] = opts.batch_size
    if opts.hidden_size:
        s["hidden_size"] = opts.hidden_size
    cells, precisions = opts.cells.split(","), opts.precisions.split(",")
    lower_decile, median = throughput(s, cells, precisions, opts.steps, opts.warmup, opts.rounds)
    result = {"settings": {**s, "steps_per_round": opts.steps, "rounds": opts.rounds},
              "chars_per_second": lower_decile, "median_step_chars_per_second": median}
    default = lower_decile.get(s["cell"], {}).get(s["precision"])
    if default:
        result["default_char_lm"] = {"cell": s["cell"], "precision": s["precision"], "chars_per_second": default,
                                     "median_step_chars_per_second": median[s["cell"]][s["precision"]],
                                     "target_chars_per_second": 40000, "meets_target": default >= 40000}
    if not opts.no_compare:
        sizes = {"small": {"hidden_size": s["hidden_size"] // 2, "num_layers": 1},
                 "default": {"hidden_size": s["hidden_size"], "num_layers": s["num_layers"]}}
        result["lightning_vs_plain"] = lightning_vs_plain(s, sizes, cells, opts.steps * opts.rounds, opts.warmup)
        result["loader_share"] = loader_share(s, opts.steps, opts.warmup)
    if opts.equal_time:
        result["equal_time"] = equal_time(s, opts.equal_time, precisions)
    if opts.pipeline:
        result["pipeline"] = pipeline()
    if opts.out:  # run on its own (benchmarks/gpu_check.sh): with the machine's facts, as bench.py records them
        from machine import machine

        write_json(opts.out, {"machine": machine(), **result})
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
