"""Image captioning (task=caption), the model and its use: the captioner's decoding (beam 1 is greedy, teacher
forcing and step-by-step decoding agree), its augmentation (no flips), the Google-only twin that the cross-style
view scores, the length buckets; the five stages on the fixture slices (pull, preprocess, train, evaluate with both
baselines and the figures, register), `rnnlab caption IMAGE`, the pyfunc model on base64 PNG and JPEG, and bad
images: one line, exit code 2, nothing written."""

import base64
import io
import json

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from rnnlab import RnnlabError
from rnnlab.cli import main
from rnnlab.pipeline.evaluate import run_evaluate
from rnnlab.pipeline.register import run_register
from rnnlab.pipeline.train import train
from rnnlab.tasks.caption import data as C
from rnnlab.tasks.caption import serve as S

from conftest import compose, run_task

VOCAB = ["<pad>", "<unk>", "face", "red", "apple", ":", "skin", "tone", "light", "dark", C.BOS, C.EOS]


def tiny(**changes) -> C.Captioner:
    """A small captioner; with `neighbours`, its memory is five random images, captioned and grouped as MEMORY."""
    torch.manual_seed(0)
    kwargs = dict(vocab=VOCAB, hidden_size=16, embedding_dim=8, channels=[4, 8], convs=[1, 1], attention_dim=8,
                  max_length=6, dropout=0.0, memory_dim=8)
    model = C.Captioner(**{**kwargs, **changes}).eval()
    if model.hparams.neighbours:
        model.remember(random_images(5, seed=1), [ids for ids, _ in MEMORY], [group for _, group in MEMORY])
    return model


def random_images(n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, C.SIZE, C.SIZE, 4), generator=gen, dtype=torch.uint8)


EOS = VOCAB.index(C.EOS)
# the memory of tiny(neighbours=...): `words </s>` ids and the group of each of its five images
MEMORY = [([3, 4, EOS], "apple"), ([2, EOS], "face"), ([2, 5, 8, 6, 7, EOS], "face"), ([3, EOS], "red"),
          ([4, 5, 9, 6, 7, EOS], "apple")]


# --- the model


@pytest.mark.parametrize("cell, neighbours", [("lstm", 0), ("gru", 0), ("lstm", 2), ("gru", 3)])
def test_beam_1_is_greedy(cell, neighbours):
    model = tiny(cell=cell, neighbours=neighbours)
    images = random_images(6)
    ids, logps, weights = model.greedy(images)
    for image, greedy_ids, greedy_logp in zip(images, ids, logps):
        (beam_ids, beam_logp), = model.beam_search(image, beam_width=1)
        assert beam_ids == greedy_ids and beam_logp == pytest.approx(greedy_logp, abs=1e-4)
    # an attention map over the 8x8 grid per word and </s>, each a distribution
    assert [w.shape for w in weights] == [(len(i) + 1, 64) for i in ids]
    assert torch.allclose(weights[0].sum(-1), torch.ones(len(ids[0]) + 1), atol=1e-5)


@pytest.mark.parametrize("neighbours", [0, 2])
def test_beam_search_returns_n_best_distinct_captions_ranked_and_never_special_words(neighbours):
    model = tiny(neighbours=neighbours)
    found = model.beam_search(random_images(1)[0], beam_width=4, n_best=4)
    assert 1 <= len(found) <= 4 and len({tuple(ids) for ids, _ in found}) == len(found)
    assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)  # length_penalty 0: by log p
    banned = {VOCAB.index(w) for w in ("<pad>", "<unk>", C.BOS, C.EOS)}
    assert all(ids and not banned & set(ids) and len(ids) <= 7 for ids, _ in found)
    captions = model.captions(random_images(1)[0].numpy(), n_best=3)
    assert all(isinstance(text, str) and 0 < p <= 1 for text, p in captions)


@pytest.mark.parametrize("neighbours", [0, 2])
def test_teacher_forcing_and_stepwise_decoding_agree(neighbours):
    model = tiny(neighbours=neighbours)
    images = random_images(3)
    ids = torch.tensor([[VOCAB.index(C.BOS), 3, 4, VOCAB.index(C.EOS)]] * 3)
    logps, alphas = model(C.pixels(images), ids, model.retrieve(images))
    ctx, state = model.encode(images)
    for t in range(ids.size(1) - 1):
        step, state, alpha = model.step(ids[:, t], state, ctx)
        assert torch.allclose(step, logps[:, t], atol=1e-5) and torch.allclose(alpha, alphas[:, t], atol=1e-6)
    # with or without copying, each step is a distribution over the vocabulary
    assert torch.allclose(logps.exp().sum(-1), torch.ones(3, 3), atol=1e-5)


def test_retrieval_finds_the_nearest_memory_images_but_never_the_own_group_in_training():
    model = tiny(neighbours=2)
    memory = random_images(5, seed=1)
    retrieved = model.retrieve(memory)  # each memory image is its own nearest
    assert [row[0][row[0] != 0].tolist() for row in retrieved] == [ids for ids, _ in MEMORY]
    excluded = model.retrieve(memory, groups=[group for _, group in MEMORY])
    for row, (_, group) in zip(excluded, MEMORY):
        found = [[i for i in ids.tolist() if i] for ids in row]
        assert all(ids != own for ids in found for own, g in MEMORY if g == group)
    # the same rows whatever the batch: each caption's padding is trimmed to the batch's longest only
    assert torch.equal(model.retrieve(memory[3:4])[0, :, :2], retrieved[3, :, :2])


def test_copying_puts_the_attended_words_probability_on_their_ids():
    """With the gate fully on copying, the next word's distribution is the attention over the retrieved words: only
    words of the neighbours' captions can come out."""
    model = tiny(neighbours=2)
    with torch.no_grad():
        model.copy.weight.zero_()
        model.copy.bias.fill_(-50.0)  # p(generate) = sigmoid(-50): copy only
    images = random_images(2)
    ctx, state = model.encode(images)
    logp, _, _ = model.step(torch.full((2,), VOCAB.index(C.BOS)), state, ctx)
    for row, ids in zip(logp.exp(), ctx.word_ids):
        words = set(ids.tolist()) - {0}
        assert row[sorted(words)].sum().item() == pytest.approx(1.0, abs=1e-5)


def test_the_memory_travels_in_the_checkpoint(tmp_path):
    model = tiny(neighbours=2)
    state = model.state_dict()
    assert state["memory_pixels"].shape == (5, C.RETRIEVAL ** 2 * 4) and state["memory_pixels"].dtype == torch.uint8
    fresh = C.Captioner(**model.hparams)  # an empty memory, resized by loading
    fresh.load_state_dict(state)
    images = random_images(3)
    assert fresh.eval().greedy(images)[0] == model.greedy(images)[0]
    with pytest.raises(RnnlabError, match="retrieves from an empty memory"):
        C.Captioner(**model.hparams).greedy(images)


def test_colours_add_each_cells_mean_colour_to_its_annotation_vector():
    model = tiny(colours=True)
    images = random_images(2)
    feats = model.encode(images)[0].feats
    assert feats.shape == (2, 64, 8 + 4)
    cell = C.pixels(images)[:, :, :8, :8].mean((2, 3))  # the top-left 8x8 pixels: the grid's first cell
    assert torch.allclose(feats[:, 0, -4:], cell, atol=1e-6)


def test_transparent_pixels_colour_does_not_count():
    images = random_images(2)
    images[:, :, :, 3] = 0
    assert torch.equal(C.pixels(images), torch.zeros(2, 4, C.SIZE, C.SIZE))


def test_augmentation_shifts_and_zooms_but_never_flips():
    """An image whose left half is opaque keeps its mass on the left: no flip or rotation changes a caption's
    "left" into "right"; without shift and zoom the image is unchanged."""
    model = tiny(shift=0.1, zoom=0.1)
    x = torch.zeros(64, 4, C.SIZE, C.SIZE)
    x[:, :, :, :28] = 1.0
    out = model.augment(x)
    left, right = out[..., :32].sum((1, 2, 3)), out[..., 32:].sum((1, 2, 3))
    assert (left > 5 * right).all()
    assert not torch.allclose(out, x)  # it did move something
    assert torch.allclose(tiny(shift=0.0, zoom=0.0).augment(x), x, atol=1e-5)


@pytest.mark.parametrize("neighbours", [0, 2])
def test_a_style_only_model_trains_on_its_style_alone(monkeypatch, neighbours):
    model = tiny(styles=["google"], shift=0.0, zoom=0.0, attention_penalty=0.0, neighbours=neighbours)
    monkeypatch.setattr(model, "log", lambda *args, **kwargs: None)  # outside a Trainer
    ids = torch.tensor([[VOCAB.index(C.BOS), 2, VOCAB.index(C.EOS)], [VOCAB.index(C.BOS), 3, VOCAB.index(C.EOS)]])
    images = random_images(2)
    batch = {"images": images, "ids": ids, "captions": ["face", "red"], "styles": ["twitter", "twitter"],
             "groups": ["face", "red"]}
    model.train()
    assert model.training_step(batch, 0) is None  # nothing of its style in the batch: the step is skipped
    model.eval()  # no dropout or batch statistics: the losses are comparable
    mixed = model.training_step({**batch, "styles": ["google", "twitter"]}, 0)
    retrieved = model.retrieve(images[:1], ["face"])
    nll, _, words, bag = model.losses(C.pixels(images[:1]), ids[:1], 0.0, retrieved)
    # the Google row alone
    assert words == 2 and bag.item() == 0 and mixed.item() == pytest.approx((nll / words).item(), rel=1e-5)


def test_the_moving_average_of_the_weights_is_validated_and_checkpointed(monkeypatch):
    """module.ema: the average follows each optimizer step (not a skipped batch), validation swaps it in, the
    checkpoint keeps it (the other weights beside it, for a resumed run), and training swaps back."""
    model = tiny(neighbours=2, ema=0.5)

    class Trainer:
        global_step = 0

    monkeypatch.setattr(type(model), "trainer", Trainer(), raising=False)
    start = {k: v.clone() for k, v in model.averaged().items()}
    assert "memory_pixels" not in start and "cell.weight_ih" in start
    Trainer.global_step = 1
    model.on_train_batch_end(None, None, 0)  # the average starts at the weights
    with torch.no_grad():
        model.cell.weight_ih.add_(1.0)
    Trainer.global_step = 2
    model.on_train_batch_end(None, None, 1)
    model.on_train_batch_end(None, None, 2)  # no step since: no update
    decay = min(0.5, 3 / 12)
    trained = model.cell.weight_ih.detach().clone()
    expected = start["cell.weight_ih"] * decay + trained * (1 - decay)
    model.on_validation_epoch_start()
    assert torch.allclose(model.cell.weight_ih, expected)
    checkpoint: dict = {}
    model.on_save_checkpoint(checkpoint)
    assert checkpoint["ema"]["swapped"] and torch.equal(checkpoint["ema"]["weights"]["cell.weight_ih"], trained)
    resumed = tiny(neighbours=2, ema=0.5)
    resumed.load_state_dict(model.state_dict())
    resumed.on_load_checkpoint(checkpoint)
    for m in (model, resumed):
        m.on_train_epoch_start()
        assert torch.equal(m.cell.weight_ih, trained)
    with pytest.raises(RnnlabError, match="module.ema must be in"):
        tiny(ema=1.0)


@pytest.mark.parametrize("across", [False, True])
def test_a_style_only_model_can_be_chosen_on_the_other_styles(monkeypatch, across):
    """select_across_styles: the twin's val_bleu, which chooses its checkpoint, is its BLEU on the validation images
    of the styles it never saw (the cross-style view); its BLEU on all of them is logged beside it."""
    model = tiny(styles=["google"], select_across_styles=across)
    logged: dict = {}
    monkeypatch.setattr(model, "log", lambda key, value, **kwargs: logged.__setitem__(key, value))
    model._val = {"nll": 1.0, "words": 1, "hyps": ["red apple face skin tone", "face"],
                  "refs": ["red apple face skin tone", "red face"], "styles": ["google", "twitter"]}
    model.on_validation_epoch_end()
    assert logged["val_bleu_other_styles"] == 0.0  # "face" against "red face": no 4-gram
    assert (logged["val_bleu"] == 0.0) == across
    assert ("val_bleu_all_styles" in logged) == across


def test_the_no_skin_tone_view_can_share_in_choosing_the_checkpoint(monkeypatch):
    model = tiny(select_no_skin_tone=0.5)
    logged: dict = {}
    monkeypatch.setattr(model, "log", lambda key, value, **kwargs: logged.__setitem__(key, value))
    model._val = {"nll": 1.0, "words": 1, "hyps": ["red apple face skin tone", "a red apple on a tree"],
                  "refs": ["red apple face skin tone", "a red apple on a tree"], "styles": ["google", "twitter"]}
    model.on_validation_epoch_end()
    assert logged["val_bleu"] == pytest.approx(logged["val_bleu_full"] + 0.5 * logged["val_bleu_no_skin_tone"])
    assert logged["val_bleu_no_skin_tone"] == pytest.approx(100.0)


def test_the_bag_of_words_loss_counts_the_caption_words_only():
    model = tiny(word_loss=1.0)
    ids = torch.tensor([[VOCAB.index(C.BOS), 3, 4, VOCAB.index(C.EOS), 0]])
    with torch.no_grad():
        model.words.weight.zero_()
        model.words.bias.fill_(-20.0)
        model.words.bias[[3, 4]] = 20.0  # predicts exactly "red" and "apple"
    assert model.losses(C.pixels(random_images(1)), ids, 0.0)[3].item() < 1e-6
    with torch.no_grad():
        model.words.bias[4] = -20.0  # misses "apple"
    assert model.losses(C.pixels(random_images(1)), ids, 0.0)[3].item() == pytest.approx(20.0, abs=1e-3)


@pytest.mark.parametrize("changes, message", [
    ({"num_layers": 2}, "one torch cell"),
    ({"channels": [4, 8], "convs": [1]}, "lists of positive integers of one length"),
    ({"stem": 2, "grid": 2, "channels": [4], "convs": [1]}, "do not fit"),
    ({"vocab": ["<pad>", "<unk>", "a"]}, "start and end symbols"),
    ({"beam_width": 0}, "module.beam_width must be a positive integer"),
    ({"neighbours": -1}, "module.neighbours must be a positive integer or 0"),
])
def test_bad_module_settings_are_named(changes, message):
    with pytest.raises(RnnlabError, match=message):
        tiny(**changes)


# --- the stages on the fixture slices


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """pull + preprocess caption by the real stages (each package fetched by its own `fetch`), from the slices."""
    root = tmp_path_factory.mktemp("caption")
    run_task(root, "caption")
    return root


@pytest.fixture(scope="module")
def trained(project):
    """train (the smoke budget: both models), then evaluate and register as their stages do."""
    out = project / "out"
    overrides = ("task=caption", "experiment=smoke_caption", f"paths.data_dir={project}/data", f"paths.output_dir={out}",
                 f"logger.tracking_uri=sqlite:///{project}/mlflow.db")
    train(compose(*overrides, "test=false"))
    run_evaluate(compose(*overrides))
    run_register(compose(*overrides))
    return out


def test_pull_and_preprocess_read_the_three_archives(project):
    stats = json.loads((project / "data" / "processed" / "caption" / "stats.json").read_text())
    assert stats["pairs"] == 84 and stats["styles"] == {"google": 42, "twitter": 42}
    dm = C.CaptionDataModule(str(project / "data" / "processed" / "caption"), batch_size=4)
    image, ids, caption, style, group = dm.rows["train"][0]
    assert image.shape == (64, 64, 4) and ids[0] == dm.bos and ids[-1] == dm.eos and style in ("google", "twitter")
    assert dm.model_kwargs()["vocab"][dm.bos] == C.BOS and C.detokenize(
        [dm.vocab[i] for i in ids[1:-1]]).replace("<unk>", "") != ""
    batch = next(iter(dm.train_dataloader()))
    assert batch["ids"].shape[0] == 4 and batch["images"].dtype == torch.uint8


def test_train_evaluate_register_write_models_metrics_figures_and_a_version(trained, project):
    assert {p.name for p in (trained / "model").iterdir()} == {"model.ckpt", "baseline.ckpt", "run.json"}
    scores = json.loads((trained / "metrics" / "caption.json").read_text())
    views = {"full", "no_skin_tone", "cross_style", "twitter"}
    assert views <= set(scores["test"]) and views <= set(scores["val"])
    for view in views:
        assert {"bleu", "rouge_l", "exact", "n", "bleu_greedy"} <= set(scores["test"][view])
    assert set(scores["baseline"]) == {"constant", "nearest"}
    for baseline in scores["baseline"].values():
        assert set(baseline) == {"full", "no_skin_tone", "cross_style"}
        assert all(isinstance(v, (int, float)) for view in baseline.values() for v in view.values())
    # the views' sizes: the Twitter half of test for cross_style, the images without "skin tone" for no_skin_tone
    test = C.load_splits(project / "data" / "processed" / "caption")["test"]
    assert scores["test"]["full"]["n"] == len(test) == scores["baseline"]["nearest"]["full"]["n"]
    assert scores["test"]["cross_style"]["n"] == test["style"].count("twitter")
    # each model decodes as chosen for it: the captioner by the smoke budget's beam, the twin greedily
    assert scores["test"]["beam_width"] == 2 and scores["test"]["cross_style"]["beam_width"] == 1
    assert scores["test"]["no_skin_tone"]["n"] == len(test) - sum(test["skin_tone"])
    # each model retrieves from the training images of its styles: the Google-only twin from the Google ones
    train = C.load_splits(project / "data" / "processed" / "caption")["train"]
    for role, rows in (("model", len(train)), ("baseline", train["style"].count("google"))):
        ckpt = torch.load(trained / "model" / f"{role}.ckpt", weights_only=True)
        assert len(ckpt["state_dict"]["memory_ids"]) == rows
    figures = trained / "reports" / "figures"
    for name in ("caption_contact_sheet.png", "caption_attention.png"):
        assert (figures / name).read_bytes()[:4] == b"\x89PNG"
    samples = (trained / "reports" / "caption_samples.txt").read_text()
    assert samples.count("  true:   ") == len(test)
    client = mlflow.MlflowClient(f"sqlite:///{project}/mlflow.db")
    run_id = json.loads((trained / "model" / "run.json").read_text())["runs"]["model"]
    logged = {a.path for a in client.list_artifacts(run_id, "figures")}
    assert logged == {"figures/caption_contact_sheet.png", "figures/caption_attention.png"}
    assert "test_full_bleu" in client.get_run(run_id).data.metrics
    version = client.get_model_version_by_alias("rnnlab-caption", "champion")
    assert version.run_id == run_id


# --- use: rnnlab caption IMAGE, the pyfunc model, bad images


def png_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def an_emoji(project) -> bytes:
    return C.load_splits(project / "data" / "processed" / "caption")["test"][0]["image"]


def test_caption_prints_the_best_captions_with_probabilities(trained, project, tmp_path, capsys):
    (tmp_path / "e.png").write_bytes(an_emoji(project))
    main(["caption", str(tmp_path / "e.png"), "-n", "2", "--checkpoint", str(trained / "model" / "model.ckpt")])
    lines = capsys.readouterr().out.splitlines()
    assert 1 <= len(lines) <= 2
    probabilities = [float(line.split(" ", 1)[0]) for line in lines]
    assert all(0 < p <= 1 for p in probabilities) and probabilities == sorted(probabilities, reverse=True)


def test_images_are_converted_and_resized(project):
    emoji = S.read_image(an_emoji(project), "emoji")
    assert emoji.shape == (64, 64, 4) and emoji.dtype == np.uint8
    grey = S.read_image(png_bytes(Image.new("L", (64, 64), 128)), "grey")
    assert (grey[..., :3] == 128).all() and (grey[..., 3] == 255).all()
    palette = Image.new("P", (64, 64))
    palette.putpalette([255, 0, 0] * 256)
    assert (S.read_image(png_bytes(palette), "palette")[..., :3] == (255, 0, 0)).all()
    # a large, wide JPEG: scaled to fit 64 wide, centred on transparency above and below
    wide = S.read_image(png_bytes(Image.new("RGB", (1000, 500), (0, 0, 255)), "JPEG"), "wide")
    assert (wide[:15, :, 3] == 0).all() and (wide[20:44, :, 3] == 255).all() and (wide[20:44, :, 2] > 240).all()
    # a transparent pixel's colour is 0, as in training
    clear = S.read_image(png_bytes(Image.new("RGBA", (64, 64), (200, 100, 50, 0))), "clear")
    assert not clear.any()


def truncated(project) -> bytes:
    data = an_emoji(project)
    return data[:len(data) // 2]


@pytest.mark.parametrize("content, message", [
    (b"", "is empty: give a PNG or JPEG image"),
    (b"just some text", "is not a readable PNG or JPEG image"),
    ("truncated", "is not a readable PNG or JPEG image"),
    (png_bytes(Image.new("RGB", (8, 8)), "GIF"), "is a GIF image, not PNG or JPEG"),
    ("huge", "more than the 1,000 bytes an image may have"),
    (png_bytes(Image.new("1", (5000, 4000))), "is 5000x4000 pixels, more than the 16,777,216"),
])
def test_bad_images_are_one_line_errors_with_exit_2(trained, project, tmp_path, monkeypatch, content, message, capsys):
    if content == "truncated":
        content = truncated(project)
    if content == "huge":
        monkeypatch.setattr(S, "MAX_BYTES", 1000)
        content = an_emoji(project) * 2
    path = tmp_path / "in" / "bad.png"
    path.parent.mkdir()
    path.write_bytes(content)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["caption", str(path), "--checkpoint", str(trained / "model" / "model.ckpt")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and str(path) in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["bad.png", "in"]  # nothing written


def test_pyfunc_model_captions_base64_png_and_jpeg_like_the_cli(trained, project, tmp_path):
    from mlflow.exceptions import MlflowException

    from rnnlab.serving.pyfunc import save_pyfunc
    from rnnlab.tasks import load_checkpoint

    ckpt = trained / "model" / "model.ckpt"
    model = mlflow.pyfunc.load_model(str(save_pyfunc("caption", ckpt, tmp_path / "caption")))
    emoji = an_emoji(project)
    rgb = Image.open(io.BytesIO(emoji)).convert("RGB")
    images = [base64.b64encode(b).decode("ascii") for b in (emoji, png_bytes(rgb, "JPEG"))]
    out = model.predict(pd.DataFrame({"image": images}), params={"n_best": 2})
    assert list(out.columns) == ["caption", "probability", "captions", "probabilities"] and len(out) == 2
    expected = load_checkpoint(ckpt, task="caption").captions(S.read_image(emoji, "emoji"), 2)
    assert out.iloc[0]["caption"] == expected[0][0] and list(out.iloc[0]["captions"]) == [c for c, _ in expected]
    with pytest.raises(MlflowException, match="image 0: not base64-encoded"):
        model.predict(pd.DataFrame({"image": ["%%% not base64"]}))
    with pytest.raises(MlflowException, match="empty request: no image to caption"):
        model.predict(pd.DataFrame({"image": pd.Series([], dtype=object)}))
    with pytest.raises(MlflowException, match="image 0 is not a readable PNG or JPEG"):
        model.predict(pd.DataFrame({"image": [base64.b64encode(b"not an image").decode("ascii")]}))
