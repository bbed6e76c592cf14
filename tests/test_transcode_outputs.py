"""transcode + video_thumbnails on real files: every output is decoded and measured with PyAV/Pillow."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from avtools import FAST, facts, image_stats, make_media, top_level_boxes, vtt_cues
from conftest import SAMPLES, assert_only_failure_record, failure_records, files_but_failure_records

from config.settings import Settings, load_settings
from pipelines.core.engine import Engine, SourceResult

TOL = 0.1  # seconds: output duration vs the source's decoded duration


def engine(ws: Path, **transcode: Any) -> Engine:
    return Engine(load_settings(None, workspace=ws, transcode={**FAST, **transcode}))


def outputs_of(ws: Path, res: SourceResult) -> list[dict[str, Any]]:
    assert res.manifest, res
    doc = json.loads((ws / res.manifest).read_text())
    return list(doc["outputs"])


def check_source(ws: Path, rel: str, res: SourceResult, settings: Settings) -> dict[str, Any]:
    """Check every output of one source against the source itself; returns a summary."""
    assert res.status == "ok", res
    src = facts(ws / rel)
    limit = settings.transcode.max_output_seconds or float("inf")
    summary: dict[str, Any] = {"renditions": [], "audio": [], "posters": []}
    outs = outputs_of(ws, res)
    assert sorted(o["path"] for o in outs) == sorted(res.outputs)
    for o in outs:
        path = ws / o["path"]
        assert path.stat().st_size == o["size"] > 0
        kind = o["path"].rsplit(".", 1)[-1]
        if o["pipeline"] == "transcode" and kind == "mp4":
            f = facts(path)
            assert f.video and f.video["codec"] == "h264" and f.video["pix_fmt"] == "yuv420p"
            w, h = f.video["width"], f.video["height"]
            assert w % 2 == 0 and h % 2 == 0
            assert src.video is not None
            want_short = int(o["variant"].removesuffix("p"))
            assert min(w, h) <= max(want_short, 2)
            assert abs(f.durations["video"] - min(src.durations["video"], limit)) <= TOL, (o, f.durations)
            if src.audio:
                assert f.audio and f.audio["codec"] == "aac"
                assert abs(f.durations["audio"] - min(src.durations["audio"], limit)) <= TOL
            boxes = top_level_boxes(path)
            assert boxes.index("moov") < boxes.index("mdat"), boxes  # plays before fully downloaded
            assert "moof" in boxes
            summary["renditions"].append((o["variant"], w, h))
        elif o["pipeline"] == "transcode" and kind in ("m4a", "webm", "ogg", "mp3"):
            f = facts(path)
            want = {"m4a": "aac", "webm": "opus", "ogg": "opus", "mp3": "mp3"}[kind]
            assert f.audio and f.audio["codec"].startswith(want) and f.video is None
            assert src.audio is not None
            assert abs(f.durations["audio"] - min(src.durations["audio"], limit)) <= TOL, (o, f.durations)
            if kind == "m4a":
                boxes = top_level_boxes(path)
                assert boxes.index("moov") < boxes.index("mdat"), boxes
            summary["audio"].append(o["variant"])
        elif o["pipeline"] == "video_thumbnails" and o["variant"] in settings.thumbnails.sizes:
            box = settings.thumbnails.sizes[o["variant"]]
            size, mean, spread = image_stats(path.read_bytes())
            assert size == (o["meta"]["width"], o["meta"]["height"])
            assert size[0] <= box[0] and size[1] <= box[1]
            summary["posters"].append((o["variant"], kind, size, mean, spread))
        elif o["variant"] == "sprite":
            size, _, _ = image_stats(path.read_bytes())
            summary["sprite"] = size
        elif o["variant"] == "storyboard":
            summary["cues"] = vtt_cues(path.read_text())
    if "cues" in summary:
        w, h = summary["sprite"]
        for _, _, payload in summary["cues"]:
            x, y, tw, th = (int(v) for v in payload.split("#xywh=")[1].split(","))
            assert x + tw <= w and y + th <= h
    return summary


def test_sample_clip_renditions_posters_storyboard(workspace: Path) -> None:
    (workspace / "in").mkdir()
    shutil.copy(SAMPLES / "clip.mp4", workspace / "in/clip.mp4")
    eng = engine(workspace)
    res = eng.process("in/clip.mp4")
    s = check_source(workspace, "in/clip.mp4", res, eng.settings)
    # 640x360 source: 240p and 144p rungs, 16:9 kept
    assert sorted(s["renditions"]) == [("144p", 256, 144), ("240p", 426, 240)]
    assert s["audio"] == []  # audio files only for audio sources unless audio_from_video
    assert {p[0] for p in s["posters"]} == {"thumb", "medium", "large"}
    for _, _, size, mean, spread in s["posters"]:
        assert mean > 30 and spread > 10  # a real picture, not a black frame
        assert size[0] / size[1] == pytest.approx(16 / 9, rel=0.03)
    # 3 s at one tile per 10 s: one tile of 160x90
    assert s["sprite"] == (160, 90)
    assert [c[:2] for c in s["cues"]] == [(0.0, 3.0)]
    doc = json.loads((workspace / res.manifest).read_text()) if res.manifest else {}
    assert doc["pipelines"] == ["transcode", "video_thumbnails"]
    assert "transcode+video_thumbnails" in doc["timings"]  # one run for both
    assert doc["tools"]["ffmpeg"].startswith("n9") and "pyav" in doc["tools"]


def test_sample_tone_audio_outputs(workspace: Path) -> None:
    (workspace / "in").mkdir()
    shutil.copy(SAMPLES / "tone.m4a", workspace / "in/tone.m4a")
    eng = engine(workspace, audio_outputs=["aac", "opus", "mp3"], loudnorm=True, opus_container="ogg")
    res = eng.process("in/tone.m4a")
    s = check_source(workspace, "in/tone.m4a", res, eng.settings)
    assert sorted(s["audio"]) == ["aac", "loudnorm", "mp3", "opus"]
    assert s["renditions"] == [] and s["posters"] == []
    assert (workspace / "processed/transcode/opus/in/tone.m4a.ogg").is_file()


def test_portrait_phone_video_stays_portrait(workspace: Path, tmp_path: Path) -> None:
    """Stored 640x360 with a 90-degree display matrix (a phone held upright): outputs are portrait."""
    raw = make_media(
        tmp_path / "raw.mp4", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", size="640x360"
    )
    (workspace / "in").mkdir()
    import subprocess

    from avtools import FFMPEG

    subprocess.run(
        [FFMPEG, "-v", "error", "-y", "-display_rotation", "90", "-i", str(raw), "-c", "copy",
         str(workspace / "in/phone.mp4")],
        check=True,
    )  # fmt: skip
    eng = engine(workspace)
    res = eng.process("in/phone.mp4")
    s = check_source(workspace, "in/phone.mp4", res, eng.settings)
    assert sorted(s["renditions"]) == [("144p", 144, 256), ("240p", 240, 426)]
    for _, _, (w, h), _, _ in s["posters"]:
        assert h > w
    assert s["sprite"][1] > s["sprite"][0]
    # the poster-only path (input seeking, ffmpeg rotates and sizes the frame) is portrait too
    eng = engine(workspace, sprite=False)
    shutil.rmtree(workspace / "processed")
    res = eng.process("in/phone.mp4", pipelines=["video_thumbnails"])
    assert res.status == "ok", res
    for o in outputs_of(workspace, res):
        (w, h), _, _ = image_stats((workspace / o["path"]).read_bytes())
        assert (w, h) == (o["meta"]["width"], o["meta"]["height"]) and h > w, o


def test_anamorphic_small_source_is_never_upscaled(workspace: Path, tmp_path: Path) -> None:
    """A 200x150 source with SAR 2:1 displays 400x150: only the smallest rung, at the display size."""
    (workspace / "in").mkdir()
    make_media(
        workspace / "in/wide.mkv", "-vf", "setsar=2", "-c:v", "libx264", "-preset", "ultrafast",
        "-c:a", "aac", size="200x150",
    )  # fmt: skip
    eng = engine(workspace, ladder=[{"height": 720, "max_kbps": 2000}, {"height": 360, "max_kbps": 800}])
    res = eng.process("in/wide.mkv")
    s = check_source(workspace, "in/wide.mkv", res, eng.settings)
    assert s["renditions"] == [("360p", 400, 150)]


def test_hls_variant_plays_from_playlists(workspace: Path) -> None:
    (workspace / "in").mkdir()
    shutil.copy(SAMPLES / "clip.mp4", workspace / "in/clip.mp4")
    eng = engine(workspace, hls=True, hls_segment_seconds=1, gop_seconds=1)
    res = eng.process("in/clip.mp4", pipelines=["transcode"])
    assert res.status == "ok", res
    master = workspace / "processed/transcode/hls/in/clip.mp4.m3u8"
    text = master.read_text()
    assert text.startswith("#EXTM3U") and text.count("#EXT-X-STREAM-INF") == 2
    assert 'CODECS="avc1.640015,mp4a.40.2"' in text or "avc1.64" in text
    # every playlist URL resolves to a written media playlist, which resolves to its fMP4 file
    for url in [ln for ln in text.splitlines() if ln and not ln.startswith("#")]:
        media = (master.parent / url).resolve()
        assert media.is_file(), url
        lines = media.read_text().splitlines()
        assert "#EXT-X-PLAYLIST-TYPE:VOD" in lines and "#EXT-X-ENDLIST" in lines
        seg_urls = {ln for ln in lines if ln and not ln.startswith("#")}
        assert len(seg_urls) == 1
        seg = (media.parent / seg_urls.pop()).resolve()
        assert seg.is_file() and seg.suffix == ".m4s"
        total = sum(float(ln[8:].split(",")[0]) for ln in lines if ln.startswith("#EXTINF:"))
        assert total == pytest.approx(3.0, abs=TOL)
        # PyAV plays the HLS playlist (file protocol only) and finds H.264 + AAC
        import av

        with av.open(str(media), options={"protocol_whitelist": "file"}) as c:
            assert {s.codec_context.name for s in c.streams} == {"h264", "aac"}
    assert sum(1 for p in res.outputs if p.endswith(".m4s")) == 2


@pytest.mark.parametrize(
    ("setting", "value", "needle"),
    [
        ("max_duration_seconds", 1.0, "over the limit of 1 s"),
        ("max_pixels", 640 * 300, "pixels, over the limit"),
        ("max_streams", 1, "streams, over the limit"),
    ],
)
def test_limits_give_a_clean_per_file_failure(workspace: Path, setting: str, value: Any, needle: str) -> None:
    (workspace / "in").mkdir()
    shutil.copy(SAMPLES / "clip.mp4", workspace / "in/clip.mp4")
    res = engine(workspace, **{setting: value}).process("in/clip.mp4")
    assert res.status == "failed" and res.error_kind == "bad_input" and not res.retryable
    assert needle in (res.error or "")
    assert_only_failure_record(workspace, "in/clip.mp4", res.error)


def test_max_output_seconds_cuts_outputs(workspace: Path) -> None:
    (workspace / "in").mkdir()
    shutil.copy(SAMPLES / "clip.mp4", workspace / "in/clip.mp4")
    eng = engine(workspace, max_output_seconds=1.5)
    res = eng.process("in/clip.mp4")
    check_source(workspace, "in/clip.mp4", res, eng.settings)  # durations compared with 1.5 s


def test_poster_only_seeks_and_avoids_black_frames(workspace: Path, tmp_path: Path) -> None:
    """The first 6 s are black; the poster asked for at 5 s comes from the first non-black candidate."""
    (workspace / "in").mkdir()
    make_media(
        workspace / "in/dark.mp4",
        "-vf", "drawbox=c=black:t=fill:enable='lt(t,6)'", "-c:v", "libx264", "-preset", "ultrafast",
        "-g", "25", "-c:a", "aac",
        seconds=10,
    )  # fmt: skip
    eng = engine(workspace, sprite=False, poster_seconds=5.0, poster_candidates=3)
    res = eng.process("in/dark.mp4", pipelines=["video_thumbnails"])
    assert res.status == "ok", res
    outs = outputs_of(workspace, res)
    assert {o["variant"] for o in outs} == {"thumb", "medium", "large"}
    for o in outs:
        _, mean, spread = image_stats((workspace / o["path"]).read_bytes())
        assert mean > 30 and spread > 10, o
        assert o["meta"]["time"] == 6.0  # the frame at 5 s is black, the one at 6 s is not


VIDEO_OK = {
    "-video-with-dash-.mp4",
    "big_buck_bunny_432_433.webm",
    "gomp4_sample.mp4",
    "gomp4_sample_fragmented.mp4",
    "no_duration.webm",
    "pymediainfo_sample.mp4",
    "transparent.webm",
}
AUDIO_OK = {
    "alac.m4a",
    "empty.ogg",
    "example.opus",
    "has-tags.m4a",
    "silence-2s-PCM-44100-16-ID3v23.wav",
    "silence-44-s.flac",
    "silence-44-s.mp3",
}
BAD = {
    "emptyfile.mp3": "empty file",
    "too-short.mp3": "not a media file",
    "ooming-header.flac": "not a media file",
    "pymediainfo_sample.mkv": "not a media file",
    "gomp4_sample_qt.mp4": "cannot be decoded",
    "truncated-64bit.mp4": "cannot be decoded",
    "52-too-short-block-size.flac": "truncated or damaged",
}


def test_every_corpus_file_gives_checked_outputs_or_a_clean_failure(corpus: Path, workspace: Path) -> None:
    folder = corpus / "video_audio"
    names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != "PROVENANCE.md")
    assert set(names) == VIDEO_OK | AUDIO_OK | set(BAD), "corpus changed: classify the new files"
    (workspace / "in").mkdir()
    for name in names:
        shutil.copy(folder / name, workspace / "in" / name)
    eng = engine(workspace)
    for name in names:
        rel = f"in/{name}"
        res = eng.process(rel)
        if name in BAD:
            assert res.status == "failed" and res.error_kind == "bad_input", (name, res)
            assert BAD[name] in (res.error or ""), (name, res.error)
            assert res.outputs == [] and res.manifest is None
            continue
        s = check_source(workspace, rel, res, eng.settings)
        if name in VIDEO_OK:
            assert s["renditions"] and s["posters"] and "sprite" in s, name
        else:
            assert sorted(s["audio"]) == ["aac", "opus"] and not s["renditions"], name
    # nothing of the failed sources is left anywhere in the workspace
    # but the record of why
    leftovers = files_but_failure_records(workspace / "processed")
    for bad in BAD:
        assert not [p for p in leftovers if bad in p], bad
    assert sorted(failure_records(workspace)) == sorted(f"in/{bad}" for bad in BAD)
