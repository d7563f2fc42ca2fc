"""The documentation: its generated numbers agree with metrics/ (docs/results.py --check), a stale page or
metrics file fails that check naming it, and the MkDocs site builds with --strict (no warning)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results.py"


def check(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RESULTS), "--check", "--root", str(root)],
                          capture_output=True, text=True, timeout=60)


def copy_checkout(tmp_path: Path) -> Path:
    """README.md, docs/, metrics/, the confusion, peer-runtime and copied-words CSVs under reports/TASK/,
    reports/translate_full/, reports/speech_speaker3/ and reports/speech_en/ of this checkout, in tmp_path."""
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(ROOT / "README.md", root)
    shutil.copytree(ROOT / "docs", root / "docs", ignore=shutil.ignore_patterns("__pycache__", "*.png"))
    shutil.copytree(ROOT / "metrics", root / "metrics")
    for extra in ("translate_full", "speech_speaker3", "speech_en"):  # the experiments outside the pipeline that docs quote
        shutil.copytree(ROOT / "reports" / extra, root / "reports" / extra)
    for quoted in [*(ROOT / "reports").glob("*/*_confusion.csv"), *(ROOT / "reports").glob("*/*_peers.csv"),
                   *(ROOT / "reports").glob("*/*_copied_words.csv")]:
        (root / quoted.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(quoted, root / quoted.relative_to(ROOT))
    return root


def test_results_match_metrics():
    result = check(ROOT)
    assert result.returncode == 0, result.stderr


def test_stale_page_fails_naming_it(tmp_path):
    root = copy_checkout(tmp_path)
    page = root / "docs" / "tasks" / "charlm.md"
    text = page.read_text(encoding="utf-8")
    assert "**2.120**" in text or "<!-- results:charlm -->" in text
    page.write_text(text.replace("<!-- results:charlm -->\n", "<!-- results:charlm -->\n| edited by hand |\n"),
                    encoding="utf-8")
    result = check(root)
    assert result.returncode == 1
    assert "docs/tasks/charlm.md: block 'charlm'" in result.stderr


def test_changed_metrics_fail_naming_the_page(tmp_path):
    import json

    root = copy_checkout(tmp_path)
    path = root / "metrics" / "surname.json"
    scores = json.loads(path.read_text(encoding="utf-8"))
    scores["test"]["accuracy"] = 0.5
    path.write_text(json.dumps(scores), encoding="utf-8")
    # the README's model column reads the mean over the seeds (the seeds stage's file)
    path = root / "metrics" / "surname_seeds.json"
    spread = json.loads(path.read_text(encoding="utf-8"))
    spread["test"]["accuracy"]["mean"] = 0.5
    path.write_text(json.dumps(spread), encoding="utf-8")
    result = check(root)
    assert result.returncode == 1
    assert "README.md: block 'headline'" in result.stderr
    assert "docs/tasks/many-to-one.md: block 'many-to-one'" in result.stderr
    # regenerating makes the check pass again
    subprocess.run([sys.executable, str(RESULTS), "--root", str(root)], check=True, capture_output=True, timeout=60)
    assert check(root).returncode == 0


def test_a_peer_appears_once_its_metrics_hold_it(tmp_path):
    """The classical peers' block and the README's headline row follow metrics/ (a peer the metrics do not hold
    yet prints nothing); the runtime comes from reports/TASK/TASK_peers.csv."""
    import json

    root = copy_checkout(tmp_path)
    path = root / "metrics" / "sentiment.json"
    scores = json.loads(path.read_text(encoding="utf-8"))
    scores["baseline"]["nbsvm"] = {"accuracy": 0.6543, "macro_f1": 0.65, "val_accuracy": 0.6,
                                   "chosen": {"C": 0.03, "beta": 1.0}}
    path.write_text(json.dumps(scores), encoding="utf-8")
    path = root / "metrics" / "sentiment_seeds.json"  # what the README's row reads: a peer has no spread
    spread = json.loads(path.read_text(encoding="utf-8"))
    spread["baseline"]["nbsvm"]["accuracy"] = {"mean": 0.6543, "std": 0.0}
    path.write_text(json.dumps(spread), encoding="utf-8")
    (root / "reports" / "sentiment" / "sentiment_peers.csv").write_text(
        "peer,seconds,search_seconds,settings\ntfidf_lr,0.9,5.9,6\nnbsvm,1.23,9.0,10\n", encoding="utf-8")
    result = check(root)
    assert result.returncode == 1
    assert "README.md: block 'headline'" in result.stderr
    assert "docs/tasks/many-to-one.md: block 'many-to-one-peers'" in result.stderr
    subprocess.run([sys.executable, str(RESULTS), "--root", str(root)], check=True, capture_output=True, timeout=60)
    assert check(root).returncode == 0
    assert "nbsvm 0.654" in (root / "README.md").read_text(encoding="utf-8")
    page = (root / "docs" / "tasks" / "many-to-one.md").read_text(encoding="utf-8")
    assert "| `sentiment` | nbsvm | **0.654** | 0.650 | 0.600 | C 0.03, beta 1 | 1.23 |" in page


def test_unknown_block_fails(tmp_path):
    root = copy_checkout(tmp_path)
    page = root / "docs" / "index.md"
    page.write_text(page.read_text(encoding="utf-8") + "\n<!-- results:nosuch -->\n<!-- /results -->\n",
                    encoding="utf-8")
    result = check(root)
    assert result.returncode == 1
    assert "docs/index.md: unknown results block 'nosuch'" in result.stderr


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (it is in the dev extra: ./run install)")
    pytest.importorskip("material", reason="mkdocs-material is not installed (it is in the dev extra)")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "figures" / "forecast.png").is_file()


def test_a_peer_shared_by_two_series_shows_each_series_time(tmp_path):
    """forecast's peer runtimes are per series (reports/forecast/forecast_peers.csv: peer, series, seconds): a
    peer name in two series' rows gives each series its own time, in the README's row (CO2) and on the page."""
    root = copy_checkout(tmp_path)
    (root / "reports" / "forecast" / "forecast_peers.csv").write_text(
        "peer,series,seconds\nseasonal_naive,co2,0.0\nsarimax,co2,0.77\nnaive,sunspots,0.0\nautoreg,sunspots,0.01\n"
        "sarimax,sunspots,9.99\n", encoding="utf-8")
    subprocess.run([sys.executable, str(RESULTS), "--root", str(root)], check=True, capture_output=True, timeout=60)
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert "(ahead, 0.77 s)" in readme and "9.99" not in readme
    page = (root / "docs" / "tasks" / "forecasting.md").read_text(encoding="utf-8")
    assert "| 0.77 |" in page and "9.99" not in page
