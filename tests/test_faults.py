"""Faults injected for real: a full workspace (a small tmpfs mounted as the workspace).  Clean per-file
errors that say which fault it is, retryable where a retry can help, partial outputs deleted, the rest of
the batch still processed."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SAMPLES, json_lines, run_cli
from PIL import Image


@pytest.fixture
def small_workspace(tmp_path: Path) -> Iterator[Path]:
    """A 1.5 MiB tmpfs: room for the sources and one photo's thumbnails, not for a second, larger one."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs")
    ws = tmp_path / "ws"
    ws.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1536k", "tmpfs", str(ws)], check=True)
    try:
        yield ws
    finally:
        subprocess.run(["umount", "-l", str(ws)], check=False)


def test_a_full_workspace_is_a_clean_retryable_per_file_error(small_workspace: Path) -> None:
    ws = small_workspace
    (ws / "in").mkdir()
    shutil.copy(SAMPLES / "logo.png", ws / "in/a_logo.png")  # small outputs: fits
    noisy = Image.effect_noise((1600, 1067), 90).convert("RGB")  # outputs that do not compress: do not fit
    noisy.save(ws / "in/b_noise.jpg", quality=60)
    res = run_cli("run", "-w", str(ws), "--json", "-j", "1", "in")
    by = {r["source"]: r for r in json_lines(res.stdout)}
    assert res.returncode == 1, res.stderr[-2000:]
    assert by["in/a_logo.png"]["status"] == "ok", by["in/a_logo.png"]
    full = by["in/b_noise.jpg"]
    assert full["status"] == "failed" and full["error_kind"] == "workspace_full" and full["retryable"], full
    assert "workspace is full" in full["error"] and "internal error" not in full["error"]
    # the failed source left nothing: no output, no manifest, no lease
    leftovers = [p.relative_to(ws).as_posix() for p in ws.rglob("*b_noise*") if p.is_file()]
    assert leftovers == ["in/b_noise.jpg"], leftovers
