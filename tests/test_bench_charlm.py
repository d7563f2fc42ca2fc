"""Smoke test of benchmarks/bench_charlm.py on a tiny model and a few steps (the real benchmark never runs
in the test suite)."""

import importlib.util
import json
import sys

import pytest

from conftest import ROOT


def test_bench_charlm_runs_and_writes_its_figures(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_charlm", ROOT / "benchmarks" / "bench_charlm.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.chdir(tmp_path)  # no data/processed/charlm here: random ids of the corpus's vocabulary size
    monkeypatch.setattr(bench, "SETTINGS", {**bench.SETTINGS, "embedding_dim": 8, "batch_size": 4, "seq_len": 16})
    monkeypatch.setattr(bench, "SIZES", {"small": dict(hidden_size=8, num_layers=1),
                                         "default": dict(hidden_size=16, num_layers=2)})
    out = tmp_path / "bench.json"
    monkeypatch.setattr(sys, "argv", ["bench_charlm.py", "--steps", "3", "--warmup", "1", "--cells", "gru",
                                      "--precisions", "32-true", "--out", str(out)])
    bench.main()
    result = json.loads(out.read_text())
    assert result["chars_per_second"]["gru"]["32-true"] > 0
    pair = result["lightning_vs_plain"]["gru"]["small"]
    assert pair["lightning"] > 0 and pair["plain"] > 0
    assert pair["ratio"] == pytest.approx(pair["lightning"] / pair["plain"], rel=0.01)
    assert 0 <= result["loader_share"]["share_of_step_loop"] < 1
