"""What the ffmpeg pipelines share: one probe and ONE ffmpeg process for every output they make.

``transcode`` and ``video_thumbnails`` are both :class:`FfmpegPipeline`; when both are selected for a
source the engine runs them as one group (:meth:`Pipeline.run_with`), so the source is read and decoded
once.  Steps for a group:

1. the source: sources up to ``transcode.local_copy_max_bytes`` that need a full decode are read once
   with 1 MiB reads into the job's local scratch folder (probe and ffmpeg then cost no extra reads on
   the mount); bigger ones, and poster-only jobs (which seek), are read by ffmpeg straight from the mount;
2. probe (PyAV, bounded), limits;
3. one :class:`pipelines._exec.ffmpeg.Encode`, run with progress and the job deadline;
4. checks (every output has data; the source was not cut short), then the outputs made in Python:
   poster thumbnails (Pillow, as image thumbnails), the WebVTT storyboard, HLS playlists.

Outputs are named through the job (``output_path``, ``output_relpath``, ``output_url``), never by
rendering the layout here; on any failure this module just raises and the engine deletes them.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from config.errors import BadInputError, MissingDependencyError
from config.logs import get_logger
from config.settings import Settings
from pipelines import avplan
from pipelines._exec import ffmpeg as ff
from pipelines._exec.probe import MediaInfo, probe, pyav_version
from pipelines.spec import Job, Pipeline

log = get_logger(__name__)
MEDIA_TYPES = {
    "mp4": "video/mp4",
    "m4a": "audio/mp4",
    "webm": "audio/webm",
    "ogg": "audio/ogg",
    "mp3": "audio/mpeg",
    "m3u8": "application/vnd.apple.mpegurl",
    "m4s": "video/iso.segment",
    "jpg": "image/jpeg",
    "webp": "image/webp",
    "png": "image/png",
    "vtt": "text/vtt",
}
VIDEO_INPUTS = {
    "mp4": "video/mp4",
    "mov": "video/quicktime",
    "m4v": "video/x-m4v",
    "mkv": "video/x-matroska",
    "webm": "video/webm",
    "avi": "video/x-msvideo",
    "ts": "video/mp2t",
    "mts": "video/mp2t",
    "m2ts": "video/mp2t",
    "mpg": "video/mpeg",
    "mpeg": "video/mpeg",
    "flv": "video/x-flv",
}
AUDIO_INPUTS = {
    "mp3": "audio/mpeg",
    "m4a": "audio/mp4",
    "aac": "audio/aac",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "oga": "audio/ogg",
    "opus": "audio/opus",
    "aif": "audio/aiff",
    "aiff": "audio/aiff",
    "wma": "audio/x-ms-wma",
}
VIDEO_SUFFIXES, AUDIO_SUFFIXES = frozenset(VIDEO_INPUTS), frozenset(AUDIO_INPUTS)
TRANSCODE, THUMBS = "transcode", "video_thumbnails"
_BLACK_MEAN, _FLAT_STDDEV = 20.0, 6.0
# A source counts as cut short when it decodes to less than its declared duration minus the larger of
# these (containers round, drop a last partial page, or count priming samples).
PARTIAL_SLACK_SECONDS, PARTIAL_SLACK_FRACTION = (
    2.0,
    0.15,
)  # luma mean / spread below which a frame counts as blank


class FfmpegPipeline(Pipeline):
    """Base of the ffmpeg pipelines: they run together, sharing one probe and one decode."""

    makes: ClassVar[str]  # TRANSCODE or THUMBS

    def check(self, settings: Settings) -> None:
        ff.locate(settings.transcode.ffmpeg_binary)
        pyav_version()

    def tool_versions(self) -> dict[str, str]:
        versions = {}
        if found := ff.located():
            versions["ffmpeg"] = f"{found.version} ({found.origin})"
        with contextlib.suppress(MissingDependencyError):
            versions["pyav"] = pyav_version()
        return versions

    def can_run_with(self, other: Pipeline) -> bool:
        return isinstance(other, FfmpegPipeline)

    def run(self, job: Job) -> None:
        run_group(job, [self])

    def run_with(self, job: Job, partners: Sequence[Pipeline]) -> None:
        others = [p for p in partners if isinstance(p, FfmpegPipeline)]
        run_group(job, [self, *others])
        for p in partners:
            if not isinstance(p, FfmpegPipeline):
                p.run(job)


@dataclass
class _Post:
    """What to do in Python after ffmpeg: posters, storyboard, HLS playlists."""

    poster: ff.PosterOut | None = None
    sprite: avplan.SpriteGeometry | None = None
    hls: list[tuple[avplan.RungSize, str, ff.HlsOut]] = field(default_factory=list)  # rung, codecs, remux


def run_group(job: Job, pipelines: Sequence[FfmpegPipeline]) -> None:
    """Produce the outputs of ``pipelines`` for one source with one probe and one ffmpeg run."""
    t = job.settings.transcode
    names = [p.name for p in pipelines]
    makes = {p.makes for p in pipelines}
    tool = ff.locate(t.ffmpeg_binary)
    if job.source.size == 0:
        raise BadInputError("empty file (0 bytes)")
    full_decode = TRANSCODE in makes or t.sprite
    src = _source_for_ffmpeg(job, full_decode)
    job.deadline.check("probing")
    # a poster-only job lets ffmpeg rotate and size the frame: no first-frame decode in the probe
    info = probe(src, allowed_demuxers=t.allowed_demuxers(), probe_bytes=t.probe_bytes, rotation=full_decode)
    avplan.check_limits(info, t)
    if info.video is None and info.audio is None:
        raise BadInputError("no audio or video stream")

    enc = ff.Encode(
        source=src,
        demuxer=info.demuxer,
        video_stream=info.video.index if info.video else None,
        audio_stream=info.audio.index if info.audio else None,
        audio_channels=info.audio.channels if info.audio else 2,
        limit_seconds=t.max_output_seconds,
        threads=t.threads,
    )
    post = _Post()
    if TRANSCODE in makes:
        _plan_transcode(job, info, enc, post)
    if THUMBS in makes and info.video is not None:
        _plan_thumbnails(job, info, enc, post, seek=not full_decode)
    if not (enc.videos or enc.audios or enc.poster or enc.sprite):
        return  # e.g. video_thumbnails alone on an audio-only file: nothing to make
    if enc.video_stream is not None and not (enc.videos or enc.poster or enc.sprite):
        enc.video_stream = None
    if enc.audio_stream is not None and not enc.audios and not any(v.audio_kbps for v in enc.videos):
        enc.audio_stream = None

    expected = _expected_seconds(info, enc)
    args = ff.build_args(enc, tool, whitelist=t.allowed_demuxers())
    log.debug("ffmpeg command: %s", args)

    def progress(fraction: float, message: str) -> None:
        for name in names:
            job.report_progress(name, fraction * 0.97, message)

    result = ff.run(
        args,
        deadline=job.deadline,
        margin=t.deadline_margin_seconds,
        expected_seconds=expected,
        video_fps=_output_fps(info, enc),
        on_progress=progress,
    )
    ff.require_outputs(enc.output_files(), result.stderr_tail)
    if enc.seek is None and not t.allow_partial:
        _check_complete(info, enc, result)
    job.deadline.check("writing posters and playlists")
    _finish(job, info, enc, post, tool, result)
    for name in names:
        job.report_progress(name, 1.0, "done")


def _source_for_ffmpeg(job: Job, full_decode: bool) -> Path:
    """A local copy of a small source (read once, 1 MiB reads) or the source on the mount."""
    t = job.settings.transcode
    if full_decode and job.source.size <= t.local_copy_max_bytes:
        data = job.read_source()
        suffix = job.source.suffix if re.fullmatch(r"[a-z0-9]{1,8}", job.source.suffix) else "bin"
        local = job.scratch_dir / f"source.{suffix}"
        local.write_bytes(data)
        return local
    return job.source_path()


def _plan_transcode(job: Job, info: MediaInfo, enc: ff.Encode, post: _Post) -> None:
    t = job.settings.transcode
    v, a = info.video, info.audio
    if v is not None:
        fps = min(v.fps or 30.0, t.max_fps)
        if v.fps and v.fps > t.max_fps + 0.01:
            enc.fps_cap = t.max_fps
        for size in avplan.ladder(v, t.ladder):
            level = avplan.h264_level(size.width, size.height, fps)
            common: dict[str, Any] = dict(
                width=size.width,
                height=size.height,
                crf=t.crf,
                preset=t.preset,
                profile=t.profile,
                level=level,
                max_kbps=size.rung.max_kbps,
                gop_seconds=t.gop_seconds,
                audio_kbps=t.video_audio_kbps if a is not None else None,
            )
            mp4 = job.output_path(TRANSCODE, size.rung.name, ext="mp4")
            enc.videos.append(ff.VideoOut(path=mp4, **common))
            if t.hls:  # remuxed from the MP4 afterwards: no second encode
                _hls_guard(job, f"hls-{size.rung.name}")
                playlist = job.scratch_dir / f"hls-{size.rung.name}.m3u8"
                seg = job.output_path(TRANSCODE, f"hls-{size.rung.name}", ext="m4s")
                codecs = avplan.codecs_string(t.profile, level, a is not None)
                post.hls.append((size, codecs, ff.HlsOut(mp4, seg, playlist, t.hls_segment_seconds)))
    if a is not None and (v is None or t.audio_from_video):
        for kind in t.audio_outputs:
            ext = t.audio_ext(kind)
            kbps = {"aac": t.aac_kbps, "opus": t.opus_kbps, "mp3": t.mp3_kbps}[kind]
            container = {"aac": "mp4", "mp3": "mp3"}.get(kind, t.opus_container)
            enc.audios.append(ff.AudioOut(kind, container, kbps, job.output_path(TRANSCODE, kind, ext=ext)))
        if t.loudnorm:
            path = job.output_path(TRANSCODE, "loudnorm", ext="m4a")
            enc.audios.append(ff.AudioOut("aac", "mp4", t.aac_kbps, path, loudnorm_lufs=t.loudnorm_lufs))


def _hls_guard(job: Job, variant: str) -> None:
    """ffmpeg's HLS muxer expands '%v' in file names; such a name cannot be written as planned."""
    if "%v" in job.output_relpath(TRANSCODE, variant, ext="m4s"):
        raise BadInputError("HLS output is not possible for a file name containing '%v'")


def _plan_thumbnails(job: Job, info: MediaInfo, enc: ff.Encode, post: _Post, *, seek: bool) -> None:
    t, v = job.settings.transcode, info.video
    assert v is not None
    boxes = list(job.settings.thumbnails.sizes.values())
    biggest = max(
        (avplan.fit((v.display_width, v.display_height), b) for b in boxes), key=lambda s: s[0] * s[1]
    )
    at = avplan.poster_time(info.duration, t)
    if t.max_output_seconds is not None:
        at = min(at, t.max_output_seconds * 0.999)
    count = t.poster_candidates
    if info.duration is not None:  # candidates 1 s apart, all inside the video
        count = max(1, min(count, 1 + math.floor(max(0.0, info.duration - at - 0.05))))
    folder = job.scratch_dir / "poster"
    folder.mkdir(exist_ok=True)
    if seek:  # rotation unknown here: full displayed size, Pillow fits it into the boxes
        poster = ff.PosterOut(0.0, count, None, None, folder)
    else:
        poster = ff.PosterOut(at, count, biggest[0], biggest[1], folder, first_frame=True)
    post.poster = enc.poster = poster
    if seek:
        enc.seek = at
        enc.limit_seconds = None
    elif t.sprite:
        geo = avplan.sprite_geometry(v, _limited(info.duration, t.max_output_seconds), t)
        post.sprite = geo
        tiles = job.scratch_dir / "tiles"
        tiles.mkdir(exist_ok=True)
        enc.sprite = ff.SpriteOut(geo.interval, geo.tile_width, geo.tile_height, geo.tiles, tiles)


def _limited(duration: float | None, limit: float | None) -> float | None:
    if duration is None:
        return limit
    return min(duration, limit) if limit is not None else duration


def _output_fps(info: MediaInfo, enc: ff.Encode) -> float | None:
    """Frame rate of the first video output (renditions keep the source rate up to the cap)."""
    if not enc.videos or info.video is None or not info.video.fps:
        return None
    return min(info.video.fps, enc.fps_cap) if enc.fps_cap else info.video.fps


def _expected_seconds(info: MediaInfo, enc: ff.Encode) -> float | None:
    if enc.seek is not None and enc.poster is not None:
        return float(enc.poster.count)
    return _limited(info.duration, enc.limit_seconds)


def _check_complete(info: MediaInfo, enc: ff.Encode, result: ff.RunResult) -> None:
    """A truncated upload decodes to far less than its container declares: fail it, do not publish."""
    expected = _limited(info.duration, enc.limit_seconds)
    if expected is None or not (enc.videos or enc.audios):  # image outputs alone: fewer tiles is fine
        return
    if result.seconds_done < expected - max(PARTIAL_SLACK_SECONDS, PARTIAL_SLACK_FRACTION * expected):
        raise BadInputError(
            f"source is truncated or damaged: decoded {result.seconds_done:.2f} s of the "
            f"{expected:.2f} s it declares (set transcode.allow_partial to accept such files)",
            detail=result.stderr_tail,
        )


def _finish(
    job: Job, info: MediaInfo, enc: ff.Encode, post: _Post, tool: ff.Ffmpeg, result: ff.RunResult
) -> None:
    settings = job.settings
    if post.poster is not None:
        _write_posters(job, enc, post.poster, tool)
    if post.sprite is not None and enc.sprite is not None:
        _write_storyboard(job, info, enc.sprite, post.sprite, result)
    if post.hls:
        entries = []
        master_rel = job.output_relpath(TRANSCODE, "hls", ext="m3u8")
        remux = [item for _, _, item in post.hls]
        segments = [item.segments for item in remux]
        t = settings.transcode
        ff.run(ff.hls_args(remux, tool), deadline=job.deadline, margin=t.deadline_margin_seconds)
        ff.require_outputs(segments + [item.playlist for item in remux], "")
        for size, codecs, item in post.hls:
            playlist = item.playlist
            variant = f"hls-{size.rung.name}"
            media_rel = job.output_relpath(TRANSCODE, variant, ext="m3u8")
            seg_url = job.output_url(TRANSCODE, variant, ext="m4s", referrer=media_rel)
            text, peak, _ = avplan.rewrite_media_playlist(playlist.read_text(), seg_url)
            job.write_output(
                TRANSCODE, variant, text.encode(), ext="m3u8", width=size.width, height=size.height
            )
            media_url = job.output_url(TRANSCODE, variant, ext="m3u8", referrer=master_rel)
            entries.append((media_url, peak, size.width, size.height, codecs))
        job.write_output(TRANSCODE, "hls", avplan.master_playlist(entries).encode(), ext="m3u8")


def _write_storyboard(
    job: Job, info: MediaInfo, sprite: ff.SpriteOut, geo: avplan.SpriteGeometry, result: ff.RunResult
) -> None:
    """Assemble the tiles ffmpeg wrote into one sheet (Pillow) and map them in a WebVTT file."""
    from PIL import Image

    from pipelines.imaging import encode

    files = sorted(sprite.folder.glob("tile*.bmp"))[: geo.tiles]
    if not files:
        raise BadInputError("no video frame could be decoded for the storyboard")
    n = len(files)
    cols = min(geo.columns, n)
    geo = avplan.SpriteGeometry(geo.interval, n, cols, math.ceil(n / cols), geo.tile_width, geo.tile_height)
    sheet = Image.new("RGB", (geo.columns * geo.tile_width, geo.rows * geo.tile_height))
    for k, f in enumerate(files):
        with Image.open(f) as tile:
            sheet.paste(tile.convert("RGB"), ((k % cols) * geo.tile_width, (k // cols) * geo.tile_height))
    quality = job.settings.transcode.sprite_jpeg_quality
    blob = encode(sheet, "jpeg", quality=quality, progressive=True)
    job.write_output(THUMBS, "sprite", blob, ext="jpg", width=sheet.width, height=sheet.height, tiles=n)
    duration = _limited(info.duration, job.settings.transcode.max_output_seconds)
    if duration is None:  # the container does not say: the last tile's interval ends the map
        duration = n * geo.interval
    vtt_rel = job.output_relpath(THUMBS, "storyboard", ext="vtt")
    sprite_url = job.output_url(THUMBS, "sprite", ext="jpg", referrer=vtt_rel)
    text = avplan.storyboard_vtt(geo, duration, sprite_url)
    job.write_output(THUMBS, "storyboard", text.encode(), ext="vtt", interval=geo.interval, tiles=n)


def _write_posters(job: Job, enc: ff.Encode, poster: ff.PosterOut, tool: ff.Ffmpeg) -> None:
    from pipelines.thumbnails import render_image

    frames = sorted(poster.folder.glob("poster*.bmp"))
    times = poster.times(enc.seek)
    if not frames:  # seeking went past the real end of the video: take the first frame
        poster = ff.PosterOut(0.0, 1, poster.width, poster.height, poster.folder)
        first = ff.Encode(enc.source, enc.demuxer, enc.video_stream, None, poster=poster)
        t = job.settings.transcode
        args = ff.build_args(first, tool, whitelist=t.allowed_demuxers())
        ff.run(args, deadline=job.deadline, margin=t.deadline_margin_seconds)
        frames, times = sorted(poster.folder.glob("poster*.bmp")), [0.0]
        if not frames:
            raise BadInputError("no video frame could be decoded for the poster")
    order = list(range(len(frames)))
    if poster.first_frame:  # the first frame is only the last resort
        order = order[1:] + order[:1]
    data, index = _pick_poster([frames[i].read_bytes() for i in order])
    at = times[order[index]]
    rendered = render_image(data, job.settings)
    from pipelines.thumbnails import MEDIA_TYPES as IMAGE_TYPES

    for (size, fmt), (blob, (w, h)) in rendered.items():
        job.write_output(THUMBS, size, blob, ext=IMAGE_TYPES[fmt][0], width=w, height=h, time=round(at, 3))


def _pick_poster(frames: list[bytes]) -> tuple[bytes, int]:
    """The first candidate that is not (nearly) black or flat; else the one with the most detail."""
    import io

    from PIL import Image, ImageStat

    scores = []
    for i, data in enumerate(frames):
        with Image.open(io.BytesIO(data)) as im:
            stat = ImageStat.Stat(im.convert("L").reduce(4) if min(im.size) >= 8 else im.convert("L"))
        mean, spread = stat.mean[0], stat.stddev[0]
        if mean >= _BLACK_MEAN and spread >= _FLAT_STDDEV:
            return data, i
        scores.append((spread + mean / 10, i))
    best = max(scores)[1]
    return frames[best], best
