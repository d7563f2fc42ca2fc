"""The reliability suite (`pytest -m reliability`, or `python benchmarks/reliability.py` for the report).

Tests here record the figures reports/reliability.md shows through the `figures` fixture: each call adds
a JSON line to $RNNLAB_RELIABILITY_FIGURES when that is set (the report script sets it), else nothing.
"""

import json
import os
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.reliability)


@pytest.fixture
def figures(request):
    """figures(kind, **values): one measured fact for the report, e.g. figures("kill", step=37, drift=0.0)."""
    path = os.environ.get("RNNLAB_RELIABILITY_FIGURES")

    def record(kind: str, **values) -> None:
        if path:
            with open(path, "a") as f:
                f.write(json.dumps({"kind": kind, "test": request.node.nodeid, **values}) + "\n")

    return record
