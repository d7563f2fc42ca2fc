"""Training-time augmentation of frames (rnnlab.data.augment): shapes kept, the same draws for the same seed, off
unless configured, training rows only."""

import pytest
import torch

from rnnlab import RnnlabError
from rnnlab.data.augment import AugmentedFrames, FrameAugment, time_warp
from rnnlab.data.labelled import LabelledDataModule

from conftest import compose, run_task

ALL = dict(jitter=0.1, scale=0.1, warp=0.2, crop=3)


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    return str(run_task(tmp_path_factory.mktemp("augment"), "speaker"))


def utterance(steps=12, channels=12, seed=0):
    return torch.randn(steps, channels, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("steps", [7, 12, 29])
def test_each_change_keeps_the_channels_and_a_plausible_length(steps):
    x = utterance(steps)
    g = torch.Generator().manual_seed(1)
    for change in ("jitter", "scale"):  # frame by frame: the length stays
        out = FrameAugment(**{change: ALL[change]})(x, g)
        assert out.shape == x.shape and out.dtype == x.dtype and not torch.equal(out, x)
    for _ in range(50):
        cropped = FrameAugment(crop=3)(x, g)
        assert cropped.shape[1] == 12 and steps - min(3, steps // 3) <= len(cropped) <= steps
        # a crop keeps consecutive frames of the original
        start = next(i for i in range(steps) if torch.equal(x[i], cropped[0]))
        assert torch.equal(x[start:start + len(cropped)], cropped)
        warped = FrameAugment(warp=0.2)(x, g)
        assert warped.shape[1] == 12 and round(steps * 0.8) <= len(warped) <= round(steps * 1.2)
        # interpolation between neighbouring frames: the first and last frames are kept
        assert torch.allclose(warped[0], x[0]) and torch.allclose(warped[-1], x[-1])
        both = FrameAugment(**ALL)(x, g)
        assert both.dim() == 2 and both.shape[1] == 12 and len(both) >= 2 and torch.isfinite(both).all()


def test_a_warp_of_strength_0_reads_the_frames_back_unchanged():
    x = utterance(9)
    assert torch.allclose(time_warp(x, 0.0, torch.Generator().manual_seed(0)), x)


def test_the_same_seed_draws_the_same_variants_and_another_seed_others():
    x, augment = utterance(), FrameAugment(**ALL)

    def variants(seed):
        g = torch.Generator().manual_seed(seed)
        return [augment(x, g) for _ in range(5)]

    first, again, other = variants(3), variants(3), variants(4)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert any(a.shape != b.shape or not torch.equal(a, b) for a, b in zip(first, other))


def test_off_by_default_and_bad_settings_are_named():
    assert FrameAugment.from_config(None) is None
    assert FrameAugment.from_config(dict(jitter=0.0, scale=0.0, warp=0.0, crop=0)) is None
    assert compose("task=speaker").data.augment == dict(jitter=0.0, scale=0.0, warp=0.0, crop=0)
    assert "augment" not in compose("task=surname").data  # the token tasks have no such key
    for bad, message in ((dict(jitter=-0.1), r"data.augment.jitter must be a number >= 0, got -0.1"),
                         (dict(crop=1.5), r"data.augment.crop must be an integer >= 0, got 1.5"),
                         (dict(warp=1.0), r"data.augment.warp must be below 1"),
                         (dict(noise=0.1), r"data.augment: unknown key\(s\) noise; known: jitter, scale, warp, crop")):
        with pytest.raises(RnnlabError, match=message):
            FrameAugment.from_config(bad)


def first_batches(dm, n=3):
    loader = iter(dm.train_dataloader())
    return [next(loader) for _ in range(n)]


def test_the_data_module_augments_training_batches_only_and_reproducibly(processed):
    plain = LabelledDataModule("speaker", processed, batch_size=8)
    assert plain.augment is None and isinstance(plain.train_dataloader().dataset, list)

    def batches(seed):
        torch.manual_seed(seed)  # as seed_everything does before a fit
        dm = LabelledDataModule("speaker", processed, batch_size=8, augment=ALL)
        assert isinstance(dm.train_dataloader().dataset, AugmentedFrames)
        torch.manual_seed(seed)
        return dm, first_batches(dm)

    dm, first = batches(5)
    _, again = batches(5)
    for (x1, n1, y1), (x2, n2, y2) in zip(first, again):
        assert torch.equal(x1, x2) and torch.equal(n1, n2) and torch.equal(y1, y2)
        assert x1.shape[-1] == 12
    # evaluation reads the rows as they are
    for split in ("validation", "test"):
        (x, n, _), (px, pn, _) = next(iter(dm._eval_loader(split))), next(iter(plain._eval_loader(split)))
        assert torch.equal(x, px) and torch.equal(n, pn)


def test_a_resumed_loader_draws_the_variants_an_unbroken_one_would(processed):
    torch.manual_seed(0)
    dm = LabelledDataModule("speaker", processed, batch_size=8, augment=ALL)
    loader = dm.train_dataloader()
    it = iter(loader)
    next(it)
    state = loader.state_dict()
    expected = [next(it) for _ in range(2)]
    torch.manual_seed(1)  # a fresh process: another global state
    resumed = LabelledDataModule("speaker", processed, batch_size=8, augment=ALL).train_dataloader()
    resumed.load_state_dict(state)
    for (x1, n1, y1), (x2, n2, y2) in zip(expected, [b for _, b in zip(range(2), resumed)]):
        assert torch.equal(x1, x2) and torch.equal(n1, n2) and torch.equal(y1, y2)
