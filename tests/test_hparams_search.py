"""conf/hparams_search: Hydra's Optuna sweeper tunes a task, every trial an MLflow child run of one sweep."""

import mlflow
import pytest
import yaml

from conftest import compose, rnnlab, run_task


def test_the_search_space_composes():
    cfg = compose("+hparams_search=surname_optuna", "task=surname")
    assert cfg.optimized_metric == "val_accuracy" and cfg.registry.enabled is False


@pytest.mark.slow
def test_optuna_trials_are_child_runs_and_the_best_is_reported(tmp_path):
    run_task(tmp_path, "surname")
    done = rnnlab(tmp_path, "train", "+hparams_search=surname_optuna", "task=surname", "experiment=smoke_classifier",
                  "hydra.sweeper.n_trials=3", "callbacks.progress_bar=null")
    assert done.returncode == 0, done.stderr[-3000:]

    result = yaml.safe_load(next((tmp_path / "multirun").rglob("optimization_results.yaml")).read_text())
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("rnnlab-surname").experiment_id])
    parent = next(r for r in runs if "sweep" in r.data.tags)
    trials = [r for r in runs if r.data.tags.get("role") == "model"]
    assert len(trials) == 3 and {r.data.tags["mlflow.parentRunId"] for r in trials} == {parent.info.run_id}
    assert {int(r.data.params["model/hidden_size"]) for r in trials} <= {32, 64, 128, 256}
    # the study's best value is the best trial's validation accuracy as MLflow recorded it
    assert result["best_value"] == max(r.data.metrics["val_accuracy"] for r in trials)
    assert not client.search_registered_models()  # trials stay out of the registry
