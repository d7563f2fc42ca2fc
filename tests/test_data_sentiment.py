import io
import json
import tarfile
from collections import Counter

import pytest
from datasets import load_from_disk

from rnnlab import RnnlabError
from rnnlab.core.sources import pypi_sdist
from rnnlab.data.splits import SPLITS
from rnnlab.data.vocab import TokenVocab
from rnnlab.pipeline import prepare as stages
from rnnlab.tasks.sentiment import data as sentiment

from conftest import FIXTURE, SLICES, run_task

ARCHIVE, SHA256 = SLICES["sentiment"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("sentiment")
    run_task(root, "sentiment")
    return root


def test_tokenize_lowercases_keeps_inner_apostrophes_and_splits_punctuation():
    assert sentiment.tokenize("It's a MUST-see, isn't it?") == ["it's", "a", "must", "-", "see", ",", "isn't",
                                                                 "it", "?"]
    assert sentiment.tokenize("''Conan'' café") == ["'", "'", "conan", "'", "'", "café"]


def test_pull_reads_every_snippet_of_the_slice(project):
    raw = load_from_disk(str(project / "data" / "raw" / "sentiment")).to_dict()
    assert list(raw) == ["text", "valence"] and len(raw["text"]) == 469
    assert raw["text"][0].startswith("The Rock is destined") and raw["valence"][0] == pytest.approx(2.26666666667)
    assert any("é" in t for t in raw["text"])  # UTF-8, not mojibake
    assert not any("\r" in t for t in raw["text"])
    assert Counter(v == 0 for v in raw["valence"])[True] == 37


def test_preprocess_labels_drops_neutral_and_duplicates_and_splits_by_class(project):
    processed = project / "data" / "processed" / "sentiment"
    stats = json.loads((processed / "stats.json").read_text())
    assert stats["neutral_dropped"] == 37 and stats["duplicates_dropped"] == 2
    assert stats["rows"] == {"train": 344, "validation": 43, "test": 43}
    assert stats["classes"]["validation"] == {"negative": 20, "positive": 23}
    ds = load_from_disk(str(processed))
    assert ds["train"].column_names == ["text", "label", "tokens"]
    assert ds["train"].features["label"].names == ["negative", "positive"]
    texts = {s: set(ds[s]["text"]) for s in SPLITS}
    assert sum(map(len, texts.values())) == 430  # each text once, in one split
    raw = load_from_disk(str(project / "data" / "raw" / "sentiment"))
    label_of = {t: int(v > 0) for t, v in zip(raw["text"], raw["valence"]) if v != 0}
    assert all(label_of[row["text"]] == row["label"] for s in SPLITS for row in ds[s])


def test_vocabulary_comes_from_train_only(project):
    processed = project / "data" / "processed" / "sentiment"
    ds = load_from_disk(str(processed))
    vocab = TokenVocab.load(processed / "vocab.json")
    counts = Counter(t for text in ds["train"].to_dict()["text"] for t in sentiment.tokenize(text))
    assert set(vocab.tokens) == {t for t, n in counts.items() if n >= 2}  # min_freq 2 in params.yaml
    held_out = {t for s in ("validation", "test") for text in ds[s]["text"] for t in sentiment.tokenize(text)}
    unseen = sorted(held_out - set(counts))
    assert unseen and vocab.encode(unseen) == [1] * len(unseen)
    row = ds["test"][0]
    assert row["tokens"] == vocab.encode(sentiment.tokenize(row["text"]))


def test_same_seed_same_split_other_seed_other_split(project, tmp_path):
    raw = project / "data" / "raw" / "sentiment"
    first = load_from_disk(str(project / "data" / "processed" / "sentiment"))
    sentiment.preprocess(raw, tmp_path / "again", seed=42, validation=0.1, test=0.1, min_freq=2)
    sentiment.preprocess(raw, tmp_path / "other", seed=7, validation=0.1, test=0.1, min_freq=2)
    again, other = load_from_disk(str(tmp_path / "again")), load_from_disk(str(tmp_path / "other"))
    assert all(again[s].to_dict() == first[s].to_dict() for s in SPLITS)
    assert set(other["test"]["text"]) != set(first["test"]["text"])


def sdist_with(lines: list[bytes], path):
    """A vaderSentiment-like sdist whose ratings file holds `lines`."""
    def tar_gz(name, data):
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w:gz") as tar:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        return out.getvalue()

    path.write_bytes(tar_gz(sentiment.INNER, tar_gz(sentiment.MEMBER, b"\r\n".join(lines))))
    return path


@pytest.mark.parametrize("line, message", [
    (b"3\tvery good\tA fine film.", r"line 3: valence 'very good' is not a number"),
    (b"3\tnan\tA fine film.", r"line 3: valence 'nan' is not a number"),
    (b"3\t1.5", r"line 3: expected id, valence and text separated by tabs"),
])
def test_bad_line_stops_pull_naming_file_and_line(tmp_path, line, message):
    archive = sdist_with([b"1\t2.0\tGood.", b"2\t-1.0\tBad.", line], tmp_path / "bad.tar.gz")
    with pytest.raises(RnnlabError, match=f"movieReviewSnippets_GroundTruth.txt {message}"):
        sentiment.read_archive(archive)


def test_not_utf8_and_missing_member_are_refused(tmp_path):
    archive = sdist_with([b"1\t2.0\tcaf\xe9"], tmp_path / "latin1.tar.gz")
    with pytest.raises(RnnlabError, match="is not UTF-8"):
        sentiment.read_archive(archive)
    with pytest.raises(RnnlabError, match="lacks vaderSentiment-3.3.2/additional_resources"):
        sentiment.read_archive(FIXTURE)


def test_wrong_checksum_is_refused_and_leaves_no_output(workdir):
    with pytest.raises(RnnlabError, match="checksum mismatch.*expected sha256 0000"):
        pypi_sdist("vaderSentiment==3.3.2", "0" * 64, archive=str(ARCHIVE))
    text = (workdir / "params.yaml").read_text().replace(SHA256, "f" * 64)
    (workdir / "params.yaml").write_text(text)
    with pytest.raises(RnnlabError, match="checksum mismatch"):
        stages.pull("sentiment")
    assert not (workdir / "data").exists()
