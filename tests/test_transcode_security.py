"""Untrusted uploads: a crafted file must not make ffmpeg (or the probe) read other files."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from avtools import FFMPEG, facts, fast_env, make_media
from conftest import (
    assert_only_failure_record,
    failure_records,
    files_but_failure_records,
    json_lines,
    run_cli,
)

OPEN = re.compile(r'openat\([^,]+, "(?P<path>[^"]*)"')


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A private video outside the workspace: solid red frames."""
    d = tmp_path / "private"
    d.mkdir()
    out = d / "secret.ts"
    subprocess.run(
        [FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=red:s=160x120:r=25:d=3",
         "-c:v", "libx264", "-preset", "ultrafast", "-f", "mpegts", str(out)],
        check=True,
    )  # fmt: skip
    return out


def payloads(secret: Path) -> dict[str, str]:
    return {
        "in/evil-hls.mp4": (
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:3\n#EXT-X-PLAYLIST-TYPE:VOD\n"
            f"#EXTINF:3.0,\n{secret}\n#EXTINF:3.0,\nfile://{secret}\n#EXT-X-ENDLIST\n"
        ),
        "in/evil-concat.mov": f"ffconcat version 1.0\nfile '{secret}'\nfile 'file:{secret}'\n",
        "in/evil-sdp.mkv": (
            "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=video 5004 RTP/AVP 96\n"
        ),
    }


def test_the_hls_payload_is_real(secret: Path, tmp_path: Path) -> None:
    """Control: ffmpeg's HLS demuxer follows the playlist and copies the private video into its output.

    (ffmpeg 9 no longer picks HLS by content for a name not ending in .m3u8, and its concat demuxer's
    safe mode refuses absolute paths, so against the worker these two payloads are stopped twice: by the
    worker's demuxer whitelist and by ffmpeg's own checks.  The payload the worker's defence alone stops
    is the relative ffconcat script below: tests/test_transcode_security.py::
    test_a_concat_script_reads_a_neighbouring_upload_only_with_the_defence_off.)"""
    evil = tmp_path / "evil.mp4"
    evil.write_text(payloads(secret)["in/evil-hls.mp4"])
    out = tmp_path / "leak.mp4"
    cmd = [FFMPEG, "-v", "error", "-y", "-f", "hls", "-i", str(evil), "-c", "copy", str(out)]
    subprocess.run(cmd, check=True)
    leaked = facts(out)
    assert leaked.video and (leaked.video["width"], leaked.video["height"]) == (160, 120)


def test_playlists_in_media_files_never_reach_outputs(secret: Path, workspace: Path, tmp_path: Path) -> None:
    (workspace / "in").mkdir()
    for rel, text in payloads(secret).items():
        (workspace / rel).write_text(text)
    make_media(workspace / "in/-good.mp4", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac")
    trace = tmp_path / "trace"
    trace.mkdir()
    prefix = ["strace", "-f", "-qq", "-s", "4096", "-o", str(trace / "t"), "-e", "trace=openat,execve"]
    res = run_cli("run", "-w", str(workspace), "--json", "-j", "1", "in", prefix=prefix, env=fast_env())
    results = {r["source"]: r for r in json_lines(res.stdout)}
    # the hostile files are clean per-file failures; the batch went on and the good file is done
    for rel in payloads(secret):
        r = results[rel]
        assert r["status"] == "failed" and r["error_kind"] == "bad_input", r
        assert "not a media file we accept" in r["error"], r
        assert r["outputs"] == [] and r["manifest"] is None
    assert results["in/-good.mp4"]["status"] == "ok", results["in/-good.mp4"]
    assert res.returncode == 1  # some sources failed
    # no process ever opened the private file
    opened = [m["path"] for line in (trace / "t").read_text().splitlines() if (m := OPEN.search(line))]
    assert opened and not [p for p in opened if "private" in p], "the private file was opened"
    # and nothing red is in any output (every output decodes to the good file's test pattern)
    outputs = files_but_failure_records(workspace / "processed")
    assert all("good" in p for p in outputs if not p.startswith("_manifests/"))
    for p in outputs:
        assert "evil" not in p
    # each hostile file left only the record of why it was refused
    assert {k: r["error"] for k, r in failure_records(workspace).items()} == {
        rel: results[rel]["error"] for rel in payloads(secret)
    }


@pytest.mark.parametrize("defence", ["on", "off"])
def test_a_concat_script_reads_a_neighbouring_upload_only_with_the_defence_off(
    workspace: Path, tmp_path: Path, defence: str
) -> None:
    """An ffconcat script uploaded as ``.mov`` naming a neighbouring object by a relative path (another
    user's private upload in the same bucket; ffmpeg's concat safe mode allows such paths, and the concat
    demuxer is picked by content, whatever the name).  With the worker's defence (playlist demuxers out of
    the whitelist, the default) it is a clean ``bad_input`` and no process opens the neighbour; with
    ``allow_playlist_demuxers = true`` the same upload comes out ``ok`` with the neighbour's red frames in
    its renditions: the defence, not ffmpeg, is what stops it.  (Read on the mount, as every source over
    ``transcode.local_copy_max_bytes`` is: a local copy in scratch would resolve the path elsewhere.)"""
    (workspace / "in").mkdir()
    neighbour = workspace / "in/neighbour-private.dat"  # a suffix no rule processes
    subprocess.run(
        [FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=red:s=160x120:r=25:d=3",
         "-c:v", "libx264", "-preset", "ultrafast", "-f", "mpegts", str(neighbour)],
        check=True,
    )  # fmt: skip
    (workspace / "in/evil-relative.mov").write_text("ffconcat version 1.0\nfile 'neighbour-private.dat'\n")
    trace = tmp_path / "trace"
    trace.mkdir()
    prefix = ["strace", "-f", "-qq", "-s", "4096", "-o", str(trace / "t"), "-e", "trace=openat"]
    extra: dict[str, Any] = {"local_copy_max_bytes": 0}
    if defence == "off":
        extra["allow_playlist_demuxers"] = True
    res = run_cli("run", "-w", str(workspace), "--json", "-j", "1", "in/evil-relative.mov", prefix=prefix,
                  env=fast_env(**extra))  # fmt: skip
    (r,) = json_lines(res.stdout)
    opened = [m["path"] for line in (trace / "t").read_text().splitlines() if (m := OPEN.search(line))]
    touched = [p for p in opened if "neighbour-private" in p]
    if defence == "on":
        assert r["status"] == "failed" and r["error_kind"] == "bad_input", r
        assert "not a media file we accept" in r["error"]
        assert touched == []
        assert_only_failure_record(workspace, "in/evil-relative.mov", r["error"])
    else:
        assert r["status"] == "ok", r
        assert touched, "the neighbour was not read: the payload does not work, the test proves nothing"
        rendition = workspace / "processed/transcode/144p/in/evil-relative.mov.mp4"
        frame = _first_frame(rendition)
        red, green, blue = frame.resize((1, 1)).getpixel((0, 0))
        assert red > 180 and green < 60 and blue < 60, (red, green, blue)  # the neighbour's content


def _first_frame(path: Path) -> Any:
    import av

    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            return f.to_image().convert("RGB")
    raise AssertionError(f"no video frame in {path}")


def test_file_names_that_look_like_options_or_patterns(workspace: Path) -> None:
    """Names starting with '-' or holding '%d' are passed as file: URLs, never as options/patterns."""
    (workspace / "in").mkdir()
    src = make_media(workspace / "in/-y.mp4", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac")
    shutil.copy(src, workspace / "in/clip%d 100%.mp4")
    res = run_cli("run", "-w", str(workspace), "--json", "in", env=fast_env())
    results = {r["source"]: r for r in json_lines(res.stdout)}
    assert res.returncode == 0, res.stderr
    for rel in ("in/-y.mp4", "in/clip%d 100%.mp4"):
        assert results[rel]["status"] == "ok"
        manifest = json.loads((workspace / results[rel]["manifest"]).read_text())
        for o in manifest["outputs"]:
            assert (workspace / o["path"]).stat().st_size == o["size"] > 0
    name = "processed/transcode/240p/in/clip%d 100%.mp4.mp4"
    assert facts(workspace / name).video is not None
    assert not list(workspace.rglob("clip1*"))  # no pattern was expanded
