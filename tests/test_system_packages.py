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
from typing import Any

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


# -- pins that Debian has replaced: found before a build, with the command that fixes them --------------

needs_apt = pytest.mark.skipif(
    shutil.which("apt-cache") is None, reason="no apt-cache (not a Debian machine)"
)
CHECK = [str(REPO / "scripts/system-packages.sh"), "--check"]
ALL_SCOPES = ["runtime", "build", "dev", "imagetest", "bench"]


def with_list(text: str, tmp_path: Any) -> dict[str, str]:
    path = tmp_path / "system-packages.txt"
    path.write_text(text)
    return {**os.environ, "SYSTEM_PACKAGES_LIST": str(path)}


@needs_apt
def test_every_pinned_version_is_still_served() -> None:
    """What `apt-cache madison` lists for the apt sources of this machine (CI runs apt-get update first,
    .ci/run): a pinned version Debian has removed fails here, not halfway through `sam build`."""
    res = subprocess.run([*CHECK, *ALL_SCOPES], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


@needs_apt
def test_a_superseded_pin_stops_with_one_message_naming_it_and_the_fix(tmp_path: Any) -> None:
    text = LIST.read_text()
    old = pinned("runtime")["python3.11"]
    env = with_list(
        text.replace(f"python3.11              {old}", "python3.11              3.11.2-6+deb12u0"), tmp_path
    )
    res = subprocess.run([*CHECK, "runtime", "build"], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "python3.11=3.11.2-6+deb12u0" in lines[0] and "scripts/update-pins.sh" in lines[0]
    assert "python3.11-minimal" not in lines[0]  # only what is gone
    # the Dockerfile runs the check in both stages, before apt-get install
    stages = re.split(r"^FROM ", (REPO / "Dockerfile").read_text(), flags=re.M)[1:]
    for stage in stages:
        assert stage.index("system-packages.sh --check") < stage.index("apt-get install")
    assert "system-packages.sh --check" in (REPO / ".ci/run").read_text()


@needs_apt
def test_update_pins_moves_a_gone_version_to_the_one_served(tmp_path: Any) -> None:
    text = LIST.read_text()
    old = pinned("runtime")["python3.11"]
    stale = text.replace(f"python3.11              {old}", "python3.11              3.11.2-6+deb12u0")
    env = with_list(stale, tmp_path)
    res = subprocess.run(
        [str(REPO / "scripts/update-pins.sh")], capture_output=True, text=True, env=env, timeout=120
    )
    assert res.returncode == 0, res.stderr
    candidate = subprocess.run(["apt-cache", "policy", "python3.11"], capture_output=True, text=True).stdout
    now = re.search(r"Candidate: (\S+)", candidate).group(1)  # type: ignore[union-attr]
    updated = (tmp_path / "system-packages.txt").read_text()
    assert f"python3.11 3.11.2-6+deb12u0 -> {now}" in res.stdout
    assert updated == stale.replace("3.11.2-6+deb12u0", now.ljust(len("3.11.2-6+deb12u0")), 1)
    assert subprocess.run([*CHECK, *ALL_SCOPES], env=env, capture_output=True).returncode == 0
