"""A snippet of text in, its sentiment out (rnnlab predict sentiment TEXT, the pyfunc model)."""

from __future__ import annotations

from rnnlab.serving.adapters import Labels
from rnnlab.tasks.sentiment.data import tokenize


class Snippets(Labels):
    # far beyond the data (snippets of at most 64 words)
    max_steps, unit, what = 500, "words", "text"
    example = "What a lovely, happy day!"

    def tokens(self, raw: str) -> list[str]:
        return tokenize(raw)
