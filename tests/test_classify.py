"""The many-to-one tasks end to end on the archive slices: train (recurrent model and baseline) composed from
conf/, evaluate, the predict CLI, and the checkpoint checks."""

import csv
import json

import mlflow
import numpy as np
import pytest
import torch

from rnnlab import RnnlabError
from rnnlab.cli import main
from rnnlab.core.checkpoint import CLASS_KEY, check_fits
from rnnlab.data.labelled import LabelledDataModule
from rnnlab.pipeline.train import train
from rnnlab.tasks import get, load_checkpoint

from conftest import compose, run_task

TASKS = ("sentiment", "speaker", "surname")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """data/processed/TASK of every labelled task, built from the slices by the real stages."""
    root = tmp_path_factory.mktemp("classify")
    for task in TASKS:
        run_task(root, task)
    return root


@pytest.fixture(scope="module")
def trained(project):
    """Each task trained with the smoke budget (model and baseline) and evaluated; task -> its output folder."""
    outs = {}
    for task in TASKS:
        out = project / "out" / task
        train(compose(f"task={task}", "experiment=smoke_classifier", f"paths.data_dir={project}/data",
                      f"paths.output_dir={out}", f"logger.tracking_uri=sqlite:///{project}/mlflow.db"))
        outs[task] = out
    return outs


@pytest.mark.parametrize("task", TASKS)
def test_train_tracks_model_and_baseline_in_mlflow(trained, project, task):
    client = mlflow.MlflowClient(f"sqlite:///{project}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name(f"rnnlab-{task}").experiment_id])
    by_role = {r.data.tags["role"]: r for r in runs}
    assert sorted(by_role) == ["baseline", "model"] and len(runs) == 2
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.tags["task"] == task and run.data.tags["git_commit"] and "data_version" in run.data.tags
    assert by_role["model"].data.tags["cell"] == "lstm"
    assert by_role["baseline"].data.tags["cell"] == "BagClassifier"
    model_metrics, baseline_metrics = by_role["model"].data.metrics, by_role["baseline"].data.metrics
    assert {"test_accuracy", "test_macro_f1", "val_accuracy", "baseline_bag_accuracy",
            "baseline_majority_accuracy", "train_loss_epoch", "val_loss", "val_acc"} <= set(model_metrics)
    assert {"test_accuracy", "test_macro_f1", "val_loss"} <= set(baseline_metrics)
    # the classical peers (tests/test_peers.py) are logged to the model's run, their runtimes too
    assert {f"baseline_{peer}_{key}" for peer in get(task).peer_names for key in ("accuracy", "val_accuracy", "seconds")
            } <= set(model_metrics)
    assert {a.path for a in client.list_artifacts(by_role["model"].info.run_id)} >= {
        "config.yaml", "checkpoints", f"{task}_confusion.csv", f"{task}_errors.csv"}

    out = trained[task]
    assert {p.name for p in (out / "model").iterdir()} == {"model.ckpt", "baseline.ckpt", "run.json"}
    refs = json.loads((out / "model" / "run.json").read_text())["runs"]
    assert refs == {role: run.info.run_id for role, run in by_role.items()}
    assert (out / "metrics" / f"{task}_curves.csv").read_text().startswith("step,train_loss,val_loss,val_acc\n")


@pytest.mark.parametrize("task", TASKS)
def test_evaluate_writes_metrics_confusion_and_errors(trained, project, task):
    out = trained[task]
    metrics = json.loads((out / "metrics" / f"{task}.json").read_text())
    labels = json.loads((project / "data" / "processed" / task / "labels.json").read_text())
    assert set(metrics) == {"test", "val", "baseline"}
    assert set(metrics["test"]) == {"accuracy", "macro_f1", "per_class"}
    assert set(metrics["test"]["per_class"]) == set(labels)
    assert all(set(v) == {"precision", "recall"} for v in metrics["test"]["per_class"].values())
    assert set(metrics["val"]) == {"accuracy", "macro_f1"}
    peers = get(task).peer_names
    assert set(metrics["baseline"]) == {"bag", "majority", *peers}
    assert set(metrics["baseline"]["bag"]) == {"accuracy", "macro_f1"}
    assert 0 < metrics["baseline"]["majority"]["accuracy"] <= 1
    for peer in peers:  # the bag's keys, and what chose the setting
        assert set(metrics["baseline"][peer]) == {"accuracy", "macro_f1", "val_accuracy", "chosen"}
    runtimes = out / "reports" / f"{task}_peers.csv"
    assert runtimes.is_file() == bool(peers)  # speaker: no peers, no file
    if peers:
        with open(runtimes) as f:
            rows = list(csv.DictReader(f))
        assert [r["peer"] for r in rows] == list(peers)
        assert all(0 <= float(r["seconds"]) <= float(r["search_seconds"]) for r in rows)  # rounded to 0.01 s

    dm = LabelledDataModule(task, str(project / "data" / "processed" / task))
    with open(out / "reports" / f"{task}_confusion.csv") as f:
        confusion = list(csv.DictReader(f))
    assert len(confusion) == len(dm.data["test"])
    assert [r["actual"] for r in confusion] == [labels[y] for _, y in dm.data["test"]]
    right = sum(r["actual"] == r["predicted"] for r in confusion)
    assert right / len(confusion) == pytest.approx(metrics["test"]["accuracy"], abs=1e-4)
    with open(out / "reports" / f"{task}_errors.csv") as f:
        errors = list(csv.DictReader(f))
    assert len(errors) == len(confusion) - right
    assert all(e["actual"] != e["predicted"] and 0 < float(e["probability"]) <= 1 for e in errors)
    if task == "speaker" and errors:
        assert errors[0]["input"].endswith(" frames")


def test_balance_options(project):
    processed = str(project / "data" / "processed" / "surname")
    plain = LabelledDataModule("surname", processed)
    assert "class_weights" not in plain.model_kwargs()
    weights = LabelledDataModule("surname", processed, balance="class_weights").model_kwargs()["class_weights"]
    counts = plain.counts
    assert len(weights) == len(counts) and sum(w * n for w, n in zip(weights, counts)) == pytest.approx(counts.sum())
    sampled = LabelledDataModule("surname", processed, balance="sampler").train_dataloader()
    assert type(sampled.sampler).__name__ == "WeightedSampler"
    rows = [int(label) for *_, labels in sampled for label in labels]
    # rare classes drawn about as often as common ones: the most common class's share falls
    assert max(np.bincount(rows)) / len(rows) < max(counts) / counts.sum()
    with pytest.raises(RnnlabError, match="data.balance must be null, class_weights or sampler, got 'oversample'"):
        LabelledDataModule("surname", processed, balance="oversample")


def test_cross_validation_folds_cover_train_and_validation_once_each_and_leave_test_alone(project):
    processed = str(project / "data" / "processed" / "surname")
    plain = LabelledDataModule("surname", processed)
    pooled = plain.shown("train") + plain.shown("validation")
    seen = []
    for fold in range(3):
        dm = LabelledDataModule("surname", processed, folds=3, fold=fold)
        train, validation = dm.shown("train"), dm.shown("validation")
        assert sorted(train + validation) == sorted(pooled)
        assert dm.shown("test") == plain.shown("test")
        seen += validation
        # stratified: every class with at least 3 pooled rows has one in each fold's validation
        labels = np.bincount([y for _, y in plain.data["train"]] + [y for _, y in plain.data["validation"]])
        present = set(int(y) for _, y in dm.data["validation"])
        assert {c for c, n in enumerate(labels) if n >= 3} <= present
    assert sorted(seen) == sorted(pooled)  # each pooled row validates exactly once
    for folds, fold, message in ((1, 0, "data.folds must be an integer >= 2 or null, got 1"),
                                 (3, 3, "data.fold must be an integer in 0..2, got 3")):
        with pytest.raises(RnnlabError, match=message):
            LabelledDataModule("surname", processed, folds=folds, fold=fold)


def predict(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", *args])
    return exit_info.value.code, capsys.readouterr()


def test_predict_prints_labels_and_probabilities(trained, project, tmp_path, capsys):
    ckpt = {task: str(trained[task] / "model" / "model.ckpt") for task in TASKS}
    main(["predict", "sentiment", "a gorgeous, witty, seductive movie.", "--checkpoint", ckpt["sentiment"]])
    (line,) = capsys.readouterr().out.splitlines()
    label, probability = line.split()
    assert label in ("negative", "positive") and 0.5 <= float(probability) <= 1

    main(["predict", "surname", "Nakamura", "--checkpoint", ckpt["surname"]])
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3 and [float(p) for _, p in lines] == sorted((float(p) for _, p in lines), reverse=True)

    frames = tmp_path / "utterance.csv"
    frames.write_text("\n".join(",".join(str(0.1 * (i + c)) for c in range(12)) for i in range(15)) + "\n")
    main(["predict", "speaker", str(frames), "--checkpoint", ckpt["speaker"], "--top-k", "2"])
    assert len(capsys.readouterr().out.splitlines()) == 2
    # the baseline's checkpoint predicts too
    main(["predict", "surname", "Müller", "--checkpoint", str(trained["surname"] / "model" / "baseline.ckpt")])
    assert len(capsys.readouterr().out.splitlines()) == 3


def speaker_file(tmp_path, text):
    path = tmp_path / "frames.csv"
    path.write_text(text)
    return str(path)


ROW = ",".join(["0.5"] * 12)


@pytest.mark.parametrize("task, make_input, message", [
    ("sentiment", lambda p: "   ", "empty input"),
    ("surname", lambda p: "", "empty input"),
    ("sentiment", lambda p: "word " * 501, "input of 501 words is too long for sentiment: at most 500"),
    ("surname", lambda p: "x" * 101, "input of 101 characters is too long"),
    ("speaker", lambda p: speaker_file(p, ""), "empty input, expected frames x 12"),
    ("speaker", lambda p: speaker_file(p, f"{ROW}\n0.1,0.2,0.3\n"), "line 2: 3 values, expected 12 channels"),
    ("speaker", lambda p: speaker_file(p, ",".join(["0.5"] * 24) + "\n"), "line 1: 24 values, expected 12"),
    ("speaker", lambda p: speaker_file(p, f"{ROW}\n{ROW[:-4]},abc\n"), "line 2: value 'abc' is not a finite number"),
    ("speaker", lambda p: speaker_file(p, f"{ROW}\n{ROW[:-4]},nan\n"), "value 'nan' is not a finite number"),
    ("speaker", lambda p: speaker_file(p, f"{ROW}\n" * 501), "input of 501 frames is too long"),
    ("speaker", lambda p: str(p / "missing.csv"), "cannot read"),
    ("weather", lambda p: "sunny", "unknown task 'weather'"),
])
def test_predict_errors_are_one_line_with_exit_2(trained, tmp_path, capsys, task, make_input, message):
    ckpt = trained.get(task, trained["sentiment"]) / "model" / "model.ckpt"
    code, captured = predict([task, make_input(tmp_path), "--checkpoint", str(ckpt)], capsys)
    assert code == 2 and message in captured.err
    assert len(captured.err.strip().splitlines()) == 1 and captured.err.startswith("rnnlab: error:")


def test_predict_reads_a_header_line_and_rejects_wrong_checkpoints(trained, tmp_path, capsys):
    ckpt = trained["speaker"] / "model" / "model.ckpt"
    header = ",".join(f"c{i}" for i in range(1, 13))
    main(["predict", "speaker", speaker_file(tmp_path, f"{header}\n{ROW}\n{ROW}\n"), "--checkpoint", str(ckpt)])
    assert len(capsys.readouterr().out.splitlines()) == 1

    code, captured = predict(["surname", "Nakamura", "--checkpoint", str(tmp_path / "none.ckpt")], capsys)
    assert code == 2 and f"checkpoint not found: {tmp_path / 'none.ckpt'}" in captured.err
    code, captured = predict(["surname", "Nakamura", "--checkpoint", str(ckpt)], capsys)
    assert code == 2 and "is a SequenceClassifier for task 'speaker', not 'surname'" in captured.err
    code, captured = predict(["surname", "Nakamura", "--top-k", "99", "--checkpoint",
                              str(trained["surname"] / "model" / "model.ckpt")], capsys)
    assert code == 2 and "--top-k must be between 1 and" in captured.err

    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--checkpoint", str(trained["sentiment"] / "model" / "model.ckpt")])
    assert exit_info.value.code == 2
    assert "holds a SequenceClassifier (task 'sentiment'); this command needs a CharLanguageModel" \
        in capsys.readouterr().err


def test_load_checkpoint_accepts_only_rnnlab_modules(trained, tmp_path):
    source = trained["surname"] / "model" / "model.ckpt"
    ckpt = torch.load(source, weights_only=True)
    for name in ("builtins.eval", "os.system", None):
        ckpt[CLASS_KEY] = name
        forged = tmp_path / "forged.ckpt"
        torch.save(ckpt, forged)
        with pytest.raises(RnnlabError, match=f"records module class {name!r}; rnnlab loads only"):
            load_checkpoint(forged)


def test_a_checkpoint_written_before_the_optimizer_nodes_still_loads(trained, tmp_path):
    """Checkpoints from before December 2026 hold lr, weight_decay and a schedule's name instead of the
    optimizer and schedule nodes; a loaded model does not train, so it loads without them."""
    ckpt = torch.load(trained["surname"] / "model" / "model.ckpt", weights_only=True)
    hparams = ckpt["hyper_parameters"]
    assert hparams["optimizer"]["_target_"] == "torch.optim.AdamW" and hparams["optimizer"]["lr"] > 0
    del hparams["optimizer"], hparams["scheduler"]
    hparams.update(lr=3e-3, weight_decay=0.01)
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    model = load_checkpoint(old, task="surname")
    assert model.hparams.get("optimizer") is None and "lr" not in model.hparams
    hparams["bogus"] = 1  # anything else a class does not take is still an error
    torch.save(ckpt, old)
    with pytest.raises(RnnlabError, match="unexpected keyword argument 'bogus'"):
        load_checkpoint(old, task="surname")


def test_a_checkpoint_must_fit_the_processed_data(trained, project):
    path = trained["sentiment"] / "model" / "model.ckpt"
    model = load_checkpoint(path, task="sentiment")
    dm = LabelledDataModule("sentiment", str(project / "data" / "processed" / "sentiment"))
    check_fits(model, dm.model_kwargs(), path, dm.processed_dir)
    changed = {**dm.model_kwargs(), "vocab": dm.model_kwargs()["vocab"][:-1] + ["zebra"]}
    with pytest.raises(RnnlabError, match="its vocab differs from that of .*sentiment: the data changed"):
        check_fits(model, changed, path, dm.processed_dir)


def test_what_the_checkpoint_carries_must_match_the_model():
    from rnnlab.shapes.one_to_one import BagClassifier

    with pytest.raises(RnnlabError, match="module.labels holds 3 entries, the model 2"):
        BagClassifier(2, vocab_size=5, labels=["a", "b", "c"])
    with pytest.raises(RnnlabError, match="module.standardise.std holds 1 entries, the model 2"):
        BagClassifier(2, input_size=2, standardise={"mean": [0.0, 0.0], "std": [1.0]})
