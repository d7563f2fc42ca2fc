from collections import Counter

import pytest
import yaml

from rnnlab import RnnlabError, tasks
from rnnlab.data.splits import stratified_split
from rnnlab.data.vocab import TokenVocab
from rnnlab.pipeline import prepare as stages


def test_stratified_split_is_a_seeded_partition_in_proportion():
    labels = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    rows = stratified_split(labels, {"validation": 0.1, "test": 0.2}, seed=3)
    assert list(rows) == ["train", "validation", "test"]
    assert sorted(sum(rows.values(), [])) == list(range(100))
    assert Counter(labels[i] for i in rows["test"]) == {"a": 10, "b": 6, "c": 4}
    assert Counter(labels[i] for i in rows["validation"]) == {"a": 5, "b": 3, "c": 2}
    assert stratified_split(labels, {"validation": 0.1, "test": 0.2}, seed=3) == rows
    assert stratified_split(labels, {"validation": 0.1, "test": 0.2}, seed=4) != rows


@pytest.mark.parametrize("held_out, message", [({"test": 1.2}, r"test=1.2 must be in \[0, 1\)"),
                                               ({"validation": 0.5, "test": 0.5}, "leave nothing for train"),
                                               ({"test": 0.9}, "class 'b' has 1 rows: none left for train")])
def test_stratified_split_refuses_fractions_that_leave_no_train(held_out, message):
    with pytest.raises(RnnlabError, match=message):
        stratified_split(["a"] * 10 + ["b"], held_out, seed=0)


def test_token_vocab_pads_with_0_and_maps_unknown_to_1(tmp_path):
    vocab = TokenVocab.build([["the", "film"], ["the", "end"], ["the", "film"]], min_freq=2)
    assert vocab.tokens == ("the", "film") and len(vocab) == 4
    assert vocab.encode(["the", "end", "film"]) == [2, 1, 3]
    assert vocab.decode([2, 1, 0]) == ["the", "<unk>", "<pad>"]
    vocab.save(tmp_path / "vocab.json")
    assert TokenVocab.load(tmp_path / "vocab.json") == vocab
    with pytest.raises(RnnlabError, match="min_freq must be at least 1"):
        TokenVocab.build([], min_freq=0)


def test_every_task_has_a_data_section_and_a_bad_key_is_named(workdir):
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    assert set(params["tasks"]) == set(tasks.names())
    params["tasks"]["surname"]["data"]["min_nmes"] = 3
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(RnnlabError, match="tasks.surname.data: .*'min_nmes'"):
        stages.preprocess("surname")
    with pytest.raises(RnnlabError, match="unknown task 'sentimental'; choose one of caption, charlm, forecast, sentiment"):
        stages.pull("sentimental")
