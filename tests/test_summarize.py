"""Summarization (task=summarize): the pointer-generator (copy switch, log-probabilities, beam search with a length
penalty and n-gram blocking; beam width 1 is greedy), then the stages on the sliced Debian index files by the real
code and conf/ (pull, preprocess, a smoke training, evaluate, register), `rnnlab summarize` and the pyfunc model,
and bad input."""

import csv
import json

import pytest
import torch

from rnnlab import RnnlabError
from rnnlab.cli import main
from rnnlab.data import subwords
from rnnlab.pipeline.train import train
from rnnlab.tasks.summarize import data as S
from rnnlab.tasks.summarize import evaluate as E

from conftest import compose, run_task

SOURCES = [[5, 6, 7], [9, 4, 10, 11, 12, 30], [40], list(range(4, 20))]


def tiny(**kwargs) -> S.PointerGenerator:
    torch.manual_seed(0)
    args = {"vocab_size": 50, "embedding_dim": 8, "hidden_size": 8, "decoder_size": 12, "attention_dim": 8,
            "dropout": 0.0, "max_decode_len": 20, "min_decode_len": 0, "no_repeat_ngram": 0, **kwargs}
    return S.PointerGenerator(**args).eval()


def batch(sources):
    src, lengths, _ = subwords.collate([(s, []) for s in sources])
    return src, lengths


# --- the model
@pytest.mark.parametrize("cell, attention, copy", [("gru", "general", True), ("lstm", "additive", True),
                                                   ("gru", "general", False)])
def test_beam_width_1_is_the_translators_greedy(cell, attention, copy):
    model = tiny(cell=cell, attention=attention, copy=copy)
    with torch.no_grad():
        model.out.bias[subwords.EOS] += 3.0  # some outputs end before the length limit
        model.out.bias[subwords.UNK] = -20.0  # beam search never writes the unknown piece; greedy may
    greedy = model.greedy(*batch(SOURCES))
    assert [model.beam_search(s, beam_width=1) for s in SOURCES] == greedy
    assert any(len(g) < 20 for g in greedy)  # ended by EOS, not only by the length limit
    assert all(len(model.beam_search(s, beam_width=4)) <= 20 for s in SOURCES)


def test_decode_gives_a_distribution_mixing_vocabulary_and_copy():
    model = tiny()
    src, lengths = batch(SOURCES)
    memory, keys, src_ids, state = model.encode(src, lengths)
    assert torch.equal(src_ids, src) and (src_ids[2, 1:] == subwords.PAD).all()
    tgt = torch.randint(4, 50, (len(SOURCES), 5))
    logp, _, weights, p_gen = model.step(tgt, memory, keys, src_ids, state)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(len(SOURCES), 5), atol=1e-4)
    assert ((p_gen > 0) & (p_gen < 1)).all() and (weights[2, :, 1:] == 0).all()
    with torch.no_grad():  # the switch all on copy: only the source's pieces have any probability
        model.switch.bias.fill_(-50.0)
    logp = model.step(tgt, memory, keys, src_ids, state)[0]
    for row, source in enumerate(SOURCES):
        outside = torch.ones(50, dtype=torch.bool)
        outside[source] = False
        assert logp[row, :, outside].exp().max() < 1e-6
        assert set(model.beam_search(source, beam_width=2)) <= set(source)


def test_explain_reports_the_switch_and_copy_share_of_each_written_piece():
    model = tiny()
    outputs = [model.beam_search(s, 2) for s in SOURCES]
    for e, out, source in zip(model.explain(*batch(SOURCES), outputs), outputs, SOURCES):
        assert e["p_gen"].shape == e["copy_share"].shape == (len(out) + 1,)
        assert e["attention"].shape == (len(out) + 1, len(source))
        assert ((e["copy_share"] >= 0) & (e["copy_share"] <= 1)).all()
    with torch.no_grad():
        model.switch.bias.fill_(-50.0)
    (e,) = model.explain(*batch(SOURCES[:1]), [[6, 5]])
    # the two pieces came from the document; EOS, never in it, cannot be copied
    assert torch.allclose(e["copy_share"], torch.tensor([1.0, 1.0, 0.0]), atol=1e-4)


@pytest.mark.parametrize("hyp, n, expected", [
    ([1, 2, 3, 1, 2], 3, [3]), ([1, 2, 1, 2], 2, [1]), ([5, 5, 5], 2, [5]), ([1, 2, 3], 3, []), ([4, 7], 1, [4, 7]),
    ([1, 2], 0, []), ([], 3, [])])
def test_ngram_blocking_names_the_tokens_that_would_repeat_an_ngram(hyp, n, expected):
    assert sorted(S.PointerGenerator.blocked(hyp, n)) == sorted(expected)


def test_beam_search_with_blocking_repeats_no_ngram_and_respects_the_minimum_length():
    model = tiny(max_decode_len=30)
    with torch.no_grad():
        model.out.bias[subwords.EOS] = -100.0
        model.out.bias[7] = 20.0  # unblocked, every step would write piece 7
    assert model.beam_search([5, 6, 7], 2) == [7] * 30
    for n in (1, 2, 3):
        out = model.beam_search([5, 6, 7], 2, no_repeat_ngram=n)
        grams = [tuple(out[i:i + n]) for i in range(len(out) - n + 1)]
        assert len(grams) == len(set(grams)) and out, n
    with torch.no_grad():
        model.out.bias[subwords.EOS] = 100.0
    assert model.beam_search([5, 6, 7], 2) == []
    assert len(tiny(min_decode_len=3).beam_search([5, 6, 7], 2)) >= 3


def test_the_length_penalty_favours_longer_outputs():
    model = tiny(max_decode_len=12)
    with torch.no_grad():
        model.out.bias[subwords.EOS] += 2.5
    lengths = [sum(len(model.beam_search(s, 4, length_penalty=a)) for s in SOURCES) for a in (0.0, 2.0)]
    assert lengths[1] > lengths[0]


def test_bad_module_values_are_named():
    with pytest.raises(RnnlabError, match="module.no_repeat_ngram"):
        tiny(no_repeat_ngram=-1)
    with pytest.raises(RnnlabError, match="module.beam_width"):
        tiny(beam_width=0)


def test_words_copied_groups_pieces_into_words():
    pieces, shares = ["▁lib", "foo", "▁is", "▁a", "▁tool"], [0.9, 0.8, 0.1, 0.6, 0.2]
    assert E.words_copied(pieces, shares) == [("libfoo", True), ("is", False), ("a", True), ("tool", False)]


# --- the stages on the sliced index files, from the real config
@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """pull + preprocess summarize by the real stages (its own fetch function), from the two sliced files."""
    root = tmp_path_factory.mktemp("summarize")
    run_task(root, "summarize")
    return root


@pytest.fixture(scope="module")
def trained(project):
    out = project / "out"
    cfg = compose("task=summarize", "experiment=smoke_summarize", f"paths.data_dir={project}/data",
                  f"paths.output_dir={out}", f"logger.tracking_uri=sqlite:///{project}/mlflow.db")
    train(cfg)
    return out, cfg


def test_the_data_module_cuts_documents_and_hands_the_vocabulary_to_the_model(project):
    dm = S.SummaryDataModule(str(project / "data/processed/summarize"), max_source_tokens=16)
    assert max(len(s) for s, _ in dm.data["train"]) == 16 < max(map(len, dm.splits["train"]["src"]))
    kwargs = dm.model_kwargs()
    assert kwargs["vocab_size"] == 500 and kwargs["max_source_tokens"] == 16
    src, lengths, tgt = next(iter(dm.train_dataloader()))
    assert src.shape[0] == tgt.shape[0] == 32 and (tgt[:, 0] == subwords.BOS).all()
    with pytest.raises(RnnlabError, match="data.max_source_tokens"):
        S.SummaryDataModule(str(project / "data/processed/summarize"), max_source_tokens=0)
    with pytest.raises(RnnlabError, match="rnnlab preprocess summarize"):
        S.SummaryDataModule(str(project / "missing"))


def test_train_and_evaluate_write_checkpoint_metrics_and_reports(trained):
    out, _ = trained
    assert {p.name for p in (out / "model").iterdir()} == {"model.ckpt", "run.json"}
    scores = json.loads((out / "metrics" / "summarize.json").read_text())
    keys = {"rouge1", "rouge2", "rougeL", "bleu", "rougeL_greedy", "copy", "pairs"}
    assert keys <= set(scores["test"]) and keys <= set(scores["val"]) and scores["test"]["pairs"] == 8
    assert set(scores["test"]["copy"]) == {"copied_pieces", "copied_words", "mean_p_gen", "copied_words_in_document"}
    assert set(scores["baseline"]) == {"lead", "lead_10"}
    assert {"rouge1", "rouge2", "rougeL", "bleu"} == set(scores["baseline"]["lead"])
    rows = list(csv.DictReader((out / "reports" / "summarize_samples.csv").open()))
    assert len(rows) == 4 and all(r["document"] and r["reference"] for r in rows)
    assert (out / "reports" / "summarize_copied_words.csv").read_text().startswith("word,count\n")
    assert (out / "reports" / "figures" / "summarize_attention.png").read_bytes()[:4] == b"\x89PNG"
    curves = (out / "metrics" / "summarize_curves.csv").read_text()
    assert curves.startswith("step,train_loss,val_loss,val_ppl\n")


def test_the_checkpoint_rebuilds_the_pointer_generator(trained):
    from rnnlab.tasks import load_checkpoint

    model = load_checkpoint(trained[0] / "model" / "model.ckpt", task="summarize")
    assert type(model) is S.PointerGenerator and model.switch is not None
    assert "src_vocab_size" not in model.hparams and model.hparams.max_source_tokens == 64


def test_register_stage_registers_the_model(trained, monkeypatch, project):
    from rnnlab.pipeline.register import run_register

    out, cfg = trained
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project}/mlflow.db")
    decision = run_register(cfg)
    assert decision is not None


def test_cli_summarizes_text_and_a_file(trained, tmp_path, capsys):
    ckpt = str(trained[0] / "model" / "model.ckpt")
    main(["summarize", "A library for parsing command line options. It is written in C.", "--checkpoint", ckpt,
          "--beam", "1"])
    out = capsys.readouterr()
    assert out.out.endswith("\n") and out.out.count("\n") == 1 and out.err == ""
    (tmp_path / "d.txt").write_text("A library for parsing command line options. " * 40)
    main(["summarize", "--file", str(tmp_path / "d.txt"), "--checkpoint", ckpt])
    out = capsys.readouterr()
    assert out.out.count("\n") == 1
    assert "the model reads the first 64 (max_source_tokens)" in out.err


@pytest.mark.parametrize("argv, content, message", [
    (["   \n\t "], None, "empty text"),
    (["--file", "{f}"], b"  \n", "empty text in"),
    (["--file", "{f}"], b"caf\xe9 au lait", "is not UTF-8 text (invalid continuation byte at byte 3)"),
    (["--file", "{f}.missing"], None, "file not found"),
    (["text", "--file", "{f}"], b"x", "give the text or --file PATH, not both"),
    ([], None, "give the text or --file PATH, not both"),
    (["Hello", "--beam", "0"], None, "--beam must be >= 1"),
    (["\ue000\ue001 \ue002"], None, "no character the model knows"),  # private use: in no description
    (["Hello", "--checkpoint", "missing.ckpt"], None, "checkpoint not found"),
])
def test_cli_errors_are_one_line_with_exit_2_and_write_nothing(trained, tmp_path, monkeypatch, argv, content, message,
                                                               capsys):
    path = tmp_path / "in" / "d.txt"
    path.parent.mkdir()
    if content is not None:
        path.write_bytes(content)
    argv = [a.replace("{f}", str(path)) for a in argv]
    if "--checkpoint" not in argv:
        argv += ["--checkpoint", str(trained[0] / "model" / "model.ckpt")]
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as exit_info:
        main(["summarize", *argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_pyfunc_model_summarizes_like_the_checkpoint(trained, tmp_path):
    import mlflow
    from mlflow.exceptions import MlflowException

    from rnnlab.serving.pyfunc import save_pyfunc
    from rnnlab.tasks import load_checkpoint

    ckpt = trained[0] / "model" / "model.ckpt"
    model = mlflow.pyfunc.load_model(str(save_pyfunc("summarize", ckpt, tmp_path / "summarize")))
    net = load_checkpoint(ckpt, task="summarize")
    texts = ["A tool to convert images between formats.", "word " * 200]
    out = model.predict(texts, params={"beam_width": 2})
    assert list(out["synopsis"]) == [net.summarize(t, 2) for t in texts]
    assert list(out["truncated"]) == [False, True]
    with pytest.raises(MlflowException, match="text 1: empty text"):
        model.predict(["fine", "  "])
