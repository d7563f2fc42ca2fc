"""A surname in, its likeliest languages out (rnnlab predict surname NAME, the pyfunc model)."""

from __future__ import annotations

from rnnlab.serving.adapters import Labels
from rnnlab.tasks.surname.data import normalise


class Surnames(Labels):
    # far beyond the data (names of at most 30 characters)
    max_steps, unit, what = 100, "characters", "surname"
    example = "Nakamura"

    def tokens(self, raw: str) -> list[str]:
        return list(normalise(raw))
