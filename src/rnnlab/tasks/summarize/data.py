"""Debian package descriptions -> their one-line synopsis (text summarization, issue 20; not registered yet).

pull: two index files of Debian 12 (bookworm) `main`, fetched by URL and checked against their pinned sha256
(debian_index): `i18n/Translation-en.xz` holds every binary package's description (the synopsis on the first
line, the long description below it), `binary-amd64/Packages.xz` each binary package's source package. One
pair per source package: the description of the binary named as the source, else of the shortest name.
Cached as one `datasets` Dataset (source, package, binaries, summary, document).
preprocess: drop templated boilerplate (texts that repeat more than `max_repeats` times once the package's
name and all digits are masked: the 1 300 Rust crates "packaged by debcargo", the Node.js modules), keep
documents of `min_words`..`max_words` words, split by a hash of the source package's name (no source in two
splits, the same split on any machine and for any subset), train one SentencePiece model on the train split's
documents and summaries (summaries copy the documents' rare words, so one vocabulary serves both) and encode
both sides. Writes data/processed/summarize: the DatasetDict, spm.model, stats.json.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import lzma
import math
import os
import re
import shutil
import statistics
import tempfile
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from datasets import Dataset, DatasetDict, load_from_disk
from torch import nn

from rnnlab import RnnlabError
from rnnlab.core.io import atomic_path, write_json
from rnnlab.core.sources import debian_cache, sha256_of
from rnnlab.data.subwords import BOS, EOS, PAD, UNK, PairLoaders, collate, load_sentencepiece
from rnnlab.shapes.beam import beam_search, gnmt_penalty, layers_first

SPLITS = ("train", "validation", "test")
# Debian 12.15: both hashes are listed in that release's InRelease. The live path serves the newest point
# release; by-hash/SHA256/<sha256> (Acquire-By-Hash) keeps a file for a while after the next one; bookworm
# moves to archive.debian.org once it is no longer supported
MIRRORS = ("https://deb.debian.org/debian", "https://archive.debian.org/debian")
SOURCES = (
    {"path": "dists/bookworm/main/i18n/Translation-en.xz",
     "sha256": "a3d4a0bfd8e9242810b0885eda7c1a6e05dac15b333ddbaab03ba56f2dfa4bf0", "archive": ""},
    {"path": "dists/bookworm/main/binary-amd64/Packages.xz",
     "sha256": "9e0b5aabb2465b3d2e7a7fe27f9913846277833f7a2826e7767acccff5b588c5", "archive": ""},
)
REMOTE = ("use the DVC remote's copy of the processed data instead (`dvc pull data/processed/summarize`), or pin the "
          "file's new sha256")


# --- fetching: to move into rnnlab.core.sources when the task is registered (a spec's `fetch` names a function
# there; every DVC stage depends on src/rnnlab/core, so an edit there now would re-run the whole pipeline)
def index_urls(path: str, sha256: str) -> list[str]:
    """Where a dists/ file with this hash can be: its path, then its by-hash name, on each mirror."""
    by_hash = f"{path.rpartition('/')[0]}/by-hash/SHA256/{sha256.lower()}"
    return [f"{mirror}/{p}" for mirror in MIRRORS for p in (path, by_hash)]


def debian_index(path: str, sha256: str, archive: str | None = None) -> Path:
    """A verified copy of the Debian archive's file `path` (e.g. "dists/bookworm/main/i18n/Translation-en.xz"):
    `archive` (a local copy: offline tests, mirrors), else the cache, else a download; a file whose sha256 is not
    the pinned one is never read or cached, and none found stops the pull with one line naming the file."""
    name = path.rpartition("/")[2]
    if not re.fullmatch(r"dists(/[\w.+~-]+)+", path) or ".." in path.split("/"):
        raise RnnlabError(f"{path!r} is not a path under the Debian archive's dists/")
    if archive:
        local = Path(archive)
        if not local.is_file():
            raise RnnlabError(f"{path}: archive not found: {local}")
        actual = sha256_of(local)
        if actual != sha256.lower():
            raise RnnlabError(f"checksum mismatch for {local} ({name}): expected sha256 {sha256}, got {actual}; {REMOTE}")
        return local
    cached = debian_cache() / path
    if cached.is_file() and sha256_of(cached) == sha256.lower():
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    seen, answered = [], False
    with tempfile.TemporaryDirectory(prefix="rnnlab-dists-", dir=cached.parent) as tmp:
        part = Path(tmp) / name
        for url in index_urls(path, sha256):
            try:
                with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as f:
                    shutil.copyfileobj(response, f)
            except OSError as e:  # HTTPError (404) and URLError are OSErrors
                seen.append(f"{url}: {getattr(e, 'reason', e)}")
                continue
            actual, answered = sha256_of(part), True
            if actual == sha256.lower():
                os.replace(part, cached)  # only a verified file enters the cache
                return cached
            seen.append(f"{url}: sha256 {actual}")
    if not answered:  # no file anywhere: the network, not the pin
        raise RnnlabError(f"cannot download {path}: {'; '.join(seen)}")
    raise RnnlabError(f"checksum mismatch for {path}: no copy with the pinned sha256 {sha256} ({'; '.join(seen)}): "
                      f"Debian has published a later point release since the pin; {REMOTE}")


# --- parsing
def paragraphs(text: str, where: str) -> Iterator[dict[str, str]]:
    """The RFC 822 paragraphs of a Debian index (Packages, Translation-*): field -> value, a continuation line
    (one starting with a space or tab) appended to its field after a newline."""
    for number, block in enumerate(text.split("\n\n"), 1):
        fields: dict[str, str] = {}
        key = None
        for line in block.split("\n"):
            if not line:
                continue
            if line[0] in " \t":
                if key is None:
                    raise RnnlabError(f"{where}: paragraph {number} starts with a continuation line: {line[:60]!r}")
                fields[key] += "\n" + line
            else:
                key, colon, value = line.partition(":")
                if not colon:
                    raise RnnlabError(f"{where}: paragraph {number}: not a field: {line[:60]!r}")
                fields[key] = value.strip()
        if fields:
            yield fields


def read_index(path: Path, needs: Sequence[str]) -> list[dict[str, str]]:
    """The paragraphs of an .xz index, each checked to have the fields `needs`; errors name the file."""
    try:
        with lzma.open(path, "rt", encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError as e:
        raise RnnlabError(f"{path}: file not found") from e
    except (lzma.LZMAError, EOFError) as e:
        raise RnnlabError(f"{path} is not a readable .xz file (corrupt or cut short): {e}") from e
    except UnicodeDecodeError as e:
        raise RnnlabError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from e
    entries = list(paragraphs(text, str(path)))
    for number, entry in enumerate(entries, 1):
        missing = [f for f in needs if f not in entry]
        if missing:
            raise RnnlabError(f"{path}: paragraph {number} ({entry.get('Package', '?')}) has no {', '.join(missing)} "
                              f"field: is it a Debian {'Translation-en' if 'Description-en' in needs else 'Packages'} "
                              f"file?")
    if not entries:
        raise RnnlabError(f"{path}: no paragraphs")
    return entries


def long_description(text: str) -> str:
    """The long description (the lines after the synopsis) as plain text: a line " ." separates paragraphs
    (a blank line here), a line indented by two or more spaces is shown verbatim (its own line here), the
    others are wrapped text (joined by spaces); leading spaces are stripped."""
    paras: list[list[str]] = [[]]
    verbatim = False  # the last line is shown verbatim: nothing is joined onto it
    for raw in text.split("\n"):
        line = raw.strip()
        if line == ".":
            paras.append([])
        elif line:
            lines = paras[-1]
            if lines and not verbatim and not raw.startswith("  "):
                lines[-1] += " " + line
            else:
                lines.append(line)
            verbatim = raw.startswith("  ")
    return "\n\n".join("\n".join(p) for p in paras if p)


def pairs(texts: list[dict[str, str]], packages: list[dict[str, str]]) -> dict[str, list]:
    """One (synopsis, long description) per source package: the description of the binary package named as the
    source, else of the shortest name (the first in sort order among equals). A binary is matched to its text by
    name and Description-md5 (a few names have texts for several architectures)."""
    text_of = {(t["Package"], t["Description-md5"]): t["Description-en"] for t in texts}
    binaries: dict[str, dict[str, str]] = defaultdict(dict)
    for p in packages:
        text = text_of.get((p["Package"], p["Description-md5"]))
        if text is not None:
            # "Source: name" or "Source: name (version)" when the source's version differs; absent: the same name
            binaries[p.get("Source", p["Package"]).split(" ")[0]][p["Package"]] = text
    rows: dict[str, list] = {"source": [], "package": [], "binaries": [], "summary": [], "document": []}
    for source in sorted(binaries):
        names = binaries[source]
        package = source if source in names else min(names, key=lambda n: (len(n), n))
        synopsis, _, body = names[package].partition("\n")
        for column, value in zip(rows, (source, package, len(names), synopsis.strip(), long_description(body))):
            rows[column].append(value)
    return rows


def read_archive(archives: Sequence[Path]) -> Dataset:
    """The pairs of the two index files (Translation-en.xz, Packages.xz, in that order; verified by the pull)."""
    if len(archives) != 2:
        raise RnnlabError(f"summarize reads two files, Translation-en.xz and Packages.xz; got {len(archives)}")
    texts = read_index(Path(archives[0]), ("Package", "Description-md5", "Description-en"))
    packages = read_index(Path(archives[1]), ("Package", "Description-md5"))
    rows = pairs(texts, packages)
    if not rows["source"]:
        raise RnnlabError(f"{archives[1]} names no binary package that {archives[0]} describes")
    return Dataset.from_dict(rows)


def pulled(ds: Dataset) -> str:
    return f"{len(ds):,} source packages' (synopsis, description) pairs"


# --- preprocessing
WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> int:
    return len(text.split())


def name_pattern(names: Sequence[str]) -> re.Pattern:
    """The package's names as whole words, '-', '_' and '.' interchangeable (the crate serde_json is packaged
    as rust-serde-json), longest first; also each name without its first part (rust-, python-, node-)."""
    variants = set(names) | {n.partition("-")[2] for n in names}
    alternatives = ["[-_.]".join(map(re.escape, re.split(r"[-_.]", n)))
                    for n in sorted((v for v in variants if len(v) >= 2), key=lambda v: (-len(v), v))]
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.I)


def template(document: str, source: str, package: str) -> str:
    """The document with the package's names and every number masked: what templated descriptions share."""
    return re.sub(r"\d+", "0", name_pattern([source, package]).sub("<name>", document))


def novel_fraction(summaries: Sequence[str], documents: Sequence[str]) -> float:
    """The share of summary words (lower-case letters and digits) that are not in their document."""
    total = novel = 0
    for summary, document in zip(summaries, documents):
        seen = set(WORD.findall(document.lower()))
        found = WORD.findall(summary.lower())
        total += len(found)
        novel += sum(w not in seen for w in found)
    return round(novel / max(1, total), 4)


def split_of(source: str, validation: float, test: float) -> str:
    """train / validation / test from the SHA-256 of the source package's name: stable on any machine, in any
    order, for any subset of the data."""
    u = int.from_bytes(hashlib.sha256(source.encode("utf-8")).digest()[:8], "big") / 2 ** 64
    return "test" if u < test else "validation" if u < test + validation else "train"


def check_params(validation: float, test: float, vocab_size: int, min_words: int, max_words: int,
                 max_repeats: int) -> None:
    where = "params.yaml: tasks.summarize.data"
    for name, value in (("validation", validation), ("test", test)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
            raise RnnlabError(f"{where}.split.{name} must be a fraction in (0, 1), got {value!r}")
    if validation + test >= 1:
        raise RnnlabError(f"{where}.split: validation + test = {validation + test} leaves nothing for train")
    for name, value in (("vocab_size", vocab_size), ("min_words", min_words), ("max_words", max_words),
                        ("max_repeats", max_repeats)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RnnlabError(f"{where}.{name} must be a positive integer, got {value!r}")
    if min_words > max_words:
        raise RnnlabError(f"{where}: min_words {min_words} > max_words {max_words}")


def select(raw: Dataset, min_words: int, max_words: int, max_repeats: int) -> tuple[list[int], dict[str, Any]]:
    """The rows kept: boilerplate dropped (a template repeated more than `max_repeats` times, counted over every
    pair), then the word window. Returns their indices and what was dropped."""
    documents, sources, packages = list(raw["document"]), list(raw["source"]), list(raw["package"])
    templates = [template(d, s, p) for d, s, p in zip(documents, sources, packages)]
    counts = Counter(templates)
    boilerplate = {i for i, t in enumerate(templates) if counts[t] > max_repeats}
    lengths = [words(d) for d in documents]
    short = {i for i, n in enumerate(lengths) if n < min_words and i not in boilerplate}
    long = {i for i, n in enumerate(lengths) if n > max_words and i not in boilerplate}
    keep = [i for i in range(len(raw)) if i not in boilerplate | short | long]
    top = [{"pairs": n, "template": t[:120]} for t, n in counts.most_common(5) if n > max_repeats]
    return keep, {"boilerplate": len(boilerplate), "short": len(short), "long": len(long), "templates": top}


def preprocess(raw_dir: Path, out_dir: Path, validation: float = 0.05, test: float = 0.05, vocab_size: int = 8000,
               min_words: int = 10, max_words: int = 400, max_repeats: int = 2) -> dict:
    """Filter, split by source package, train SentencePiece on train only, encode (columns src, tgt: the
    document's and the summary's piece ids). Writes `out_dir`: the DatasetDict, spm.model, stats.json."""
    from rnnlab.data.subwords import load_sentencepiece, train_sentencepiece

    check_params(validation, test, vocab_size, min_words, max_words, max_repeats)
    try:
        raw = load_from_disk(str(raw_dir))
    except (FileNotFoundError, ValueError) as e:
        raise RnnlabError(f"cannot read the raw data at {raw_dir}: {e}") from e
    keep, dropped = select(raw, min_words, max_words, max_repeats)
    rows: dict[str, list[int]] = {s: [] for s in SPLITS}
    sources = list(raw["source"])
    for i in keep:
        rows[split_of(sources[i], validation, test)].append(i)
    if not rows["train"]:
        raise RnnlabError(f"{raw_dir}: no pair is left for train after the filters")
    train = raw.select(rows["train"])
    proto = train_sentencepiece(list(train["document"]) + list(train["summary"]), vocab_size)
    sp = load_sentencepiece(proto)
    splits = {}
    stats: dict[str, Any] = {"raw_pairs": len(raw), "pairs": len(keep), "dropped": dropped, "rows": {},
                             "median_words": {}, "novel_summary_words": {}}
    for split in SPLITS:
        part = raw.select(rows[split])
        docs, sums = list(part["document"]), list(part["summary"])
        part = part.add_column("src", sp.encode(docs)).add_column("tgt", sp.encode(sums))
        splits[split] = part.flatten_indices()
        stats["rows"][split] = len(part)
        stats["median_words"][split] = {"document": statistics.median(map(words, docs)) if docs else 0,
                                        "summary": statistics.median(map(words, sums)) if sums else 0}
        stats["novel_summary_words"][split] = novel_fraction(sums, docs)
    kept = raw.select(keep)
    stats["median_words"]["all"] = {"document": statistics.median(map(words, kept["document"])),
                                    "summary": statistics.median(map(words, kept["summary"]))}
    stats["novel_summary_words"]["all"] = novel_fraction(kept["summary"], kept["document"])
    src, tgt = splits["train"]["src"], splits["train"]["tgt"]
    stats["train_pieces"] = {"document": {"median": statistics.median(map(len, src)), "max": max(map(len, src))},
                             "summary": {"median": statistics.median(map(len, tgt)), "max": max(map(len, tgt))}}
    stats.update(vocab_size=sp.get_piece_size(), validation=validation, test=test, min_words=min_words,
                 max_words=max_words, max_repeats=max_repeats)
    with atomic_path(out_dir, is_dir=True) as tmp:
        DatasetDict(splits).save_to_disk(str(tmp))
        (tmp / "spm.model").write_bytes(proto)
        write_json(tmp / "stats.json", stats)
    return stats


def summary(stats: dict) -> str:
    d = stats["dropped"]
    return (f"{stats['pairs']:,} of {stats['raw_pairs']:,} pairs ({d['boilerplate']} boilerplate, {d['short']} under "
            f"{stats['min_words']} words, {d['long']} over {stats['max_words']} dropped): "
            + ", ".join(f"{s} {n:,}" for s, n in stats["rows"].items()) + f"; vocabulary {stats['vocab_size']}")


def pull_and_preprocess(root: Path, sources: Sequence[dict] = SOURCES, **params) -> dict:
    """What `rnnlab pull summarize` and `rnnlab preprocess summarize` will do once the task is registered
    (rnnlab.pipeline.prepare): fetch and verify the files, root/data/raw/summarize, root/data/processed/summarize.
    `sources`: the files' {path, sha256, archive}; `params`: preprocess's keyword arguments."""
    archives = [debian_index(**source) for source in sources]
    raw_dir, out_dir = Path(root) / "data/raw/summarize", Path(root) / "data/processed/summarize"
    ds = read_archive(archives)
    with atomic_path(raw_dir, is_dir=True) as tmp:
        ds.save_to_disk(str(tmp))
    return preprocess(raw_dir, out_dir, **params)


# --- training: the data module and the model. Both live here, not in a model.py of their own: the train stage
# depends on a task's __init__.py and data.py only (dvc.yaml, enforced by tests/test_stage_deps.py)
log = logging.getLogger(__name__)




class SummaryDataModule(PairLoaders, L.LightningDataModule):
    """The processed splits as padded (document ids, lengths, synopsis ids) batches, each document cut to its
    first `max_source_tokens` pieces (the lead of a description carries its synopsis; the tail costs time)."""

    def __init__(self, processed_dir: str, batch_size: int = 32, eval_batch_size: int = 64, bucket: bool = True,
                 max_source_tokens: int = 200, task: str = "summarize"):
        super().__init__()
        for key, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size),
                           ("max_source_tokens", max_source_tokens)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise RnnlabError(f"data.{key} must be a positive integer, got {value!r}")
        self.task, self.processed_dir = task, Path(processed_dir)
        self.batch_size, self.eval_batch_size, self.bucket = batch_size, eval_batch_size, bucket
        self.max_source_tokens = max_source_tokens
        try:
            self.splits = load_from_disk(str(self.processed_dir))
            self.proto = (self.processed_dir / "spm.model").read_bytes()
            self.stats = json.loads((self.processed_dir / "stats.json").read_text())
        except (FileNotFoundError, ValueError, OSError) as e:
            raise RnnlabError(f"cannot read the processed data at {self.processed_dir} "
                              f"(run `rnnlab preprocess {task}` or dvc repro): {e}") from e
        missing = [s for s in SPLITS if s not in self.splits]
        if missing:
            raise RnnlabError(f"{self.processed_dir}: missing splits {missing}")
        self.data = {s: [(src[:max_source_tokens], tgt) for src, tgt in zip(self.splits[s]["src"], self.splits[s]["tgt"])]
                     for s in SPLITS}

    def model_kwargs(self) -> dict:
        """The vocabulary size, the SentencePiece model (base64 text: checkpoints load with weights_only) and how
        much of a document the model reads."""
        return {"task": self.task, "vocab_size": load_sentencepiece(self.proto).get_piece_size(),
                "spm": base64.b64encode(self.proto).decode("ascii"), "max_source_tokens": self.max_source_tokens}



if TYPE_CHECKING:  # the type checker sees the translator's attributes; at run time the base is added on first use
    from rnnlab.shapes.seq2seq import Seq2SeqTranslator as _Translator  # stage-deps: not run by any stage (types only)
else:
    _Translator = object


def __getattr__(name: str):
    """PointerGenerator, built on first use (PEP 562): the mixin below over the translator of rnnlab.shapes, which
    the pull and preprocess stages import this module without running, and do not depend on (dvc.yaml). The
    train stage, which builds it, depends on rnnlab.shapes and on this file, where its code is."""
    if name == "PointerGenerator":
        from rnnlab.shapes.seq2seq import Seq2SeqTranslator  # stage-deps: not run by the pull and preprocess stages

        cls = type("PointerGenerator", (PointerGeneratorMixin, Seq2SeqTranslator),
                   {"__module__": __name__, "__qualname__": "PointerGenerator", "__doc__": PointerGeneratorMixin.__doc__})
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class PointerGeneratorMixin(_Translator):
    """The translator's encoder-decoder (rnnlab.shapes.seq2seq: bidirectional encoder, recurrent decoder, Luong or
    Bahdanau attention, teacher forcing) with a pointer-generator copy switch (See et al. 2017): at each step
    p_gen = sigmoid(w . [context; decoder output; input embedding]) mixes the vocabulary distribution with the
    attention weights scattered onto the source's piece ids, so a rare name in the document can be copied.
    Documents and synopses share one SentencePiece vocabulary (and one embedding), so a copied piece is a
    vocabulary entry and no extended vocabulary is needed.

    decode() returns log-probabilities where the translator returns logits: its loss (cross-entropy takes
    log_softmax of them: the same values), validation and greedy decoding apply unchanged. The slot that holds
    the attention mask there holds the source ids here (PAD where there is no source): the copy needs them,
    and the mask is `src != PAD`. Beam search is this class's own: length penalty and n-gram blocking."""

    def __init__(self, vocab_size: int, cell: str = "gru", embedding_dim: int = 128, hidden_size: int = 128,
                 num_layers: int = 1, dropout: float = 0.2, nonlinearity: str = "tanh", impl: str = "torch",
                 decoder_size: int = 256, attention: str = "general", attention_dim: int = 128,
                 label_smoothing: float = 0.1, optimizer: dict | None = None, scheduler: dict | None = None,
                 copy: bool = True, beam_width: int = 4, length_penalty: float = 1.0, no_repeat_ngram: int = 3,
                 min_decode_len: int = 2, max_decode_len: int = 40, task: str = "summarize", spm: str | None = None,
                 max_source_tokens: int = 200):
        if isinstance(no_repeat_ngram, bool) or not isinstance(no_repeat_ngram, int) or no_repeat_ngram < 0:
            raise RnnlabError(f"module.no_repeat_ngram must be 0 (off) or a positive integer, got {no_repeat_ngram!r}")
        super().__init__(vocab_size, vocab_size, cell, embedding_dim, hidden_size, num_layers, dropout, nonlinearity,
                         impl, decoder_size, attention, attention_dim, label_smoothing, optimizer, scheduler,
                         beam_width, length_penalty, max_decode_len, 1.0, task, spm, spm, max_source_tokens)
        # the checkpoint rebuilds this class from its own arguments, not the translator's
        self._hparams = type(self.hparams)()
        self.save_hyperparameters()
        self.tgt_embed = self.src_embed  # one vocabulary, one embedding
        memory_size = 2 * hidden_size
        self.switch = nn.Linear(memory_size + decoder_size + embedding_dim, 1) if copy else None

    def max_length(self, src_len: int) -> int:
        return self.hparams.max_decode_len  # a synopsis is about as long whatever the document's length

    def encode(self, src: torch.Tensor, lengths: torch.Tensor):
        memory, keys, mask, state = super().encode(src, lengths)
        return memory, keys, src.masked_fill(~mask, PAD), state

    def step(self, tgt_in: torch.Tensor, memory, keys, src, state):
        """(B, T) previous ids -> log-probabilities (B, T, V), state, attention (B, T, S), p_gen (B, T; 1 without
        the copy switch)."""
        emb = self.drop(self.tgt_embed(tgt_in))
        out, state = self.decoder(emb, state)
        context, weights = self.attention(out, keys, memory, src != PAD)
        combined = torch.tanh(self.combine(torch.cat([out, context], dim=-1)))
        vocab = torch.softmax(self.out(self.drop(combined)).float(), dim=-1)
        if self.switch is None:
            return vocab.clamp_min(1e-12).log(), state, weights, torch.ones(vocab.shape[:2], device=vocab.device)
        p_gen = torch.sigmoid(self.switch(torch.cat([context, out, emb], dim=-1)).float())
        copied = torch.zeros_like(vocab).scatter_add_(-1, src[:, None].expand(-1, tgt_in.size(1), -1), weights.float())
        probs = p_gen * vocab + (1 - p_gen) * copied
        return probs.clamp_min(1e-12).log(), state, weights, p_gen.squeeze(-1)

    def decode(self, tgt_in: torch.Tensor, memory, keys, src, state):
        return self.step(tgt_in, memory, keys, src, state)[:3]

    @torch.inference_mode()
    def explain(self, src: torch.Tensor, lengths: torch.Tensor, outputs: list[list[int]]):
        """For each row's output ids (without EOS): per output step and the closing EOS, p_gen, the attention
        (steps, S) and the share of the chosen piece's probability that came from copying."""
        memory, keys, src_ids, state = self.encode(src, lengths)
        _, _, tgt = collate([([], o) for o in outputs])
        tgt = tgt.to(src.device)
        logp, _, weights, p_gen = self.step(tgt[:, :-1], memory, keys, src_ids, state)
        chosen = logp.gather(-1, tgt[:, 1:, None]).squeeze(-1).exp()
        copied = torch.zeros_like(logp).scatter_add_(-1, src_ids[:, None].expand(-1, tgt.size(1) - 1, -1),
                                                     weights.float()).gather(-1, tgt[:, 1:, None]).squeeze(-1)
        share = (1 - p_gen) * copied / chosen.clamp_min(1e-12)
        return [{"p_gen": p_gen[i, :len(o) + 1].cpu(), "attention": weights[i, :len(o) + 1, :int(lengths[i])].float().cpu(),
                 "copy_share": share[i, :len(o) + 1].clamp(0, 1).cpu()} for i, o in enumerate(outputs)]

    @staticmethod
    def blocked(hyp: list[int], n: int) -> list[int]:
        """The tokens that would repeat an n-gram of `hyp` (n-gram blocking, Paulus et al. 2018)."""
        if n < 1 or len(hyp) < n - 1:
            return []
        prefix = tuple(hyp[len(hyp) - n + 1:]) if n > 1 else ()
        return list(dict.fromkeys(hyp[i + n - 1] for i in range(len(hyp) - n + 1) if tuple(hyp[i:i + n - 1]) == prefix))

    @torch.inference_mode()
    def beam_search(self, src_ids: list[int], beam_width: int | None = None, length_penalty: float | None = None,
                    max_len: int | None = None, no_repeat_ngram: int | None = None) -> list[int]:
        """One document's best synopsis ids (without EOS; rnnlab.shapes.beam), finished hypotheses ranked by
        log p / ((5 + length) / 6) ** length_penalty; a token that would repeat an n-gram of its hypothesis, EOS
        before `min_decode_len` tokens and the unknown piece are never chosen. At width 1 without blocking it is
        the translator's greedy decoding."""
        hp = self.hparams
        alpha = hp.length_penalty if length_penalty is None else length_penalty
        block = hp.no_repeat_ngram if no_repeat_ngram is None else no_repeat_ngram
        src = torch.tensor([src_ids], device=self.device)
        memory, keys, src, state = self.encode(src, torch.tensor([len(src_ids)]))

        def step(last: torch.Tensor, state: Any, hyps: list[list[int]], t: int) -> tuple[torch.Tensor, Any]:
            n = len(hyps)
            logp, state, _ = self.decode(last[:, None], memory.expand(n, -1, -1), keys.expand(n, -1, -1),
                                         src.expand(n, -1), state)
            logp = logp[:, -1].float()
            logp[:, UNK] = -math.inf
            if t < hp.min_decode_len:
                logp[:, EOS] = -math.inf
            for b, hyp in enumerate(hyps):
                logp[b, self.blocked(hyp, block)] = -math.inf
            return logp, state

        found = beam_search(step, state, layers_first, BOS, EOS, beam_width or hp.beam_width,
                            max_len or self.max_length(len(src_ids)), gnmt_penalty(alpha), device=self.device)
        return found[0][0] if found else []

    # --- raw text
    def sentencepiece(self, side: str = "src"):
        """The one SentencePiece model of both sides."""
        if "sp" not in self._sps:
            if not self.hparams.spm:
                raise RnnlabError("this checkpoint holds no SentencePiece model: retrain it with rnnlab train")
            self._sps["sp"] = load_sentencepiece(self.hparams.spm)
        return self._sps["sp"]

    def encode_text(self, text: str) -> list[int]:
        """A description -> the piece ids the model reads: its first `max_source_tokens` (longer text is cut,
        see read_text). Characters the vocabulary lacks become the unknown piece, never written out."""
        return self.read_text(text)[0]

    def read_text(self, text: str) -> tuple[list[int], int]:
        """The ids the model reads and how many pieces the whole text has."""
        if not isinstance(text, str) or not text.strip():
            raise RnnlabError("empty text: give a package description to summarize")
        sp = self.sentencepiece()
        ids = sp.encode(text.strip())
        if all(i == UNK or sp.id_to_piece(i) == "▁" for i in ids):  # a lone word boundary is not a character
            raise RnnlabError("the text has no character the model knows (its vocabulary is English package "
                              "descriptions)")
        return ids[:self.hparams.max_source_tokens], len(ids)

    @torch.inference_mode()
    def summarize(self, text: str, beam_width: int | None = None) -> str:
        """A description -> its synopsis; beam width 1 is greedy (with n-gram blocking)."""
        was_training = self.training
        self.eval()
        try:
            return self.decode_ids(self.beam_search(self.encode_text(text), beam_width))
        finally:
            self.train(was_training)
