"""The classical peer of the character language model: an n-gram model of the same characters with interpolated
modified Kneser-Ney smoothing, its order chosen on the validation works (baseline.kn_ngram in metrics/charlm.json).

Written out with numpy (counts by np.unique over integer-coded n-grams, about 40 lines) rather than taken from
a library: nltk.lm's KneserNeyInterpolated scores a character in pure Python, hours for the 270 000 test
characters; KenLM is a C++ build, not a wheel."""

from __future__ import annotations

from time import perf_counter
from typing import NamedTuple

import numpy as np

from rnnlab.evaluation import bpc_scores
from rnnlab.tasks.charlm.data import load_split

# orders tried on validation; 9 characters of 85 symbols still fit one int64 key (85**9 < 2**63)
ORDERS = range(1, 10)


class Level(NamedTuple):
    """The counts of one n-gram length: each n-gram's (sorted keys, counts), and per context (the n-gram
    without its last symbol) the total and how many n-grams follow it once, twice, three times or more."""
    keys: np.ndarray
    counts: np.ndarray
    contexts: np.ndarray
    totals: np.ndarray
    followers: np.ndarray  # (contexts, 3)
    discounts: np.ndarray  # D(0) = 0, D1, D2, D3+


def lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """values[keys == query] per query, 0 where a key is absent (keys sorted)."""
    at = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return np.where(keys[at] == query, values[at], 0)


def level(keys: np.ndarray, counts: np.ndarray, base: int) -> Level:
    """Modified Kneser-Ney's three discounts from the counts of counts n1..n4: Chen & Goodman, "An Empirical
    Study of Smoothing Techniques for Language Modeling", TR-10-98 (1998), eq. 26. Where a count of counts is
    too small for them to fall inside (0, c] (a tiny corpus, a long order), plain Kneser-Ney's one discount
    n1 / (n1 + 2 n2) (eq. 21) serves every count."""
    n1, n2, n3, n4 = (max(int((counts == c).sum()), 1) for c in (1, 2, 3, 4))
    y = n1 / (n1 + 2 * n2)
    discounts = np.array([0.0, 1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3])
    if not ((discounts[1:] > 0) & (discounts[1:] <= [1, 2, 3])).all():
        discounts = np.array([0.0, y, y, y])
    contexts, inverse = np.unique(keys // base, return_inverse=True)
    followers = np.zeros((len(contexts), 3))
    np.add.at(followers, (inverse, np.minimum(counts, 3) - 1), 1)
    return Level(keys, counts, contexts, np.bincount(inverse, counts).astype(float), followers, discounts)


def grams(ids: np.ndarray, n: int, base: int) -> np.ndarray:
    """The integer key of the n characters ending at each position (positions n-1 onwards)."""
    key = np.zeros(len(ids) - n + 1, dtype=np.int64)
    for i in range(n):
        key = key * base + ids[i:len(ids) - n + 1 + i]
    return key


class KneserNey:
    """Interpolated modified Kneser-Ney (Chen & Goodman 1998, eq. 17 and 26): the highest order's counts are
    the raw counts, each lower order's the continuation counts (how many different characters precede the
    n-gram), and each order's discounted mass goes to the next lower one, down to the uniform distribution."""

    def __init__(self, train: np.ndarray, base: int, max_order: int = max(ORDERS)):
        self.base = base
        unique = [np.unique(grams(train, n, base), return_counts=True) for n in range(1, max_order + 1)]
        self.raw = [level(keys, counts, base) for keys, counts in unique]
        # continuation counts of the n-grams of length n: the distinct (n+1)-grams they end
        self.continued = [level(*np.unique(longer % base**n, return_counts=True), base)
                          for n, (longer, _) in enumerate(unique[1:], 1)]

    def probabilities(self, ids: np.ndarray, order: int) -> np.ndarray:
        """P(ids[t] | up to order-1 characters before it) for every position t."""
        p = np.full(len(ids), 1.0 / self.base)
        for n in range(1, order + 1):
            counts = self.raw[n - 1] if n == order else self.continued[n - 1]
            key = grams(ids, n, self.base)
            c = lookup(counts.keys, counts.counts, key)
            row = np.searchsorted(counts.contexts, key // self.base)
            row = np.minimum(row, len(counts.contexts) - 1)
            seen = counts.contexts[row] == key // self.base
            total = np.where(seen, counts.totals[row], 0.0)
            mass = counts.followers[row] @ counts.discounts[1:]
            lower = p[n - 1:]
            ok = total > 0
            mixed = (np.maximum(c - counts.discounts[np.minimum(c, 3)], 0) + mass * lower) / np.where(ok, total, 1)
            p[n - 1:] = np.where(ok, mixed, lower)  # an unseen context leaves the lower order's estimate
        return p

    def bpc(self, ids: np.ndarray, order: int) -> float:
        return float(-np.log2(self.probabilities(ids, order)).mean())


class Peer(NamedTuple):
    scores: dict
    seconds: float


def kn_ngram(dm) -> Peer:
    """Counted on the train works, the order with the lowest validation bpc (the lowest order on a tie) scores
    every character of the test works. Its bpc averages over every character, the model's over its streams'
    windows (the same characters but each stream's first)."""
    began = perf_counter()
    ids = {split: load_split(dm.processed_dir, split).astype(np.int64) for split in ("train", "validation", "test")}
    model = KneserNey(ids["train"], len(dm.vocab))
    val = {order: model.bpc(ids["validation"], order) for order in ORDERS}
    order = min(val, key=lambda o: (round(val[o], 4), o))
    scores = {**bpc_scores(model.bpc(ids["test"], order)), "order": order, "val_bpc": round(val[order], 4)}
    return Peer(scores, round(perf_counter() - began, 2))
