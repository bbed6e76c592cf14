"""The container image recipe and the deployment template: linted by hadolint and cfn-lint (both from
PyPI, offline), and checked against the code they point at.  No Docker engine here: the image itself is
not built; the awslambdaric test boots the same entrypoint from the source tree."""

from __future__ import annotations

import glob
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO

DOCKERFILE = REPO / "Dockerfile"
TEMPLATE = REPO / "deploy" / "template.yaml"
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if not path:
        pytest.fail(f"{name} is not installed (dev dependency; `make test` installs it)")
    return str(path)


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("hadolint"), "--no-color", "--format", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def cfn_lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("cfn-lint"), "--format", "json", "--", str(path)], capture_output=True, text=True, timeout=300
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
    assert entry == [["/usr/local/bin/python", "-m", "awslambdaric"]]
    (handler,) = cmd[-1]
    module, func = handler.rsplit(".", 1)
    assert callable(getattr(importlib.import_module(module), func))
    for i, args in instr:
        if i == "COPY":
            *sources, _dest = args.split()
            for src in sources:
                assert glob.glob(str(REPO / src)), f"COPY source {src} does not exist"
    run = " ".join(a for i, a in instr if i == "RUN")
    for pkg in ("tesseract-ocr", "tesseract-ocr-eng", "tesseract-ocr-osd"):
        assert f'"{pkg}=' in run, f"{pkg} not installed (pinned) in the image"
    assert "-c requirements-dev.lock" in run  # dependencies pinned by the lock file
    lock = (REPO / "requirements-dev.lock").read_text()
    assert re.search(r"^awslambdaric==", lock, re.M) and re.search(r"^imageio-ffmpeg==", lock, re.M)
    assert any(i == "USER" and not a.startswith(("root", "0")) for i, a in instr)


class _Loader(yaml.SafeLoader):
    """YAML loader that accepts CloudFormation's short-form tags (!Ref, !GetAtt, !Sub ...)."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node)
    else:
        value = loader.construct_mapping(node)  # type: ignore[arg-type]
    return {suffix: value}


_Loader.add_multi_constructor("!", _tag)


def template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=_Loader)


def test_template_passes_cfn_lint() -> None:
    res = cfn_lint(TEMPLATE)
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads(res.stdout or "[]") == []


def test_cfn_lint_knows_the_s3files_types(tmp_path: Path) -> None:
    """The lint is live for AWS::S3Files::*: an EFS-style CreationInfo, an out-of-range SizeLessThan and a
    mount path outside /mnt are reported."""
    text = TEMPLATE.read_text()
    text = text.replace("CreationPermissions:", "CreationInfo:")
    text = text.replace("SizeLessThan: 131072", "SizeLessThan: 99999999999999999")
    text = text.replace("LocalMountPath: /mnt/workspace", "LocalMountPath: /workspace")
    bad = tmp_path / "template.yaml"
    bad.write_text(text)
    res = cfn_lint(bad)
    found = json.loads(res.stdout)
    paths = {"/".join(str(p) for p in f["Location"]["Path"]) for f in found}
    assert res.returncode != 0
    assert any("AccessPoint" in p and "RootDirectory" in p for p in paths), paths
    assert any("SizeLessThan" in p for p in paths), paths
    assert any("LocalMountPath" in p for p in paths), paths


def test_template_matches_the_code_and_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from config.settings import load_settings

    res = template()["Resources"]
    fn = res["Function"]["Properties"]
    (handler,) = fn["ImageConfig"]["Command"]
    module, func = handler.rsplit(".", 1)
    assert callable(getattr(importlib.import_module(module), func))
    (fs,) = fn["FileSystemConfigs"]
    env = fn["Environment"]["Variables"]
    assert env["MEDIA_WORKER_WORKSPACE"] == fs["LocalMountPath"]
    assert (
        fn["MemorySize"] == {"Ref": "MemorySize"}
        and template()["Parameters"]["MemorySize"]["MinValue"] >= 512
    )
    # every MEDIA_WORKER_* variable the template sets is a real settings key with a valid value
    concrete = {
        k: ("my-media-bucket" if v == {"Ref": "MediaBucket"} else "20" if isinstance(v, dict) else str(v))
        for k, v in env.items()
        if k.startswith("MEDIA_WORKER_")
    }
    for k in list(os.environ):
        if k.startswith("MEDIA_WORKER_"):
            monkeypatch.delenv(k)
    for k, v in concrete.items():
        monkeypatch.setenv(k, tmp_path.as_posix() if k == "MEDIA_WORKER_WORKSPACE" else v)
    settings = load_settings(None)
    assert settings.aws.bucket == "my-media-bucket" and settings.aws.deadline_margin_seconds == 20
    # the upload rule never sends the layout's own outputs back (recursion guard at the source)
    pattern = res["UploadRule"]["Properties"]["EventPattern"]
    (excluded,) = pattern["detail"]["object"]["key"]
    out = settings.layout.output_path("in/a.jpg", "thumbnails", "thumb", "jpg")
    assert out.startswith(excluded["anything-but"]["prefix"])
    assert settings.layout.manifest_path("in/a.jpg").startswith(excluded["anything-but"]["prefix"])
    assert res["UploadEventSource"]["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # synchronisation rules are the ones `media-worker config sync-rules --cloudformation` prints
    sync = res["FileSystem"]["Properties"]["SynchronizationConfiguration"]
    assert sync == settings.sync.cloudformation()
