"""Many-to-one classifiers and their one-to-one baseline, on synthetic tensors."""

import itertools

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from rnnlab import RnnlabError
from rnnlab.core.optim import ADAMW
from rnnlab.core.trainer import quiet_trainer
from rnnlab.data.padding import collate
from rnnlab.shapes.many_to_one import POOLINGS, UNK_ID, SequenceClassifier
from rnnlab.shapes.one_to_one import BagClassifier

KINDS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]
KIND_IDS = ["rnn-tanh", "rnn-relu", "lstm", "gru"]
VOCAB, CHANNELS = 12, 3


def inputs_of(kind: str):
    """Keyword arguments for a token or a frame model, and a maker of one random (steps,) or (steps, C) sequence."""
    if kind == "tokens":
        return {"vocab_size": VOCAB}, lambda n: torch.randint(1, VOCAB, (n,))
    # float32 values in float64: collate's float32 frames then lose nothing
    return {"input_size": CHANNELS}, lambda n: torch.randn(n, CHANNELS).double()


def small(kind: str, cell="lstm", nonlinearity="tanh", **kwargs):
    size, _ = inputs_of(kind)
    torch.manual_seed(0)
    return SequenceClassifier(3, **size, cell=cell, nonlinearity=nonlinearity, embedding_dim=5, hidden_size=6,
                              attention_dim=4, **kwargs).double().eval()


@pytest.mark.parametrize("bidirectional", (False, True), ids=("uni", "bi"))
@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("cell_kind", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("kind", ("tokens", "frames"))
def test_a_sequence_gives_the_same_logits_alone_and_in_a_padded_batch(kind, cell_kind, pooling, bidirectional):
    model = small(kind, *cell_kind, pooling=pooling, bidirectional=bidirectional, num_layers=2)
    _, make = inputs_of(kind)
    torch.manual_seed(1)
    seq = make(4)
    inputs, lengths, _ = collate([(make(9), 0), (seq, 0), (make(2), 0), (make(7), 0)])
    inputs = inputs.double() if kind == "frames" else inputs  # collate gives float32 frames
    with torch.no_grad():
        alone = model(seq[None], torch.tensor([4]))
        batched = model(inputs, lengths)
    torch.testing.assert_close(batched[1:2], alone, atol=1e-9, rtol=0)


@pytest.mark.parametrize("kind, pooling", list(itertools.product(("tokens", "frames"), POOLINGS + ("bag",))))
def test_what_lies_past_a_sequence_end_never_reaches_the_output(kind, pooling):
    size, make = inputs_of(kind)
    if pooling == "bag":
        torch.manual_seed(0)
        model = BagClassifier(3, **size, embedding_dim=5, hidden_size=6).double().eval()
    else:
        model = small(kind, pooling=pooling, bidirectional=True)
    torch.manual_seed(1)
    inputs, lengths, _ = collate([(make(n), 0) for n in (6, 3, 1, 5)])
    inputs = inputs.double() if kind == "frames" else inputs
    garbage = inputs.clone()
    past_end = torch.arange(inputs.size(1))[None] >= lengths[:, None]
    garbage[past_end] = VOCAB - 1 if kind == "tokens" else 1e6
    with torch.no_grad():
        torch.testing.assert_close(model(garbage, lengths), model(inputs, lengths), atol=0, rtol=0)


def test_scratch_cells_classify_packed_batches_like_torch():
    fused = small("tokens", "gru", pooling="attention", bidirectional=True, num_layers=2)
    scratch = small("tokens", "gru", pooling="attention", bidirectional=True, num_layers=2, impl="scratch")
    scratch.load_state_dict(fused.state_dict())
    inputs, lengths, _ = collate([(torch.randint(1, VOCAB, (n,)), 0) for n in (5, 8, 1, 5)])
    with torch.no_grad():
        torch.testing.assert_close(scratch(inputs, lengths), fused(inputs, lengths), atol=1e-9, rtol=0)


def separable(kind: str, n: int, seed: int):
    """Three classes told apart by which tokens occur (tokens) or by the frames' mean (frames)."""
    gen = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        label, steps = i % 3, int(torch.randint(2, 10, (), generator=gen))
        if kind == "tokens":
            seq = 1 + 3 * label + torch.randint(0, 3, (steps,), generator=gen)  # class c uses ids 3c+1 .. 3c+3
        else:
            seq = torch.randn(steps, CHANNELS, generator=gen) + 2.0 * F.one_hot(torch.tensor(label), CHANNELS)
        items.append((seq, label))
    return items


@pytest.mark.parametrize("model_cls, kind", list(itertools.product((SequenceClassifier, BagClassifier),
                                                                    ("tokens", "frames"))))
def test_learns_a_separable_task_and_logs_the_shared_metrics(model_cls, kind):
    L.seed_everything(0, verbose=False)
    size, _ = inputs_of(kind)
    model = model_cls(3, **size, embedding_dim=16, hidden_size=32,
                      optimizer={**ADAMW, "lr": 1e-2})
    train = DataLoader(separable(kind, 512, seed=1), batch_size=32, shuffle=True, collate_fn=collate)
    val = DataLoader(separable(kind, 96, seed=2), batch_size=32, collate_fn=collate)
    first = model._loss(next(iter(val)))[2].item()
    trainer = quiet_trainer(max_steps=60, num_sanity_val_steps=0)
    trainer.fit(model, train, val)
    metrics = trainer.callback_metrics
    assert {"train_loss", "val_loss", "val_acc", "val_macro_f1"} <= metrics.keys()
    assert metrics["val_loss"] < first / 2 and metrics["val_acc"] > 0.9 and metrics["val_macro_f1"] > 0.9
    (test,) = trainer.test(model, val, verbose=False)
    assert test.keys() == {"test_loss", "test_acc", "test_macro_f1"}
    probs = torch.cat(trainer.predict(model, val))
    assert probs.shape == (96, 3)
    torch.testing.assert_close(probs.sum(-1), torch.ones(96))


def test_an_ensemble_predicts_its_members_mean_probability_and_trains_each_as_if_alone():
    single, ensemble = small("frames"), small("frames", members=3)
    _, make = inputs_of("frames")
    torch.manual_seed(1)
    inputs, lengths, labels = collate([(make(n), n % 3) for n in (5, 2, 8, 3)])
    inputs = inputs.double()
    each = ensemble.member_logits(inputs, lengths)
    # member 0 is the single model: same draws, same keys
    torch.testing.assert_close(each[0], single(inputs, lengths))
    assert set(single.state_dict()) < set(ensemble.state_dict())
    mean = torch.stack([x.softmax(-1) for x in each]).mean(0)
    torch.testing.assert_close(ensemble(inputs, lengths).softmax(-1), mean)
    torch.testing.assert_close(ensemble.predict_step((inputs, lengths), 0), mean)
    # the training loss sums the members' own losses: member k's gradient is that of its loss alone
    ensemble.train()
    for member in ensemble.members:
        member.drop.p = 0.0  # no dropout draws: the two passes below see the same network
    ensemble.log = lambda *args, **kwargs: None  # no Trainer to log to
    ensemble.training_step((inputs, lengths, labels), 0).backward()
    for k, member in enumerate(ensemble.members):
        params = list(member.parameters())
        alone = torch.autograd.grad(F.cross_entropy(ensemble.member_logits(inputs, lengths)[k], labels), params)
        for p, g in zip(params, alone):
            torch.testing.assert_close(p.grad, g)
    # clipped member by member: each member's norm is the limit
    ensemble.configure_gradient_clipping(None, gradient_clip_val=1e-3, gradient_clip_algorithm="norm")
    for member in ensemble.members:
        norms = [p.grad.norm() for p in member.parameters()]
        torch.testing.assert_close(torch.stack(norms).norm().item(), 1e-3, rtol=1e-4, atol=0)
    with pytest.raises(RnnlabError, match="model.members must be a positive integer, got 0"):
        small("frames", members=0)


@pytest.mark.parametrize("kind", ("tokens", "frames"))
def test_a_convolution_branch_reads_each_sequence_as_if_alone(kind):
    model = small(kind, conv_channels=[4, 7, 5], members=2)
    assert model.members[1].conv.kernels == [8, 5, 3] and model.members[1].head.in_features == 6 + 5
    _, make = inputs_of(kind)
    torch.manual_seed(1)
    seq = make(4)
    inputs, lengths, _ = collate([(make(9), 0), (seq, 0), (make(2), 0)])
    inputs = inputs.double() if kind == "frames" else inputs
    with torch.no_grad():  # eval mode: the batch norms use their running statistics
        torch.testing.assert_close(model(inputs, lengths)[1:2], model(seq[None], torch.tensor([4])), atol=1e-9, rtol=0)
    with pytest.raises(RnnlabError, match=r"module.conv_kernels: one kernel size per entry of module.conv_channels"):
        small(kind, conv_channels=[4, 7], conv_kernels=[3])


def test_token_dropout_turns_valid_tokens_into_unk_in_training_only():
    model = small("tokens", token_dropout=0.5)
    inputs, lengths, _ = collate([([3, 4, 5, 6, 7, 8], 0), ([2, 3], 1)])
    mask = inputs > 0
    assert torch.equal(model.drop_tokens(inputs, mask), inputs)  # eval: the input as is
    model.train()
    torch.manual_seed(0)
    dropped = model.drop_tokens(inputs.repeat(200, 1), mask.repeat(200, 1))
    assert (dropped[~mask.repeat(200, 1)] == 0).all()  # padding stays padding
    changed = dropped != inputs.repeat(200, 1)
    assert (dropped[changed] == UNK_ID).all() and 0.45 < changed[mask.repeat(200, 1)].float().mean() < 0.55
    with pytest.raises(RnnlabError, match=r"module.token_dropout replaces token ids by <unk>; this model reads frames"):
        small("frames", token_dropout=0.1)
    with pytest.raises(RnnlabError, match=r"module.label_smoothing must be a number in \[0, 1\), got 1.0"):
        small("tokens", label_smoothing=1.0)


@pytest.mark.parametrize("members", (1, 2))
def test_label_smoothing_enters_the_training_loss_alone(members):
    model = small("tokens", label_smoothing=0.2, members=members)
    for member in model.members:
        member.drop.p = 0.0
    model.log = lambda *args, **kwargs: None  # no Trainer to log to
    inputs, lengths, labels = collate([([3, 4, 5], 0), ([2, 3], 1), ([6], 2)])
    each = model.member_logits(inputs, lengths)
    smoothed = sum(F.cross_entropy(x, labels, label_smoothing=0.2) for x in each)
    torch.testing.assert_close(model.training_step((inputs, lengths, labels), 0), smoothed)
    # validation's loss is the plain cross-entropy of the (ensemble's) output
    torch.testing.assert_close(model._loss((inputs, lengths, labels))[2],
                               F.cross_entropy(model(inputs, lengths), labels))


def test_class_weights_enter_the_loss():
    model = BagClassifier(2, vocab_size=VOCAB, class_weights=[0.0, 1.0])
    inputs, lengths, labels = collate([([1, 2], 0), ([3], 1), ([4, 5, 6], 1)])
    logits, _, loss = model._loss((inputs, lengths, labels))
    torch.testing.assert_close(loss, F.cross_entropy(logits[1:], labels[1:]))  # the weight-0 class drops out


@pytest.mark.parametrize("model_cls", (SequenceClassifier, BagClassifier))
@pytest.mark.parametrize("kwargs, message", [
    ({}, r"model.vocab_size \(token ids\) or model.input_size .* got vocab_size=None, input_size=None"),
    ({"vocab_size": 10, "input_size": 3}, "give exactly one"),
    ({"vocab_size": 0}, "model.vocab_size must be a positive integer, got 0"),
    ({"vocab_size": 10, "class_weights": [1.0, 2.0]}, r"module.class_weights .* \(num_classes=3\)"),
    ({"vocab_size": 10, "class_weights": [1.0, -1.0, 1.0]}, "module.class_weights"),
    ({"vocab_size": 10, "num_classes": 1}, "model.num_classes must be an integer >= 2, got 1"),
])
def test_bad_arguments_are_named(model_cls, kwargs, message):
    kwargs = {"num_classes": 3, **kwargs}
    with pytest.raises(RnnlabError, match=message):
        model_cls(**kwargs)


def test_unknown_pooling_is_named():
    with pytest.raises(RnnlabError, match="model.pooling: unknown pooling 'sum'; choose one of last, mean"):
        SequenceClassifier(3, vocab_size=10, pooling="sum")


def test_inputs_of_the_wrong_kind_are_named():
    model = SequenceClassifier(3, input_size=CHANNELS)
    with pytest.raises(RnnlabError, match=r"model.input_size=3\), got torch.int64 \(2, 4\)"):
        model(torch.ones(2, 4, dtype=torch.long), torch.tensor([4, 2]))


def test_collate_pads_tokens_and_frames():
    inputs, lengths, labels = collate([([3, 1], 1), ([2, 5, 4], 0)])
    assert inputs.dtype == torch.long and inputs.tolist() == [[3, 1, 0], [2, 5, 4]]
    assert lengths.tolist() == [2, 3] and labels.tolist() == [1, 0]
    inputs, lengths, _ = collate([(torch.ones(1, CHANNELS, dtype=torch.float64), 0), ([[2.0] * CHANNELS] * 2, 1)])
    assert inputs.dtype == torch.float32 and inputs.shape == (2, 2, CHANNELS) and lengths.tolist() == [1, 2]
    assert inputs[0, 1].eq(0).all()
    rows = [{"tokens": [4, 2], "label": 1, "text": "b a"}, {"tokens": [3], "label": 0, "text": "c"}]
    assert [t.tolist() for t in collate(rows)] == [[[4, 2], [3, 0]], [2, 1], [1, 0]]


@pytest.mark.parametrize("items, message", [
    ([([1, 2], 0), ([], 1)], "sequence 1 of the batch is empty"),
    ([(torch.ones(2, 3), 0), (torch.ones(0, 3), 1)], "sequence 1 of the batch is empty"),
    ([(torch.ones(2, 3), 0), (torch.ones(2, 4), 1)], r"sequence 1 has shape \(2, 4\), sequence 0 \(2, 3\)"),
    ([([0.5, 1.5], 0)], "sequence 0 is 1-D but not integer token ids"),
    ([], "no sequences"),
    ([{"text": "abc", "label": 0}], r"row 0 has keys \['label', 'text'\]; a row needs 'label' and one of 'tokens'"),
])
def test_collate_rejects_what_no_model_can_read(items, message):
    with pytest.raises(RnnlabError, match=message):
        collate(items)
