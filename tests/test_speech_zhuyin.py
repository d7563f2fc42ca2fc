"""The speech task's labels (rnnlab.tasks.speech.data): gcin-voice folder names -> phone and tone tokens, and
the syllable back in zhuyin and Hanyu Pinyin."""

import pytest

from rnnlab import RnnlabError
from rnnlab.tasks.speech.data import (
    ASCII,
    PHONES,
    TOKENS,
    TONES,
    parse_label,
    split_tokens,
    syllable_id,
    to_pinyin,
    to_zhuyin,
    tokens,
    well_formed,
)


def test_vocabulary():
    assert len(PHONES) == 37 and PHONES[0] == "ㄅ" and PHONES[-1] == "ㄩ" and list(PHONES) == sorted(PHONES)
    assert [ASCII[s] for s in "ㄓㄝㄦㄩ"] == ["zh", "eh", "er", "v"]
    assert TONES == ("1", "2", "3", "4", "5")
    assert len(TOKENS) == len(set(TOKENS)) == 42 and TOKENS[:3] == ("b", "p", "m") and TOKENS[-5:] == TONES
    assert all(token.isascii() for token in TOKENS)


@pytest.mark.parametrize("label, phones, tone", [
    ("ㄅㄚ", ["b", "a"], "1"),
    ("ㄅㄚ1", ["b", "a"], "5"),  # gcin's 1 is the neutral tone
    ("ㄅㄚ2", ["b", "a"], "2"),
    ("ㄓㄨㄤ4", ["zh", "u", "ang"], "4"),
    ("ㄧㄞ2", ["i", "ai"], "2"),
    ("ㄦ", ["er"], "1"),
    ("ㄅ", ["b"], "1"),  # a lone letter
    ("ㄇ1", ["m"], "5"),
])
def test_parse_label(label, phones, tone):
    assert parse_label(label) == (phones, tone)
    assert tokens(phones, tone) == [*phones, tone]


@pytest.mark.parametrize("label", ["", "1", "ㄅㄚ5", "ㄅㄚ0", "ㄅ1ㄚ", "ㄅㄚ12", "ba", "ㄪ", "ㄚㄅ", "ㄅㄅ", "ㄨㄧ", "ㄅㄚˊ"])
def test_parse_label_rejects(label):
    with pytest.raises(RnnlabError, match=repr(label)):
        parse_label(label)


def test_syllable_id_and_split_tokens():
    assert syllable_id(["b", "a"], "5") == "b-a5" and syllable_id(["zh", "u", "ang"], "4") == "zh-u-ang4"
    assert syllable_id(["b"], "1") == "b1"
    assert split_tokens(["zh", "u", "ang", "4"]) == (["zh", "u", "ang"], "4")
    assert split_tokens(["b", "2", "a", "3"]) == (["b", "a"], "3")  # the last tone counts
    assert split_tokens(["b", "a"]) == (["b", "a"], None) and split_tokens([]) == ([], None)
    assert well_formed(["zh", "u", "ang"], "4") and not well_formed(["a", "b"], "1") and not well_formed(["a"], "6")


@pytest.mark.parametrize("label, zhuyin, pinyin", [
    ("ㄅㄚ1", "˙ㄅㄚ", "ba"),  # neutral: dot first, no pinyin mark
    ("ㄌㄜ1", "˙ㄌㄜ", "le"),
    ("ㄇㄚ3", "ㄇㄚˇ", "mǎ"),
    ("ㄌㄩ3", "ㄌㄩˇ", "lǚ"),
    ("ㄋㄩㄝ4", "ㄋㄩㄝˋ", "nüè"),
    ("ㄐㄩㄝ2", "ㄐㄩㄝˊ", "jué"),  # ü written u after j q x
    ("ㄩㄝ4", "ㄩㄝˋ", "yuè"),
    ("ㄑㄩ", "ㄑㄩ", "qū"),
    ("ㄐㄩㄥ3", "ㄐㄩㄥˇ", "jiǒng"),
    ("ㄩㄥ3", "ㄩㄥˇ", "yǒng"),
    ("ㄧㄡ3", "ㄧㄡˇ", "yǒu"),
    ("ㄌㄧㄡ2", "ㄌㄧㄡˊ", "liú"),  # iou -> iu, mark on the second vowel
    ("ㄨㄟ4", "ㄨㄟˋ", "wèi"),
    ("ㄍㄨㄟ3", "ㄍㄨㄟˇ", "guǐ"),  # uei -> ui, mark on the second vowel
    ("ㄨㄣ2", "ㄨㄣˊ", "wén"),
    ("ㄌㄨㄣ2", "ㄌㄨㄣˊ", "lún"),
    ("ㄧㄥ2", "ㄧㄥˊ", "yíng"),
    ("ㄌㄧㄥ3", "ㄌㄧㄥˇ", "lǐng"),
    ("ㄧ", "ㄧ", "yī"),
    ("ㄧㄚ4", "ㄧㄚˋ", "yà"),
    ("ㄨ3", "ㄨˇ", "wǔ"),
    ("ㄨㄥ", "ㄨㄥ", "wēng"),
    ("ㄍㄨㄥ3", "ㄍㄨㄥˇ", "gǒng"),
    ("ㄦ2", "ㄦˊ", "ér"),
    ("ㄓ", "ㄓ", "zhī"),
    ("ㄙ4", "ㄙˋ", "sì"),
    ("ㄏㄠ3", "ㄏㄠˇ", "hǎo"),  # a before o
    ("ㄉㄡ4", "ㄉㄡˋ", "dòu"),  # o of ou
    ("ㄉㄨㄛ1", "˙ㄉㄨㄛ", "duo"),
    ("ㄍㄨㄛ2", "ㄍㄨㄛˊ", "guó"),
    ("ㄝ4", "ㄝˋ", "ề"),
    ("ㄅ", "ㄅ", "bō"),  # lone letters: the letter's name
    ("ㄉ", "ㄉ", "dē"),
    ("ㄐ", "ㄐ", "jī"),
])
def test_zhuyin_and_pinyin(label, zhuyin, pinyin):
    phones, tone = parse_label(label)
    assert to_zhuyin(phones, tone) == zhuyin
    assert to_pinyin(phones, tone) == pinyin


def test_spelling_rejects_a_non_syllable():
    with pytest.raises(RnnlabError, match="not a syllable"):
        to_pinyin(["a", "b"], "1")
    with pytest.raises(RnnlabError, match="not a syllable"):
        to_zhuyin(["b", "a"], "0")
