"""Variable-length classification and inference benchmarks.

    python benchmarks/bench_classify.py [--out FILE]   # the real data and the pipeline's checkpoints
    python benchmarks/bench_classify.py --smoke        # a few steps and samples
    (benchmarks/bench.py runs it for metrics/bench.json)

Training (sentiment: word ids, 2-64 words; surname: characters), through the Lightning module at the
pipeline's model sizes (conf/experiment/TASK.yaml, params.yaml: classify.TASK.model), fp32 as in
conf/trainer/default.yaml: packed sequences (SequenceClassifier as it is) against the same model run over
the padded batch (PaddedClassifier, a speed comparison only: the padded run is not numerically the same),
and length-bucketed batches against random ones; steps/s and real (unpadded) tokens/s.

Inference: generation latency per character of the char LM, single-sample classification latency
(p50/p95: rnnlab.serving.predict's encode path plus predict_step for sentiment and surname, predict_step on one
utterance's standardised frames for speaker), the same for one surname POSTed to `rnnlab serve surname` over
HTTP (the registered champion), and batched throughput (examples/s at batch 256, collate
included) over each task's test split.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader

from rnnlab import tasks
from rnnlab.core.io import write_json
from rnnlab.core.trainer import quiet_trainer
from rnnlab.data.labelled import LabelledDataModule
from rnnlab.data.padding import collate
from rnnlab.shapes.classification import check_inputs, valid_steps
from rnnlab.shapes.many_to_one import SequenceClassifier
from rnnlab.tasks import load_checkpoint

# the pipeline's models: conf/experiment/TASK.yaml (sizes, batch) and params.yaml: classify.TASK.model (cell)
SETTINGS = {
    "sentiment": dict(cell="gru", embedding_dim=128, hidden_size=128, num_layers=1, dropout=0.5,
                      bidirectional=True, pooling="max", batch_size=64),
    "surname": dict(cell="lstm", embedding_dim=32, hidden_size=128, num_layers=1, dropout=0.2,
                    bidirectional=False, pooling="last", batch_size=64),
}
INFERENCE_TASKS = ("sentiment", "surname", "speaker")
BUCKET_POOL = 50  # batches per pool: shuffled rows are sorted by length within each pool of 50 batches


class PaddedClassifier(SequenceClassifier):
    """SequenceClassifier's layers run over the whole padded batch, no packing: every row takes T steps, and
    "last" pooling reads the final state after the padding (the last padded step). Same parameters and cost
    per step as the packed model, different numbers: a speed comparison only."""

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        check_inputs(inputs, self.input_size)
        (net,) = self.members
        x = net.drop(net.encoder(inputs))
        out, state = net.rnn(x)
        h_n = state[0] if isinstance(state, tuple) else state
        return net.head(net.drop(net.pool(out, h_n, valid_steps(lengths, x.size(1), x.device))))


def random_batches(lengths: list[int], batch_size: int, seed: int) -> list[list[int]]:
    """What shuffle=True gives: a random permutation cut into batches."""
    order = np.random.default_rng(seed).permutation(len(lengths)).tolist()
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def bucketed_batches(lengths: list[int], batch_size: int, seed: int, pool: int = BUCKET_POOL) -> list[list[int]]:
    """Length buckets: a random permutation, sorted by length within pools of `pool` batches, cut into
    batches of similar lengths, and the batches shuffled (so an epoch does not run short to long)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    batches = []
    for start in range(0, len(order), pool * batch_size):
        chunk = sorted(order[start:start + pool * batch_size].tolist(), key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


class StepTimer(Callback):
    """Wall time, real tokens and padded positions of the steps after `warmup`."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.steps, self.tokens, self.positions = warmup, None, 0, 0, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()
        elif trainer.global_step > self.warmup:
            self.steps += 1
            self.tokens += int(batch[1].sum())
            self.positions += batch[0].shape[0] * batch[0].shape[1]

    def on_train_end(self, trainer, pl_module):
        self.seconds = time.perf_counter() - self.start


def train_throughput(data: list, model_kwargs: dict, settings: dict, packed: bool, bucketed: bool,
                     steps: int, warmup: int, seed: int = 0) -> dict:
    """Training steps/s and real tokens/s of one (packing, batching) combination through the Lightning module."""
    lengths = [len(x) for x, _ in data]
    make = bucketed_batches if bucketed else random_batches
    batches = make(lengths, settings["batch_size"], seed)
    loader = DataLoader(data, batch_sampler=batches, collate_fn=collate)
    torch.manual_seed(seed)
    model_settings = {k: v for k, v in settings.items() if k != "batch_size"}
    model = (SequenceClassifier if packed else PaddedClassifier)(**model_kwargs, **model_settings)
    timer = StepTimer(warmup)
    trainer = quiet_trainer(max_steps=warmup + steps, precision="32-true", limit_val_batches=0,
                            gradient_clip_val=0.5, accelerator="cpu", callbacks=[timer])
    trainer.fit(model, train_dataloaders=loader)
    return {"steps_per_second": round(timer.steps / timer.seconds, 2),
            "tokens_per_second": round(timer.tokens / timer.seconds),
            "padding_fraction": round(1 - timer.tokens / timer.positions, 3), "steps_timed": timer.steps}


def variable_length(task: str, processed_dir: str | Path, steps: int, warmup: int, rounds: int = 1,
                    settings: dict | None = None) -> dict:
    """The four combinations of packed/padded x random/bucketed for one task, and the speedups."""
    settings = settings or SETTINGS[task]
    dm = LabelledDataModule(task, str(processed_dir), batch_size=settings["batch_size"])
    data, kwargs = dm.data["train"], dm.model_kwargs()
    lengths = [len(x) for x, _ in data]
    runs = {}
    # the combinations interleaved, `rounds` times over the same batches: the best round of each is kept, so
    # a moment of contention on the cores slows one round, not one combination
    for _ in range(rounds):
        for packing in ("packed", "padded"):
            for batching in ("random", "bucketed"):
                r = train_throughput(data, kwargs, settings, packing == "packed", batching == "bucketed", steps,
                                     warmup)
                name = f"{packing}_{batching}"
                print(f"{task:9s} {packing:6s} {batching:8s} {r['steps_per_second']:7.2f} steps/s "
                      f"{r['tokens_per_second']:9,d} tokens/s  padding {r['padding_fraction']:.0%}", file=sys.stderr)
                if name not in runs or r["tokens_per_second"] > runs[name]["tokens_per_second"]:
                    runs[name] = r

    def ratio(a, b):
        return round(runs[a]["tokens_per_second"] / runs[b]["tokens_per_second"], 2)

    return {"settings": settings, "train_rows": len(data),
            "length": {"min": min(lengths), "mean": round(float(np.mean(lengths)), 1), "max": max(lengths)},
            "runs": runs,
            "speedup": {"packed_over_padded_random": ratio("packed_random", "padded_random"),
                        "packed_over_padded_bucketed": ratio("packed_bucketed", "padded_bucketed"),
                        "bucketed_over_random_packed": ratio("packed_bucketed", "packed_random"),
                        "bucketed_over_random_padded": ratio("padded_bucketed", "padded_random"),
                        "packed_bucketed_over_padded_random": ratio("packed_bucketed", "padded_random")}}


def generation_latency(checkpoint: str | Path, length: int, repeats: int) -> dict:
    """Milliseconds per generated character of CharLanguageModel.generate (temperature 0.8, batch 1)."""
    model = load_checkpoint(checkpoint, task="charlm")
    model.generate("ROMEO:", 5, seed=0)  # warm-up
    per_char = []
    for i in range(repeats):
        start = time.perf_counter()
        model.generate("ROMEO:", length, temperature=0.8, seed=i)
        per_char.append((time.perf_counter() - start) / length * 1e3)
    return {"ms_per_char": round(float(np.median(per_char)), 3), "chars_per_second": round(1e3 / np.median(per_char)),
            "length": length, "repeats": repeats, "prompt": "ROMEO:"}


def raw_inputs(task: str, processed_dir: str | Path) -> list:
    """Test rows as the predict path takes them: text, name, or (speaker) standardised frames."""
    dm = LabelledDataModule(task, str(processed_dir))
    columns = dm.splits["test"].column_names
    if "text" in columns:
        return list(dm.splits["test"]["text"])
    if "name" in columns:
        return list(dm.splits["test"]["name"])
    return [x for x, _ in dm.data["test"]]


def single_latency(task: str, checkpoint: str | Path, processed_dir: str | Path, samples: int, warmup: int) -> dict:
    """p50/p95 milliseconds of one example: encode (text tasks) + predict_step under inference_mode."""
    model = load_checkpoint(checkpoint, task=task)
    rows = raw_inputs(task, processed_dir)
    picks = [rows[i] for i in np.random.default_rng(0).integers(0, len(rows), warmup + samples)]
    times = []
    for n, raw in enumerate(picks):
        start = time.perf_counter()
        steps = raw if isinstance(raw, torch.Tensor) else tasks.get(task).adapter().encode(raw, model.hparams)
        with torch.inference_mode():
            model.predict_step((steps[None].to(model.device), torch.tensor([len(steps)])), 0)
        if n >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return {"p50_ms": round(float(np.percentile(times, 50)), 3), "p95_ms": round(float(np.percentile(times, 95)), 3),
            "samples": samples, "path": "predict_step on standardised frames" if task == "speaker"
            else "the task's adapter (encode) + predict_step"}


def served_latency(task: str, processed_dir: str | Path, samples: int, warmup: int) -> dict:
    """p50/p95 milliseconds of one example POSTed to `rnnlab serve TASK` (the registered champion, MLflow's
    scoring server on a free loopback port): JSON, HTTP and the pyfunc model's own input checks included."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rows = raw_inputs(task, processed_dir)
    picks = [rows[i] for i in np.random.default_rng(0).integers(0, len(rows), warmup + samples)]
    server = subprocess.Popen([sys.executable, "-m", "rnnlab.cli", "serve", task, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url, times = f"http://127.0.0.1:{port}", []
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{url}/ping", timeout=2)
                break
            except OSError as e:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"rnnlab serve {task} did not start (is there a champion? dvc repro first)") from e
                time.sleep(1)
        for n, raw in enumerate(picks):
            body = json.dumps({"inputs": [raw]}).encode()
            start = time.perf_counter()
            request = urllib.request.Request(f"{url}/invocations", body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
            if n >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    return {"p50_ms": round(float(np.percentile(times, 50)), 3), "p95_ms": round(float(np.percentile(times, 95)), 3),
            "samples": samples, "path": f"POST /invocations to rnnlab serve {task} (one input per request)"}


def batched_throughput(task: str, checkpoint: str | Path, processed_dir: str | Path, batch_size: int,
                       repeats: int) -> dict:
    """Examples/s over the test split in batches of `batch_size` (collate + predict_step), best of `repeats`."""
    model = load_checkpoint(checkpoint, task=task)
    data = LabelledDataModule(task, str(processed_dir)).data["test"]
    best = None
    for _ in range(repeats + 1):  # the first pass warms up
        start = time.perf_counter()
        with torch.inference_mode():
            for inputs, lengths, _ in DataLoader(data, batch_size, shuffle=False, collate_fn=collate):
                model.predict_step((inputs.to(model.device), lengths), 0)
        seconds = time.perf_counter() - start
        best = seconds if best is None else min(best, seconds)
    return {"examples_per_second": round(len(data) / best), "batch_size": batch_size, "examples": len(data)}


def inference(data_dir: Path, models_dir: Path, gen_length: int, gen_repeats: int, samples: int, warmup: int,
              batch_size: int, repeats: int, tasks=INFERENCE_TASKS) -> dict:
    result = {"generation": generation_latency(models_dir / "charlm" / "model.ckpt", gen_length, gen_repeats),
              "single": {}, "batched": {}}
    print(f"charlm    generation {result['generation']['ms_per_char']:.3f} ms/char", file=sys.stderr)
    for task in tasks:
        ckpt, processed = models_dir / task / "model.ckpt", data_dir / task
        result["single"][task] = single_latency(task, ckpt, processed, samples, warmup)
        result["batched"][task] = batched_throughput(task, ckpt, processed, batch_size, repeats)
        print(f"{task:9s} p50 {result['single'][task]['p50_ms']:.3f} ms  p95 {result['single'][task]['p95_ms']:.3f} ms"
              f"  batch {batch_size}: {result['batched'][task]['examples_per_second']:,d} examples/s", file=sys.stderr)
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100, help="timed training steps per combination")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per combination, best kept")
    parser.add_argument("--tasks", default="sentiment,surname", help="tasks of the packing/bucketing comparison")
    parser.add_argument("--samples", type=int, default=500, help="single-sample latencies per task")
    parser.add_argument("--gen-length", type=int, default=500)
    parser.add_argument("--data-dir", default="data/processed")
    parser.add_argument("--models-dir", default="models")
    parser.add_argument("--served", default="surname", help="task whose served champion is timed over HTTP "
                        "(a text-in task; empty: skip)")
    parser.add_argument("--smoke", action="store_true", help="a few steps and samples")
    parser.add_argument("--out", help="write the figures to this JSON file")
    opts = parser.parse_args(argv)
    if opts.smoke:
        opts.steps, opts.warmup, opts.rounds, opts.samples, opts.gen_length = 3, 1, 1, 10, 20
    data_dir, models_dir = Path(opts.data_dir), Path(opts.models_dir)

    result = {"smoke": opts.smoke,
              "variable_length": {"steps_timed": opts.steps, "warmup": opts.warmup, "rounds": opts.rounds,
                                  "precision": "32-true", "bucket_pool_batches": BUCKET_POOL, "tasks": {}}}
    for task in opts.tasks.split(","):
        result["variable_length"]["tasks"][task] = variable_length(task, data_dir / task, opts.steps, opts.warmup,
                                                                   opts.rounds)
    result["inference"] = inference(data_dir, models_dir, opts.gen_length, 1 if opts.smoke else 5, opts.samples,
                                    2 if opts.smoke else 20, 256, 1 if opts.smoke else 3)
    if opts.served and not opts.smoke:
        served = served_latency(opts.served, data_dir / opts.served, opts.samples, 20)
        result["inference"]["served"] = {opts.served: served}
        print(f"{opts.served:9s} served p50 {served['p50_ms']:.3f} ms  p95 {served['p95_ms']:.3f} ms", file=sys.stderr)
    if opts.out:  # run on its own (benchmarks/gpu_check.sh): with the machine's facts, as bench.py records them
        from machine import machine

        write_json(opts.out, {"machine": machine(), **result})
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
