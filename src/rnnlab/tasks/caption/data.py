"""Emoji images -> their Unicode names (image captioning): the data, the data module and the model (the model is
here, not in a file of its own, because the train stage's code dependencies are the task's data.py and
__init__.py: see the note above CaptionDataModule).

Sources (SOURCES): the 64x64 PNGs of two npm packages, `emoji-datasource-google` (Noto, Apache-2.0) and
`emoji-datasource-twitter` (Twemoji, CC-BY-4.0), `package/img/<style>/64/<codepoints>.png`, and the human-written
names of Debian `unicode-data`'s `usr/share/unicode/emoji/emoji-test.txt` (Unicode licence): "face with tears of
joy", "woman biking: medium-dark skin tone", "flag: Japan".

pull (read_archive): every image whose codepoints are a fully-qualified emoji of emoji-test.txt, with that name as
its caption, kept as the PNG bytes of the archive (checked to decode as 64x64): one `datasets` Dataset (image,
caption, codepoints, style, group). Images of emoji newer than the names (Unicode 15.0 vs the packages' 16.0) and
of the skin-tone swatches (components, not emoji) have no caption and are left out.
preprocess: the split by group, never by image (an emoji, its skin-tone variants and both drawing styles share a
group: a held-out emoji is one the training never saw in any style or tone), each group placed by a stable hash;
the images kept as their PNG bytes (and checked to decode; `images` decodes a split into one uint8 RGBA array
when it is read); the caption word vocabulary of train only; the `skin_tone` flag
(about half the captions end in "... skin tone", which is easy and inflates BLEU: every score is also reported
without them); stats.json.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import re
import shutil
import statistics
import tarfile
import tempfile
import urllib.request
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset, Features, Value, load_from_disk
from datasets import Sequence as ListOf
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from rnnlab import RnnlabError
from rnnlab.core.checkpoint import RecordsClass
from rnnlab.core.optim import configure_optimizers
from rnnlab.core.sources import debian_cache, sha256_of
from rnnlab.data.sampling import PIN_MEMORY, BucketSampler
from rnnlab.data.splits import SPLITS, load_raw, save_splits
from rnnlab.data.vocab import TokenVocab
from rnnlab.shapes.beam import batch_first, beam_search

log = logging.getLogger(__name__)

# the pinned archives, as params.yaml's tasks.caption.data.source.packages lists them (a test checks that they
# agree); `fetch` names the function that fetches each (see fetch below)
SOURCES: tuple[dict[str, str], ...] = (
    {"fetch": "npm_tarball", "package": "emoji-datasource-google", "version": "16.0.0",
     "sha256": "fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438"},
    {"fetch": "npm_tarball", "package": "emoji-datasource-twitter", "version": "16.0.0",
     "sha256": "f64a530c63bca463bd8317fdc4615ce63a53a0c65018e4ce2d848aaba7a28877"},
    {"fetch": "debian_package", "package": "unicode-data", "version": "15.0.0-1",
     "sha256": "5efef23bbb1c6a133ecbdd63a2cfa07159ccacf5466a49e2426101c5ecd691fc"},
)


def fetch(source: dict[str, str], **replace: str) -> Path:
    """One of SOURCES fetched and verified by the function its `fetch` names: npm_tarball (below: the task's own),
    the others from rnnlab.core.sources; `replace` overrides its keys (sha256, archive)."""
    from rnnlab.core import sources

    function = npm_tarball if source["fetch"] == "npm_tarball" else getattr(sources, source["fetch"])
    return function(**{**{k: v for k, v in source.items() if k != "fetch"}, **replace})


# --- npm packages (the emoji images), fetched from the registry by URL. Here, in the task's data.py: every DVC
# stage depends on rnnlab/core, so adding this to rnnlab.core.sources (beside pypi_sdist and debian_package) would
# re-run the whole pipeline, and the pull stage's code dependencies are the task's __init__.py and data.py.

# Fetched from the registry by URL as the tarball npm itself would download: no node needed, and the pinned
# sha256 is checked before the file enters the cache or anything reads it.
NPM_REGISTRY = "https://registry.npmjs.org"
# the characters of an npm package name (lower case; "@scope/name" for a scoped one) and of a version
NPM_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._~")
NPM_VERSION_CHARS = NPM_NAME_CHARS | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ+")


def npm_name_ok(package: str, version: str) -> bool:
    """Whether `package` and `version` are a plain npm name and version: nothing that could change the URL or
    the cache file's path ("..", "?", a second "/")."""
    scope, _, name = package.rpartition("/")
    if scope and not scope.startswith("@"):
        return False
    names = (scope[1:], name) if scope else (name,)
    return all(n and n[0] != "." and set(n) <= NPM_NAME_CHARS for n in names) and bool(version) \
        and version[0] != "." and set(version) <= NPM_VERSION_CHARS


def npm_tarball_url(package: str, version: str) -> str:
    """The registry's tarball of `package` at `version` (a scoped @scope/name's file is named after name only)."""
    return f"{NPM_REGISTRY}/{package}/-/{package.rpartition('/')[2]}-{version}.tgz"


def npm_tarball(package: str, version: str, sha256: str, archive: str | None = None) -> Path:
    """Return a verified npm tarball (.tgz) of `package` at exactly `version`, from the cache when it holds a
    verified copy ($RNNLAB_CACHE/npm, beside the Debian packages).

    `archive` names a local copy to use instead (offline tests, mirrors); it must match `sha256` as well.
    """
    if not npm_name_ok(package, str(version)):
        raise RnnlabError(f"not an npm package name and version: {package!r} {version!r}")
    if archive:
        path = Path(archive)
        if not path.is_file():
            raise RnnlabError(f"archive not found: {path}")
        _check_npm(path, package, version, sha256)
        return path
    cache = debian_cache().parent / "npm"
    path = cache / f"{package.replace('/', '+')}-{version}.tgz"
    if path.is_file() and sha256_of(path) == sha256.lower():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    url = npm_tarball_url(package, version)
    with tempfile.TemporaryDirectory(prefix="rnnlab-npm-", dir=cache) as tmp:
        tmp_path = Path(tmp) / path.name
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(tmp_path, "wb") as f:
                shutil.copyfileobj(response, f)
        except OSError as e:
            raise RnnlabError(f"cannot download {package}@{version} from {url}: {e}") from e
        _check_npm(tmp_path, package, version, sha256)
        os.replace(tmp_path, path)
    return path


def _check_npm(path: Path, package: str, version: str, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected.lower():
        raise RnnlabError(f"checksum mismatch for npm package {package}@{version} ({path}): expected sha256 {expected}, "
                          f"got {actual}")


EMOJI_TEST = "usr/share/unicode/emoji/emoji-test.txt"
# the images read from an npm tarball: the 64-pixel folder of its style only (the packages also hold sprite sheets,
# emoji.json and other metadata: not read)
IMAGE = re.compile(r"package/img/([a-z]+)/64/([0-9a-f]{4,6}(?:-[0-9a-f]{4,6})*)\.png")
SIZE = 64
# `1F600 ; fully-qualified # 😀 E1.0 grinning face`: code points; status # the emoji, its version, its name
LINE = re.compile(r"([0-9A-F]{4,6}(?: [0-9A-F]{4,6})*) *; *([a-z-]+) *# *\S+ E\d+\.\d+ (.+)")
# the five Fitzpatrick modifiers (light .. dark skin tone) and the emoji presentation selector (VS16): neither
# changes which emoji it is, so a group is the code points without them. VS16 must go too: "hand with fingers
# splayed" is 1F590 FE0F, its skin-tone variants 1F590 1F3FB.. (without FE0F)
SKIN_TONES = frozenset({"1f3fb", "1f3fc", "1f3fd", "1f3fe", "1f3ff"})
VS16 = "fe0f"
# caption words: a word with its inner hyphens, apostrophes and dots ("medium-dark", "o’clock", "U.S"), or one
# punctuation mark; detokenize puts the text back exactly (a test checks every name of the slice)
WORD = re.compile(r"\w+(?:[-'’.]\w+)*|[^\w\s]")
NO_SPACE_BEFORE = frozenset(":,.)!”’")
NO_SPACE_AFTER = frozenset("(“")
# the processed splits. The images stay PNG bytes (23 MB for the 7 310): as a datasets Array3D of uint8 they took
# 232 MB on disk (an offset per pixel row beside the 120 MB of pixels), and decoding all of them once when a split
# is read (`images`) takes about 3 s on one core
FEATURES = Features({
    "image": Value("binary"),
    "caption": Value("string"), "codepoints": Value("string"), "style": Value("string"), "group": Value("string"),
    "skin_tone": Value("bool"), "tokens": ListOf(Value("int32")),
})


# --- names and groups


def parse_emoji_test(text: str, where: str = EMOJI_TEST) -> dict[str, str]:
    """emoji-test.txt -> {codepoints: name} of its fully-qualified emoji, in the file's (CLDR) order. Codepoints
    are written as the image files name them: lower-case hex joined by "-" ("1f468-200d-1f9b0"). The
    minimally-qualified and unqualified forms (the same emoji without some FE0F) and the components are skipped."""
    names: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = LINE.fullmatch(line)
        if not m:
            raise RnnlabError(f"{where}: line {number} is not 'code points ; status # emoji E<version> name': {line[:80]!r}")
        if m[2] == "fully-qualified":
            names["-".join(m[1].lower().split())] = m[3].strip()
    if not names:
        raise RnnlabError(f"{where}: no fully-qualified emoji")
    return names


def group_of(codepoints: str) -> str:
    """The split group of an emoji: its code points without skin tones and VS16 ("1f590-1f3fb" -> "1f590")."""
    return "-".join(c for c in codepoints.split("-") if c not in SKIN_TONES and c != VS16)


def without_vs16(codepoints: str) -> str:
    return "-".join(c for c in codepoints.split("-") if c != VS16)


def match_names(files: Iterable[str], names: dict[str, str]) -> dict[str, str]:
    """Image file stems -> the fully-qualified codepoints they show. A file named exactly as a fully-qualified
    emoji is that emoji; one that differs only by FE0F (a package that drops the selector from a file name) is
    the fully-qualified emoji with the same code points otherwise, unless another file of the style is named
    exactly. Files with no such emoji (newer emoji, the skin-tone swatches) are not in the result."""
    loose: dict[str, str] = {}
    for codepoints in names:
        loose.setdefault(without_vs16(codepoints), codepoints)
    files = set(files)
    found = {f: f for f in files if f in names}
    for f in sorted(files - found.keys()):
        emoji = loose.get(without_vs16(f))
        if emoji is not None and emoji not in files and emoji not in found.values():
            found[f] = emoji
    return found


# --- caption words


def tokenize(caption: str) -> list[str]:
    """'woman biking: medium-dark skin tone' -> ['woman', 'biking', ':', 'medium-dark', 'skin', 'tone']."""
    return WORD.findall(caption)


def detokenize(words: Sequence[str]) -> str:
    """The caption of a word sequence, spaced as the Unicode names are: tokenize's inverse on them."""
    out: list[str] = []
    for i, word in enumerate(words):
        if i and word not in NO_SPACE_BEFORE and words[i - 1] not in NO_SPACE_AFTER:
            out.append(" ")
        out.append(word)
    return "".join(out)


def has_skin_tone(caption: str) -> bool:
    return "skin tone" in caption


# --- images


def decode_png(data: bytes, where: str) -> np.ndarray:
    """PNG bytes -> a uint8 RGBA array of SIZE x SIZE; anything else (not a PNG, truncated, another size) is an
    error naming `where`. Palette, grey + alpha and RGB images are converted (the packages hold all three); a
    fully transparent pixel's colour, which encoders leave arbitrary, is set to 0: it is never seen."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "PNG":
                raise RnnlabError(f"{where} is not a PNG image (it is {image.format})")
            if image.size != (SIZE, SIZE):  # before decoding: a huge image is refused unread
                raise RnnlabError(f"{where} is {image.size[0]}x{image.size[1]} pixels, not {SIZE}x{SIZE}")
            image.load()  # decodes every row: a truncated or corrupt file fails here
            rgba = np.array(image.convert("RGBA"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, zlib.error, Image.DecompressionBombError) as e:
        raise RnnlabError(f"{where} is not a readable PNG image: {e}") from e
    rgba[rgba[..., 3] == 0, :3] = 0
    return rgba


def read_images(tarball: Path) -> dict[str, dict[str, bytes]]:
    """An npm tarball -> {style: {codepoints: PNG bytes}} of its package/img/<style>/64/ images, each checked to
    decode (the error names the tarball and the file). Read in memory: nothing is extracted to disk."""
    found: dict[str, dict[str, bytes]] = {}
    try:
        with tarfile.open(tarball, "r:*") as tar:
            for member in tar:
                m = IMAGE.fullmatch(member.name)
                if m is None or not member.isfile():
                    continue
                data = tar.extractfile(member).read()  # type: ignore[union-attr]  # a file member: never None
                decode_png(data, f"{tarball.name}: {member.name}")
                found.setdefault(m[1], {})[m[2]] = data
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise RnnlabError(f"{tarball} is not a readable npm tarball: {e}") from e
    if not found:
        raise RnnlabError(f"{tarball}: no images under package/img/<style>/64/")
    return found


def read_names(deb: Path) -> dict[str, str]:
    """The fully-qualified emoji names of the unicode-data package (rnnlab.core.sources.extract_deb)."""
    from rnnlab.core.sources import extract_deb, utf8_text

    with tempfile.TemporaryDirectory(prefix="rnnlab-unicode-") as tmp:
        extract_deb(deb, Path(tmp), prefix=EMOJI_TEST)
        path = Path(tmp) / EMOJI_TEST
        if not path.is_file():
            raise RnnlabError(f"{deb}: no {EMOJI_TEST}")
        return parse_emoji_test(utf8_text(path.read_bytes(), f"{deb.name}: {EMOJI_TEST}"), f"{deb.name}: {EMOJI_TEST}")


def read_archive(archives: Sequence[Path]) -> Dataset:
    """The image-caption pairs of the three archives (their paths, in any order; the stage has verified their
    checksums)."""
    names, images = read_sources(archives)
    shown = {style: {codepoints: files[f] for f, codepoints in match_names(files, names).items()}
             for style, files in images.items()}
    rows: dict[str, list[Any]] = {"image": [], "caption": [], "codepoints": [], "style": [], "group": []}
    for codepoints, name in names.items():  # the file's order: an emoji beside its variants
        for style in sorted(shown):
            if codepoints in shown[style]:
                for key, value in zip(rows, (shown[style][codepoints], name, codepoints, style, group_of(codepoints))):
                    rows[key].append(value)
    for style, files in images.items():
        log.info("%s: %d of %d images have a fully-qualified name; %d emoji have no %s image", style,
                 len(shown[style]), len(files), len(names) - len(shown[style]), style)
    if not rows["image"]:
        raise RnnlabError("no image is named by a fully-qualified emoji of emoji-test.txt")
    return Dataset.from_dict(rows)


def read_sources(archives: Sequence[Path]) -> tuple[dict[str, str], dict[str, dict[str, bytes]]]:
    """The names ({codepoints: name}) and the images ({style: {codepoints: PNG bytes}}) of the archives: the Debian
    package is known by its ar header, an npm tarball by its image folders."""
    names: dict[str, str] | None = None
    images: dict[str, dict[str, bytes]] = {}
    for archive in map(Path, archives):
        with open(archive, "rb") as f:
            is_deb = f.read(8) == b"!<arch>\n"
        if is_deb:
            if names is not None:
                raise RnnlabError(f"{archive}: a second Debian package; one holds the emoji names")
            names = read_names(archive)
            continue
        for style, files in read_images(archive).items():
            if style in images:
                raise RnnlabError(f"{archive}: a second archive of {style} images")
            images[style] = files
    if names is None:
        raise RnnlabError(f"no Debian package with {EMOJI_TEST} among {', '.join(map(str, archives))}")
    if not images:
        raise RnnlabError(f"no npm tarball of images among {', '.join(map(str, archives))}")
    return names, images


def pulled(ds: Dataset) -> str:
    styles = Counter(ds["style"])
    return (f"{len(ds):,} images ({', '.join(f'{s} {n:,}' for s, n in sorted(styles.items()))}) of "
            f"{len(set(ds['codepoints'])):,} emoji in {len(set(ds['group'])):,} groups")


# --- preprocess


def group_fraction(group: str, seed: int) -> float:
    """A stable number in [0, 1) for a group: the same on every machine and Python (hash() is salted per process)."""
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_groups(groups: Iterable[str], validation: float, test: float, seed: int) -> dict[str, str]:
    """Group -> its split: test if its fraction is below `test`, validation below test + validation, else train.
    A group's split depends on its name and the seed only, not on which other groups there are."""
    for name, fraction in (("validation", validation), ("test", test)):
        if not 0 <= fraction < 1:
            raise RnnlabError(f"split fraction {name}={fraction!r} must be in [0, 1)")
    if validation + test >= 1:
        raise RnnlabError(f"split fractions validation={validation} + test={test} leave nothing for train")
    split = {}
    for group in set(groups):
        u = group_fraction(group, seed)
        split[group] = "test" if u < test else "validation" if u < test + validation else "train"
    return split


def preprocess(raw_dir: Path, out_dir: Path, seed: int = 42, validation: float = 0.1, test: float = 0.1) -> dict:
    raw = load_raw(raw_dir)
    missing = {"image", "caption", "codepoints", "style", "group"} - set(raw.column_names)
    if missing:
        raise RnnlabError(f"{raw_dir}: not the caption task's raw data (no column {', '.join(sorted(missing))})")
    split_of = split_groups(raw["group"], validation, test, seed)
    fractions = {"validation": validation, "test": test, "train": 1.0}
    rows: dict[str, list[int]] = {s: [] for s in SPLITS}
    for i, group in enumerate(raw["group"]):
        rows[split_of[group]].append(i)
    empty = [s for s in SPLITS if not rows[s] and fractions[s] > 0]
    if empty:
        raise RnnlabError(f"split {empty[0]} has no group of the {len(split_of)} (seed {seed}, validation {validation}, "
                          f"test {test}): change the seed or the fractions")
    captions = raw["caption"]
    words = [tokenize(c) for c in captions]
    vocab = TokenVocab.build(words[i] for i in rows["train"])  # train only: held-out words are <unk>
    parts = {}
    for split, indices in rows.items():
        columns: dict[str, list[Any]] = {key: [] for key in FEATURES}
        for i in indices:
            row = raw[i]
            where = f"{raw_dir}: the {row['style']} image of {row['codepoints']} ({row['caption']})"
            decode_png(row["image"], where)
            columns["image"].append(row["image"])
            for key in ("caption", "codepoints", "style", "group"):
                columns[key].append(row[key])
            columns["skin_tone"].append(has_skin_tone(row["caption"]))
            columns["tokens"].append(vocab.encode(words[i]))
        parts[split] = Dataset.from_dict(columns, features=FEATURES)
    stats = statistics_of(raw, rows, words, vocab, split_of)
    stats["split"] = {"seed": seed, "validation": validation, "test": test}
    save_splits(Path(out_dir), parts, vocab=vocab.to_dict(), stats=stats)
    return stats


def statistics_of(raw: Dataset, rows: dict[str, list[int]], words: list[list[str]], vocab: TokenVocab,
                  split_of: dict[str, str]) -> dict:
    styles, codepoints, captions = raw["style"], raw["codepoints"], raw["caption"]
    known = vocab.index

    def unknown_rate(indices: list[int]) -> float:
        tokens = [w for i in indices for w in words[i]]
        return round(sum(w not in known for w in tokens) / max(1, len(tokens)), 4)

    return {
        "pairs": len(raw), "emoji": len(set(codepoints)), "groups": len(split_of),
        "styles": dict(sorted(Counter(styles).items())),
        "rows": {s: len(rows[s]) for s in SPLITS},
        "emoji_per_split": {s: len({codepoints[i] for i in rows[s]}) for s in SPLITS},
        "groups_per_split": {s: sum(v == s for v in split_of.values()) for s in SPLITS},
        "skin_tone": {s: sum(has_skin_tone(captions[i]) for i in rows[s]) for s in SPLITS},
        "words": {"median": statistics.median(len(w) for w in words), "max": max(len(w) for w in words),
                  "vocabulary_all": len({t for w in words for t in w}), "vocabulary_train": len(vocab.tokens),
                  "unknown_rate": {s: unknown_rate(rows[s]) for s in ("validation", "test")}},
    }


def summary(stats: dict) -> str:
    return (", ".join(f"{s}: {n:,} images" for s, n in stats["rows"].items())
            + f" of {stats['groups']:,} groups; {stats['words']['vocabulary_train']:,} caption words")


def load_splits(processed_dir: Path) -> dict[str, Dataset]:
    """The processed splits (train, validation, test)."""
    try:
        ds = load_from_disk(str(processed_dir))
        return {s: ds[s] for s in SPLITS}
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise RnnlabError(f"cannot read the processed caption data at {processed_dir}: {e}") from e


def images(ds: Dataset) -> np.ndarray:
    """Every image of a split, decoded: uint8 (n, 64, 64, 4), RGBA, rows in the split's order."""
    out = np.zeros((len(ds), SIZE, SIZE, 4), dtype=np.uint8)
    for i, (data, style, codepoints) in enumerate(zip(ds["image"], ds["style"], ds["codepoints"])):
        out[i] = decode_png(data, f"the {style} image of {codepoints}")
    return out


def fetch_package(**source: str) -> Path:
    """`rnnlab pull caption`'s fetch (the spec's ".data:fetch_package"): one entry of params.yaml's
    tasks.caption.data.source.packages, whose `fetch` key names its source function (see fetch)."""
    if "fetch" not in source:
        raise RnnlabError(f"params.yaml: tasks.caption.data.source.packages: the entry of {source.get('package')!r} "
                          "needs a `fetch` key (npm_tarball or debian_package)")
    return fetch({k: v for k, v in source.items() if k != "archive"}, archive=source.get("archive") or "")


# --- the data module and the model. Here and not in files of their own: the train stage's code dependencies
# (dvc.yaml, shared by every task) are the task's __init__.py and data.py only, and tests/test_stage_deps.py checks
# that a stage imports nothing outside its deps.

BOS, EOS = "<s>", "</s>"


def pixels(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 RGBA (B, 64, 64, 4) -> float (B, 4, 64, 64) in [0, 1], the colour premultiplied by alpha: a
    transparent pixel is 0 whatever its stored colour, so padding an image (augmentation) adds transparency."""
    x = images.permute(0, 3, 1, 2).to(dtype) / 255.0
    return torch.cat([x[:, :3] * x[:, 3:], x[:, 3:]], dim=1)


def collate(rows: list[tuple]) -> dict:
    """(image, token ids, caption, style, group) rows -> a batch: images uint8 (B, 64, 64, 4), ids (B, T) of
    `<s> tokens </s>` padded with 0, the captions, styles and groups as lists."""
    images, tokens, captions, styles, groups = zip(*rows)
    ids = torch.zeros(len(rows), max(map(len, tokens)), dtype=torch.long)
    for i, t in enumerate(tokens):
        ids[i, :len(t)] = torch.as_tensor(t)
    return {"images": torch.stack(images), "ids": ids, "captions": list(captions), "styles": list(styles),
            "groups": list(groups)}


class CaptionDataModule(L.LightningDataModule):
    """The processed splits with their images decoded once (uint8, about 120 MB for all of them); the caption
    ids framed by `<s>` and `</s>`, whose ids follow the vocabulary's (model_kwargs: the model's vocabulary)."""

    def __init__(self, processed_dir: str, batch_size: int = 64, eval_batch_size: int = 256, bucket: bool = True,
                 task: str = "caption"):
        super().__init__()
        for key, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if not isinstance(value, int) or value < 1:
                raise RnnlabError(f"data.{key} must be a positive integer, got {value!r}")
        self.task, self.processed_dir = task, Path(processed_dir)
        self.batch_size, self.eval_batch_size, self.bucket = batch_size, eval_batch_size, bucket
        self.splits = load_splits(self.processed_dir)
        try:
            self.vocab = json.loads((self.processed_dir / "vocab.json").read_text())["tokens"]
        except (OSError, ValueError, KeyError) as e:
            raise RnnlabError(f"cannot read {self.processed_dir / 'vocab.json'}: {e}") from e
        self.bos, self.eos = len(self.vocab), len(self.vocab) + 1
        self.rows = {s: self._rows(part) for s, part in self.splits.items()}

    def _rows(self, part: Dataset) -> list[tuple]:
        pictures = torch.from_numpy(images(part))
        return [(pictures[i], [self.bos, *tokens, self.eos], caption, style, group)
                for i, (tokens, caption, style, group) in enumerate(zip(part["tokens"], part["caption"], part["style"],
                                                                        part["group"]))]

    def model_kwargs(self) -> dict:
        return {"task": self.task, "vocab": [*self.vocab, BOS, EOS]}

    def train_dataloader(self):
        rows = self.rows["train"]
        if not self.bucket:
            return StatefulDataLoader(rows, batch_size=self.batch_size, shuffle=True, collate_fn=collate,  # type: ignore[arg-type]  # a list is a map-style dataset
                                      pin_memory=PIN_MEMORY)
        sampler = BucketSampler([len(row[1]) for row in rows], self.batch_size, pool=20)
        return StatefulDataLoader(rows, batch_sampler=sampler, collate_fn=collate, pin_memory=PIN_MEMORY)  # type: ignore[arg-type]  # a list is a map-style dataset

    def loader(self, split: str) -> DataLoader:
        return DataLoader(self.rows[split], batch_size=self.eval_batch_size, shuffle=False, collate_fn=collate,  # type: ignore[arg-type]  # a list is a map-style dataset
                          pin_memory=PIN_MEMORY)

    def val_dataloader(self):
        return self.loader("validation")

    def test_dataloader(self):
        return self.loader("test")


def conv_block(c_in: int, c_out: int, convs: int, pool: bool) -> nn.Sequential:
    """`convs` 3x3 convolutions (batch norm, ReLU), then, if `pool`, 2x2 max pooling: half the map."""
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                   nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, *([nn.MaxPool2d(2)] if pool else []))


def encoder(channels: list[int], convs: list[int], stem: int, grid: int) -> nn.Sequential:
    """The CNN: the image folded `stem` x `stem` into channels (space to depth: every pixel kept, a quarter of the
    positions for stem 2, which is where the convolutions' time goes), then the blocks, each pooling while the
    map is larger than `grid`."""
    if SIZE % stem or (SIZE // stem) % grid or (SIZE // stem) // grid > 2 ** len(channels):
        raise RnnlabError(f"module.stem={stem} and module.grid={grid} do not fit a {SIZE}-pixel image and "
                          f"{len(channels)} blocks")
    layers: list[nn.Module] = [nn.PixelUnshuffle(stem)] if stem > 1 else []
    size, c_in = SIZE // stem, 4 * stem * stem
    for c_out, n in zip(channels, convs):
        layers.append(conv_block(c_in, c_out, n, size > grid))
        size, c_in = (size // 2 if size > grid else size), c_out
    return nn.Sequential(*layers)


CELLS = {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "rnn": nn.RNNCell}
# the side of the thumbnails the captioner retrieves by: the nearest-neighbour baseline's pixels (premultiplied
# RGBA, Euclidean) at 16x16, not 32x32: the same validation BLEU (60.1 and 8.8 against 60.2 and 8.7, full and
# without skin tones, measured) in a quarter of the memory the checkpoint carries (6 MB for the 5 846 training images)
RETRIEVAL = 16


def thumbnails(images: torch.Tensor, side: int = RETRIEVAL, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 RGBA (B, 64, 64, 4) -> float (B, side * side * 4) in [0, 1]: premultiplied, block means. The pixels
    both the captioner's retrieval and the nearest-neighbour baseline (caption/baselines.py, 32x32) compare."""
    return F.adaptive_avg_pool2d(pixels(images, dtype), side).flatten(1)


def distances(queries: torch.Tensor, memory: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    """Thumbnails (B, D) against (N, D) with their squared norms (N,) -> (B, N), the squared Euclidean distance
    less |q|^2, which is the same for every memory row and so keeps their order: |m|^2 - 2 q.m."""
    return norms[None] - 2 * queries @ memory.T


class Context(NamedTuple):
    """What the decoder reads at every word, batch first: the annotation vectors of the image and their attention
    keys; the retrieved captions' words (read by the memory reader), their keys, their ids (0: padding) and the id
    of the word before each (<s> before a caption's first), None without retrieval."""
    feats: torch.Tensor
    keys: torch.Tensor
    words: torch.Tensor | None = None
    word_keys: torch.Tensor | None = None
    word_ids: torch.Tensor | None = None
    word_before: torch.Tensor | None = None

    def expand(self, n: int) -> Context:
        """One image's context for `n` beams."""
        return Context._make(t if t is None else t.expand(n, *t.shape[1:]) for t in self)


class Captioner(RecordsClass, L.LightningModule):
    """Show, Attend and Tell (Xu et al. 2015) at emoji size, retrieval-augmented: a CNN trained from scratch whose
    last feature map (8x8 for a 64-pixel image and three blocks) is a grid of annotation vectors; a recurrent cell
    that, at each word, attends over the grid (additive attention, its context scaled by a gate of the state) and
    reads the previous word with that context. Teacher forcing in training, with the doubly stochastic penalty that
    pushes every cell of the grid to be attended about once over the caption; greedy and beam-search decoding.

    Retrieval (`neighbours` > 0), after retrieval-augmented captioning (SmallCap, Ramos et al. 2023) and the
    pointer-generator's copying (See et al. 2017): the model keeps the training images' 16x16 thumbnails and
    captions as buffers (its memory, filled from the data module when training starts, saved in its checkpoint);
    an image's `neighbours` nearest by the nearest-neighbour baseline's pixel distance give their captions, which a
    bidirectional GRU reads (each word with its neighbour's rank). At each word the decoder also attends over those
    words and mixes two distributions: the vocabulary's and a copy of the attended words, weighted by a learnt
    gate. In training an image never retrieves its own group (its other style and skin tones), so it learns, as at
    test time, from captions of other emoji: which words to copy, and what the image says differently (the skin
    tone, a woman for a man). An unseen emoji's name is mostly the words of its neighbours' names.

    Augmentation (training only): a random shift of up to `shift` of the image's half-width and a random zoom
    by up to `zoom`, one each per image. Both keep the caption true. Flips would not ("left arrow", "right-facing
    fist"), nor rotations ("up-right arrow"), nor colour changes ("red apple", skin tones)."""

    if TYPE_CHECKING:  # Lightning types hparams AttributeDict | MutableMapping; it is read by attribute here
        hparams: Any
        memory_pixels: torch.Tensor
        memory_ids: torch.Tensor
        memory_groups: torch.Tensor

    def __init__(self, vocab: list[str], task: str = "caption", cell: str = "lstm", embedding_dim: int = 64,
                 hidden_size: int = 256, num_layers: int = 1, dropout: float = 0.3, nonlinearity: str = "tanh",
                 impl: str = "torch", channels: list[int] | None = None, convs: list[int] | None = None, stem: int = 2,
                 grid: int = 8,
                 attention_dim: int = 128, attention_penalty: float = 1.0, word_loss: float = 0.0,
                 label_smoothing: float = 0.0, colours: bool = False, neighbours: int = 0, memory_dim: int = 128,
                 shift: float = 0.1, zoom: float = 0.1, styles: list[str] | None = None, beam_width: int = 3,
                 length_penalty: float = 0.0, max_length: int = 20, ema: float = 0.0,
                 select_across_styles: bool = False, select_no_skin_tone: float = 0.0, optimizer: dict | None = None,
                 scheduler: dict | None = None):
        super().__init__()
        channels, convs = list(channels or [32, 64, 128]), list(convs or [2, 2, 2])
        if cell not in CELLS or num_layers != 1 or impl != "torch":
            raise RnnlabError(f"the captioner's decoder is one torch cell (lstm, gru or rnn): got model.cell={cell!r}, "
                              f"model.num_layers={num_layers!r}, model.impl={impl!r}")
        if len(channels) != len(convs) or not all(isinstance(n, int) and n >= 1 for n in [*channels, *convs]):
            raise RnnlabError(f"module.channels and module.convs must be lists of positive integers of one length, "
                              f"got {channels} and {convs}")
        if BOS not in vocab or EOS not in vocab:
            raise RnnlabError(f"module.vocab must hold the start and end symbols {BOS} and {EOS}")
        for key, value in (("beam_width", beam_width), ("max_length", max_length), ("attention_dim", attention_dim),
                           ("memory_dim", memory_dim), ("neighbours", neighbours + 1)):
            if not isinstance(value, int) or value < 1:
                raise RnnlabError(f"module.{key} must be a positive integer{' or 0' if key == 'neighbours' else ''}, "
                                  f"got {value if key != 'neighbours' else neighbours!r}")
        self.save_hyperparameters()
        self.bos, self.eos = vocab.index(BOS), vocab.index(EOS)
        self.cnn = encoder(channels, convs, stem, grid)
        # colours: each annotation vector also holds the mean premultiplied RGBA of its cell of the image, so the
        # skin tone (a caption's last words in half the data) is there from the first step, not learnt by the CNN
        features = channels[-1] + (4 if colours else 0)
        self.key = nn.Linear(features, attention_dim, bias=False)
        self.query = nn.Linear(hidden_size, attention_dim)
        self.score = nn.Linear(attention_dim, 1, bias=False)
        self.gate = nn.Linear(hidden_size, features)
        self.init = nn.Linear(features, hidden_size * (2 if cell == "lstm" else 1))
        self.embedding = nn.Embedding(len(vocab), embedding_dim, padding_idx=0)
        self.cell = CELLS[cell](embedding_dim + features, hidden_size)
        memory = memory_dim if neighbours else 0
        self.deep = nn.Linear(hidden_size + features + embedding_dim + memory, hidden_size)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, len(vocab))
        if neighbours:
            self.rank = nn.Embedding(neighbours, embedding_dim)
            self.reader = nn.GRU(embedding_dim, memory_dim // 2, batch_first=True, bidirectional=True)
            self.word_key = nn.Linear(2 * (memory_dim // 2), attention_dim, bias=False)
            self.word_query = nn.Linear(hidden_size, attention_dim)
            self.word_score = nn.Linear(attention_dim, 1, bias=False)
            self.copy = nn.Linear(hidden_size + memory + embedding_dim, 1)
            # a learnt bonus to the attention score of each retrieved word that follows the word just read: copying
            # a neighbour's phrase word after word is then easy (the state alone had to find the place again)
            self.follow = nn.Parameter(torch.tensor(2.0))
        # the memory: the training images' thumbnails (uint8), their `words </s>` ids (0: padding) and groups; empty
        # until remember() fills it, resized when a checkpoint's is loaded
        self.register_buffer("memory_pixels", torch.zeros(0, RETRIEVAL * RETRIEVAL * 4, dtype=torch.uint8))
        self.register_buffer("memory_ids", torch.zeros(0, 1, dtype=torch.long))
        self.register_buffer("memory_groups", torch.zeros(0, dtype=torch.long))
        self.group_index: dict[str, int] = {}
        # the auxiliary bag-of-words head (training only): which words the caption holds, from the mean annotation
        # vector; a direct signal to the CNN while the decoder still leans on its language model
        self.words = nn.Linear(features, len(vocab)) if word_loss else None
        # never generated: padding, the unknown word and the start symbol
        self.banned = [0, 1, self.bos]
        if not 0.0 <= ema < 1.0:
            raise RnnlabError(f"module.ema must be in [0, 1) (0: off), got {ema!r}")
        # the exponential moving average of the weights (ema > 0): the other set of weights, swapped in for each
        # validation (and so in the checkpoint it chooses) and out when training goes on; see ema_update
        self._ema: dict[str, torch.Tensor] | None = None
        self._ema_steps, self._ema_swapped = 0, False

    # --- the memory of retrieval
    def remember(self, images: torch.Tensor, tokens: Sequence[Sequence[int]], groups: Sequence[str]) -> None:
        """Fill the memory: uint8 images (N, 64, 64, 4), each one's caption ids `words </s>` and group."""
        self.group_index = {g: i for i, g in enumerate(sorted(set(groups)))}
        ids = torch.zeros(len(tokens), max(map(len, tokens), default=1), dtype=torch.long)
        for i, t in enumerate(tokens):
            ids[i, :len(t)] = torch.as_tensor(t)
        device = self.memory_ids.device
        self.memory_pixels = (thumbnails(images) * 255).round().to(device, torch.uint8)
        self.memory_ids = ids.to(device)
        self.memory_groups = torch.tensor([self.group_index[g] for g in groups], dtype=torch.long, device=device)

    def setup(self, stage: str) -> None:
        """Training starts: the memory is the training images of the model's styles."""
        if stage == "fit" and self.hparams.neighbours:
            styles = self.hparams.styles
            rows = [r for r in self.trainer.datamodule.rows["train"]  # type: ignore[attr-defined]  # Lightning sets it in fit
                    if not styles or r[3] in styles]
            self.remember(torch.stack([r[0] for r in rows]), [r[1][1:] for r in rows], [r[4] for r in rows])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("memory_pixels", "memory_ids", "memory_groups"):  # a memory of another size: take its shape
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name], device=self.memory_ids.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def bank(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The memory's thumbnails as floats and their squared norms, computed once per memory (not every batch)."""
        if getattr(self, "_bank", (None,))[0] is not self.memory_pixels:
            memory = self.memory_pixels.float() / 255
            self._bank = (self.memory_pixels, memory, (memory * memory).sum(1))
        return self._bank[1], self._bank[2]

    def retrieve(self, images: torch.Tensor, groups: Sequence[str] | None = None) -> torch.Tensor | None:
        """uint8 images (B, 64, 64, 4) -> the `words </s>` ids (B, k, L) of the captions of the k nearest images of
        the memory, nearest first; `groups` (training): never one of the image's own group. None without
        retrieval."""
        k = self.hparams.neighbours
        if not k:
            return None
        if not len(self.memory_ids):
            raise RnnlabError("the captioner retrieves from an empty memory: train it (or call remember) first")
        memory, norms = self.bank()
        distance = distances(thumbnails(images), memory, norms)
        if groups is not None:
            own = torch.tensor([self.group_index.get(g, -1) for g in groups], device=distance.device)
            distance = distance.masked_fill(own[:, None] == self.memory_groups[None], math.inf)
        ids = self.memory_ids[distance.topk(min(k, len(memory)), largest=False).indices]
        return ids[..., :max(1, int((ids != 0).sum(-1).max()))]  # no column of padding only

    # --- the network
    def encode(self, images: torch.Tensor, groups: Sequence[str] | None = None) -> tuple[Context, Any]:
        """uint8 images (B, 64, 64, 4) -> what the decoder reads (Context) and its first state."""
        return self.context(pixels(images), self.retrieve(images, groups))

    def context(self, x: torch.Tensor, retrieved: torch.Tensor | None) -> tuple[Context, Any]:
        """Pixels (B, 4, 64, 64) and the retrieved captions' ids (B, k, L) -> Context and the first state."""
        grid = self.cnn(x)
        if self.hparams.colours:
            grid = torch.cat([grid, F.adaptive_avg_pool2d(x, grid.shape[-2:])], dim=1)
        feats = grid.flatten(2).transpose(1, 2)  # (B, P, C): one annotation vector per cell of the grid
        first = torch.tanh(self.init(feats.mean(1)))
        state = tuple(first.chunk(2, dim=-1)) if self.hparams.cell == "lstm" else first
        if retrieved is None:
            return Context(feats, self.key(feats)), state
        n, k, length = retrieved.shape
        rank = self.rank(torch.arange(k, device=x.device))[None, :, None]
        # packed: the backward direction starts at each caption's </s>, whatever the batch's padding
        lengths = (retrieved != 0).sum(-1).view(-1).cpu()
        packed = pack_padded_sequence((self.embedding(retrieved) + rank).view(n * k, length, -1), lengths,
                                      batch_first=True, enforce_sorted=False)
        words = pad_packed_sequence(self.reader(packed)[0], batch_first=True, total_length=length)[0]
        words = words.reshape(n, k * length, -1)
        before = torch.cat([torch.full_like(retrieved[..., :1], self.bos), retrieved[..., :-1]], dim=-1)
        return Context(feats, self.key(feats), words, self.word_key(words), retrieved.reshape(n, -1),
                       before.reshape(n, -1)), state

    def step(self, words: torch.Tensor, state, ctx: Context):
        """The previous words (B,) -> log-probabilities (B, V) of the next, the new state, the image attention
        weights (B, P)."""
        h = state[0] if isinstance(state, tuple) else state
        scores = self.score(torch.tanh(ctx.keys + self.query(h)[:, None])).squeeze(-1)
        alpha = torch.softmax(scores.float(), dim=-1).to(ctx.feats.dtype)
        context = torch.sigmoid(self.gate(h)) * (alpha[:, :, None] * ctx.feats).sum(1)
        emb = self.drop(self.embedding(words))
        state = self.cell(torch.cat([emb, context], dim=-1), state)
        h = state[0] if isinstance(state, tuple) else state
        if ctx.words is None or ctx.word_ids is None:
            deep = torch.tanh(self.deep(torch.cat([self.drop(h), context, emb], dim=-1)))
            return torch.log_softmax(self.out(self.drop(deep)).float(), dim=-1), state, alpha
        # the retrieved words, attended by the new state: it knows which word it has just read
        scores = self.word_score(torch.tanh(ctx.word_keys + self.word_query(h)[:, None])).squeeze(-1)
        scores = scores + self.follow * (ctx.word_before == words[:, None])
        beta = torch.softmax(scores.float().masked_fill(ctx.word_ids == 0, -math.inf), dim=-1)
        read = (beta[:, :, None].to(ctx.words.dtype) * ctx.words).sum(1)
        deep = torch.tanh(self.deep(torch.cat([self.drop(h), context, emb, read], dim=-1)))
        generate = torch.softmax(self.out(self.drop(deep)).float(), dim=-1)
        copied = torch.zeros_like(generate).scatter_add_(1, ctx.word_ids, beta)
        p = torch.sigmoid(self.copy(torch.cat([h, read, emb], dim=-1)).float())  # how much to generate, not copy
        return (p * generate + (1 - p) * copied).clamp_min(1e-12).log(), state, alpha

    def forward(self, x: torch.Tensor, ids: torch.Tensor, retrieved: torch.Tensor | None = None):
        """Teacher forcing: pixels (B, 4, 64, 64), `<s> words </s>` ids (B, T) and the retrieved captions' ids
        (B, k, L) -> log-probabilities (B, T-1, V) of ids[:, 1:], and the attention weights (B, T-1, P)."""
        return self.teacher_forced(x, ids, retrieved)[:2]

    def teacher_forced(self, x: torch.Tensor, ids: torch.Tensor, retrieved: torch.Tensor | None = None):
        ctx, state = self.context(x, retrieved)
        logps, alphas = [], []
        for t in range(ids.size(1) - 1):
            out, state, alpha = self.step(ids[:, t], state, ctx)
            logps.append(out)
            alphas.append(alpha)
        return torch.stack(logps, 1), torch.stack(alphas, 1), ctx.feats

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """A random shift and zoom per image (an affine resampling; what moves in from outside is transparent)."""
        h = self.hparams
        n = x.size(0)
        scale = 1 + (2 * torch.rand(n, device=x.device) - 1) * h.zoom
        theta = torch.zeros(n, 2, 3, device=x.device)
        theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
        theta[:, :, 2] = (2 * torch.rand(n, 2, device=x.device) - 1) * h.shift
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def losses(self, x: torch.Tensor, ids: torch.Tensor, smoothing: float, retrieved: torch.Tensor | None = None):
        """The summed word cross-entropy, the attention penalty, the number of target words and the bag-of-words
        loss (0 without its head)."""
        logits, alphas, feats = self.teacher_forced(x, ids, retrieved)
        target = ids[:, 1:]
        nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), target.reshape(-1), ignore_index=0,
                              label_smoothing=smoothing, reduction="sum")
        mask = (target != 0).to(alphas.dtype)[:, :, None]
        # mean over the grid's cells (Xu et al. sum them): the same weight whatever the grid's size
        penalty = ((1 - (alphas * mask).sum(1)) ** 2).mean()
        bag = torch.zeros((), device=x.device)
        if self.words is not None:
            present = torch.zeros(len(ids), self.words.out_features, device=x.device).scatter_(1, target, 1.0)
            present[:, [0, self.eos]] = 0.0  # padding and </s> are not words of the caption
            bag = F.binary_cross_entropy_with_logits(self.words(feats.mean(1)).float(), present, reduction="sum") / len(ids)
        return nll, penalty, int(mask.sum()), bag

    def training_step(self, batch, batch_idx):
        images, ids, groups = batch["images"], batch["ids"], batch["groups"]
        if self.hparams.styles:  # a model of some drawing styles only (the cross-style view): the others' rows go
            keep = [s in self.hparams.styles for s in batch["styles"]]
            if not any(keep):
                return None
            rows = torch.tensor(keep, device=ids.device)
            images, ids, groups = images[rows], ids[rows], [g for g, k in zip(groups, keep) if k]
        retrieved = self.retrieve(images, groups)  # from the image as it is, before augmentation
        x = pixels(images)
        if self.hparams.shift or self.hparams.zoom:
            x = self.augment(x)
        nll, penalty, words, bag = self.losses(x, ids, self.hparams.label_smoothing, retrieved)
        loss = nll / words + self.hparams.attention_penalty * penalty + self.hparams.word_loss * bag
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss became {loss.item()} at step {self.global_step}")
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(ids))
        return loss

    # --- the moving average of the weights (module.ema). Validation BLEU of greedy captions jumped from epoch to
    # epoch (seed 44: 42.7, 55.5, 44.4, 53.2, 50.8, 54.0), so the best epoch was a draw; the average of the last
    # few hundred steps' weights is the smoother model (Polyak averaging).
    def averaged(self) -> dict[str, torch.Tensor]:
        """The tensors the average covers: the parameters and the batch norms' running statistics (floats), not the
        retrieval memory."""
        return {k: v for k, v in self.state_dict(keep_vars=True).items()
                if v.is_floating_point() and not k.startswith("memory_")}

    def on_train_batch_end(self, outputs, batch, batch_idx):
        decay = self.hparams.ema
        if not decay or self.trainer.global_step <= self._ema_steps:  # no step taken (a batch of other styles only)
            return
        current = self.averaged()
        if self._ema is None:
            self._ema = {k: v.detach().clone() for k, v in current.items()}
        # a short memory while the weights move fast (the warm-up of TensorFlow's ExponentialMovingAverage)
        self._ema_steps = self.trainer.global_step
        d = min(decay, (1 + self._ema_steps) / (10 + self._ema_steps))
        with torch.no_grad():
            for k, v in current.items():
                self._ema[k].lerp_(v.detach(), 1 - d)

    def swap_ema(self) -> None:
        """Exchange the model's weights with their average (the same call swaps back)."""
        if self._ema is None:
            return
        with torch.no_grad():
            for k, v in self.averaged().items():
                kept = v.detach().clone()
                v.data.copy_(self._ema[k])
                self._ema[k] = kept
        self._ema_swapped = not self._ema_swapped

    def on_train_epoch_start(self):
        if self._ema_swapped:  # training goes on with its own weights, not the average
            self.swap_ema()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        # validation leaves the average in place, so the checkpoint it chooses holds the averaged weights; the
        # other set travels beside them, for a resumed run
        if self._ema is not None:
            checkpoint["ema"] = {"weights": self._ema, "steps": self._ema_steps, "swapped": self._ema_swapped}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "ema" in checkpoint:
            ema = checkpoint["ema"]
            self._ema, self._ema_steps, self._ema_swapped = dict(ema["weights"]), ema["steps"], ema["swapped"]

    def on_validation_epoch_start(self):
        if self.hparams.ema and not self._ema_swapped:
            self.swap_ema()
        self._val: dict[str, Any] = {"nll": 0.0, "words": 0, "hyps": [], "refs": []}

    def validation_step(self, batch, batch_idx):
        images = batch["images"]
        nll, _, words, _ = self.losses(pixels(images), batch["ids"], 0.0, self.retrieve(images))
        self._val["nll"] += float(nll)
        self._val["words"] += words
        self._val["hyps"] += [self.caption_of(ids) for ids in self.greedy(batch["images"])[0]]
        self._val["refs"] += batch["captions"]
        self._val.setdefault("styles", []).extend(batch["styles"])

    def on_validation_epoch_end(self):
        import sacrebleu

        v = self._val

        def bleu(keep: list[bool] | None = None) -> float:
            hyps, refs = v["hyps"], v["refs"]
            if keep is not None:
                hyps, refs = ([x for x, k in zip(found, keep) if k] for found in (hyps, refs))
            return sacrebleu.corpus_bleu(hyps, [refs]).score if refs else 0.0

        self.log("val_loss", v["nll"] / max(1, v["words"]), prog_bar=True)
        chosen = plain = bleu()
        # the no_skin_tone view's: watched, and with select_no_skin_tone > 0 part of val_bleu, which chooses the
        # checkpoint (the full view's own BLEU is then logged as val_bleu_full)
        no_tone = bleu([not has_skin_tone(r) for r in v["refs"]])
        self.log("val_bleu_no_skin_tone", no_tone)
        if self.hparams.select_no_skin_tone and not self.hparams.styles:
            self.log("val_bleu_full", plain)
            chosen = plain + self.hparams.select_no_skin_tone * no_tone
        if self.hparams.styles:  # a model of some styles: its BLEU on the others' images (the cross-style view)
            other = bleu([s not in self.hparams.styles for s in v.get("styles", [])])
            self.log("val_bleu_other_styles", other)
            if self.hparams.select_across_styles:  # the view the model is for chooses its checkpoint
                self.log("val_bleu_all_styles", plain)
                chosen = other
        self.log("val_bleu", chosen, prog_bar=True)

    def configure_optimizers(self):
        return configure_optimizers(self, self.hparams.optimizer, self.hparams.scheduler)

    # --- decoding
    def next_log_probs(self, logits: torch.Tensor, step: int) -> torch.Tensor:
        """Log-probabilities of the next word, never padding, <unk> or <s>; never </s> first (a caption has a word),
        only </s> after max_length words (greedy and beam search end every caption the same way)."""
        logp = torch.log_softmax(logits.float(), dim=-1)
        if step >= self.hparams.max_length:
            return torch.where(torch.arange(logp.size(-1), device=logp.device) == self.eos, logp, -math.inf)
        logp[:, self.banned] = -math.inf
        if step == 0:
            logp[:, self.eos] = -math.inf
        return logp

    @torch.inference_mode()
    def greedy(self, images: torch.Tensor) -> tuple[list[list[int]], list[float], list[torch.Tensor]]:
        """Batched greedy decoding: per image the word ids (without </s>), their summed log-probability (with
        </s>'s) and the attention weights (words + 1, P)."""
        ctx, state = self.encode(images)
        n = images.size(0)
        words = torch.full((n,), self.bos, dtype=torch.long, device=images.device)
        done = torch.zeros(n, dtype=torch.bool, device=images.device)
        out, logps, alphas = [], [], []
        for step in range(self.hparams.max_length + 1):
            logits, state, alpha = self.step(words, state, ctx)
            logp = self.next_log_probs(logits, step)
            best, words = logp.max(-1)
            out.append(words)
            logps.append(torch.where(done, torch.zeros_like(best), best))
            alphas.append(alpha)
            done |= words == self.eos
            if done.all():
                break
        ids, total, weights = torch.stack(out, 1).tolist(), torch.stack(logps, 1).sum(1).tolist(), torch.stack(alphas, 1)
        rows = [row[:row.index(self.eos)] if self.eos in row else row for row in ids]
        return rows, total, [weights[i, :len(r) + 1].float().cpu() for i, r in enumerate(rows)]

    @torch.inference_mode()
    def beam_search(self, image: torch.Tensor, beam_width: int | None = None,
                    n_best: int = 1) -> list[tuple[list[int], float]]:
        """One image's `n_best` captions by beam search (rnnlab.shapes.beam): (word ids without </s>, summed
        log-probability), best first by log p / (words + 1) ** length_penalty. A hypothesis is finished when it
        emits </s> (which it must after max_length words). At width 1 it is greedy decoding."""
        ctx, state = self.encode(image[None])

        def step(last: torch.Tensor, state: Any, hyps: list[list[int]], t: int) -> tuple[torch.Tensor, Any]:
            logits, state, _ = self.step(last, state, ctx.expand(len(hyps)))
            return self.next_log_probs(logits, t), state

        alpha = self.hparams.length_penalty
        return beam_search(step, state, batch_first, self.bos, self.eos, beam_width or self.hparams.beam_width,
                           self.hparams.max_length + 1, lambda n: n ** alpha, n_best, ctx.feats.device)

    def caption_of(self, ids: list[int]) -> str:
        vocab = self.hparams.vocab
        return detokenize([vocab[i] for i in ids])

    @torch.inference_mode()
    def captions(self, image: np.ndarray, n_best: int = 3, beam_width: int | None = None) -> list[tuple[str, float]]:
        """A uint8 RGBA image (64, 64, 4) -> its `n_best` captions with their probabilities."""
        was_training = self.training
        self.eval()
        try:
            found = self.beam_search(torch.from_numpy(image).to(self.device), max(n_best, beam_width or 0) or None,
                                     n_best)
        finally:
            self.train(was_training)
        return [(self.caption_of(ids), math.exp(score)) for ids, score in found]
