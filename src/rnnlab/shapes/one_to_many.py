"""One-to-many: one input (a language) in, a sequence (a surname, character by character) out.

SurnameGenerator is a character language model conditioned on a language: a learned language embedding
either initialises the recurrent state (`condition=init`: a linear map of it, through tanh, is h_0 of every
layer, and c_0 for an LSTM) or joins the character embedding at every step (`condition=step`). Trained with
teacher forcing on `<s> name </s>`; generation starts from `<s>` and samples characters until `</s>` or
`max_length` characters.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rnnlab import RnnlabError
from rnnlab.core.recurrent import make_rnn
from rnnlab.data.vocab import BOS, EOS
from rnnlab.shapes.classification import check_sizes
from rnnlab.shapes.many_to_many import CharacterModel, check_temperature, sample_next

CONDITIONS = ("init", "step")
# never generated: padding and the unknown character (ids 0 and 1 of the vocabulary), and the start symbol
PAD_ID, UNK_ID = 0, 1


class SurnameGenerator(CharacterModel):
    """`vocab` (every symbol, by id; `<s>` and `</s>` among them), `labels` (the languages) and `task` are kept
    in the hyperparameters as plain lists, so the checkpoint alone generates and loads with weights_only=True."""

    def __init__(self, num_classes: int, vocab_size: int, vocab: list[str], labels: list[str],
                 task: str = "surname_gen", cell: str = "lstm", embedding_dim: int = 32, hidden_size: int = 128,
                 num_layers: int = 1, dropout: float = 0.1, nonlinearity: str = "tanh", bidirectional: bool = False,
                 impl: str = "torch", condition: str = "init", language_dim: int = 32, max_length: int = 40,
                 optimizer: dict | None = None, scheduler: dict | None = None):
        super().__init__()
        if bidirectional:
            raise RnnlabError("model.bidirectional: a generator predicts the next character and must not see it")
        if condition not in CONDITIONS:
            raise RnnlabError(f"module.condition must be one of {', '.join(CONDITIONS)}, got {condition!r}")
        check_sizes(num_classes=num_classes, vocab_size=vocab_size, language_dim=language_dim, max_length=max_length)
        for key, value, size in (("vocab", vocab, vocab_size), ("labels", labels, num_classes)):
            if len(value) != size:
                raise RnnlabError(f"module.{key} holds {len(value)} entries, the model {size}")
        if BOS not in vocab or EOS not in vocab:
            raise RnnlabError(f"module.vocab must hold the start and end symbols {BOS} and {EOS}")
        self.save_hyperparameters()
        self.bos, self.eos = vocab.index(BOS), vocab.index(EOS)
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD_ID)
        self.language = nn.Embedding(num_classes, language_dim)
        steps_in = embedding_dim + (language_dim if condition == "step" else 0)
        self.rnn = make_rnn(cell, steps_in, hidden_size, num_layers, dropout, nonlinearity, impl=impl)
        # init: the language's state, for every layer (h and c for an LSTM)
        parts = num_layers * (2 if cell == "lstm" else 1)
        self.to_state = nn.Linear(language_dim, parts * hidden_size) if condition == "init" else None
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size)

    def initial_state(self, languages: torch.Tensor):
        """h_0 (and c_0) of shape (layers, B, hidden) from the languages (B,); None (zeros) for `step`."""
        if self.to_state is None:
            return None
        h = self.hparams
        state = torch.tanh(self.to_state(self.language(languages)))  # (B, parts * hidden)
        state = state.view(len(languages), -1, h.num_layers, h.hidden_size).permute(1, 2, 0, 3).contiguous()
        return (state[0], state[1]) if h.cell == "lstm" else state[0]

    def forward(self, ids: torch.Tensor, languages: torch.Tensor, state=None):
        """ids (B, T), languages (B,) -> logits (B, T, vocab) and the state after the last step. Without a
        state the sequence starts fresh: from the language's state (`init`) or from zeros (`step`)."""
        x = self.embedding(ids)
        if self.hparams.condition == "step":
            x = torch.cat([x, self.language(languages)[:, None].expand(-1, ids.size(1), -1)], dim=-1)
        if state is None:
            state = self.initial_state(languages)
        out, state = self.rnn(self.drop(x), state)
        return self.head(self.drop(out)), state

    def name_nll(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Per name of a batch `(ids, lengths, languages)`: the summed negative log-likelihood (nats) of its
        characters and end symbol given the language, and how many symbols that is (its length + 1)."""
        ids, _, languages = batch
        logits, _ = self(ids[:, :-1], languages)
        target = ids[:, 1:]
        # padding is no target: a row's steps past its end symbol add nothing (the RNN is causal, so they
        # never change the steps before)
        nll = F.cross_entropy(logits.transpose(1, 2).float(), target, ignore_index=PAD_ID, reduction="none")
        return nll.sum(1), (target != PAD_ID).sum(1)

    def _mean_nll(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        nll, count = self.name_nll(batch)
        return nll.sum() / count.sum(), count.sum()

    def training_step(self, batch, batch_idx):
        loss, _ = self._mean_nll(batch)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch[0]))
        return loss

    def validation_step(self, batch, batch_idx):
        loss, count = self._mean_nll(batch)
        self.nll["val"].update(loss, weight=count)

    def test_step(self, batch, batch_idx):
        loss, count = self._mean_nll(batch)
        self.nll["test"].update(loss, weight=count)

    def language_id(self, language: str) -> int:
        """The id of a language, matched ignoring case; an unknown one names the languages the model knows."""
        labels = self.hparams.labels
        found = [i for i, label in enumerate(labels) if label.casefold() == language.strip().casefold()]
        if not found:
            raise RnnlabError(f"unknown language {language!r}; the model knows {', '.join(labels)}")
        return found[0]

    @torch.inference_mode()
    def generate(self, language: str, n: int = 1, temperature: float = 0.8, seed: int | None = None,
                 max_length: int | None = None) -> list[str]:
        """`n` names for `language`, sampled in one batch; temperature 0 is greedy (n copies of one name). Each
        name ends where the model emits `</s>`, or after `max_length` characters (default: the model's)."""
        language_id = self.language_id(language)
        if not isinstance(n, int) or n < 1:
            raise RnnlabError(f"the number of names must be a positive integer, got {n!r}")
        check_temperature(temperature)
        max_length = self.hparams.max_length if max_length is None else max_length
        if not isinstance(max_length, int) or max_length < 1:
            raise RnnlabError(f"max_length must be a positive integer, got {max_length!r}")
        was_training = self.training
        self.eval()
        gen = torch.Generator(device="cpu")
        if seed is not None:
            gen.manual_seed(seed)
        languages = torch.full((n,), language_id, dtype=torch.long, device=self.device)
        ids = torch.full((n, 1), self.bos, dtype=torch.long, device=self.device)
        state, done, out = None, torch.zeros(n, dtype=torch.bool), []
        for step in range(max_length):
            logits, state = self(ids, languages, state)
            last = logits[:, -1].float().cpu()
            last[:, [PAD_ID, UNK_ID, self.bos]] = -math.inf
            if step == 0:
                last[:, self.eos] = -math.inf  # a name has at least one character
            nxt = sample_next(last, temperature, gen)
            out.append(nxt)
            done |= nxt == self.eos
            if done.all():
                break
            ids = nxt[:, None].to(self.device)
        self.train(was_training)
        vocab = self.hparams.vocab
        names = []
        for row in torch.stack(out, 1).tolist():
            chars = row[:row.index(self.eos)] if self.eos in row else row
            names.append("".join(vocab[i] for i in chars))
        return names
