"""Beam search over a decoder that writes one token at a time: the translator's, the summarizer's and the
captioner's (each gives its own step, state layout and length penalty).

At every step each live hypothesis is extended by every token; of the 2k best extensions, one that ends in EOS
is finished and the others (at most k) live on. The search stops once k are finished, when nothing is left to
extend, or at the length limit, where the live hypotheses count as they are (the last token standing for the EOS).
Finished hypotheses are ranked by log p / penalty(tokens + 1), the + 1 for the EOS. At width 1 it is greedy
decoding, as tests/test_seq2seq.py and tests/test_caption.py check.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

# (the last tokens (n,), the decoder state, the hypotheses, the step) -> (log-probabilities (n, V), the new state);
# a token a hypothesis must not write has log-probability -inf
Step = Callable[[torch.Tensor, Any, list[list[int]], int], tuple[torch.Tensor, Any]]


def gnmt_penalty(alpha: float) -> Callable[[int], float]:
    """GNMT's length penalty ((5 + length) / 6) ** alpha (Wu et al. 2016, eq. 14)."""
    return lambda n: ((5 + n) / 6) ** alpha


def beam_search(step: Step, state: Any, reorder: Callable[[Any, torch.Tensor], Any], bos: int, eos: int,
                width: int, max_len: int, penalty: Callable[[int], float], n_best: int = 1,
                device: torch.device | str = "cpu") -> list[tuple[list[int], float]]:
    """The `n_best` hypotheses (token ids without EOS, summed log-probability), best first; `reorder(state,
    index)` keeps the states of the hypotheses at `index`, in that order."""
    hyps: list[list[int]] = [[]]
    scores = torch.zeros(1, device=device)
    finished: list[tuple[list[int], float, float]] = []  # ids, log p, log p / penalty
    for t in range(max_len):
        last = torch.tensor([h[-1] if h else bos for h in hyps], device=device)
        logp, state = step(last, state, hyps, t)
        cand = (scores[:, None] + logp).view(-1)
        top_scores, top = cand.topk(min(2 * width, cand.numel()))
        keep: list[tuple[int, int, float]] = []
        for score, index in zip(top_scores.tolist(), top.tolist()):
            if score == -math.inf:  # the rest are banned too
                break
            beam, token = divmod(index, logp.size(-1))
            if token == eos:
                finished.append((hyps[beam], score, score / penalty(len(hyps[beam]) + 1)))
                if len(finished) >= width:
                    break
            else:
                keep.append((beam, token, score))
            if len(keep) == width:
                break
        if len(finished) >= width or not keep:
            break
        if t + 1 == max_len:  # out of length: the live hypotheses count as they are
            finished += [(hyps[b] + [token], s, s / penalty(len(hyps[b]) + 1)) for b, token, s in keep]
            break
        state = reorder(state, torch.tensor([b for b, _, _ in keep], device=device))
        hyps = [hyps[b] + [token] for b, token, _ in keep]
        scores = torch.tensor([s for _, _, s in keep], device=device)
    return [(ids, score) for ids, score, _ in sorted(finished, key=lambda f: -f[2])[:n_best]]


def layers_first(state: Any, index: torch.Tensor) -> Any:
    """reorder for nn.LSTM / nn.GRU states (layers, batch, H): an LSTM's (h, c) pair or one tensor."""
    return tuple(s[:, index] for s in state) if isinstance(state, tuple) else state[:, index]


def batch_first(state: Any, index: torch.Tensor) -> Any:
    """reorder for cell states (batch, H): an LSTMCell's (h, c) pair or one tensor."""
    return tuple(s[index] for s in state) if isinstance(state, tuple) else state[index]
