"""One list of system packages for the image and the machines that test it, and one lock for Python.

scripts/system-packages.txt pins the Debian packages; the Dockerfile installs them through
scripts/system-packages.sh, the bootstrap installs the same versions here, and .venv is made from Debian's
own /usr/bin/python3 - so tests, CI and the image run one interpreter and one tesseract.  These tests fail
when this machine drifts from the list or the lock; tests/test_image.py checks the built image the same way.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib import metadata

import pytest
from conftest import REPO

LIST = REPO / "scripts" / "system-packages.txt"


def entries() -> list[tuple[str, str, str]]:
    rows = []
    for line in LIST.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            pkg, ver, where = line.split()[:3]
            rows.append((pkg, ver, where))
    return rows


def pinned(*scopes: str) -> dict[str, str]:
    return {p: v for p, v, w in entries() if w in scopes and v != "-"}


def lock_versions() -> dict[str, str]:
    out = {}
    for line in (REPO / "requirements-dev.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, ver = line.split("==", 1)
            out[name.strip().lower().replace("_", "-").replace(".", "-")] = ver.strip()
    return out


def norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def test_list_is_well_formed() -> None:
    rows = entries()
    assert len({p for p, _, _ in rows}) == len(rows), "a package is listed twice"
    assert {w for _, _, w in rows} <= {"runtime", "build", "dev", "imagetest", "bench"}
    # what the image runs is pinned exactly
    assert all(v != "-" for _, v, w in rows if w in ("runtime", "build"))
    res = subprocess.run(
        [str(REPO / "scripts/system-packages.sh"), "runtime"], capture_output=True, text=True
    )
    assert res.stdout.split() == [f"{p}={v}" for p, v in pinned("runtime").items()]


def test_dockerfile_installs_the_list() -> None:
    text = (REPO / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    assert len(stages) == 2, "build stage + final stage"
    assert re.search(r"system-packages\.sh runtime build\s*(\\\s*)?\|", stages[0]), stages[0]
    assert re.search(r"system-packages\.sh runtime\s*(\\\s*)?\|", stages[1]), stages[1]
    # no package named anywhere else
    for stage in stages:
        for cmd in re.findall(r"apt-get install([^&\n]*)", stage):
            assert not re.search(r"\b[a-z0-9.+-]+=\S+", cmd), cmd


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not a Debian machine (SKIP_APT set-ups)")
def test_this_machine_has_the_pinned_versions() -> None:
    want = pinned("runtime", "build")
    res = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${Version}\n", *want], capture_output=True, text=True
    )
    have = dict(line.split(" ", 1) for line in res.stdout.splitlines())
    drift = {p: (have.get(p), v) for p, v in want.items() if have.get(p) != v}
    assert not drift, f"installed vs pinned (run scripts/bootstrap.sh): {drift}"


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not a Debian machine (SKIP_APT set-ups)")
def test_venv_runs_debians_python() -> None:
    base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    assert base == os.path.realpath("/usr/bin/python3"), f"the venv is built on {base}, not Debian's python3"
    owner = subprocess.run(["dpkg-query", "-S", base], capture_output=True, text=True).stdout
    assert owner.split(":")[0] in pinned("runtime"), owner


def test_venv_matches_the_lock() -> None:
    lock = lock_versions()
    skip = {"media-worker", "pip", "setuptools", "wheel"}
    drift = {}
    for d in metadata.distributions():
        name = norm(d.metadata["Name"])
        if name not in skip and lock.get(name) != d.version:
            drift[name] = (d.version, lock.get(name))
    assert not drift, f"installed vs requirements-dev.lock: {drift}"
