"""Many-to-many, aligned: a character language model trained with stateful truncated BPTT; and what the
character-level models share (bits per character, the optimizer, sampling the next character)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import move_data_to_device
from torch import nn
from torchmetrics import MeanMetric

from rnnlab import RnnlabError
from rnnlab.core.checkpoint import RecordsClass
from rnnlab.core.optim import configure_optimizers
from rnnlab.core.recurrent import detach_state, make_rnn
from rnnlab.data.vocab import CharVocab


def check_temperature(temperature: float) -> None:
    if not (math.isfinite(temperature) and temperature >= 0):
        raise RnnlabError(f"temperature must be >= 0 and finite, got {temperature}")


def sample_next(logits: torch.Tensor, temperature: float, generator: torch.Generator) -> torch.Tensor:
    """The next character id from logits (..., vocab): the likeliest at temperature 0, else drawn from
    softmax(logits / temperature) (below 1 sharper, above 1 flatter). Returns (...)."""
    if temperature == 0:
        return logits.argmax(-1)
    return torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator).squeeze(-1)


class CharacterModel(RecordsClass, L.LightningModule):
    """A model that predicts characters: scored in bits per character (the validation and test negative
    log-likelihood, averaged over characters), trained with the config's optimizer and schedule
    (rnnlab.core.optim). A subclass updates self.nll[stage] with each batch's mean loss, weighted by its
    number of characters."""

    if TYPE_CHECKING:  # Lightning types hparams AttributeDict | MutableMapping; it is read by attribute here
        hparams: Any

    def __init__(self):
        super().__init__()
        self.nll = nn.ModuleDict({stage: MeanMetric() for stage in ("val", "test")})

    def _log_epoch(self, stage: str):
        nll = self.nll[stage].compute()  # type: ignore[operator]  # ModuleDict items are typed Module
        bpc = nll / math.log(2)
        self.log_dict({f"{stage}_loss": nll, f"{stage}_bpc": bpc, f"{stage}_perplexity": 2 ** bpc}, prog_bar=True)
        self.nll[stage].reset()  # type: ignore[operator]  # ModuleDict items are typed Module

    def on_validation_epoch_end(self):
        self._log_epoch("val")

    def on_test_epoch_end(self):
        self._log_epoch("test")

    def configure_optimizers(self):
        return configure_optimizers(self, self.hparams.optimizer, self.hparams.scheduler)


class CharLanguageModel(CharacterModel):
    def __init__(self, chars: list[str], cell: str = "lstm", embedding_dim: int = 64, hidden_size: int = 256,
                 num_layers: int = 2, dropout: float = 0.1, nonlinearity: str = "tanh", bidirectional: bool = False,
                 impl: str = "torch", optimizer: dict | None = None, scheduler: dict | None = None):
        super().__init__()
        if bidirectional:
            raise RnnlabError("model.bidirectional: a language model predicts the next character and must not see it")
        self.save_hyperparameters()
        self.vocab = CharVocab(tuple(chars))
        vocab_size = len(self.vocab)
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.rnn = make_rnn(cell, embedding_dim, hidden_size, num_layers, dropout, nonlinearity, impl=impl)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size)
        self._state: dict[str, Any] = {}

    def forward(self, x: torch.Tensor, state=None):
        out, state = self.rnn(self.drop(self.embedding(x)), state)
        return self.head(self.drop(out)), state

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        logits, state = self(x, self._state.get(stage))
        self._state[stage] = detach_state(state)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))

    # the carried state must not leak from one epoch (or one split) into the next
    def on_train_epoch_start(self):
        self._state.pop("train", None)

    # a run resumed mid-epoch (Lightning then skips on_train_epoch_start) carries on with the saved state
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if not self.trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            checkpoint["carried_state"] = self._state.get("train")

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._state["train"] = checkpoint.get("carried_state")

    def on_train_start(self):
        self._state["train"] = move_data_to_device(self._state.get("train"), self.device)  # loaded on the CPU

    def on_validation_epoch_start(self):
        self._state.pop("val", None)

    def on_test_epoch_start(self):
        self._state.pop("test", None)

    def training_step(self, batch, batch_idx):
        loss = self._step(batch, "train")
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self.nll["val"].update(self._step(batch, "val"), weight=batch[1].numel())

    def test_step(self, batch, batch_idx):
        self.nll["test"].update(self._step(batch, "test"), weight=batch[1].numel())

    @torch.inference_mode()
    def generate(self, prompt: str, length: int, temperature: float = 0.8, seed: int | None = None) -> str:
        """Continue `prompt` by `length` sampled characters; temperature 0 is greedy."""
        unknown = self.vocab.unknown(prompt)
        if unknown:
            raise RnnlabError(f"prompt holds characters the model has never seen: {''.join(unknown)!r}")
        if length < 0:
            raise RnnlabError(f"length must be >= 0, got {length}")
        check_temperature(temperature)
        was_training = self.training
        self.eval()
        gen = torch.Generator(device="cpu")
        if seed is not None:
            gen.manual_seed(seed)
        ids = torch.as_tensor(self.vocab.encode(prompt or "\n"), dtype=torch.long, device=self.device)[None]
        logits, state = self(ids)
        out = []
        for _ in range(length):
            last = logits[0, -1].float().cpu()
            last[0] = -math.inf  # never emit the unknown symbol
            nxt = int(sample_next(last, temperature, gen))
            out.append(nxt)
            logits, state = self(torch.tensor([[nxt]], device=self.device), state)
        self.train(was_training)
        return prompt + self.vocab.decode(out)
