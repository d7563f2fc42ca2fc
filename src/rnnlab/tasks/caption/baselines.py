"""The captioning baselines a model must beat, scored on the processed splits (no model needed):

- `constant`: one caption for every image, the training caption with the best validation BLEU (test is never
  looked at to choose it);
- `nearest`: the caption of the nearest training image by raw pixels at 32x32 (premultiplied RGBA: the colour of
  a transparent pixel does not count), Euclidean distance, the first such image on a tie.

Each is scored in three views (VIEWS): the full test split; its images without "skin tone" in the caption (a
tone variant's caption ends in a phrase such as ": medium-dark skin tone", which many training captions share and
the nearest image of the same skin colour often has: easy words that inflate BLEU); and across drawing styles (the
Google images of train, and of validation to choose the constant, against the Twitter images of test).
Scores: corpus BLEU-4 (sacrebleu, its 13a tokenizer, case kept), mean ROUGE-L F1 (torchmetrics, rouge-score's
tokenizer: lower case, letters and digits) and the exact-match rate, in percent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset

from rnnlab import RnnlabError
from rnnlab.tasks.caption.data import distances, images, load_splits, thumbnails

THUMBNAIL = 32
# view -> (style fitted on, style scored, skin-tone captions scored?); None: every style
VIEWS: dict[str, tuple[str | None, str | None, bool]] = {
    "full": (None, None, True),
    "no_skin_tone": (None, None, False),
    "cross_style": ("google", "twitter", True),
}


def score(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """BLEU-4, ROUGE-L F1 and exact matches (percent) of one hypothesis per reference."""
    import sacrebleu
    from torchmetrics.functional.text.rouge import rouge_score

    if len(hypotheses) != len(references) or not references:
        raise RnnlabError(f"{len(hypotheses)} captions for {len(references)} references")
    bleu = sacrebleu.corpus_bleu(list(hypotheses), [list(references)])
    rouge = rouge_score(list(hypotheses), list(references), rouge_keys="rougeL")
    exact = sum(h == r for h, r in zip(hypotheses, references)) / len(references)
    return {"bleu": round(bleu.score, 2), "rouge_l": round(100 * float(rouge["rougeL_fmeasure"]), 2),
            "exact": round(100 * exact, 2), "n": len(references)}


def best_constant(candidates: Sequence[str], validation: Sequence[str]) -> tuple[str, float]:
    """The candidate whose repetition scores the highest corpus BLEU on `validation` (the first of equals in
    sorted order), and that BLEU."""
    from sacrebleu.metrics import BLEU

    if not candidates or not validation:
        raise RnnlabError("the constant baseline needs training captions and validation captions")
    bleu = BLEU(references=[list(validation)])  # the references' n-grams counted once, not per candidate
    scored = [(bleu.corpus_score([c] * len(validation), None).score, c) for c in sorted(set(candidates))]
    best = max(scored, key=lambda sc: sc[0])  # max keeps the first maximum
    return best[1], round(best[0], 2)


def nearest(train_images: np.ndarray, test_images: np.ndarray, chunk: int = 512) -> np.ndarray:
    """For each test image, the index of the nearest training image: Euclidean on 32x32 premultiplied thumbnails
    in float64 (the captioner's retrieval compares the same pixels at 16x16), the first of equals."""
    train = thumbnails(torch.from_numpy(train_images), THUMBNAIL, torch.float64)
    test = thumbnails(torch.from_numpy(test_images), THUMBNAIL, torch.float64)
    norms = (train * train).sum(1)
    found = [distances(test[start:start + chunk], train, norms).argmin(1)  # bounded memory: a chunk at a time
             for start in range(0, len(test), chunk)]
    return torch.cat(found).numpy() if found else np.zeros(0, dtype=np.int64)


def select(ds: Dataset, style: str | None, skin_tone: bool = True) -> Dataset:
    keep = [i for i, (s, tone) in enumerate(zip(ds["style"], ds["skin_tone"]))
            if (style is None or s == style) and (skin_tone or not tone)]
    return ds.select(keep, keep_in_memory=True)  # nothing written beside the processed data (a DVC output)


def run(processed_dir: Path, log: Callable[[str], None] | None = None) -> dict:
    """Both baselines in every view: {baseline: {view: scores}}, with the constant's caption and its validation BLEU."""
    splits = load_splits(Path(processed_dir))
    results: dict[str, dict] = {"constant": {}, "nearest": {}}
    fitted: dict[str | None, tuple] = {}  # fit style -> training split, its images, the constant (about 1 min each)
    for view, (fit_style, test_style, skin_tone) in VIEWS.items():
        if fit_style not in fitted:
            train = select(splits["train"], fit_style)
            constant = best_constant(train["caption"], select(splits["validation"], fit_style)["caption"])
            fitted[fit_style] = train, images(train), constant
        train, train_images, (caption, val_bleu) = fitted[fit_style]
        test = select(splits["test"], test_style, skin_tone)
        references = test["caption"]
        results["constant"][view] = {**score([caption] * len(test), references), "caption": caption,
                                     "val_bleu": val_bleu}
        index = nearest(train_images, images(test))
        captions = train["caption"]
        results["nearest"][view] = score([captions[i] for i in index], references)
        if log:
            log(f"{view}: constant {results['constant'][view]}, nearest {results['nearest'][view]}")
    return results
