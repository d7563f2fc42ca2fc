"""Many-to-many, unaligned: many frames in, a few tokens out, with no alignment given, trained with CTC.

Connectionist temporal classification (Graves et al. 2006) adds a blank token and sums the probability of
every frame-by-frame path that collapses (repeats merged, blanks dropped) to the target, so the encoder
only has to emit one distribution per frame. CTCRecognizer reads the frames with a bidirectional RNN/LSTM/GRU;
WindowCTC, its one-to-one baseline, puts the same CTC head over a fixed window of frames with no recurrence,
so the difference between them is what the recurrent state adds. Decoding: greedy (the best token of each
frame, collapsed) or the CTC prefix beam search (Hannun et al. 2014, arXiv:1408.2873), which sums the paths
of each output prefix; a beam of 1 is the greedy path.
"""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torchmetrics.text import WordErrorRate

from rnnlab.core.checkpoint import RecordsClass
from rnnlab.core.optim import configure_optimizers
from rnnlab.core.recurrent import make_rnn

BLANK = 0


def greedy(log_probs: torch.Tensor) -> list[int]:
    """(T, V) -> the token ids of the best path, repeats merged and blanks dropped."""
    best = log_probs.argmax(-1).tolist()
    return [t for i, t in enumerate(best) if t != BLANK and (i == 0 or t != best[i - 1])]


def prefix_beam_search(log_probs: torch.Tensor, beam: int) -> list[tuple[list[int], float]]:
    """(T, V) -> the `beam` most probable outputs with their log probability, best first. Each prefix keeps two
    scores, its paths ending in a blank and not, because a repeated token counts twice only across a blank."""
    def add(a: float, b: float) -> float:
        return max(a, b) + math.log1p(math.exp(-abs(a - b))) if a > -math.inf or b > -math.inf else -math.inf

    if beam == 1:  # the best path: the same answer, without the bookkeeping
        path = greedy(log_probs)
        return [(path, float(log_probs.max(-1).values.sum()))]
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -math.inf)}  # prefix -> (blank, non-blank)
    for frame in log_probs.tolist():
        nxt: dict[tuple[int, ...], tuple[float, float]] = {}
        for prefix, (p_b, p_nb) in beams.items():
            b, nb = nxt.get(prefix, (-math.inf, -math.inf))
            nxt[prefix] = (add(b, add(p_b, p_nb) + frame[BLANK]), nb)
            for token, p in enumerate(frame):
                if token == BLANK:
                    continue
                longer = prefix + (token,)
                b, nb = nxt.get(longer, (-math.inf, -math.inf))
                if prefix and prefix[-1] == token:  # "a a" collapses to "a" unless a blank parts them
                    nxt[longer] = (b, add(nb, p_b + p))
                    sb, snb = nxt[prefix]
                    nxt[prefix] = (sb, add(snb, p_nb + p))
                else:
                    nxt[longer] = (b, add(nb, add(p_b, p_nb) + p))
        beams = dict(sorted(nxt.items(), key=lambda kv: -add(*kv[1]))[:beam])
    return [(list(prefix), add(*scores)) for prefix, scores in beams.items()]


class CTCModel(RecordsClass, L.LightningModule):
    """What both encoders share: standardised log-mel frames stacked `stack` at a time (a shorter sequence,
    20 ms a step for 2), the CTC head and loss, decoding and the validation phone error rate. Subclasses set
    self.head (features -> tokens + 1) and define encode((B, T, F) steps, lengths) -> (B, T, features)."""

    mean: torch.Tensor
    std: torch.Tensor
    head: nn.Linear

    def __init__(self, tokens: list[str], n_mels: int, standardise: dict[str, list[float]] | None = None,
                 stack: int = 2, beam_width: int = 1, optimizer: dict | None = None, scheduler: dict | None = None,
                 task: str | None = None):
        super().__init__()
        self.tokens, self.stack, self.n_mels = list(tokens), stack, n_mels
        scale = standardise or {"mean": [0.0] * n_mels, "std": [1.0] * n_mels}
        self.register_buffer("mean", torch.tensor(scale["mean"], dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(scale["std"], dtype=torch.float32).clamp_min(1e-3), persistent=False)
        self.val_per = WordErrorRate()

    def head_size(self) -> int:
        return len(self.tokens) + 1  # the tokens and the blank

    def steps(self, frames: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, n_mels) -> (B, ceil(T / stack), stack * n_mels), each step `stack` consecutive frames; frames
        past an item's length are zeros (the standardised mean), so a batch's padding never enters a step."""
        valid = torch.arange(frames.size(1), device=frames.device) < lengths.to(frames.device).unsqueeze(1)
        x = ((frames - self.mean) / self.std) * valid.unsqueeze(-1)
        pad = -x.size(1) % self.stack
        x = F.pad(x, (0, 0, 0, pad))
        return x.reshape(x.size(0), -1, self.stack * x.size(2)), (lengths + self.stack - 1) // self.stack

    def encode(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (B, T', tokens + 1) log probabilities, blank first, and the T' of each item."""
        x, steps = self.steps(frames, lengths)
        return self.head(self.encode(x, steps)).log_softmax(-1), steps

    def loss(self, batch) -> torch.Tensor:
        frames, lengths, targets, target_lengths = batch
        log_probs, steps = self(frames, lengths)
        # zero_infinity: a recording too short for its tokens gives no gradient instead of an infinite loss
        return F.ctc_loss(log_probs.transpose(0, 1), targets, steps, target_lengths, blank=BLANK, zero_infinity=True)

    def training_step(self, batch, batch_idx):
        loss = self.loss(batch)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss became {loss.item()} at step {self.global_step}")
        self.log("train_loss", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        frames, lengths, targets, target_lengths = batch
        self.log("val_loss", self.loss(batch), on_epoch=True, prog_bar=True, batch_size=len(frames))
        hyps = [" ".join(self.tokens[t - 1] for t in ids) for ids, _ in self.decode(frames, lengths, beam=1)]
        refs = [" ".join(self.tokens[t - 1] for t in row[:n].tolist()) for row, n in zip(targets, target_lengths)]
        self.val_per.update(hyps, refs)
        self.log("val_per", self.val_per, on_epoch=True, prog_bar=True, batch_size=len(frames))

    @torch.no_grad()
    def decode(self, frames: torch.Tensor, lengths: torch.Tensor, beam: int = 1) -> list[tuple[list[int], float]]:
        """The best output of each recording (token ids, 1-based) and its log probability."""
        log_probs, steps = self(frames, lengths)
        return [prefix_beam_search(lp[:n].float().cpu(), beam)[0] for lp, n in zip(log_probs, steps.tolist())]

    def posteriors(self, frames: torch.Tensor) -> torch.Tensor:
        """One recording's (T', tokens + 1) frame probabilities, blank first (the report's figure)."""
        with torch.no_grad():
            log_probs, _ = self(frames.unsqueeze(0), torch.tensor([len(frames)]))
        return log_probs[0].exp()

    def configure_optimizers(self):
        return configure_optimizers(self, self.hparams.optimizer, self.hparams.scheduler)


class CTCRecognizer(CTCModel):
    """Stacked frames -> a (bidirectional) RNN/LSTM/GRU over packed sequences -> dropout -> the CTC head."""

    def __init__(self, tokens: list[str], n_mels: int, cell: str = "gru", hidden_size: int = 128, num_layers: int = 2,
                 dropout: float = 0.1, nonlinearity: str = "tanh", bidirectional: bool = True, impl: str = "torch",
                 embedding_dim: int | None = None, standardise: dict[str, list[float]] | None = None, stack: int = 2,
                 beam_width: int = 1, optimizer: dict | None = None, scheduler: dict | None = None,
                 task: str | None = None):
        super().__init__(tokens, n_mels, standardise, stack, beam_width, optimizer, scheduler, task)
        self.save_hyperparameters()
        # embedding_dim (conf/model's) is unused: frames are read as they are
        self.rnn = make_rnn(cell, stack * n_mels, hidden_size, num_layers, dropout, nonlinearity, bidirectional, impl)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), self.head_size())

    def encode(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        return self.drop(out)


class WindowCTC(CTCModel):
    """The one-to-one baseline: each step sees only the `context` steps either side of it (zero-padded),
    through a two-layer perceptron, then the same CTC head; nothing carries from step to step."""

    def __init__(self, tokens: list[str], n_mels: int, context: int = 4, hidden_size: int = 256,
                 dropout: float = 0.1, standardise: dict[str, list[float]] | None = None, stack: int = 2,
                 beam_width: int = 1, optimizer: dict | None = None, scheduler: dict | None = None,
                 task: str | None = None):
        super().__init__(tokens, n_mels, standardise, stack, beam_width, optimizer, scheduler, task)
        self.save_hyperparameters()
        self.context = context
        width = (2 * context + 1) * stack * n_mels
        self.mlp = nn.Sequential(nn.Linear(width, hidden_size), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden_size, hidden_size), nn.ReLU(), nn.Dropout(dropout))
        self.head = nn.Linear(hidden_size, self.head_size())

    def encode(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = (torch.arange(x.size(1), device=x.device) < lengths.to(x.device).unsqueeze(1)).unsqueeze(-1)
        x = F.pad(x * mask, (0, 0, self.context, self.context))
        windows = x.unfold(1, 2 * self.context + 1, 1)  # (B, T, F, window)
        return self.mlp(windows.transpose(2, 3).flatten(2))
