"""`rnnlab compare`: a small MLflow store of fake runs (no training), the table, the PNG and the errors."""

from pathlib import Path

import pytest
import yaml

from rnnlab import tasks
from rnnlab.cli import main
from rnnlab.serving.compare import filter_string

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# experiment -> (run name, status, tags, test metric, val metric, params); val_loss gets a 3-point history
RUNS = {
    "charlm": [
        ("charlm-lstm", "FINISHED", {"cell": "lstm", "role": "model", "note": "it's"}, 2.10, 1.95,
         {"hidden_size": "256", "num_layers": "2", "lr": "0.003"}),
        ("charlm-gru", "FINISHED", {"cell": "gru", "role": "model"}, 2.05, 1.90,
         {"hidden_size": "128", "num_layers": "1", "lr": "0.006"}),
        ("charlm-rnn", "FINISHED", {"cell": "rnn", "role": "model"}, 2.40, 2.30,
         {"hidden_size": "64", "num_layers": "1", "lr": "0.01"}),
        ("charlm-crash", "FAILED", {"cell": "lstm", "role": "model"}, 1.50, 1.40,
         {"hidden_size": "512", "num_layers": "3", "lr": "0.1"}),
    ],
    "sentiment": [
        ("sentiment-gru", "FINISHED", {"cell": "gru", "role": "model"}, 0.78, 0.76, {"hidden_size": "128"}),
        ("sentiment-baseline", "FINISHED", {"cell": "BagClassifier", "role": "baseline"}, 0.80, 0.77,
         {"hidden_size": "64", "baseline/hidden_size": "64"}),
        ("sentiment-lstm", "FINISHED", {"cell": "lstm", "role": "model"}, 0.70, 0.71, {"hidden_size": "32"}),
    ],
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """{task: {run name: run id}} in a fresh SQLite store; experiment rnnlab-speaker deliberately absent."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(uri)
    ids = {}
    for task, runs in RUNS.items():
        test_metric, val_metric = tasks.get(task).metric, tasks.get(task).val_metric
        experiment = client.create_experiment(f"rnnlab-{task}")
        ids[task] = {}
        for i, (name, status, tags, test, val, params) in enumerate(runs):
            run = client.create_run(experiment, run_name=name, start_time=1_700_000_000_000 + i * 60_000,
                                    tags={"task": task, "git_commit": "0123456789abcdef-dirty",
                                          "dvc_stage": "train", **tags})
            rid = run.info.run_id
            for key, value in params.items():
                client.log_param(rid, key, value)
            for step in (10, 20, 30):
                client.log_metric(rid, "val_loss", val + 1.0 / step, step=step)
            client.log_metric(rid, val_metric, val)
            client.log_metric(rid, test_metric, test)
            client.set_terminated(rid, status)
            ids[task][name] = rid
    return uri, ids


@pytest.fixture(autouse=True)
def tracking(store, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store[0])
    monkeypatch.chdir(tmp_path)


def compare(args, capsys):
    """Exit code (0 when it returns), stdout, stderr."""
    try:
        main(["compare", *args])
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def order(out: str, ids: dict[str, str]) -> list[str]:
    """The run names whose short ids appear in `out`, in table order."""
    found = [(out.index(rid[:8]), name) for name, rid in ids.items() if rid[:8] in out]
    return [name for _, name in sorted(found)]


def test_charlm_runs_sorted_by_test_bpc_ascending_and_curves_plotted(store, tmp_path, capsys):
    ids = store[1]["charlm"]
    png = tmp_path / "out" / "charlm.png"
    code, out, err = compare(["charlm", "--plot", str(png)], capsys)
    assert code == 0, err
    assert order(out, ids) == ["charlm-gru", "charlm-lstm", "charlm-rnn"]  # the FAILED run is left out
    assert "rnnlab-charlm: 3 of 3 runs by test_bpc (lower is better)" in out
    for column in ("run", "started", "cell", "role", "hidden", "layers", "lr", "test_bpc", "val_bpc",
                   "git commit", "dvc stage"):
        assert column in out
    assert "2.0500" in out and "1.9000" in out and "01234567-dirty" in out and "status" not in out
    assert png.read_bytes().startswith(PNG_MAGIC)
    assert f"val_loss curves: {png}" in out
    assert [p.name for p in png.parent.iterdir()] == ["charlm.png"]  # no temporary file left beside it


def test_labelled_task_sorted_by_test_accuracy_descending_into_the_default_png(store, tmp_path, capsys):
    ids = store[1]["sentiment"]
    code, out, err = compare(["sentiment"], capsys)
    assert code == 0, err
    assert order(out, ids) == ["sentiment-baseline", "sentiment-gru", "sentiment-lstm"]
    assert "by test_accuracy (higher is better)" in out and "val_acc" in out and "BagClassifier" in out
    assert (tmp_path / "reports" / "compare_sentiment.png").read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize("tags, expected", [
    (["cell=lstm"], ["charlm-lstm"]),
    (["role=model", "cell=gru"], ["charlm-gru"]),
    (["role=model"], ["charlm-gru", "charlm-lstm", "charlm-rnn"]),
    (["note=it's"], ["charlm-lstm"]),  # a quote in the value is quoted safely
])
def test_tags_filter_the_runs(tags, expected, store, tmp_path, capsys):
    args = ["charlm", "--plot", str(tmp_path / "c.png")] + [a for t in tags for a in ("--tag", t)]
    code, out, err = compare(args, capsys)
    assert code == 0, err
    assert order(out, store[1]["charlm"]) == expected


def test_all_includes_failed_runs_with_their_status(store, tmp_path, capsys):
    code, out, err = compare(["charlm", "--all", "--plot", str(tmp_path / "c.png")], capsys)
    assert code == 0, err
    assert order(out, store[1]["charlm"]) == ["charlm-crash", "charlm-gru", "charlm-lstm", "charlm-rnn"]
    assert "status" in out and "FAILED" in out and "FINISHED" in out


def test_metric_override_and_max_runs(store, tmp_path, capsys):
    ids = store[1]["charlm"]
    code, out, err = compare(["charlm", "--metric", "val_bpc", "--max-runs", "2", "--plot", str(tmp_path / "c.png")],
                             capsys)
    assert code == 0, err
    assert order(out, ids) == ["charlm-gru", "charlm-lstm"]
    assert "rnnlab-charlm: 2 of 3 runs by val_bpc (lower is better)" in out
    code, out, err = compare(["charlm", "--metric", "val_loss", "--plot", str(tmp_path / "c.png")], capsys)
    assert code == 0 and order(out, ids) == ["charlm-gru", "charlm-lstm", "charlm-rnn"]


def test_direction_comes_from_the_task_spec_then_from_the_metric_name():
    translate = tasks.get("translate")
    assert not translate.lower_is_better_for("test_bleu") and translate.lower_is_better_for("val_ppl")
    assert not tasks.get("sentiment").lower_is_better_for("val_acc")
    charlm = tasks.get("charlm")
    assert all(map(charlm.lower_is_better_for, ["val_loss", "test_bpc", "val_perplexity", "test_mse"]))
    assert not any(map(charlm.lower_is_better_for, ["test_accuracy", "val_acc", "val_macro_f1"]))


def test_filter_string_quotes_keys_and_values():
    assert filter_string({"cell": "lstm"}) == "attributes.status = 'FINISHED' and tags.`cell` = 'lstm'"
    assert filter_string({"mlflow.runName": "it's"}, include_all=True) == 'tags.`mlflow.runName` = "it\'s"'


@pytest.mark.parametrize("args, message", [
    (["weather"], "unknown task 'weather'; choose one of caption, charlm, forecast, sentiment, speaker, speech, "
                  "summarize, surname"),
    (["speaker"], "no experiment 'rnnlab-speaker'"),
    (["charlm", "--tag", "cell=xyz"], "no finished runs in 'rnnlab-charlm' with tags cell=xyz"),
    (["charlm", "--tag", "cell"], "malformed --tag 'cell': expected KEY=VALUE"),
    (["charlm", "--tag", "=lstm"], "malformed --tag '=lstm'"),
    (["charlm", "--tag", "note=both ' and \""], "both ' and \""),
    (["charlm", "--metric", "test_acc"], "unknown metric 'test_acc': the runs of 'rnnlab-charlm' log"),
    (["charlm", "--max-runs", "0"], "--max-runs must be >= 1, got 0"),
    (["charlm", "--max-runs", "two"], "invalid int value: 'two'"),
])
def test_errors_exit_2_with_one_line_and_no_png(args, message, tmp_path, capsys):
    png = tmp_path / "err.png"
    code, out, err = compare([*args, "--plot", str(png)], capsys)
    assert code == 2
    assert message in err and err.startswith("rnnlab: error: ") and err.count("\n") == 1
    assert not png.exists() and not (tmp_path / "reports").exists()


def test_a_missing_store_is_an_error_not_a_new_database(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/none.db")
    code, _, err = compare(["charlm"], capsys)
    assert code == 2 and f"no tracking store: {tmp_path}/none.db does not exist" in err
    assert list(tmp_path.iterdir()) == []


def test_every_registered_task_has_its_config_and_the_metrics_live_only_in_its_spec():
    configs = {p.stem: yaml.safe_load(p.read_text()) for p in (ROOT / "conf" / "task").glob("*.yaml")}
    assert set(configs) == set(tasks.names())
    for task, cfg in configs.items():
        assert cfg["task_name"] == task and "val_metric" not in cfg, task
