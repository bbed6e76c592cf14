"""Outputs are not read back from the mount (issue 23, point 6), seen from the kernel (strace -f, every
process): for a mixed batch - a video (transcode with HLS, posters, storyboard), an audio file (AAC, Opus
in WebM, MP3, loudness-normalised AAC), a photo and a scanned PDF (OCR) - the bytes read from the output
files are at most 5 % of the bytes written to them, and every output's sha256 in its manifest, computed
as it was written, is the sha256 of the file.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
from avtools import fast_env
from conftest import SAMPLES, run_cli
from strace_support import READ, VREAD

WRITE = re.compile(r"^(?:write|pwrite64|writev|pwritev|pwritev2)\(\d+<(?P<path>[^>]*)>.*\) = (?P<ret>-?\d+)$")
SOURCES = {"clip.mp4": "video", "tone.m4a": "audio", "photo.jpg": "image", "scan.pdf": "scan"}
MAX_READ_BACK = 0.05


def traced_batch(ws: Path, trace: Path) -> list[str]:
    """Run the CLI on ``ws/in`` under strace -f (every process and thread); returns the traced lines."""
    if shutil.which("strace") is None:
        pytest.fail("strace is not installed (Debian package strace; `make test` installs it)")
    trace.mkdir()
    prefix = [
        "strace", "-f", "-ff", "-qq", "-y", "-s", "0", "-o", str(trace / "t"), "-e",
        "trace=read,pread64,readv,preadv,preadv2,write,pwrite64,writev,pwritev,pwritev2",
    ]  # fmt: skip
    env = fast_env(hls=True, audio_outputs=["aac", "opus", "mp3"], loudnorm=True)  # every kind of writer
    env["MEDIA_WORKER_OCR__OUTPUTS"] = '["txt", "json", "pdf"]'  # and the searchable PDF
    res = run_cli("run", "-w", str(ws), "--json", "-j", "2", "in", prefix=prefix, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    return [line for f in sorted(trace.iterdir()) for line in f.read_text(errors="replace").splitlines()]


def test_outputs_are_hashed_as_written_not_read_back(workspace: Path, tmp_path: Path) -> None:
    (workspace / "in").mkdir()
    for name in SOURCES:
        shutil.copy(SAMPLES / name, workspace / "in" / name)
    lines = traced_batch(workspace, tmp_path / "trace")

    outputs: dict[str, dict[str, object]] = {}
    for name in SOURCES:
        doc = json.loads((workspace / f"processed/_manifests/in/{name}.json").read_bytes())
        assert doc["status"] == "ok", doc
        outputs |= {f"{workspace}/{o['path']}": o for o in doc["outputs"]}
    kinds = {Path(p).suffix for p in outputs}
    # the batch has every kind of output: tool-made (fMP4, HLS segments, WebM, MP3) and worker-made
    assert {
        ".mp4",
        ".m4s",
        ".m3u8",
        ".m4a",
        ".webm",
        ".mp3",
        ".jpg",
        ".webp",
        ".vtt",
        ".txt",
        ".pdf",
    } <= kinds

    read = dict.fromkeys(outputs, 0)
    written = dict.fromkeys(outputs, 0)
    for line in lines:
        if (m := READ.match(line)) and m["path"] in read and int(m["ret"]) > 0:
            read[m["path"]] += int(m["ret"])
        elif (m := VREAD.match(line)) and m["path"] in read:
            pytest.fail(f"a vectored read of an output: {line}")
        elif (m := WRITE.match(line)) and m["path"] in written and int(m["ret"]) > 0:
            written[m["path"]] += int(m["ret"])
    for path, out in outputs.items():
        data = Path(path).read_bytes()
        # written once, whole, and the manifest's hash (computed on the way) is the file's
        assert written[path] == len(data) == out["size"], (path, written[path], out["size"])
        assert out["sha256"] == hashlib.sha256(data).hexdigest(), path
    ratio = sum(read.values()) / sum(written.values())
    print(f"outputs: {len(outputs)}, {sum(written.values())} bytes written, {sum(read.values())} read back")
    assert ratio <= MAX_READ_BACK, {p: n for p, n in read.items() if n}
