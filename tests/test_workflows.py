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


def ci_jobs() -> dict:
    import yaml

    return yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())["jobs"]


def test_the_team_job_runs_the_team_tests_with_real_postgres_and_the_test_job_leaves_them_to_it():
    jobs = ci_jobs()
    team = jobs["team"]
    assert team["runs-on"] == "ubuntu-latest" and team["env"]["RNNLAB_TEAM_REQUIRED"] == "1"  # no silent skip
    runs = [step.get("run", "") for step in team["steps"]]
    install = next(r for r in runs if "apt-get install" in r)
    # apt's PostgreSQL, its bin folder handed to the stack (rnnlab.team.stack.pg_bin reads RNNLAB_PG_BIN)
    assert "sudo apt-get install" in install and " postgresql" in install and "RNNLAB_PG_BIN=" in install
    assert '>> "$GITHUB_ENV"' in install
    tests = [r for r in runs if "./run test" in r]
    assert tests == ["./run test -m team -n 0"], tests  # every test marked team, in one process: one stack
    assert runs.index(install) < runs.index(tests[0])
    # the test job's pytest steps leave the team tests out: the stack would start twice, and RNNLAB_PG_BIN is unset
    pytest_runs = [s["run"] for s in jobs["test"]["steps"] if s.get("run", "").startswith("./run test")]
    assert pytest_runs and all("not team" in r for r in pytest_runs), pytest_runs


def test_every_team_test_file_is_marked_team():
    """-m team selects by marker: a file of the stack without it would run in neither job."""
    files = [p for p in (ROOT / "tests").glob("test_team*.py")]
    assert len(files) >= 3
    for path in files:
        assert "pytest.mark.team" in path.read_text(), path.name
