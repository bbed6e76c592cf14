"""Pure planning for the ffmpeg pipelines: ladder geometry, H.264 levels, poster and sprite layout,
per-source limits, and the text outputs (WebVTT storyboard, HLS playlists).  No I/O here."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from config.errors import BadInputError
from config.transcode import Rung, TranscodeSettings
from pipelines.tools.probe import MediaInfo, VideoStream

# (level, max macroblocks per second, max frame size in macroblocks), H.264 Table A-1
_LEVELS = [
    ("3.0", 40_500, 1_620),
    ("3.1", 108_000, 3_600),
    ("3.2", 216_000, 5_120),
    ("4.0", 245_760, 8_192),
    ("4.2", 522_240, 8_704),
    ("5.0", 589_824, 22_080),
    ("5.1", 983_040, 36_864),
    ("5.2", 2_073_600, 36_864),
    ("6.0", 4_177_920, 139_264),
    ("6.2", 16_711_680, 139_264),
]
_PROFILE_IDC = {"baseline": "42E0", "main": "4D40", "high": "6400"}


def even(x: float) -> int:
    """Nearest even integer >= 2 (H.264 4:2:0 needs even dimensions)."""
    return max(2, round(x / 2) * 2)


@dataclass(frozen=True)
class RungSize:
    rung: Rung
    width: int
    height: int


def check_limits(info: MediaInfo, t: TranscodeSettings) -> None:
    """Raise BadInputError when a source is over a configured limit."""
    if info.streams > t.max_streams:
        raise BadInputError(f"source has {info.streams} streams, over the limit of {t.max_streams}")
    if info.duration is not None and info.duration > t.max_duration_seconds and t.max_output_seconds is None:
        raise BadInputError(
            f"source lasts {info.duration:.1f} s, over the limit of {t.max_duration_seconds:g} s"
        )
    v = info.video
    if v is not None and v.width * v.height > t.max_pixels:
        raise BadInputError(
            f"video frame is {v.width}x{v.height} = {v.width * v.height} pixels, "
            f"over the limit of {t.max_pixels}"
        )


def output_seconds(duration: float | None, limit: float | None) -> float | None:
    """Media time the outputs cover: the duration, cut at ``limit`` (``max_output_seconds``); None when
    neither is known."""
    if duration is None:
        return limit
    return min(duration, limit) if limit is not None else duration


def ladder(video: VideoStream, rungs: list[Rung]) -> list[RungSize]:
    """Rungs for a source: none above its short side (never upscale); the smallest rung always, at the
    source size if that is smaller.  Sizes are in display orientation, aspect kept, even."""
    dw, dh = video.display_width, video.display_height
    short = min(dw, dh)
    kept = [r for r in rungs if r.height <= short] or [min(rungs, key=lambda r: r.height)]
    out = []
    for r in kept:
        scale = min(r.height, short) / short
        out.append(RungSize(r, even(dw * scale), even(dh * scale)))
    return out


def h264_level(width: int, height: int, fps: float) -> str:
    """Lowest H.264 level that fits a frame size and rate."""
    frame_mbs = math.ceil(width / 16) * math.ceil(height / 16)
    for level, max_mbps, max_fs in _LEVELS:
        if frame_mbs <= max_fs and frame_mbs * fps <= max_mbps:
            return level
    return _LEVELS[-1][0]


def codecs_string(profile: str, level: str, with_audio: bool) -> str:
    """RFC 6381 CODECS value for an H.264 (+AAC-LC) rendition."""
    major, _, minor = level.partition(".")
    avc = f"avc1.{_PROFILE_IDC[profile]}{int(major) * 10 + int(minor or 0):02X}"
    return f"{avc},mp4a.40.2" if with_audio else avc


def poster_time(duration: float | None, t: TranscodeSettings) -> float:
    """When to take the poster: configured seconds or a fraction of the duration, inside the video."""
    if duration is None:
        return t.poster_seconds or 0.0
    at = t.poster_seconds if t.poster_seconds is not None else duration * t.poster_fraction
    return max(0.0, min(at, duration - 0.1))


@dataclass(frozen=True)
class SpriteGeometry:
    interval: float
    tiles: int  # cells in the sheet
    columns: int
    rows: int
    tile_width: int
    tile_height: int


def sprite_geometry(video: VideoStream, duration: float | None, t: TranscodeSettings) -> SpriteGeometry:
    """Tile size and grid; the interval is widened so the whole video fits in ``sprite_max_tiles``."""
    interval = t.sprite_interval_seconds
    if duration is not None:
        interval = max(interval, duration / t.sprite_max_tiles)
        tiles = max(1, min(t.sprite_max_tiles, math.ceil(duration / interval - 1e-6)))
    else:
        tiles = t.sprite_max_tiles
    tw = even(min(t.sprite_tile_width, video.display_width))
    th = even(tw * video.display_height / video.display_width)
    cols = min(t.sprite_columns, tiles)
    return SpriteGeometry(interval, tiles, cols, math.ceil(tiles / cols), tw, th)


def _ts(seconds: float) -> str:
    ms = round(seconds * 1000)
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def storyboard_vtt(geo: SpriteGeometry, duration: float, sprite_url: str) -> str:
    """WebVTT cues mapping each interval to its tile (``sprite.jpg#xywh=x,y,w,h``)."""
    lines = ["WEBVTT", ""]
    n = max(1, min(geo.tiles, math.ceil(duration / geo.interval - 1e-6)))
    for k in range(n):
        start, end = k * geo.interval, min((k + 1) * geo.interval, duration)
        if k == n - 1:
            end = max(end, duration)
        x, y = (k % geo.columns) * geo.tile_width, (k // geo.columns) * geo.tile_height
        lines += [
            f"{_ts(start)} --> {_ts(end)}",
            f"{sprite_url}#xywh={x},{y},{geo.tile_width},{geo.tile_height}",
            "",
        ]
    return "\n".join(lines)


_URI_ATTR = re.compile(r'URI="[^"]*"')


def rewrite_media_playlist(text: str, segment_url: str) -> tuple[str, int, float]:
    """Point a single-file HLS media playlist at ``segment_url``; returns (playlist, peak bits/s,
    total seconds)."""
    out, peak, total, pending = [], 0, 0.0, 0.0
    for line in text.splitlines():
        if line.startswith("#EXT-X-MAP:"):
            line = _URI_ATTR.sub(f'URI="{segment_url}"', line)
        elif line.startswith("#EXTINF:"):
            pending = float(line[8:].split(",")[0])
            total += pending
        elif line.startswith("#EXT-X-BYTERANGE:") and pending > 0:
            length = int(line.split(":", 1)[1].split("@")[0])
            peak = max(peak, math.ceil(length * 8 / pending))
        elif line and not line.startswith("#"):
            line = segment_url
        out.append(line)
    return "\n".join(out) + "\n", peak, total


def master_playlist(entries: list[tuple[str, int, int, int, str]]) -> str:
    """HLS master playlist from (url, peak bits/s, width, height, codecs), best first."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for url, peak, w, h, codecs in entries:
        lines.append(f'#EXT-X-STREAM-INF:BANDWIDTH={max(peak, 1)},RESOLUTION={w}x{h},CODECS="{codecs}"')
        lines.append(url)
    return "\n".join(lines) + "\n"
