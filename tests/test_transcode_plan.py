"""Planning rules of the ffmpeg pipelines (pure functions) and their settings."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from config.errors import ConfigError
from config.layout import relative_url
from config.settings import load_settings
from config.transcode import Rung, TranscodeSettings
from pipelines.builtin.av import plan as avplan
from pipelines.core.engine import group_pipelines, rules_in_force
from pipelines.core.registry import load_registry
from pipelines.tools.probe import VideoStream


def video(dw: int, dh: int, *, w: int | None = None, h: int | None = None, rot: int = 0) -> VideoStream:
    return VideoStream(0, "h264", w or dw, h or dh, dw, dh, rot, 30.0)


LADDER = TranscodeSettings().ladder


@pytest.mark.parametrize(
    ("display", "expected"),
    [
        ((1920, 1080), [(1920, 1080), (1280, 720), (854, 480), (640, 360)]),
        ((1280, 720), [(1280, 720), (854, 480), (640, 360)]),
        ((1080, 1920), [(1080, 1920), (720, 1280), (480, 854), (360, 640)]),  # portrait stays portrait
        ((3840, 1600), [(2592, 1080), (1728, 720), (1152, 480), (864, 360)]),  # 2.4:1 cinema
        ((320, 180), [(320, 180)]),  # smaller than every rung: smallest rung at the source size
        ((1, 1), [(2, 2)]),  # H.264 4:2:0 needs even sizes: the one unavoidable enlargement
        ((853, 480), [(852, 480), (640, 360)]),
    ],
)
def test_ladder_never_upscales_keeps_aspect_and_even_sizes(
    display: tuple[int, int], expected: list[tuple[int, int]]
) -> None:
    sizes = [(r.width, r.height) for r in avplan.ladder(video(*display), LADDER)]
    assert sizes == expected
    for w, h in sizes:
        assert w % 2 == 0 and h % 2 == 0
        if display != (1, 1):
            assert w <= display[0] + 1 and h <= display[1] + 1
            assert w / h == pytest.approx(display[0] / display[1], rel=0.01)


def test_h264_levels_and_codecs_string() -> None:
    assert avplan.h264_level(1920, 1080, 30) == "4.0"
    assert avplan.h264_level(1920, 1080, 60) == "4.2"
    assert avplan.h264_level(640, 360, 30) == "3.0"
    assert avplan.h264_level(3840, 2160, 30) == "5.1"
    assert avplan.codecs_string("high", "4.0", True) == "avc1.640028,mp4a.40.2"
    assert avplan.codecs_string("main", "3.1", False) == "avc1.4D401F"


def test_sprite_geometry_widens_interval_to_fit() -> None:
    t = TranscodeSettings()
    g = avplan.sprite_geometry(video(1920, 1080), 3600.0, t)  # 1 h at one tile / 10 s = 360 > 100
    assert g.interval == 36.0 and g.tiles == 100 and (g.columns, g.rows) == (10, 10)
    assert (g.tile_width, g.tile_height) == (160, 90)
    g = avplan.sprite_geometry(video(1080, 1920), 25.0, t)
    assert g.tiles == 3 and (g.columns, g.rows) == (3, 1) and (g.tile_width, g.tile_height) == (160, 284)


def test_storyboard_vtt_maps_every_interval_to_its_tile() -> None:
    g = avplan.SpriteGeometry(interval=10, tiles=12, columns=5, rows=3, tile_width=160, tile_height=90)
    text = avplan.storyboard_vtt(g, 115.5, "../../sprite/in/a%20b.mp4.jpg")
    cues = [ln for ln in text.splitlines() if "-->" in ln]
    assert len(cues) == 12
    assert cues[0] == "00:00:00.000 --> 00:00:10.000"
    assert cues[-1] == "00:01:50.000 --> 00:01:55.500"
    assert text.splitlines()[-1] == "../../sprite/in/a%20b.mp4.jpg#xywh=160,180,160,90"


def test_relative_urls_and_playlist_rewrite() -> None:
    assert relative_url("p/t/hls-720p/in/a b.mp4.m3u8", "p/t/hls/in/a b.mp4.m3u8") == (
        "../../hls-720p/in/a%20b.mp4.m3u8"
    )
    media = (
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:4\n#EXT-X-PLAYLIST-TYPE:VOD\n"
        '#EXT-X-MAP:URI="file:/x/seg.m4s",BYTERANGE="1335@0"\n'
        "#EXTINF:4.000000,\n#EXT-X-BYTERANGE:1000000@1335\nfile:/x/seg.m4s\n"
        "#EXTINF:2.000000,\n#EXT-X-BYTERANGE:750000@1001335\nfile:/x/seg.m4s\n#EXT-X-ENDLIST\n"
    )
    text, peak, total = avplan.rewrite_media_playlist(media, "a.mp4.m4s")
    assert 'URI="a.mp4.m4s"' in text and "file:" not in text
    assert peak == 3_000_000 and total == 6.0


def test_settings_plan_outputs_and_the_recursion_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in [k for k in __import__("os").environ if k.startswith("MEDIA_WORKER_")]:
        monkeypatch.delenv(k)
    s = load_settings(None, transcode={"hls": True, "loudnorm": True})
    variants = load_registry().planned_variants(s)  # from the pipelines' own plan()
    assert ("720p", "mp4") in variants["transcode"] and ("hls", "m3u8") in variants["transcode"]
    assert ("loudnorm", "m4a") in variants["transcode"]
    assert ("thumb", "jpg") in variants["video_thumbnails"] and ("storyboard", "vtt") in variants[
        "video_thumbnails"
    ]
    # sidecar layout: a poster 'clip.mp4.video_thumbnails.thumb.jpg' would be picked up by the image
    # rule, and an audio output '.m4a' by the audio rule: refused with the fix named
    with pytest.raises(ConfigError, match="would be picked up again"):
        rules = [{"include": ["*.mp4", "*.m4a"], "pipelines": ["transcode"]}]
        rules_in_force(load_settings(None, layout={"preset": "sidecar"}, rules=rules), load_registry())
    with pytest.raises(ValueError, match="distinct"):
        TranscodeSettings(ladder=[Rung(height=720, max_kbps=100), Rung(height=720, max_kbps=200)])


def test_playlist_demuxers_are_refused_unless_allowed() -> None:
    t = TranscodeSettings(input_formats=["mov", "hls", "concat", "image2"])
    assert t.allowed_demuxers() == ["mov"]
    assert set(TranscodeSettings(allow_playlist_demuxers=True).allowed_demuxers()) >= {"hls", "concat"}


def test_ffmpeg_pipelines_run_as_one_group() -> None:
    reg = load_registry()
    thumbs, tc, vt = (reg.pipelines[n] for n in ("thumbnails", "transcode", "video_thumbnails"))
    groups = group_pipelines([tc, thumbs, vt])
    assert [(lead.name, [p.name for p in partners]) for lead, partners in groups] == [
        ("transcode", ["video_thumbnails"]),
        ("thumbnails", []),
    ]


DEBIAN_FFMPEG = "/usr/bin/ffmpeg"  # Debian 12's ffmpeg 5.1 (scripts/system-packages.txt, scope dev)


def debian_ffmpeg() -> str:
    if not Path(DEBIAN_FFMPEG).is_file():
        pytest.fail(f"{DEBIAN_FFMPEG} missing: install Debian's ffmpeg package (`make test` does: scope dev)")
    return DEBIAN_FFMPEG


def test_debians_ffmpeg_is_refused_when_configured_and_skipped_on_path(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The real Debian 12 ffmpeg 5.1: its file protocol has no pkt_size, so it is refused when configured
    and skipped (for the shipped ffmpeg of imageio-ffmpeg) when found first on PATH."""
    from avtools import FFMPEG

    from config.errors import MissingDependencyError
    from pipelines.tools import ffmpeg as ff

    debian = debian_ffmpeg()
    ff.locate.cache_clear()
    try:
        with pytest.raises(MissingDependencyError, match=r"ffmpeg 5\.1.* no file-protocol option pkt_size"):
            ff.locate(debian)
        monkeypatch.setenv("PATH", "/usr/bin:/bin")
        with caplog.at_level("WARNING"):
            found = ff.locate(None)
        assert found.origin == "imageio-ffmpeg" and found.path == FFMPEG
        assert any("skipping it" in r.message and debian in r.message for r in caplog.records)
        assert ff.locate(FFMPEG).origin == "config"  # the shipped one, configured, is fine
    finally:
        ff.locate.cache_clear()


def test_why_debians_ffmpeg_is_refused_it_reads_32_kib_pieces(tmp_path: Path) -> None:
    """Under strace: Debian's ffmpeg 5.1 reads a source in 32 KiB read() calls even when asked for 1 MiB
    (its file protocol ignores -pkt_size, and -blocksize only caps reads); the shipped ffmpeg with
    ``-pkt_size 1048576`` asks for 1 MiB.  On S3 Files reads under 128 KiB go through the paid cache."""
    from avtools import FFMPEG, make_media
    from strace_support import READ

    src = make_media(tmp_path / "src.mp4", "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "4M",
                     seconds=4, size="640x480")  # fmt: skip
    sizes: dict[str, list[int]] = {}
    for name, exe in (("debian", debian_ffmpeg()), ("shipped", FFMPEG)):
        traces = tmp_path / name
        traces.mkdir()
        extra = ["-pkt_size", "1048576"] if name == "shipped" else []
        # -ff: one file per thread, so no read is split into "<unfinished ...>" / "<... resumed>" halves
        cmd = ["strace", "-ff", "-qq", "-y", "-s", "0", "-e", "trace=read", "-o", str(traces / "t"), exe,
               "-v", "error", "-nostdin", *extra, "-i", f"file:{src}", "-f", "null", "-"]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        sizes[name] = [
            int(m["count"])
            for trace in traces.iterdir()
            for line in trace.read_text().splitlines()
            if (m := READ.match(line)) and m["path"] == str(src) and int(m["ret"]) > 0
        ]
    assert sizes["debian"] and max(sizes["debian"]) <= 32768, sizes["debian"][:10]
    assert sizes["shipped"] and min(sizes["shipped"]) >= 1 << 20, sizes["shipped"][:10]
