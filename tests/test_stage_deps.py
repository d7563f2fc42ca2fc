"""Every DVC stage's code dependencies are complete: each rnnlab module that a stage's command can import is
inside one of the stage's `deps` (a file, or a folder holding it). And the package has no import cycle.

A stage's code is found statically, from its entry point: the module its command runs (rnnlab.pipeline.* or
rnnlab.gradients.*), the task's spec (rnnlab/tasks/TASK/__init__.py), the code that spec names (data.py, its
evaluator and peers, its serve adapter, its LightningModules), and the `_target_` classes of the Hydra config the stage
composes; then every `import` in those modules, function-level ones included, transitively. An import that
the stage never executes says so on its line (`# stage-deps: not run by the ... stage`). `rnnlab.cli` only
dispatches a command to its entry point, and `rnnlab.tasks.discover` imports the other tasks' specs without
running their code: neither is a stage's dependency.
"""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rnnlab import tasks

from conftest import ROOT, compose

SRC = ROOT / "src"
ENTRY = {"pull": "rnnlab.pipeline.prepare", "preprocess": "rnnlab.pipeline.prepare", "train": "rnnlab.pipeline.train",
         "evaluate": "rnnlab.pipeline.evaluate", "register": "rnnlab.pipeline.register", "seeds": "rnnlab.pipeline.seeds"}
GRADIENTS = {"adding": "rnnlab.gradients.lab", "exploding": "rnnlab.gradients.lab",
             "report": "rnnlab.gradients.report"}
SKIP_MARK = "stage-deps: not"


def module_file(name: str) -> Path | None:
    base = SRC / Path(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imports(name: str) -> set[str]:
    """The rnnlab modules `name` imports anywhere in its file (a package's __init__ is imported with any of its
    modules), except on lines marked as never run by a stage."""
    path = module_file(name)
    lines = path.read_text().splitlines()
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if SKIP_MARK in lines[node.lineno - 1] if hasattr(node, "lineno") else False:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if module_file(f"{node.module}.{a.name}")}
    found = {m for m in found if m.split(".")[0] == "rnnlab" and module_file(m)}
    # importing a.b.c runs the __init__ of a and a.b
    return found | {".".join(m.split(".")[:i]) for m in found for i in range(1, m.count(".") + 1)}


def closure(seeds: set[str]) -> set[str]:
    seen, todo = set(), list(seeds)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(imports(name) - seen)
    return seen


def ref_module(task: tasks.Task, ref: str) -> str:
    module = ref.partition(":")[0]
    return task.package + module if module.startswith(".") else module


def config_targets(overrides: list[str]) -> set[str]:
    """The rnnlab modules of the `_target_`s in the config the stage composes."""
    cfg = OmegaConf.to_container(compose(*overrides), resolve=False)
    found = set()

    def walk(node):
        if isinstance(node, dict):
            target = node.get("_target_")
            if isinstance(target, str) and target.startswith("rnnlab."):
                found.add(target.rpartition(".")[0])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(cfg)
    return found


def seeds(cmd: str) -> set[str]:
    words = shlex.split(cmd)
    assert words[0] == "rnnlab", cmd
    if words[1] == "gradients":
        return {GRADIENTS[words[2]]}
    overrides = [w for w in words[2:] if "=" in w]
    name = words[2] if words[1] in ("pull", "preprocess") else dict(w.split("=", 1) for w in overrides)["task"]
    task = tasks.get(name)
    found = {ENTRY[words[1]], task.package}
    if words[1] != "register":
        found.add(ref_module(task, ".data"))
    if words[1] in ("train", "evaluate", "register"):
        found |= {ref_module(task, m) for m in task.modules}
    if words[1] in ("train", "evaluate"):  # register instantiates nothing from the config
        found |= config_targets([w for w in overrides if not w.startswith(("stage=", "seed="))])
    if words[1] == "evaluate":
        found.add(ref_module(task, task.evaluate))
        found |= {ref_module(task, ref) for ref in task.peers}  # rnnlab.evaluation.classify runs them
    if words[1] == "register" and task.serve:
        found.add(ref_module(task, task.serve))
    if words[1] == "pull":
        found.add("rnnlab.core.sources")  # the spec's fetch function
    return found


def dvc_stages() -> list:
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return [(stage.addressing, stage.cmd, [Path(str(dep.def_path)) for dep in stage.deps])
                for stage in repo.index.stages]


STAGES = dvc_stages()


@pytest.mark.parametrize("name, cmd, deps", STAGES, ids=[s[0] for s in STAGES])
def test_a_stage_depends_on_every_module_its_code_imports(name, cmd, deps):
    uncovered = []
    for module in sorted(closure(seeds(cmd))):
        path = module_file(module).relative_to(ROOT)
        if not any(path == dep or dep in path.parents for dep in deps):
            uncovered.append(str(path))
    assert not uncovered, f"{name}: imports code outside its deps: {uncovered}"


def config_files(overrides: list[str]) -> set[Path]:
    """The conf/ files Hydra loads for `rnnlab COMMAND OVERRIDES` (its defaults list, nested defaults included)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        found = GlobalHydra.instance().config_loader().compute_defaults_list("config", overrides, RunMode.RUN)
    return {Path("conf", f"{d.config_path}.yaml") for d in found.defaults
            if d.config_path and not d.config_path.startswith("hydra/")}


# the groups of the composed config that `rnnlab register` reads (rnnlab.pipeline.register): the task's name,
# the model folder, the tracking URI and the registry's gate; it trains and evaluates nothing
REGISTER_READS = ("config.yaml", "task/", "paths/", "logger/", "registry/")
# train and evaluate register nothing: the registry group only passes check_config there (an edit to the
# champion's margin re-runs register, not training)
UNREAD = {"train": ("registry/",), "evaluate": ("registry/",)}
CONFIG_STAGES = [s for s in STAGES if shlex.split(s[1])[1] in ("train", "evaluate", "seeds", "register")]


@pytest.mark.parametrize("name, cmd, deps", CONFIG_STAGES, ids=[s[0] for s in CONFIG_STAGES])
def test_a_stage_depends_on_every_config_file_it_composes(name, cmd, deps):
    """An edit to any conf/ file a stage's config loads (e.g. conf/scheduler/cosine.yaml) re-runs the stage."""
    words = shlex.split(cmd)
    files = config_files([w for w in words[2:] if "=" in w and not w.startswith("+")])
    if words[1] == "register":
        files = {f for f in files if str(f.relative_to("conf")).startswith(REGISTER_READS)}
    files = {f for f in files if not str(f.relative_to("conf")).startswith(UNREAD.get(words[1], ()))}
    uncovered = sorted(str(f) for f in files if not any(f == dep or dep in f.parents for dep in deps))
    assert not uncovered, f"{name}: composes config outside its deps: {uncovered}"


def test_the_config_check_catches_a_missing_group():
    train = next(s for s in STAGES if s[0] == "train@caption")
    words = shlex.split(train[1])
    files = config_files([w for w in words[2:] if "=" in w])
    assert any(f.parent == Path("conf/scheduler") for f in files)  # the experiment's warmup_cosine.yaml
    deps = [d for d in train[2] if d != Path("conf/scheduler")]
    assert not all(any(f == d or d in f.parents for d in deps) for f in files)


def test_every_task_has_all_five_stages():
    names = {s[0] for s in STAGES}
    for task in tasks.names():
        assert {f"{kind}@{task}" for kind in ("pull", "preprocess", "train", "evaluate", "register")} <= names


def test_the_check_catches_a_missing_dependency():
    train = next(s for s in STAGES if s[0] == "train@charlm")
    deps = [d for d in train[2] if d != Path("src/rnnlab/shapes")]
    modules = closure(seeds(train[1]))
    assert "rnnlab.shapes.many_to_many" in modules
    assert not all(any(module_file(m).relative_to(ROOT) == d or d in module_file(m).relative_to(ROOT).parents
                       for d in deps) for m in modules)


def test_no_import_cycles():
    """No module imports, directly or through others, a module that imports it back; function-level imports
    count, so a cycle cannot hide behind one."""
    modules = {".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
               for p in (SRC / "rnnlab").rglob("*.py")}
    graph = {m: {i for i in imports(m) if i in modules and not m.startswith(i + ".")} for m in modules}
    cycles = []
    for start in sorted(modules):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    cycles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert not cycles, "\n".join(sorted(set(cycles))[:10])
