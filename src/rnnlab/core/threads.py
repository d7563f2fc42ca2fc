"""torch's intra-op threads: as many as the CPUs this process may use, and with `threads: auto` re-chosen while
training, from the step times measured at each count.

Why: torch's OpenMP threads meet at a barrier after every operator, so when another process holds one of two
cores, the thread sharing that core makes the other wait for its time slice at every operator. Measured on 2
cores (issue 22): the char LM fell from about 15 to 0.4-1 steps/s beside one busy process, while one thread
keeps nearly its quiet speed. No fixed count is best both when the machine is quiet and when it is shared, so
ThreadTuner measures: every `every` steps it times a few steps at each candidate count and keeps the fastest.
The count can change the numbers, so a run's weights depend on the counts chosen (logged as the MLflow metric
`threads`): padded batches train bit for bit alike at any count (tests/test_threads.py: a char LM), but a GEMM with
5-11 rows gives other float sums at 2 threads than at 1 (torch 2.13, this project's 2-core machine, 2026-12-02),
and a PackedSequence's last steps are that small: sentiment's packed GRU differs from step 1 (1e-5 after 60
steps), and full16's seed 46, where the tuner chose 2 threads for 200 steps, scored other than full15's at 1.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_quota(root: Path = CGROUP_ROOT) -> float | None:
    """The CPUs a cgroup's quota allows (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us`), or None without a quota."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]  # "max 100000" or "150000 100000"
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def available_cpus(root: Path = CGROUP_ROOT) -> int:
    """The CPUs this process may run on: its affinity mask (taskset, SLURM, Docker --cpuset-cpus), capped by its
    cgroup's CPU quota (Docker --cpus, Kubernetes limits; rounded up: 1.5 CPUs still run 2 threads' worth)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cgroup_quota(root)
    return max(1, min(n, math.ceil(quota))) if quota else n


def thread_count(threads) -> int:
    """The config's `threads` as a count: an integer as it is; null: the available CPUs; `auto`: those of them
    that other processes leave idle (measured over a quarter of a second)."""
    if threads == "auto":
        return idle_cpus()
    return available_cpus() if threads is None else int(threads)


def idle_cpus(seconds: float = 0.25) -> int:
    """The available CPUs less those other processes kept busy over `seconds` (at least one)."""
    n, use = available_cpus(), CpuUse()
    time.sleep(seconds)
    others = use.others()
    return n if others is None else max(1, min(n, int(n - others + 0.5)))


def set_threads(threads) -> int:
    """torch's intra-op threads as the config's `threads` says; returns the count set."""
    n = thread_count(threads)
    torch.set_num_threads(n)
    return n


def candidates(n: int) -> list[int]:
    """The counts ThreadTuner tries on n CPUs, fewest first (one thread is never far from its best, so it sets
    the bar the contended counts are cut at): one, half of them, one fewer (a core taken by another process), all."""
    return sorted({1, max(1, n // 2), max(1, n - 1), n})


def autogroup(path: Path) -> tuple[str, int] | None:
    """A process's autogroup and its nice from /proc/PID/autogroup ("/autogroup-874 nice 19"); None where the
    file holds something else. OSError where it cannot be read."""
    match = re.fullmatch(r"(\S+) nice (-?\d+)", path.read_text().strip())
    return (match[1], int(match[2])) if match else None


class CpuUse:
    """How many of this process's CPUs other processes kept busy since the last reading: the busy time of the
    CPUs in the affinity mask (/proc/stat) less this process's own CPU time. Work that gives way to this process
    is not counted, since the scheduler lets this process's threads take its core: niced work (the `nice` column)
    and, under the kernel's autogroup scheduling, the work of other sessions at autogroup nice > 0 (see
    `yielding`). None where /proc/stat is missing (not Linux)."""

    def __init__(self, stat: Path = Path("/proc/stat"), proc: Path = Path("/proc")):
        self.stat, self.proc = stat, proc
        self.cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
        self.last = self.reading()

    def reading(self) -> tuple[float, float, float, dict[str, float]] | None:
        try:
            lines = self.stat.read_text().splitlines()
        except OSError:
            return None
        busy = 0
        for line in lines:
            name, *ticks = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in self.cpus:
                # not `nice`: work at a lower priority (nice > 0) gives way to this process's threads
                user, _nice, system, _idle, _iowait, irq, softirq, steal = (int(t) for t in ticks[:8])
                busy += user + system + irq + softirq + steal
        own, hz = os.times(), os.sysconf("SC_CLK_TCK")
        return busy / hz, own.user + own.system, time.monotonic(), self.yielding(hz)

    def yielding(self, hz: int) -> dict[str, float]:
        """CPU seconds so far of each process that /proc/stat counts as busy but that gives way to this one: with
        autogroup scheduling on (kernel.sched_autogroup_enabled, the default of many distributions) the kernel
        shares a core between sessions' groups by the group's nice, so a process of another session at autogroup
        nice > 0 (`setsid` + `echo 19 > /proc/self/autogroup`) and task nice 0 yields although its time counts as
        `user` (sched(7), "The autogroup feature"). Its time on CPUs outside the affinity mask is subtracted too:
        an undercount there only makes the tuner try more threads, which its timing then judges."""
        try:
            if (self.proc / "sys/kernel/sched_autogroup_enabled").read_text().strip() != "1":
                return {}
            own = autogroup(self.proc / "self/autogroup")
            pids = [d for d in self.proc.iterdir() if d.name.isdigit()]
        except OSError:
            return {}
        if own is None:  # an empty or unknown file (some sandboxes, e.g. gVisor): no groups to tell apart
            return {}
        found = {}
        for d in pids:
            try:
                group, stat = autogroup(d / "autogroup"), (d / "stat").read_text()
                if group is None or group[0] == own[0] or group[1] <= 0:
                    continue
                fields = stat[stat.rindex(")") + 2:].split()  # after the command, which may hold spaces: field 3 on
                if int(fields[16]) == 0:  # task nice (field 19); a niced task is in the `nice` column already
                    found[d.name] = (int(fields[11]) + int(fields[12])) / hz  # utime, stime (fields 14, 15)
            except (OSError, ValueError, IndexError):  # gone meanwhile, not ours to read, or not in this format
                continue
        return found

    def others(self) -> float | None:
        """CPUs' worth of other processes' work since the previous call."""
        now, last = self.reading(), self.last
        self.last = now
        if now is None or last is None or now[2] - last[2] < 0.05:
            return None
        yielded = sum(max(0.0, t - last[3].get(pid, 0.0)) for pid, t in now[3].items())
        return max(0.0, ((now[0] - last[0]) - (now[1] - last[1]) - yielded) / (now[2] - last[2]))


class ThreadTuner(Callback):
    """With `threads: auto`, time `window` training steps at each candidate count and train on with the fastest;
    probe again after `every` steps (doubling up to `max_every` while the choice stays), or as soon as the
    chosen count's steps take twice their probed time (another process has started).

    Probing a contended count is costly: beside a busy process on 2 cores, one step at two threads took 12 s
    against 0.1 s at one (benchmarks/bench_threads.py). So a probe starts at one thread, and counts above the
    CPUs that other processes left idle meanwhile (CpuUse) are not tried at all; a count that is tried stops
    being timed once its steps have taken longer than the fastest count's whole window."""

    def __init__(self, threads="auto", every: int = 200, max_every: int = 1600, window: int = 6):
        self.enabled = threads == "auto"
        self.every, self.max_every, self.window = every, max_every, window
        self.counts: list[int] = []
        self.plan: list[int] = []  # the count of each step still to probe; empty: training on with the best
        self.times: dict[int, list[float]] = {}
        self.interval = every
        self.until_probe = 0
        self.recent: list[float] = []  # step times since the last choice
        self.best_time = 0.0
        self.started = 0.0
        self.cpu_use: CpuUse | None = None
        self.chosen: list[tuple[int, int]] = []  # (global step, count) at each choice

    def on_train_start(self, trainer, pl_module) -> None:
        on_cpu = pl_module.device.type == "cpu"  # on a GPU the CPU threads are not what a step waits for
        self.counts = candidates(available_cpus()) if self.enabled and on_cpu else []
        self.until_probe = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if len(self.counts) < 2:
            return
        if not self.plan and self.until_probe <= 0:  # a probe: one thread first, while CpuUse watches the others
            self.plan, self.times = [self.counts[0]] * self.window, {self.counts[0]: []}
            self.cpu_use = CpuUse()
        if self.plan:
            torch.set_num_threads(self.plan[0])
        self.started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if len(self.counts) < 2:
            return
        took = time.perf_counter() - self.started
        if not self.plan:
            self.watch(took)
            return
        n = self.plan.pop(0)
        self.times[n].append(took)
        if n == self.counts[0] and not self.plan:
            self.plan = [m for m in self.others_to_try() for _ in range(self.window)]
            self.times.update({m: [] for m in set(self.plan)})
        elif n != self.counts[0] and sum(self.times[n]) > self.window * median(self.times[self.counts[0]]):
            self.plan = [m for m in self.plan if m != n]  # clearly slower than one thread: skip its other steps
        if not self.plan:
            self.choose(trainer)

    def others_to_try(self) -> list[int]:
        """The counts above one that fit the CPUs other processes left idle during the one-thread steps (the
        steps' own thread is counted as this process's)."""
        others = self.cpu_use.others() if self.cpu_use else None
        idle = self.counts[-1] if others is None else self.counts[-1] - others
        return [n for n in self.counts[1:] if n <= idle + 0.5]

    def watch(self, took: float) -> None:
        """Count down to the next probe; probe now when the last `window` steps took twice the probed time."""
        self.until_probe -= 1
        self.recent = [*self.recent, took][-self.window:]
        if len(self.recent) == self.window and median(self.recent) > 2 * self.best_time:
            self.until_probe = 0

    def choose(self, trainer) -> None:
        medians = {n: median(ts) for n, ts in self.times.items() if ts}
        best = min(medians, key=lambda n: medians[n])
        torch.set_num_threads(best)
        same = bool(self.chosen) and self.chosen[-1][1] == best
        self.interval = min(2 * self.interval, self.max_every) if same else self.every
        self.until_probe, self.best_time, self.recent = self.interval, medians[best], []
        if not same:
            log.info("threads: %d (median step %s)", best,
                     ", ".join(f"{n}: {1000 * t:.0f} ms" for n, t in medians.items()))
        self.chosen.append((trainer.global_step, best))
        if trainer.logger is not None:
            trainer.logger.log_metrics({"threads": best}, step=trainer.global_step)


def median(xs: list[float]) -> float:
    return sorted(xs)[(len(xs) - 1) // 2]
