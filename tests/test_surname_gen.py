"""Surname generation (one-to-many) on the faker slice: the data as `<s> name </s>` with languages, the
conditional model (conditioning, termination, sampling checks), training composed from conf/, evaluation
against a smoke surname classifier, and the `rnnlab generate surname` CLI."""

import json
import math

import pytest
import torch
from hydra.utils import instantiate

from rnnlab import RnnlabError
from rnnlab.cli import main
from rnnlab.core.trainer import make_trainer
from rnnlab.data.labelled import LabelledDataModule
from rnnlab.pipeline.evaluate import run_evaluate
from rnnlab.pipeline.train import build, train
from rnnlab.shapes.one_to_many import SurnameGenerator
from rnnlab.tasks import load_checkpoint
from rnnlab.tasks.surname_gen.data import BOS, EOS, SurnameGenDataModule

from conftest import compose, run_task


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """data/processed/surname and surname_gen from the slice (the same names), and the smoke surname classifier
    that judges generated names."""
    root = tmp_path_factory.mktemp("surname_gen")
    run_task(root, "surname")
    run_task(root, "surname_gen")
    train(compose("task=surname", "experiment=smoke_classifier", "test=false", f"paths.data_dir={root}/data",
                  f"paths.output_dir={root}/classifier", f"logger.tracking_uri=sqlite:///{root}/mlflow.db"))
    return root


def config(root, *overrides):
    return compose("task=surname_gen", "experiment=smoke_surname_gen", f"paths.data_dir={root}/data",
                   f"paths.output_dir={root}/out", f"logger.tracking_uri=sqlite:///{root}/mlflow.db",
                   f"classifier={root}/classifier/model/model.ckpt", *overrides)


@pytest.fixture(scope="module")
def trained(project):
    """The generator trained with the smoke budget and evaluated (test=true); returns its output folder."""
    train(config(project))
    return project / "out"


def test_batches_are_names_between_start_and_end_symbols(project):
    processed = project / "data" / "processed" / "surname"
    dm = SurnameGenDataModule(str(processed), batch_size=16)
    classifier_data = LabelledDataModule("surname", str(processed))
    kwargs = dm.model_kwargs()
    assert kwargs["task"] == "surname_gen" and kwargs["labels"] == classifier_data.labels
    # the classifier's vocabulary, then the two symbols: a character has the same id in both tasks
    assert kwargs["vocab"] == classifier_data.model_kwargs()["vocab"] + [BOS, EOS]
    assert kwargs["vocab_size"] == len(kwargs["vocab"]) and kwargs["num_classes"] == len(kwargs["labels"])
    bos, eos = kwargs["vocab"].index(BOS), kwargs["vocab"].index(EOS)

    ids, lengths, languages = next(iter(dm.val_dataloader()))
    names = dm.shown("validation")[:len(ids)]
    assert ids.dtype == torch.long and ids.shape == (len(ids), int(lengths.max()))
    assert (ids[:, 0] == bos).all() and languages.tolist() == dm.splits["validation"]["label"][:len(ids)]
    for row, length, name in zip(ids, lengths.tolist(), names):
        assert length == len(name) + 2 and row[length - 1] == eos and (row[length:] == 0).all()
        assert "".join(kwargs["vocab"][i] for i in row[1:length - 1]) == name
    assert dm.train_names() == {name.casefold() for name in dm.shown("train")}


def tiny(cell="lstm", condition="init", **kwargs):
    vocab = ["<pad>", "<unk>", "a", "b", "c", BOS, EOS]
    return SurnameGenerator(num_classes=2, vocab_size=len(vocab), vocab=vocab, labels=["Alpha", "Beta"], cell=cell,
                            condition=condition, embedding_dim=8, hidden_size=16, language_dim=4, dropout=0.0,
                            **kwargs)


@pytest.mark.parametrize("cell, condition, impl", [("rnn", "init", "torch"), ("lstm", "init", "torch"),
                                                   ("gru", "init", "torch"), ("lstm", "step", "torch"),
                                                   ("gru", "step", "torch"), ("lstm", "init", "scratch")])
def test_the_language_decides_what_is_generated(cell, condition, impl):
    """Overfit two languages whose only names are 'aab' and 'cc': greedy generation gives each its own name."""
    torch.manual_seed(0)
    model = tiny(cell, condition, impl=impl)
    bos, eos = 5, 6
    ids = torch.tensor([[bos, 2, 2, 3, eos], [bos, 4, 4, eos, 0]])
    batch = (ids, torch.tensor([5, 4]), torch.tensor([0, 1]))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        loss, _ = model._mean_nll(batch)
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    assert model.generate("Alpha", n=3, temperature=0) == ["aab"] * 3
    assert model.generate("beta", n=2, temperature=0) == ["cc"] * 2  # languages match ignoring case
    assert model.training  # generate leaves the mode as it found it


def test_generation_stops_at_the_end_symbol_or_the_length_limit():
    model = tiny(max_length=6).eval()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(0.0)
        model.head.bias[6] = 50.0  # </s> is all but certain: every name ends after its first character
    names = model.generate("Alpha", n=20, temperature=1.0, seed=0)
    assert len(names) == 20 and all(len(name) == 1 and name in "abc" for name in names)
    with torch.no_grad():
        model.head.bias[6] = -50.0  # never ends: the limit cuts every name
    assert all(len(name) == 6 and set(name) <= set("abc") for name in model.generate("Alpha", n=5, seed=0))
    assert all(len(name) == 3 for name in model.generate("Alpha", n=5, seed=0, max_length=3))


def test_sampling_is_seeded_and_checks_its_arguments():
    torch.manual_seed(0)
    model = tiny().eval()
    assert model.generate("Alpha", n=8, seed=3) == model.generate("Alpha", n=8, seed=3)
    assert len(set(model.generate("Alpha", n=5, temperature=0))) == 1
    for temperature in (-0.5, math.nan, math.inf):
        with pytest.raises(RnnlabError, match="temperature must be >= 0 and finite"):
            model.generate("Alpha", temperature=temperature)
    with pytest.raises(RnnlabError, match="unknown language 'Klingon'; the model knows Alpha, Beta"):
        model.generate("Klingon")
    with pytest.raises(RnnlabError, match="number of names must be a positive integer, got 0"):
        model.generate("Alpha", n=0)
    with pytest.raises(RnnlabError, match="max_length must be a positive integer"):
        model.generate("Alpha", max_length=0)
    with pytest.raises(RnnlabError, match="module.condition must be one of init, step"):
        tiny(condition="both")
    with pytest.raises(RnnlabError, match="must hold the start and end symbols"):
        SurnameGenerator(2, 3, ["<pad>", "<unk>", "a"], ["Alpha", "Beta"])


@pytest.mark.parametrize("model, impl, condition", [("rnn", "torch", "init"), ("gru", "torch", "step"),
                                                    ("lstm", "scratch", "init")])
def test_fast_dev_run_from_the_real_config(project, tmp_path, model, impl, condition):
    cfg = compose("task=surname_gen", f"model={model}", f"model.impl={impl}", f"module.condition={condition}",
                  "experiment=smoke_surname_gen", "trainer.fast_dev_run=true",
                  f"paths.data_dir={project}/data", f"paths.output_dir={tmp_path}")
    dm = instantiate(cfg.data)
    module = build(cfg, dm)["model"]
    trainer = make_trainer(cfg.trainer, logger=False, callbacks=[])
    trainer.fit(module, datamodule=dm)
    assert trainer.state.finished
    assert type(module.rnn).__name__ == ("ScratchRNN" if impl == "scratch" else model.upper())


def test_train_and_evaluate_write_metrics_curves_and_samples(trained, project):
    assert {p.name for p in (trained / "model").iterdir()} == {"model.ckpt", "run.json"}
    assert (trained / "metrics" / "surname_gen_curves.csv").read_text().startswith("step,train_loss,val_loss,val_bpc\n")
    metrics = json.loads((trained / "metrics" / "surname_gen.json").read_text())
    labels = json.loads((project / "data" / "processed" / "surname" / "labels.json").read_text())
    assert set(metrics) == {"test", "val", "generated", "per_language"}
    assert set(metrics["test"]) == set(metrics["val"]) == {"bpc", "perplexity"}
    assert metrics["test"]["perplexity"] == pytest.approx(2 ** metrics["test"]["bpc"], rel=1e-3)
    generated = metrics["generated"]
    assert set(generated) == {"novel", "unique", "classifier_agreement", "chance", "ratio"}
    assert generated["chance"] == round(1 / len(labels), 4)
    assert generated["ratio"] == pytest.approx(generated["classifier_agreement"] * len(labels), abs=1e-3)
    assert set(metrics["per_language"]) == set(labels)
    assert all(set(v) == {"test_bpc", "novel", "classifier_agreement"} for v in metrics["per_language"].values())

    lines = (trained / "reports" / "surname_gen_samples.txt").read_text().splitlines()
    assert lines[0].startswith("# 8 names per language") and len(lines) == 2 + len(labels)
    assert [line.split(" (")[0] for line in lines[2:]] == labels and all(line.count(",") >= 2 for line in lines[2:])

    # evaluating again gives the same scores (the seed fixes the samples)
    assert run_evaluate(config(project)) == metrics


def test_evaluate_needs_the_classifier_of_the_same_languages(trained, project, tmp_path):
    with pytest.raises(RnnlabError, match="checkpoint not found: .*missing.ckpt"):
        run_evaluate(config(project, f"classifier={tmp_path}/missing.ckpt"))
    with pytest.raises(RnnlabError, match="is a SurnameGenerator for task 'surname_gen', not 'surname'"):
        run_evaluate(config(project, f"classifier={trained}/model/model.ckpt"))


def generate(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", *args])
    return exit_info.value.code, capsys.readouterr()


def test_cli_prints_n_names(trained, capsys):
    ckpt = str(trained / "model" / "model.ckpt")
    main(["generate", "surname", "--language", "Italian", "-n", "4", "--seed", "1", "--checkpoint", ckpt])
    names = capsys.readouterr().out.splitlines()
    assert len(names) == 4 and all(names)
    main(["generate", "surname", "--language", "italian", "-n", "4", "--seed", "1", "--checkpoint", ckpt])
    assert capsys.readouterr().out.splitlines() == names
    assert load_checkpoint(ckpt, task="surname_gen").generate("Italian", 4, 0.8, seed=1) == names


@pytest.mark.parametrize("args, message", [
    (["surname", "--language", "Klingon"], "unknown language 'Klingon'; the model knows Croatian, Dutch"),
    (["surname", "--language", "Italian", "-n", "0"], "-n must be >= 1, got 0"),
    (["surname", "--language", "Italian", "--temperature", "-1"], "--temperature must be >= 0 and finite"),
    (["surname", "--language", "Italian", "--temperature", "nan"], "--temperature must be >= 0 and finite"),
    (["surname", "--language", "Italian", "--max-length", "0"], "--max-length must be >= 1"),
    (["surname", "-n", "3"], "the following arguments are required: --language"),
    (["surname", "--language", "Italian", "--checkpoint", "/nonexistent/model.ckpt"],
     "checkpoint not found: /nonexistent/model.ckpt"),
    (["poem", "--length", "3"], "unknown model 'poem'; choose one of charlm, surname"),
])
def test_cli_errors_are_one_line_with_exit_2(trained, capsys, args, message):
    if "--checkpoint" not in args:
        args = [*args, "--checkpoint", str(trained / "model" / "model.ckpt")]
    code, captured = generate(args, capsys)
    assert code == 2 and message in captured.err
    assert len(captured.err.strip().splitlines()) == 1 and captured.err.startswith("rnnlab: error:")


def test_cli_wants_a_generator_checkpoint(trained, project, capsys):
    classifier = str(project / "classifier" / "model" / "model.ckpt")
    code, captured = generate(["surname", "--language", "Italian", "--checkpoint", classifier], capsys)
    assert code == 2 and "is a SequenceClassifier for task 'surname', not 'surname_gen'" in captured.err
    code, captured = generate(["charlm", "--checkpoint", str(trained / "model" / "model.ckpt")], capsys)
    assert code == 2 and "holds a SurnameGenerator (task 'surname_gen'); this command needs a CharLanguageModel" \
        in captured.err
