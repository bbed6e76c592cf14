"""Faults injected for real: a full workspace and a full TMPDIR (small tmpfs mounts), read-only bind
mounts, output folders symlinked out of the workspace, and a worker SIGKILLed mid-OCR.  Clean per-file
errors that say which fault it is, retryable where a retry can help, partial outputs deleted, the rest of
the batch still processed, and a rerun after a crash completes with nothing stale left."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from avtools import fast_env, make_media
from conftest import (
    REPO,
    SAMPLES,
    cannot_run,
    cli_env,
    failure_records,
    files_but_failure_records,
    json_lines,
    need_root,
    run_cli,
)
from PIL import Image


def can_mount() -> None:
    need_root("to mount")
    if shutil.which("mount") is None:
        cannot_run("needs mount(8) to mount")


@pytest.mark.parametrize("ci", ["true", None])
def test_a_root_test_that_cannot_run_fails_in_ci(monkeypatch: pytest.MonkeyPatch, ci: str | None) -> None:
    """Not root: under CI=true the test fails, saying why (a CI run never passes on tests it left out);
    elsewhere it is skipped with the reason."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(BaseException) as outcome:  # pytest's skip and fail are BaseExceptions
        can_mount()
    expected = pytest.fail.Exception if ci == "true" else pytest.skip.Exception
    assert outcome.type is expected, outcome
    assert "needs root to mount (uid 1000)" in str(outcome.value)


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    can_mount()
    path.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """``path`` bind-mounted read-only onto itself (writes fail with EROFS)."""
    can_mount()
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def summary(stdout: str) -> dict[str, dict[str, Any]]:
    return {r["source"]: r for r in json_lines(stdout)}


def files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink())


@pytest.fixture
def small_workspace(tmp_path: Path) -> Iterator[Path]:
    """A 1.5 MiB tmpfs: room for the sources and one photo's thumbnails, not for a second, larger one."""
    with tmpfs(tmp_path / "ws", "1536k") as ws:
        yield ws


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


def test_ffmpeg_filling_the_workspace_is_workspace_full(tmp_path: Path) -> None:
    """ffmpeg's renditions fill the workspace: the worker, which writes them from ffmpeg's pipes, hits
    ENOSPC and fails the source as workspace_full naming the rendition (not as ffmpeg's broken pipe), and
    the partial renditions are removed."""
    with tmpfs(tmp_path / "ws", "320k") as ws:
        (ws / "in").mkdir()
        shutil.copy(SAMPLES / "clip.mp4", ws / "in/clip.mp4")  # 166 KiB; its renditions do not fit
        res = run_cli("run", "-w", str(ws), "--json", "in")
        r = summary(res.stdout)["in/clip.mp4"]
        assert r["status"] == "failed" and r["error_kind"] == "workspace_full" and r["retryable"], r
        assert "No space left on device" in r["error"] and "processed/transcode/" in r["error"], r
        assert files(ws) == ["in/clip.mp4"]  # no partial rendition, poster, manifest or lease


def test_a_full_workspace_mid_pipe_stops_ffmpeg_and_is_workspace_full(tmp_path: Path) -> None:
    """Renditions larger than a pipe holds: the worker's write fails while ffmpeg is still writing, so
    ffmpeg then fails on the broken pipe; the source fails as workspace_full (the cause), not as ffmpeg's
    broken pipe, and nothing is left."""
    lossless_noise = ["-vf", "noise=alls=40:allf=t", "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0"]
    src = make_media(tmp_path / "noise.mp4", *lossless_noise, "-c:a", "aac", seconds=2, size="640x480")
    room = src.stat().st_size + (256 << 10)
    with tmpfs(tmp_path / "ws", f"{room // 1024}k") as ws:
        (ws / "in").mkdir()
        shutil.copy(src, ws / "in/noise.mp4")
        env = fast_env(ladder=[{"height": 480, "max_kbps": 50000}])
        res = run_cli("run", "-w", str(ws), "--json", "-p", "transcode", "in", env=env)
        r = summary(res.stdout)["in/noise.mp4"]
        assert r["status"] == "failed" and r["error_kind"] == "workspace_full" and r["retryable"], r
        assert "No space left on device" in r["error"] and "processed/transcode/480p" in r["error"], r
        assert files(ws) == ["in/noise.mp4"]


def test_a_full_tmpdir_is_a_clean_retryable_scratch_error(tmp_path: Path, workspace: Path) -> None:
    """TMPDIR (Lambda's /tmp) full: the video's local copy and the OCR page images do not fit; photos need
    no scratch space and are processed.  Nothing is left in TMPDIR or in the workspace for the failures."""
    for name in ("clip.mp4", "scan.pdf", "photo.jpg"):
        shutil.copy(SAMPLES / name, workspace / name)
    with tmpfs(tmp_path / "tmp", "64k") as tmp:
        res = run_cli("run", "-w", str(workspace), "--json", ".", env=cli_env(TMPDIR=str(tmp)))
        by = summary(res.stdout)
        assert res.returncode == 1, res.stderr[-2000:]
        assert by["photo.jpg"]["status"] == "ok", by["photo.jpg"]
        for name in ("clip.mp4", "scan.pdf"):
            r = by[name]
            assert r["status"] == "failed" and r["error_kind"] == "scratch_full" and r["retryable"], r
            assert f"scratch folder {tmp} (TMPDIR) is full" in r["error"], r
        assert files(tmp) == []
    left = [f for f in files(workspace) if "clip.mp4" in f or "scan.pdf" in f]
    assert left == ["clip.mp4", "scan.pdf"], left


def test_a_read_only_output_folder_fails_those_files_cleanly(workspace: Path) -> None:
    """One output folder on a read-only bind mount (EROFS): the files that write there fail, saying so; the
    others (video posters, audio) are processed."""
    (workspace / "in").mkdir()
    for name in ("photo.jpg", "tone.m4a", "clip.mp4"):
        shutil.copy(SAMPLES / name, workspace / "in" / name)
    (workspace / "processed/thumbnails").mkdir(parents=True)
    with read_only(workspace / "processed/thumbnails"):
        res = run_cli("run", "-w", str(workspace), "--json", "in")
    by = summary(res.stdout)
    assert res.returncode == 1, res.stderr[-2000:]
    r = by["in/photo.jpg"]
    assert r["status"] == "failed" and r["error_kind"] == "workspace_not_writable" and not r["retryable"], r
    assert "processed/thumbnails" in r["error"] and "read-only file system" in r["error"], r
    assert by["in/tone.m4a"]["status"] == "ok" and by["in/clip.mp4"]["status"] == "ok", by
    assert not (workspace / "processed/_manifests/in/photo.jpg.json").exists()


def test_a_read_only_workspace_is_refused_once_with_nothing_written(workspace: Path) -> None:
    (workspace / "in").mkdir()
    shutil.copy(SAMPLES / "photo.jpg", workspace / "in/photo.jpg")
    with read_only(workspace):
        res = run_cli("run", "-w", str(workspace), "--json", "in")
    assert res.returncode == 2, (res.stdout, res.stderr[-2000:])
    assert "read-only file system" in res.stderr and "internal error" not in res.stderr + res.stdout
    assert res.stderr.count("not writable") == 1  # one message for the run, not one per file
    assert files(workspace) == ["in/photo.jpg"]


def test_output_folders_symlinked_out_of_the_workspace_are_refused(tmp_path: Path, workspace: Path) -> None:
    """processed/thumbnails (written by the worker) and processed/transcode (written by ffmpeg) replaced by
    symlinks to a folder outside: both refused before anything is opened; nothing lands outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (workspace / "in").mkdir()
    for name in ("photo.jpg", "clip.mp4", "tone.m4a"):
        shutil.copy(SAMPLES / name, workspace / "in" / name)
    (workspace / "processed").mkdir()
    for pipeline in ("thumbnails", "transcode"):
        (workspace / "processed" / pipeline).symlink_to(outside)
    res = run_cli("run", "-w", str(workspace), "--json", "in")
    by = summary(res.stdout)
    for name in ("photo.jpg", "clip.mp4", "tone.m4a"):
        r = by[f"in/{name}"]
        assert r["status"] == "failed" and r["error_kind"] == "path", r
        assert "is a symlink out of the workspace" in r["error"], r
    assert list(outside.iterdir()) == []
    assert not list((workspace / "processed").rglob("*.json"))  # no manifest


def multipage_scan(path: Path, pages: int) -> Path:
    page = Image.open(SAMPLES / "page.png").convert("L")
    page.save(path, save_all=True, append_images=[page] * (pages - 1), resolution=200)
    return path


def test_sigkill_mid_ocr_then_a_rerun_completes_with_nothing_stale(tmp_path: Path, workspace: Path) -> None:
    """The worker and its tesseract are SIGKILLed mid-document (as Lambda's timeout or the OOM killer
    does).  The killed run leaves no manifest; the rerun takes over the dead holder's lease, removes the
    dead job's scratch folder, and writes a complete, valid output set, and nothing else."""
    (workspace / "in").mkdir()
    multipage_scan(workspace / "in/scan.pdf", pages=8)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = cli_env(TMPDIR=str(scratch))
    cmd = [sys.executable, "-m", "handlers.cli", "run", "-w", str(workspace), "--json", "-j", "1", "in"]
    first = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)  # fmt: skip
    try:
        end = time.monotonic() + 120
        while not any(p.name.endswith(".txt") for p in scratch.rglob("*")):  # a page recognised
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < end, "no page was OCR'd"
            time.sleep(0.05)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.communicate(timeout=60)
    manifest = workspace / "processed/_manifests/in/scan.pdf.json"
    assert not manifest.exists()
    assert (workspace / "processed/_manifests/in/scan.pdf.json.lease").exists()
    dead = [p.name for p in scratch.iterdir()]
    assert dead and dead[0].startswith("media-worker-"), dead  # what the killed job left in TMPDIR

    rerun = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    (r,) = json_lines(rerun.stdout)
    assert r["status"] == "ok", (r, rerun.stderr[-2000:])
    assert list(scratch.iterdir()) == []  # the dead job's scratch folder was swept, the rerun's removed
    doc = json.loads(manifest.read_text())
    for out in doc["outputs"]:
        assert hashlib.sha256((workspace / out["path"]).read_bytes()).hexdigest() == out["sha256"]
    written = [f for f in files(workspace) if f.startswith("processed/")]
    assert written == sorted([o["path"] for o in doc["outputs"]] + ["processed/_manifests/in/scan.pdf.json"])
    text = next(workspace / o["path"] for o in doc["outputs"] if o["path"].endswith(".txt"))
    words = (SAMPLES / "page.txt").read_text().split()
    assert text.read_text().count(words[0]) >= 8  # every page recognised


def test_time_budget_exhausted_mid_batch_stops_cleanly_and_the_continuation_finishes(
    tmp_path: Path, workspace: Path
) -> None:
    """A prefix run (the Lambda handler, through `media-worker invoke`) whose time runs out in the middle of
    a transcode: the job is stopped, its partial renditions removed, the cursor points before it; the
    continuation call does the rest, and every source ends with one complete output set."""
    (workspace / "in").mkdir()
    shutil.copy(SAMPLES / "photo.jpg", workspace / "in/a.jpg")
    make_media(workspace / "in/b.mp4", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
               seconds=30, size="640x480")  # fmt: skip
    shutil.copy(SAMPLES / "logo.png", workspace / "in/c.png")

    def invoke(request: dict[str, Any], timeout: int) -> dict[str, Any]:
        event = tmp_path / "event.json"
        event.write_text(json.dumps(request))
        res = run_cli("invoke", "-e", str(event), "-w", str(workspace), "--timeout", str(timeout),
                      env=cli_env(MEDIA_WORKER_AWS__DEADLINE_MARGIN_SECONDS="1"))  # fmt: skip
        assert res.returncode == 0, res.stderr[-2000:]
        doc: dict[str, Any] = json.loads(res.stdout)
        return doc

    first = invoke({"prefix": "in/"}, timeout=6)
    assert first["done"] is False and first["counts"] == {"ok": 1} and first["cursor"] == "in/a.jpg", first
    assert "during a job" in first["stopped"]
    # no partial rendition, no lease; only the record of the timeout, until the continuation replaces it
    assert [f for f in files_but_failure_records(workspace) if "b.mp4" in f] == ["in/b.mp4"]
    assert failure_records(workspace)["in/b.mp4"]["status"] == "timeout"
    rest = invoke({"prefix": "in/", "cursor": first["cursor"]}, timeout=600)
    assert rest["done"] is True and rest["counts"] == {"ok": 2}, rest
    expected = ["processed/_manifests/in/a.jpg.json"]
    for name in ("a.jpg", "b.mp4", "c.png"):
        doc = json.loads((workspace / f"processed/_manifests/in/{name}.json").read_text())
        for out in doc["outputs"]:
            assert hashlib.sha256((workspace / out["path"]).read_bytes()).hexdigest() == out["sha256"]
            expected.append(out["path"])
        expected.append(f"processed/_manifests/in/{name}.json")
    assert [f for f in files(workspace) if f.startswith("processed/")] == sorted(set(expected))


def _processes_naming(text: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and int(pid) != os.getpid():
            found.append(int(pid))
    return found


def _parent(pid: int) -> int | None:
    try:  # /proc/PID/stat: "pid (comm) state ppid ...", comm may hold spaces and parentheses
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def test_a_sigkilled_worker_takes_its_ffmpeg_with_it(workspace: Path) -> None:
    """Tools run in their own session (so a stop reaches what they start), so a SIGKILL of the worker
    alone (the OOM killer, ``kill -9``) would leave ffmpeg running, still writing outputs while a rerun
    writes the same paths.  The kernel kills it with its parent (PR_SET_PDEATHSIG)."""
    (workspace / "in").mkdir()
    make_media(workspace / "in/long.mp4", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
               seconds=30, size="640x480")  # fmt: skip
    cmd = [sys.executable, "-m", "handlers.cli", "run", "-w", str(workspace), "--json", "-j", "1", "in"]
    worker = subprocess.Popen(cmd, cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        end = time.monotonic() + 60
        while not (tools := [p for p in _processes_naming("libx264") if _parent(p) == worker.pid]):
            assert worker.poll() is None and time.monotonic() < end, "ffmpeg never started"
            time.sleep(0.05)
    finally:
        worker.kill()  # the worker only, not its process group
        worker.communicate(timeout=60)
    end = time.monotonic() + 5
    while (alive := [p for p in tools if Path(f"/proc/{p}").exists()]) and time.monotonic() < end:
        time.sleep(0.05)
    assert alive == [], "ffmpeg outlived the worker"
