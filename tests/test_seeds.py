"""The seeds stage (rnnlab.pipeline.seeds, `rnnlab seeds`, seeds@TASK in dvc.yaml): the first seed's scores are
the evaluate stage's, every other seed trains and tests in a scratch folder, and metrics/TASK_seeds.json holds
each score's mean and standard deviation."""

import json
import statistics

import mlflow
import pytest

from rnnlab import RnnlabError
from rnnlab.cli import main
from rnnlab.pipeline.seeds import run_seeds, spread
from rnnlab.pipeline.train import train

from conftest import compose, run_task


def test_spread_gives_each_number_its_mean_and_sample_deviation():
    runs = [{"test": {"accuracy": 0.5, "per_class": {"a": {"recall": 1}}}, "chosen": {}, "note": "x"},
            {"test": {"accuracy": 0.7, "per_class": {"a": {"recall": 0}}, "only_here": 1.0}, "chosen": {}, "note": "y"}]
    assert spread(runs) == {"test": {"accuracy": {"mean": 0.6, "std": round(statistics.stdev([0.5, 0.7]), 4)},
                                     "per_class": {"a": {"recall": {"mean": 0.5, "std": 0.7071}}}}}
    assert spread(runs[:1])["test"]["accuracy"] == {"mean": 0.5, "std": 0.0}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The forecaster's smoke budget trained and evaluated once, as train@forecast and evaluate@forecast do."""
    root = tmp_path_factory.mktemp("seeds")
    run_task(root, "forecast")
    overrides = ("task=forecast", "model=gru", "experiment=smoke_forecast", f"paths.data_dir={root}/data",
                 f"paths.output_dir={root}/out", f"logger.tracking_uri=sqlite:///{root}/mlflow.db",
                 "registry.enabled=false")
    train(compose(*overrides))
    return root, overrides


def test_seeds_reads_the_first_and_trains_the_others(project):
    root, overrides = project
    first = json.loads((root / "out" / "metrics" / "forecast.json").read_text())
    cfg = compose(*overrides, "stage=seeds@forecast", "+seeds=2")
    result = run_seeds(cfg)
    assert cfg.seed == 42 and cfg.paths.model_dir == f"{root}/out/model"  # the stage's own config is untouched
    written = json.loads((root / "out" / "metrics" / "forecast_seeds.json").read_text())
    assert written == result and written["seeds"] == [42, 43]
    mae = written["test"]["co2"]["mae"]
    assert mae["std"] > 0  # two different trainings
    # the first seed is the evaluate stage's own scores: the second is what the mean and deviation leave
    second = 2 * mae["mean"] - first["test"]["co2"]["mae"]
    assert abs(second - first["test"]["co2"]["mae"]) == pytest.approx(mae["std"] * 2 ** 0.5, abs=1e-3)
    # a classical baseline does not depend on the network's seed
    assert written["baseline"]["co2"]["sarimax"]["mae"] == {"mean": first["baseline"]["co2"]["sarimax"]["mae"],
                                                             "std": 0.0}
    client = mlflow.MlflowClient(f"sqlite:///{root}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("rnnlab-forecast").experiment_id],
                              "tags.dvc_stage = 'seeds@forecast'")
    assert [r.data.params["seed"] for r in runs] == ["43"]
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.metrics["test_co2_mae"] == pytest.approx(second, abs=1e-3)
    assert not client.search_registered_models()  # none registered
    # nothing of the other seeds is left in the pipeline's folders
    assert sorted(p.name for p in (root / "out" / "metrics").iterdir()) == [
        "forecast.json", "forecast_curves.csv", "forecast_seeds.json"]


def test_one_seed_trains_nothing_and_bad_counts_are_one_line_errors(project, capsys):
    root, overrides = project
    one = run_seeds(compose(*overrides, "+seeds=1"))
    first = json.loads((root / "out" / "metrics" / "forecast.json").read_text())
    assert one["seeds"] == [42] and one["test"]["co2"]["mae"] == {"mean": first["test"]["co2"]["mae"], "std": 0.0}
    with pytest.raises(RnnlabError, match=r"seeds must be a positive integer \(how many seeds: \+seeds=N; the "
                                          r"pipeline's params.yaml tasks.forecast.seeds\), got 0"):
        run_seeds(compose(*overrides, "+seeds=0"))
    with pytest.raises(RnnlabError, match=r"nowhere/forecast.json is missing: the first seed's scores come from "
                                          r"the evaluate stage \(dvc repro evaluate@forecast\)"):
        run_seeds(compose(*overrides, "+seeds=2", f"paths.metrics_dir={root}/nowhere"))
    with pytest.raises(SystemExit) as exit_info:
        main(["seeds", *overrides, "hydra.run.dir=" + str(root / "hydra"), "+seeds=two"])
    assert exit_info.value.code == 2
    assert "seeds must be a positive integer" in capsys.readouterr().err
