"""The from-scratch cells against PyTorch's fused modules: same weights, same numbers, same gradients."""

import itertools

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlab.core.cells import ScratchRNN
from rnnlab.shapes.many_to_many import CharLanguageModel

KINDS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", None), ("gru", None)]


def torch_module(mode, nonlinearity, **kwargs):
    cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[mode]
    extra = {"nonlinearity": nonlinearity} if mode == "rnn" else {}
    return cls(batch_first=True, **kwargs, **extra)


def twins(kind, layers: int, bidirectional: bool):
    """A torch module and a ScratchRNN in float64 with the same weights."""
    mode, nonlinearity = kind
    torch.manual_seed(0)
    sizes = dict(input_size=5, hidden_size=6, num_layers=layers, bidirectional=bidirectional)
    reference = torch_module(mode, nonlinearity, **sizes).double()
    scratch = ScratchRNN(mode, nonlinearity=nonlinearity or "tanh", **sizes).double()
    scratch.load_state_dict(reference.state_dict())  # strict: names and shapes must agree
    return reference, scratch


def forward_backward(module, x, state, mode: str, lengths=None):
    """Output, final states, input gradient and parameter gradients of one weighted loss."""
    inp = x.clone().requires_grad_()
    seq = inp if lengths is None else pack_padded_sequence(inp, lengths, batch_first=True, enforce_sorted=False)
    out, final = module(seq, state)
    finals = final if mode == "lstm" else (final,)
    # weight every output differently so each gradient path is exercised (.data: the packed values)
    loss = (out.data * torch.linspace(-1, 1, out.data.numel(), dtype=x.dtype).view_as(out.data)).sum()
    loss = loss + sum((f ** 2).sum() for f in finals)
    module.zero_grad()
    loss.backward()
    return out, finals, inp.grad, {n: p.grad for n, p in module.named_parameters()}


def assert_same_states_and_gradients(scratch_result, reference_result):
    (_, fin_s, gx_s, g_s), (_, fin_r, gx_r, g_r) = scratch_result, reference_result
    for a, b in zip(fin_s, fin_r):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    torch.testing.assert_close(gx_s, gx_r, atol=1e-5, rtol=0)
    assert g_s.keys() == g_r.keys()
    for name in g_r:
        torch.testing.assert_close(g_s[name], g_r[name], atol=1e-5, rtol=0, msg=name)


def random_input(batch: int, layers: int, bidirectional: bool, mode: str):
    x = torch.randn(batch, 9, 5, dtype=torch.float64)
    h0 = torch.randn(layers * (2 if bidirectional else 1), batch, 6, dtype=torch.float64)
    return x, (h0, torch.randn_like(h0)) if mode == "lstm" else h0


@pytest.mark.parametrize("kind, layers, bidirectional", list(itertools.product(KINDS, (1, 2), (False, True))))
def test_scratch_matches_torch_outputs_states_and_gradients(kind, layers, bidirectional):
    mode = kind[0]
    reference, scratch = twins(kind, layers, bidirectional)
    x, state = random_input(3, layers, bidirectional, mode)
    expected, got = (forward_backward(m, x, state, mode) for m in (reference, scratch))
    torch.testing.assert_close(got[0], expected[0], atol=1e-5, rtol=0)
    assert_same_states_and_gradients(got, expected)


@pytest.mark.parametrize("kind, layers, bidirectional", list(itertools.product(KINDS, (1, 2), (False, True))))
def test_scratch_matches_torch_on_packed_sequences(kind, layers, bidirectional):
    mode = kind[0]
    reference, scratch = twins(kind, layers, bidirectional)
    lengths = torch.tensor([4, 9, 1, 4])  # unsorted, with a tie and a single step
    x, state = random_input(4, layers, bidirectional, mode)
    expected, got = (forward_backward(m, x, state, mode, lengths) for m in (reference, scratch))
    assert torch.equal(got[0].batch_sizes, expected[0].batch_sizes)
    torch.testing.assert_close(pad_packed_sequence(got[0], batch_first=True)[0],
                               pad_packed_sequence(expected[0], batch_first=True)[0], atol=1e-5, rtol=0)
    assert_same_states_and_gradients(got, expected)


def test_scratch_keeps_the_order_of_a_sorted_pack():
    torch.manual_seed(0)
    reference = nn.LSTM(3, 4, batch_first=True, bidirectional=True)
    scratch = ScratchRNN("lstm", 3, 4, bidirectional=True)
    scratch.load_state_dict(reference.state_dict())
    packed = pack_padded_sequence(torch.randn(3, 5, 3), torch.tensor([5, 3, 3]), batch_first=True)
    (out_s, (h_s, _)), (out_r, (h_r, _)) = scratch(packed), reference(packed)
    assert out_s.sorted_indices is None
    torch.testing.assert_close(out_s.data, out_r.data, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h_s, h_r, atol=1e-5, rtol=1e-5)


def test_weights_load_both_ways_and_default_state_is_zero():
    torch.manual_seed(1)
    scratch = ScratchRNN("gru", 4, 5, num_layers=2)
    reference = nn.GRU(4, 5, num_layers=2, batch_first=True)
    reference.load_state_dict(scratch.state_dict())
    x = torch.randn(2, 6, 4)
    torch.testing.assert_close(scratch(x)[0], reference(x)[0], atol=1e-5, rtol=1e-5)


def test_one_set_of_weights_serves_every_step():
    scratch = ScratchRNN("rnn", 3, 4)
    assert sum(p.numel() for p in scratch.parameters()) == 4 * 3 + 4 * 4 + 4 + 4
    short, long = scratch(torch.randn(1, 2, 3)), scratch(torch.randn(1, 50, 3))
    assert short[0].shape == (1, 2, 4) and long[0].shape == (1, 50, 4)


def test_language_model_switches_to_scratch_cells():
    torch.manual_seed(0)
    fused = CharLanguageModel(list("abcd"), cell="lstm", embedding_dim=4, hidden_size=8, dropout=0.0)
    scratch = CharLanguageModel(list("abcd"), cell="lstm", embedding_dim=4, hidden_size=8, dropout=0.0,
                                impl="scratch")
    assert isinstance(scratch.rnn, ScratchRNN)
    scratch.load_state_dict(fused.state_dict())
    x = torch.randint(0, 5, (2, 7))
    torch.testing.assert_close(scratch(x)[0], fused(x)[0], atol=1e-5, rtol=1e-5)
