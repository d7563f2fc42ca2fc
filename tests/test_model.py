import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rnnlab import RnnlabError
from rnnlab.data.streams import StreamWindows
from rnnlab.shapes.many_to_many import CharLanguageModel

CHARS = list("abcdefgh \n")
CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]


@pytest.mark.parametrize("cell, nonlinearity", CELLS)
def test_forward_shapes(cell, nonlinearity):
    model = CharLanguageModel(CHARS, cell=cell, nonlinearity=nonlinearity, embedding_dim=8, hidden_size=16,
                              num_layers=2)
    x = torch.randint(0, len(CHARS) + 1, (3, 7))
    logits, state = model(x)
    assert logits.shape == (3, 7, len(CHARS) + 1)
    states = state if cell == "lstm" else (state,)
    assert all(s.shape == (2, 3, 16) for s in states)


@pytest.mark.parametrize("cell, nonlinearity", CELLS)
def test_overfits_one_batch(cell, nonlinearity):
    torch.manual_seed(0)
    model = CharLanguageModel(CHARS, cell=cell, nonlinearity=nonlinearity, embedding_dim=16, hidden_size=64,
                              num_layers=1, dropout=0.0)
    x = torch.randint(1, len(CHARS) + 1, (4, 20))
    y = torch.roll(x, -1, dims=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(150):
        logits, _ = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 2.0 and loss.item() < 0.1


def test_stream_windows_are_contiguous():
    ids = np.arange(1, 1001, dtype=np.int16)
    windows = StreamWindows(ids, batch_size=4, seq_len=32)
    x0, y0 = windows[0]
    x1, _ = windows[1]
    assert x0.shape == (4, 32)
    assert torch.equal(y0[:, :-1], x0[:, 1:])
    assert torch.equal(x1[:, 0], y0[:, -1])  # batch i+1 continues where batch i stopped
    covered = sum(windows[i][1].size(1) for i in range(len(windows)))
    assert covered == 1000 // 4 - 1  # every character of every stream is a target exactly once


def test_state_is_carried_detached_and_reset_each_epoch():
    model = CharLanguageModel(CHARS, cell="lstm", embedding_dim=8, hidden_size=16, num_layers=1)
    batch = (torch.randint(1, 5, (2, 6)), torch.randint(1, 5, (2, 6)))
    model._step(batch, "train")
    h, c = model._state["train"]
    assert not h.requires_grad and h.shape == (1, 2, 16)
    model.on_train_epoch_start()
    assert "train" not in model._state


def test_a_language_model_refuses_to_see_ahead():
    # the config's values (sizes, cell, dropout) are checked before the model is built: tests/test_validate.py
    with pytest.raises(RnnlabError, match="model.bidirectional"):
        CharLanguageModel(CHARS, bidirectional=True)


def test_generate_greedy_is_deterministic_and_rejects_unknown_characters():
    model = CharLanguageModel(CHARS, embedding_dim=8, hidden_size=16, num_layers=1)
    a = model.generate("abc", 20, temperature=0)
    assert a == model.generate("abc", 20, temperature=0)
    assert a.startswith("abc") and len(a) == 23 and "<unk>" not in a
    assert model.generate("abc", 20, 1.0, seed=3) == model.generate("abc", 20, 1.0, seed=3)
    with pytest.raises(RnnlabError, match="never seen: 'XZ'"):
        model.generate("aXZ", 5)
