"""rnnlab.serving.registry: every evaluated model becomes a version of rnnlab-<task>; the alias `champion` moves to a
new version only when its test metric beats the champion's by more than the margin."""

import mlflow
import pytest

from rnnlab import RnnlabError
from rnnlab.serving.registry import beats, register

from conftest import save_checkpoint, tiny_modules


@pytest.mark.parametrize("value,champion,margin,lower,expected", [
    (0.80, 0.78, 0.0, False, True),
    (0.78, 0.78, 0.0, False, False),  # a tie keeps the champion
    (0.80, 0.78, 0.05, False, False),
    (0.84, 0.78, 0.05, False, True),
    (1.90, 2.00, 0.0, True, True),
    (2.10, 2.00, 0.0, True, False),
    (float("nan"), 2.00, 0.0, True, False),
])
def test_beats(value, champion, margin, lower, expected):
    assert beats(value, champion, margin, lower) is expected


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    yield uri, mlflow.MlflowClient(uri)
    mlflow.set_tracking_uri(None)


def trained_run(client, task: str, metric: str, value: float) -> str:
    """A stand-in for a training run the evaluate stage has scored."""
    experiment = client.get_experiment_by_name(f"rnnlab-{task}")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(f"rnnlab-{task}")
    run_id = client.create_run(experiment_id).info.run_id
    client.log_metric(run_id, metric, value)
    client.set_terminated(run_id)
    return run_id


def test_gate_moves_the_alias_only_on_a_real_gain(store, tmp_path, capsys):
    uri, client = store
    ckpt = save_checkpoint(tiny_modules()["surname"], tmp_path / "model.ckpt")
    steps = [(0.70, 0.0, True, 1), (0.65, 0.0, False, 1), (0.72, 0.05, False, 1), (0.80, 0.05, True, 4)]
    for version, (accuracy, margin, promoted, holder) in enumerate(steps, start=1):
        run_id = trained_run(client, "surname", "test_accuracy", accuracy)
        decision = register("surname", ckpt, run_id, uri, margin=margin)
        assert (decision.version, decision.promoted) == (version, promoted)
        assert int(client.get_model_version_by_alias("rnnlab-surname", "champion").version) == holder
        assert client.get_model_version("rnnlab-surname", str(version)).tags["gate"] == (
            "promoted" if promoted else "kept")
        assert client.get_run(run_id).data.tags["registry_decision"] == str(decision)
    # the decision names both numbers
    out = capsys.readouterr().out
    assert "v2: test_accuracy 0.6500 vs champion v1 0.7000 (margin 0) -> champion kept" in out
    assert "v4: test_accuracy 0.8000 vs champion v1 0.7000 (margin 0.05) -> promoted to champion" in out
    # the champion is a model that predicts from raw input
    model = mlflow.pyfunc.load_model("models:/rnnlab-surname@champion")
    assert list(model.predict(["Rossi"]).columns)[:2] == ["label", "probability"]


def test_lower_is_better_for_bits_per_character(store, tmp_path):
    uri, client = store
    ckpt = save_checkpoint(tiny_modules()["charlm"], tmp_path / "model.ckpt")
    promoted = [register("charlm", ckpt, trained_run(client, "charlm", "test_bpc", bpc), uri).promoted
                for bpc in (2.1, 2.2, 1.9)]
    assert promoted == [True, False, True]


def test_errors_name_the_problem(store, tmp_path):
    uri, client = store
    ckpt = save_checkpoint(tiny_modules()["sentiment"], tmp_path / "model.ckpt")
    unscored = trained_run(client, "sentiment", "val_acc", 0.5)
    with pytest.raises(RnnlabError, match="no metric 'test_accuracy'"):
        register("sentiment", ckpt, unscored, uri)
    with pytest.raises(RnnlabError, match="margin must be >= 0"):
        register("sentiment", ckpt, trained_run(client, "sentiment", "test_accuracy", 0.5), uri, margin=-0.1)
