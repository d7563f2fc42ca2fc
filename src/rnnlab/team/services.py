"""Starting, checking and stopping each server of the team stack (rnnlab.team.stack has the state folder)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from rnnlab import RnnlabError
from rnnlab.team.stack import (
    ADMIN,
    ARTIFACTS_BUCKET,
    DB_USER,
    DVC_BUCKET,
    HOST,
    READER,
    WEED_PORTS,
    Stack,
    pg_bin,
    port_open,
    wait_for,
    weed_bin,
    write_private,
)

DATABASES = ("mlflow", "mlflow_auth")  # the tracking store, and basic auth's users and permissions


# --- PostgreSQL ---------------------------------------------------------------------------------------------------
def as_postgres_user(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root (CI and containers run as root): there, run it as the `postgres` user that
    Debian's package creates."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def give_to_postgres(*paths: Path) -> None:
    if os.geteuid() == 0:
        for path in paths:
            shutil.chown(path, "postgres", "postgres")


def check_reachable_by_postgres(folder: Path) -> None:
    """As root, every folder above the cluster must let the postgres user through (pytest's and mkdtemp's are 700)."""
    if os.geteuid() != 0:
        return
    for parent in folder.parents:
        if not parent.stat().st_mode & 0o001:
            raise RnnlabError(f"PostgreSQL runs as user postgres here (you are root), and it cannot enter {parent}: "
                              f"chmod o+x {parent}, or keep the team folder elsewhere (--dir, $RNNLAB_TEAM_DIR)")


def pg_run(argv: list[str], what: str) -> None:
    done = subprocess.run(as_postgres_user(argv), capture_output=True, text=True)
    if done.returncode != 0:
        raise RnnlabError(f"PostgreSQL {what} failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")


def pg_init(stack: Stack) -> None:
    data = stack.root / "pg"
    if (data / "PG_VERSION").is_file():
        return
    stack.root.mkdir(parents=True, exist_ok=True)
    check_reachable_by_postgres(data)
    data.mkdir(mode=0o700)
    give_to_postgres(data)
    pwfile = stack.root / "pg-init-password"
    write_private(pwfile, stack.secrets()["db_password"] + "\n")
    give_to_postgres(pwfile)
    try:
        pg_run([str(pg_bin() / "initdb"), "-D", str(data), "-U", DB_USER, f"--pwfile={pwfile}", "-E", "UTF8",
                "--locale=C", "--auth-local=scram-sha-256", "--auth-host=scram-sha-256"], "initdb")
    finally:
        pwfile.unlink(missing_ok=True)
    # TCP on the loopback only, no Unix socket (its path would be another thing to share); port from ports.json
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(f"\n# rnnlab team stack\nlisten_addresses = '{HOST}'\nport = {stack.ports['postgres']}\n"
                   "unix_socket_directories = ''\n")


def pgpass(stack: Stack) -> Path:
    """libpq's password file (https://www.postgresql.org/docs/15/libpq-pgpass.html): MLflow's URIs stay without it."""
    path = stack.root / "pgpass"
    line = f"{HOST}:{stack.ports['postgres']}:*:{DB_USER}:{stack.secrets()['db_password']}\n"
    if not path.is_file() or path.read_text() != line:
        write_private(path, line)
    return path


def pg_start(stack: Stack) -> None:
    pg_init(stack)
    if pg_healthy(stack):
        return
    log = stack.root / "postgres.log"
    log.touch()
    give_to_postgres(log)
    pg_run([str(pg_bin() / "pg_ctl"), "-D", str(stack.root / "pg"), "-l", str(log), "-w", "-t", "120", "start"],
           f"start (see {log})")
    create_databases(stack)


def create_databases(stack: Stack) -> None:
    import psycopg  # psycopg 3: SQLAlchemy 2.1's default driver for postgresql:// (MLflow's stores)

    # autocommit: CREATE DATABASE cannot run inside a transaction
    with psycopg.connect(host=HOST, port=stack.ports["postgres"], user=DB_USER, dbname="postgres",
                         passfile=str(pgpass(stack)), connect_timeout=10, autocommit=True) as conn:
        for name in DATABASES:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{name}"')


def pg_pid(stack: Stack) -> int | None:
    try:
        return int((stack.root / "pg" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def pg_healthy(stack: Stack) -> bool:
    return pg_pid(stack) is not None and port_open(stack.ports["postgres"])


def pg_stop(stack: Stack) -> None:
    if pg_pid(stack) is None:
        return
    pg_run([str(pg_bin() / "pg_ctl"), "-D", str(stack.root / "pg"), "-m", "fast", "-w", "stop"], "stop")


# --- SeaweedFS (S3) -----------------------------------------------------------------------------------------------
def s3_config(stack: Stack) -> Path:
    """One S3 identity with every right, used by the tracking server and DVC (SeaweedFS's -s3.config format,
    https://github.com/seaweedfs/seaweedfs/wiki/Amazon-S3-API#static-configuration)."""
    import json

    s = stack.secrets()
    config = {"identities": [{"name": "rnnlab", "credentials": [{"accessKey": s["s3_access_key"],
                                                                 "secretKey": s["s3_secret_key"]}],
                              "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
    path = stack.root / "s3.json"
    write_private(path, json.dumps(config))
    return path


def s3_start(stack: Stack) -> None:
    if s3_healthy(stack):
        return
    p = {name: stack.ports[f"weed_{name}"] for name in WEED_PORTS}
    data = stack.root / "weed"
    data.mkdir(exist_ok=True)
    argv = [weed_bin(), "server", f"-dir={data}", f"-ip={HOST}", f"-ip.bind={HOST}", "-master.telemetry=false",
            # small volumes (30 GB each by default), as many as the disk holds: each bucket is a collection that
            # grows several volumes at once, and the default cap of 8 leaves the second bucket none
            "-master.volumeSizeLimitMB=64", "-volume.max=0", "-filer", "-s3", f"-s3.config={s3_config(stack)}",
            # the Iceberg and Lance endpoints would take fixed ports (8181, 9101): off
            "-s3.port.iceberg=0", "-s3.port.lance=0"]
    argv += [f"-{name.replace('_', '.port.') if '_' in name else name + '.port'}={port}" for name, port in p.items()]
    stack.spawn("s3", argv, dict(os.environ))
    if not wait_for(lambda: port_open(p["s3"]), 60):
        raise RnnlabError(f"SeaweedFS did not open its S3 port {p['s3']} within 60 s (see {stack.root / 's3.log'})")
    make_buckets(stack)


def make_buckets(stack: Stack, seconds: float = 90) -> None:
    """The two buckets, and a write that proves a volume server takes data (it registers a moment after S3 is up)."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = stack.s3_client()
    errors: list[str] = []

    def ready() -> bool:
        try:
            existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
            for bucket in (ARTIFACTS_BUCKET, DVC_BUCKET):
                if bucket not in existing:
                    client.create_bucket(Bucket=bucket)
            for bucket in (ARTIFACTS_BUCKET, DVC_BUCKET):
                client.put_object(Bucket=bucket, Key=".rnnlab-probe", Body=b"ok")
                client.delete_object(Bucket=bucket, Key=".rnnlab-probe")
            return True
        except (BotoCoreError, ClientError) as e:
            errors.append(str(e))
            return False

    if not wait_for(ready, seconds, every=1.0):
        raise RnnlabError(f"SeaweedFS S3 at {stack.s3_endpoint} did not take a write within {seconds:.0f} s: "
                          f"{errors[-1] if errors else 'no answer'}")


def s3_healthy(stack: Stack) -> bool:
    return stack.pid("s3") is not None and port_open(stack.ports["weed_s3"])


def s3_stop(stack: Stack) -> None:
    stack.kill("s3")
    # weed leaves its Unix sockets behind (/tmp/seaweedfs-<service>[-grpc]-<port>.sock): ours go with it
    ports = {stack.ports[f"weed_{name}"] for name in WEED_PORTS}
    for sock in Path("/tmp").glob("seaweedfs-*.sock"):
        if sock.stem.rsplit("-", 1)[-1] in {str(p) for p in ports}:
            sock.unlink(missing_ok=True)


# --- MLflow tracking server ---------------------------------------------------------------------------------------
def auth_config(stack: Stack) -> Path:
    """MLflow's basic-auth app (https://mlflow.org/docs/latest/self-hosting/security/basic-http-auth/): users in
    PostgreSQL, READ for every authenticated user by default, writes only where a user is granted them (the admin
    may do everything). The admin's password reaches the server in MLFLOW_AUTH_ADMIN_PASSWORD, not this file."""
    path = stack.root / "basic_auth.ini"
    write_private(path, "[mlflow]\ndefault_permission = READ\n"
                  f"database_uri = {stack.db_uri('mlflow_auth')}\nadmin_username = {ADMIN}\n"
                  "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    return path


def server_env(stack: Stack) -> dict[str, str]:
    s = stack.secrets()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING_", "AWS_"))}
    return {**env, "MLFLOW_AUTH_CONFIG_PATH": str(auth_config(stack)), "MLFLOW_AUTH_ADMIN_PASSWORD": s["admin_password"],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": s["flask_secret"], "PGPASSFILE": str(pgpass(stack)),
            "MLFLOW_S3_ENDPOINT_URL": stack.s3_endpoint, "AWS_ACCESS_KEY_ID": s["s3_access_key"],
            "AWS_SECRET_ACCESS_KEY": s["s3_secret_key"], "AWS_DEFAULT_REGION": "us-east-1"}


def mlflow_start(stack: Stack, seconds: float = 240) -> None:
    if mlflow_healthy(stack):
        return
    mlflow = Path(sys.executable).parent / "mlflow"
    argv = [str(mlflow), "server", "--app-name", "basic-auth", "--backend-store-uri", stack.db_uri("mlflow"),
            # artifacts go through the server (mlflow-artifacts:/): clients need no S3 keys, only their MLflow login
            "--artifacts-destination", f"s3://{ARTIFACTS_BUCKET}/artifacts", "--host", HOST,
            "--port", str(stack.ports["mlflow"]), "--workers", "1"]
    stack.spawn("mlflow", argv, server_env(stack))
    if not wait_for(lambda: mlflow_healthy(stack) or stack.pid("mlflow") is None, seconds, every=1.0) \
            or not mlflow_healthy(stack):
        tail = (stack.root / "mlflow.log").read_text(errors="replace").strip().splitlines()[-1:]
        stack.kill("mlflow")
        raise RnnlabError(f"the MLflow server on {stack.tracking_uri} did not come up within {seconds:.0f} s: {tail}")
    ensure_reader(stack)
    write_env_files(stack)


def mlflow_healthy(stack: Stack) -> bool:
    import requests

    if stack.pid("mlflow") is None:
        return False
    try:
        return requests.get(f"{stack.tracking_uri}/health", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def ensure_reader(stack: Stack) -> None:
    """The read-only user: created by the admin, or its password set again (it may come from a new environment)."""
    import requests

    s = stack.secrets()
    admin = (ADMIN, s["admin_password"])
    base = f"{stack.tracking_uri}/api/2.0/mlflow/users"
    got = requests.get(f"{base}/get", params={"username": READER}, auth=admin, timeout=30)
    if got.status_code == 401:
        raise RnnlabError(f"the MLflow server on {stack.tracking_uri} refused the admin's password: its user store "
                          "keeps the password it was first created with (change it with MLflow's update-password API)")
    if got.status_code == 200:
        done = requests.patch(f"{base}/update-password", json={"username": READER, "password": s["reader_password"]},
                              auth=admin, timeout=30)
    else:
        done = requests.post(f"{base}/create", json={"username": READER, "password": s["reader_password"]},
                             auth=admin, timeout=30)
    if done.status_code != 200:
        raise RnnlabError(f"could not set up MLflow user {READER!r}: HTTP {done.status_code}")


def write_env_files(stack: Stack) -> None:
    """<dir>/admin.env and reader.env: `source` one to work against the stack as that user."""
    s = stack.secrets()
    for user, password in ((ADMIN, s["admin_password"]), (READER, s["reader_password"])):
        write_private(stack.root / f"{user}.env", f"export MLFLOW_TRACKING_URI={stack.tracking_uri}\n"
                      f"export MLFLOW_TRACKING_USERNAME={user}\nexport MLFLOW_TRACKING_PASSWORD={password}\n")


def mlflow_stop(stack: Stack) -> None:
    stack.kill("mlflow")


START = {"postgres": pg_start, "s3": s3_start, "mlflow": mlflow_start}
STOP = {"postgres": pg_stop, "s3": s3_stop, "mlflow": mlflow_stop}
HEALTHY = {"postgres": pg_healthy, "s3": s3_healthy, "mlflow": mlflow_healthy}


def address(stack: Stack, service: str) -> str:
    return {"postgres": stack.db_uri("mlflow"), "s3": stack.s3_endpoint, "mlflow": stack.tracking_uri}[service]


def configure_dvc_remote(stack: Stack, name: str = "team", repo: Path | None = None, default: bool = False) -> None:
    """The DVC remote `name` on the stack's bucket, written to .dvc/config.local (git ignores it: the keys stay out of
    the repository; mode 600) as `dvc remote add --local -f` and `dvc remote modify --local` would, but through DVC's
    config API in this process: on a `dvc` command line the keys would show in `ps` to every user."""
    from dvc.config import Config, ConfigError
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    s = stack.secrets()
    remote = {"url": f"s3://{DVC_BUCKET}/dvc", "endpointurl": stack.s3_endpoint, "access_key_id": s["s3_access_key"],
              "secret_access_key": s["s3_secret_key"], "region": "us-east-1"}
    try:
        config = Config(Repo.find_dvc_dir(str(repo) if repo else None))
        private_file(Path(config.files["local"]))
        with config.edit("local") as local:
            local["remote"][name] = remote  # the whole section, as `dvc remote add -f`
            if default:
                local["core"]["remote"] = name
    except (ConfigError, NotDvcRepoError) as e:  # never echo DVC's message as it is: it may hold the keys
        message = str(e).strip().splitlines()[-1:] or [""]
        for secret in s.values():
            message = [line.replace(secret, "***") for line in message]
        raise RnnlabError(f"dvc remote {name} failed: {message[0]}") from None


def private_file(path: Path) -> None:
    """The file for its owner only, before a secret goes in (DVC rewrites it in place, keeping the mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    path.chmod(0o600)
