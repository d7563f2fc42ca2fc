"""Character LM benchmarks: training throughput through the Lightning module, against the same model in a
plain PyTorch loop, the data loader's share of a step, and the default pipeline.

    python benchmarks/bench_charlm.py              # throughput of rnn/lstm/gru, fp32 and bf16 autocast;
                                                   # Lightning / plain loop at two sizes; loader share
    python benchmarks/bench_charlm.py --pipeline   # also time a forced `dvc repro` and read its test bpc

Writes metrics/bench_charlm.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.profilers import SimpleProfiler

from rnnlab.data.streams import StreamWindows
from rnnlab.data.vocab import CharVocab
from rnnlab.io import write_json
from rnnlab.recurrent import detach_state
from rnnlab.shapes.many_to_many import CharLanguageModel
from rnnlab.trainer import quiet_trainer

# dropout 0.0 as in the pipeline; inter-layer dropout 0.1 takes nn.LSTM off its fast CPU path (-25 %)
SETTINGS = dict(embedding_dim=64, hidden_size=256, num_layers=2, dropout=0.0, batch_size=64, seq_len=128)
# the Lightning-vs-plain comparison's two model sizes (the default is SETTINGS')
SIZES = {"small": dict(hidden_size=128, num_layers=1), "default": dict(hidden_size=256, num_layers=2)}
PROCESSED = Path("data/processed/charlm")


class StepTimer(Callback):
    """Wall time of the steps after `warmup` (the first steps pay for allocation and thread start-up)."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.steps = warmup, None, 0

    def on_train_batch_end(self, trainer, *args):
        if torch.cuda.is_available():  # CUDA runs ahead of the host: time finished work only
            torch.cuda.synchronize()
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()
        elif trainer.global_step > self.warmup:
            self.steps += 1

    def on_train_end(self, trainer, pl_module):
        self.seconds = time.perf_counter() - self.start


def corpus() -> tuple[list[str], np.ndarray]:
    if (PROCESSED / "train.npy").is_file():
        return list(CharVocab.load(PROCESSED / "vocab.json").chars), np.load(PROCESSED / "train.npy")
    chars = [chr(c) for c in range(32, 117)]  # no pipeline data yet: random ids of the same vocabulary size
    return chars, np.random.default_rng(0).integers(1, len(chars) + 1, 2_000_000).astype(np.int16)


def model_and_loader(cell: str, size: dict) -> tuple[CharLanguageModel, torch.utils.data.DataLoader]:
    chars, ids = corpus()
    torch.manual_seed(0)
    model = CharLanguageModel(chars, cell=cell, embedding_dim=SETTINGS["embedding_dim"], dropout=SETTINGS["dropout"],
                              scheduler="none", **size)
    loader = torch.utils.data.DataLoader(StreamWindows(ids, SETTINGS["batch_size"], SETTINGS["seq_len"]),
                                         batch_size=None)
    return model, loader


def chars_per_second(steps: int, seconds: float) -> float:
    return steps * SETTINGS["batch_size"] * SETTINGS["seq_len"] / seconds


def throughput(cell: str, precision: str, steps: int, warmup: int, size: dict | None = None,
               profile: bool = False) -> tuple[float, float | None]:
    """Characters/s through the Lightning module (and, with `profile`, the share of the step loop spent
    fetching batches, from Lightning's SimpleProfiler)."""
    model, loader = model_and_loader(cell, size or SIZES["default"])
    timer = StepTimer(warmup)
    # its table goes to a file, not the terminal
    profiler = SimpleProfiler(dirpath=tempfile.gettempdir(), filename="bench_charlm_profile") if profile else None
    trainer = quiet_trainer(max_steps=warmup + steps, precision=precision, limit_val_batches=0,
                            gradient_clip_val=0.5, callbacks=[timer], profiler=profiler)
    trainer.fit(model, train_dataloaders=loader)
    share = None
    if profile:
        durations = profiler.recorded_durations
        fetch = sum(durations["[_TrainingEpochLoop].train_dataloader_next"])
        step = sum(durations["run_training_batch"])
        share = fetch / (fetch + step)
    return chars_per_second(timer.steps, timer.seconds), share


def plain_loop(cell: str, precision: str, steps: int, warmup: int, size: dict) -> float:
    """The same model, batches and update as the Lightning run (carried state, AdamW, clipping at 0.5, the
    same autocast, the same device), written as a bare PyTorch loop."""
    model, loader = model_and_loader(cell, size)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=model.hparams.lr, weight_decay=model.hparams.weight_decay)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")
    model.train()
    state, start = None, None
    for i, (x, y) in enumerate(loader):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if i == warmup:
            start = time.perf_counter()
        if i == warmup + steps:
            break
        with autocast:
            logits, state = model(x, state)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        state = detach_state(state)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        optimizer.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return chars_per_second(steps, time.perf_counter() - start)


def lightning_vs_plain(cells: list[str], precision: str, steps: int, warmup: int) -> dict:
    result = {}
    for cell in cells:
        for name, size in SIZES.items():
            # alternating which path runs first would not remove drift; two rounds and the best of each do
            light = max(throughput(cell, precision, steps, warmup, size)[0] for _ in range(2))
            plain = max(plain_loop(cell, precision, steps, warmup, size) for _ in range(2))
            result.setdefault(cell, {})[name] = {"lightning": round(light), "plain": round(plain),
                                                 "ratio": round(light / plain, 3)}
            print(f"{cell:5s} {name:8s} lightning {light:9,.0f}  plain {plain:9,.0f}  ratio {light / plain:.3f}",
                  file=sys.stderr)
    return result


def equal_time(seconds: int, precisions: list[str]) -> dict:
    """The pipeline's char LM (conf/experiment/charlm.yaml, the real data) trained for the same wall time at
    each precision, then scored: training speed in characters/s and test bits per character."""
    result = {"seconds": seconds}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in precisions:
            store = f"sqlite:///{tmp}/mlflow.db"
            subprocess.run(["rnnlab", "train", "task=charlm", "experiment=charlm", f"trainer.precision={precision}",
                            f"+trainer.max_time='00:00:{seconds // 60:02d}:{seconds % 60:02d}'", f"paths.metrics_dir={tmp}/{precision}",
                            f"paths.model_dir={tmp}/{precision}/model", "registry.enabled=false",
                            "callbacks.progress_bar=null"], check=True, env={**os.environ, "MLFLOW_TRACKING_URI": store})
            client = mlflow.MlflowClient(store)
            run = client.search_runs([client.get_experiment_by_name("rnnlab-charlm").experiment_id],
                                     order_by=["attribute.start_time DESC"], max_results=1)[0]
            steps = max(m.step for m in client.get_metric_history(run.info.run_id, "train_loss_step")) + 1
            bpc = json.loads(Path(tmp, precision, "charlm.json").read_text())["test"]["bpc"]
            batch = client.get_run(run.info.run_id).data.params
            chars = steps * int(batch["data/batch_size"]) * int(batch["data/seq_len"])
            result[precision] = {"steps": steps, "chars_per_second": round(chars / seconds), "test_bpc": bpc}
            print(f"{precision:11s} {steps} steps in {seconds} s: {chars / seconds:,.0f} chars/s, test bpc {bpc}",
                  file=sys.stderr)
    return result


def pipeline() -> dict:
    start = time.perf_counter()
    subprocess.run(["dvc", "repro", "--force", "evaluate"], check=True)  # charlm's stages only
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run(["dvc", "repro", "evaluate"], check=True)  # nothing changed: must do nothing, quickly
    noop = time.perf_counter() - start
    scores = json.loads(Path("metrics/charlm.json").read_text())
    return {"seconds": round(seconds, 1), "noop_seconds": round(noop, 2), "test_bpc": scores["test"]["bpc"],
            "target_seconds": 900, "target_noop_seconds": 2.0, "target_test_bpc": 2.20,
            "meets_targets": seconds <= 900 and noop <= 2.0 and scores["test"]["bpc"] <= 2.20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--cells", default="rnn,lstm,gru")
    parser.add_argument("--precisions", default="32-true,bf16-mixed")
    parser.add_argument("--batch-size", type=int, help="default: SETTINGS' (a GPU wants more)")
    parser.add_argument("--hidden-size", type=int, help="of the default size; default: SETTINGS'")
    parser.add_argument("--no-compare", action="store_true", help="skip Lightning vs plain loop and loader share")
    parser.add_argument("--pipeline", action="store_true", help="also time a forced dvc repro")
    parser.add_argument("--equal-time", type=int, metavar="SECONDS",
                        help="only train the pipeline's char LM SECONDS long at each precision and score it")
    parser.add_argument("--out", default="metrics/bench_charlm.json")
    opts = parser.parse_args()

    if opts.equal_time:
        previous = json.loads(Path(opts.out).read_text()) if Path(opts.out).is_file() else {}
        previous["equal_time"] = equal_time(opts.equal_time, opts.precisions.split(","))
        write_json(opts.out, previous)
        print(json.dumps(previous["equal_time"], indent=2))
        return
    if opts.batch_size:
        SETTINGS["batch_size"] = opts.batch_size
    if opts.hidden_size:
        SETTINGS["hidden_size"] = SIZES["default"]["hidden_size"] = opts.hidden_size
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    result = {"settings": {**SETTINGS, "threads": torch.get_num_threads(), "device": device,
                           "cpu": platform.processor() or platform.machine(),
                           "torch": torch.__version__, "steps_timed": opts.steps},
              "chars_per_second": {}, "target_chars_per_second": 20000}
    cells = opts.cells.split(",")
    for cell in cells:
        for precision in opts.precisions.split(","):
            cps, _ = throughput(cell, precision, opts.steps, opts.warmup)
            result["chars_per_second"].setdefault(cell, {})[precision] = round(cps)
            print(f"{cell:5s} {precision:11s} {cps:10,.0f} chars/s", file=sys.stderr)
    if opts.no_compare:
        write_json(opts.out, result)
        print(json.dumps(result, indent=2))
        return
    result["lightning_vs_plain"] = {"precision": "bf16-mixed", "target_ratio": 0.95,
                                    "sizes": SIZES, **lightning_vs_plain(cells, "bf16-mixed", opts.steps, opts.warmup)}
    _, share = throughput(cells[0], "bf16-mixed", opts.steps, opts.warmup, profile=True)
    result["loader_share"] = {"cell": cells[0], "precision": "bf16-mixed", "share_of_step_loop": round(share, 4),
                              "target_at_most": 0.05}
    if opts.pipeline:
        result["pipeline"] = pipeline()
    elif Path(opts.out).is_file():  # keep the last pipeline figures when only throughput is re-measured
        previous = json.loads(Path(opts.out).read_text())
        result["pipeline"] = previous.get("pipeline", {})
    write_json(opts.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
