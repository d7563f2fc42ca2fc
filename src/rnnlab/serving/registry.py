"""The MLflow Model Registry: each evaluated model becomes a version of rnnlab-<task>, and the alias
`champion` moves to it only when its test score beats the champion's by more than a margin."""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from rnnlab import RnnlabError, tasks
from rnnlab.core.tracking import redact


@dataclass
class Decision:
    model: str
    version: int
    metric: str
    value: float
    champion_version: int | None
    champion_value: float | None
    margin: float
    promoted: bool

    def __str__(self) -> str:
        head = f"{self.model} v{self.version}: {self.metric} {self.value:.4f}"
        if self.champion_version is None:
            return f"{head}; no champion yet -> champion"
        against = f"champion v{self.champion_version} {self.champion_value:.4f} (margin {self.margin:g})"
        return f"{head} vs {against} -> {'promoted to champion' if self.promoted else 'champion kept'}"


def model_name(task: str) -> str:
    return f"rnnlab-{task}"


def beats(value: float, champion: float, margin: float, lower_better: bool) -> bool:
    """True when `value` improves on `champion` by more than `margin` (a NaN never does)."""
    gain = champion - value if lower_better else value - champion
    return math.isfinite(value) and gain > margin


def champion(client: mlflow.MlflowClient, name: str, alias: str):
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:  # no such model or alias yet
        return None


def run_metric(client: mlflow.MlflowClient, run_id: str, metric: str, what: str) -> float:
    value = client.get_run(run_id).data.metrics.get(metric)
    if value is None:
        raise RnnlabError(f"{what}: its MLflow run {run_id} has no metric {metric!r} to compare")
    return value


def register(task: str, checkpoint: str | Path, run_id: str, tracking_uri: str, margin: float = 0.0,
             alias: str = "champion") -> Decision:
    """Log `checkpoint` as a pyfunc model to the training run `run_id` (which holds the test metrics),
    register it, and move `alias` to it if it beats the current holder. The decision is logged to the run."""
    from rnnlab.serving.pyfunc import log_pyfunc

    if margin < 0:
        raise RnnlabError(f"registry.margin must be >= 0, got {margin}")
    spec = tasks.get(task)
    metric = spec.metric
    name = model_name(task)
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri)
    value = run_metric(client, run_id, metric, f"the new {task} model")
    info = log_pyfunc(task, checkpoint, run_id=run_id)
    version = int(mlflow.register_model(info.model_uri, name).version)
    holder = champion(client, name, alias)
    held = run_metric(client, holder.run_id, metric, f"{name} v{holder.version}") if holder else None
    promoted = holder is None or beats(value, held, margin, spec.lower_is_better)  # type: ignore[arg-type]  # held is set with holder
    if promoted:
        client.set_registered_model_alias(name, alias, version)  # type: ignore[arg-type]  # the stub says str; an int works
    decision = Decision(name, version, metric, value, int(holder.version) if holder else None, held, margin,
                        promoted)
    client.set_model_version_tag(name, str(version), "gate", "promoted" if promoted else "kept")
    client.set_tag(run_id, "registry_decision", str(decision))
    client.log_dict(run_id, asdict(decision), "champion_gate.json")
    print(f"registry: {decision}")
    return decision


def model_uri(task: str, tracking_uri: str, alias: str = "champion", version: int | None = None) -> str:
    """models:/rnnlab-<task>@<alias> (or /<version>), checked to exist in the store."""
    name = model_name(task)
    client = mlflow.MlflowClient(tracking_uri)
    try:
        if version is not None:
            client.get_model_version(name, str(version))
            return f"models:/{name}/{version}"
        client.get_model_version_by_alias(name, alias)
    except MlflowException as e:
        which = f"version {version}" if version is not None else f"alias {alias!r}"
        raise RnnlabError(f"{redact(tracking_uri)}: registered model {name} has no {which} "
                          f"(the evaluate stage registers models: dvc repro)") from e
    return f"models:/{name}@{alias}"


def serve_command(uri: str, host: str, port: int) -> list[str]:
    """MLflow's own scoring server (POST /invocations) for the model, in this Python environment."""
    return [sys.executable, "-m", "mlflow", "models", "serve", "-m", uri, "--env-manager", "local",
            "-h", host, "-p", str(port)]
