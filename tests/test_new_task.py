"""A new task is its folder, its conf/ files and one params.yaml entry: a toy task defined only there, in a scratch
copy of the project, is found by every layer (the CLI's help and `rnnlab tasks`, `dvc stage list`, the train,
evaluate and register stages, `rnnlab predict`, the pyfunc model and `rnnlab compare`), with nothing else edited."""

import gzip
import hashlib
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import slice_params, tree_copy

SPEC = '''"""A toy task: a few colour words -> cold | warm."""

from rnnlab.tasks import labelled, register

register(labelled(name="toy", summary="a few colour words -> cold | warm", serve=".serve:Words"))
'''
DATA = '''"""The toy archive: gzip text, one `label<TAB>words` per line."""

import gzip
from pathlib import Path

from datasets import ClassLabel, Dataset, Features, Sequence, Value

from rnnlab.data.splits import SPLITS, class_counts, load_raw, save_splits, stratified_split
from rnnlab.data.vocab import TokenVocab

LABELS = ("cold", "warm")


def read_archive(archive: Path) -> Dataset:
    rows = [line.split("\\t") for line in gzip.decompress(Path(archive).read_bytes()).decode().splitlines()]
    return Dataset.from_dict({"label": [r[0] for r in rows], "text": [r[1] for r in rows]})


def preprocess(raw_dir: Path, out_dir: Path, seed: int, validation: float, test: float) -> dict:
    ds = load_raw(raw_dir).to_dict()
    labels = [LABELS.index(label) for label in ds["label"]]
    rows = stratified_split(labels, {"validation": validation, "test": test}, seed)
    tokens = [text.split() for text in ds["text"]]
    vocab = TokenVocab.build(tokens[i] for i in rows["train"])
    features = Features({"text": Value("string"), "label": ClassLabel(names=list(LABELS)),
                         "tokens": Sequence(Value("int32"))})
    splits, stats = {}, {"rows": {}, "classes": {}}
    for split in SPLITS:
        splits[split] = Dataset.from_dict({"text": [ds["text"][i] for i in rows[split]],
                                           "label": [labels[i] for i in rows[split]],
                                           "tokens": [vocab.encode(tokens[i]) for i in rows[split]]}, features=features)
        stats["rows"][split] = len(rows[split])
        stats["classes"][split] = class_counts([labels[i] for i in rows[split]], LABELS)
    save_splits(out_dir, splits, vocab=vocab.to_dict(), labels=list(LABELS), stats=stats)
    return stats
'''
SERVE = '''from rnnlab.serving.adapters import Labels


class Words(Labels):
    max_steps, unit, what = 20, "words", "text"
    example = "red sun"

    def tokens(self, raw: str) -> list[str]:
        return raw.lower().split()
'''
CONF = {
    "task/toy.yaml": "# @package _global_\ndefaults:\n  - /base/classifier\n  - override /data: toy\n\n"
                     "task_name: toy\nmonitor: val_acc\nmonitor_mode: max\n",
    "data/toy.yaml": "_target_: rnnlab.data.labelled.LabelledDataModule\ntask: toy\n"
                     "processed_dir: ${paths.data_dir}/processed/toy\nbatch_size: 8\neval_batch_size: 16\n",
    "experiment/toy.yaml": "# @package _global_\ntrainer:\n  max_epochs: 2\n",
    "experiment/smoke_toy.yaml": "# @package _global_\ndefaults:\n  - smoke_classifier\n",
}
WORDS = {"cold": ["ice", "snow", "blue", "frost", "winter"], "warm": ["fire", "sun", "red", "summer", "flame"]}


def toy_archive(path: Path) -> str:
    rng = random.Random(0)
    lines = [f"{label}\t{' '.join(rng.choices(WORDS[label], k=3))}" for _ in range(60) for label in WORDS]
    path.write_bytes(gzip.compress("\n".join(lines).encode(), mtime=0))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(root: Path, *cmd: str) -> str:
    # the scratch copy's src/ first: its rnnlab package holds the toy task
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("RNNLAB_CONFIG_DIR", None)
    result = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{cmd}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def test_a_toy_task_in_its_own_folder_reaches_every_layer(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    tree_copy(root, "conf", "src", "dvc.yaml", ".gitignore", ".ci")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    folder = root / "src" / "rnnlab" / "tasks" / "toy"
    folder.mkdir()
    for name, text in (("__init__.py", SPEC), ("data.py", DATA), ("serve.py", SERVE)):
        (folder / name).write_text(text)
    for name, text in CONF.items():
        (root / "conf" / name).write_text(text)
    params = slice_params()
    sha256 = toy_archive(tmp_path / "toy.txt.gz")
    params["tasks"]["toy"] = {"experiment": "smoke_toy", "model": "gru", "overrides": "", "uses": "toy", "seeds": 1, "data": {
        "source": {"requirement": "toy==1.0", "sha256": sha256, "archive": str(tmp_path / "toy.txt.gz")},
        "split": {"seed": 1, "validation": 0.2, "test": 0.2}}}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # nothing that was there is edited: the toy is new files and one params.yaml entry
    assert all(p.read_bytes() == data for p, data in before.items())

    assert re.search(r"^  toy +many-to-one +a few colour words", run(root, "rnnlab", "--help"), re.M)
    assert "toy" in run(root, "rnnlab", "tasks").split()
    run(root, "git", "init", "-q")
    run(root, "dvc", "init", "-q")
    stages = run(root, "dvc", "stage", "list")
    assert {f"{kind}@toy" for kind in ("pull", "preprocess", "train", "evaluate", "register")} <= set(
        re.findall(r"^(\S+)", stages, re.M))

    out = run(root, "dvc", "repro", "register@toy")
    assert set(re.findall(r"Running stage '([\w@]+)'", out)) == {
        "pull@toy", "preprocess@toy", "train@toy", "evaluate@toy", "register@toy"}
    scores = json.loads((root / "metrics" / "toy.json").read_text())
    assert {"accuracy", "macro_f1"} <= set(scores["test"]) and {"bag", "majority"} <= set(scores["baseline"])
    assert "registry: rnnlab-toy v1: test_accuracy" in out
    assert yaml.safe_load((root / "params" / "toy.yaml").read_text())["model"]["cell"] == "gru"

    label, probability = run(root, "rnnlab", "predict", "toy", "fire sun red").split()
    assert label in WORDS and 0 < float(probability) <= 1
    served = run(root, "python", "-c", (
        "import mlflow; from rnnlab.serving.pyfunc import save_pyfunc; "
        "save_pyfunc('toy', 'models/toy/model.ckpt', 'pyfunc_toy'); "
        "print('label:', mlflow.pyfunc.load_model('pyfunc_toy').predict(['fire sun red'])['label'][0])"))
    assert re.search(r"^label: (\w+)$", served, re.M).group(1) == label
    table = run(root, "rnnlab", "compare", "toy", "--plot", str(tmp_path / "toy.png"))
    assert "rnnlab-toy" in table and "test_accuracy" in table
