"""Zhuyin (bopomofo) syllable labels of the gcin-voice recordings: parse a folder name such as `ㄓㄨㄤ4`, give the
syllable's CTC target tokens, and write it back in zhuyin or Hanyu Pinyin for people to read.

Sources: Wikipedia "Bopomofo" (the 37 symbols; tone marks ˊ ˇ ˋ after the syllable, the neutral-tone dot ˙ before
it, tone 1 unmarked), "Zhuyin table" (zhuyin -> pinyin: y/w spellings, iou/uei/uen/ueng shortened to iu/ui/un/ong
after an initial, ü written u after j q x) and "Pinyin", section "Rules for placing the tone mark"."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from rnnlab import RnnlabError

# U+3105..U+3129, the symbols of standard Mandarin (U+312A.. are dialect letters gcin does not use). The ASCII ids are
# the pinyin components (ü as v, ㄝ as eh since e is taken by ㄜ), so that ids and token names contain no unicode.
PHONES: tuple[str, ...] = tuple(chr(code) for code in range(0x3105, 0x312A))
ASCII: dict[str, str] = dict(zip(PHONES, (
    "b p m f d t n l g k h j q x zh ch sh r z c s"  # 21 initials
    " a o e eh ai ei ao ou an en ang eng er"  # 13 rimes
    " i u v"  # 3 medials
).split(), strict=True))
# pinyin's tone numbers: 1-4, and 5 for the neutral tone
TONES: tuple[str, ...] = ("1", "2", "3", "4", "5")
# the model's vocabulary: 37 phones, then 5 tones (the CTC blank is added by the model)
TOKENS: tuple[str, ...] = (*ASCII.values(), *TONES)

SYMBOL = {ascii: symbol for symbol, ascii in ASCII.items()}
INITIALS = frozenset(TOKENS[:21])
MEDIALS = frozenset(("i", "u", "v"))
# a syllable is [initial] [medial] [rime], in that order, each at most once
SLOT = {phone: 0 if phone in INITIALS else 1 if phone in MEDIALS else 2 for phone in SYMBOL}
# gcin's folder digit -> tone: no digit is tone 1, and gcin spends the spare digit 1 on the neutral tone
GCIN_TONES = {"": "1", "1": "5", "2": "2", "3": "3", "4": "4"}
ZHUYIN_MARKS = {"1": "", "2": "ˊ", "3": "ˇ", "4": "ˋ"}
# combining macron, acute, caron, grave; NFC then folds them into ā á ǎ à, ǖ ǘ ǚ ǜ, ế ề where Unicode has them
PINYIN_MARKS = {"1": "\u0304", "2": "\u0301", "3": "\u030c", "4": "\u0300", "5": ""}
# a lone initial: ㄓ..ㄙ are the syllables zhi..si (their "empty rime" is written i); the others are not syllables,
# and gcin reads them as the letter's name, as when reciting the bopomofo alphabet (ㄅㄆㄇㄈ = bo po mo fo)
LONE = dict(zip(TOKENS[:21], "bo po mo fo de te ne le ge ke he ji qi xi zhi chi shi ri zi ci si".split(), strict=True))
# finals that are not medial + rime spelled letter by letter ("Zhuyin table", column heads)
CONTRACT = {"ien": "in", "ieng": "ing", "üen": "ün", "üeng": "iong"}
AFTER_INITIAL = {"iou": "iu", "uei": "ui", "uen": "un", "ueng": "ong"}


def well_formed(phones: Sequence[str], tone: str) -> bool:
    """Whether phones + tone is one syllable: known phones in the order initial, medial, rime, and a tone 1-5."""
    if tone not in TONES or not phones or any(phone not in SLOT for phone in phones):
        return False
    slots = [SLOT[phone] for phone in phones]
    return slots == sorted(set(slots))


def _require(phones: Sequence[str], tone: str) -> None:
    if not well_formed(phones, tone):
        raise RnnlabError(f"not a syllable: phones {list(phones)} tone {tone!r}")


def parse_label(folder: str) -> tuple[list[str], str]:
    """A gcin-voice folder name -> (ASCII phone ids, tone "1".."5"): `ㄅㄚ1` -> (["b", "a"], "5")."""
    symbols, digit = (folder[:-1], folder[-1]) if folder[-1:].isdigit() else (folder, "")
    phones = [ASCII.get(symbol, "?") for symbol in symbols]
    if digit not in GCIN_TONES or not well_formed(phones, GCIN_TONES[digit]):
        raise RnnlabError(f"not a gcin-voice syllable label: {folder!r} (want zhuyin as initial, medial, rime, "
                          "then an optional tone digit 1-4)")
    return phones, GCIN_TONES[digit]


def tokens(phones: Sequence[str], tone: str) -> list[str]:
    """The CTC target: the phones, then exactly one tone token."""
    return [*phones, tone]


def syllable_id(phones: Sequence[str], tone: str) -> str:
    """A stable ASCII name, phones joined by '-' then the tone digit: `b-a5`, `zh-u-ang4`, `b1`. Unambiguous: the
    phone ids contain neither '-' nor digits (`zh-u-ang` is not `z-h-...`, `b-a` is not `ba`)."""
    return "-".join(phones) + tone


def split_tokens(seq: Sequence[str]) -> tuple[list[str], str | None]:
    """A decoded token sequence -> (its phones in order, its last tone token or None if it has none)."""
    tones = [token for token in seq if token in TONES]
    return [token for token in seq if token not in TONES], tones[-1] if tones else None


def to_zhuyin(phones: Sequence[str], tone: str) -> str:
    """The syllable in zhuyin: (["b", "a"], "5") -> "˙ㄅㄚ", (["m", "a"], "3") -> "ㄇㄚˇ"."""
    _require(phones, tone)
    text = "".join(SYMBOL[phone] for phone in phones)
    return "˙" + text if tone == "5" else text + ZHUYIN_MARKS[tone]


def _final(initial: str, medial: str, rime: str) -> str:
    """The pinyin spelling of medial + rime, after `initial` or standing alone ("" for none)."""
    medial = {"v": "ü"}.get(medial, medial)
    final = medial + (("e" if medial else "ê") if rime == "eh" else rime)  # ㄝ is ê alone, e in ie/üe
    final = CONTRACT.get(final, final)
    if initial:
        final = AFTER_INITIAL.get(final, final)
        return final.replace("ü", "u") if initial in ("j", "q", "x") else final  # ju, que: j q x never take a plain u
    if final.startswith("ü"):
        return "yu" + final[1:]  # yu, yue, yuan, yun
    if final.startswith("i"):
        return "y" + final if final in ("i", "in", "ing") else "y" + final[1:]  # yi, yin, ying; ya, you, yong
    if final.startswith("u"):
        return "wu" if final == "u" else "w" + final[1:]  # wu; wa, wei, wen, weng
    return final


def _mark(syllable: str, tone: str) -> str:
    """Put the tone mark on a or e if present, on the o of ou, else on the last vowel (iu -> iù, ui -> uì, uo -> uò)."""
    if tone == "5":
        return syllable
    vowels = [i for i, letter in enumerate(syllable) if letter in "aeêiouü"]
    first_ae = [i for i in vowels if syllable[i] in "aeê"]  # never both a and e in one syllable
    index = first_ae[0] if first_ae else syllable.find("ou") if "ou" in syllable else vowels[-1]
    return unicodedata.normalize("NFC", syllable[:index + 1] + PINYIN_MARKS[tone] + syllable[index + 1:])


def to_pinyin(phones: Sequence[str], tone: str) -> str:
    """The syllable in Hanyu Pinyin with its tone mark: (["zh", "u", "ang"], "4") -> "zhuàng", (["b"], "1") -> "bō"."""
    _require(phones, tone)
    initial = phones[0] if phones[0] in INITIALS else ""
    rest = phones[1:] if initial else phones
    if not rest:
        return _mark(LONE[initial], tone)
    medial = next((phone for phone in rest if SLOT[phone] == 1), "")
    rime = next((phone for phone in rest if SLOT[phone] == 2), "")
    return _mark(initial + _final(initial, medial, rime), tone)
