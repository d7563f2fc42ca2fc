"""English -> Spanish verse pairs (many-to-many, encoder-decoder): King James Version <-> Reina-Valera 1909.

pull: the two Debian packages' sword modules (zText, OSIS markup) read verse by verse with pysword, the
markup stripped and the Spanish normalised, cached as one `datasets` Dataset (book, chapter, verse, en, es).
preprocess: split by book (the books of validation and test named in params.yaml, every other book in
train), a SentencePiece BPE model trained on the train split only, both sides encoded as token ids, pairs
over the length limit dropped from train and validation (test keeps every verse).
TranslationDataModule serves the processed splits as padded (source, source lengths, target) batches.
"""

from __future__ import annotations

import base64
import html
import json
import re
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from datasets import Dataset, DatasetDict, load_from_disk

from rnnlab import RnnlabError
from rnnlab.core.io import atomic_path, write_json
from rnnlab.data.subwords import PairLoaders, load_sentencepiece, train_sentencepiece

SPLITS = ("train", "validation", "test")
MODULES_DIR = "usr/share/sword/modules/texts/ztext"
# language -> the sword module inside the Debian packages
MODULES = {"en": "engKJV2006eb", "es": "spaRV1909eb"}

NOTE = re.compile(r"<note\b[^>]*>.*?</note>", re.S)
# Psalm titles are canonical and part of the verse; other titles (Psalm 119's Hebrew letters) are not
TITLE = re.compile(r"<title(?![^>]*canonical=\"true\")[^>]*>.*?</title>", re.S)
TAG = re.compile(r"<[^>]+>")
USFM = re.compile(r"\\\+?nd\*?")  # stray USFM "\nd ... \+nd*" (small-caps LORD) left in a few KJV verses
# Psalm 119's section letters, which the Spanish module keeps as text: "GIMEL. Haz bien á tu siervo"
ACROSTIC = re.compile(r"^[A-Z]{2,}\.? (?=[A-Z¿¡])")
# the first word of two letters or more, after a one-letter word at most ("Y FUERON acabados")
WORD = re.compile(r"[^\W\d_]+")
FIRST_WORD = re.compile(r"^(\W*(?:[^\W\d_] )?)([^\W\d_]{2,})(?=(.?))")


def clean(text: str) -> str:
    """OSIS verse -> plain text: notes and non-canonical titles dropped, tags stripped, spacing tidied."""
    text = TITLE.sub(" ", NOTE.sub(" ", text))
    text = html.unescape(TAG.sub(" ", text))
    text = USFM.sub(" ", text).replace("¶", " ")
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r" ([,.;:?!)\]])", r"\1", text)
    return re.sub(r"([(\[¿¡]) ", r"\1", text)


def normalise_spanish(text: str, book: str, chapter: int, verse: int, casing: dict[str, str] | None = None) -> str:
    """The 1909 text capitalises the first word of a chapter ("EN el principio", "¡OH Jehová", "Y FUERON
    acabados") and of a few paragraphs ("HUBO en los días"). Such a word at the start becomes "En", "Oh",
    "Hubo"; after a one-letter word it takes its usual casing in the text, `casing` (upper -> usual form,
    see usual_casing: "Y fueron acabados", "Y Jehová dijo"). Elsewhere a word in capitals stays unless a
    lowercase word follows it ("JAH, si" and "TEKEL:" stay)."""
    if book == "Ps" and chapter == 119:
        text = ACROSTIC.sub("", text)
    m = FIRST_WORD.match(text)
    if m and m.group(2).isupper() and (verse == 1 or (m.group(3) == " " and text[m.end() + 1:m.end() + 2].islower())):
        word = m.group(2)
        if m.group(1).strip(" ¡¿(\"'"):  # after "Y ": the word's usual form mid-sentence
            word = (casing or {}).get(word, word[0] + word[1:].lower())
        else:
            word = word[0] + word[1:].lower()
        text = m.group(1) + word + text[m.end():]
    return text


def usual_casing(texts) -> dict[str, str]:
    """Upper-case form -> the most frequent casing of the word after the first word of a verse (lower case
    unless the word is mostly a name): "FUERON" -> "fueron", "JEHOVÁ" -> "Jehová"."""
    counts = Counter(w for t in texts for w in WORD.findall(t)[1:])
    best: dict[str, str] = {}
    for word, n in counts.items():
        key = word.upper()
        if word != key and n > counts.get(best.get(key, ""), 0):
            best[key] = word
    return best


def chapter_verses(bible, lang: str, book: str, chapter: int, count: int) -> list[str]:
    """The raw verses of one chapter of one module: `count` of them, as the KJV versification has."""
    try:
        verses = list(bible.get_iter(books=[book], chapters=[chapter], clean=False))
    except Exception as e:  # a module that lacks a testament raises from its missing files
        raise RnnlabError(f"cannot read {book} {chapter} from {MODULES[lang]}: {e}") from e
    if len(verses) != count:
        raise RnnlabError(f"{MODULES[lang]}: {book} {chapter} has {len(verses)} verses, the KJV versification {count}")
    return verses


def read_modules(root: Path) -> Dataset:
    """Every verse present in both modules under `root` (the packages' files, extracted) as aligned rows."""
    from pysword.bible import SwordBible

    bibles = {}
    for lang, name in MODULES.items():
        path = Path(root) / MODULES_DIR / name
        if not path.is_dir():
            raise RnnlabError(f"sword module {name} not found at {path}")
        bibles[lang] = SwordBible(str(path) + "/", "ztext", "kjv", "utf-8", "OSIS")
    rows: dict[str, list[Any]] = {"book": [], "chapter": [], "verse": [], "en": [], "es": []}
    structure = bibles["en"].get_structure().get_books()
    for testament in ("ot", "nt"):
        for book in structure.get(testament, []):
            for chapter, count in enumerate(book.chapter_lengths, 1):
                texts = {lang: chapter_verses(bible, lang, book.osis_name, chapter, count)
                         for lang, bible in bibles.items()}
                for verse, (en, es) in enumerate(zip(texts["en"], texts["es"]), 1):
                    en, es = clean(en), clean(es)
                    if en and es:  # a verse missing on one side (a few in Job) has no pair
                        for key, value in zip(rows, (book.osis_name, chapter, verse, en, es)):
                            rows[key].append(value)
    if not rows["en"]:
        raise RnnlabError(f"no verse pairs found under {root}")
    casing = usual_casing(rows["es"])
    rows["es"] = [normalise_spanish(es, book, chapter, verse, casing)
                  for book, chapter, verse, es in zip(rows["book"], rows["chapter"], rows["verse"], rows["es"])]
    return Dataset.from_dict(rows)


def read_archive(archives: Sequence[Path]) -> Dataset:
    """The verse pairs of the Debian packages (their paths; the stage has verified their checksums)."""
    from rnnlab.core.sources import extract_deb

    with tempfile.TemporaryDirectory(prefix="rnnlab-sword-") as tmp:
        for deb in archives:
            extract_deb(Path(deb), Path(tmp), prefix="usr/share/sword/")
        return read_modules(Path(tmp))


def split_by_book(books: Sequence[str], validation: Sequence[str], test: Sequence[str]) -> dict[str, list[int]]:
    """Row indices per split: the named books are validation / test, every other book train."""
    present = set(books)
    held = {"validation": list(validation), "test": list(test)}
    for name, names in held.items():
        missing = [b for b in names if b not in present]
        if missing:
            raise RnnlabError(f"params.yaml: tasks.translate.data.splits.{name} names books not in the data: {missing} "
                              f"(OSIS names, e.g. {', '.join(sorted(present)[:5])})")
    both = set(validation) & set(test)
    if both:
        raise RnnlabError(f"params.yaml: tasks.translate.data.splits: books in validation and test: {sorted(both)}")
    split_of = {b: "validation" for b in validation} | {b: "test" for b in test}
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    for i, book in enumerate(books):
        out[split_of.get(book, "train")].append(i)
    if not out["train"]:
        raise RnnlabError("params.yaml: tasks.translate.data.splits leave no book for train")
    return out


def preprocess(raw_dir: Path, out_dir: Path, validation: Sequence[str], test: Sequence[str], vocab_size: int = 4000,
               joint: bool = True, max_tokens: int = 100, min_tokens: int = 1) -> dict:
    """Split by book, train SentencePiece on train (one joint model of both languages, or one per language),
    encode; pairs with a side longer than `max_tokens` (or shorter than `min_tokens`) leave train and
    validation. Writes data/processed/translate: the DatasetDict, spm_{en,es}.model, stats.json."""
    try:
        raw = load_from_disk(str(raw_dir))
    except (FileNotFoundError, ValueError) as e:
        raise RnnlabError(f"cannot read the raw data at {raw_dir}: {e}") from e
    if not isinstance(max_tokens, int) or not isinstance(min_tokens, int) or not 1 <= min_tokens <= max_tokens:
        raise RnnlabError(f"params.yaml: tasks.translate.data needs 1 <= min_tokens <= max_tokens, got {min_tokens}, "
                          f"{max_tokens}")
    rows = split_by_book(raw["book"], validation, test)
    train = raw.select(rows["train"])
    if joint:
        proto = train_sentencepiece(list(train["en"]) + list(train["es"]), vocab_size)
        protos = {"en": proto, "es": proto}
    else:
        protos = {lang: train_sentencepiece(list(train[lang]), vocab_size) for lang in ("en", "es")}
    sps = {lang: load_sentencepiece(p) for lang, p in protos.items()}
    stats: dict[str, Any]
    splits, stats = {}, {"rows": {}, "dropped": {}, "books": {}}
    for split in SPLITS:
        part = raw.select(rows[split])
        src, tgt = sps["en"].encode(list(part["en"])), sps["es"].encode(list(part["es"]))
        keep = [i for i, (s, t) in enumerate(zip(src, tgt))
                if split == "test" or min_tokens <= min(len(s), len(t)) and max(len(s), len(t)) <= max_tokens]
        part = part.select(keep).add_column("src", [src[i] for i in keep]).add_column("tgt", [tgt[i] for i in keep])
        splits[split] = part.flatten_indices()
        stats["rows"][split], stats["dropped"][split] = len(keep), len(src) - len(keep)
        stats["books"][split] = list(dict.fromkeys(part["book"]))  # in the order of the text
    stats.update(vocab_size=vocab_size, joint=joint, max_tokens=max_tokens,
                 mean_tokens={lang: round(sum(map(len, list(splits["train"][col]))) / max(1, len(splits["train"])), 2)
                              for lang, col in (("en", "src"), ("es", "tgt"))})
    with atomic_path(out_dir, is_dir=True) as tmp:
        DatasetDict(splits).save_to_disk(str(tmp))
        for lang, proto in protos.items():
            (tmp / f"spm_{lang}.model").write_bytes(proto)
        write_json(tmp / "stats.json", stats)
    return stats


def summary(stats: dict) -> str:
    return (", ".join(f"{s}: {n:,} pairs ({stats['dropped'][s]} over the length limits dropped)"
                      for s, n in stats["rows"].items()) + f"; vocabulary {stats['vocab_size']}")




class TranslationDataModule(PairLoaders, L.LightningDataModule):
    def __init__(self, processed_dir: str, batch_size: int = 32, eval_batch_size: int = 128, bucket: bool = True,
                 task: str = "translate"):
        super().__init__()
        for key, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if not isinstance(value, int) or value < 1:
                raise RnnlabError(f"data.{key} must be a positive integer, got {value!r}")
        self.task, self.processed_dir = task, Path(processed_dir)
        self.batch_size, self.eval_batch_size, self.bucket = batch_size, eval_batch_size, bucket
        try:
            self.splits = load_from_disk(str(self.processed_dir))
            self.protos = {lang: (self.processed_dir / f"spm_{lang}.model").read_bytes() for lang in ("en", "es")}
        except (FileNotFoundError, ValueError, OSError) as e:
            raise RnnlabError(f"cannot read the processed data at {self.processed_dir} "
                              f"(run `rnnlab preprocess {task}` or dvc repro): {e}") from e
        missing = [s for s in SPLITS if s not in self.splits]
        if missing:
            raise RnnlabError(f"{self.processed_dir}: missing splits {missing}")
        self.data = {s: list(zip(list(self.splits[s]["src"]), list(self.splits[s]["tgt"]))) for s in SPLITS}
        self.stats = json.loads((self.processed_dir / "stats.json").read_text())

    def model_kwargs(self) -> dict:
        """Vocabulary sizes and the SentencePiece models (base64 text: checkpoints load with weights_only)."""
        sps = {lang: load_sentencepiece(p) for lang, p in self.protos.items()}
        return {"task": self.task, "src_vocab_size": sps["en"].get_piece_size(),
                "tgt_vocab_size": sps["es"].get_piece_size(),
                "spm_src": base64.b64encode(self.protos["en"]).decode("ascii"),
                "spm_tgt": base64.b64encode(self.protos["es"]).decode("ascii"),
                "max_source_tokens": int(self.stats["max_tokens"])}

