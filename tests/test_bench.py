"""Smoke tests of benchmarks/: bench.py (every benchmark, one command) and bench_classify.py's functions on tiny
synthetic data and tiny checkpoints built in tmp_path (the real benchmark never runs in the test suite)."""

import importlib.util
import json
import string

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict

from rnnlab.core.checkpoint import CLASS_KEY
from rnnlab.core.threads import available_cpus, candidates
from rnnlab.shapes.many_to_many import CharLanguageModel
from rnnlab.shapes.many_to_one import SequenceClassifier

from conftest import ROOT

TINY = dict(cell="gru", embedding_dim=8, hidden_size=8, num_layers=1, dropout=0.1, bidirectional=True,
            pooling="max", batch_size=4)
WORDS = ["good", "bad", "film", "plot", "the", "a"]


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return load("bench_classify")


def write_task(root, task: str, rng) -> None:
    """A tiny data/processed/TASK: 24/6/6 rows of 2-9 steps, with labels.json and vocab.json/standardise.json."""
    out = root / "data" / task
    letters = list(string.ascii_lowercase)
    vocab = ["<pad>", "<unk>"] + (WORDS if task == "sentiment" else letters)
    splits = {}
    for split, n in (("train", 24), ("validation", 6), ("test", 6)):
        rows = {"label": rng.integers(0, 2, n).tolist()}
        lengths = rng.integers(2, 10, n)
        if task == "speaker":
            rows["frames"] = [rng.normal(size=(k, 3)).astype(np.float32).tolist() for k in lengths]
        else:
            words = [[vocab[i] for i in rng.integers(2, len(vocab), k)] for k in lengths]
            rows["tokens"] = [[vocab.index(w) for w in ws] for ws in words]
            rows["text" if task == "sentiment" else "name"] = [(" " if task == "sentiment" else "").join(ws)
                                                               for ws in words]
        splits[split] = Dataset.from_dict(rows)
    DatasetDict(splits).save_to_disk(str(out))
    (out / "labels.json").write_text(json.dumps(["no", "yes"]))
    if task == "speaker":
        (out / "standardise.json").write_text(json.dumps({"mean": [0.0] * 3, "std": [1.0] * 3}))
    else:
        (out / "vocab.json").write_text(json.dumps({"tokens": vocab}))


def save(model, path) -> None:
    path.parent.mkdir(parents=True)
    torch.save({CLASS_KEY: type(model).__name__, "hyper_parameters": dict(model.hparams),
                "state_dict": model.state_dict()}, path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    rng = np.random.default_rng(0)
    for task in ("sentiment", "surname", "speaker"):
        write_task(root, task, rng)
        vocab = json.loads((root / "data" / task / "vocab.json").read_text())["tokens"] if task != "speaker" else None
        kind = ({"input_size": 3, "standardise": {"mean": [0.0] * 3, "std": [1.0] * 3}} if task == "speaker"
                else {"vocab_size": len(vocab), "vocab": vocab})
        save(SequenceClassifier(num_classes=2, task=task, labels=["no", "yes"], embedding_dim=4, hidden_size=4,
                                **kind), root / "models" / task / "model.ckpt")
    save(CharLanguageModel(list("ROMEO: abc"), embedding_dim=4, hidden_size=4, num_layers=1, dropout=0.0),
         root / "models" / "charlm" / "model.ckpt")
    return root


def test_batches_cover_every_row_once(bench):
    lengths = list(np.random.default_rng(1).integers(1, 60, 1000))
    for make in (bench.random_batches, bench.bucketed_batches):
        batches = make(lengths, 32, seed=0)
        assert sorted(i for b in batches for i in b) == list(range(1000))
    # buckets hold similar lengths: far less padding than random batches
    def padding(batches):
        return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)
    assert padding(bench.bucketed_batches(lengths, 32, 0)) < padding(bench.random_batches(lengths, 32, 0)) / 3


def test_padded_classifier_runs_the_same_weights(bench):
    kwargs = dict(num_classes=2, vocab_size=10, embedding_dim=4, hidden_size=4, dropout=0.0)
    packed, padded = SequenceClassifier(**kwargs), bench.PaddedClassifier(**kwargs)
    padded.load_state_dict(packed.state_dict())
    inputs, lengths = torch.tensor([[3, 4, 5], [6, 7, 0]]), torch.tensor([3, 2])
    # a full-length row sees no padding: the same logits; the shorter one differs (its state runs over the pad)
    assert torch.allclose(packed(inputs, lengths)[0], padded(inputs, lengths)[0], atol=1e-6)
    assert padded(inputs, lengths).shape == (2, 2)


def test_variable_length_on_tiny_data(bench, tiny):
    result = bench.variable_length("sentiment", tiny / "data" / "sentiment", steps=2, warmup=1, settings=TINY)
    assert set(result["runs"]) == {"packed_random", "packed_bucketed", "padded_random", "padded_bucketed"}
    for run in result["runs"].values():
        assert run["steps_timed"] == 2 and run["steps_per_second"] > 0 and run["tokens_per_second"] > 0
        assert 0 <= run["padding_fraction"] < 1
    assert all(v > 0 for v in result["speedup"].values())


def test_plain_twin_takes_the_lightning_runs_batches_and_update(tiny, monkeypatch):
    """The plain loop paired with the Lightning run is the same training: after the same steps, the same weights."""
    charlm = load("bench_charlm")
    monkeypatch.chdir(tiny)  # no data/processed/charlm: random ids of the corpus's vocabulary size
    s = {"embedding_dim": 8, "dropout": 0.0, "lr": 1e-2, "weight_decay": 0.01, "batch_size": 4, "seq_len": 6,
         "gradient_clip_val": 0.01}  # small enough to bind: the clipping is part of what must match
    size = {"hidden_size": 8, "num_layers": 1}
    twin = charlm.PlainTwin(s, "lstm", "32-true", size, warmup=1)

    class Keep(charlm.Callback):
        def on_train_end(self, trainer, module):
            self.module = module

    keep = Keep()
    charlm.lightning_steps(s, "lstm", "32-true", size, steps=4, warmup=1, callbacks=[twin, keep])
    assert len(twin.lightning) == len(twin.plain) == 4
    assert all(t > 0 for t in twin.lightning + twin.plain)
    lightning, plain = dict(keep.module.named_parameters()), dict(twin.model.named_parameters())
    assert lightning.keys() == plain.keys()
    for name, p in lightning.items():
        torch.testing.assert_close(p, plain[name], msg=name)


def test_one_command_runs_every_benchmark_and_writes_json_and_tables(tiny, tmp_path, monkeypatch):
    bench = load("bench")
    monkeypatch.setitem(bench.bench_classify.SETTINGS, "sentiment", TINY)
    monkeypatch.setitem(bench.bench_classify.SETTINGS, "surname",
                        {**TINY, "cell": "lstm", "pooling": "last", "bidirectional": False})
    out, report = tmp_path / "bench.json", tmp_path / "bench.md"
    monkeypatch.chdir(tmp_path)  # no data/processed/charlm here: random ids of the corpus's vocabulary size
    bench.main(["--smoke", "--data-dir", str(tiny / "data"), "--models-dir", str(tiny / "models"),
                "--out", str(out), "--report", str(report)])
    result = json.loads(out.read_text())
    assert {"cpu", "threads", "torch", "bf16_cpu", "load_average_1min_after"} <= set(result["machine"])
    charlm = result["charlm"]
    assert charlm["settings"]["hidden_size"] == 16 and charlm["settings"]["experiment"] == "charlm"
    assert charlm["chars_per_second"]["gru"]["32-true"] > 0 and charlm["chars_per_second"]["gru"]["bf16-mixed"] > 0
    assert charlm["median_step_chars_per_second"]["gru"]["32-true"] > 0
    for size in ("small", "default"):
        pair = charlm["lightning_vs_plain"]["gru"][size]
        assert pair["lightning"] > 0 and pair["plain"] > 0 and pair["ratio"] > 0
        assert isinstance(pair["lightning_ms_per_step"], float)
    assert 0 <= charlm["loader_share"]["share_of_step_loop"] < 1
    classify = result["classify"]
    assert set(classify["variable_length"]["tasks"]) == {"sentiment", "surname"}
    inference = classify["inference"]
    assert inference["generation"]["ms_per_char"] > 0
    for task in ("sentiment", "surname", "speaker"):
        assert 0 < inference["single"][task]["p50_ms"] <= inference["single"][task]["p95_ms"]
        assert inference["batched"][task]["examples_per_second"] > 0
    tables = report.read_text()
    assert "| gru | " in tables and "## Lightning module against a plain PyTorch loop" in tables
    assert "| sentiment | random | " in tables


def test_the_benchmark_measures_the_pipelines_char_lm():
    settings = load("bench_charlm").pipeline_settings()
    assert settings["cell"] == "lstm" and settings["batch_size"] == 16 and settings["dropout"] == 0.0


def test_the_thread_benchmark_trains_the_char_lm_with_each_thread_setting():
    threads_bench = load("bench_threads")
    for mode in ("1", "auto"):
        result = threads_bench.worker(mode, 1.0, smoke=True)
        assert result["steps"] >= 1 and result["seconds"] >= 1.0
        tried = candidates(available_cpus()) if mode == "auto" else []
        assert result["threads_tried"] == tried


def test_the_thread_benchmark_compares_each_mode_beside_a_busy_process_with_the_best_quiet_one(tmp_path, monkeypatch):
    threads_bench = load("bench_threads")
    competitors = []
    real_competitor = threads_bench.competitor

    def competitor():
        competitors.append(real_competitor())
        return competitors[-1]

    speed = {"quiet": {"1": 10.0, "all": 16.0, "auto": 15.0}, "busy": {"1": 9.0, "all": 1.0, "auto": 8.0}}
    monkeypatch.setattr(threads_bench, "competitor", competitor)
    monkeypatch.setattr(threads_bench, "run_case", lambda mode, seconds, smoke: {
        "steps_per_s": speed["busy" if competitors else "quiet"][mode]})
    out = tmp_path / "bench_threads.json"
    result = threads_bench.main(["--smoke", "--out", str(out)])
    assert result["slowdown"] == {"1": round(16 / 9, 2), "all": 16.0, "auto": 2.0}
    assert json.loads(out.read_text())["slowdown"] == result["slowdown"]
    assert len(competitors) == 1 and competitors[0].poll() is not None  # the busy process is gone


def test_cv_holds_out_folds_or_the_validation_split_and_reports_either(tmp_path, capsys):
    cv = load("cv")
    assert cv.held_out(3) == [0, 1, 2] and cv.held_out(0) == [None]
    assert cv.fold_overrides("surname", 0, None, 7) == ["task=surname", "experiment=surname", "seed=7"]
    assert cv.fold_overrides("surname", 5, 2, 7)[2:4] == ["data.folds=5", "data.fold=2"]
    with pytest.raises(SystemExit, match="--folds must be 0"):
        cv.held_out(1)
    labels = np.array([0, 1, 1, 0])
    for seed, right in ((0, [1, 1, 1, 0]), (1, [1, 1, 0, 0])):  # seed 0 three of four right, seed 1 two
        probs = np.array([[0.9, 0.1] if (y == 0) == bool(r) else [0.1, 0.9] for y, r in zip(labels, right)])
        np.savez(cv.run_path(tmp_path, None, seed), probs=probs, labels=labels, seconds=1.0)
    cv.report(tmp_path, 0, [0, 1])
    out = capsys.readouterr().out
    assert "2 seed(s), cv acc 0.6250 +- 0.1250" in out and "ensemble of 2 seeds" in out


def test_sentiment_lm_predicts_the_words_around_each_step_and_loads_into_the_classifier():
    from types import SimpleNamespace

    lm_module = load("sentiment_lm")
    lm = lm_module.BiLM(10, 128, 128, 0.0, 0.0, predict=6)
    x = torch.tensor([[2, 3, 7, 4, 0], [5, 1, 2, 0, 0]])
    loss, n = lm.loss(x, torch.tensor([4, 3]))
    # next words 3 4 (7: beyond `predict`) and 2 (1: <unk>); previous words 2 3 and 5; never padding
    assert n == 6 and torch.isfinite(loss)
    model = lm_module.classifier(["w"] * 10, SimpleNamespace(dropout=0.5, pooling="max"), lm)
    assert torch.equal(model.members[0].rnn.weight_hh_l0_reverse, lm.rnn.weight_hh_l0_reverse)
    assert torch.equal(model.members[0].encoder.weight, lm.encoder.weight)
