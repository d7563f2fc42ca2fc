"""The classical peers of the labelled tasks (`Task.peers`, rnnlab.evaluation.peers): on the archive slices they
score with the bag baseline's keys and beat the majority class; their settings are chosen on validation only;
a failure names the peer, the setting and the data. End to end (the evaluate stage, MLflow, the runtimes CSV):
tests/test_classify.py; in the docs: tests/test_docs.py."""

from types import SimpleNamespace

import numpy as np
import pytest

from rnnlab import RnnlabError
from rnnlab.data.labelled import LabelledDataModule
from rnnlab.evaluation.peers import tune
from rnnlab.tasks import Task, get, labelled, register
from rnnlab.tasks.sentiment.peers import NBSVM, tfidf_lr

from conftest import run_task

PEERS = {"sentiment": ("tfidf_lr", "nbsvm"), "surname": ("char_tfidf_lr",), "speaker": ("minirocket", "dtw_1nn")}
# the settings each peer searches on validation (MiniRocket chooses its ridge penalty on train, as its paper)
CHOSEN = {"nbsvm": {"C", "beta"}, "minirocket": set(), "dtw_1nn": {"window"}}
CASES = [(task, name) for task, names in PEERS.items() for name in names]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("peers")
    return {task: LabelledDataModule(task, str(run_task(root, task))) for task in PEERS}


def fit(task: str, name: str, dm):
    spec = get(task)
    return spec.resolve(spec.peers[spec.peer_names.index(name)])(dm)


@pytest.fixture(scope="module")
def fitted(data):
    return {(task, name): fit(task, name, data[task]) for task, name in CASES}


def relabelled(dm, split: str, labels: list[int]):
    """What tune and the peers read of a data module (shown, data, splits[..]["label"], labels, processed_dir),
    `split`'s labels replaced."""
    splits = {s: {"label": list(dm.splits[s]["label"])} for s in ("train", "validation", "test")}
    splits[split]["label"] = labels
    return SimpleNamespace(shown=dm.shown, data=dm.data, splits=splits, labels=dm.labels,
                           processed_dir=dm.processed_dir)


def toy(train: list[int], validation: list[int], test: list[int], where: str = "/toy"):
    labels = {"train": train, "validation": validation, "test": test}
    return SimpleNamespace(shown=lambda split: [f"row {i}" for i in range(len(labels[split]))],
                           splits={s: {"label": y} for s, y in labels.items()}, labels=["a", "b", "c"],
                           processed_dir=where)


def test_the_specs_name_their_peers_as_baselines():
    for task in PEERS:
        assert get(task).peer_names == PEERS[task]
        assert get(task).baselines == ("bag", "majority", *PEERS[task])


@pytest.mark.parametrize("task, name", CASES)
def test_a_peer_scores_like_the_bag_baseline_and_beats_the_majority(fitted, data, task, name):
    peer, dm = fitted[task, name], data[task]
    assert set(peer.scores) == {"accuracy", "macro_f1", "val_accuracy", "chosen"}
    majority = float(np.mean(np.asarray(dm.splits["test"]["label"]) == int(dm.counts.argmax())))
    assert majority + 0.1 < peer.scores["accuracy"] <= 1
    assert 0 < peer.scores["macro_f1"] <= 1 and majority < peer.scores["val_accuracy"] <= 1
    assert set(peer.scores["chosen"]) == CHOSEN.get(name, {"C"})
    assert all(v > 0 for v in peer.scores["chosen"].values())
    assert 0 <= peer.seconds <= peer.search_seconds  # rounded to 0.01 s
    assert peer.settings == 1 if name == "minirocket" else peer.settings >= 4


@pytest.mark.parametrize("task, name", CASES)
def test_the_test_labels_decide_nothing(fitted, data, task, name):
    """Every test label moved to another class: the same setting is chosen, by the same validation accuracy,
    and only the test scores change."""
    dm = data[task]
    k = len(dm.labels)
    shifted = fit(task, name, relabelled(dm, "test", [(y + 1) % k for y in dm.splits["test"]["label"]]))
    before = fitted[task, name].scores
    assert shifted.scores["chosen"] == before["chosen"] and shifted.scores["val_accuracy"] == before["val_accuracy"]
    assert shifted.scores["accuracy"] != before["accuracy"]


class Constant:
    """Predicts class C whatever the input."""

    def __init__(self, C: float):
        self.C = int(C)

    def fit(self, texts, labels):
        return self

    def predict(self, texts):
        return np.full(len(texts), self.C)


def test_tune_chooses_by_validation_and_scores_the_choice_on_test():
    # validation favours class 1, test class 0: a choice made on test would pick C 0 and score 1.0
    peer = tune(toy([0, 1], [1, 1, 0], [0, 0, 0, 0]), "constant", Constant, {"C": [0.0, 1.0]})
    assert peer.scores["chosen"] == {"C": 1.0} and peer.scores["val_accuracy"] == pytest.approx(0.6667)
    assert peer.scores["accuracy"] == 0.0 and peer.settings == 2
    # a tie goes to the first setting of the grid
    assert tune(toy([0, 1], [0, 1], [1, 1]), "constant", Constant, {"C": [1.0, 0.0]}).scores["chosen"] == {"C": 1.0}


def test_failures_name_the_peer_the_setting_and_the_data():
    with pytest.raises(RnnlabError, match=r"peer tfidf_lr \{'C': 0.25\}: cannot fit the train split of /toy/sentiment: "):
        tfidf_lr(toy([0, 0, 0], [0, 1], [1, 0], where="/toy/sentiment"))  # one class in train
    with pytest.raises(RnnlabError, match=r"peer nbsvm \{'C': 1\}: .*NB-SVM needs two classes, 0 and 1, in train; "
                                          r"it has \[0, 1, 2\]"):
        tune(toy([0, 1, 2], [0], [0]), "nbsvm", lambda C: NBSVM(C, beta=1.0), {"C": [1]})
    with pytest.raises(RnnlabError, match=r"peer constant: its grid \{'C': \[\]\} is not one to search: .*non-empty"):
        tune(toy([0, 1], [0], [0]), "constant", Constant, {"C": []})


def test_a_peer_must_be_a_named_baseline():
    assert labelled(name="toy", summary="", peers=(".peers:ngram_lr",)).baselines == ("bag", "majority", "ngram_lr")
    fields = dict(shape="many-to-one", summary="", modules=(), metric="test_accuracy", higher_is_better=True,
                  val_metric="val_acc", val_higher_is_better=True)
    for peers in ((".peers:ngram_lr",), (".peers",)):
        with pytest.raises(RnnlabError, match=f"task unlisted: peer '{peers[0]}' must be a \"module:function\" "
                                              "reference whose function name is one of its baselines \\(bag\\)"):
            register(Task(name="unlisted", baselines=("bag",), peers=peers, **fields))
    spec = get("sentiment")
    with pytest.raises(RnnlabError, match=r"task sentiment: cannot import '.peers:nosuch'"):
        spec.resolve(".peers:nosuch")


def test_dtw_matches_the_textbook_recursion_on_series_of_unequal_length():
    from rnnlab.tasks.speaker.peers import dtw_distances

    rng = np.random.default_rng(0)
    queries = [rng.normal(size=(n, 3)).astype(np.float32) for n in (4, 7)]
    references = [rng.normal(size=(n, 3)).astype(np.float32) for n in (5, 2, 7)]

    def textbook(a, b, window=None):
        d = np.full((len(a) + 1, len(b) + 1), np.inf)
        d[0, 0] = 0
        for i in range(1, len(a) + 1):
            for j in range(1, len(b) + 1):
                if window is None or abs(i - j) <= window:
                    d[i, j] = ((a[i - 1] - b[j - 1]) ** 2).sum() + min(d[i - 1, j], d[i, j - 1], d[i - 1, j - 1])
        return d[-1, -1]

    for window in (None, 2):
        got = dtw_distances(queries, references, window)
        want = [[textbook(a, b, window) for b in references] for a in queries]
        np.testing.assert_allclose(got, want, rtol=1e-4)
    # warping: a series and the same series with every frame said twice are at distance 0
    assert dtw_distances([queries[1]], [np.repeat(queries[1], 2, axis=0)], None)[0, 0] == pytest.approx(0, abs=1e-4)


def utterances(rng, n: int):
    """Two classes of 12-channel series, 7-29 frames: a rising or a falling ramp under noise."""
    y = np.arange(n) % 2
    series = []
    for label in y:
        t = np.linspace(-1, 1, rng.integers(7, 30))[:, None] * (1 if label else -1)
        series.append((t + rng.normal(scale=0.5, size=(len(t), 12))).astype(np.float32))
    return series, y


def test_minirocket_separates_what_a_ramp_tells_apart_and_is_deterministic():
    from rnnlab.tasks.speaker.peers import MiniRocket

    rng = np.random.default_rng(0)
    (train, y_train), (test, y_test) = utterances(rng, 60), utterances(rng, 40)
    model = MiniRocket(features=840).fit(train, y_train)
    # 84 kernels x features per kernel, over the dilations a 29-frame series allows: 1, 2, 3
    assert model.transform(np.zeros((1, 12, 29), np.float32)).shape == (1, 840)
    assert list(model.dilations) == [1, 2, 3]
    assert (model.predict(test) == y_test).mean() >= 0.9
    assert (MiniRocket(features=840).fit(train, y_train).predict(test) == model.predict(test)).all()
