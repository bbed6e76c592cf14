"""Formats the shipped tools decode are routed by default and give real outputs (issue 21): phone video
(.3gp/.3g2), DVD .vob, MPEG program and elementary streams (.mpg/.m2v/.m1v), Windows Media (.wmv/.asf),
raw H.264/HEVC streams (.h264/.264/.hevc/.h265), audio-only containers
(.mka/.m4b/.amr/.ac3/.eac3/.spx) and stills (.apng/.avifs/.jp2/.j2k/.tga/.qoi/.hif).  Every file is
made here by the shipped ffmpeg (imageio-ffmpeg's), Pillow or pillow-heif, and every output is decoded
and measured.  A rule that sends a suffix to a pipeline that does not take it is a start-up error."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pillow_heif
import pytest
from avtools import FAST, facts, image_stats, make_media, speex_ogg
from conftest import cli_env, json_lines, run_cli
from PIL import Image, ImageStat

from config.rules import named_suffixes, select_pipelines
from config.settings import load_settings
from pipelines.builtin.ocr.pipeline import OcrPipeline
from pipelines.builtin.thumbnails import ThumbnailPipeline
from pipelines.core.engine import Engine, rules_in_force
from pipelines.core.registry import load_registry
from pipelines.media.renditions import IMAGE_INPUTS

AV = ["transcode", "video_thumbnails"]
H263_AMR = ("-s", "176x144", "-c:v", "h263", "-c:a", "libopencore_amrnb", "-ar", "8000", "-ac", "1")
# name -> (pipelines the default rules pick, how ffmpeg makes it: output options; None = no video)
AV_FILES: dict[str, tuple[list[str], tuple[str, ...], bool]] = {
    "phone.3gp": (AV, H263_AMR, True),
    "phone.3g2": (AV, ("-s", "176x144", "-c:v", "h263", "-c:a", "aac", "-ac", "1", "-ar", "22050"), True),
    "dvd.vob": (AV, ("-c:v", "mpeg2video", "-c:a", "ac3", "-f", "vob"), True),
    "program.mpg": (AV, ("-c:v", "mpeg1video", "-c:a", "mp2", "-f", "mpeg"), True),
    "elementary.mpg": (AV, ("-c:v", "mpeg2video", "-f", "mpeg2video"), False),
    "elementary.m2v": (AV, ("-c:v", "mpeg2video"), False),
    "elementary.m1v": (AV, ("-c:v", "mpeg1video"), False),
    "windows.wmv": (AV, ("-c:v", "wmv2", "-c:a", "wmav2", "-f", "asf"), True),
    "windows.asf": (AV, ("-c:v", "msmpeg4", "-c:a", "wmav2", "-f", "asf"), True),
    "camera.h264": (AV, ("-c:v", "libx264", "-preset", "ultrafast", "-f", "h264"), False),
    "camera.264": (AV, ("-c:v", "libx264", "-preset", "ultrafast", "-f", "h264"), False),
    "camera.hevc": (
        AV,
        ("-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error", "-f", "hevc"),
        False,
    ),
    "camera.h265": (
        AV,
        ("-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error", "-f", "hevc"),
        False,
    ),
    "music.mka": (["transcode"], ("-vn", "-c:a", "libopus"), True),
    "book.m4b": (["transcode"], ("-vn", "-c:a", "aac", "-f", "ipod"), True),
    "voice.amr": (["transcode"], ("-vn", "-c:a", "libopencore_amrnb", "-ar", "8000", "-ac", "1"), True),
    "film.ac3": (["transcode"], ("-vn", "-c:a", "ac3"), True),
    "film.eac3": (["transcode"], ("-vn", "-c:a", "eac3"), True),
}
IMAGE_FILES = ["anim.apng", "seq.avifs", "photo.jp2", "photo.j2k", "old.tga", "fast.qoi", "camera.hif"]
RED, BLUE = (220, 30, 30), (30, 40, 210)


def test_default_rules_route_every_new_suffix(tmp_path: Path) -> None:
    s = load_settings(None, workspace=tmp_path)
    rules = rules_in_force(s, load_registry())
    expected = {**{n: p for n, (p, _, _) in AV_FILES.items()}, "x.spx": ["transcode"]}
    expected |= {n: ["thumbnails"] for n in IMAGE_FILES}
    for name, pipelines in expected.items():
        assert select_pipelines(f"in/{name.upper()}", rules, s.exclude) == pipelines, name


def test_ocr_and_thumbnails_take_one_image_list() -> None:
    ocr = {k for k in OcrPipeline.inputs if k != "pdf"}
    assert ocr == set(IMAGE_INPUTS) == {k for k in ThumbnailPipeline.inputs if k != "pdf"}


# ------------------------------------------------------------------------------------- audio / video


@pytest.fixture(scope="module")
def av_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every audio/video test file, made once by the shipped ffmpeg (and the Speex file by hand)."""
    d = tmp_path_factory.mktemp("av")
    for name, (_, args, audio) in AV_FILES.items():
        make_media(d / name, *args, seconds=3, audio=audio)
    speex_ogg(d / "voice.spx", seconds=3)
    return d


def _check_av(ws: Path, rel: str, res: Any) -> dict[str, Any]:
    """Decode every output of ``rel``: renditions are H.264 (+AAC when the source has audio) as long as
    the source; audio files AAC/Opus as long as the source's audio; posters real pictures."""
    assert res.status == "ok", res
    src = facts(ws / rel)
    doc = json.loads((ws / res.manifest).read_text())
    seen: dict[str, Any] = {"renditions": [], "audio": [], "posters": []}
    for o in doc["outputs"]:
        path = ws / o["path"]
        kind = path.suffix[1:]
        if o["pipeline"] == "transcode" and kind == "mp4":
            f = facts(path)
            assert f.video and f.video["codec"] == "h264", (o, f)
            # the mp4 muxer ends the video with the audio: up to one AAC frame (1,024 samples) more
            tol = max(0.1, 1024 / f.audio["rate"] + 0.02) if f.audio else 0.1
            # a raw H.264/HEVC stream has no timestamps: its length is the 3 s it was made with
            made = src.durations.get("video", 3.0)
            assert abs(f.durations["video"] - made) < tol, (o, f.durations, src.durations)
            assert (f.audio is not None) == (src.audio is not None)
            if f.audio:
                assert f.audio["codec"] == "aac"
            seen["renditions"].append(o["variant"])
        elif o["pipeline"] == "transcode":
            f = facts(path)
            assert f.video is None and f.audio, o
            assert f.audio["codec"] == {"m4a": "aac", "webm": "opus"}[kind]
            # an AAC frame is 1,024 samples: 128 ms at a voice note's 8 kHz
            tol = max(0.1, 1024 / f.audio["rate"] + 0.02)
            assert abs(f.durations["audio"] - src.durations["audio"]) < tol, (o, f.durations, src.durations)
            seen["audio"].append(o["variant"])
        elif o["pipeline"] == "video_thumbnails" and o["variant"] in ("thumb", "medium", "large"):
            size, mean, spread = image_stats(path.read_bytes())
            assert size == (o["meta"]["width"], o["meta"]["height"])
            assert mean > 30 and spread > 10, o  # testsrc2's picture, not a black frame
            seen["posters"].append(o["variant"])
    return seen


@pytest.mark.parametrize("name", [*AV_FILES, "voice.spx"])
def test_new_audio_video_formats_give_checked_outputs(name: str, av_dir: Path, workspace: Path) -> None:
    (workspace / "in").mkdir()
    (workspace / "in" / name).write_bytes((av_dir / name).read_bytes())
    eng = Engine(load_settings(None, workspace=workspace, transcode=FAST))
    res = eng.process(f"in/{name}")
    seen = _check_av(workspace, f"in/{name}", res)
    if name.endswith(("mka", "m4b", "amr", "ac3", "eac3", "spx")):
        assert sorted(seen["audio"]) == ["aac", "opus"] and not seen["renditions"], seen
    else:
        assert seen["renditions"] and set(seen["posters"]) == {"large", "medium", "thumb"}, seen


def test_mpg_is_taken_as_program_or_elementary_stream(av_dir: Path) -> None:
    """The same suffix, two containers: the probe tells them apart and ffmpeg is forced to that one."""
    from pipelines.tools.probe import probe

    demuxers = load_settings(None).transcode.allowed_demuxers()
    ps = probe(av_dir / "program.mpg", allowed_demuxers=demuxers)
    es = probe(av_dir / "elementary.mpg", allowed_demuxers=demuxers)
    assert (ps.demuxer, es.demuxer) == ("mpeg", "mpegvideo")
    assert ps.audio is not None and es.audio is None and es.video is not None


# ------------------------------------------------------------------------------------------ stills


def _frames() -> list[Image.Image]:
    """Two frames: RED with a BLUE left half, then all BLUE (a thumbnail of frame 1 would be blue)."""
    first = Image.new("RGB", (320, 200), RED)
    first.paste(BLUE, (0, 0, 160, 200))
    return [first, Image.new("RGB", (320, 200), BLUE)]


def _make_image(path: Path) -> Path:
    first, second = _frames()
    buf = io.BytesIO()
    ext = path.suffix[1:]
    if ext == "apng":
        first.save(buf, "PNG", save_all=True, append_images=[second], duration=100)
    elif ext == "avifs":
        first.save(buf, "AVIF", save_all=True, append_images=[second], duration=100, quality=95)
    elif ext in ("jp2", "j2k"):
        first.save(buf, "JPEG2000", no_jp2=ext == "j2k")
    elif ext == "tga":
        first.save(buf, "TGA", compression="tga_rle")
    elif ext == "qoi":
        first.save(buf, "QOI")
    elif ext == "hif":
        pillow_heif.from_pillow(first).save(buf, quality=95)
    path.write_bytes(buf.getvalue())
    return path


@pytest.mark.parametrize("name", IMAGE_FILES)
def test_new_image_formats_give_the_first_frame(name: str, workspace: Path) -> None:
    (workspace / "in").mkdir()
    _make_image(workspace / "in" / name)
    eng = Engine(load_settings(None, workspace=workspace, thumbnails={"formats": ["jpeg", "webp"]}))
    res = eng.process(f"in/{name}")
    assert res.status == "ok", res
    doc = json.loads((workspace / res.manifest).read_text())
    assert {o["pipeline"] for o in doc["outputs"]} == {"thumbnails"}
    assert len(doc["outputs"]) == 6  # 3 sizes x 2 formats
    for o in doc["outputs"]:
        im = Image.open(workspace / o["path"]).convert("RGB")
        assert im.size == (o["meta"]["width"], o["meta"]["height"]) and im.size[0] <= 320
        w, h = im.size
        left = ImageStat.Stat(im.crop((0, 0, w // 2 - 2, h))).mean
        right = ImageStat.Stat(im.crop((w // 2 + 2, 0, w, h))).mean
        assert all(abs(a - b) < 20 for a, b in zip(left, BLUE, strict=True)), (o["path"], left)
        assert all(abs(a - b) < 20 for a, b in zip(right, RED, strict=True)), (o["path"], right)


def test_tga_is_only_tried_for_tga_files(workspace: Path) -> None:
    """TGA has no signature: a TGA named .png is refused ("cannot identify"), not decoded as a TGA."""
    (workspace / "in").mkdir()
    tga = _make_image(workspace / "in/old.tga").read_bytes()
    (workspace / "in/renamed.png").write_bytes(tga)
    eng = Engine(load_settings(None, workspace=workspace))
    assert eng.process("in/old.tga").status == "ok"
    res = eng.process("in/renamed.png")
    assert res.status == "failed" and "cannot identify image format" in (res.error or ""), res


def test_an_image_format_goes_to_ocr_by_a_rule(workspace: Path) -> None:
    """OCR takes the same images: a .qoi scan of a word, routed to OCR by a rule, is read."""
    from PIL import ImageDraw, ImageFont

    im = Image.new("RGB", (900, 200), "white")
    ImageDraw.Draw(im).text((40, 50), "HELLO WORLD", fill="black", font=ImageFont.load_default(size=72))
    (workspace / "scans").mkdir()
    im.save(workspace / "scans/page.qoi", "QOI")
    rules = [{"include": ["scans/**"], "pipelines": ["ocr"]}]
    eng = Engine(load_settings(None, workspace=workspace, rules=rules, ocr={"outputs": ["txt"]}))
    res = eng.process("scans/page.qoi")
    assert res.status == "ok", res
    assert "HELLO WORLD" in (workspace / res.outputs[0]).read_text()


# ------------------------------------------------------------------------------- start-up check


def test_named_suffixes_of_globs() -> None:
    assert named_suffixes("*.XYZ") == ["xyz"]
    assert named_suffixes("**/*.mp3") == ["mp3"]
    assert named_suffixes("raw/IMG_*.{jpg,CR2}") == ["jpg", "cr2"]
    assert named_suffixes("a/*.tar.gz") == ["gz"]
    for open_ended in ("scans/**", "*", "x.*", "*.jp*", "*.[jp]pg", "*.mp3?"):
        assert named_suffixes(open_ended) == [], open_ended


@pytest.mark.parametrize("command", [("config", "validate"), ("run", "in")])
def test_rule_sending_a_suffix_to_a_pipeline_that_refuses_it_is_a_startup_error(
    command: tuple[str, ...], workspace: Path
) -> None:
    (workspace / "in").mkdir()
    make_media(workspace / "in/a.mp3", "-vn", "-c:a", "libmp3lame", seconds=1)
    rules = [
        {"include": ["scans/**"], "pipelines": ["ocr"]},  # no decidable suffix: allowed
        {"include": ["*.wav", "music/**/*.{flac,mp3}"], "pipelines": ["transcode", "thumbnails"]},
    ]
    env = cli_env(MEDIA_WORKER_RULES=json.dumps(rules))
    args = [*command, "-w", str(workspace)] if command[0] == "run" else list(command)
    res = run_cli(*args, env=env)
    text = " ".join(res.stderr.split())
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "rules.1.include" in text and ".wav" in text and "'thumbnails'" in text, text
    assert "it takes .apng" in text, text
    assert not (workspace / "processed").exists()  # refused before any file


def test_rules_every_pipeline_takes_are_accepted(workspace: Path) -> None:
    (workspace / "in").mkdir()
    _make_image(workspace / "in/a.qoi")
    rules = [{"include": ["*.{qoi,tga}", "scans/**"], "pipelines": ["thumbnails", "ocr"]}]
    env = cli_env(MEDIA_WORKER_RULES=json.dumps(rules), MEDIA_WORKER_OCR__OUTPUTS='["txt"]')
    assert run_cli("config", "validate", env=env).returncode == 0
    res = run_cli("run", "-w", str(workspace), "--json", "in", env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert [r["status"] for r in json_lines(res.stdout)] == ["ok"]
