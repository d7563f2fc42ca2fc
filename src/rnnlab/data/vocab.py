"""Character vocabulary built from the training split, with an unknown symbol at id 0."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnlab import RnnlabError
from rnnlab.io import write_json

UNK = "<unk>"


@dataclass(frozen=True)
class CharVocab:
    chars: tuple[str, ...]

    @classmethod
    def build(cls, text: str) -> "CharVocab":
        return cls(tuple(sorted(set(text))))

    @property
    def index(self) -> dict[str, int]:
        return {c: i + 1 for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars) + 1

    def encode(self, text: str) -> np.ndarray:
        index = self.index
        return np.fromiter((index.get(c, 0) for c in text), dtype=np.int16, count=len(text))

    def decode(self, ids) -> str:
        return "".join(self.chars[i - 1] if i > 0 else UNK for i in ids)

    def unknown(self, text: str) -> list[str]:
        index = self.index
        return sorted({c for c in text if c not in index})

    def to_dict(self) -> dict:
        return {"unk": UNK, "chars": list(self.chars)}

    def save(self, path: Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> "CharVocab":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(tuple(data["chars"]))
        except (OSError, ValueError, KeyError) as e:
            raise RnnlabError(f"cannot read vocabulary {path}: {e}") from e
