"""Scratch folders: a live job's folder is never swept; a dead job's (SIGKILLed) is, whatever its pid."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO

from pipelines.core.scratch import PREFIX, Scratch, sweep

HOLD = (
    "import sys, time; from pipelines.core.scratch import Scratch; s = Scratch(sys.argv[1]); "
    "print(s.path, flush=True); time.sleep(600)"
)


def test_a_live_jobs_folder_stays_and_a_killed_ones_is_swept(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        held = Path(holder.stdout.readline().strip())
        (held / "page-0001.png").write_bytes(b"x" * 1000)
        assert sweep(tmp_path) == [] and held.is_dir()  # its holder is alive
    finally:
        holder.kill()
        holder.wait()
    assert sweep(tmp_path) == [held] and not held.exists()


def test_own_folder_is_held_until_removed(tmp_path: Path) -> None:
    mine = Scratch(tmp_path)
    assert mine.path.name.startswith(PREFIX)
    assert sweep(tmp_path) == []  # flock is per open file: this process's own lock holds too
    mine.remove()
    assert list(tmp_path.iterdir()) == []


def test_a_folder_being_created_is_left_alone(tmp_path: Path) -> None:
    young = tmp_path / f"{PREFIX}abc"
    young.mkdir()  # mkdtemp done, lock not yet taken
    assert sweep(tmp_path) == [] and young.is_dir()
    old = time.time() - 3600
    os.utime(young, (old, old))
    assert sweep(tmp_path) == [young]
