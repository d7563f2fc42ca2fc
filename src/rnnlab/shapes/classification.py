"""What every sequence classifier shares, recurrent or not: the batch, the loss, the metrics, the optimizer.

A batch is `(inputs, lengths, labels)` (rnnlab.data.padding.collate): `inputs` a padded LongTensor (B, T)
of token ids or a FloatTensor (B, T, C) of frames, `lengths` the valid steps of each row, `labels` (B,).
A subclass builds its layers and defines `forward(inputs, lengths) -> logits (B, num_classes)`; the metric
names are the same for every model, so runs compare side by side.
"""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from rnnlab import RnnlabError
from rnnlab.core.checkpoint import RecordsClass
from rnnlab.core.optim import configure_optimizers
from rnnlab.data.padding import pad
from rnnlab.data.vocab import TokenVocab


def check_input_kind(vocab_size: int | None, input_size: int | None) -> None:
    """Token ids need a vocabulary, frames a channel count; one model reads one of them."""
    if (vocab_size is None) == (input_size is None):
        raise RnnlabError("model.vocab_size (token ids) or model.input_size (real-valued frames): give exactly "
                          f"one, got vocab_size={vocab_size!r}, input_size={input_size!r}")
    check_sizes(**{"vocab_size": vocab_size} if input_size is None else {"input_size": input_size})


def check_sizes(**sizes) -> None:
    for key, value in sizes.items():
        if not isinstance(value, int) or value < 1:
            raise RnnlabError(f"model.{key} must be a positive integer, got {value!r}")


def check_inputs(inputs: torch.Tensor, input_size: int | None) -> None:
    """Token ids are an integer (B, T) tensor, frames a float (B, T, input_size) one."""
    if input_size is None and (inputs.dim() != 2 or inputs.is_floating_point()):
        raise RnnlabError(f"inputs: a token model takes integer ids of shape (B, T), got {inputs.dtype} "
                          f"{tuple(inputs.shape)}")
    if input_size is not None and (inputs.dim() != 3 or inputs.size(-1) != input_size
                                   or not inputs.is_floating_point()):
        raise RnnlabError(f"inputs: a frame model takes floats of shape (B, T, {input_size}) "
                          f"(model.input_size={input_size}), got {inputs.dtype} {tuple(inputs.shape)}")


def valid_steps(lengths: torch.Tensor, steps: int, device) -> torch.Tensor:
    """(B, T) True on each sequence's own steps, False on its padding."""
    return torch.arange(steps, device=device)[None] < lengths.to(device)[:, None]


class SequenceClassifierBase(RecordsClass, L.LightningModule):
    """`task`, `labels`, `vocab` (every token, by id) and `standardise` ({"mean": [...], "std": [...]} per
    channel) are what turns raw input into tensors and a class id back into a name: kept as plain lists in
    the hyperparameters, so a checkpoint alone serves `rnnlab predict` and loads with weights_only=True."""

    def __init__(self, num_classes: int, vocab_size: int | None, input_size: int | None,
                 class_weights: list[float] | None, task: str | None = None,
                 labels: list[str] | None = None, vocab: list[str] | None = None,
                 standardise: dict[str, list[float]] | None = None):
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 2:
            raise RnnlabError(f"model.num_classes must be an integer >= 2, got {num_classes!r}")
        check_input_kind(vocab_size, input_size)
        for key, value, size in (("labels", labels, num_classes), ("vocab", vocab, vocab_size),
                                 ("standardise.mean", (standardise or {}).get("mean"), input_size),
                                 ("standardise.std", (standardise or {}).get("std"), input_size)):
            if value is not None and len(value) != size:
                raise RnnlabError(f"module.{key} holds {len(value)} entries, the model {size}")
        if class_weights is not None:
            class_weights = [float(w) for w in class_weights]
            if len(class_weights) != num_classes or not all(math.isfinite(w) and w >= 0 for w in class_weights) \
                    or not any(class_weights):
                raise RnnlabError(f"module.class_weights must hold one finite weight >= 0 per class "
                                  f"(num_classes={num_classes}), not all zero; got {class_weights!r}")
            class_weights = torch.tensor(class_weights)  # type: ignore[assignment]  # the buffer holds a tensor
        # a buffer follows the module to the GPU and into the checkpoint
        self.register_buffer("class_weights", class_weights)  # type: ignore[arg-type]  # a tensor or None by now
        # accuracy is the plain fraction right (micro); macro F1 weighs every class alike, so a rare
        # class the model ignores shows there and not in the accuracy
        self.metrics = nn.ModuleDict({stage: MetricCollection({
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "macro_f1": MulticlassF1Score(num_classes, average="macro"),
        }, prefix=f"{stage}_") for stage in ("val", "test")})

    def _loss(self, batch):
        inputs, lengths, labels = batch
        logits = self(inputs, lengths)
        return logits, labels, F.cross_entropy(logits, labels, weight=self.class_weights)

    def training_step(self, batch, batch_idx):
        _, labels, loss = self._loss(batch)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(labels))
        return loss

    def _evaluate(self, batch, stage: str):
        logits, labels, loss = self._loss(batch)
        self.metrics[stage].update(logits, labels)  # type: ignore[operator]  # ModuleDict items are typed Module
        self.log(f"{stage}_loss", loss, on_epoch=True, prog_bar=True, batch_size=len(labels))
        self.log_dict(self.metrics[stage], on_step=False, on_epoch=True)  # type: ignore[arg-type]  # a MetricCollection

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")

    def predict_step(self, batch, batch_idx):
        """Class probabilities (B, num_classes); the labels, if the batch has them, are not needed."""
        inputs, lengths = batch[0], batch[1]
        return torch.softmax(self(inputs, lengths), dim=-1)

    def configure_optimizers(self):
        return configure_optimizers(self, self.hparams.optimizer, self.hparams.scheduler)


def encode_tokens(tokens: list[str], vocab: list[str]) -> torch.Tensor:
    # unknown words or characters become <unk>, as in training
    return torch.tensor(TokenVocab(tuple(vocab[len(TokenVocab.SPECIALS):])).encode(tokens))


def probabilities(model, encoded: list[torch.Tensor], batch_size: int = 256) -> torch.Tensor:
    """Class probabilities (N, classes) of encoded inputs (token ids or frames, one tensor each), in their order."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(encoded), batch_size):
            inputs, lengths = pad(encoded[start:start + batch_size])
            out.append(model.predict_step((inputs.to(model.device), lengths), 0).float().cpu())
    return torch.cat(out)


def top_labels(model, steps: torch.Tensor, top_k: int) -> list[tuple[str, float]]:
    """The `top_k` most probable labels of one encoded input, with their probabilities."""
    values, ids = probabilities(model, [steps])[0].topk(top_k)
    labels = model.hparams["labels"]
    return [(labels[i], float(p)) for p, i in zip(values.tolist(), ids.tolist())]
