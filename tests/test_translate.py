"""English -> Spanish (task=translate): the Debian package fetch and extraction, verse parsing and
normalisation, the split by book, SentencePiece on train only, decoding (beam width 1 is greedy, decoding
stops at EOS or the length limit), training and evaluation from the real conf/, and the CLI."""

import io
import json
import tarfile

import pytest
import torch
from datasets import load_from_disk

from rnnlab import RnnlabError
from rnnlab.cli import main
from rnnlab.core import sources
from rnnlab.core.trainer import make_trainer
from rnnlab.data import subwords
from rnnlab.pipeline.train import build, train
from rnnlab.shapes.seq2seq import Seq2SeqTranslator
from rnnlab.tasks.translate import data as T

from conftest import compose, run_task


# --- .deb fetch and extraction
def make_deb(path, members: dict[str, bytes], links: dict[str, str] | None = None):
    """A minimal .deb: an ar archive of debian-binary, control.tar.xz and data.tar.xz with `members`."""
    def tar_xz(files, links=None):
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w:xz") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            for name, target in (links or {}).items():
                info = tarfile.TarInfo(name)
                info.type, info.linkname = tarfile.SYMTYPE, target
                tar.addfile(info)
        return raw.getvalue()

    out = [b"!<arch>\n"]
    for name, data in {"debian-binary": b"2.0\n", "control.tar.xz": tar_xz({"./control": b"Package: x\n"}),
                       "data.tar.xz": tar_xz(members, links)}.items():
        out.append(f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode())
        out.append(data + (b"\n" if len(data) % 2 else b""))
    path.write_bytes(b"".join(out))
    return path


def test_extract_deb_writes_the_data_members(tmp_path):
    deb = make_deb(tmp_path / "x.deb", {"./usr/share/sword/a.txt": b"alpha", "./usr/share/doc/x/copyright": b"c"})
    written = sources.extract_deb(deb, tmp_path / "out", prefix="usr/share/sword/")
    assert [p.relative_to(tmp_path / "out").as_posix() for p in written] == ["usr/share/sword/a.txt"]
    assert (tmp_path / "out/usr/share/sword/a.txt").read_bytes() == b"alpha"


@pytest.mark.parametrize("members, links", [
    ({"./../evil.txt": b"x"}, None),
    ({"/tmp/evil-absolute.txt": b"x"}, None),
    ({"./usr/../../evil.txt": b"x"}, None),
    ({}, {"./usr/share/sword/link": "../../../../etc/passwd"}),
])
def test_extract_deb_refuses_paths_that_leave_the_target(tmp_path, members, links):
    deb = make_deb(tmp_path / "bad.deb", members, links)
    target = tmp_path / "deep" / "out"
    with pytest.raises(RnnlabError, match="outside|leaves"):
        sources.extract_deb(deb, target)
    assert not (tmp_path / "deep" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()


def test_not_a_deb_is_named(tmp_path):
    (tmp_path / "x.deb").write_bytes(b"PK\x03\x04 not an ar archive")
    with pytest.raises(RnnlabError, match="not a Debian package"):
        sources.extract_deb(tmp_path / "x.deb", tmp_path / "out")


def test_debian_package_checks_sha256_before_anything_reads_it(tmp_path, monkeypatch):
    deb = make_deb(tmp_path / "x.deb", {"./usr/share/sword/a.txt": b"alpha"})
    good = sources.sha256_of(deb)
    assert sources.debian_package("x", "1.0", good, archive=str(deb)) == deb
    with pytest.raises(RnnlabError, match="checksum mismatch"):
        sources.debian_package("x", "1.0", "0" * 64, archive=str(deb))
    # a download: verified in a temporary folder, and only a verified file enters the cache
    monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path / "cache"))
    urls = []

    def fake_urlopen(url, timeout=None):
        urls.append(url)
        return io.BytesIO(deb.read_bytes())

    monkeypatch.setattr(sources.urllib.request, "urlopen", fake_urlopen)
    with pytest.raises(RnnlabError, match="checksum mismatch"):
        sources.debian_package("sword-text-x", "1.0-1", "f" * 64)
    assert not list((tmp_path / "cache").rglob("*.deb"))
    path = sources.debian_package("sword-text-x", "1.0-1", good)
    assert urls[-1] == "https://deb.debian.org/debian/pool/main/s/sword-text-x/sword-text-x_1.0-1_all.deb"
    assert path.parent == tmp_path / "cache" / "debian" and sources.sha256_of(path) == good
    sources.debian_package("sword-text-x", "1.0-1", good)  # cached: no second download
    assert len(urls) == 2


# --- parsing and normalisation
def test_clean_strips_markup_notes_and_stray_codes():
    kjv = ('In the <w lemma="strong:H7225">beginning</w> <transChange type="added">is</transChange>.'
           '<note placement="foot"><reference type="annotateRef">1.4 </reference>Heb. between</note> '
           '<div eID="gen3" type="x-p"/> the \\nd LORD ¶ said')
    assert T.clean(kjv) == "In the beginning is. the LORD said"
    title = '<title><foreign>ב BETH.</foreign></title> Wherewithal <title canonical="true">A Psalm</title>'
    assert T.clean(title) == "Wherewithal A Psalm"


@pytest.mark.parametrize("text, verse, expected", [
    ("EN el principio crió Dios", 1, "En el principio crió Dios"),
    ("¡OH Jehová, cuánto", 1, "¡Oh Jehová, cuánto"),
    ("Y FUERON acabados los cielos", 1, "Y fueron acabados los cielos"),
    ("Y JEHOVÁ dijo á Noé", 1, "Y Jehová dijo á Noé"),
    ("HUBO en los días de Herodes", 5, "Hubo en los días de Herodes"),
    ("JAH, si mirares á los pecados", 3, "JAH, si mirares á los pecados"),
    ("TEKEL: Pesado has sido", 27, "TEKEL: Pesado has sido"),
])
def test_spanish_chapter_openings_are_normalised(text, verse, expected):
    casing = T.usual_casing(["Y dijo que fueron", "y fueron", "Y vino Jehová", "Dijo Jehová"])
    assert T.normalise_spanish(text, "Gen", 1, verse, casing) == expected


def test_psalm_119_letters_are_dropped():
    assert T.normalise_spanish("GIMEL. Haz bien á tu siervo", "Ps", 119, 17) == "Haz bien á tu siervo"
    assert T.normalise_spanish("BETH ¿Con qué limpiará", "Ps", 119, 9) == "¿Con qué limpiará"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """pull + preprocess translate by the real stages, from the two sliced Debian packages."""
    root = tmp_path_factory.mktemp("translate")
    run_task(root, "translate")
    return root


def test_pull_reads_aligned_verses_from_the_slices(project):
    raw = load_from_disk(str(project / "data/raw/translate"))
    assert raw.column_names == ["book", "chapter", "verse", "en", "es"]
    rows = {(r["book"], r["chapter"], r["verse"]): r for r in raw}
    assert rows["Gen", 1, 1]["en"] == "In the beginning God created the heaven and the earth."
    assert rows["Gen", 1, 1]["es"] == "En el principio crió Dios los cielos y la tierra."
    assert rows["Gen", 2, 1]["es"].startswith("Y fueron acabados")
    assert rows["Ps", 119, 9]["es"].startswith("¿Con qué limpiará el joven")
    assert not any("<" in r["en"] + r["es"] or not r["en"] or not r["es"] for r in raw)
    assert len(raw) == 162


def test_split_is_by_book_and_sentencepiece_sees_train_only(project):
    processed = project / "data/processed/translate"
    splits = load_from_disk(str(processed))
    books = {s: set(splits[s]["book"]) for s in T.SPLITS}
    assert books["validation"] == {"Obad"} and books["test"] == {"Phlm"}
    assert not books["train"] & (books["validation"] | books["test"])
    stats = json.loads((processed / "stats.json").read_text())
    assert stats["rows"] == {s: len(splits[s]) for s in T.SPLITS}
    # the saved model is exactly the one trained on the train books' texts (before the length limit drops
    # any): deterministic, and train only
    raw = load_from_disk(str(project / "data/raw/translate"))
    train_raw = raw.select(T.split_by_book(raw["book"], ["Obad"], ["Phlm"])["train"])
    proto = subwords.train_sentencepiece(list(train_raw["en"]) + list(train_raw["es"]), 300)
    assert (processed / "spm_en.model").read_bytes() == proto == (processed / "spm_es.model").read_bytes()
    assert proto != subwords.train_sentencepiece(list(raw["en"]) + list(raw["es"]), 300)
    train = splits["train"]
    sp = subwords.load_sentencepiece(proto)
    assert list(train["src"][0]) == sp.encode(train["en"][0]) and sp.decode(list(train["tgt"][0])) == train["es"][0]


def test_split_errors_are_named():
    with pytest.raises(RnnlabError, match="not in the data"):
        T.split_by_book(["Gen", "Exod"], ["Lev"], [])
    with pytest.raises(RnnlabError, match="in validation and test"):
        T.split_by_book(["Gen", "Exod", "Lev"], ["Exod"], ["Exod"])
    with pytest.raises(RnnlabError, match="no book for train"):
        T.split_by_book(["Gen", "Exod"], ["Gen"], ["Exod"])


# --- decoding
def tiny_model(**kwargs) -> Seq2SeqTranslator:
    torch.manual_seed(0)
    return Seq2SeqTranslator(src_vocab_size=50, tgt_vocab_size=40, embedding_dim=8, hidden_size=8, decoder_size=12,
                             attention_dim=8, dropout=0.0, max_decode_len=30, **kwargs).eval()


@pytest.mark.parametrize("cell, attention", [("gru", "general"), ("lstm", "additive")])
def test_beam_width_1_is_greedy(cell, attention):
    model = tiny_model(cell=cell, attention=attention)
    with torch.no_grad():
        model.out.bias[subwords.EOS] += 2.0  # some sentences end before the length limit, some do not
    sources = [[5, 6, 7], [9, 4, 10, 11, 12, 30], [40], list(range(4, 20))]
    src, lengths, _ = subwords.collate([(s, []) for s in sources])
    greedy = model.greedy(src, lengths)
    assert [model.beam_search(s, beam_width=1) for s in sources] == greedy
    wider = [model.beam_search(s, beam_width=4) for s in sources]
    assert all(len(w) <= model.max_length(len(s)) for w, s in zip(wider, sources))


def test_decoding_stops_at_eos_and_at_the_length_limit():
    model = tiny_model()
    src, lengths, _ = subwords.collate([([5, 6, 7], []), (list(range(4, 24)), [])])
    with torch.no_grad():
        model.out.bias[subwords.EOS] = 100.0  # EOS first: empty output
    assert model.greedy(src, lengths) == [[], []] and model.beam_search([5, 6, 7], 3) == []
    with torch.no_grad():
        model.out.bias[subwords.EOS] = -100.0  # never EOS: cut at min(max_decode_len, 2 * source + 10)
    limits = [model.max_length(3), model.max_length(20)]
    assert limits == [16, 30]
    assert [len(o) for o in model.greedy(src, lengths)] == limits
    assert len(model.beam_search([5, 6, 7], 3)) == 16


def test_padding_does_not_change_greedy_output():
    model = tiny_model()
    alone = model.greedy(*subwords.collate([([5, 6, 7], [])])[:2])
    batched = model.greedy(*subwords.collate([([5, 6, 7], []), (list(range(4, 30)), [])])[:2])
    assert batched[0] == alone[0]


# --- training, evaluation, CLI
def test_fast_dev_run_from_the_real_config(project, tmp_path):
    from hydra.utils import instantiate

    cfg = compose("task=translate", "experiment=translate", f"paths.data_dir={project}/data",
                  f"paths.output_dir={tmp_path}", "trainer.fast_dev_run=true")
    dm = instantiate(cfg.data)
    model = build(cfg, dm)["model"]
    assert isinstance(model, Seq2SeqTranslator) and model.hparams.hidden_size == 128
    trainer = make_trainer(cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False,
                           enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=dm)
    assert trainer.fast_dev_run and torch.isfinite(trainer.callback_metrics["train_loss"])


@pytest.fixture(scope="module")
def trained(project):
    out = project / "out"
    train(compose("task=translate", "experiment=smoke_translate", f"paths.data_dir={project}/data",
                  f"paths.output_dir={out}", f"logger.tracking_uri=sqlite:///{project}/mlflow.db"))
    return out


def test_train_and_evaluate_write_checkpoint_metrics_and_reports(trained):
    assert {p.name for p in (trained / "model").iterdir()} == {"model.ckpt", "run.json"}
    scores = json.loads((trained / "metrics" / "translate.json").read_text())
    assert {"bleu", "chrf", "bleu_greedy", "chrf_greedy", "verses"} <= set(scores["test"])
    assert {"bleu", "chrf", "bleu_greedy"} <= set(scores["val"])
    assert {"bleu", "chrf"} <= set(scores["baseline"]["copy_source"])
    assert scores["test"]["verses"] == 8 and scores["test"]["verses_in_split"] == 25
    assert set(scores["test"]["all_verses"]) == {"bleu_greedy", "chrf_greedy"}
    curves = (trained / "metrics" / "translate_curves.csv").read_text()
    assert curves.startswith("step,train_loss,val_loss,val_ppl\n")
    samples = (trained / "reports" / "translate_samples.txt").read_text()
    assert "Phlm 1:1" in samples and "reference:" in samples
    assert (trained / "reports" / "figures" / "translate_attention.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_translates_with_a_checkpoint(trained, capsys):
    ckpt = str(trained / "model" / "model.ckpt")
    main(["translate", "In the beginning God created the heaven and the earth.", "--checkpoint", ckpt, "--beam", "1"])
    out = capsys.readouterr().out
    assert out.endswith("\n") and out.count("\n") == 1


@pytest.mark.parametrize("argv, message", [
    (["translate", "   "], "empty sentence"),
    (["translate", "word " * 400], "sentence too long"),
    (["translate", "Hello", "--beam", "0"], "--beam must be >= 1"),
    (["translate", "Hello", "--checkpoint", "missing.ckpt"], "checkpoint not found"),
])
def test_cli_errors_are_one_line_with_exit_2(trained, argv, message, capsys):
    if "--checkpoint" not in argv:
        argv = [*argv, "--checkpoint", str(trained / "model" / "model.ckpt")]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and err.count("\n") == 1


def test_pyfunc_model_translates_like_the_checkpoint(trained, tmp_path):
    import mlflow
    from mlflow.exceptions import MlflowException

    from rnnlab.serving.pyfunc import save_pyfunc
    from rnnlab.tasks import load_checkpoint

    ckpt = trained / "model" / "model.ckpt"
    model = mlflow.pyfunc.load_model(str(save_pyfunc("translate", ckpt, tmp_path / "translate")))
    net = load_checkpoint(ckpt, task="translate")
    sentences = ["In the beginning God created the heaven and the earth.", "And the earth was without form."]
    out = model.predict(sentences, params={"beam_width": 2})
    assert list(out["translation"]) == [net.translate(s, 2) for s in sentences]
    assert model.predict(sentences[:1])["translation"][0] == net.translate(sentences[0])
    with pytest.raises(MlflowException, match="empty sentence"):
        model.predict(["  "])
