"""Subword units shared by the encoder-decoder tasks: SentencePiece models trained on a task's train split,
kept in checkpoints as base64 text, and the padded (source, lengths, target) batches of id pairs."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from rnnlab import RnnlabError
from rnnlab.data.sampling import PIN_MEMORY, BucketSampler

# SentencePiece ids: padding 0 (the models' padding_idx), unknown 1, begin 2, end 3
PAD, UNK, BOS, EOS = 0, 1, 2, 3


def train_sentencepiece(texts: Sequence[str], vocab_size: int, model_type: str = "bpe") -> bytes:
    """A SentencePiece model (its serialised proto) trained on `texts` in their order, on one thread:
    the same texts give the same model."""
    import sentencepiece as spm

    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size, model_type=model_type,
            character_coverage=1.0, pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS, num_threads=1,
            input_sentence_size=0, shuffle_input_sentence=False, minloglevel=2)
    except RuntimeError as e:
        raise RnnlabError(f"sentencepiece training failed (vocab_size={vocab_size}): {e}") from e
    return model.getvalue()


def load_sentencepiece(proto: bytes | str):
    """A SentencePieceProcessor from the serialised model (bytes, or base64 text as checkpoints keep it)."""
    import sentencepiece as spm

    if isinstance(proto, str):
        proto = base64.b64decode(proto)
    return spm.SentencePieceProcessor(model_proto=proto)


def collate(batch):
    """[(source ids, target ids)] -> (source (B, S) padded, source lengths (B,), target (B, T+2) with
    BOS ... EOS, padded)."""
    src = [torch.tensor(s) for s, _ in batch]
    tgt = [torch.tensor([BOS, *t, EOS]) for _, t in batch]
    lengths = torch.tensor([len(s) for s in src])
    return (pad_sequence(src, batch_first=True, padding_value=PAD), lengths,
            pad_sequence(tgt, batch_first=True, padding_value=PAD))


class PairLoaders:
    """The loaders of a data module whose `data[split]` holds (source ids, target ids) pairs (translate,
    summarize): training batches of similar total length with `bucket` (BucketSampler), else shuffled; evaluation
    in row order, so predictions line up with the rows of the split."""

    data: dict
    batch_size: int
    eval_batch_size: int
    bucket: bool

    def train_dataloader(self):
        if not self.bucket:
            return StatefulDataLoader(self.data["train"], batch_size=self.batch_size, shuffle=True, collate_fn=collate,
                                      pin_memory=PIN_MEMORY)
        lengths = [len(s) + len(t) for s, t in self.data["train"]]
        return StatefulDataLoader(self.data["train"], batch_sampler=BucketSampler(lengths, self.batch_size),
                                  collate_fn=collate, pin_memory=PIN_MEMORY)

    def _eval_loader(self, split: str) -> DataLoader:
        return DataLoader(self.data[split], batch_size=self.eval_batch_size, shuffle=False, collate_fn=collate,
                          pin_memory=PIN_MEMORY)

    def val_dataloader(self):
        return self._eval_loader("validation")

    def test_dataloader(self):
        return self._eval_loader("test")
