"""Shared fixtures: a scratch workspace, the CLI as a subprocess, the shared corpus."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, NoReturn

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_media"
CORPUS = REPO.parent / "shared" / "corpus"


def pytest_configure(config: pytest.Config) -> None:
    """In CI (CI=true) the shared corpus must be there: a run without it would pass on ~90 skips."""
    if os.environ.get("CI") == "true" and not CORPUS.is_dir():
        raise pytest.UsageError(f"CI=true but the shared corpus is missing at {CORPUS} (../shared/corpus)")


def cannot_run(reason: str) -> NoReturn:
    """A test that cannot run here: skipped, saying why; under CI (CI=true) a failure, so a CI run never
    passes on tests it silently left out."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI (CI=true) must run this test", pytrace=False)
    pytest.skip(reason)


def need_root(what: str) -> None:
    """For tests that need root (mounts, running the worker as another uid): see :func:`cannot_run`."""
    if os.geteuid() != 0:
        cannot_run(f"needs root {what} (uid {os.geteuid()})")


@pytest.fixture
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"shared corpus not found at {CORPUS} (it lives beside the repo as ../shared/corpus)")
    return CORPUS


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


def add_samples(ws: Path, *names: str, folder: str = "in") -> list[str]:
    """Copy sample_media files into the workspace; returns their relative paths."""
    (ws / folder).mkdir(parents=True, exist_ok=True)
    rels = []
    for name in names:
        shutil.copy(SAMPLES / name, ws / folder / name)
        rels.append(f"{folder}/{name}")
    return rels


def tool(name: str) -> str:
    """A dev tool installed in this venv (or on PATH); fails, naming it, when it is missing."""
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed (dev dependency; `make test` installs it)")
    return found


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIA_WORKER_")}
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str] | None = None, prefix: list[str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    cmd = [*(prefix or []), sys.executable, "-m", "handlers.cli", *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, env=env or cli_env(), cwd=cwd or REPO, timeout=600
    )


def json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


FAILURE_SUFFIX = ".json.failed"  # the default layout: processed/_manifests/<source>.json.failed


def failure_records(ws: Path) -> dict[str, dict[str, Any]]:
    """The failure records under ``ws`` (pipelines/workspace/failure.py), by source path, each checked: the
    schema, and that it sits where the default layout puts that source's record."""
    records = {}
    for p in sorted(ws.rglob(f"*{FAILURE_SUFFIX}")):
        doc = json.loads(p.read_bytes())
        assert doc["schema"] == "media-worker/failure/v1", p
        src = doc["source"]["path"]
        assert p.relative_to(ws).as_posix() == f"processed/_manifests/{src}{FAILURE_SUFFIX}", (p, src)
        assert doc["status"] in ("failed", "timeout") and doc["error"] and doc["error_kind"], doc
        records[src] = doc
    return records


def files_but_failure_records(root: Path) -> list[str]:
    """Every file under ``root`` (relative, sorted) except failure records: what a failed job must
    not leave behind."""
    if not root.exists():
        return []
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not p.name.endswith(FAILURE_SUFFIX)
    )


def assert_only_failure_record(ws: Path, source: str, error: str | None) -> dict[str, Any]:
    """A failed job left nothing under processed/ but its failure record, which gives its error."""
    assert files_but_failure_records(ws / "processed") == []
    records = failure_records(ws)
    assert list(records) == [source], records
    assert records[source]["error"] == error
    return records[source]
