import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import rnnlab.core.threads as threads
from rnnlab import RnnlabError
from rnnlab.core.threads import CpuUse, ThreadTuner, available_cpus, candidates, thread_count
from rnnlab.core.trainer import quiet_trainer
from rnnlab.core.validate import check_config
from rnnlab.data.streams import StreamWindows
from rnnlab.shapes.many_to_many import CharLanguageModel

from conftest import compose

ON_CPU = SimpleNamespace(device=torch.device("cpu"))  # the module the tuner's hooks get


@pytest.fixture(autouse=True)
def keep_torch_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def cgroup(tmp_path, v2=None, v1=None):
    tmp_path.mkdir()
    if v2 is not None:
        (tmp_path / "cpu.max").write_text(v2 + "\n")
    if v1 is not None:
        (tmp_path / "cpu").mkdir()
        (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(f"{v1[0]}\n")
        (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(f"{v1[1]}\n")
    return tmp_path


def test_available_cpus_is_the_affinity_mask_capped_by_the_cgroup_quota(monkeypatch, tmp_path):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert available_cpus(cgroup(tmp_path / "none")) == 4  # no cgroup files: the mask
    assert available_cpus(cgroup(tmp_path / "max", v2="max 100000")) == 4
    assert available_cpus(cgroup(tmp_path / "half", v2="150000 100000")) == 2  # 1.5 CPUs: rounded up
    assert available_cpus(cgroup(tmp_path / "tiny", v2="10000 100000")) == 1
    assert available_cpus(cgroup(tmp_path / "v1", v1=(100000, 100000))) == 1
    assert available_cpus(cgroup(tmp_path / "v1none", v1=(-1, 100000))) == 4
    assert available_cpus(cgroup(tmp_path / "more", v2="800000 100000")) == 4  # a quota above the mask


class FakeCpuUse:
    """CpuUse with a set answer: CPUs' worth of other processes' work (None: not measurable)."""

    others_value: float | None = None

    def others(self):
        return self.others_value


@pytest.mark.parametrize("others, auto", [(None, 3), (0.0, 3), (0.4, 3), (1.0, 2), (2.6, 1), (5.0, 1)])
def test_thread_count_reads_the_config(monkeypatch, others, auto):
    monkeypatch.setattr(threads, "available_cpus", lambda: 3)
    monkeypatch.setattr(FakeCpuUse, "others_value", others)
    monkeypatch.setattr(threads, "CpuUse", FakeCpuUse)
    assert thread_count("auto") == auto  # the CPUs other processes leave idle
    assert thread_count(None) == 3 and thread_count(1) == 1
    assert candidates(2) == [1, 2] and candidates(1) == [1] and candidates(16) == [1, 8, 15, 16]


def test_threads_are_auto_unless_a_task_or_the_command_line_sets_them():
    assert compose().get("threads") is None and compose().callbacks.thread_tuner.threads == "auto"
    forecast = compose("task=forecast")  # its config sets one thread: config.yaml must not override it
    assert forecast.threads == 1 and forecast.callbacks.thread_tuner.threads == 1
    assert compose("+threads=2").callbacks.thread_tuner.threads == 2


def test_a_bad_thread_count_is_refused_naming_the_key():
    with pytest.raises(RnnlabError, match="threads='many'"):
        check_config(compose("+threads=many"))
    check_config(compose("+threads=auto"))
    check_config(compose("task=forecast", "threads=2"))


class FakeClock:
    """time.perf_counter for the tuner: each step takes what `cost` says for the thread count set."""

    def __init__(self, cost):
        self.now, self.cost = 0.0, cost

    def __call__(self):
        return self.now

    def step(self, tuner):
        """One training step; returns the thread count it ran with."""
        tuner.on_train_batch_start(None, None, None, 0)
        n = torch.get_num_threads()
        self.now += self.cost(n)
        tuner.on_train_batch_end(Trainer(), None, None, None, 0)
        return n


class Trainer:
    global_step, logger = 0, None


def tuner_with(monkeypatch, cost, others=None, **kwargs) -> tuple[ThreadTuner, FakeClock]:
    clock = FakeClock(cost)
    monkeypatch.setattr(threads.time, "perf_counter", clock)
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    monkeypatch.setattr(FakeCpuUse, "others_value", others)
    monkeypatch.setattr(threads, "CpuUse", FakeCpuUse)
    tuner = ThreadTuner("auto", **kwargs)
    tuner.on_train_start(None, ON_CPU)
    return tuner, clock


def test_the_tuner_keeps_the_fastest_count_and_cuts_a_contended_one_short(monkeypatch):
    busy = {1: 0.1, 2: 1.5}  # two threads beside a busy process: 15 times slower
    tuner, clock = tuner_with(monkeypatch, lambda n: busy[n], every=50, window=4)
    counts = [clock.step(tuner) for _ in range(12)]
    # 4 steps at one thread, then one at two: over 4 x 0.1 s, so its other 3 are skipped
    assert counts == [1, 1, 1, 1, 2] + [1] * 7
    assert tuner.chosen == [(0, 1)] and torch.get_num_threads() == 1


@pytest.mark.parametrize("others, tried", [(1.0, [1]), (0.6, [1]), (0.3, [1, 2])])
def test_the_tuner_does_not_try_counts_the_other_processes_leave_no_cpu_for(monkeypatch, others, tried):
    cost = {1: 0.2, 2: 0.1}
    tuner, clock = tuner_with(monkeypatch, lambda n: cost[n], others=others, window=3)
    counts = [clock.step(tuner) for _ in range(6)]
    assert sorted(set(counts)) == tried
    assert tuner.chosen[0][1] == tried[-1]


def test_the_tuner_probes_again_when_the_chosen_count_slows_down(monkeypatch):
    cost = {1: 0.2, 2: 0.1}  # quiet: two threads are faster
    tuner, clock = tuner_with(monkeypatch, lambda n: cost[n], every=1000, window=3)
    for _ in range(6):
        clock.step(tuner)
    assert tuner.chosen[-1][1] == 2 and torch.get_num_threads() == 2
    cost[2] = 3.0  # another process starts
    for _ in range(3 + 3 + 1):  # 3 slow steps trigger a probe: 3 at one thread, 1 at two (cut)
        clock.step(tuner)
    assert tuner.chosen[-1][1] == 1 and torch.get_num_threads() == 1


def test_cpu_use_counts_the_other_processes_work_on_this_processs_cpus(monkeypatch, tmp_path):
    stat = tmp_path / "stat"
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(threads.os, "sysconf", lambda name: 100)

    def reading(busy0, busy1, other_cpu, own, now):
        # user nice system idle iowait irq softirq steal guest guest_nice, in ticks of 1/100 s
        stat.write_text(f"cpu  0 0 0 0 0 0 0 0 0 0\ncpu0 {busy0} {busy0} 0 500 0 0 0 0 0 0\n"
                        f"cpu1 {busy1} 0 0 500 0 0 0 0 0 0\ncpu2 {other_cpu} 0 0 0 0 0 0 0 0 0\nintr 1 2 3\n")
        monkeypatch.setattr(threads.os, "times", lambda: os.times_result((own, 0.0, 0.0, 0.0, 0.0)))
        monkeypatch.setattr(threads.time, "monotonic", lambda: now)

    reading(100, 100, 0, 5.0, 10.0)
    use = CpuUse(stat, tmp_path / "no-proc")  # no other process to look at
    # both CPUs busy for 1 s, 1 s of it this process's; cpu2 is not ours, niced work does not count
    reading(200, 200, 900, 6.0, 11.0)
    assert use.others() == pytest.approx(1.0)
    reading(300, 250, 900, 7.0, 12.0)  # 1.5 CPU-seconds busy, 1 of them ours
    assert use.others() == pytest.approx(0.5)
    assert CpuUse(tmp_path / "missing").others() is None


def test_cpu_use_leaves_out_other_sessions_at_autogroup_nice(monkeypatch, tmp_path):
    """A process of another session at autogroup nice 19 yields to this one although /proc/stat counts its time
    as user time; one in this process's own group, or of another group at nice 0, does not."""
    stat, proc = tmp_path / "stat", tmp_path / "proc"
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(threads.os, "sysconf", lambda name: 100)
    monkeypatch.setattr(threads.os, "times", lambda: os.times_result((5.0, 0.0, 0.0, 0.0, 0.0)))
    (proc / "sys" / "kernel").mkdir(parents=True)
    (proc / "sys" / "kernel" / "sched_autogroup_enabled").write_text("1\n")
    (proc / "self").mkdir()
    (proc / "self" / "autogroup").write_text("/autogroup-1 nice 0\n")

    def process(pid, group, ticks, nice=0):
        (proc / str(pid)).mkdir(exist_ok=True)
        (proc / str(pid) / "autogroup").write_text(f"{group}\n")
        rest = ["S"] + ["0"] * 10 + [str(ticks), "0"] + ["0"] * 3 + [str(nice)] + ["0"] * 30
        (proc / str(pid) / "stat").write_text(f"{pid} (a name) " + " ".join(rest) + "\n")

    def at(busy, helper, mine, other, now):
        stat.write_text(f"cpu0 {busy} 0 0 0 0 0 0 0 0 0\ncpu1 0 0 0 0 0 0 0 0 0 0\n")
        process(10, "/autogroup-7 nice 19", helper)  # a niced session: yields
        process(11, "/autogroup-1 nice 19", mine)  # this process's own group: competes for its share
        process(12, "/autogroup-8 nice 0", other)  # another session at nice 0: competes
        monkeypatch.setattr(threads.time, "monotonic", lambda: now)

    at(0, 0, 0, 0, 10.0)
    use = CpuUse(stat, proc)
    at(300, 100, 100, 100, 11.0)  # 3 CPU-seconds busy in 1 s: 1 of them the niced session's
    assert use.others() == pytest.approx(2.0)
    (proc / "sys" / "kernel" / "sched_autogroup_enabled").write_text("0\n")  # groups off: every process competes
    at(600, 200, 200, 200, 12.0)
    assert use.others() == pytest.approx(3.0)
    (proc / "sys" / "kernel" / "sched_autogroup_enabled").write_text("1\n")
    (proc / "self" / "autogroup").write_text("")  # a sandbox's empty file (seen on CI): no groups to tell apart
    at(900, 300, 300, 300, 13.0)
    assert use.others() == pytest.approx(3.0)
    (proc / "self" / "autogroup").write_text("/autogroup-1 nice 0\n")
    at(1200, 400, 400, 400, 14.0)
    (proc / "10" / "stat").write_text("garbled")  # a process's file in another format is passed over
    assert use.others() == pytest.approx(3.0)


def test_a_model_on_a_gpu_is_left_alone(monkeypatch):
    tuner, clock = tuner_with(monkeypatch, lambda n: 1.0)
    tuner.on_train_start(None, SimpleNamespace(device=torch.device("cuda", 0)))
    torch.set_num_threads(2)
    for _ in range(8):
        clock.step(tuner)
    assert torch.get_num_threads() == 2 and tuner.chosen == []


def test_a_fixed_count_is_left_alone(monkeypatch):
    tuner, clock = tuner_with(monkeypatch, lambda n: 1.0)
    tuner = ThreadTuner(2)
    tuner.on_train_start(None, ON_CPU)
    torch.set_num_threads(2)
    for _ in range(5):
        clock.step(tuner)
    assert torch.get_num_threads() == 2 and tuner.chosen == []


def train_char_lm(tuner) -> dict:
    torch.manual_seed(0)
    model = CharLanguageModel(list("abcdefghijklmnop"), cell="lstm", embedding_dim=16, hidden_size=64,
                              num_layers=2, dropout=0.1)
    ids = np.random.default_rng(0).integers(1, 17, 8000).astype(np.int16)
    loader = DataLoader(StreamWindows(ids, 16, 32), batch_size=None)
    trainer = quiet_trainer(max_steps=14, callbacks=[tuner], precision="bf16-mixed", num_sanity_val_steps=0,
                            limit_val_batches=0)
    trainer.fit(model, train_dataloaders=loader)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_switching_the_thread_count_while_training_changes_no_weight(monkeypatch):
    """The tuner may switch at any step, so the count must not change the numbers (bf16 autocast, as the char
    LM trains here): a run that switches every few steps equals a run with one thread, bit for bit."""
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    torch.set_num_threads(1)
    one = train_char_lm(ThreadTuner(1))
    switching = ThreadTuner("auto", every=1, max_every=1, window=2)
    two = train_char_lm(switching)
    assert len(switching.chosen) >= 2  # it probed both counts more than once
    for name in one:
        assert torch.equal(one[name], two[name]), name
