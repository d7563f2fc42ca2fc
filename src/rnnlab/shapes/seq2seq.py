"""Many-to-many, encoder-decoder: a bidirectional recurrent encoder reads the source sentence, a recurrent
decoder with attention writes the target one token at a time.

Training uses teacher forcing: the decoder reads the reference target shifted by one and runs over the whole
sequence at once; attention (Luong et al. 2015, "general" h_t^T W h_s, or Bahdanau's additive
v^T tanh(W_q h_t + W_k h_s)) is computed after the recurrent layer from the decoder's output and the
encoder's states, and [h_t; context] -> tanh -> the vocabulary. Decoding runs the same step one token at a
time: greedy (batched), or beam search with a GNMT length penalty ((5 + length) / 6) ** alpha.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlab import RnnlabError
from rnnlab.core.checkpoint import RecordsClass
from rnnlab.core.optim import configure_optimizers
from rnnlab.core.recurrent import make_rnn
from rnnlab.data.subwords import BOS, EOS, PAD, load_sentencepiece
from rnnlab.shapes.beam import beam_search, gnmt_penalty, layers_first

ATTENTIONS = ("general", "additive")


class Attention(nn.Module):
    """Scores of each query (B, T, D) against each encoder state (B, S, K), masked to the valid steps."""

    def __init__(self, kind: str, query_size: int, key_size: int, attention_dim: int):
        super().__init__()
        if kind not in ATTENTIONS:
            raise RnnlabError(f"module.attention must be one of {', '.join(ATTENTIONS)}, got {kind!r}")
        self.kind = kind
        if kind == "general":
            self.key = nn.Linear(key_size, query_size, bias=False)
        else:
            self.key = nn.Linear(key_size, attention_dim, bias=False)
            self.query = nn.Linear(query_size, attention_dim)
            self.score = nn.Linear(attention_dim, 1, bias=False)

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        return self.key(memory)  # once per source sentence

    def forward(self, query, keys, memory, mask):
        if self.kind == "general":
            scores = query @ keys.transpose(1, 2)  # (B, T, S)
        else:
            scores = self.score(torch.tanh(self.query(query)[:, :, None] + keys[:, None])).squeeze(-1)
        weights = torch.softmax(scores.float().masked_fill(~mask[:, None], -math.inf), dim=-1).to(memory.dtype)
        return weights @ memory, weights


class Seq2SeqTranslator(RecordsClass, L.LightningModule):
    if TYPE_CHECKING:  # Lightning types hparams AttributeDict | MutableMapping; it is read by attribute here
        hparams: Any

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, cell: str = "gru", embedding_dim: int = 128,
                 hidden_size: int = 128, num_layers: int = 1, dropout: float = 0.2, nonlinearity: str = "tanh",
                 impl: str = "torch", decoder_size: int = 256, attention: str = "general", attention_dim: int = 128,
                 label_smoothing: float = 0.1, optimizer: dict | None = None, scheduler: dict | None = None,
                 beam_width: int = 4, length_penalty: float = 1.0, max_decode_len: int = 200,
                 decode_ratio: float = 2.0, task: str = "translate",
                 spm_src: str | None = None, spm_tgt: str | None = None, max_source_tokens: int = 100):
        super().__init__()
        for key, value in (("src_vocab_size", src_vocab_size), ("tgt_vocab_size", tgt_vocab_size),
                           ("decoder_size", decoder_size), ("attention_dim", attention_dim),
                           ("beam_width", beam_width), ("max_decode_len", max_decode_len)):
            if not isinstance(value, int) or value < 1:
                raise RnnlabError(f"module.{key} must be a positive integer, got {value!r}")
        if not 0 <= label_smoothing < 1:
            raise RnnlabError(f"module.label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.save_hyperparameters()
        self.cell = cell
        self.src_embed = nn.Embedding(src_vocab_size, embedding_dim, padding_idx=PAD)
        self.tgt_embed = nn.Embedding(tgt_vocab_size, embedding_dim, padding_idx=PAD)
        self.encoder = make_rnn(cell, embedding_dim, hidden_size, num_layers, dropout, nonlinearity,
                                bidirectional=True, impl=impl)
        self.decoder = make_rnn(cell, embedding_dim, decoder_size, num_layers, dropout, nonlinearity, impl=impl)
        memory_size = 2 * hidden_size
        # the encoder's final states (both directions) -> the decoder's initial state, per layer
        self.bridge = nn.Linear(memory_size, decoder_size)
        self.attention = Attention(attention, decoder_size, memory_size, attention_dim)
        self.combine = nn.Linear(decoder_size + memory_size, decoder_size)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(decoder_size, tgt_vocab_size)
        self._sps: dict[str, Any] = {}

    # --- the network
    def encode(self, src: torch.Tensor, lengths: torch.Tensor):
        """(B, S) ids -> memory (B, S, 2H), keys, mask (B, S), decoder state."""
        x = self.drop(self.src_embed(src))
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.encoder(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=src.size(1))
        mask = torch.arange(src.size(1), device=src.device)[None] < lengths.to(src.device)[:, None]

        def bridge(h):  # (layers * 2, B, H) -> (layers, B, D)
            layers, batch = h.size(0) // 2, h.size(1)
            h = h.view(layers, 2, batch, -1).permute(0, 2, 1, 3).reshape(layers, batch, -1)
            return torch.tanh(self.bridge(h)).contiguous()

        state = tuple(bridge(s) for s in state) if isinstance(state, tuple) else bridge(state)
        return memory, self.attention.keys(memory), mask, state

    def decode(self, tgt_in: torch.Tensor, memory, keys, mask, state):
        """(B, T) previous target ids -> logits (B, T, V), the decoder state, attention weights (B, T, S)."""
        out, state = self.decoder(self.drop(self.tgt_embed(tgt_in)), state)
        context, weights = self.attention(out, keys, memory, mask)
        combined = torch.tanh(self.combine(torch.cat([out, context], dim=-1)))
        return self.out(self.drop(combined)), state, weights

    def forward(self, src, lengths, tgt_in):
        memory, keys, mask, state = self.encode(src, lengths)
        return self.decode(tgt_in, memory, keys, mask, state)[0]

    # --- training
    def _loss(self, batch, smoothing: float):
        src, lengths, tgt = batch
        logits = self(src, lengths, tgt[:, :-1])
        target = tgt[:, 1:]
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), target.reshape(-1), ignore_index=PAD,
                               label_smoothing=smoothing, reduction="sum")
        return loss, int((target != PAD).sum())

    def training_step(self, batch, batch_idx):
        loss, tokens = self._loss(batch, self.hparams.label_smoothing)
        loss = loss / tokens
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss became {loss.item()} at step {self.global_step}")
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=tokens)
        return loss

    def on_validation_epoch_start(self):
        self._nll = [0.0, 0]

    def on_test_epoch_start(self):
        self._nll = [0.0, 0]

    def validation_step(self, batch, batch_idx):
        loss, tokens = self._loss(batch, 0.0)  # plain cross-entropy: comparable across label smoothing
        self._nll[0] += float(loss)
        self._nll[1] += tokens

    test_step = validation_step

    def _log_epoch(self, stage: str):
        nll = self._nll[0] / max(1, self._nll[1])
        self.log(f"{stage}_loss", nll, prog_bar=True)
        self.log(f"{stage}_ppl", math.exp(min(nll, 50.0)))

    def on_validation_epoch_end(self):
        self._log_epoch("val")

    def on_test_epoch_end(self):
        self._log_epoch("test")

    def configure_optimizers(self):
        return configure_optimizers(self, self.hparams.optimizer, self.hparams.scheduler)

    # --- decoding
    def max_length(self, src_len: int) -> int:
        return min(self.hparams.max_decode_len, int(self.hparams.decode_ratio * src_len) + 10)

    @torch.inference_mode()
    def greedy(self, src: torch.Tensor, lengths: torch.Tensor, attention: bool = False):
        """Batched greedy decoding: per row the token ids up to (not including) EOS, at most max_length(len)
        of them; with `attention`, also each row's weights (steps, S)."""
        memory, keys, mask, state = self.encode(src, lengths)
        limits = torch.tensor([self.max_length(int(n)) for n in lengths], device=src.device)
        batch = src.size(0)
        y = torch.full((batch,), BOS, dtype=torch.long, device=src.device)
        done = torch.zeros(batch, dtype=torch.bool, device=src.device)
        weights: Any  # the per-step weights, then stacked
        tokens, weights = [], []
        for step in range(int(limits.max())):
            logits, state, w = self.decode(y[:, None], memory, keys, mask, state)
            y = logits[:, -1].argmax(-1)
            tokens.append(y)
            weights.append(w[:, 0])
            done |= (y == EOS) | (step + 1 >= limits)
            if done.all():
                break
        tokens = torch.stack(tokens, 1).tolist()
        out = []
        for i, row in enumerate(tokens):
            row = row[:int(limits[i])]
            out.append(row[:row.index(EOS)] if EOS in row else row)
        if not attention:
            return out
        weights = torch.stack(weights, 1)
        return out, [weights[i, :len(o) + 1, :int(lengths[i])].float().cpu() for i, o in enumerate(out)]

    @torch.inference_mode()
    def beam_search(self, src_ids: list[int], beam_width: int | None = None, length_penalty: float | None = None,
                    max_len: int | None = None) -> list[int]:
        """One sentence's best token ids by beam search (without EOS; rnnlab.shapes.beam), finished hypotheses
        ranked by log p / ((5 + length) / 6) ** length_penalty. At width 1 it is greedy."""
        alpha = self.hparams.length_penalty if length_penalty is None else length_penalty
        src = torch.tensor([src_ids], device=self.device)
        memory, keys, mask, state = self.encode(src, torch.tensor([len(src_ids)]))

        def step(last: torch.Tensor, state: Any, hyps: list[list[int]], t: int) -> tuple[torch.Tensor, Any]:
            n = len(hyps)
            logits, state, _ = self.decode(last[:, None], memory.expand(n, -1, -1), keys.expand(n, -1, -1),
                                           mask.expand(n, -1), state)
            return torch.log_softmax(logits[:, -1].float(), -1), state

        found = beam_search(step, state, layers_first, BOS, EOS, beam_width or self.hparams.beam_width,
                            max_len or self.max_length(len(src_ids)), gnmt_penalty(alpha), device=self.device)
        return found[0][0]

    # --- raw text
    def sentencepiece(self, side: str):
        if side not in self._sps:
            proto = self.hparams.get(f"spm_{side}")
            if not proto:
                raise RnnlabError("this checkpoint holds no SentencePiece model: retrain it with rnnlab train")
            self._sps[side] = load_sentencepiece(proto)
        return self._sps[side]

    def encode_text(self, text: str) -> list[int]:
        if not text or not text.strip():
            raise RnnlabError("empty sentence: give an English sentence to translate")
        ids = self.sentencepiece("src").encode(text.strip())
        limit = self.hparams.max_source_tokens
        if len(ids) > limit:
            raise RnnlabError(f"sentence too long: {len(ids)} subword tokens, the model takes at most {limit} "
                              "(split it into shorter sentences)")
        return ids

    def decode_ids(self, ids: list[int]) -> str:
        return self.sentencepiece("tgt").decode(ids)

    @torch.inference_mode()
    def translate(self, text: str, beam_width: int | None = None) -> str:
        """English text -> Spanish text; beam width 1 is greedy."""
        was_training = self.training
        self.eval()
        try:
            return self.decode_ids(self.beam_search(self.encode_text(text), beam_width))
        finally:
            self.train(was_training)
