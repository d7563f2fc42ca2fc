"""Vocabularies built from the training split: characters for the language model (unknown at id 0) and
tokens for the classification tasks (padding at id 0, unknown at id 1)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from rnnlab import RnnlabError
from rnnlab.core.io import write_json

UNK = "<unk>"
PAD = "<pad>"
# a name's boundary symbols (one-to-many generation), appended to a character vocabulary
BOS, EOS = "<s>", "</s>"


@dataclass(frozen=True)
class CharVocab:
    chars: tuple[str, ...]

    @classmethod
    def build(cls, text: str) -> CharVocab:
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
    def load(cls, path: Path) -> CharVocab:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(tuple(data["chars"]))
        except (OSError, ValueError, KeyError) as e:
            raise RnnlabError(f"cannot read vocabulary {path}: {e}") from e


@dataclass(frozen=True)
class TokenVocab:
    """Words or characters of the training split, most frequent first; batches of unequal length pad with 0."""

    tokens: tuple[str, ...]

    SPECIALS = (PAD, UNK)

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]], min_freq: int = 1) -> TokenVocab:
        if min_freq < 1:
            raise RnnlabError(f"min_freq must be at least 1, got {min_freq}")
        counts = Counter(t for seq in sequences for t in seq)
        # ties broken by the token itself, so the same training split always gives the same ids
        kept = sorted((t for t, n in counts.items() if n >= min_freq), key=lambda t: (-counts[t], t))
        return cls(tuple(kept))

    @cached_property  # encode runs once per text: build the lookup once
    def index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.SPECIALS + self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens) + len(self.SPECIALS)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        index = self.index
        return [index.get(t, 1) for t in tokens]  # 1: <unk>

    def decode(self, ids: Iterable[int]) -> list[str]:
        every = self.SPECIALS + self.tokens
        return [every[i] for i in ids]

    def to_dict(self) -> dict:
        # a token's id is its position in "tokens"
        return {"pad": PAD, "unk": UNK, "tokens": list(self.SPECIALS + self.tokens)}

    def save(self, path: Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> TokenVocab:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            tokens = data["tokens"]
        except (OSError, ValueError, KeyError) as e:
            raise RnnlabError(f"cannot read vocabulary {path}: {e}") from e
        if tuple(tokens[:2]) != cls.SPECIALS:
            raise RnnlabError(f"vocabulary {path}: tokens must start with {PAD}, {UNK}")
        return cls(tuple(tokens[2:]))
