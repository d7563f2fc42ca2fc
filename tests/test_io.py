"""Atomic writes: a failed write leaves the previous file or folder as it was, and says which path failed."""

import errno
import os
from pathlib import Path

import pytest

from rnnlab import RnnlabError
from rnnlab.core.io import atomic_path, write_json


def test_a_failing_block_keeps_the_old_file(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"a": ')  # half written, then the process "dies"
            raise RuntimeError("killed")
    assert target.read_text() == '{\n  "a": 1\n}\n' and os.listdir(tmp_path) == ["metrics.json"]


def test_a_folder_is_replaced_whole(tmp_path):
    target = tmp_path / "processed"
    for n in (1, 2):
        with atomic_path(target, is_dir=True) as tmp:
            (tmp / f"part{n}").write_text("x")
    assert sorted(os.listdir(target)) == ["part2"] and os.listdir(tmp_path) == ["processed"]


def test_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    write_json(target, {"a": 1})

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(RnnlabError, match=f"cannot write {target}: No space left on device"):
        write_json(target, {"a": 2})
    monkeypatch.undo()
    assert target.read_text() == '{\n  "a": 1\n}\n' and os.listdir(tmp_path) == ["metrics.json"]


def test_a_read_only_folder_names_the_path(tmp_path, monkeypatch):
    target = tmp_path / "ro" / "model.ckpt"

    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr("tempfile.mkstemp", refused)
    with pytest.raises(RnnlabError, match=f"cannot write {target}: Permission denied"):
        with atomic_path(target):
            pass
