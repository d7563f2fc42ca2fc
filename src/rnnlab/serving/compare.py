"""`rnnlab compare TASK`: the MLflow runs of a task as a table sorted by its metric, and their validation curves.

Runs are read from the experiment rnnlab-TASK of the tracking store (rnnlab.core.tracking.tracking_uri()); nothing
is written to the store. Only FINISHED runs are listed unless `include_all`; tags narrow the runs down
(`cell=lstm`, `role=model`, ...). The PNG overlays the val_loss history of every run in the table.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path

from rnnlab import RnnlabError, tasks
from rnnlab.core.io import atomic_path
from rnnlab.core.tracking import check_reachable, tracking_uri

CURVE_METRIC = "val_loss"
# column -> the param names that hold it, first found wins: the module's own hparams (the run's model, also for
# a baseline), then the flattened Hydra config ({section} is "baseline" for a baseline run, else "model"; a
# baseline run's config holds the baseline's optimizer as `optimizer`, rnnlab.pipeline.train.run_config)
PARAM_COLUMNS = {
    "hidden": ("hidden_size", "{section}/hidden_size"),
    "layers": ("num_layers", "{section}/num_layers"),
    "lr": ("optimizer/lr", "lr", "module/lr"),  # runs from before December 2026: lr, module/lr
    "dropout": ("dropout", "{section}/dropout"),
    "batch": ("data/batch_size", "batch_size"),
    "epochs": ("trainer/max_epochs",),
}
DEFAULT_MAX_RUNS = 20
LINE_STYLES = ("-", "--", ":", "-.")
PAGE = 1000


@dataclass
class Comparison:
    task: str
    experiment: str
    metric: str
    val_metric: str
    ascending: bool
    runs: list  # mlflow Run objects, best first
    matched: int  # runs that matched before --max-runs
    include_all: bool


def parse_tags(pairs: list[str] | None) -> dict[str, str]:
    """["cell=lstm", "role=model"] -> {"cell": "lstm", "role": "model"}; the value may hold '='."""
    tags: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise RnnlabError(f"malformed --tag {pair!r}: expected KEY=VALUE, e.g. --tag cell=lstm")
        if "`" in key:
            raise RnnlabError(f"malformed --tag {pair!r}: a tag name cannot hold a backtick")
        if "'" in value and '"' in value:
            raise RnnlabError(f"--tag {pair!r}: MLflow filters cannot match a value with both ' and \"")
        if key in tags and tags[key] != value:
            raise RnnlabError(f"--tag {key} given twice: {tags[key]!r} and {value!r}")
        tags[key] = value
    return tags


def quote(value: str) -> str:
    """A string literal for an MLflow filter: MLflow has no escapes, so pick the quote the value lacks."""
    return f'"{value}"' if "'" in value else f"'{value}'"


def filter_string(tags: dict[str, str], include_all: bool = False) -> str:
    clauses = [f"tags.`{key}` = {quote(value)}" for key, value in tags.items()]
    if not include_all:
        clauses.insert(0, "attributes.status = 'FINISHED'")
    return " and ".join(clauses)


def check_store(uri: str) -> None:
    """A missing SQLite file is an error, not a new empty store created as a side effect; a tracking server
    that does not answer fails fast (MLflow's client retries it for minutes)."""
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):].split("?")[0])
        if not path.is_file():
            raise RnnlabError(f"no tracking store: {path} does not exist (MLFLOW_TRACKING_URI={uri})")
    else:
        check_reachable(uri)


def find_runs(task: str, tags: dict[str, str] | None = None, metric: str | None = None,
              max_runs: int = DEFAULT_MAX_RUNS, include_all: bool = False, client=None) -> Comparison:
    """The runs of rnnlab-TASK that carry `tags`, best first by `metric` (default: the task's test metric)."""
    spec = tasks.get(task)
    if max_runs < 1:
        raise RnnlabError(f"--max-runs must be >= 1, got {max_runs}")
    tags = tags or {}
    if client is None:
        from mlflow import MlflowClient

        uri = tracking_uri()
        check_store(uri)
        client = MlflowClient(uri)
    name = f"rnnlab-{task}"
    experiment = client.get_experiment_by_name(name)
    if experiment is None or experiment.lifecycle_stage != "active":
        raise RnnlabError(f"no experiment {name!r} in {client.tracking_uri}: train the task first "
                          f"(rnnlab train task={task})")
    runs, token = [], None
    while True:
        page = client.search_runs([experiment.experiment_id], filter_string(tags, include_all),
                                  max_results=PAGE, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    # the store filtered already; checking again costs nothing and guards against loose matching
    runs = [r for r in runs if all(r.data.tags.get(k) == v for k, v in tags.items())]
    runs = [r for r in runs if "sweep" not in r.data.tags]  # a sweep's parent run only groups its jobs
    if not runs:
        which = " ".join(f"{k}={v}" for k, v in tags.items())
        status = "" if include_all else "finished "
        raise RnnlabError(f"no {status}runs in {name!r}" + (f" with tags {which}" if which else "")
                          + ("" if include_all else " (--all includes failed and killed runs)"))

    default_metric, val_metric = spec.metric, spec.val_metric
    logged = sorted({m for r in runs for m in r.data.metrics})
    if metric is not None and metric not in logged:
        shown = [m for m in logged if "per_class" not in m]
        raise RnnlabError(f"unknown metric {metric!r}: the runs of {name!r} log {', '.join(shown)}")
    if metric is None:
        metric = default_metric if default_metric in logged else val_metric if val_metric in logged else None
        if metric is None:
            raise RnnlabError(f"no run of {name!r} logs {default_metric} or {val_metric}: give --metric")
    ascending = spec.lower_is_better_for(metric)

    def key(run):
        value = run.data.metrics.get(metric)
        missing = value is None or math.isnan(value)
        # runs without the metric last; then best first; ties: the newest first
        return (missing, 0.0 if missing else value if ascending else -value, -(run.info.start_time or 0))

    runs.sort(key=key)
    return Comparison(task, name, metric, val_metric, ascending, runs[:max_runs], len(runs), include_all)


def param(run, column: str) -> str | None:
    section = "baseline" if run.data.tags.get("role") == "baseline" else "model"
    for name in PARAM_COLUMNS[column]:
        value = run.data.params.get(name.format(section=section))
        if value is not None:
            return value
    return None


def short_commit(commit: str | None) -> str:
    if not commit:
        return "-"
    sha, dirty = (commit[:-len("-dirty")], True) if commit.endswith("-dirty") else (commit, False)
    return sha[:8] + ("-dirty" if dirty else "")


def started(run) -> str:
    if not run.info.start_time:
        return "-"
    return dt.datetime.fromtimestamp(run.info.start_time / 1000).strftime("%Y-%m-%d %H:%M")


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def label(run) -> str:
    return f"{run.info.run_name or '-'} ({run.info.run_id[:8]})"


def title(comparison: Comparison) -> str:
    c = comparison
    better = "lower" if c.ascending else "higher"
    return f"{c.experiment}: {len(c.runs)} of {c.matched} runs by {c.metric} ({better} is better)"


def table(comparison: Comparison):
    from rich.table import Table

    c = comparison
    runs = c.runs
    t = Table()
    columns = ["run", "id", "started"] + (["status"] if c.include_all else []) + ["cell", "role"]
    params = [p for p in PARAM_COLUMNS if any(param(r, p) is not None for r in runs)]
    metrics = [c.metric] + ([c.val_metric] if c.val_metric != c.metric else [])
    for name in columns + params:
        t.add_column(name, no_wrap=True)
    for name in metrics:
        t.add_column(name, justify="right", no_wrap=True, style="bold" if name == c.metric else None)
    t.add_column("git commit", no_wrap=True)
    t.add_column("dvc stage", no_wrap=True)
    for run in runs:
        tags = run.data.tags
        row = [run.info.run_name or "-", run.info.run_id[:8], started(run)]
        if c.include_all:
            row.append(run.info.status)
        row += [tags.get("cell", "-"), tags.get("role", "-")]
        row += [param(run, p) or "-" for p in params]
        row += [fmt(run.data.metrics.get(m)) for m in metrics]
        row += [short_commit(tags.get("git_commit")), tags.get("dvc_stage", "-")]
        t.add_row(*row)
    return t


def print_table(comparison: Comparison) -> None:
    from rich.console import Console
    from rich.measure import Measurement

    t = table(comparison)
    console = Console()
    if not console.is_terminal:  # a pipe or a file: never wrap the table at 80 columns
        width = Measurement.get(console, console.options.update(width=10_000), t).maximum
        console = Console(width=max(width, 80))
    console.print(title(comparison), markup=False, highlight=False)
    console.print(t)


def plot(comparison: Comparison, path: str | Path, client=None) -> Path:
    """One PNG: the val_loss history of every run in the comparison against the training step."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    if client is None:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri())
    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    drawn = 0
    for run in comparison.runs:
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, CURVE_METRIC))
        if history:
            steps, values = zip(*history)
            # ten colours, then the next line style: 20 runs stay apart
            ax.plot(steps, values, LINE_STYLES[drawn // 10 % len(LINE_STYLES)], label=label(run),
                    marker="." if len(steps) < 30 else None)
            drawn += 1
    if drawn:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    else:
        ax.text(0.5, 0.5, f"no run logs {CURVE_METRIC}", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.set_ylabel(CURVE_METRIC)
    ax.set_title(f"{comparison.experiment}: {CURVE_METRIC}")
    ax.grid(alpha=0.3)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return path


def run_compare(task: str, tags: list[str] | None = None, metric: str | None = None,
                max_runs: int = DEFAULT_MAX_RUNS, plot_path: str | Path | None = None,
                include_all: bool = False) -> Comparison:
    """The command: every check first, then the table, then the PNG (default reports/compare_TASK.png)."""
    comparison = find_runs(task, parse_tags(tags), metric, max_runs, include_all)
    print_table(comparison)
    written = plot(comparison, plot_path or f"reports/compare_{task}.png")
    print(f"{CURVE_METRIC} curves: {written}")
    return comparison
