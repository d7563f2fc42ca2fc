"""The classical peers of the speaker classifier (spec: `peers`), fitted in the evaluate stage on the same
standardised frames the recurrent model reads: baseline.minirocket and baseline.dtw_1nn in metrics/speaker.json.

MiniRocket is written out here (numpy, about 60 lines) rather than imported from aeon, the project's data
source: aeon 1.6.0 pins pandas < 3.1 and numba < 0.64, below this stack's pins (../shared/notes/stack-facts.md)."""

from __future__ import annotations

from itertools import combinations

import numpy as np
from sklearn.linear_model import RidgeClassifierCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from rnnlab.evaluation.peers import Peer, tune

# MiniRocket's fixed kernels: length 9, weights -1 except three taps of 2 (so each sums to 0): all 84 choices
KERNELS = np.array(list(combinations(range(9), 3)))


def frames(dm):
    """split -> each utterance's standardised frames (frames x channels), as the recurrent model reads them."""
    return lambda split: [x.numpy() for x, _ in dm.data[split]]


def padded(series: list[np.ndarray], length: int) -> np.ndarray:
    """(N, channels, length): zero-padded at the end (zero is the train mean of every standardised channel)."""
    out = np.zeros((len(series), series[0].shape[1], length), dtype=np.float32)
    for i, x in enumerate(series):
        out[i, :, :min(len(x), length)] = x[:length].T
    return out


class MiniRocket:
    """MiniRocket: Dempster, Schmidt & Webb, "MINIROCKET: A Very Fast (Almost) Deterministic Transform for Time
    Series Classification", KDD 2021, and its reference code (github.com/angus924/minirocket, the multivariate
    variant): the 84 kernels at exponentially spaced dilations, each on a random subset of channels; biases
    from quantiles of its output on random train examples; features: the proportion of positive values (PPV);
    padding alternating between kernels. Then the paper's classifier: ridge regression with its penalty chosen
    by leave-one-out on train (RidgeClassifierCV), on standardised features."""

    def __init__(self, features: int = 10_000, max_dilations: int = 32, seed: int = 0):
        self.features, self.max_dilations, self.seed = features, max_dilations, seed
        self.ridge = make_pipeline(StandardScaler(), RidgeClassifierCV(alphas=np.logspace(-3, 3, 10)))

    def fit(self, series: list[np.ndarray], y: np.ndarray) -> MiniRocket:
        self.length = max(len(x) for x in series)
        x = padded(series, self.length)
        rng = np.random.default_rng(self.seed)
        per_kernel = self.features // len(KERNELS)
        exponents = np.logspace(0, np.log2((self.length - 1) / 8), min(per_kernel, self.max_dilations), base=2)
        self.dilations, counts = np.unique(exponents.astype(int), return_counts=True)
        counts = (counts * per_kernel / counts.sum()).astype(int)
        counts[:per_kernel - counts.sum()] += 1  # the remainder to the smallest dilations, as the reference does
        channels = x.shape[1]
        # the golden-ratio low-discrepancy sequence of quantiles (the reference's _quantiles)
        quantiles = iter((np.arange(1, per_kernel * len(KERNELS) + 1) * (np.sqrt(5) + 1) / 2) % 1)
        self.plan = []  # (dilation, kernel, channels, biases, padded output)
        for step, (dilation, count) in enumerate(zip(self.dilations, counts)):
            for kernel in range(len(KERNELS)):
                width = int(2 ** rng.uniform(0, np.log2(min(channels, 9) + 1)))
                chosen = rng.choice(channels, width, replace=False)
                out = self.convolve(x[[rng.integers(len(x))]], dilation, kernel, chosen, padded_output=True)
                biases = np.quantile(out, [next(quantiles) for _ in range(count)])
                # padded output for half the kernels, alternating with kernel and dilation (the reference's)
                self.plan.append((dilation, kernel, chosen, biases, (step + kernel) % 2 == 0))
        self.ridge.fit(self.transform(x), y)
        return self

    def convolve(self, x: np.ndarray, dilation: int, kernel: int, chosen: np.ndarray, padded_output: bool):
        """The kernel's output (N, length) on the sum of the chosen channels, zero-padded to keep the length;
        without `padded_output`, only the positions whose receptive field lies inside the series."""
        summed = x[:, chosen, :].sum(1)
        shifted = np.zeros((9, *summed.shape), dtype=np.float32)
        for tap in range(9):
            offset = (tap - 4) * dilation
            src = summed[:, max(offset, 0):summed.shape[1] + min(offset, 0)]
            shifted[tap, :, max(-offset, 0):max(-offset, 0) + src.shape[1]] = src
        out = -shifted.sum(0) + 3 * shifted[KERNELS[kernel]].sum(0)
        edge = 4 * dilation
        return out if padded_output or 2 * edge >= out.shape[1] else out[:, edge:-edge]

    def transform(self, x: np.ndarray) -> np.ndarray:
        features = []
        for dilation, kernel, chosen, biases, padded_output in self.plan:
            out = self.convolve(x, dilation, kernel, chosen, padded_output)
            features.append((out[:, None, :] > biases[None, :, None]).mean(2))
        return np.concatenate(features, 1)

    def predict(self, series: list[np.ndarray]) -> np.ndarray:
        return self.ridge.predict(self.transform(padded(series, self.length)))


def minirocket(dm) -> Peer:
    """Its penalty is chosen by leave-one-out on train, as in the paper: there is nothing to search on validation."""
    return tune(dm, "minirocket", MiniRocket, {}, inputs=frames(dm))


def dtw_distances(queries: list[np.ndarray], references: list[np.ndarray], window: int | None) -> np.ndarray:
    """Multivariate dynamic time warping, each frame pair's cost the squared Euclidean distance over all channels
    (DTW_D, Shokoohi-Yekta et al. 2017), every query against every reference at once; `window`: the
    Sakoe-Chiba band (|i - j| <= window), None for none. Series of different lengths are padded, and each
    pair's distance read at its own end: a cell depends only on the cells before it, so the padding never
    reaches it."""
    q, r = padded(queries, max(map(len, queries))), padded(references, max(map(len, references)))
    # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b for every frame pair: (Q, R, Lq, Lr)
    cost = ((q ** 2).sum(1)[:, None, :, None] + (r ** 2).sum(1)[None, :, None, :]
            - 2 * np.einsum("qcl,rcm->qrlm", q, r))
    acc = np.full((*cost.shape[:2], cost.shape[2] + 1, cost.shape[3] + 1), np.inf, dtype=np.float32)
    acc[:, :, 0, 0] = 0
    for i in range(1, cost.shape[2] + 1):
        for j in range(1, cost.shape[3] + 1):
            if window is None or abs(i - j) <= window:
                best = np.minimum(np.minimum(acc[:, :, i - 1, j], acc[:, :, i, j - 1]), acc[:, :, i - 1, j - 1])
                acc[:, :, i, j] = cost[:, :, i - 1, j - 1] + best
    ends_q, ends_r = np.array([len(x) for x in queries]), np.array([len(x) for x in references])
    return acc[np.arange(len(q))[:, None], np.arange(len(r))[None, :], ends_q[:, None], ends_r[None, :]]


class NearestDTW:
    """1-nearest-neighbour under DTW: the train utterance that warps onto the query at the least cost."""

    def __init__(self, window: int | None = None):
        self.window = window

    def fit(self, series: list[np.ndarray], y: np.ndarray) -> NearestDTW:
        self.series, self.y = series, np.asarray(y)
        return self

    def predict(self, series: list[np.ndarray]) -> np.ndarray:
        chunks = [dtw_distances(series[i:i + 64], self.series, self.window) for i in range(0, len(series), 64)]
        return self.y[np.concatenate(chunks).argmin(1)]


def dtw_1nn(dm) -> Peer:
    """The Sakoe-Chiba band in frames, the narrowest first (it wins a tie); utterances are 7-29 frames long, so
    a band of 32 is no band at all."""
    return tune(dm, "dtw_1nn", NearestDTW, {"window": [1, 2, 4, 8, 32]}, inputs=frames(dm))
