"""The character language model's classical peer (rnnlab.tasks.charlm.peers): an interpolated modified
Kneser-Ney n-gram model. End to end in the evaluate stage: tests/test_pipeline.py (baseline.kn_ngram)."""

from types import SimpleNamespace

import numpy as np
import pytest

from rnnlab.data.vocab import CharVocab
from rnnlab.tasks.charlm.peers import KneserNey, kn_ngram

TEXT = "the cat sat on the mat. the dog sat on the log. " * 20 + "a bat ate the hat. "


@pytest.fixture(scope="module")
def model():
    vocab = CharVocab.build(TEXT)
    return KneserNey(vocab.encode(TEXT).astype(np.int64), len(vocab), max_order=5), vocab


@pytest.mark.parametrize("order", [1, 2, 3, 5])
@pytest.mark.parametrize("context", ["the c", "xyzzy", "on th", "at. t"])
def test_every_context_gets_a_distribution(model, order, context):
    """The next character's probabilities sum to 1 after any context, seen or not, for every order."""
    kn, vocab = model
    prefix = vocab.encode(context.replace("x", "q").replace("y", "w").replace("z", "k")).astype(np.int64)
    total = sum(kn.probabilities(np.r_[prefix, symbol], order)[-1] for symbol in range(len(vocab)))
    assert total == pytest.approx(1.0, abs=1e-9)
    assert (kn.probabilities(prefix, order) > 0).all()  # nothing is impossible: the uniform floor


def test_a_longer_context_predicts_repetitive_text_better_and_the_unigram_reads_no_context(model):
    kn, vocab = model
    ids = vocab.encode("the dog sat on the mat. ").astype(np.int64)
    bpc = [kn.bpc(ids, order) for order in (1, 2, 3, 5)]
    assert bpc == sorted(bpc, reverse=True) and bpc[-1] < 1.0 < bpc[0]
    shuffled = ids.copy()
    np.random.default_rng(0).shuffle(shuffled)
    np.testing.assert_allclose(sorted(kn.probabilities(ids, 1)), sorted(kn.probabilities(shuffled, 1)))


def test_the_order_is_chosen_on_validation_and_scores_the_test_split(tmp_path):
    vocab = CharVocab.build(TEXT)
    splits = {"train": TEXT, "validation": "the cat sat on the log. ", "test": "a dog ate the mat. "}
    for split, text in splits.items():
        np.save(tmp_path / f"{split}.npy", vocab.encode(text))
    dm = SimpleNamespace(processed_dir=tmp_path, vocab=vocab)
    peer = kn_ngram(dm)
    model = KneserNey(vocab.encode(TEXT).astype(np.int64), len(vocab))
    ids = {s: vocab.encode(t).astype(np.int64) for s, t in splits.items()}
    val = {order: model.bpc(ids["validation"], order) for order in range(1, 10)}
    assert peer.scores["order"] == min(val, key=val.get) > 1
    assert peer.scores["val_bpc"] == round(val[peer.scores["order"]], 4)
    assert peer.scores["bpc"] == round(model.bpc(ids["test"], peer.scores["order"]), 4)
    assert peer.scores["perplexity"] == round(2 ** model.bpc(ids["test"], peer.scores["order"]), 4)
