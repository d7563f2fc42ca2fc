"""npm packages (the caption task's emoji images), fetched from the registry by URL.

Kept in the task's folder until the task is registered: every DVC stage depends on rnnlab/core, so adding this
to rnnlab.core.sources (beside pypi_sdist and debian_package, where it belongs) would re-run the whole pipeline
for a task that has no stages yet. It moves there with the task's registration."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

from rnnlab import RnnlabError
from rnnlab.core.sources import debian_cache, sha256_of

# Fetched from the registry by URL as the tarball npm itself would download: no node needed, and the pinned
# sha256 is checked before the file enters the cache or anything reads it.
NPM_REGISTRY = "https://registry.npmjs.org"
# the characters of an npm package name (lower case; "@scope/name" for a scoped one) and of a version
NPM_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._~")
NPM_VERSION_CHARS = NPM_NAME_CHARS | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ+")


def npm_name_ok(package: str, version: str) -> bool:
    """Whether `package` and `version` are a plain npm name and version: nothing that could change the URL or
    the cache file's path ("..", "?", a second "/")."""
    scope, _, name = package.rpartition("/")
    if scope and not scope.startswith("@"):
        return False
    names = (scope[1:], name) if scope else (name,)
    return all(n and n[0] != "." and set(n) <= NPM_NAME_CHARS for n in names) and bool(version) \
        and version[0] != "." and set(version) <= NPM_VERSION_CHARS


def npm_tarball_url(package: str, version: str) -> str:
    """The registry's tarball of `package` at `version` (a scoped @scope/name's file is named after name only)."""
    return f"{NPM_REGISTRY}/{package}/-/{package.rpartition('/')[2]}-{version}.tgz"


def npm_tarball(package: str, version: str, sha256: str, archive: str | None = None) -> Path:
    """Return a verified npm tarball (.tgz) of `package` at exactly `version`, from the cache when it holds a
    verified copy ($RNNLAB_CACHE/npm, beside the Debian packages).

    `archive` names a local copy to use instead (offline tests, mirrors); it must match `sha256` as well.
    """
    if not npm_name_ok(package, str(version)):
        raise RnnlabError(f"not an npm package name and version: {package!r} {version!r}")
    if archive:
        path = Path(archive)
        if not path.is_file():
            raise RnnlabError(f"archive not found: {path}")
        _check_npm(path, package, version, sha256)
        return path
    cache = debian_cache().parent / "npm"
    path = cache / f"{package.replace('/', '+')}-{version}.tgz"
    if path.is_file() and sha256_of(path) == sha256.lower():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    url = npm_tarball_url(package, version)
    with tempfile.TemporaryDirectory(prefix="rnnlab-npm-", dir=cache) as tmp:
        tmp_path = Path(tmp) / path.name
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(tmp_path, "wb") as f:
                shutil.copyfileobj(response, f)
        except OSError as e:
            raise RnnlabError(f"cannot download {package}@{version} from {url}: {e}") from e
        _check_npm(tmp_path, package, version, sha256)
        os.replace(tmp_path, path)
    return path


def _check_npm(path: Path, package: str, version: str, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected.lower():
        raise RnnlabError(f"checksum mismatch for npm package {package}@{version} ({path}): expected sha256 {expected}, "
                          f"got {actual}")
