"""The container image recipe: linted by hadolint (from PyPI, offline) and checked against the code it
points at.  The built image itself is exercised by tests/test_image.py."""

from __future__ import annotations

import glob
import importlib
import json
import re
import subprocess
from pathlib import Path

from conftest import REPO, tool

DOCKERFILE = REPO / "Dockerfile"


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("hadolint"), "--no-color", "--format", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_dockerfile_passes_hadolint() -> None:
    res = hadolint(DOCKERFILE)
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads(res.stdout or "[]") == []


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint is live: an unpinned base image and apt packages are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y tesseract-ocr\n")
    res = hadolint(bad)
    codes = {r["code"] for r in json.loads(res.stdout)}
    assert res.returncode != 0 and {"DL3007", "DL3008"} <= codes, codes


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) with continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_matches_the_code() -> None:
    instr = dockerfile()
    entry = [json.loads(a) for i, a in instr if i == "ENTRYPOINT"]
    cmd = [json.loads(a) for i, a in instr if i == "CMD"]
    assert entry == [["/opt/venv/bin/python", "-m", "awslambdaric"]]
    (handler,) = cmd[-1]
    module, func = handler.rsplit(".", 1)
    assert callable(getattr(importlib.import_module(module), func))
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ignored[ignored.index("*") :][0] == "*", "the build context is an allow-list"
    for i, args in instr:
        if i == "COPY" and not args.startswith("--from="):
            *sources, _dest = args.split()
            for src in sources:
                assert glob.glob(str(REPO / src)), f"COPY source {src} does not exist"
                assert f"!{src}" in ignored, f"COPY source {src} is excluded by .dockerignore"
    run = " ".join(a for i, a in instr if i == "RUN")
    assert "-c requirements-dev.lock" in run  # dependencies pinned by the lock file
    assert "pip uninstall -q -y pip setuptools wheel" in run  # no installers in the final venv
    lock = (REPO / "requirements-dev.lock").read_text()
    assert re.search(r"^awslambdaric==", lock, re.M) and re.search(r"^imageio-ffmpeg==", lock, re.M)
    assert any(i == "USER" and not a.startswith(("root", "0")) for i, a in instr)
