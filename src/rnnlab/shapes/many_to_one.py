"""Many-to-one: a sequence in, one value out.

SequenceRegressor reads the last hidden state of fixed-length sequences with a linear layer;
SequenceClassifier reads variable-length ones (packed, so padding never enters the state) and pools
the hidden states into one vector for a class.
"""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlab import RnnlabError
from rnnlab.core.ensemble import Ensemble, training_loss
from rnnlab.core.recurrent import make_rnn
from rnnlab.shapes.classification import SequenceClassifierBase, check_inputs, check_sizes, valid_steps

POOLINGS = ("last", "mean", "max", "attention")
# LSTM-FCN's kernel sizes (Karim et al. 2017), layer by layer, unless module.conv_kernels gives others
CONV_KERNELS = (8, 5, 3)
# the id of <unk> in a classifier's token vocabulary (rnnlab.data.vocab.TokenVocab: padding 0, unknown 1)
UNK_ID = 1


class SequenceRegressor(L.LightningModule):
    def __init__(self, input_size: int, cell: str = "lstm", hidden_size: int = 128, num_layers: int = 1,
                 nonlinearity: str = "tanh", impl: str = "torch", lr: float = 1e-3, forget_bias: float = 1.0,
                 optimizer: str = "adam"):
        super().__init__()
        self.save_hyperparameters()
        self.rnn = make_rnn(cell, input_size, hidden_size, num_layers, nonlinearity=nonlinearity, impl=impl)
        if cell == "lstm":
            # a forget-gate bias of 1 keeps the cell's memory open at the start (Gers et al. 2000;
            # Jozefowicz et al. 2015): it shortens the LSTM's plateau on long-range tasks a lot
            with torch.no_grad():
                for name, p in self.rnn.named_parameters():
                    if name.startswith("bias_ih"):
                        p[hidden_size : 2 * hidden_size].fill_(forget_bias)
                    elif name.startswith("bias_hh"):
                        p[hidden_size : 2 * hidden_size].zero_()
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1]).squeeze(-1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.mse_loss(self(x), y)
        if not math.isfinite(loss.item()):
            # stop this run only, with the reason, instead of training on NaN weights
            raise FloatingPointError(f"loss became {loss.item()} at step {self.global_step}")
        self.log("train_mse", loss, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_mse", F.mse_loss(self(x), y), on_epoch=True)

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_mse", F.mse_loss(self(x), y), on_epoch=True)

    def configure_optimizers(self):
        if self.hparams.lr <= 0:
            raise RnnlabError(f"lr must be positive, got {self.hparams.lr}")
        # plain SGD lets an exploding gradient become an exploding step; Adam's scaling would hide it
        optimizers = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}
        if self.hparams.optimizer not in optimizers:
            raise RnnlabError(f"optimizer must be 'adam' or 'sgd', got {self.hparams.optimizer!r}")
        return optimizers[self.hparams.optimizer](self.parameters(), lr=self.hparams.lr)


class AdditiveAttention(nn.Module):
    """Bahdanau-style scores v . tanh(W h_t + b) against one learned query; softmax over valid steps only."""

    def __init__(self, size: int, attention_dim: int):
        super().__init__()
        self.proj = nn.Linear(size, attention_dim)
        self.score = nn.Linear(attention_dim, 1, bias=False)

    def forward(self, out: torch.Tensor, mask: torch.Tensor):
        scores = self.score(torch.tanh(self.proj(out))).squeeze(-1).masked_fill(~mask, -math.inf)
        weights = torch.softmax(scores, dim=1)
        return (weights.unsqueeze(-1) * out).sum(1), weights


class ConvBranch(nn.Module):
    """LSTM-FCN's fully convolutional branch (Karim et al. 2017), beside the recurrent layer on the same inputs:
    per layer Conv1d ("same" padding) -> BatchNorm -> ReLU, then the mean over each sequence's own steps. Padded
    steps are zeroed before every convolution, so a sequence reads as if alone (in eval mode; in training the
    batch statistics see the zeros too)."""

    def __init__(self, size: int, channels: list[int], kernels: list[int]):
        super().__init__()
        self.kernels = list(kernels)
        self.convs = nn.ModuleList(nn.Conv1d(n_in, width, kernel)
                                   for n_in, width, kernel in zip([size, *channels], channels, kernels))
        self.norms = nn.ModuleList(nn.BatchNorm1d(width) for width in channels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, size) and the (B, T) mask of valid steps -> (B, channels[-1])."""
        keep = mask.unsqueeze(1).to(x.dtype)
        h = x.transpose(1, 2)
        for conv, norm, k in zip(self.convs, self.norms, self.kernels):
            # "same" padding by hand: torch's warns at every call for an even kernel
            h = torch.relu(norm(conv(F.pad(h * keep, ((k - 1) // 2, k // 2)))))
        return (h * keep).sum(-1) / keep.sum(-1)


class Member(nn.Module):
    """One recurrent classifier: embedding (token ids) or linear projection (frames) -> RNN/LSTM/GRU over packed
    sequences -> pooling -> dropout -> linear layer, with LSTM-FCN's convolution branch beside the recurrent layer
    when `conv_channels` are given."""

    def __init__(self, num_classes: int, vocab_size: int | None, input_size: int | None, embedding_dim: int,
                 cell: str, hidden_size: int, num_layers: int, dropout: float, nonlinearity: str, bidirectional: bool,
                 pooling: str, attention_dim: int, impl: str, conv_channels: list[int] | None, conv_kernels: list[int]):
        super().__init__()
        self.pooling, self.directions = pooling, 2 if bidirectional else 1
        self.drop = nn.Dropout(dropout)
        # built in this order (encoder, rnn, attention, conv, head): a model draws its weights as before members
        self.encoder: nn.Module = (nn.Embedding(vocab_size, embedding_dim, padding_idx=0) if vocab_size is not None
                                   else nn.Linear(input_size, embedding_dim))  # type: ignore[arg-type]  # one is set
        self.rnn = make_rnn(cell, embedding_dim, hidden_size, num_layers, dropout, nonlinearity, bidirectional, impl)
        features = hidden_size * self.directions
        self.attention = AdditiveAttention(features, attention_dim) if pooling == "attention" else None
        # built before the head only when asked for: a model without it draws its weights as before
        self.conv = ConvBranch(embedding_dim, conv_channels, conv_kernels) if conv_channels else None
        self.head = nn.Linear(features + (conv_channels[-1] if conv_channels else 0), num_classes)

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids or (B, T, C) frames, their lengths and (B, T) mask of valid steps -> (B, classes)."""
        x = self.drop(self.encoder(inputs))
        # packing runs each sequence for its own length only, so padding never reaches the state
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        h_n = state[0] if isinstance(state, tuple) else state
        pooled = self.pool(out, h_n, mask)
        if self.conv is not None:
            pooled = torch.cat([pooled, self.conv(x, mask)], dim=-1)
        return self.head(self.drop(pooled))

    def pool(self, out: torch.Tensor, h_n: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, features) hidden states of the last layer -> (B, features), padded steps left out."""
        if self.pooling == "last":
            # the last layer's final states: forward ends on each sequence's last step, backward on its first
            return torch.cat(list(h_n[-self.directions:]), dim=-1)
        if self.pooling == "mean":
            return out.masked_fill(~mask.unsqueeze(-1), 0).sum(1) / mask.sum(1, keepdim=True)
        if self.pooling == "max":
            return out.masked_fill(~mask.unsqueeze(-1), -math.inf).amax(1)
        assert self.attention is not None, "pooling is attention: __init__ built one"
        return self.attention(out, mask)[0]


class SequenceClassifier(Ensemble, SequenceClassifierBase):
    """`members` recurrent classifiers (Member; one by default) over token ids or frames, pooling "last", "mean",
    "max" or "attention".

    `members` > 1: a deep ensemble (rnnlab.core.ensemble), each member initialised by its own draws and trained on
    the same batches with its own loss and gradient clipping; the model's output is the log of their mean class
    probability (Lakshminarayanan et al. 2017), so its softmax is that mean and its cross-entropy (the validation
    loss) the ensemble's.

    `conv_channels` (LSTM-FCN, Karim et al. 2017): a ConvBranch of those widths reads the same inputs as the
    recurrent layer, and its pooled output joins the recurrent one before the head; `conv_kernels` its kernel
    sizes (8, 5, 3 by default, as theirs).

    Regularisers of training alone: `token_dropout` turns each valid input token into <unk> with that probability
    (token ids only; character dropout for names), `label_smoothing` F.cross_entropy's of the training loss."""

    def __init__(self, num_classes: int, vocab_size: int | None = None, input_size: int | None = None,
                 embedding_dim: int = 64, cell: str = "lstm", hidden_size: int = 128, num_layers: int = 1,
                 dropout: float = 0.1, nonlinearity: str = "tanh", bidirectional: bool = False,
                 pooling: str = "last", attention_dim: int = 64, impl: str = "torch", members: int = 1,
                 conv_channels: list[int] | None = None, conv_kernels: list[int] | None = None,
                 token_dropout: float = 0.0, label_smoothing: float = 0.0,
                 class_weights: list[float] | None = None, optimizer: dict | None = None, scheduler: dict | None = None,
                 task: str | None = None, labels: list[str] | None = None, vocab: list[str] | None = None,
                 standardise: dict[str, list[float]] | None = None):
        super().__init__(num_classes, vocab_size, input_size, class_weights, task, labels, vocab, standardise)
        check_sizes(attention_dim=attention_dim, members=members)
        kernels = list(conv_kernels or CONV_KERNELS[:len(conv_channels or ())])
        if len(kernels) != len(conv_channels or ()):
            raise RnnlabError(f"module.conv_kernels: one kernel size per entry of module.conv_channels "
                              f"({conv_channels!r}), got {conv_kernels!r}")
        check_sizes(**{f"conv_channels[{i}]": c for i, c in enumerate(conv_channels or ())},
                    **{f"conv_kernels[{i}]": k for i, k in enumerate(kernels)})
        for key, p in (("token_dropout", token_dropout), ("label_smoothing", label_smoothing)):
            if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p < 1:
                raise RnnlabError(f"module.{key} must be a number in [0, 1), got {p!r}")
        if token_dropout and vocab_size is None:
            raise RnnlabError("module.token_dropout replaces token ids by <unk>; this model reads frames: set it to 0")
        if pooling not in POOLINGS:
            raise RnnlabError(f"model.pooling: unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
        self.save_hyperparameters()
        self.input_size = input_size
        self.members = nn.ModuleList(
            Member(num_classes, vocab_size, input_size, embedding_dim, cell, hidden_size, num_layers, dropout,
                   nonlinearity, bidirectional, pooling, attention_dim, impl, conv_channels, kernels)
            for _ in range(members))

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        each = self.member_logits(inputs, lengths)
        if len(each) == 1:
            return each[0]
        # log of the mean probability: logsumexp of the members' log-probabilities, less log(members)
        return torch.logsumexp(torch.stack([F.log_softmax(x, dim=-1) for x in each]), dim=0) - math.log(len(each))

    def member_logits(self, inputs: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        check_inputs(inputs, self.input_size)
        mask = valid_steps(lengths, inputs.size(1), inputs.device)
        return [member(self.drop_tokens(inputs, mask), lengths, mask) for member in self.members]

    def drop_tokens(self, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """In training, each valid token becomes <unk> with probability token_dropout (each member its own draws),
        so the model cannot lean on one character; padding stays padding, and evaluation sees the input as is."""
        p = self.hparams["token_dropout"]
        if not self.training or not p:
            return inputs
        return inputs.masked_fill(mask & (torch.rand(inputs.shape, device=inputs.device) < p), UNK_ID)

    def training_step(self, batch, batch_idx):
        inputs, lengths, labels = batch
        # one member: the same loss as SequenceClassifierBase's, label smoothing aside (validation has none)
        loss, shown = training_loss([F.cross_entropy(x, labels, weight=self.class_weights,
                                                     label_smoothing=self.hparams["label_smoothing"])
                                     for x in self.member_logits(inputs, lengths)])
        self.log("train_loss", shown, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(labels))
        return loss
