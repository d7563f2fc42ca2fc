import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def actionlint() -> str:
    found = shutil.which("actionlint") or Path(sys.executable).with_name("actionlint")
    assert Path(found).is_file(), "actionlint is missing: install the dev extra (./run test does)"
    return str(found)


def test_workflows_pass_actionlint():
    workflows = sorted(str(p) for p in (ROOT / ".github" / "workflows").glob("*.yml"))
    assert workflows
    result = subprocess.run([actionlint(), *workflows], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }}\n")
    result = subprocess.run([actionlint(), str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "nope" in result.stdout
