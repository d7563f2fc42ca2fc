"""The gradient lab's stages end to end on a tiny budget."""

import json
import math

import pytest
import yaml

from rnnlab import RnnlabError
from rnnlab.cli import main


def test_stages_write_metrics_plots_and_figures(workdir):
    from rnnlab.gradients.lab import run_adding

    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["gradients"]["adding"]["workers"] = 2  # one cell through the process pool
    (workdir / "pool.yaml").write_text(yaml.safe_dump(params))
    run_adding("rnn", "pool.yaml")
    for args in (["adding", "lstm"], ["adding", "gru"], ["exploding"], ["report"]):
        main(["gradients", *args])
    metrics = json.loads((workdir / "metrics/gradients.json").read_text())
    for cell in ("rnn", "lstm", "gru"):
        for n in (5, 10):
            run = metrics["adding"][cell][f"T{n}"]
            assert math.isfinite(run["test_mse"]) and 0 < run["steps"] <= 20
    assert 0.1 < metrics["adding_baseline_mse"]["T10"] < 0.25  # predicting 1.0 scores about 1/6
    assert metrics["exploding"]["no_clip"]["diverged"] and not metrics["exploding"]["clip_1"]["diverged"]
    assert set(metrics["profile"]) == {f"{c}_{w}" for c in ("rnn", "lstm", "gru") for w in ("init", "trained")}
    rows = (workdir / "metrics/gradients_profile.csv").read_text().splitlines()
    assert len(rows) == 1 + 10
    for name in ("adding_mse", "gradient_profile", "exploding"):
        assert (workdir / f"reports/figures/{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert "| 10 |" in (workdir / "reports/gradients.md").read_text()


def test_mlflow_records_every_run_and_marks_the_diverged_one_failed(workdir):
    import mlflow

    main(["gradients", "exploding"])
    runs = mlflow.search_runs(experiment_names=["gradients"])
    status = dict(zip(runs["tags.mlflow.runName"], runs["status"]))
    assert status == {"exploding-no_clip": "FAILED", "exploding-clip_1": "FINISHED"}
    failed = runs[runs["tags.mlflow.runName"] == "exploding-no_clip"].iloc[0]
    assert failed["tags.diverged"].startswith("loss became ")


def test_report_before_training_names_the_missing_stage(workdir):
    with pytest.raises(RnnlabError, match="adding_rnn/results.json"):
        from rnnlab.gradients.report import run_report

        run_report()


def test_unknown_cell_is_rejected(workdir, capsys):
    with pytest.raises(SystemExit) as e:
        main(["gradients", "adding", "transformer"])
    assert e.value.code == 2
    assert "gradients.adding.lr.transformer" in capsys.readouterr().err
