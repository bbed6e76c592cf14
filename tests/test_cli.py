"""The command line's front door: --version, and paths given absolute."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import pytest
from conftest import add_samples, json_lines, run_cli
from PIL import Image


def test_version_is_the_installed_packages() -> None:
    res = run_cli("--version")
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"media-worker {version('media-worker')}\n"


def test_every_manifest_names_the_same_version(workspace: Path) -> None:
    add_samples(workspace, "logo.png")
    res = run_cli("run", "-w", str(workspace), "--json", "in")
    assert res.returncode == 0, res.stderr
    (r,) = json_lines(res.stdout)
    manifest = json.loads((workspace / r["manifest"]).read_text())
    assert manifest["tools"]["media-worker"] == version("media-worker")


@pytest.mark.parametrize("form", ["file", "folder", "workspace root"])
def test_an_absolute_path_inside_the_workspace_is_processed_like_the_relative_one(
    workspace: Path, form: str
) -> None:
    add_samples(workspace, "logo.png")
    arg = {"file": workspace / "in/logo.png", "folder": workspace / "in", "workspace root": workspace}[form]
    res = run_cli("run", "-w", str(workspace), "--json", str(arg))
    assert res.returncode == 0, res.stderr
    (r,) = json_lines(res.stdout)
    assert r["source"] == "in/logo.png" and r["status"] == "ok"
    assert r["manifest"] == "processed/_manifests/in/logo.png.json"
    manifest = json.loads((workspace / r["manifest"]).read_text())
    assert manifest["source"]["path"] == "in/logo.png"
    with Image.open(workspace / "processed/thumbnails/thumb/in/logo.png.webp") as im:
        assert max(im.size) == 150
    # the relative form now finds the same source up to date
    (again,) = json_lines(run_cli("run", "-w", str(workspace), "--json", "in/logo.png").stdout)
    assert again["status"] == "skipped"


def test_an_absolute_path_outside_the_workspace_is_a_clear_error(workspace: Path) -> None:
    add_samples(workspace, "logo.png")
    neighbour = workspace.parent / "ws-other"  # shares the workspace's name as a prefix
    add_samples(neighbour, "logo.png")
    for arg in (neighbour / "in/logo.png", workspace / "in/../../ws-other/in/logo.png"):
        res = run_cli("run", "-w", str(workspace), "--json", str(arg))
        assert res.returncode == 2
        assert f"{arg}: outside the workspace {workspace}" in res.stderr
    assert not (workspace / "processed").exists() and not (neighbour / "processed").exists()


def test_report_takes_an_absolute_prefix_inside_the_workspace(workspace: Path) -> None:
    add_samples(workspace, "logo.png")
    assert run_cli("run", "-w", str(workspace), "in").returncode == 0
    res = run_cli("report", "-w", str(workspace), "--json", str(workspace / "in"))
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["prefix"] == "in" and summary["ok"] == 1
    assert (workspace / summary["html"]).is_file()
