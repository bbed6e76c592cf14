"""The ffmpeg command lines a CLI run really executes (strace execve), with the run's paths replaced by
placeholders, so commands can be compared across code changes (tests/fixtures/sdr_commands.json)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from conftest import cli_env, run_cli

EXECVE = re.compile(r'execve\("(?P<exe>[^"]*)", \[(?P<args>.*)\], ')
SCRATCH = re.compile(r"/media-worker-scratch-[0-9]+/job-[A-Za-z0-9_]+")  # pipelines.core.scratch's job folder


def ffmpeg_commands(ws: Path, *args: str, **env: str) -> list[list[str]]:
    """argv of every ffmpeg the CLI ran for ``run -w ws ARGS``; paths as {ws}, {scratch}, {ffmpeg}."""
    trace = ws.parent / "execve.trace"
    prefix = ["strace", "-f", "-qq", "-s", "65536", "-o", str(trace), "-e", "trace=execve"]
    res = run_cli("run", "-w", str(ws), "--json", *args, prefix=prefix, env=cli_env(**env))
    assert res.returncode == 0, res.stderr[-3000:]
    commands = []
    for line in trace.read_text().splitlines():
        m = EXECVE.search(line)
        if not m or "ffmpeg" not in Path(m["exe"]).name or m["exe"] == sys.executable:
            continue
        argv = ast.literal_eval(f"[{m['args']}]")
        if "-i" not in argv:  # locate()'s version and capability probes
            continue
        out = []
        for a in argv[1:]:
            a = a.replace(str(ws), "{ws}")
            a = SCRATCH.sub("/{scratch}", a)
            a = re.sub(r"[^ :]*/\{scratch\}", "{scratch}", a)
            a = re.sub(r"^pipe:([2-9]|[1-9][0-9]+)$", "pipe:{fd}", a)  # an output the worker writes
            out.append(a)
        commands.append(["{ffmpeg}", *out])
    return commands


SDR_CASES = {  # name: (make the source, CLI arguments)
    "clip.mp4 (transcode + video_thumbnails)": ("sample_media/clip.mp4", ["in"]),
    "clip.mp4 (video_thumbnails only)": ("sample_media/clip.mp4", ["-p", "video_thumbnails", "in"]),
    "720p H.264 (3-rung ladder + video_thumbnails)": ("720p", ["in"]),
}


def sdr_case_commands(root: Path, name: str) -> list[list[str]]:
    """Run one SDR case in a fresh workspace under ``root``; its ffmpeg commands."""
    import shutil

    from avtools import make_media

    source, args = SDR_CASES[name]
    ws = root / re.sub(r"\W+", "_", name) / "ws"
    (ws / "in").mkdir(parents=True)
    if source == "720p":
        make_media(ws / "in/clip.mp4", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
                   seconds=2, size="1280x720")  # fmt: skip
    else:
        shutil.copy(Path(__file__).resolve().parents[1] / source, ws / "in/clip.mp4")
    return ffmpeg_commands(ws, *args)
