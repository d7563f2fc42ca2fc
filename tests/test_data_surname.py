import json

import pytest
from datasets import load_from_disk

from rnnlab import RnnlabError
from rnnlab.core.sources import pypi_wheel
from rnnlab.data.splits import SPLITS
from rnnlab.data.vocab import TokenVocab
from rnnlab.tasks.surname import data as surname

from conftest import SLICES, run_task

ARCHIVE, SHA256 = SLICES["surname"]
# the slice holds the curated locales' provider files whole, so these are the real counts
NAMES_PER_LANGUAGE = {"Croatian": 787, "Dutch": 1016, "English": 1051, "Estonian": 350, "Finnish": 371,
                      "French": 498, "German": 1190, "Irish": 2374, "Italian": 1150, "Polish": 3762,
                      "Slovak": 1728, "Spanish": 1591, "Swedish": 438, "Zulu": 784}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("surname")
    run_task(root, "surname")
    return root


PROVIDER = b'''
from collections import OrderedDict
from .. import Provider as PersonProvider

class Provider(PersonProvider):
    first_names = ("Anna", "Ivo")
    last_names_male = ("Horvat", " Kova\\u010di\\u0107 ")
    last_names_female: Tuple[str, ...] = ("Horvat", "Babi\\u0063\\u0301")  # c + combining acute
    last_names = last_names_male + last_names_female
    male_last_names = OrderedDict((("Novak", 0.5), ("Kne\\u017eevi\\u0107", 0.1)))
    unrelated = sorted(first_names)
'''


def test_provider_attributes_are_read_without_running_the_source():
    names = surname.read_provider(PROVIDER, "hr.py")
    # the union of last_names*, *_last_names; weights dropped; NFC and stripped; each name once
    assert names == ["Babić", "Horvat", "Knežević", "Kovačić", "Novak"]
    assert surname.read_provider(PROVIDER, "hr.py", only=("male_last_names",)) == ["Knežević", "Novak"]


@pytest.mark.parametrize("source, message", [
    (b"class Provider:\n    last_names = tuple(load('names.txt'))\n", "hr.py: last_names: hr.py line 2: cannot read"),
    (b"class Provider:\n    first_names = ('Ana',)\n", "hr.py has no last_names attribute"),
    (b"class Provider:\n    last_names = ('Ana', 3)\n", "3 is not a name"),
    (b"class Provider(:\n", "hr.py line 1: not Python source"),
])
def test_unreadable_provider_is_refused_naming_file_and_attribute(source, message):
    with pytest.raises(RnnlabError, match=message):
        surname.read_provider(source, "hr.py")


def test_pull_reads_the_curated_locales(project):
    raw = load_from_disk(str(project / "data" / "raw" / "surname")).to_dict()
    assert list(raw) == ["name", "language", "locale"]
    assert sorted(set(raw["language"])) == sorted(surname.LANGUAGES)
    assert set(raw["locale"]) == {loc for locales in surname.LANGUAGES.values() for loc in locales}
    estonian = {n for n, loc in zip(raw["name"], raw["locale"]) if loc == "et_EE"}
    assert len(estonian) == 380 and "Tamm" in estonian and "Ivanov" not in estonian  # no Russian list
    assert all(surname.is_latin(n) for n in raw["name"])


def test_names_split_disjointly_by_language_and_ambiguous_names_dropped(project):
    processed = project / "data" / "processed" / "surname"
    stats = json.loads((processed / "stats.json").read_text())
    assert stats["names_per_language"] == NAMES_PER_LANGUAGE
    assert stats["rows"] == {"train": 13672, "validation": 1709, "test": 1709}
    ds = load_from_disk(str(processed))
    labels = json.loads((processed / "labels.json").read_text())
    assert labels == ds["train"].features["label"].names == sorted(NAMES_PER_LANGUAGE)
    names = {s: {n.casefold() for n in ds[s].to_dict()["name"]} for s in SPLITS}
    assert sum(map(len, names.values())) == sum(NAMES_PER_LANGUAGE.values())  # each name once, up to case
    assert not (names["train"] & names["validation"] or names["train"] & names["test"]
                or names["validation"] & names["test"])
    assert "adam" not in set().union(*names.values())  # English, French, German, ...: ambiguous
    assert all(n > 0 for s in SPLITS for n in stats["classes"][s].values())


def test_character_vocabulary_comes_from_train_only(project):
    processed = project / "data" / "processed" / "surname"
    ds = load_from_disk(str(processed))
    vocab = TokenVocab.load(processed / "vocab.json")
    assert set(vocab.tokens) == set("".join(ds["train"].to_dict()["name"]))
    row = ds["validation"][0]
    assert row["tokens"] == vocab.encode(row["name"]) and vocab.decode(row["tokens"]) == list(row["name"])


def test_same_seed_same_split_and_too_few_names_stop_preprocess(project, tmp_path):
    raw = project / "data" / "raw" / "surname"
    first = load_from_disk(str(project / "data" / "processed" / "surname"))
    surname.preprocess(raw, tmp_path / "again", seed=42, validation=0.1, test=0.1)
    again = load_from_disk(str(tmp_path / "again"))
    assert all(again[s].to_dict() == first[s].to_dict() for s in SPLITS)
    with pytest.raises(RnnlabError, match="fewer than min_names=400 names: Estonian 350, Finnish 371"):
        surname.preprocess(raw, tmp_path / "few", seed=42, validation=0.1, test=0.1, min_names=400)
    assert not (tmp_path / "few").exists()


def test_wrong_checksum_and_missing_locale_are_refused():
    with pytest.raises(RnnlabError, match="checksum mismatch.*expected sha256 0000"):
        pypi_wheel("faker==40.63.0", "0" * 64, archive=str(ARCHIVE))
    with pytest.raises(RnnlabError, match="faker/providers/person/tlh_QO/__init__.py"):
        surname.read_archive(ARCHIVE, {"Klingon": ("tlh_QO",)})
