"""rnnlab.serving.pyfunc: each task's MLflow pyfunc model, saved from a tiny untrained checkpoint and loaded back,
predicts on raw input what rnnlab.serving.predict / CharLanguageModel.generate predict in-process."""

import mlflow
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException

from rnnlab import RnnlabError
from rnnlab.serving.predict import predict
from rnnlab.serving.pyfunc import log_pyfunc, save_pyfunc
from rnnlab.tasks import load_checkpoint

from conftest import CHANNELS, save_checkpoint, tiny_modules


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """task -> (checkpoint path, loaded pyfunc model)."""
    root = tmp_path_factory.mktemp("pyfunc")
    out = {}
    for task, module in tiny_modules().items():
        ckpt = save_checkpoint(module, root / f"{task}.ckpt")
        path = save_pyfunc(task, ckpt, root / task)
        out[task] = (ckpt, mlflow.pyfunc.load_model(str(path)))
    return out


def test_saved_without_pickled_code(saved):
    root = saved["sentiment"][0].parent / "sentiment"
    assert not list(root.rglob("*.pkl"))
    flavor = mlflow.models.Model.load(str(root)).flavors["python_function"]
    # "models from code": a script, copied into the model, builds the model; the weights are a checkpoint
    assert flavor["loader_module"] == "mlflow.pyfunc.loaders.code_model" and (root / "rnnlab_model.py").is_file()
    assert flavor["config"] == {"task": "sentiment"} and (root / "artifacts" / "sentiment.ckpt").is_file()
    assert (root / "input_example.json").is_file()
    sig = mlflow.models.Model.load(str(root)).signature
    assert sig.inputs.input_types() == [mlflow.types.DataType.string] and "label" in sig.outputs.input_names()


@pytest.mark.parametrize("task,texts,top_k", [
    ("sentiment", ["What a lovely day!", "awful, bad", "never seen words"], 1),
    ("surname", ["Nakamura", "Schmidt", "zz"], 3),
])
def test_text_classifiers_match_predict(saved, task, texts, top_k):
    ckpt, model = saved[task]
    out = model.predict(pd.DataFrame({"text": texts}))
    assert list(out.columns) == ["label", "probability", "top_labels", "top_probabilities"]
    for text, row in zip(texts, out.itertuples()):
        expected = predict(task, text, ckpt, top_k)
        assert list(row.top_labels) == [label for label, _ in expected]
        assert list(row.top_probabilities) == pytest.approx([p for _, p in expected], abs=1e-6)
        assert (row.label, row.probability) == (expected[0][0], pytest.approx(expected[0][1], abs=1e-6))
    # a plain list works as well
    assert list(model.predict(texts)["label"]) == list(out["label"])


def test_speaker_matches_predict(saved, tmp_path):
    ckpt, model = saved["speaker"]
    g = torch.Generator().manual_seed(1)
    utterances = [torch.randn(n, CHANNELS, generator=g).tolist() for n in (3, 7)]
    out = model.predict(pd.DataFrame({"frames": utterances}))
    for i, (frames, row) in enumerate(zip(utterances, out.itertuples())):
        csv = tmp_path / f"u{i}.csv"
        csv.write_text("\n".join(",".join(repr(v) for v in frame) for frame in frames))
        label, prob = predict("speaker", str(csv), ckpt, 1)[0]
        assert row.label == label and row.probability == pytest.approx(prob, abs=1e-6)


def test_charlm_matches_generate(saved):
    ckpt, model = saved["charlm"]
    net = load_checkpoint(ckpt, task="charlm")
    prompts = ["ROMEO:", "a"]
    out = model.predict(pd.DataFrame({"prompt": prompts}), params={"length": 12, "temperature": 0.5, "seed": 3})
    assert list(out["text"]) == [net.generate(p, 12, 0.5, seed=3) for p in prompts]
    greedy = model.predict(["ROMEO:"], params={"length": 5, "temperature": 0.0})
    assert greedy["text"][0] == net.generate("ROMEO:", 5, 0.0)


def test_surname_gen_matches_generate(saved):
    ckpt, model = saved["surname_gen"]
    net = load_checkpoint(ckpt, task="surname_gen")
    out = model.predict(pd.DataFrame({"language": ["Italian", "german"]}), params={"n": 3, "seed": 7})
    assert list(out["language"]) == ["Italian", "german"]
    assert [list(names) for names in out["names"]] == [net.generate(lang, 3, 0.8, seed=7)
                                                       for lang in ("Italian", "german")]


@pytest.mark.parametrize("task,bad,message", [
    ("sentiment", ["   "], "empty input"),
    ("surname", [""], "empty input"),
    ("speaker", pd.DataFrame({"frames": [[[1.0] * 5]]}), "5 values, expected 12 channels"),
    # MLflow's schema enforcement (frames: Array(Array(double))) stops a non-number before rnnlab sees it
    ("speaker", pd.DataFrame({"frames": [[[1.0] * 11 + ["x"]]]}), r"Array\(Array\(double\)\).*double"),
    ("charlm", ["ROMEO\u00e9"], "never seen"),
    ("surname_gen", ["Klingon"], "unknown language 'Klingon'; the model knows Italian, German"),
])
def test_bad_input_names_the_problem(saved, task, bad, message):
    model = saved[task][1]
    with pytest.raises(Exception, match=message):
        model.predict(bad)


def test_frames_checked_by_rnnlab_too(saved):
    python_model = saved["speaker"][1].unwrap_python_model()
    for bad, message in (([[[1.0] * 11 + ["x"]]], "utterance 0 frame 1: value 'x' is not a finite number"),
                         ([[[1.0] * 12, [float("nan")] * 12]], "frame 2: value nan is not a finite number"),
                         ([[]], "utterance 0: empty input")):
        # as an MlflowException, so that the scoring server answers 400 with the message
        with pytest.raises(MlflowException, match=message):
            python_model.predict(None, bad)


def test_log_pyfunc(saved, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    try:
        with mlflow.start_run() as run:
            info = log_pyfunc("surname", saved["surname"][0])
        assert info.run_id == run.info.run_id
        out = mlflow.pyfunc.load_model(info.model_uri).predict(["Nakamura"])
        assert out["label"][0] == predict("surname", "Nakamura", saved["surname"][0], 1)[0][0]
        again = log_pyfunc("surname", saved["surname"][0], run_id=run.info.run_id)
        assert again.run_id == run.info.run_id
    finally:
        mlflow.set_tracking_uri(None)


def test_checkpoint_of_another_task_refused(saved, tmp_path):
    with pytest.raises(RnnlabError, match="not 'surname'"):
        save_pyfunc("surname", saved["sentiment"][0], tmp_path / "m")
