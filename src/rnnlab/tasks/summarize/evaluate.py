"""Score a trained summarizer: ROUGE-1/2/L F1 (rouge-score, Porter stemming) and BLEU (sacrebleu) of beam search
and of greedy decoding against the maintainers' synopses of the test split (and validation), beside the lead
baselines on the same pairs (baselines.py); how often the copy switch decides a written piece and which words it
copies; reports/summarize/: the samples CSV (document, reference, generated), the copied words CSV and the
attention / copy-probability figure of a few test pairs, all logged to the model's MLflow run."""

from __future__ import annotations

import csv
import io
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from rnnlab.core.io import atomic_path, write_text
from rnnlab.data.subwords import collate
from rnnlab.tasks.summarize import baselines as B

log = logging.getLogger(__name__)
# a written piece is "copied" when most of its probability came through the copy switch
COPIED = 0.5


def subset(n: int, limit: int | None) -> list[int]:
    """All rows, or `limit` of them evenly spaced over the split: fixed, whatever the model."""
    if not limit or limit >= n:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, int(limit)).round().astype(int).tolist()))


def batches(sources: list[list[int]], batch_size: int):
    """(row indices, padded batch) in batches of similar length."""
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        src, lengths, _ = collate([(sources[i], []) for i in rows])
        yield rows, src, lengths


def greedy_all(model, sources: list[list[int]], batch_size: int) -> list[list[int]]:
    out: list[Any] = [None] * len(sources)
    for rows, src, lengths in batches(sources, batch_size):
        for i, ids in zip(rows, model.greedy(src.to(model.device), lengths)):
            out[i] = ids
    return out


def explain_all(model, sources: list[list[int]], outputs: list[list[int]], batch_size: int) -> list[dict]:
    out: list[Any] = [None] * len(sources)
    for rows, src, lengths in batches(sources, batch_size):
        for i, e in zip(rows, model.explain(src.to(model.device), lengths, [outputs[i] for i in rows])):
            out[i] = e
    return out


def words_copied(pieces: list[str], shares: list[float]) -> list[tuple[str, bool]]:
    """SentencePiece pieces ("▁" starts a word) and each one's copy share -> (word, copied): a word is copied
    when most of its pieces were."""
    groups: list[list[tuple[str, float]]] = []
    for piece, share in zip(pieces, shares):
        if piece.startswith("▁") or not groups:
            groups.append([])
        groups[-1].append((piece, share))
    out = []
    for group in groups:
        word = "".join(p for p, _ in group).lstrip("▁")
        if word:
            out.append((word, sum(s > COPIED for _, s in group) * 2 > len(group)))
    return out


def copy_stats(model, outputs: list[list[int]], explained: list[dict], documents: list[str]) -> tuple[dict, Counter]:
    """How often the switch fires (pieces whose probability came mostly from copying, the mean p_gen) and the
    copied words, with the share of those that the document holds as a word."""
    sp = model.sentencepiece("src")
    pieces = fired = words = copied = in_document = 0
    p_gen: list[float] = []
    counts: Counter = Counter()
    for ids, e, document in zip(outputs, explained, documents):
        shares = e["copy_share"][:len(ids)].tolist()
        p_gen += e["p_gen"][:len(ids)].tolist()
        pieces += len(ids)
        fired += sum(s > COPIED for s in shares)
        seen = set(document.lower().split())
        for word, was_copied in words_copied([sp.id_to_piece(i) for i in ids], shares):
            words += 1
            if was_copied:
                copied += 1
                counts[word] += 1
                in_document += word.lower() in seen
    stats = {"copied_pieces": round(fired / max(1, pieces), 4), "copied_words": round(copied / max(1, words), 4),
             "mean_p_gen": round(float(np.mean(p_gen)) if p_gen else 1.0, 4),
             "copied_words_in_document": round(in_document / max(1, copied), 4)}
    return stats, counts


def decode_split(model, part, sources: list[list[int]], limit: int | None, batch_size: int) -> dict:
    """Beam search of the fixed subset (`limit` pairs, evenly spaced; all if null) and greedy decoding of it
    (batched), each row's copy statistics from one teacher-forced pass over the beam output."""
    rows = subset(len(part), limit)
    sources = [sources[i] for i in rows]
    t0 = time.perf_counter()
    beam = [model.beam_search(s) for s in sources]
    t1 = time.perf_counter()
    greedy = greedy_all(model, sources, batch_size)
    log.info("decoded %d pairs by beam search in %.1f s, greedily in %.1f s", len(rows), t1 - t0,
             time.perf_counter() - t1)
    return {"rows": rows, "beam_ids": beam, "beam": [model.decode_ids(ids) for ids in beam],
            "greedy": [model.decode_ids(ids) for ids in greedy], "documents": [part[i]["document"] for i in rows],
            "references": [part[i]["summary"] for i in rows], "sources": sources,
            "explained": explain_all(model, sources, beam, batch_size)}


def split_scores(model, d: dict) -> tuple[dict, Counter]:
    beam = B.score(d["beam"], d["references"])
    greedy = B.score(d["greedy"], d["references"])
    stats, counts = copy_stats(model, d["beam_ids"], d["explained"], d["documents"])
    hp = model.hparams
    return ({**beam, **{f"{k}_greedy": v for k, v in greedy.items()}, "copy": stats, "pairs": len(d["rows"]),
             "beam_width": hp.beam_width, "length_penalty": hp.length_penalty,
             "no_repeat_ngram": hp.no_repeat_ngram}, counts)


def score(models: dict, dm, cfg: DictConfig, runs: dict, client) -> dict:
    model, run_id = models["model"], runs.get("model")
    ev = cfg.evaluate
    scores: dict[str, Any] = {}
    decoded = {}
    for split, key, limit in (("test", "test", ev.test_limit), ("validation", "val", ev.val_limit)):
        decoded[split] = d = decode_split(model, dm.splits[split], [s for s, _ in dm.data[split]], limit,
                                          dm.eval_batch_size)
        scores[key], counts = split_scores(model, d)
        if split == "test":
            copied = counts
    test = decoded["test"]
    # the lead baselines read the whole document, on the pairs the model is scored on
    scores["baseline"] = {name: B.score([fn(doc) for doc in test["documents"]], test["references"])
                          for name, fn in B.BASELINES.items()}
    reports = Path(cfg.paths.reports_dir)
    files = [write_samples(model, reports / "summarize_samples.csv", test, ev.samples),
             write_copied(reports / "summarize_copied_words.csv", copied, ev.top_copied)]
    figure = reports / "figures" / "summarize_attention.png"
    attention_figure(model, dm.splits["test"], [s for s, _ in dm.data["test"]], list(ev.figure_pairs), figure)
    if run_id:
        for path in files:
            client.log_artifact(run_id, str(path))
        client.log_artifact(run_id, str(figure), "figures")
    return scores


def write_samples(model, path: Path, d: dict, limit: int | None) -> Path:
    """document, reference, generated (beam search), greedy, the lead baseline and the copied words of the first
    `limit` decoded test pairs (all if null)."""
    sp = model.sentencepiece("src")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["row", "document", "reference", "generated", "greedy", "lead", "copied_words"])
    for j in range(len(d["rows"]) if limit is None else min(limit, len(d["rows"]))):
        ids, shares = d["beam_ids"][j], d["explained"][j]["copy_share"][:len(d["beam_ids"][j])].tolist()
        copied = [w for w, c in words_copied([sp.id_to_piece(i) for i in ids], shares) if c]
        writer.writerow([d["rows"][j], d["documents"][j], d["references"][j], d["beam"][j], d["greedy"][j],
                         B.lead(d["documents"][j]), " ".join(copied)])
    write_text(path, buffer.getvalue())
    return path


def write_copied(path: Path, counts: Counter, top: int) -> Path:
    """The words the copy switch wrote most often on test, with their counts."""
    lines = ["word,count"] + [f"{word.replace(',', ' ')},{n}" for word, n in counts.most_common(top)]
    write_text(path, "\n".join(lines) + "\n")
    return path


def attention_figure(model, part, sources: list[list[int]], pairs: list[int], path: Path) -> None:
    """One panel per test pair: the attention of each written piece (rows) over the document's pieces (columns),
    and beside it the piece's copy probability 1 - p_gen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [p for p in pairs if p < len(part)]
    sp = model.sentencepiece("src")
    fig, axes = plt.subplots(1, 2 * len(pairs), figsize=(7.5 * len(pairs), 6),
                             gridspec_kw={"width_ratios": [12, 1] * len(pairs)}, squeeze=False)
    for n, p in enumerate(pairs):
        out = model.beam_search(sources[p])
        src, lengths, _ = collate([(sources[p], [])])
        (e,) = model.explain(src.to(model.device), lengths, [out])
        ids = sources[p][:60]  # the lead of the document: the columns stay readable
        rows = [sp.id_to_piece(i) for i in out] + ["</s>"]
        ax, bar = axes[0][2 * n], axes[0][2 * n + 1]
        ax.imshow(e["attention"][:, :len(ids)].numpy(), cmap="Greys", aspect="auto", vmin=0, vmax=1)
        ax.set_xticks(range(len(ids)), [sp.id_to_piece(i) for i in ids], rotation=90, fontsize=6)
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        ax.set_title(f"{part[p]['source']}: \"{part[p]['summary'][:50]}\"", fontsize=8)
        bar.imshow((1 - e["p_gen"]).numpy()[:, None], cmap="Reds", aspect="auto", vmin=0, vmax=1)
        bar.set_xticks([0], ["copy"], fontsize=7)
        bar.set_yticks([])
    fig.suptitle("Attention over the document's first pieces, and the copy probability 1 - p_gen of each written "
                 "piece (beam search output)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
