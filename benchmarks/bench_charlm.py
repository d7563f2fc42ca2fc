"""Character LM benchmarks: training throughput through the Lightning module, and the default pipeline.

    python benchmarks/bench_charlm.py              # throughput of rnn/lstm/gru, fp32 and bf16 autocast
    python benchmarks/bench_charlm.py --pipeline   # also time a forced `dvc repro` and read its test bpc

Writes metrics/bench_charlm.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from rnnlab.data.streams import StreamWindows
from rnnlab.data.vocab import CharVocab
from rnnlab.io import write_json
from rnnlab.shapes.many_to_many import CharLanguageModel
from rnnlab.train import quiet_trainer

# dropout 0.0 as in the pipeline; inter-layer dropout 0.1 takes nn.LSTM off its fast CPU path (-25 %)
SETTINGS = dict(embedding_dim=64, hidden_size=256, num_layers=2, dropout=0.0, batch_size=64, seq_len=128)
PROCESSED = Path("data/processed/charlm")


class StepTimer(Callback):
    """Wall time of the steps after `warmup` (the first steps pay for allocation and thread start-up)."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.steps = warmup, None, 0

    def on_train_batch_end(self, trainer, *args):
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


def throughput(cell: str, precision: str, steps: int, warmup: int) -> float:
    chars, ids = corpus()
    torch.manual_seed(0)
    model = CharLanguageModel(chars, cell=cell, embedding_dim=SETTINGS["embedding_dim"],
                              hidden_size=SETTINGS["hidden_size"], num_layers=SETTINGS["num_layers"],
                              dropout=SETTINGS["dropout"], scheduler="none")
    loader = torch.utils.data.DataLoader(StreamWindows(ids, SETTINGS["batch_size"], SETTINGS["seq_len"]),
                                         batch_size=None)
    timer = StepTimer(warmup)
    trainer = quiet_trainer(max_steps=warmup + steps, precision=precision, limit_val_batches=0,
                            gradient_clip_val=0.5, callbacks=[timer])
    trainer.fit(model, train_dataloaders=loader)
    return timer.steps * SETTINGS["batch_size"] * SETTINGS["seq_len"] / timer.seconds


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
    parser.add_argument("--pipeline", action="store_true", help="also time a forced dvc repro")
    parser.add_argument("--out", default="metrics/bench_charlm.json")
    opts = parser.parse_args()

    result = {"settings": {**SETTINGS, "threads": torch.get_num_threads(), "device": "cpu",
                           "torch": torch.__version__, "steps_timed": opts.steps},
              "chars_per_second": {}, "target_chars_per_second": 20000}
    for cell in opts.cells.split(","):
        for precision in opts.precisions.split(","):
            cps = throughput(cell, precision, opts.steps, opts.warmup)
            result["chars_per_second"].setdefault(cell, {})[precision] = round(cps)
            print(f"{cell:5s} {precision:11s} {cps:10,.0f} chars/s", file=sys.stderr)
    if opts.pipeline:
        result["pipeline"] = pipeline()
    elif Path(opts.out).is_file():  # keep the last pipeline figures when only throughput is re-measured
        previous = json.loads(Path(opts.out).read_text())
        result["pipeline"] = previous.get("pipeline", {})
    write_json(opts.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
