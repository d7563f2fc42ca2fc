"""Summarization's data (rnnlab.tasks.summarize): the Debian index files fetched and verified,
one pair per source package, the boilerplate filter, the word window, the split by source package, SentencePiece on
train only, the lead baselines; run on the two sliced index files (tests/fixtures/make_summarize_fixtures.py)."""

import io
import json
import lzma
import re
from collections import defaultdict

import pytest
from datasets import Dataset, load_from_disk

from rnnlab import RnnlabError, tasks
from rnnlab.data import subwords
from rnnlab.tasks.summarize import baselines as B
from rnnlab.tasks.summarize import data as S

from conftest import SUMMARIZE_SLICES

VOCAB = 500


def slices(changes: dict[int, dict] | None = None) -> list[dict]:
    """SOURCES pointed at the slices (each with its own sha256); `changes`: {index: {key: value}}."""
    out = [{**source, "archive": str(path), "sha256": sha256} for source, (path, sha256) in zip(S.SOURCES,
                                                                                               SUMMARIZE_SLICES)]
    for i, change in (changes or {}).items():
        out[i].update(change)
    return out


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """pull + preprocess on the slices, as the stages will run them."""
    root = tmp_path_factory.mktemp("summarize")
    stats = S.pull_and_preprocess(root, slices(), vocab_size=VOCAB)
    return root, stats


@pytest.fixture(scope="module")
def raw(project):
    return load_from_disk(str(project[0] / "data/raw/summarize"))


@pytest.fixture(scope="module")
def processed(project):
    return load_from_disk(str(project[0] / "data/processed/summarize"))


def slice_packages() -> dict[str, set[str]]:
    """Source package -> its binary packages, read from the Packages slice by a separate, plain reading."""
    text = lzma.decompress(SUMMARIZE_SLICES[1][0].read_bytes()).decode()
    out = defaultdict(set)
    for block in text.strip().split("\n\n"):
        package = re.search(r"^Package: (\S+)$", block, re.M).group(1)
        source = re.search(r"^Source: (\S+)", block, re.M)
        out[source.group(1) if source else package].add(package)
    return out


# --- registration: the task, its stages and its fetch function
def test_the_task_is_registered_with_its_own_fetch_and_the_pinned_files():
    import yaml

    from rnnlab.pipeline.prepare import fetcher

    from conftest import ROOT

    spec = tasks.get("summarize")
    assert (spec.shape, spec.metric, spec.baselines) == ("encoder-decoder", "test_rougeL", ("lead", "lead_10"))
    assert fetcher(spec) is S.debian_index
    params = yaml.safe_load((ROOT / "params.yaml").read_text())["tasks"]["summarize"]["data"]
    assert [{k: p[k] for k in ("path", "sha256")} for p in params["source"]["packages"]] == \
        [{k: p[k] for k in ("path", "sha256")} for p in S.SOURCES]


# --- pairs
def test_one_pair_per_source_package_from_the_rule(raw):
    binaries = slice_packages()
    assert sorted(raw["source"]) == sorted(binaries) and len(raw) == len(set(raw["source"])) == 303
    for row in raw:
        names = binaries[row["source"]]
        expected = row["source"] if row["source"] in names else min(names, key=lambda n: (len(n), n))
        assert (row["package"], row["binaries"]) == (expected, len(names)), row["source"]
    rows = {r["source"]: r for r in raw}
    assert rows["aalib"]["package"] == "libaa1"  # no binary is named aalib: the shortest name
    # the source-named binary wins even where another name is shorter
    assert any(r["package"] == r["source"] and min(map(len, binaries[r["source"]])) < len(r["source"]) for r in raw)


def test_document_and_summary_come_from_the_description(raw):
    row = next(r for r in raw if r["source"] == "0xffff")
    assert row["summary"] == "Open Free Fiasco Firmware Flasher"
    paragraphs = row["document"].split("\n\n")
    assert len(paragraphs) == 3  # the " ." lines
    assert paragraphs[0].startswith("The ‘Open Free Fiasco Firmware Flasher’ aka 0xFFFF utility implements a free "
                                    "userspace handler")  # wrapped lines joined
    assert paragraphs[1].split("\n")[:3] == [  # verbatim (indented) lines stay lines, leading spaces stripped
        "Supported operations currently include, but are not limited to:",
        "* generating and unpacking FIASCO images on local device", "* editing Maemo firmware packages"]
    assert paragraphs[2] == "Supported are the Nokia 770, N800, N810, N810w, N900, N950 and N9."
    assert not any(line.startswith(" ") or line == "." for r in raw for line in r["document"].split("\n"))


def test_texts_of_packages_that_packages_xz_does_not_list_are_ignored(raw):
    text = lzma.decompress(SUMMARIZE_SLICES[0][0].read_bytes()).decode()
    described = set(re.findall(r"^Package: (\S+)$", text, re.M))
    listed = {p for names in slice_packages().values() for p in names}
    assert described - listed  # the slice holds such texts
    assert not (described - listed) & set(raw["package"])


# --- filters
def test_templated_boilerplate_is_dropped(raw, processed, project):
    kept = {s for split in processed.values() for s in split["source"]}
    debcargo = "This package contains the source for the Rust {} crate, packaged by debcargo for use with cargo and " \
               "dh-cargo."
    rust = [r["source"] for r in raw if r["document"] in {debcargo.format(r["source"].removeprefix("rust-")),
                                                          debcargo.format(r["source"][5:].replace("-", "_"))}]
    assert len(rust) >= 6 and not set(rust) & kept
    # a crate whose description says more than the template keeps its pair
    assert {r["source"] for r in raw if "packaged by debcargo" in r["document"]} - set(rust) <= kept
    node = [r["source"] for r in raw if r["document"] == "Node.js is an event-based server-side JavaScript engine."]
    assert len(node) >= 3 and not set(node) & kept
    stats = project[1]
    assert stats["dropped"]["boilerplate"] == len(rust) + len(node)
    assert stats["dropped"]["templates"][0]["pairs"] == len(rust)
    # a text shared by exactly two packages (names masked) stays
    templates = defaultdict(list)
    for r in raw:
        templates[S.template(r["document"], r["source"], r["package"])].append(r["source"])
    twins = [sources for sources in templates.values() if len(sources) == 2]
    assert twins and all(set(sources) <= kept for sources in twins if all(
        10 <= S.words(r["document"]) <= 400 for r in raw if r["source"] in sources))


def test_masking_covers_the_names_their_variants_and_digits():
    text = "The Rust serde_json crate (SERDE-JSON 1.0.2) is not serde_json_ext."
    assert S.template(text, "rust-serde-json", "librust-serde-json-dev") == "The Rust <name> crate (<name> 0.0.0) is not " \
                                                                             "serde_json_ext."


def test_select_drops_a_template_repeated_more_than_max_repeats():
    doc = "This package contains the source for the Rust {} crate, packaged by debcargo, version 1.{}"
    rows = {"source": [f"rust-c{i}" for i in range(3)] + ["ab", "cd"],
            "package": [f"librust-c{i}-dev" for i in range(3)] + ["ab", "cd"],
            "document": [doc.format(f"c{i}", i) for i in range(3)] + [doc.format("ab", 7), doc.format("cd", 8)]}
    ds = Dataset.from_dict(rows)
    keep, dropped = S.select(ds, 1, 400, max_repeats=2)
    assert keep == [] and dropped["boilerplate"] == 5  # five pairs share one template
    keep, dropped = S.select(ds.select([0, 1, 3]), 1, 400, max_repeats=2)
    assert keep == [] and dropped["boilerplate"] == 3
    keep, _ = S.select(ds.select([0, 3]), 1, 400, max_repeats=2)
    assert keep == [0, 1]  # twice is not boilerplate
    keep, _ = S.select(ds.select([0, 1, 3]), 1, 400, max_repeats=3)
    assert keep == [0, 1, 2]


def test_the_word_window(raw, processed, project):
    counts = [S.words(d) for split in processed.values() for d in split["document"]]
    # the slice holds the edges: 9 and 10 words; 397 (bookworm has no description of 398-400 words) and 401
    assert min(counts) == 10 and max(counts) == 397
    lengths = {r["source"]: S.words(r["document"]) for r in raw}
    kept = {s for split in processed.values() for s in split["source"]}
    assert 9 in lengths.values() and 401 in lengths.values()
    assert not any(lengths[s] < 10 or lengths[s] > 400 for s in kept)
    stats = project[1]
    assert stats["raw_pairs"] == len(raw) == stats["pairs"] + sum(stats["dropped"][k] for k in ("boilerplate", "short",
                                                                                                  "long"))
    assert stats["dropped"]["long"] >= 1 and stats["dropped"]["short"] >= 1
    stats = S.preprocess(project[0] / "data/raw/summarize", project[0] / "narrow", vocab_size=VOCAB, min_words=20,
                         max_words=100)
    narrow = load_from_disk(str(project[0] / "narrow"))
    assert all(20 <= S.words(d) <= 100 for split in narrow.values() for d in split["document"])
    assert stats["pairs"] < project[1]["pairs"]


# --- split
def test_split_is_by_source_package_and_disjoint(processed, project):
    sources = {split: set(part["source"]) for split, part in processed.items()}
    assert set(processed) == {"train", "validation", "test"}
    assert not sources["train"] & sources["validation"] and not sources["train"] & sources["test"]
    assert not sources["validation"] & sources["test"]
    assert all(len(part) == len(sources[split]) for split, part in processed.items())  # one pair per source
    for split, names in sources.items():
        assert all(S.split_of(name, 0.05, 0.05) == split for name in names)
    assert project[1]["rows"] == {split: len(part) for split, part in processed.items()}
    assert len(processed["validation"]) >= 5 and len(processed["test"]) >= 5


def test_split_of_is_stable_and_near_its_fractions():
    # the same name, the same split: on any machine, in any order, for any subset (values of the full data's splits)
    names = ("0ad", "vim", "linux", "bash", "4ti2", "acme-tiny", "evolver")
    assert [S.split_of(n, 0.05, 0.05) for n in names] == ["train", "validation", "train", "train", "test", "test",
                                                          "test"]
    names = [f"package-{i}" for i in range(20000)]
    share = {s: sum(S.split_of(n, 0.05, 0.05) == s for n in names) / len(names) for s in ("validation", "test")}
    assert all(0.045 < v < 0.055 for v in share.values()), share
    # a larger held-out share only moves sources out of train
    assert all(S.split_of(n, 0.1, 0.1) != "train" for n in names if S.split_of(n, 0.05, 0.05) != "train")


def test_preprocess_is_deterministic(project, tmp_path):
    root = project[0]
    again = S.preprocess(root / "data/raw/summarize", tmp_path / "again", vocab_size=VOCAB)
    assert again == json.loads((root / "data/processed/summarize/stats.json").read_text())
    assert (tmp_path / "again/spm.model").read_bytes() == (root / "data/processed/summarize/spm.model").read_bytes()
    first, second = load_from_disk(str(root / "data/processed/summarize")), load_from_disk(str(tmp_path / "again"))
    for split in first:
        assert first[split].to_dict() == second[split].to_dict()


# --- subwords
def test_the_subword_model_is_trained_on_train_only(project, processed, tmp_path, monkeypatch):
    seen = []
    real = subwords.train_sentencepiece

    def spy(texts, vocab_size, **kwargs):
        seen.extend(texts)
        return real(texts, vocab_size, **kwargs)

    monkeypatch.setattr(subwords, "train_sentencepiece", spy)
    S.preprocess(project[0] / "data/raw/summarize", tmp_path / "spy", vocab_size=VOCAB)
    train = processed["train"]
    assert seen == list(train["document"]) + list(train["summary"])
    held_out = {t for split in ("validation", "test") for col in ("document", "summary") for t in processed[split][col]}
    assert not held_out & set(seen)
    # one vocabulary for both sides, and the ids decode to the texts
    sp = subwords.load_sentencepiece((project[0] / "data/processed/summarize/spm.model").read_bytes())
    assert sp.get_piece_size() == VOCAB == project[1]["vocab_size"]
    row = processed["test"][0]
    assert sp.decode(row["tgt"]) == row["summary"]
    assert sp.decode(row["src"]) == " ".join(row["document"].split())  # line breaks become spaces


def test_bad_parameters_are_named(project, tmp_path):
    raw_dir = project[0] / "data/raw/summarize"
    for kwargs, message in (({"vocab_size": 0}, "vocab_size must be a positive integer"),
                            ({"validation": 0.6, "test": 0.5}, "leaves nothing for train"),
                            ({"test": 1.5}, r"split.test must be a fraction"),
                            ({"min_words": 50, "max_words": 20}, "min_words 50 > max_words 20")):
        with pytest.raises(RnnlabError, match=message):
            S.preprocess(raw_dir, tmp_path / "bad", **kwargs)
    with pytest.raises(RnnlabError, match="cannot read the raw data"):
        S.preprocess(tmp_path / "nowhere", tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


# --- fetching and bad files
def test_a_checksum_mismatch_names_the_file(tmp_path):
    with pytest.raises(RnnlabError, match=r"checksum mismatch for .*bookworm-Packages-slice\.xz \(Packages\.xz\).*"
                                          r"dvc pull data/processed/summarize"):
        S.pull_and_preprocess(tmp_path, slices({1: {"sha256": "0" * 64}}))
    assert not (tmp_path / "data").exists()


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(RnnlabError, match=r"Translation-en\.xz: archive not found: .*nosuch\.xz"):
        S.pull_and_preprocess(tmp_path, slices({0: {"archive": str(tmp_path / "nosuch.xz")}}))


def test_a_corrupt_file_is_named(tmp_path):
    cut = tmp_path / "cut.xz"
    cut.write_bytes(SUMMARIZE_SLICES[0][0].read_bytes()[:20000])
    with pytest.raises(RnnlabError, match=r"cut\.xz is not a readable \.xz file"):
        S.read_archive([cut, SUMMARIZE_SLICES[1][0]])
    latin = tmp_path / "latin.xz"
    latin.write_bytes(lzma.compress("Package: caf\xe9\nDescription-md5: 0\nDescription-en: x\n".encode("latin-1")))
    with pytest.raises(RnnlabError, match=r"latin\.xz is not UTF-8 text"):
        S.read_archive([latin, SUMMARIZE_SLICES[1][0]])
    # the two files in the wrong order: Packages.xz has no Description-en
    with pytest.raises(RnnlabError, match=r"Packages-slice\.xz: paragraph 1 \(\S+\) has no Description-en field"):
        S.read_archive([SUMMARIZE_SLICES[1][0], SUMMARIZE_SLICES[0][0]])
    with pytest.raises(RnnlabError, match="reads two files"):
        S.read_archive([SUMMARIZE_SLICES[0][0]])


def test_download_verifies_before_caching_and_falls_back_to_by_hash(tmp_path, monkeypatch):
    good = SUMMARIZE_SLICES[1][0].read_bytes()
    path, sha256 = S.SOURCES[1]["path"], SUMMARIZE_SLICES[1][1]
    monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path / "cache"))
    served: dict[str, bytes] = {}
    urls = []

    def fake_urlopen(url, timeout=None):
        urls.append(url)
        if url not in served:
            raise S.urllib.error.HTTPError(url, 404, "Not Found", None, None)
        return io.BytesIO(served[url])

    monkeypatch.setattr(S.urllib.request, "urlopen", fake_urlopen)
    live, by_hash = S.index_urls(path, sha256)[:2]
    assert live == "https://deb.debian.org/debian/dists/bookworm/main/binary-amd64/Packages.xz"
    assert by_hash == f"https://deb.debian.org/debian/dists/bookworm/main/binary-amd64/by-hash/SHA256/{sha256}"
    with pytest.raises(RnnlabError, match=r"cannot download dists/bookworm/main/binary-amd64/Packages\.xz: https://"):
        S.debian_index(path, sha256)  # no answer anywhere: the network, not the pin
    # a later point release at the live path, nothing by hash: one line that says what to do
    served[live] = b"a later release"
    with pytest.raises(RnnlabError) as e:
        S.debian_index(path, sha256)
    message = str(e.value)
    assert "\n" not in message and path in message and "DVC remote" in message and "dvc pull" in message
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]  # nothing unverified was kept
    # the pinned file by its hash
    served[by_hash] = good
    got = S.debian_index(path, sha256)
    assert got == tmp_path / "cache/debian" / path and got.read_bytes() == good
    count = len(urls)
    assert S.debian_index(path, sha256) == got and len(urls) == count  # cached: no second download
    with pytest.raises(RnnlabError, match="not a path under the Debian archive's dists/"):
        S.debian_index("dists/../../etc/passwd", sha256)


# --- baselines
@pytest.mark.parametrize("document, expected", [
    ("Foo is a tool. It does things.", "Foo is a tool."),
    ("Tools, e.g. grep and sed. More here.", "Tools, e.g. grep and sed."),
    ("Made in the U.S. by people. Next.", "Made in the U.S. by people."),
    ("Version 2. Then more.", "Version 2."),
    ("No full stop here\n* a list line. And more", "No full stop here"),
    ("Ends without a stop", "Ends without a stop"),
    ("Really? Yes.", "Really?"),
])
def test_first_sentence(document, expected):
    assert B.first_sentence(document) == expected


def test_lead_baselines_and_their_scores(project):
    assert B.lead("One two three four five six seven eight nine ten eleven twelve. Next.", 10) == \
        "One two three four five six seven eight nine ten"
    perfect = B.score(["a text manager for the console"], ["a text manager for the console"])
    assert perfect == {"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0, "bleu": 100.0}
    stemmed = B.score(["managing texts"], ["manages text"])
    assert stemmed["rouge1"] == 100.0 and stemmed["bleu"] < 100  # ROUGE stems, BLEU does not
    assert B.score(["nothing shared"], ["entirely different"])["rouge1"] == 0.0
    scores = B.lead_baselines(project[0] / "data/processed/summarize")
    assert set(scores) == {"lead", "lead_10"}
    for values in scores.values():
        assert set(values) == {"rouge1", "rouge2", "rougeL", "bleu"}
        assert 5 < values["rouge1"] < 80 and values["rouge2"] <= values["rouge1"]
    with pytest.raises(RnnlabError, match="cannot read the nosuch split"):
        B.lead_baselines(project[0] / "data/processed/summarize", "nosuch")
