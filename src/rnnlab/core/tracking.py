"""MLflow conventions: tags every run carries, and where the pipeline finds a training run again."""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import subprocess
from pathlib import Path

import yaml
from hydra.experimental.callback import Callback

from rnnlab import RnnlabError
from rnnlab.core.io import write_json

log = logging.getLogger(__name__)


def tracking_uri() -> str:
    """The store runs go to: $MLFLOW_TRACKING_URI, else the project's SQLite file (as in conf/logger/mlflow.yaml)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast on a tracking server that does not answer (MLflow's own client retries for minutes), and
    on a SQLite store whose folder cannot be written."""
    if uri.startswith(("http://", "https://")):
        import requests

        try:
            requests.get(uri.rstrip("/") + "/health", timeout=timeout)
        except requests.RequestException as e:
            raise RnnlabError(f"MLflow tracking server {redact(uri)} is unreachable ({type(e).__name__}); "
                              "start it or set MLFLOW_TRACKING_URI to another store") from e
    elif uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):].split("?")[0])
        if not db.parent.is_dir() or not os.access(db.parent, os.W_OK):
            raise RnnlabError(f"MLflow store {uri}: folder {db.parent} does not exist or is not writable")
        create_store(uri, db)


def create_store(uri: str, db: Path) -> None:
    """MLflow creates a new SQLite store's tables on first use; two processes doing that at the same moment (a
    joblib sweep, `dvc queue start -j 2`) collide ("duplicate column name"). One at a time, under a file lock."""
    import mlflow
    from filelock import FileLock

    with FileLock(f"{db}.lock"):
        mlflow.MlflowClient(uri).search_experiments(max_results=1)


@contextlib.contextmanager
def ends_run(client, run_id: str):
    """Never leave a run RUNNING when the block raises: the UI would show it as in progress forever."""
    try:
        yield
    except BaseException as e:
        client.set_terminated(run_id, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise


def git_commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def data_version(processed_dir: str | Path, lock: str | Path = "dvc.lock") -> str:
    """The DVC hash of the processed data folder, as recorded in dvc.lock ("untracked" if it is not)."""
    try:
        stages = yaml.safe_load(Path(lock).read_text())["stages"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return "untracked"
    target = Path(processed_dir).as_posix().rstrip("/")
    for stage in stages.values():
        for out in stage.get("outs", []):
            if out.get("path", "").rstrip("/") == target:
                return out.get("md5", "untracked")
    return "untracked"


SECRET_KEY = re.compile(r"password|passwd|token|secret|api_?key|credential|authori[sz]ation", re.I)
URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def redact(node):
    """A config with the values of secret-looking keys and the user:password part of URLs masked: params,
    tags and artifacts are readable by everyone who can read the tracking store."""
    if isinstance(node, dict):
        return {k: "***" if SECRET_KEY.search(str(k)) else redact(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [redact(v) for v in node]
    return URL_USERINFO.sub("***@", node) if isinstance(node, str) else node


def run_tags(task: str, cell: str, processed_dir: str | Path, stage: str | None = None) -> dict[str, str]:
    tags = {"task": task, "cell": cell, "git_commit": git_commit(), "data_version": data_version(processed_dir)}
    if stage:
        tags["dvc_stage"] = stage
    if os.environ.get(PARENT_RUN_ENV):  # a job of a sweep: MLflow nests it under the sweep's run
        tags["mlflow.parentRunId"] = os.environ[PARENT_RUN_ENV]
    return tags


PARENT_RUN_ENV = "RNNLAB_PARENT_RUN_ID"


class SweepParentRun(Callback):
    """Hydra callback (conf/config.yaml): a multirun (`rnnlab train -m model=rnn,lstm,gru`) opens one parent
    MLflow run in the task's experiment, and every job's runs become its children. The id travels in the
    environment, so launchers that start jobs in other processes (joblib) keep the link."""

    def on_multirun_start(self, config, **kwargs) -> None:
        import mlflow

        client = mlflow.MlflowClient(config.logger.tracking_uri)
        name = config.logger.experiment_name
        experiment = client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
        sweep = " ".join(config.hydra.overrides.task)
        run = client.create_run(experiment_id, run_name=f"{config.task_name}-sweep",
                                tags={"task": config.task_name, "sweep": sweep, "git_commit": git_commit()})
        self.client, self.run_id = client, run.info.run_id
        os.environ[PARENT_RUN_ENV] = self.run_id
        atexit.register(self.end, "FAILED")  # a job that exits the process never reaches on_multirun_end
        log.info("sweep: parent MLflow run %s in experiment %s", self.run_id, name)

    def on_multirun_end(self, config, **kwargs) -> None:
        self.end("FINISHED")
        atexit.unregister(self.end)

    def end(self, status: str) -> None:
        os.environ.pop(PARENT_RUN_ENV, None)
        if self.client.get_run(self.run_id).info.status == "RUNNING":
            self.client.set_terminated(self.run_id, status)


def save_run_refs(path: Path, run_ids: dict[str, str], tracking_uri: str, experiment: str) -> None:
    """The MLflow runs of one training, by role ("model", "baseline"), for the evaluate stage to add to."""
    write_json(path, {"runs": run_ids, "tracking_uri": tracking_uri, "experiment": experiment})


def load_run_ref(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
