"""HDR phone video (HLG as iPhones record it, PQ/HDR10 as many Android phones do) -> SDR outputs.

Sources are made here from an SDR test pattern with zscale, graded into HDR the BT.2408 way (SDR white
at 203 cd/m2), as 10-bit HEVC tagged BT.2020 + HLG or PQ.  Posters and a rendition frame of each are
compared with the same outputs of the SDR original: saturation >= 0.8x and mean luma within 25 %, while
the naive path (``hdr_to_sdr = false``: HDR pixels scaled as if SDR) fails the same check.  SDR sources
run exactly the commands they ran before HDR support (tests/fixtures/sdr_commands.json)."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path
from typing import Any

import av
import pytest
from avtools import FFMPEG, fast_env
from conftest import json_lines, run_cli
from ffmpeg_argv import SDR_CASES, sdr_case_commands
from PIL import Image, ImageStat

REPO = Path(__file__).resolve().parents[1]
TRANSFER = {"hlg": "arib-std-b67", "pq": "smpte2084"}


def make_sdr(path: Path, seconds: float = 3, size: str = "640x360") -> Path:
    subprocess.run(
        [FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=s={size}:r=25:d={seconds}",
         "-f", "lavfi", "-i", f"sine=f=440:d={seconds}", "-c:a", "aac",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
         "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", str(path)],
        check=True,
    )  # fmt: skip
    return path


def make_hdr(sdr: Path, path: Path, kind: str, *extra: str) -> Path:
    """``sdr`` graded into HLG or PQ (SDR white at 203 cd/m2), 10-bit HEVC with its colour tags."""
    trc = TRANSFER[kind]
    grade = f"zscale=tin=bt709:pin=bt709:min=bt709:t={trc}:p=bt2020:m=bt2020nc:npl=203,format=yuv420p10le"
    subprocess.run(
        [FFMPEG, "-v", "error", "-y", "-i", str(sdr), "-vf", grade, "-c:v", "libx265", "-preset", "ultrafast",
         "-x265-params", "log-level=error", "-colorspace", "bt2020nc", "-color_primaries", "bt2020",
         "-color_trc", trc, *extra, str(path)],
        check=True,
    )  # fmt: skip
    return path


def saturation_and_luma(im: Image.Image) -> tuple[float, float]:
    rgb = im.convert("RGB")
    return ImageStat.Stat(rgb.convert("HSV")).mean[1], ImageStat.Stat(rgb.convert("L")).mean[0]


def frame_at(path: Path, seconds: float) -> Image.Image:
    """The decoded frame at ``seconds`` as RGB (PyAV converts with the stream's own matrix)."""
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            if f.time is not None and f.time >= seconds:
                return f.to_image()
    raise AssertionError(f"no frame at {seconds} s in {path}")


def run(ws: Path, **settings: Any) -> dict[str, dict[str, Any]]:
    res = run_cli("run", "-w", str(ws), "--json", "in", env=fast_env(**settings))
    assert res.returncode == 0, res.stderr[-3000:]
    return {r["source"]: r for r in json_lines(res.stdout)}


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hdr")
    (root / "in").mkdir()
    sdr = make_sdr(root / "in/sdr.mp4")
    make_hdr(sdr, root / "in/hlg.mp4", "hlg")
    hdr10 = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)"  # mastering display
    make_hdr(
        sdr,
        root / "in/pq.mp4",
        "pq",
        "-x265-params",
        f"log-level=error:hdr10=1:max-cll=1000,400:master-display={hdr10}",
    )
    return root


def workspace_of(sources: Path, dest: Path) -> Path:
    ws = dest / "ws"
    (ws / "in").mkdir(parents=True)
    for p in (sources / "in").iterdir():
        (ws / "in" / p.name).write_bytes(p.read_bytes())
    return ws


@pytest.fixture(scope="module")
def tonemapped(sources: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = workspace_of(sources, tmp_path_factory.mktemp("tonemapped"))
    results = run(ws)
    assert all(r["status"] == "ok" for r in results.values()), results
    return ws


@pytest.fixture(scope="module")
def naive(sources: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = workspace_of(sources, tmp_path_factory.mktemp("naive"))
    results = run(ws, hdr_to_sdr=False)
    assert all(r["status"] == "ok" for r in results.values()), results
    return ws


def poster(ws: Path, name: str) -> Image.Image:
    return Image.open(ws / f"processed/video_thumbnails/large/in/{name}.jpg")


def rendition(ws: Path, name: str) -> Path:
    return ws / f"processed/transcode/240p/in/{name}.mp4"


def looks_like_sdr(im: Image.Image, ref: Image.Image) -> tuple[bool, str]:
    (s, lum), (rs, rl) = saturation_and_luma(im), saturation_and_luma(ref)
    ok = s >= 0.8 * rs and abs(lum - rl) <= 0.25 * rl
    return ok, f"saturation {s / rs:.2f}x, luma {lum / rl:.2f}x of the SDR original"


@pytest.mark.parametrize("kind", ["hlg", "pq"])
def test_posters_and_renditions_keep_the_colours_of_the_sdr_original(tonemapped: Path, kind: str) -> None:
    ws = tonemapped
    ok, why = looks_like_sdr(poster(ws, f"{kind}.mp4"), poster(ws, "sdr.mp4"))
    assert ok, f"{kind} poster: {why}"
    ok, why = looks_like_sdr(
        frame_at(rendition(ws, f"{kind}.mp4"), 1.0), frame_at(rendition(ws, "sdr.mp4"), 1.0)
    )
    assert ok, f"{kind} rendition: {why}"


@pytest.mark.parametrize("kind", ["hlg", "pq"])
def test_the_naive_path_fails_the_same_check(naive: Path, kind: str) -> None:
    ok, why = looks_like_sdr(poster(naive, f"{kind}.mp4"), poster(naive, "sdr.mp4"))
    assert not ok, f"the naive {kind} poster passed: {why}"
    ok, why = looks_like_sdr(
        frame_at(rendition(naive, f"{kind}.mp4"), 1.0), frame_at(rendition(naive, "sdr.mp4"), 1.0)
    )
    assert not ok, f"the naive {kind} rendition passed: {why}"


@pytest.mark.parametrize("kind", ["hlg", "pq"])
def test_renditions_of_hdr_sources_are_8bit_h264_tagged_bt709(tonemapped: Path, kind: str) -> None:
    with av.open(str(rendition(tonemapped, f"{kind}.mp4"))) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.name, cc.pix_fmt) == ("h264", "yuv420p")
        assert (cc.color_primaries, cc.color_trc, cc.colorspace) == (1, 1, 1)  # BT.709 all three


def test_sdr_sources_run_the_same_commands_as_before(tmp_path: Path) -> None:
    """Byte-identical ffmpeg command lines (paths normalised) to the ones recorded before HDR support."""
    recorded = json.loads((REPO / "tests/fixtures/sdr_commands.json").read_text())
    for name in SDR_CASES:
        assert sdr_case_commands(tmp_path, name) == recorded[name], name


def test_a_rotated_10bit_hlg_phone_clip_stays_portrait_and_vfr_keeps_its_duration(
    sources: Path, tmp_path: Path
) -> None:
    """A display matrix of 90 degrees (how phones store portrait video) on a 10-bit HLG HEVC stream with
    variable frame timing: portrait renditions and posters, the source's duration, still SDR-looking."""
    ws = tmp_path / "ws"
    (ws / "in").mkdir(parents=True)
    vfr = tmp_path / "vfr.mp4"
    subprocess.run(
        [FFMPEG, "-v", "error", "-y", "-i", str(sources / "in/hlg.mp4"),
         "-vf", "select='not(between(n\\,10\\,20))*not(between(n\\,40\\,45))'", "-fps_mode", "vfr",
         "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error",
         "-pix_fmt", "yuv420p10le", "-colorspace", "bt2020nc", "-color_primaries", "bt2020",
         "-color_trc", "arib-std-b67", str(vfr)],
        check=True,
    )  # fmt: skip
    subprocess.run(
        [FFMPEG, "-v", "error", "-y", "-display_rotation", "90", "-i", str(vfr), "-c", "copy",
         str(ws / "in/portrait.mov")],
        check=True,
    )  # fmt: skip
    results = run(ws)
    assert results["in/portrait.mov"]["status"] == "ok", results
    out = ws / "processed/transcode/240p/in/portrait.mov.mp4"
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert v.codec_context.height > v.codec_context.width, (v.codec_context.width, v.codec_context.height)
        assert abs(float(c.duration / 1e6) - 3.0) < 0.3
    with Image.open(ws / "processed/video_thumbnails/large/in/portrait.mov.jpg") as im:
        assert im.height > im.width
        s, lum = saturation_and_luma(im)
    with Image.open(io.BytesIO(_sdr_poster(sources, tmp_path))) as ref:
        rs, rl = saturation_and_luma(ref)
    assert s >= 0.8 * rs and abs(lum - rl) <= 0.25 * rl, (s / rs, lum / rl)


def _sdr_poster(sources: Path, tmp_path: Path) -> bytes:
    ws = tmp_path / "sdr_ws"
    (ws / "in").mkdir(parents=True)
    (ws / "in/sdr.mp4").write_bytes((sources / "in/sdr.mp4").read_bytes())
    run(ws, hdr_rung=False)
    return (ws / "processed/video_thumbnails/large/in/sdr.mp4.jpg").read_bytes()


def test_the_hdr_rung_option_keeps_an_hdr_hevc_rendition(sources: Path, tmp_path: Path) -> None:
    ws = workspace_of(sources, tmp_path)
    results = run(ws, hdr_rung=True)
    for kind, trc in (("hlg", 18), ("pq", 16)):
        doc = json.loads((ws / results[f"in/{kind}.mp4"]["manifest"]).read_text())
        (hdr,) = [o for o in doc["outputs"] if o["variant"] == "hdr"]
        with av.open(str(ws / hdr["path"])) as c:
            cc = c.streams.video[0].codec_context
            assert (cc.name, cc.pix_fmt) == ("hevc", "yuv420p10le")
            assert (cc.color_primaries, cc.color_trc, cc.colorspace) == (9, trc, 9)
            assert c.streams.video[0].codec_tag == "hvc1"
            assert [a.codec_context.name for a in c.streams.audio] == ["aac"]
    sdr = json.loads((ws / results["in/sdr.mp4"]["manifest"]).read_text())
    assert not [o for o in sdr["outputs"] if o["variant"] == "hdr"]  # SDR sources get no HDR rung
