"""Time budget and progress of the ffmpeg pipelines (real ffmpeg, real clock)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from avtools import FAST, make_media
from conftest import failure_records, files_but_failure_records

from config.settings import load_settings
from pipelines.core.engine import Engine


def ffmpeg_processes_using(marker: str) -> list[int]:
    """PIDs of live processes whose command line mentions ``marker``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "ffmpeg" in cmdline and marker in cmdline:
            pids.append(int(entry))
    return pids


def test_two_second_budget_stops_ffmpeg_and_leaves_nothing(workspace: Path) -> None:
    """A 40 s source with a slow preset cannot finish in 2 s: timeout, no partial output, no manifest."""
    (workspace / "in").mkdir()
    make_media(
        workspace / "in/long.mp4", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", seconds=40
    )
    settings = load_settings(
        None,
        workspace=workspace,
        transcode={**FAST, "preset": "veryslow", "deadline_margin_seconds": 0.5, "local_copy_max_bytes": 0},
    )
    seen: list[float] = []
    res = Engine(settings).process(
        "in/long.mp4",
        deadline=time.monotonic() + 2.0,
        progress=lambda src, pipeline, fraction, msg: seen.append(fraction),
    )
    assert res.status == "timeout" and res.retryable and res.error_kind == "timeout", res
    assert "deadline" in (res.error or "")
    assert res.outputs == [] and res.manifest is None
    # no partial rendition, sprite, poster or manifest: only the record of why
    assert files_but_failure_records(workspace) == ["in/long.mp4"]
    assert failure_records(workspace)["in/long.mp4"]["status"] == "timeout"
    assert seen and max(seen) < 1.0  # it had started, and was cut short
    assert ffmpeg_processes_using(str(workspace)) == []  # ffmpeg is gone


def test_progress_is_reported_for_both_pipelines(workspace: Path) -> None:
    (workspace / "in").mkdir()
    make_media(workspace / "in/clip.mp4", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", seconds=6)
    settings = load_settings(None, workspace=workspace, transcode=FAST)
    seen: list[tuple[str, str, float]] = []
    res = Engine(settings).process("in/clip.mp4", progress=lambda s, p, f, m: seen.append((s, p, f)))
    assert res.status == "ok", res
    for name in ("transcode", "video_thumbnails"):
        fractions = [f for s, p, f in seen if p == name and s == "in/clip.mp4"]
        assert fractions and fractions == sorted(fractions) and fractions[-1] == 1.0, (name, fractions)


def test_progress_reaches_the_caller_from_pool_workers(workspace: Path) -> None:
    """The CLI draws one bar per file from these reports, also when workers are processes."""
    from pipelines.batch.pool import run_many

    (workspace / "in").mkdir()
    for name in ("a.mp4", "b.mp4"):
        make_media(
            workspace / "in" / name, "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", seconds=4
        )
    settings = load_settings(None, workspace=workspace, transcode=FAST)
    seen: list[tuple[str, str, float]] = []
    results = run_many(
        settings, ["in/a.mp4", "in/b.mp4"], workers=2, progress=lambda s, p, f, m: seen.append((s, p, f))
    )
    assert [r.status for r in results] == ["ok", "ok"]
    for src in ("in/a.mp4", "in/b.mp4"):
        assert (src, "transcode", 1.0) in seen and (src, "video_thumbnails", 1.0) in seen
