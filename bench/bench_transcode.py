#!/usr/bin/env python3
"""Benchmark: the ffmpeg pipelines against bare ffmpeg anchors measured in the same run.

Sources are generated with ffmpeg's lavfi (``testsrc2`` + ``sine``), H.264/AAC like a phone upload:

1. overhead - the worker's ``transcode`` of a 1080p clip (3-rung ladder 720/480/360) vs the identical
   ffmpeg command it ran, run bare (same arguments, outputs elsewhere).  Target: <= 1.05.
2. ladder   - that one process (one decode, ``split``) vs three separate ffmpeg runs, one per rung, each
   with the same per-rung options.  Target: <= 0.7.
3. poster   - ``video_thumbnails`` alone (a poster, sprite off: input seeking) on a 10-minute video vs
   bare ``ffmpeg -ss T -i SRC -frames:v 1 poster.jpg``.  Same single output (one size, JPEG).
   Target: <= 1.2.  The worker takes the keyframe at or before T (``-noaccurate_seek``); the line
   ``poster_keyframe`` compares with bare ffmpeg seeking the same way (informational).

Each pair runs interleaved ``--runs`` times (the poster 5x as often) after a warm-up; the ratio of the
fastest runs is judged, the ratio of the medians is shown too.  The machine is shared and noisy: only
the ratios of one run mean anything.

Usage: ``.venv/bin/python bench/bench_transcode.py [--runs 3] [--json]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config.settings import load_settings
from pipelines.builtin.av import group
from pipelines.builtin.av.group import Branch, Decode
from pipelines.builtin.av.transcode import TranscodeBranch
from pipelines.core.engine import Engine
from pipelines.tools import ffmpeg as ff

LADDER = [
    {"height": 720, "max_kbps": 3500},
    {"height": 480, "max_kbps": 1600},
    {"height": 360, "max_kbps": 900},
]
TARGETS = {"overhead": 1.05, "ladder": 0.7, "poster": 1.2, "poster_keyframe": float("inf")}


def make_source(path: Path, *, seconds: int, size: str, fps: int = 30) -> Path:
    exe = ff.locate().path
    cmd = [
        exe, "-hide_banner", "-v", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=s={size}:r={fps}:d={seconds}",
        "-f", "lavfi", "-i", f"sine=f=440:sample_rate=48000:d={seconds}",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "128k", str(path),
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    return path


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def pair(name: str, ours: Callable[[], Any], anchor: Callable[[], Any], runs: int) -> dict[str, Any]:
    """Interleaved runs; the ratio of the fastest runs is judged (other helpers load this machine, and
    the fastest run is the one least disturbed), the ratio of medians is reported too."""
    ours(), anchor()  # warm-up (page cache, first-run costs)
    a, b = [], []
    for _ in range(runs):
        a.append(timed(ours))
        b.append(timed(anchor))
    ratio = min(a) / min(b)
    return {
        "bench": name,
        "ours_min_s": round(min(a), 3),
        "anchor_min_s": round(min(b), 3),
        "ratio": round(ratio, 3),
        "ours_median_s": round(statistics.median(a), 3),
        "anchor_median_s": round(statistics.median(b), 3),
        "ratio_of_medians": round(statistics.median(a) / statistics.median(b), 3),
        "target": TARGETS[name],
        "ok": ratio <= TARGETS[name],
        "runs": runs,
    }


def capture(engine: Engine, rel: str, pipelines: list[str]) -> tuple[list[str], Decode, list[Branch]]:
    """Run the worker once; return the ffmpeg command it ran, its Decode and its branches."""
    seen: list[tuple[Decode, list[Branch]]] = []
    commands: list[list[str]] = []
    real_command, real_run = group.command, ff.run

    def spy_command(decode: Decode, branches: Any) -> list[str]:
        seen.append((decode, list(branches)))
        return real_command(decode, branches)

    def spy_run(args: list[str], **kw: Any) -> ff.RunResult:
        commands.append(list(args))
        return real_run(args, **kw)

    group.command, ff.run = spy_command, spy_run
    try:
        res = engine.process(rel, pipelines=pipelines)
    finally:
        group.command, ff.run = real_command, real_run
    assert res.status == "ok", res
    return commands[0], seen[0][0], seen[0][1]


def retarget(args: list[str], ws: Path, src: Path, out: Path) -> list[str]:
    """The same command reading ``src`` and writing under ``out`` instead of the workspace."""
    new = []
    for a in args:
        if a.startswith("file:") and "/source." in a:
            a = f"file:{src}"
        elif a.startswith(f"file:{ws}/processed/"):
            target = out / a.removeprefix(f"file:{ws}/processed/")
            target.parent.mkdir(parents=True, exist_ok=True)
            a = f"file:{target}"
        new.append(a)
    return new


def separate_runs(decode: Decode, branches: list[Branch], ws: Path, src: Path, out: Path) -> list[list[str]]:
    """One ffmpeg command per rung (built by the same code), each decoding and scaling the source."""
    (tc,) = branches
    assert isinstance(tc, TranscodeBranch)
    return [
        retarget(group.command(decode, [dataclasses.replace(tc, renditions=[v])]), ws, src, out)
        for v in tc.renditions
    ]


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=20, help="length of the 1080p ladder source")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--sources", type=Path, help="keep generated sources here and reuse them")
    ap.add_argument(
        "--only", choices=["ladder", "poster"], help="run only the ladder pairs or the poster pair"
    )
    opts = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-transcode-"))
    try:
        ws = tmp / "ws"
        (ws / "in").mkdir(parents=True)
        cache = opts.sources or tmp
        cache.mkdir(parents=True, exist_ok=True)
        for name, seconds, size in (("clip.mp4", opts.seconds, "1920x1080"), ("long.mp4", 600, "1280x720")):
            cached = cache / f"{seconds}s-{size}-{name}"
            if not cached.exists():
                make_source(cached, seconds=seconds, size=size)
            shutil.copy(cached, ws / "in" / name)
        src, long = ws / "in/clip.mp4", ws / "in/long.mp4"
        results: list[dict[str, Any]] = []
        if opts.only != "poster":
            results += ladder_pairs(ws, src, tmp, opts.runs)
        if opts.only != "ladder":
            results += poster_pairs(ws, long, tmp, opts.runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report(results, as_json=opts.json)


def ladder_pairs(ws: Path, src: Path, tmp: Path, runs: int) -> list[dict[str, Any]]:
    """(1) the worker vs its bare command, (2) that one process vs one ffmpeg per rung."""
    settings = load_settings(None, workspace=ws, transcode={"ladder": LADDER})
    engine = Engine(settings)
    args, decode, branches = capture(engine, "in/clip.mp4", ["transcode"])
    cmd = retarget(args, ws, src, tmp / "bare")

    def ours() -> None:
        shutil.rmtree(ws / "processed", ignore_errors=True)
        res = engine.process("in/clip.mp4", pipelines=["transcode"])
        assert res.status == "ok" and len(res.outputs) == 3, res

    separate = separate_runs(decode, branches, ws, src, tmp / "separate")
    assert len(separate) == 3
    return [
        pair("overhead", ours, lambda: run(cmd), runs),
        pair("ladder", lambda: run(cmd), lambda: [run(c) for c in separate], runs),
    ]


def poster_pairs(ws: Path, long: Path, tmp: Path, runs: int) -> list[dict[str, Any]]:
    """(3) a poster from a 10-minute video (input seeking), one 1280x720 JPEG each.  The worker takes
    the keyframe at or before the poster time (-noaccurate_seek); the issue's anchor decodes up to the
    exact time, so 'poster_keyframe' (informational, no target) compares with the same seek mode."""
    settings = load_settings(
        None,
        workspace=ws,
        # the anchor writes one baseline JPEG: so does the worker here
        thumbnails={"sizes": {"poster": (1280, 720)}, "formats": ["jpeg"], "progressive": False},
        transcode={"sprite": False, "poster_candidates": 1},
    )
    engine = Engine(settings)
    at = 60.0  # 10 % of 600 s, the default poster time
    bare = [
        ff.locate().path, "-hide_banner", "-v", "error", "-y", "-ss", f"{at:g}", "-i", str(long),
        "-frames:v", "1", "-q:v", "3", str(tmp / "poster.jpg"),
    ]  # fmt: skip

    def poster() -> None:
        shutil.rmtree(ws / "processed", ignore_errors=True)
        res = engine.process("in/long.mp4", pipelines=["video_thumbnails"])
        assert res.status == "ok" and len(res.outputs) == 1, res

    # same seek mode; setpts as in the worker (without it ffmpeg 9 takes as long as an accurate seek)
    i = bare.index("-i")
    keyframe = [*bare[:5], "-noaccurate_seek", *bare[5 : i + 2], "-vf", "setpts=PTS-STARTPTS", *bare[i + 2 :]]
    return [
        pair("poster", poster, lambda: run(bare), 5 * runs),
        pair("poster_keyframe", poster, lambda: run(keyframe), 5 * runs),
    ]


def report(results: list[dict[str, Any]], *, as_json: bool) -> int:
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{'bench':10} {'ours s':>8} {'anchor s':>9} {'ratio':>7} {'target':>7}  ok   (medians: ratio)")
        for r in results:
            print(
                f"{r['bench']:10} {r['ours_min_s']:8.3f} {r['anchor_min_s']:9.3f} {r['ratio']:7.3f} "
                f"{r['target']:7.2f}  {'yes' if r['ok'] else 'NO ':3}  ({r['ratio_of_medians']:.3f})"
            )
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
