"""Files: atomic writes (a reader never sees a half-written file or folder) and params.yaml lookups."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import yaml

from rnnlab import RnnlabError


@contextlib.contextmanager
def atomic_path(path: str | Path, is_dir: bool = False):
    """Yield a temporary sibling of `path`; rename it over `path` only if the block succeeds. A folder or disk
    that cannot be written raises RnnlabError naming `path`, and whatever was at `path` stays."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if is_dir:
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            os.close(fd)
            tmp = Path(name)
    except OSError as e:
        raise RnnlabError(f"cannot write {path}: {e.strerror}") from e
    try:
        yield tmp
        try:
            if is_dir and path.exists():
                # the old folder moves aside first, so that a crash leaves one of the two complete
                old = path.with_name(f".{path.name}.old-{os.getpid()}")
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old)
            else:
                os.replace(tmp, path)
        except OSError as e:
            raise RnnlabError(f"cannot write {path}: {e.strerror}") from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        try:
            tmp.write_text(text, encoding="utf-8")
        except OSError as e:  # a full disk
            raise RnnlabError(f"cannot write {path}: {e.strerror}") from e


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_yaml(path: str | Path, obj) -> None:
    write_text(path, yaml.safe_dump(obj, sort_keys=False))


def read_params(key: str, params_file: str | Path = "params.yaml"):
    """The value at the dotted `key` of params.yaml (e.g. tasks.charlm.data), or an error naming the file and key."""
    try:
        node = yaml.safe_load(Path(params_file).read_text())
    except OSError as e:
        raise RnnlabError(f"cannot read {params_file}: {e.strerror}") from e
    try:
        for part in key.split("."):
            node = node[part]
    except (KeyError, TypeError) as e:
        raise RnnlabError(f"{params_file}: missing key {key}") from e
    return node
