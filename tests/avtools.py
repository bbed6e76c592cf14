"""Test helpers for the ffmpeg pipelines: make media with the real ffmpeg, measure outputs with PyAV."""

from __future__ import annotations

import io
import json
import re
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import imageio_ffmpeg
from conftest import cli_env
from PIL import Image, ImageStat

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()

# fast settings for tests: one small rung, the fastest x264 preset
FAST: dict[str, Any] = {
    "preset": "ultrafast",
    "ladder": [{"height": 240, "max_kbps": 800}, {"height": 144, "max_kbps": 300}],
}


def fast_env(**extra: Any) -> dict[str, str]:
    """CLI environment with FAST settings (plus ``extra`` transcode settings)."""
    env = cli_env()
    for key, value in {**FAST, **extra}.items():
        env[f"MEDIA_WORKER_TRANSCODE__{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env


def make_media(
    path: Path,
    *args: str,
    seconds: float = 3,
    size: str = "320x240",
    audio: bool = True,
    audio_src: str = "sine=f=440:sample_rate=48000",
) -> Path:
    """A test clip from lavfi sources; ``args`` are output options (codecs, container)."""
    cmd = [
        FFMPEG,
        "-hide_banner",
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=s={size}:r=25:d={seconds}",
    ]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"{audio_src}:d={seconds}"]
    cmd += [*args, str(path)]
    subprocess.run(cmd, check=True, timeout=300)
    return path


@dataclass
class Facts:
    """What PyAV sees in a file: container, streams and the real (packet) duration of each kind."""

    format: str
    video: dict[str, Any] | None = None
    audio: dict[str, Any] | None = None
    durations: dict[str, float] = field(default_factory=dict)


def facts(path: Path) -> Facts:
    with av.open(str(path)) as c:
        f = Facts(c.format.name)
        starts: dict[str, float] = {}
        ends: dict[str, float] = {}
        for s in c.streams:
            if s.type == "video" and f.video is None and not int(s.disposition) & 0x400:
                cc: Any = s.codec_context
                f.video = {"index": s.index, "codec": cc.name, "width": cc.width, "height": cc.height}
                f.video["pix_fmt"] = cc.pix_fmt
            elif s.type == "audio" and f.audio is None:
                cc = s.codec_context
                f.audio = {"index": s.index, "codec": cc.name, "rate": cc.sample_rate}
        wanted = {d["index"]: kind for kind, d in (("video", f.video), ("audio", f.audio)) if d}
        for pkt in c.demux():
            kind = wanted.get(pkt.stream.index)
            if kind is None or pkt.pts is None:
                continue
            tb = float(pkt.time_base)
            start, end = pkt.pts * tb, (pkt.pts + (pkt.duration or 0)) * tb
            starts[kind] = min(starts.get(kind, start), start)
            ends[kind] = max(ends.get(kind, end), end)
        # times count from the file's start (ffmpeg shifts outputs to it); negative timestamps are
        # priming samples that players discard (Opus pre-skip)
        origin = max(0.0, min(starts.values())) if starts else 0.0
        f.durations = {k: ends[k] - origin for k in ends}
    return f


def top_level_boxes(path: Path) -> list[str]:
    """MP4 top-level box types in file order."""
    boxes = []
    with open(path, "rb") as fh:
        while head := fh.read(8):
            if len(head) < 8:
                break
            size, kind = struct.unpack(">I4s", head)
            if size == 1:
                size = struct.unpack(">Q", fh.read(8))[0]
                fh.seek(size - 16, 1)
            elif size == 0:
                boxes.append(kind.decode("latin-1"))
                break
            else:
                fh.seek(size - 8, 1)
            boxes.append(kind.decode("latin-1"))
    return boxes


def image_stats(data: bytes) -> tuple[tuple[int, int], float, float]:
    """(size, mean luma, luma stddev) of an encoded image."""
    with Image.open(io.BytesIO(data)) as im:
        st = ImageStat.Stat(im.convert("L"))
        return im.size, st.mean[0], st.stddev[0]


CUE = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) --> (\d\d):(\d\d):(\d\d)\.(\d{3})$")


def vtt_cues(text: str) -> list[tuple[float, float, str]]:
    """(start, end, payload) of each WebVTT cue."""
    lines = text.splitlines()
    assert lines[0] == "WEBVTT"
    cues = []
    for i, line in enumerate(lines):
        if m := CUE.match(line):
            g = [int(x) for x in m.groups()]
            start = g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000
            end = g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000
            cues.append((start, end, lines[i + 1]))
    return cues


def _ogg_crc(data: bytes) -> int:
    """Ogg's page checksum: CRC-32, polynomial 0x04C11DB7, not reflected, initial value 0."""
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1) & 0xFFFFFFFF
    return crc


def _ogg_page(packets: list[bytes], granule: int, seq: int, flags: int) -> bytes:
    lacing = []
    for p in packets:
        lacing += [255] * (len(p) // 255) + [len(p) % 255]
    head = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule, 0x5EED, seq, 0, len(lacing)) + bytes(lacing)
    body = b"".join(packets)
    return head[:22] + struct.pack("<I", _ogg_crc(head + body)) + head[26:] + body


def speex_ogg(path: Path, seconds: float = 3.0) -> Path:
    """An Ogg Speex file (.spx): narrowband, 8 kHz mono, one 20 ms frame per packet.  The shipped ffmpeg
    decodes Speex but has no Speex encoder, so this writes the stream itself: the 80-byte Speex header,
    a comment header and null-mode frames (the 5 bits '0 0000': silence), as the Speex spec lays out."""
    header = struct.pack("<8s20s13i", b"Speex   ", b"1.2.1", 1, 80, 8000, 0, 4, 1, -1, 160, 0, 1, 0, 0, 0)
    vendor = b"media-worker tests"
    comments = struct.pack("<I", len(vendor)) + vendor + struct.pack("<I", 0)
    frames = round(seconds * 50)
    out = _ogg_page([header], 0, 0, 0x02) + _ogg_page([comments], 0, 1, 0)
    done, seq = 0, 2
    while done < frames:
        n = min(50, frames - done)
        done += n
        out += _ogg_page([b"\x00"] * n, done * 160, seq, 0x04 if done == frames else 0)
        seq += 1
    path.write_bytes(out)
    return path
