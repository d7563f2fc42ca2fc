"""The lead baselines of summarization, scored as the model will be: ROUGE-1/2/L F1 (rouge-score, Porter stemming)
and corpus BLEU (sacrebleu's defaults: 13a tokenisation, case-sensitive), on a split of data/processed/summarize.

- lead: the document's first sentence (up to the first ".", "!" or "?" followed by a space, not after a known
  abbreviation, and never past the first line: a verbatim line or a paragraph ends it).
- lead_10: that sentence cut to its first 10 words (a synopsis has 6 words at the median).

    python -m rnnlab.tasks.summarize.baselines data/processed/summarize [SPLIT]
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from rnnlab import RnnlabError

SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s)")
ABBREVIATIONS = {"e.g.", "i.e.", "etc.", "vs.", "cf.", "approx.", "incl.", "no.", "mr.", "dr.", "st.", "al."}


def first_sentence(document: str) -> str:
    line = document.strip().split("\n", 1)[0]
    for m in SENTENCE_END.finditer(line):
        word = line[:m.end()].rsplit(None, 1)[-1].lower()
        if word not in ABBREVIATIONS and not re.fullmatch(r"(?:[a-z]\.){2,}", word):  # "U.S.", "p.m."
            return line[:m.end()]
    return line


def lead(document: str, max_words: int | None = None) -> str:
    sentence = first_sentence(document)
    return " ".join(sentence.split()[:max_words]) if max_words else sentence


BASELINES = {"lead": lambda d: lead(d), "lead_10": lambda d: lead(d, 10)}


def score(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 and corpus BLEU, in percent (two decimals)."""
    import sacrebleu
    from rouge_score import rouge_scorer

    if len(predictions) != len(references) or not references:
        raise RnnlabError(f"{len(predictions)} predictions for {len(references)} references")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    totals = dict.fromkeys(("rouge1", "rouge2", "rougeL"), 0.0)
    for prediction, reference in zip(predictions, references):
        for key, value in scorer.score(reference, prediction).items():
            totals[key] += value.fmeasure
    scores = {key: round(100 * total / len(references), 2) for key, total in totals.items()}
    scores["bleu"] = round(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score, 2)
    return scores


def lead_baselines(processed_dir: Path, split: str = "test") -> dict[str, dict[str, float]]:
    """Each baseline's scores on `split` of the processed data."""
    from datasets import load_from_disk

    try:
        part = load_from_disk(str(processed_dir))[split]
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise RnnlabError(f"cannot read the {split} split of {processed_dir}: {e}") from e
    documents, references = list(part["document"]), list(part["summary"])
    return {name: score([fn(d) for d in documents], references) for name, fn in BASELINES.items()}


if __name__ == "__main__":
    print(json.dumps(lead_baselines(Path(sys.argv[1]), *sys.argv[2:3]), indent=2))
