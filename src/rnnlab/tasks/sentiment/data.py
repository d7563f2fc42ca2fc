"""Movie-review snippets rated for sentiment by people (Hutto & Gilbert, ICWSM 2014), from the PyPI sdist
`vaderSentiment==3.3.2` (MIT; the wheel lacks the file). Positive or negative, from the words."""

from __future__ import annotations

import io
import math
import re
import tarfile
from pathlib import Path
from typing import Any

from datasets import ClassLabel, Dataset, Features, Sequence, Value

from rnnlab import RnnlabError
from rnnlab.core.sources import utf8_text
from rnnlab.data.splits import SPLITS, class_counts, load_raw, save_splits, stratified_split
from rnnlab.data.vocab import TokenVocab

INNER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
MEMBER = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
LABELS = ("negative", "positive")
# a run of letters or digits (inner apostrophes kept: "don't", "film's"), or one punctuation mark
TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*|[^\w\s]")


def tokenize(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


def read_archive(archive: Path) -> Dataset:
    """One row per snippet: text and mean valence (-4..4) of its human ratings."""
    try:
        with tarfile.open(archive, "r:gz") as outer:
            inner = outer.extractfile(INNER).read()  # type: ignore[union-attr]  # a file member: never None
        with tarfile.open(fileobj=io.BytesIO(inner), mode="r:gz") as tar:
            raw = tar.extractfile(MEMBER).read()  # type: ignore[union-attr]  # a file member: never None
    except KeyError as e:
        raise RnnlabError(f"{archive} lacks {INNER}/{MEMBER}: {e}") from e
    except (tarfile.TarError, OSError) as e:
        raise RnnlabError(f"{archive}: cannot read {INNER}/{MEMBER}: {e}") from e
    return parse_ratings(raw, f"{archive}:{MEMBER}")


def parse_ratings(raw: bytes, where: str) -> Dataset:
    """Tab-separated lines: id, mean valence, text. The file is UTF-8 with CRLF line ends."""
    text = utf8_text(raw, where)
    rows: dict[str, list[Any]] = {"text": [], "valence": []}
    for number, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t", 2)
        if len(fields) != 3 or not fields[2].strip():
            raise RnnlabError(f"{where} line {number}: expected id, valence and text separated by tabs")
        try:
            valence = float(fields[1])
        except ValueError:
            valence = math.nan
        if not math.isfinite(valence):
            raise RnnlabError(f"{where} line {number}: valence {fields[1]!r} is not a number")
        rows["text"].append(fields[2].strip())
        rows["valence"].append(valence)
    if not rows["text"]:
        raise RnnlabError(f"{where} holds no rows")
    return Dataset.from_dict(rows)


def deduplicate(texts: list[str], labels: list[int]) -> list[int]:
    """Rows to keep: the first of each repeated text, none of a text whose copies disagree on the label."""
    seen: dict[str, int] = {}
    conflicting = set()
    for i, (text, label) in enumerate(zip(texts, labels)):
        if text not in seen:
            seen[text] = i
        elif labels[seen[text]] != label:
            conflicting.add(text)
    return [i for text, i in seen.items() if text not in conflicting]


def preprocess(raw_dir: Path, out_dir: Path, seed: int, validation: float, test: float, min_freq: int = 1) -> dict:
    ds = load_raw(raw_dir).to_dict()  # plain lists: iterating a dataset's column goes row by row
    # valence 0 (raters split evenly) is neither positive nor negative
    rated = [(t, int(v > 0)) for t, v in zip(ds["text"], ds["valence"]) if v != 0]
    texts, labels = [t for t, _ in rated], [y for _, y in rated]
    # duplicates removed before splitting, so no text is in two splits
    keep = deduplicate(texts, labels)
    texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    rows = stratified_split(labels, {"validation": validation, "test": test}, seed)
    tokens = [tokenize(t) for t in texts]
    vocab = TokenVocab.build((tokens[i] for i in rows["train"]), min_freq)
    features = Features({"text": Value("string"), "label": ClassLabel(names=list(LABELS)),
                         "tokens": Sequence(Value("int32"))})
    stats: dict[str, Any]
    splits, stats = {}, {"rows": {}, "classes": {}, "unknown_tokens": {}, "vocab_size": len(vocab),
                         "neutral_dropped": len(ds["text"]) - len(rated), "duplicates_dropped": len(rated) - len(keep)}
    for split in SPLITS:
        ids = [vocab.encode(tokens[i]) for i in rows[split]]
        split_labels = [labels[i] for i in rows[split]]
        splits[split] = Dataset.from_dict({"text": [texts[i] for i in rows[split]], "label": split_labels,
                                           "tokens": ids}, features=features)
        stats["rows"][split] = len(ids)
        stats["classes"][split] = class_counts(split_labels, LABELS)
        stats["unknown_tokens"][split] = sum(x.count(1) for x in ids)
    stats["tokens_per_text"] = {"min": min(map(len, tokens)), "max": max(map(len, tokens))}
    save_splits(out_dir, splits, vocab=vocab.to_dict(), labels=list(LABELS), stats=stats)
    return stats
