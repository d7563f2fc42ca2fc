"""Emoji images -> their Unicode names (image captioning): the data side. No model and no data module yet.

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
import logging
import re
import statistics
import tarfile
import tempfile
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, Features, Value, load_from_disk
from datasets import Sequence as ListOf

from rnnlab import RnnlabError
from rnnlab.data.splits import SPLITS, load_raw, save_splits
from rnnlab.data.vocab import TokenVocab

log = logging.getLogger(__name__)

# the pinned archives, as params.yaml's tasks.caption.data.source.packages will list them once the task is
# registered (with its model); `fetch` names the function that fetches each (see fetch below)
SOURCES: tuple[dict[str, str], ...] = (
    {"fetch": "npm_tarball", "package": "emoji-datasource-google", "version": "16.0.0",
     "sha256": "fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438"},
    {"fetch": "npm_tarball", "package": "emoji-datasource-twitter", "version": "16.0.0",
     "sha256": "f64a530c63bca463bd8317fdc4615ce63a53a0c65018e4ce2d848aaba7a28877"},
    {"fetch": "debian_package", "package": "unicode-data", "version": "15.0.0-1",
     "sha256": "5efef23bbb1c6a133ecbdd63a2cfa07159ccacf5466a49e2426101c5ecd691fc"},
)


def fetch(source: dict[str, str], **replace: str) -> Path:
    """One of SOURCES fetched and verified by the function its `fetch` names: npm_tarball from .npm (until the
    task is registered), the others from rnnlab.core.sources; `replace` overrides its keys (sha256, archive)."""
    from rnnlab.core import sources
    from rnnlab.tasks.caption import npm

    function = getattr(npm if source["fetch"] == "npm_tarball" else sources, source["fetch"])
    return function(**{**{k: v for k, v in source.items() if k != "fetch"}, **replace})


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
