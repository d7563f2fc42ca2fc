"""What the tasks' evaluators share: score names, bits per character, CSV tables."""

from __future__ import annotations

import csv
import io
import math


def flatten(scores: dict, prefix: str = "") -> dict[str, float]:
    """{"test": {"accuracy": 0.9}} -> {"test_accuracy": 0.9}: MLflow metric names."""
    flat = {}
    for key, value in scores.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}_"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def bpc_scores(bpc: float) -> dict:
    # a diverged model's bpc can pass 1024, where 2**bpc overflows: inf, which run_evaluate reports
    perplexity = math.inf if bpc >= 1024 else 2**bpc
    return {"bpc": round(bpc, 4), "perplexity": round(perplexity, 4)}


def table(header: list[str], rows) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()
