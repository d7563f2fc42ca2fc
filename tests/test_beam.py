"""rnnlab.shapes.beam on a toy decoder whose next-token distribution depends on the last token only, so every
answer can be worked out by hand."""

import math

import pytest
import torch

from rnnlab.shapes.beam import batch_first, beam_search, gnmt_penalty, layers_first

BOS, EOS, A, B = 0, 1, 2, 3
NEXT = {BOS: [0.0, 0.0, 0.6, 0.4],  # never EOS first; BOS is never written
        A: [0.0, 0.4, 0.3, 0.3],
        B: [0.0, 0.9, 0.05, 0.05]}


def step(last, state, hyps, t):
    logp = torch.tensor([NEXT[int(x)] for x in last]).log()
    return logp, state + 1  # the state counts the steps: reorder must keep it


def search(width, max_len=5, alpha=0.0, n_best=1):
    return beam_search(step, torch.zeros(1), lambda s, i: s[i], BOS, EOS, width, max_len, gnmt_penalty(alpha), n_best)


def test_width_one_is_greedy_and_a_wider_beam_finds_the_likelier_caption():
    assert search(1) == [([A], pytest.approx(math.log(0.6 * 0.4)))]  # greedy: A, then EOS (0.4 > 0.3)
    # width 2 keeps B alive: B EOS (0.36) beats A EOS (0.24)
    assert search(2, n_best=2) == [([B], pytest.approx(math.log(0.36))), ([A], pytest.approx(math.log(0.24)))]


def test_the_length_limit_finishes_the_live_hypotheses():
    assert search(1, max_len=1) == [([A], pytest.approx(math.log(0.6)))]
    assert [ids for ids, _ in search(2, max_len=1, n_best=2)] == [[A], [B]]


def test_banned_tokens_are_never_written():
    def no_eos(last, state, hyps, t):
        logp, state = step(last, state, hyps, t)
        logp[:, EOS] = -math.inf
        return logp, state

    found = beam_search(no_eos, torch.zeros(1), lambda s, i: s[i], BOS, EOS, 2, 3, gnmt_penalty(0.0), 2)
    assert all(len(ids) == 3 and EOS not in ids for ids, _ in found)


def test_the_length_penalty_can_prefer_a_longer_hypothesis():
    # width 3 finishes B (0.36), A (0.24) and A B (0.6 * 0.3 * 0.9 = 0.162); ranked by log p / ((5 + n) / 6) ** alpha
    # with n = tokens + 1: B leads without a penalty, A B once alpha outweighs its lower probability
    assert gnmt_penalty(1.0)(3) == pytest.approx(8 / 6)
    assert [ids for ids, _ in search(3, n_best=3)] == [[B], [A], [A, B]]
    assert [ids for ids, _ in search(3, alpha=8.0, n_best=3)] == [[A, B], [B], [A]]
    assert search(3, alpha=8.0)[0][1] == pytest.approx(math.log(0.162))  # the score is the plain log p


def test_reorder_keeps_the_chosen_rows():
    h, c = torch.arange(6.0).view(1, 3, 2), torch.arange(6.0).view(1, 3, 2) + 10
    index = torch.tensor([2, 0, 0])
    assert torch.equal(layers_first((h, c), index)[1][0, :, 0], torch.tensor([14.0, 10.0, 10.0]))
    assert torch.equal(batch_first(h[0], index)[:, 0], torch.tensor([4.0, 0.0, 0.0]))
