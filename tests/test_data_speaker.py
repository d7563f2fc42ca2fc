import json
import zipfile

import numpy as np
import pytest
from datasets import load_from_disk

from rnnlab import RnnlabError
from rnnlab.core.sources import pypi_wheel
from rnnlab.data.splits import SPLITS
from rnnlab.tasks.speaker import data as speaker

from conftest import SLICES, run_task

ARCHIVE, SHA256 = SLICES["speaker"]
HEADER = "#JapaneseVowels\n@problemName JapaneseVowels\n@classLabel true 1 2\n@data\n"  # data from line 5


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("speaker")
    run_task(root, "speaker")
    return root


def utterance(frames=3, label="1", channels=12) -> str:
    return ":".join(",".join(f"{c}.{t}" for t in range(frames)) for c in range(channels)) + f":{label}"


def test_parse_ts_gives_frames_by_channels():
    series, labels = speaker.parse_ts(HEADER + utterance(3, "2") + "\n\n", "x.ts")
    assert labels == ["2"]
    assert np.asarray(series[0]).shape == (3, 12) and series[0][1][:2] == [0.1, 1.1]


def test_pull_reads_train_and_test_files_of_the_slice(project):
    raw = load_from_disk(str(project / "data" / "raw" / "speaker"))
    assert {s: len(raw[s]) for s in raw} == {"train": 72, "test": 36}  # 8 and 4 utterances per speaker
    assert sorted(set(raw["train"]["label"])) == [str(i) for i in range(1, 10)]
    lengths = [len(f) for s in raw for f in raw[s]["frames"]]
    assert all(len(frame) == 12 for frame in raw["train"][0]["frames"])
    assert 7 <= min(lengths) and max(lengths) <= 29
    assert raw["train"][0]["frames"][0][0] == pytest.approx(1.860936)  # the file's first value


@pytest.mark.parametrize("line, message", [
    (utterance(channels=11), "line 6: 11 channels, expected 12"),
    (utterance().replace("3.0,3.1,3.2:", "3.0,3.1:"), r"line 6: channels of unequal length \(2 to 3 values\)"),
    (utterance().replace("5.1", "5.x"), "line 6 channel 6: value '5.x' is not a number"),
    (utterance().replace("5.1", "?"), "line 6 channel 6: value '\\?' is not a number"),
    (utterance().rsplit(":", 1)[0], "line 6: missing class label"),
    (utterance().rsplit(":", 1)[0] + ":", "line 6: missing class label"),
    (utterance(label="7"), "line 6: label '7' is not declared in @classLabel"),
])
def test_malformed_line_stops_pull_naming_file_and_line(tmp_path, line, message):
    archive = tmp_path / "bad.whl"
    with zipfile.ZipFile(archive, "w") as whl:
        whl.writestr(speaker.MEMBERS["train"], HEADER + utterance() + "\n" + line + "\n")
        whl.writestr(speaker.MEMBERS["test"], HEADER + utterance() + "\n")
    with pytest.raises(RnnlabError, match=f"JapaneseVowels_TRAIN.ts {message}"):
        speaker.read_archive(archive)


def test_preprocess_carves_validation_from_train_and_keeps_the_test_file(project):
    processed = project / "data" / "processed" / "speaker"
    stats = json.loads((processed / "stats.json").read_text())
    assert stats["rows"] == {"train": 63, "validation": 9, "test": 36}
    assert all(stats["classes"]["validation"][str(i)] == 1 for i in range(1, 10))
    assert json.loads((processed / "labels.json").read_text()) == [str(i) for i in range(1, 10)]
    ds = load_from_disk(str(processed))
    assert ds["train"].column_names == ["frames", "length", "label"]
    assert set(ds["train"]["label"]) == set(range(9))
    assert all(row["length"] == len(row["frames"]) for s in SPLITS for row in ds[s])


def test_standardised_with_train_statistics_only_and_splits_disjoint(project):
    processed = project / "data" / "processed" / "speaker"
    ds = load_from_disk(str(processed))
    norm = json.loads((processed / "standardise.json").read_text())
    mean, std = np.asarray(norm["mean"]), np.asarray(norm["std"])
    train = np.concatenate([np.asarray(f) for f in ds["train"]["frames"]])
    assert np.allclose(train.mean(axis=0), 0, atol=1e-5) and np.allclose(train.std(axis=0), 1, atol=1e-4)
    # back in the raw units, train and validation are a partition of the archive's train file
    raw = load_from_disk(str(project / "data" / "raw" / "speaker"))

    originals = [np.asarray(f) for f in raw["train"]["frames"]]

    def source_row(frames) -> int:
        back = np.asarray(frames) * std + mean
        (i,) = [i for i, f in enumerate(originals) if f.shape == back.shape and np.allclose(f, back, atol=1e-4)]
        return i

    rows = {s: [source_row(f) for f in ds[s]["frames"]] for s in ("train", "validation")}
    assert not set(rows["train"]) & set(rows["validation"])
    assert sorted(rows["train"] + rows["validation"]) == list(range(len(originals)))
    raw_train_only = np.concatenate([np.asarray(f) for f in raw["train"]["frames"]])
    assert not np.allclose(raw_train_only.mean(axis=0), mean)  # validation rows were left out of the statistics


def test_same_seed_same_split(project, tmp_path):
    raw = project / "data" / "raw" / "speaker"
    first = load_from_disk(str(project / "data" / "processed" / "speaker"))
    speaker.preprocess(raw, tmp_path / "again", seed=42, validation=0.15)
    again = load_from_disk(str(tmp_path / "again"))
    assert all(again[s].to_dict() == first[s].to_dict() for s in SPLITS)
    speaker.preprocess(raw, tmp_path / "other", seed=1, validation=0.15)
    assert load_from_disk(str(tmp_path / "other"))["validation"]["frames"] != first["validation"]["frames"]


def test_wrong_checksum_and_missing_member_are_refused(tmp_path):
    with pytest.raises(RnnlabError, match="checksum mismatch.*expected sha256 0000"):
        pypi_wheel("aeon==1.6.0", "0" * 64, archive=str(ARCHIVE))
    assert pypi_wheel("aeon==1.6.0", SHA256, archive=str(ARCHIVE)) == ARCHIVE
    with pytest.raises(RnnlabError, match="JapaneseVowels_TRAIN.ts"):
        speaker.read_archive(SLICES["surname"][0])
