"""Does language-model pretraining (ULMFiT, Howard & Ruder 2018) help the sentiment classifier? A prototype that
measures it on the VALIDATION split only (the test split is never read).

    python benchmarks/sentiment_lm.py --sdist vaderSentiment-3.3.2.tar.gz --lm-epochs 3 --seeds 0 1 2
    python benchmarks/sentiment_lm.py --lm-epochs 0 --seeds 0 1 2            # from scratch, the same loop

The language model is the classifier's own embedding and bidirectional GRU (ELMo-style biLM): at each step the
forward direction predicts the next word and the backward direction the previous one, through a softmax tied to
the embedding. Its text: the training snippets, plus (with --sdist) the other human-rated snippets of the same
sdist (Amazon reviews, NYT editorials, tweets). Words are the sentiment vocabulary (training snippets), others
<unk> and not predicted. Then `--ft-epochs` on the training snippets alone, then the classifier
(rnnlab.shapes.many_to_one.SequenceClassifier as conf/experiment/sentiment.yaml builds it) starts from those
weights and trains as the pipeline does (AdamW 3e-3, wd 0.01, clip 0.5, batch 64, 6 epochs, validation twice an
epoch, the best kept). Prints the best and the last validation accuracy per seed, and their mean ± sd.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import statistics
import tarfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
OTHERS = ("amazonReviewSnippets_GroundTruth.txt", "nytEditorialSnippets_GroundTruth.txt",
          "tweets_GroundTruth.txt")
INNER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
UNK, PAD = 1, 0


def other_snippets(sdist: Path) -> list[str]:
    """The texts of the sdist's other rated snippet files (not the movie reviews)."""
    with tarfile.open(sdist, "r:gz") as outer:
        inner = outer.extractfile(INNER).read()  # type: ignore[union-attr]
    texts = []
    with tarfile.open(fileobj=io.BytesIO(inner), mode="r:gz") as tar:
        for name in OTHERS:
            raw = tar.extractfile(f"hutto_ICWSM_2014/{name}").read().decode("utf-8", "replace")  # type: ignore[union-attr]
            texts += [line.split("\t", 2)[2].strip() for line in raw.splitlines() if line.count("\t") >= 2]
    return texts


def batches(rows: list[torch.Tensor], size: int, shuffle: bool, gen: torch.Generator):
    order = torch.randperm(len(rows), generator=gen).tolist() if shuffle else list(range(len(rows)))
    for i in range(0, len(rows), size):
        chunk = [rows[j] for j in order[i:i + size]]
        lengths = torch.tensor([len(x) for x in chunk])
        x = torch.zeros(len(chunk), int(lengths.max()), dtype=torch.long)
        for k, row in enumerate(chunk):
            x[k, :len(row)] = row
        yield order[i:i + size], x, lengths


class BiLM(nn.Module):
    """Embedding -> bidirectional GRU -> tied softmax: forward states predict the next word, backward the previous."""

    def __init__(self, vocab: int, dim: int, hidden: int, dropout: float, emb_dropout: float, predict: int = 0):
        super().__init__()
        # the softmax covers the `predict` most frequent words only (ids are by frequency): it is most of the cost
        self.predict = predict or vocab
        self.bf16 = False
        self.encoder = nn.Embedding(vocab, dim, padding_idx=0)
        self.rnn = nn.GRU(dim, hidden, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(hidden, dim)  # hidden -> embedding space, so the softmax can be tied
        self.drop, self.emb_dropout = nn.Dropout(dropout), emb_dropout

    def loss(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, int]:
        w = self.encoder.weight
        if self.training and self.emb_dropout:
            # embedding dropout (Gal & Ghahramani 2016; AWD-LSTM): whole word vectors dropped, the rest rescaled
            keep = torch.bernoulli(torch.full((w.size(0), 1), 1 - self.emb_dropout)) / (1 - self.emb_dropout)
            w = w * keep
        e = self.drop(F.embedding(x, w, padding_idx=0))
        out, _ = self.rnn(pack_padded_sequence(e, lengths, batch_first=True, enforce_sorted=False))
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        h = out.size(-1) // 2
        fwd, bwd = self.drop(out[:, :-1, :h]), self.drop(out[:, 1:, h:])
        # targets: x[t+1] for the forward state at t, x[t] for the backward state at t+1; pad and <unk> ignored
        target = torch.cat([x[:, 1:], x[:, :-1]], 0)
        # only the steps with a word to predict reach the softmax (padding is half of a shuffled batch)
        # a pair counts where its later step is a word: a backward state on padding is all zeros
        later = (torch.arange(1, x.size(1))[None] < lengths[:, None]).repeat(2, 1)
        keep = (target > UNK) & (target < self.predict) & later
        states = torch.cat([fwd, bwd], 0)[keep]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.proj(states) @ self.encoder.weight[:self.predict].t()
        return F.cross_entropy(logits.float(), target[keep]), int(keep.sum())


def train_lm(lm: BiLM, rows: list[torch.Tensor], epochs: int, lr: float, batch: int, gen: torch.Generator,
             label: str) -> None:
    opt = torch.optim.AdamW(lm.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * math.ceil(len(rows) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.1)
    lm.train()
    for epoch in range(epochs):
        start, total, count = time.time(), 0.0, 0
        for step, (_, x, lengths) in enumerate(batches(rows, batch, True, gen)):
            loss, n = lm.loss(x, lengths)
            if step % 100 == 0:
                print(f"    step {step}: loss {loss.item():.3f}, {time.time() - start:.0f} s", flush=True)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(lm.parameters(), 0.5)
            opt.step()
            sched.step()
            total, count = total + loss.item() * n, count + n
        print(f"  {label} epoch {epoch + 1}: train ppl {math.exp(total / count):.1f}, "
              f"{count / (time.time() - start):.0f} tokens/s, {time.time() - start:.0f} s", flush=True)


def lm_perplexity(lm: BiLM, rows: list[torch.Tensor]) -> float:
    lm.eval()
    total = count = 0
    with torch.no_grad():
        for _, x, lengths in batches(rows, 256, False, torch.Generator()):
            loss, n = lm.loss(x, lengths)
            total, count = total + loss.item() * n, count + n
    return math.exp(total / count)


def classifier(vocab: list[str], args, lm: BiLM | None):
    from rnnlab.shapes.many_to_one import SequenceClassifier

    model = SequenceClassifier(num_classes=2, vocab_size=len(vocab), embedding_dim=128, cell="gru", hidden_size=128,
                               dropout=args.dropout, bidirectional=True, pooling=args.pooling, members=1)
    if lm is not None:
        model.members[0].encoder.load_state_dict(lm.encoder.state_dict())
        model.members[0].rnn.load_state_dict(lm.rnn.state_dict())
    return model


def probabilities(model, rows) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return torch.cat([torch.softmax(model(x, lengths), -1) for _, x, lengths in
                          batches(rows, 256, False, torch.Generator())])


def train_classifier(model, train, validation, args, gen) -> tuple[float, float, float, torch.Tensor]:
    pretrained = {id(p) for part in (model.members[0].encoder, model.members[0].rnn) for p in part.parameters()}
    groups = [{"params": [p for p in model.parameters() if id(p) in pretrained], "lr": args.lr * args.body_lr},
              {"params": [p for p in model.parameters() if id(p) not in pretrained], "lr": args.lr}]
    opt = torch.optim.AdamW(groups, lr=args.lr, weight_decay=0.01)
    rows, labels = train
    per_epoch = math.ceil(len(rows) / 64)
    best, last, best_at, start = 0.0, 0.0, 0.0, time.time()
    truth, kept = torch.tensor(validation[1]), torch.empty(0)
    for epoch in range(args.epochs):
        model.train()
        # gradual unfreezing, crudely: the pretrained body frozen for the first `freeze` epochs
        for p in (p for part in (model.members[0].encoder, model.members[0].rnn) for p in part.parameters()):
            p.requires_grad_(epoch >= args.freeze)
        for step, (idx, x, lengths) in enumerate(batches(rows, 64, True, gen), 1):
            if args.word_dropout:
                # word dropout: some tokens read as <unk>, so no single word decides the class
                drop = (torch.rand(x.shape, generator=gen) < args.word_dropout) & (x > UNK)
                x = x.masked_fill(drop, UNK)
            y = torch.tensor([labels[i] for i in idx])
            loss = F.cross_entropy(model(x, lengths), y)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            opt.step()
            if step in (per_epoch // 2, per_epoch):
                probs = probabilities(model, validation[0])
                last = float((probs.argmax(-1) == truth).float().mean())
                model.train()
                if last > best:
                    # the best checkpoint's probabilities, for the ensemble over seeds
                    best, best_at, kept = last, epoch + step / per_epoch, probs
    print(f"    best {best:.4f} at epoch {best_at:.1f}, last {last:.4f}, {time.time() - start:.0f} s", flush=True)
    return best, last, time.time() - start, kept


def main() -> None:
    from datasets import load_from_disk

    from rnnlab.tasks.sentiment.data import tokenize

    p = argparse.ArgumentParser()
    p.add_argument("--processed", default=str(ROOT / "data/processed/sentiment"))
    p.add_argument("--sdist", default=None, help="vaderSentiment-3.3.2.tar.gz: its other snippets join the LM text")
    p.add_argument("--lm-epochs", type=int, default=0)
    p.add_argument("--ft-epochs", type=int, default=0, help="LM epochs on the training snippets alone afterwards")
    p.add_argument("--lm-lr", type=float, default=3e-3)
    p.add_argument("--lm-dropout", type=float, default=0.3)
    p.add_argument("--emb-dropout", type=float, default=0.1)
    p.add_argument("--lm-predict", type=int, default=2000, help="the LM predicts the N most frequent words")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--body-lr", type=float, default=1.0, help="the pretrained parts' lr, as a fraction of --lr")
    p.add_argument("--freeze", type=int, default=0, help="epochs with the pretrained parts frozen")
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--word-dropout", type=float, default=0.0)
    p.add_argument("--pooling", default="max")
    p.add_argument("--bf16", action="store_true", help="the LM's softmax in bfloat16")
    p.add_argument("--save-lm", default=None)
    p.add_argument("--load-lm", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    print(vars(args), flush=True)

    splits = load_from_disk(args.processed)
    vocab = json.loads((Path(args.processed) / "vocab.json").read_text())["tokens"]
    index = {w: i for i, w in enumerate(vocab)}
    train = ([torch.tensor(x) for x in splits["train"]["tokens"]], list(splits["train"]["label"]))
    validation = ([torch.tensor(x) for x in splits["validation"]["tokens"]], list(splits["validation"]["label"]))

    lm = None
    if args.load_lm:
        lm = BiLM(len(vocab), 128, 128, args.lm_dropout, args.emb_dropout, args.lm_predict)
        lm.load_state_dict(torch.load(args.load_lm, weights_only=True))
    elif args.lm_epochs or args.ft_epochs:
        torch.manual_seed(1234)
        gen = torch.Generator().manual_seed(1234)
        lm = BiLM(len(vocab), 128, 128, args.lm_dropout, args.emb_dropout, args.lm_predict)
        lm.bf16 = args.bf16
        corpus = [x for x in train[0] if len(x) > 1]
        if args.sdist:
            others = [torch.tensor([index.get(w, UNK) for w in tokenize(t)]) for t in other_snippets(Path(args.sdist))]
            others = [x for x in others if len(x) > 1]
            known = sum(int((x > UNK).sum()) for x in others) / sum(len(x) for x in others)
            print(f"  other snippets: {len(others)}, {sum(len(x) for x in others)} tokens, {known:.2f} in vocab")
            corpus += others
        print(f"  LM text: {len(corpus)} sequences, {sum(len(x) for x in corpus)} tokens", flush=True)
        train_lm(lm, corpus, args.lm_epochs, args.lm_lr, 64, gen, "LM")
        train_lm(lm, [x for x in train[0] if len(x) > 1], args.ft_epochs, args.lm_lr, 64, gen, "LM fine-tune")
        # the validation snippets' perplexity only reported, never trained on
        print(f"  LM validation perplexity {lm_perplexity(lm, validation[0]):.1f}", flush=True)
        if args.save_lm:
            torch.save(lm.state_dict(), args.save_lm)

    results = []
    for seed in args.seeds:
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = classifier(vocab, args, lm)
        results.append(train_classifier(model, train, validation, args, gen))
    for name, k in (("best", 0), ("last", 1)):
        values = [r[k] for r in results]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"RESULT {name} validation accuracy {statistics.mean(values):.4f} ± {sd:.4f} "
              f"({', '.join(f'{v:.4f}' for v in values)})")
    truth = torch.tensor(validation[1])
    for k in range(2, len(results) + 1):
        mean = torch.stack([r[3] for r in results[:k]]).mean(0)
        print(f"RESULT ensemble of the first {k} seeds' best checkpoints: validation accuracy "
              f"{float((mean.argmax(-1) == truth).float().mean()):.4f}")
    print(f"RESULT seconds per classifier {statistics.mean(r[2] for r in results):.0f}", flush=True)


if __name__ == "__main__":
    main()
