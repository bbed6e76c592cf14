"""Scratch folders: a live job's folder is never swept; a dead job's (SIGKILLed) is, whatever its pid; and
nothing the worker cannot prove it made is ever removed, whatever its name, age or lock file."""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import REPO, SAMPLES, cli_env, run_cli
from test_faults import tmpfs

from config.errors import ScratchUnsafeError
from pipelines.core.scratch import LOCK, MARKER, PARENT_PREFIX, Scratch, scratch_root, sweep

HOLD = (
    "import sys, time; from pipelines.core.scratch import Scratch; s = Scratch(sys.argv[1]); "
    "(s.path / 'page-0001.png').write_bytes(b'x' * 1000); print(s.path, flush=True); time.sleep(600)"
)
HOUR_AGO = time.time() - 3600


def age(*paths: Path) -> None:
    for p in paths:
        os.utime(p, (HOUR_AGO, HOUR_AGO), follow_symlinks=False)


def killed_job(tmpdir: Path) -> Path:
    """The scratch folder of a real job process (a Scratch with a page in it), SIGKILLed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmpdir)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        held = Path(holder.stdout.readline().strip())
        assert sweep(tmpdir) == [] and held.is_dir()  # its holder is alive
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (held / "page-0001.png").is_file()
    return held


def lookalikes(tmpdir: Path) -> list[Path]:
    """Folders in TMPDIR (and in the worker's own parent) that the worker did not make: named like
    scratch, old, some with a free lock file like the old scratch's ("<pid>\\n")."""
    made = []
    for name in ("media-worker-photos", "media-worker-abc123", f"{PARENT_PREFIX}x", "job-1"):
        folder = tmpdir / name
        folder.mkdir()
        (folder / "photo.jpg").write_bytes((SAMPLES / "photo.jpg").read_bytes())
        made.append(folder)
    (tmpdir / "media-worker-abc123" / LOCK).write_text("4242\n")  # a lock file, but no marker
    root = scratch_root(tmpdir)
    root.mkdir(mode=0o700, exist_ok=True)
    for name, lock in (("job-unmarked", b"4242\n"), ("job-nolock", None), ("job-empty-lock", b"")):
        folder = root / name
        folder.mkdir()
        (folder / "keep.txt").write_text("not the worker's")
        if lock is not None:
            (folder / LOCK).write_bytes(lock)
        made.append(folder)
    for folder in made:
        age(*folder.iterdir(), folder)
    return made


def test_a_live_jobs_folder_stays_and_a_killed_ones_is_swept(tmp_path: Path) -> None:
    held = killed_job(tmp_path)
    assert held.parent == scratch_root(tmp_path)
    assert (held / LOCK).read_bytes().startswith(MARKER)
    assert sweep(tmp_path) == [held] and not held.exists()


def test_own_folder_is_held_until_removed(tmp_path: Path) -> None:
    mine = Scratch(tmp_path)
    root = scratch_root(tmp_path)
    assert mine.path.parent == root and stat.S_IMODE(root.stat().st_mode) == 0o700
    assert sweep(tmp_path) == []  # flock is per open file: this process's own lock holds too
    mine.remove()
    assert list(tmp_path.iterdir()) == []  # the parent too, once empty


def _make_and_remove(tmpdir: str, times: int) -> list[str]:
    errors = []
    for _ in range(times):
        try:
            s = Scratch(tmpdir)
            (s.path / "page.png").write_bytes(b"x")
            sweep(tmpdir)
            s.remove()
        except OSError as exc:
            errors.append(repr(exc))
    return errors


def test_jobs_making_and_removing_the_shared_parent_at_once_never_fail(tmp_path: Path) -> None:
    """Each job's clean-up (and each sweep) removes the parent when it is empty, while other jobs make
    their folders in it: a job that finds its parent gone makes it again.  Three processes, many times."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(3) as pool:
        runs = [pool.apply_async(_make_and_remove, (str(tmp_path), 1500)) for _ in range(3)]
        errors = [e for r in runs for e in r.get(timeout=300)]
    assert errors == []
    assert list(tmp_path.iterdir()) == []


def test_folders_it_did_not_make_survive_any_age_with_or_without_a_lock_file(tmp_path: Path) -> None:
    """Named like scratch, an hour old, a free lock file without the marker (as the old scratch wrote), no
    lock file, an empty one: none is removed; only the killed job's folder is."""
    held = killed_job(tmp_path)
    others = lookalikes(tmp_path)
    assert sweep(tmp_path) == [held]
    for folder in others:
        assert folder.is_dir() and any(folder.iterdir()), folder


def test_a_marked_lock_file_of_another_user_or_a_symlink_is_not_proof(tmp_path: Path) -> None:
    root = scratch_root(tmp_path)
    root.mkdir(mode=0o700)
    theirs = root / "job-theirs"
    theirs.mkdir()
    (theirs / LOCK).write_bytes(MARKER + b"pid=1\n")
    os.chown(theirs / LOCK, 65534, 65534)
    linked = root / "job-linked"
    linked.mkdir()
    (tmp_path / "marked").write_bytes(MARKER + b"pid=1\n")
    (linked / LOCK).symlink_to(tmp_path / "marked")
    (root / "job-dir-link").symlink_to(theirs)
    assert sweep(tmp_path) == []
    assert (theirs / LOCK).exists() and (linked / LOCK).is_symlink() and (root / "job-dir-link").is_symlink()


def test_a_parent_that_is_not_the_workers_own_is_neither_used_nor_swept(tmp_path: Path) -> None:
    """``media-worker-scratch-<uid>`` as a symlink to someone's folder, or owned by another user: no
    scratch is made in it and nothing in it is removed, even a dead job's folder."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    held = killed_job(elsewhere)  # a real dead job's folder, in the folder the link will point to
    dead_root = held.parent
    root = scratch_root(tmp_path)
    root.symlink_to(dead_root)
    assert sweep(tmp_path) == [] and held.is_dir()
    with pytest.raises(ScratchUnsafeError, match="not a real folder"):
        Scratch(tmp_path)
    root.unlink()
    root.mkdir()
    os.chown(root, 65534, 65534)
    with pytest.raises(ScratchUnsafeError, match="owned by uid 65534"):
        Scratch(tmp_path)
    assert sweep(tmp_path) == []
    assert sweep(elsewhere) == [held]  # there it is the worker's own parent


def test_the_demo_workspace_and_lookalikes_survive_a_later_run_that_sweeps_a_killed_job(
    tmp_path: Path, workspace: Path
) -> None:
    """The issue: ``make demo``'s workspace and report, then ``media-worker run`` on another workspace.
    The run's engine start sweeps the SIGKILLed job's scratch and nothing else in TMPDIR."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    held = killed_job(tmpdir)
    tempfile.tempdir, saved = str(tmpdir), tempfile.tempdir  # as `demo` makes its workspace
    try:
        demo = Path(tempfile.mkdtemp(prefix="media-worker-demo-"))
    finally:
        tempfile.tempdir = saved
    report = demo / "reports/sample_media/index.html"
    report.parent.mkdir(parents=True)
    report.write_text("<html>the demo's report</html>")
    age(report, report.parent, report.parent.parent, demo)
    others = lookalikes(tmpdir)
    (workspace / "photo.jpg").write_bytes((SAMPLES / "photo.jpg").read_bytes())
    res = run_cli("run", "-w", str(workspace), "--json", ".", env=cli_env(TMPDIR=str(tmpdir)))
    assert res.returncode == 0, res.stderr[-2000:]
    assert not held.exists(), "the killed job's scratch was not swept"
    assert report.read_text() == "<html>the demo's report</html>"
    for folder in others:
        assert folder.is_dir() and any(folder.iterdir()), folder


def test_a_full_tmpdir_leaves_no_unmarked_folder(tmp_path: Path) -> None:
    """TMPDIR full (Lambda's /tmp): the job folder and its lock file can be made but not marked; the job
    fails with ENOSPC and leaves nothing (an unmarked folder no sweep could ever prove dead)."""
    with tmpfs(tmp_path / "tmp", "64k") as tmp:
        with (tmp / "filler").open("wb", buffering=0) as f, pytest.raises(OSError) as full:
            while True:
                f.write(b"x" * 512)
        assert full.value.errno == errno.ENOSPC
        with pytest.raises(OSError) as exc:
            Scratch(tmp)
        assert exc.value.errno == errno.ENOSPC
        assert [p.name for p in tmp.rglob("*")] == ["filler"]
