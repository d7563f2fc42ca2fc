"""Recorded Mandarin syllables -> their phones and tone (many-to-many, unaligned: CTC), from Debian gcin-voice.

labels: the recordings' folder names (zhuyin) -> 37 phone and 5 tone tokens, and the syllable in zhuyin or pinyin.

pull: the package's Ogg Vorbis recordings, usr/share/gcin-voice/ogg/<zhuyin label>/<speaker>.ogg, kept as
encoded bytes in one `datasets` Dataset (label, speaker, audio). Speaker 3 is a natural voice, speaker 5 is
rendered from a recorded singing voicebank.
preprocess: each recording decoded (soundfile), mixed to mono, resampled to 16 kHz and turned into log-mel
frames (librosa: 25 ms windows every 10 ms); its label parsed into phone and tone tokens (py). The
split is by syllable, not by file: a syllable's recordings by both speakers are in one split, so every test
syllable is one the model never heard. Writes the DatasetDict, the per-band mean and spread of the training
frames (stats.json) and the manifest of syllables (zhuyin label -> ASCII id, pinyin, split).
SpeechDataModule serves (frames, frame lengths, targets, target lengths) batches.
"""

from __future__ import annotations

import io
import random
import tempfile
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from datasets import Dataset, DatasetDict, load_from_disk
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from rnnlab import RnnlabError
from rnnlab.core.io import atomic_path, write_json
from rnnlab.data.sampling import PIN_MEMORY
from rnnlab.data.splits import SPLITS, read_json

OGG_DIR = "usr/share/gcin-voice/ogg/"
# the front end of most speech recognisers (e.g. Kaldi's and ESPnet's defaults): 16 kHz audio, 25 ms windows
# every 10 ms; gcin-voice's 44.1 kHz adds nothing below 8 kHz, where speech is
SAMPLE_RATE = 16000
WINDOW, HOP = 400, 160
# a recording holds one syllable (0.13-0.63 s in gcin-voice); longer input is not what the model knows (the
# English experiment, rnnlab.tasks.speech.english, takes longer prompts)
MAX_SECONDS = 2.0
# peak amplitude under which a recording counts as silent (-80 dBFS)
SILENCE = 1e-4


# --- labels: a gcin-voice folder name such as `ㄓㄨㄤ4` -> the syllable's CTC target tokens, and the syllable
# back in zhuyin or Hanyu Pinyin for people to read. Sources: Wikipedia "Bopomofo" (the 37 symbols; tone marks
# ˊ ˇ ˋ after the syllable, the neutral-tone dot ˙ before it, tone 1 unmarked), "Zhuyin table" (zhuyin -> pinyin:
# y/w spellings, iou/uei/uen/ueng shortened to iu/ui/un/ong after an initial, ü written u after j q x) and
# "Pinyin", section "Rules for placing the tone mark".

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


# --- the recordings


def read_archive(archives: Sequence[Path]) -> Dataset:
    """The recordings of the gcin-voice .deb (its path; the stage has verified its checksum), as encoded Ogg bytes."""
    from rnnlab.core.sources import extract_deb

    rows: dict[str, list[Any]] = {"label": [], "speaker": [], "audio": []}
    with tempfile.TemporaryDirectory(prefix="rnnlab-gcin-") as tmp:
        for deb in archives:
            extract_deb(Path(deb), Path(tmp), prefix=OGG_DIR)
        for path in sorted(Path(tmp, OGG_DIR).glob("*/*.ogg")):
            rows["label"].append(path.parent.name)
            rows["speaker"].append(path.stem)
            rows["audio"].append(path.read_bytes())
    if not rows["label"]:
        raise RnnlabError(f"{', '.join(map(str, archives))}: no recordings under {OGG_DIR}")
    return Dataset.from_dict(rows)


def pulled(ds: Dataset) -> str:
    return f"{len(ds):,} recordings of {len(set(ds['label'])):,} syllables by speakers {sorted(set(ds['speaker']))}"


def load_audio(source: bytes | str | Path, name: str = "", max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """Audio bytes or a file (wav, ogg, flac: whatever libsndfile reads) -> mono float32 samples at 16 kHz.
    Stereo is mixed down and another rate resampled; no audio, silence or more than `max_seconds` is an error."""
    import soundfile as sf

    name = name or str(source if not isinstance(source, bytes) else "the audio")
    try:
        data = io.BytesIO(source) if isinstance(source, bytes) else source
        wave, rate = sf.read(data, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise RnnlabError(f"{name}: not audio that libsndfile reads (wav, ogg, flac): {e}") from e
    except OSError as e:
        raise RnnlabError(f"{name}: cannot read it: {e}") from e
    wave = wave.mean(axis=1)  # channels -> mono
    if len(wave) == 0:
        raise RnnlabError(f"{name}: the audio is empty")
    if len(wave) > max_seconds * rate:
        raise RnnlabError(f"{name}: {len(wave) / rate:.2f} s of audio, longer than the {max_seconds:g} s the "
                          "model takes")
    if np.abs(wave).max() < SILENCE:
        raise RnnlabError(f"{name}: the audio is silent (peak below {SILENCE:g})")
    if rate != SAMPLE_RATE:
        import librosa

        wave = librosa.resample(wave, orig_sr=rate, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    return wave.astype(np.float32)


def log_mel(wave: np.ndarray, n_mels: int) -> np.ndarray:
    """16 kHz samples -> (frames, n_mels) log-mel energies (librosa's mel filterbank, 20 Hz to 8 kHz)."""
    import librosa

    mel = librosa.feature.melspectrogram(y=wave, sr=SAMPLE_RATE, n_fft=WINDOW, hop_length=HOP, n_mels=n_mels,
                                         fmin=20, fmax=SAMPLE_RATE // 2)
    return np.log(mel + 1e-6).T.astype(np.float32)


def split_syllables(syllables: Sequence[str], seed: int, validation: float, test: float,
                    where: str = "params.yaml: tasks.speech.data.split") -> dict[str, str]:
    """Syllable id -> split: a seeded shuffle of the distinct syllables, `test` of them first, then `validation`."""
    if not (0 < validation < 1 and 0 < test < 1 and validation + test < 1):
        raise RnnlabError(f"{where} needs 0 < validation, test and validation + test < 1, "
                          f"got {validation}, {test}")
    order = sorted(set(syllables))
    random.Random(seed).shuffle(order)
    n_test, n_val = round(test * len(order)), round(validation * len(order))
    return {s: "test" if i < n_test else "validation" if i < n_test + n_val else "train" for i, s in enumerate(order)}


def preprocess(raw_dir: Path, out_dir: Path, seed: int, validation: float, test: float, n_mels: int = 40) -> dict:
    """Decode, resample and featurise every recording, split by syllable; see the module's docstring."""
    try:
        raw = load_from_disk(str(raw_dir))
    except (FileNotFoundError, ValueError) as e:
        raise RnnlabError(f"cannot read the raw data at {raw_dir}: {e}") from e
    if not isinstance(n_mels, int) or not 8 <= n_mels <= 128:
        raise RnnlabError(f"params.yaml: tasks.speech.data.n_mels must be an integer from 8 to 128, got {n_mels!r}")
    rows: list[dict[str, Any]] = []
    for label, speaker, audio in zip(raw["label"], raw["speaker"], raw["audio"]):
        phones, tone = parse_label(label)
        frames = log_mel(load_audio(audio, f"{raw_dir}: {label}/{speaker}.ogg"), n_mels)
        rows.append({"syllable": syllable_id(phones, tone), "label": label, "speaker": speaker,
                     "targets": [TOKENS.index(t) + 1 for t in tokens(phones, tone)],  # 0: the blank
                     "frames": frames.tolist()})
    split_of = split_syllables([r["syllable"] for r in rows], seed, validation, test)
    splits = {s: Dataset.from_list([r for r in rows if split_of[r["syllable"]] == s]) for s in SPLITS}
    train_frames = np.concatenate([np.asarray(f, dtype=np.float32) for f in splits["train"]["frames"]])
    stats = {"rows": {s: len(d) for s, d in splits.items()},
             "syllables": {s: len(set(d["syllable"])) for s, d in splits.items()},
             "n_mels": n_mels, "sample_rate": SAMPLE_RATE, "hop": HOP, "tokens": list(TOKENS),
             "mean": train_frames.mean(axis=0).round(5).tolist(), "std": train_frames.std(axis=0).round(5).tolist()}
    manifest = {r["label"]: {"id": r["syllable"], "pinyin": to_pinyin(*parse_label(r["label"])),
                             "split": split_of[r["syllable"]]} for r in rows}
    with atomic_path(out_dir, is_dir=True) as tmp:
        DatasetDict(splits).save_to_disk(str(tmp))
        write_json(tmp / "stats.json", stats)
        write_json(tmp / "manifest.json", dict(sorted(manifest.items())))
    return stats


def summary(stats: dict) -> str:
    return ", ".join(f"{s}: {n:,} recordings of {stats['syllables'][s]} syllables" for s, n in stats["rows"].items())


def collate(items: Sequence[tuple[torch.Tensor, torch.Tensor]]):
    """[(frames (T, C), targets (S,)), ...] -> (frames (B, T, C), frame lengths, targets (B, S), target lengths)."""
    frames, targets = zip(*items)
    return (pad_sequence(list(frames), batch_first=True), torch.tensor([len(f) for f in frames]),
            pad_sequence(list(targets), batch_first=True), torch.tensor([len(t) for t in targets]))


class SpeechDataModule(L.LightningDataModule):
    """`speakers`: keep only these speakers' recordings in train (null: both), e.g. ["3"] to test on an unheard
    voice; evaluation always reads both."""

    def __init__(self, processed_dir: str, batch_size: int = 32, eval_batch_size: int = 256,
                 speakers: list[str] | None = None, task: str = "speech"):
        super().__init__()  # the batch sizes are checked with the rest of the config (rnnlab.core.validate)
        self.task, self.processed_dir = task, Path(processed_dir)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        try:
            self.splits = load_from_disk(str(self.processed_dir))
            self.stats = read_json(self.processed_dir / "stats.json")
        except (FileNotFoundError, ValueError, OSError) as e:
            raise RnnlabError(f"cannot read the processed data at {self.processed_dir} "
                              f"(run `rnnlab preprocess {task}` or dvc repro): {e}") from e
        known = set(self.splits["train"]["speaker"])
        if speakers is not None and not set(map(str, speakers)) <= known:
            raise RnnlabError(f"data.speakers: {sorted(set(map(str, speakers)) - known)} not among the speakers "
                              f"{sorted(known)}")
        self.speakers = None if speakers is None else [str(s) for s in speakers]
        self.data = {s: self.items(s) for s in SPLITS}

    def items(self, split: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        rows = self.splits[split]
        return [(torch.tensor(frames), torch.tensor(targets))
                for frames, targets, speaker in zip(rows["frames"], rows["targets"], rows["speaker"])
                if split != "train" or self.speakers is None or speaker in self.speakers]

    def model_kwargs(self) -> dict:
        """The tokens and the front end's settings, so that a checkpoint transcribes raw audio on its own."""
        return {"task": self.task, "tokens": list(self.stats["tokens"]), "n_mels": int(self.stats["n_mels"]),
                "standardise": {"mean": self.stats["mean"], "std": self.stats["std"]}}

    def train_dataloader(self):
        return StatefulDataLoader(self.data["train"], batch_size=self.batch_size, shuffle=True,  # type: ignore[arg-type]  # a list is a map-style dataset
                                  collate_fn=collate, pin_memory=PIN_MEMORY)

    def loader(self, split: str) -> DataLoader:
        return DataLoader(self.data[split], batch_size=self.eval_batch_size, shuffle=False, collate_fn=collate,  # type: ignore[arg-type]  # a list is a map-style dataset
                          pin_memory=PIN_MEMORY)

    def val_dataloader(self):
        return self.loader("validation")

    def test_dataloader(self):
        return self.loader("test")
