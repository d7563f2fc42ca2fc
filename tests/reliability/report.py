"""Run the reliability suite and write its figures to reports/reliability.md:

    .venv/bin/python tests/reliability/report.py

Exits with pytest's status; the report is written either way (a failed check shows in the table)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import torch

from rnnlab.core.io import write_text
from rnnlab.core.tracking import git_commit

ROOT = Path(__file__).resolve().parents[2]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def run_suite(figures: Path, junit: Path) -> tuple[int, float]:
    env = {**os.environ, "RNNLAB_RELIABILITY_FIGURES": str(figures)}
    start = time.monotonic()
    code = subprocess.call([sys.executable, "-m", "pytest", "tests/reliability", "-m", "reliability", "-q", "-n", "0",
                            "-p", "no:cacheprovider", f"--junitxml={junit}"], cwd=ROOT, env=env)
    return code, time.monotonic() - start


def outcomes(junit: Path) -> dict[str, int]:
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return counts


def report(rows: list[dict], counts: dict[str, int], seconds: float) -> str:
    kills = [r for r in rows if r["kind"] == "kill"]
    bad = [r for r in rows if r["kind"] == "bad_input"]
    concurrent = [r for r in rows if r["kind"] == "concurrent"]
    determinism = [r for r in rows if r["kind"] == "determinism"]
    points = ", ".join(f"{r['during']} at step {r['step']}" for r in kills)
    drift = max((r["drift"] for r in kills), default=float("nan"))
    lines = [
        "# Reliability report",
        "",
        "Written by `.venv/bin/python tests/reliability/report.py` (the suite `pytest -m reliability`, slow tests "
        "included); do not edit by hand.",
        "",
        f"- git commit {git_commit()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- {cpu_model()}, {os.cpu_count()} CPUs, torch {torch.__version__}, Python {platform.python_version()}",
        f"- suite: {counts['passed']} passed, {counts['failures']} failed, {counts['errors']} errors, "
        f"{counts['skipped']} skipped, {seconds:.0f} s",
        "",
        "| Figure | Value |",
        "|---|---|",
        f"| Kills survived / tried (SIGKILL, then the same command again) | "
        f"{sum(r['survived'] for r in kills)} / {len(kills)} ({points}) |",
        f"| Max test-metric drift after resume | {drift:.4%} |",
        f"| Malformed inputs handled cleanly / tried | {sum(r['handled'] for r in bad)} / {len(bad)} |",
    ]
    for r in concurrent:
        lines.append(f"| Concurrent runs recorded / launched ({r['how']}) | {r['recorded']} / {r['launched']} |")
    for r in determinism:
        lines.append(f"| Determinism, {r['task']}: two CPU runs, same seed | "
                     f"{'byte-identical' if r['identical'] else 'DIFFERENT'} ({', '.join(r['files'])}) |")
    lines += ["", "## Malformed inputs", "",
              "Each: non-zero exit, a message naming the file, key or value, and the sha256 of every earlier "
              "output unchanged (tests/reliability/test_bad_input.py).", "",
              "| Case | Handled |", "|---|---|"]
    lines += [f"| {r['case']} | {'yes' if r['handled'] else 'NO'} |" for r in bad]
    return "\n".join(lines) + "\n"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        figures, junit = Path(tmp) / "figures.jsonl", Path(tmp) / "junit.xml"
        code, seconds = run_suite(figures, junit)
        rows = [json.loads(line) for line in figures.read_text().splitlines()] if figures.exists() else []
        text = report(rows, outcomes(junit), seconds)
    write_text(ROOT / "reports" / "reliability.md", text)
    print(text)
    return code


if __name__ == "__main__":
    sys.exit(main())
