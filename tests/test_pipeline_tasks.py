"""The other tasks' DVC stages end to end on the archive slices (see tests/test_pipeline.py, which holds the
workflows' story on the char LM and the speaker classifier): the two classifiers of words and names, the
surname generator (checked by the surname classifier) and the forecaster, in a scratch project of their own."""

import json

import mlflow
from test_pipeline import assert_classifier_outputs, scratch_project, sh, stages_run, stale, task_stages

TASKS = ("sentiment", "surname", "surname_gen", "forecast")
LABELLED = ("sentiment", "surname")
TARGETS = tuple(f"register@{task}" for task in TASKS)


def test_the_other_tasks_run_through_dvc(tmp_path):
    root = scratch_project(tmp_path)

    assert stages_run(sh(root, ".ci/pipeline", "repro", *TARGETS)) == task_stages(TASKS)
    for task in LABELLED:
        assert_classifier_outputs(root, task)
    generated = json.loads((root / "metrics" / "surname_gen.json").read_text())
    assert {"test", "val", "generated", "per_language"} == set(generated) and "ratio" in generated["generated"]
    assert (root / "reports" / "surname_gen" / "surname_gen_samples.txt").is_file()
    assert (root / "metrics" / "surname_gen_curves.csv").is_file()
    forecast = json.loads((root / "metrics" / "forecast.json").read_text())
    assert set(forecast["test"]) == {"co2", "sunspots"}
    assert set(forecast["baseline"]["sunspots"]) == {"naive", "autoreg"}
    assert (root / "reports" / "forecast" / "figures" / "forecast.png").is_file()
    assert (root / "metrics" / "forecast_curves.csv").is_file()

    client = mlflow.MlflowClient(f"sqlite:///{root}/mlflow.db")
    for task in LABELLED:
        champion = client.get_model_version_by_alias(f"rnnlab-{task}", "champion")
        assert int(champion.version) == 1 and client.get_run(champion.run_id).data.tags["role"] == "model"

    assert stages_run(sh(root, "dvc", "repro", *TARGETS)) == set()
    gru = root / "conf" / "model" / "gru.yaml"
    gru.write_text(gru.read_text() + "# an edit under conf/\n")
    # a stage reads only the conf/ files its task composes: sentiment, the surname generator and the
    # forecaster (gru) go stale, the surname classifier (lstm) does not
    assert stale(root, TARGETS) == {f"{kind}@{task}" for kind in ("train", "evaluate")
                                    for task in ("sentiment", "surname_gen", "forecast")}
