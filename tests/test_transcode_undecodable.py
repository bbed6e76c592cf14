"""Streams the shipped ffmpeg cannot decode: left out where the rest of the source is usable (named in the
manifest), a clean bad_input naming the codec where nothing is left; never an internal error.

The files are made with the shipped ffmpeg, then one sample entry's codec is renamed in place, as a
container from another tool would carry it: an MP4 audio track becomes AC-4 (``ac-4``; its ``esds`` box
renamed so the AAC description does not win) or MPEG-H 3D Audio (``mhm1``), an MP4 video track MPEG-5 EVC
(``evc1``), a Matroska audio track an unknown ``A_XYZ``.  ffmpeg knows AC-4, MPEG-H and EVC but has no
decoder for them (``ffmpeg -codecs``: no D); PyAV then opens no codec context for the stream."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from avtools import FFMPEG, facts, make_media
from conftest import assert_only_failure_record
from test_transcode_outputs import engine

from pipelines.tools import ffmpeg as ff
from pipelines.tools.probe import probe


def retag(data: bytes, pairs: list[tuple[bytes, bytes]], after: bytes = b"") -> bytes:
    """``data`` with the first occurrence of each old name after ``after`` renamed (same length)."""
    start = data.index(after) if after else 0
    for old, new in pairs:
        at = data.index(old, start)
        data = data[:at] + new + data[at + len(old) :]
    return data


def undecodable(path: Path) -> str:
    """What the shipped ffmpeg says when asked to decode every stream of ``path``."""
    run = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path), "-map", "0", "-f", "null", "-"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode != 0
    return run.stderr


@pytest.fixture
def clips(tmp_path: Path) -> dict[str, Path]:
    mp4 = make_media(tmp_path / "a.mp4", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", seconds=2)
    mkv = make_media(tmp_path / "a.mkv", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "ac3", seconds=2)
    m4a = tmp_path / "v.m4a"  # audio only
    subprocess.run(
        [FFMPEG, "-v", "error", "-f", "lavfi", "-i", "sine=d=2", "-c:a", "aac", str(m4a)], check=True
    )
    return {"mp4": mp4, "mkv": mkv, "m4a": m4a}


@pytest.mark.parametrize(
    ("name", "source", "pairs", "codec"),
    [
        ("ac4.mp4", "mp4", [(b"mp4a", b"ac-4"), (b"esds", b"xsds")], "ac4"),
        ("mpegh.mp4", "mp4", [(b"mp4a", b"mhm1"), (b"esds", b"xsds")], "mpegh_3d_audio"),
        ("unknown.mkv", "mkv", [(b"A_AC3", b"A_XYZ")], "unknown"),
    ],
)
def test_a_video_whose_audio_has_no_decoder_gets_its_video_outputs(
    workspace: Path,
    clips: dict[str, Path],
    name: str,
    source: str,
    pairs: list[tuple[bytes, bytes]],
    codec: str,
) -> None:
    (workspace / "in").mkdir()
    src = workspace / "in" / name
    src.write_bytes(retag(clips[source].read_bytes(), pairs, after=b"stsd" if source == "mp4" else b""))
    assert "no decoder found" in undecodable(src)  # the shipped ffmpeg cannot decode this audio
    res = engine(workspace, hls=True).process(f"in/{name}", pipelines=["transcode", "video_thumbnails"])
    assert res.status == "ok", res
    doc = json.loads((workspace / str(res.manifest)).read_text())
    assert doc["left_out"] == [
        {
            "pipeline": "transcode",
            "stream": 1,
            "type": "audio",
            "codec": codec,
            "reason": doc["left_out"][0]["reason"],
        }
    ]  # video_thumbnails takes no audio: nothing of its outputs is missing
    assert "no decoder" in doc["left_out"][0]["reason"] or "does not know" in doc["left_out"][0]["reason"]
    kinds = {(o["pipeline"], o["path"].rsplit(".", 1)[-1]) for o in doc["outputs"]}
    assert {
        ("transcode", "mp4"),
        ("transcode", "m3u8"),
        ("transcode", "m4s"),
        ("video_thumbnails", "jpg"),
    } <= kinds
    for o in doc["outputs"]:
        path = workspace / o["path"]
        if o["path"].endswith(".mp4"):
            f = facts(path)
            assert f.audio is None and f.video is not None and abs(f.durations["video"] - 2.0) <= 0.1
        elif o["variant"] == "hls":
            assert "mp4a" not in path.read_text() and "avc1." in path.read_text()


def test_an_audio_file_without_a_decodable_stream_is_a_bad_input_naming_the_codec(
    workspace: Path, clips: dict[str, Path]
) -> None:
    (workspace / "in").mkdir()
    (workspace / "in/voice.m4a").write_bytes(
        retag(clips["m4a"].read_bytes(), [(b"mp4a", b"ac-4"), (b"esds", b"xsds")], after=b"stsd")
    )
    res = engine(workspace).process("in/voice.m4a", pipelines=["transcode"])
    assert res.status == "failed" and res.error_kind == "bad_input", res
    assert "audio stream #0 (ac4): ffmpeg has no decoder" in str(res.error)
    assert_only_failure_record(workspace, "in/voice.m4a", res.error)


def test_a_video_stream_without_a_decoder(workspace: Path, clips: dict[str, Path], tmp_path: Path) -> None:
    """The only video stream undecodable: bad_input naming it.  A second, decodable one: that one is used,
    and both pipelines name the other in the manifest."""
    (workspace / "in").mkdir()
    evc = [(b"avc1", b"evc1"), (b"avcC", b"xvcC")]
    (workspace / "in/evc.mp4").write_bytes(retag(clips["mp4"].read_bytes(), evc, after=b"stsd"))
    res = engine(workspace).process("in/evc.mp4", pipelines=["transcode", "video_thumbnails"])
    assert res.status == "failed" and res.error_kind == "bad_input", res
    assert "no video stream can be decoded: video stream #0 (evc)" in str(res.error)

    two = tmp_path / "two.mp4"
    subprocess.run([FFMPEG, "-v", "error", "-i", str(clips["mp4"]), "-i", str(clips["mp4"]), "-map", "0:v",
                    "-map", "1:v", "-map", "0:a", "-c", "copy", str(two)], check=True)  # fmt: skip
    (workspace / "in/two.mp4").write_bytes(retag(two.read_bytes(), evc, after=b"stsd"))  # the first track
    res = engine(workspace).process("in/two.mp4", pipelines=["transcode", "video_thumbnails"])
    assert res.status == "ok", res
    doc = json.loads((workspace / str(res.manifest)).read_text())
    assert {(x["pipeline"], x["stream"], x["codec"]) for x in doc["left_out"]} == {
        ("transcode", 0, "evc"),
        ("video_thumbnails", 0, "evc"),
    }
    mp4 = next(workspace / o["path"] for o in doc["outputs"] if o["path"].endswith(".mp4"))
    f = facts(mp4)
    assert f.video is not None and f.audio is not None  # the second video stream, and the audio


def test_the_probe_checks_the_decoders_of_the_ffmpeg_that_will_decode(clips: dict[str, Path]) -> None:
    """PyAV's libav and the shipped ffmpeg are different builds: a stream PyAV could open but the
    shipped ffmpeg has no decoder for is left out too."""
    tool = ff.locate()
    have = ff.decodable_codecs(tool)
    assert have is not None and {"h264", "aac"} <= have and not {"ac4", "evc", "mpegh_3d_audio"} & have
    demuxers = ["mov"]
    info = probe(clips["mp4"], allowed_demuxers=demuxers, decodable=have)
    assert info.audio is not None and info.left_out == ()
    info = probe(clips["mp4"], allowed_demuxers=demuxers, decodable=have - {"aac"})
    assert info.audio is None and info.video is not None
    assert [(x.index, x.type, x.codec) for x in info.left_out] == [(1, "audio", "aac")]
