"""Score a trained translator: BLEU and chrF (sacrebleu) of beam search and of greedy decoding against the
Spanish of the test books (and the validation books), beside the copy-the-source baseline; sample
translations in reports/translate_samples.txt and an attention heatmap of a few test verses
(reports/figures/translate_attention.png), both logged to the model's MLflow run."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from rnnlab.core.io import atomic_path, write_text
from rnnlab.data.subwords import collate

log = logging.getLogger(__name__)


def subset(n: int, limit: int | None) -> list[int]:
    """All rows, or `limit` of them evenly spaced over the split: fixed, whatever the model."""
    if not limit or limit >= n:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, int(limit)).round().astype(int).tolist()))


def greedy_all(model, sources: list[list[int]], batch_size: int) -> list[list[int]]:
    """Greedy decoding of every source, in batches of similar length, returned in the sources' order."""
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    out: list[Any] = [None] * len(sources)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        src, lengths, _ = collate([(sources[i], []) for i in rows])
        for i, ids in zip(rows, model.greedy(src.to(model.device), lengths)):
            out[i] = ids
    return out


def corpus_scores(hyps: list[str], refs: list[str]) -> dict:
    import sacrebleu

    bleu = sacrebleu.corpus_bleu(hyps, [refs])
    chrf = sacrebleu.corpus_chrf(hyps, [refs])
    return {"bleu": round(bleu.score, 2), "chrf": round(chrf.score, 2),
            "length_ratio": round(bleu.sys_len / max(1, bleu.ref_len), 4)}


def decode_split(model, part, limit: int | None, batch_size: int) -> dict:
    """Greedy decoding of every verse of the split (batched, fast) and beam search of the fixed subset
    (`limit` verses, evenly spaced; all if null): beam search decodes one verse at a time."""
    rows = subset(len(part), limit)
    t0 = time.perf_counter()
    greedy = [model.decode_ids(ids) for ids in greedy_all(model, list(part["src"]), batch_size)]
    t1 = time.perf_counter()
    beams = [model.decode_ids(model.beam_search(part[i]["src"])) for i in rows]
    t2 = time.perf_counter()
    log.info("decoded %d verses greedily in %.1f s, %d by beam search in %.1f s", len(part), t1 - t0, len(rows), t2 - t1)
    return {"rows": rows, "refs": list(part["es"]), "greedy": greedy, "beam": beams, "sources": list(part["en"])}


def score(models: dict, dm, cfg: DictConfig, runs: dict, client) -> dict:
    model, run_id = models["model"], runs.get("model")
    ev = cfg.evaluate
    width, alpha = model.hparams.beam_width, model.hparams.length_penalty
    scores = {}
    decoded = {}
    for split, key, limit in (("test", "test", ev.test_limit), ("validation", "val", ev.val_limit)):
        d = decode_split(model, dm.splits[split], limit, dm.eval_batch_size)
        decoded[split] = d
        rows = d["rows"]
        refs = [d["refs"][i] for i in rows]
        beam, greedy = corpus_scores(d["beam"], refs), corpus_scores([d["greedy"][i] for i in rows], refs)
        scores[key] = {**beam, "bleu_greedy": greedy["bleu"], "chrf_greedy": greedy["chrf"],
                       "length_ratio_greedy": greedy["length_ratio"], "verses": len(rows),
                       "verses_in_split": len(d["refs"]), "beam_width": width, "length_penalty": alpha}
        if len(rows) < len(d["refs"]):  # greedy on every verse too, beside the subset's scores
            every = corpus_scores(d["greedy"], d["refs"])
            scores[key]["all_verses"] = {"bleu_greedy": every["bleu"], "chrf_greedy": every["chrf"]}
    test = decoded["test"]
    refs = [test["refs"][i] for i in test["rows"]]
    scores["baseline"] = {"copy_source": corpus_scores([test["sources"][i] for i in test["rows"]], refs)}
    scores["baseline"] = {"copy_source": corpus_scores(test["sources"], test["refs"])}
    reports = Path(cfg.paths.reports_dir)
    part = dm.splits["test"]
    lines = [f"# English -> Spanish, test books {', '.join(dm.stats['books']['test'])}: beam search (width {width}, "
             f"length penalty {alpha}) and greedy decoding; the first {ev.samples} verses beam search scored\n"]
    for j in range(min(ev.samples, len(test["rows"]))):
        i = test["rows"][j]
        row = part[i]
        lines.append(f"{row['book']} {row['chapter']}:{row['verse']}\n  en:        {row['en']}\n"
                     f"  reference: {row['es']}\n  beam:      {test['beam'][j]}\n  greedy:    {test['greedy'][i]}\n")
    write_text(reports / "translate_samples.txt", "\n".join(lines))
    figure = reports / "figures" / "translate_attention.png"
    attention_figure(model, part, list(ev.attention_verses), figure)
    if run_id:
        client.log_artifact(run_id, str(reports / "translate_samples.txt"))
        client.log_artifact(run_id, str(figure), "figures")
    return scores


def attention_figure(model, part, verses: list[int], path: Path) -> None:
    """One heatmap per verse: the greedy output's subword pieces (rows) against the source's (columns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    verses = [v for v in verses if v < len(part)]
    src_sp, tgt_sp = model.sentencepiece("src"), model.sentencepiece("tgt")
    fig, axes = plt.subplots(1, len(verses), figsize=(6.5 * len(verses), 6.5), squeeze=False)
    for ax, v in zip(axes[0], verses):
        ids = part[v]["src"]
        src, lengths, _ = collate([(ids, [])])
        (out,), (weights,) = model.greedy(src.to(model.device), lengths, attention=True)
        ax.imshow(weights.numpy(), cmap="Greys", aspect="auto", vmin=0, vmax=1)
        ax.set_xticks(range(len(ids)), [src_sp.id_to_piece(i) for i in ids], rotation=90, fontsize=7)
        ax.set_yticks(range(len(out) + 1), [tgt_sp.id_to_piece(i) for i in out] + ["</s>"], fontsize=7)
        row = part[v]
        ax.set_title(f"{row['book']} {row['chapter']}:{row['verse']}", fontsize=9)
    fig.suptitle("Attention of the decoder (greedy output) over the English subwords")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
