"""The char LM's training beside another busy process: steps per second with one thread, with all the CPUs, and
with `threads: auto` (rnnlab.core.threads.ThreadTuner), on a quiet machine and beside one CPU-bound process.

    python benchmarks/bench_threads.py                 # about 6 minutes on 2 cores: metrics/bench_threads.json
    python benchmarks/bench_threads.py --seconds 3     # a quick look (the test suite runs it with --smoke)

Each case is a fresh process training the pipeline's char LM (its size, batch, precision and optimizer composed
from conf/ as `dvc repro` trains it; on the real text after `dvc repro`, else random characters: a step's time
does not depend on the text) for a fixed wall time, counting every step from the first, the tuner's probes
included. The competitor is a pure-Python loop in its own session (setsid), as another user's job would be:
one busy process, one core's worth. Run it on an otherwise quiet machine: the load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_charlm  # noqa: E402
from lightning.pytorch.callbacks import Callback  # noqa: E402
from machine import machine  # noqa: E402

from rnnlab.core.io import write_json  # noqa: E402
from rnnlab.core.threads import ThreadTuner, available_cpus, set_threads  # noqa: E402
from rnnlab.core.trainer import quiet_trainer  # noqa: E402

MODES = ("1", "all", "auto")
TINY = {"embedding_dim": 8, "hidden_size": 16, "num_layers": 2, "batch_size": 4, "seq_len": 16}


class StopAfter(Callback):
    """Counts training steps and stops the fit `seconds` after the first one started."""

    def __init__(self, seconds: float):
        self.seconds, self.steps, self.start, self.end = seconds, 0, 0.0, 0.0

    def on_train_batch_start(self, trainer, *args):
        if not self.start:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, *args):
        self.steps += 1
        self.end = time.perf_counter()
        if self.end - self.start >= self.seconds:
            trainer.should_stop = True


def worker(mode: str, seconds: float, smoke: bool) -> dict:
    """Train the char LM for `seconds` with threads as `mode` says; steps per second and the tuner's choices."""
    s = bench_charlm.pipeline_settings()
    if smoke:
        s.update(TINY)
    threads = {"1": 1, "all": available_cpus(), "auto": "auto"}[mode]
    set_threads(threads)
    model, loader = bench_charlm.model_and_loader(s, s["cell"], {"hidden_size": s["hidden_size"],
                                                                 "num_layers": s["num_layers"]})
    stop, tuner = StopAfter(seconds), ThreadTuner(threads)
    trainer = quiet_trainer(max_steps=-1, max_epochs=1000, precision=s["precision"], limit_val_batches=0,
                            num_sanity_val_steps=0, gradient_clip_val=s["gradient_clip_val"], callbacks=[stop, tuner])
    trainer.fit(model, train_dataloaders=loader)
    took = stop.end - stop.start
    return {"steps": stop.steps, "seconds": round(took, 2), "steps_per_s": round(stop.steps / took, 3),
            "threads_tried": tuner.counts, "threads_chosen": [[step, n] for step, n in tuner.chosen]}


def run_case(mode: str, seconds: float, smoke: bool) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", mode, "--seconds", str(seconds)]
                         + (["--smoke"] if smoke else []), capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"bench_threads: the {mode} case failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def competitor() -> subprocess.Popen:
    """One CPU-bound process in its own session (its own scheduling group, as another login's job)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=45.0, help="training time per case")
    parser.add_argument("--smoke", action="store_true", help="a tiny model: checks that it runs")
    parser.add_argument("--out", help="default metrics/bench_threads.json (with --smoke: none)")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.seconds, args.smoke)))
        return {}
    result: dict = {"machine": machine(), "available_cpus": available_cpus(), "seconds_per_case": args.seconds}
    for load in ("quiet", "one_busy_process"):
        busy = competitor() if load != "quiet" else None
        try:
            result[load] = {mode: run_case(mode, args.seconds, args.smoke) for mode in MODES}
        finally:
            if busy:
                os.killpg(busy.pid, signal.SIGKILL)
                busy.wait()
    quiet_best = max(r["steps_per_s"] for r in result["quiet"].values())
    # how many times slower than the best quiet case each mode trains beside the busy process
    result["slowdown"] = {mode: round(quiet_best / r["steps_per_s"], 2) for mode, r in result["one_busy_process"].items()}
    result["machine"]["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    out = args.out or (None if args.smoke else "metrics/bench_threads.json")
    if out:
        write_json(Path(out), result)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
