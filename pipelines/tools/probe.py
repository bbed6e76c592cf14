"""Probing a media file with PyAV (libavformat in-process): streams, duration, geometry, rotation.

Bounded and large reads: the file protocol reads in 1 MiB pieces (``pkt_size``) and the demuxer
analyses at most ``probe_bytes``; in practice an MP4 costs one 1 MiB read (moov first) or three (moov
at the end).  Only the file protocol and the whitelisted demuxers can be used, so a playlist disguised
as a video is refused here, before ffmpeg ever sees it.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.errors import BadInputError, MissingDependencyError

if TYPE_CHECKING:
    import av

    from pipelines.ledger import StorageIO

MIB = 1 << 20
_ATTACHED_PIC = 0x400  # AV_DISPOSITION_ATTACHED_PIC: cover art shown as a "video" stream
_ROTATION_PACKETS = 64  # packets demuxed at most to find the first frame's display rotation


# FFmpeg's enum values (AVColorTransferCharacteristic, AVColorPrimaries, AVColorSpace, AVColorRange)
TRC_PQ, TRC_HLG = 16, 18
_TRC_NAMES = {
    1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "linear", 13: "iec61966-2-1",
    14: "bt2020-10", 15: "bt2020-12", TRC_PQ: "smpte2084", TRC_HLG: "arib-std-b67",
}  # fmt: skip
_PRIMARIES_NAMES = {
    1: "bt709", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 9: "bt2020", 11: "smpte431", 12: "smpte432",
}  # fmt: skip
_MATRIX_NAMES = {
    0: "gbr",
    1: "bt709",
    5: "bt470bg",
    6: "smpte170m",
    7: "smpte240m",
    9: "bt2020nc",
    10: "bt2020c",
}


@dataclass(frozen=True)
class Color:
    """A video stream's colour description, as ffmpeg names it (None: the stream does not say)."""

    transfer: str | None = None  # e.g. "bt709", "smpte2084" (PQ), "arib-std-b67" (HLG)
    primaries: str | None = None  # e.g. "bt709", "bt2020"
    matrix: str | None = None  # e.g. "bt709", "bt2020nc"
    full_range: bool = False
    peak_nits: float | None = None  # HDR10: MaxCLL, else the mastering display's peak (first frame)

    @property
    def hdr(self) -> str | None:
        """ "pq" or "hlg" for an HDR transfer (what phones record: HDR10/Dolby Vision 8.1 use PQ, iPhone
        HLG with Dolby Vision 8.4 inside), else None."""
        return {"smpte2084": "pq", "arib-std-b67": "hlg"}.get(self.transfer or "")


@dataclass(frozen=True)
class VideoStream:
    index: int
    codec: str
    width: int  # as stored
    height: int
    display_width: int  # sample aspect ratio and rotation applied
    display_height: int
    rotation: int  # degrees, as the display matrix says (0, 90, 180, 270)
    fps: float | None
    color: Color = Color()


@dataclass(frozen=True)
class AudioStream:
    index: int
    codec: str
    channels: int
    sample_rate: int
    layout_known: bool = True  # False: the decoder names no channel layout (Speex), just a count


@dataclass(frozen=True)
class LeftOut:
    """A stream the outputs cannot use: no decoder for its codec (or no codec ffmpeg knows)."""

    index: int
    type: str  # "audio" or "video"
    codec: str  # ffmpeg's name for it, "unknown" when ffmpeg has none
    reason: str

    def __str__(self) -> str:
        return f"{self.type} stream #{self.index} ({self.codec}): {self.reason}"


@dataclass(frozen=True)
class MediaInfo:
    demuxer: str  # short name to force with -f (first of the probed names)
    format_names: str
    duration: float | None  # seconds, None when the container does not say
    streams: int
    video: VideoStream | None
    audio: AudioStream | None
    size: int
    left_out: tuple[LeftOut, ...] = ()  # audio/video streams passed over: no decoder


def pyav_version() -> str:
    """PyAV's version, from its package metadata: checking that it is installed does not import it
    (~50-80 ms, paid by the first probe instead)."""
    from importlib.metadata import PackageNotFoundError, version
    from importlib.util import find_spec

    try:
        found = version("av") if find_spec("av") is not None else None
    except PackageNotFoundError:
        found = None
    if found is None:
        raise MissingDependencyError("PyAV is needed to probe media: install the Python package 'av'")
    return found


def _thread_bytes_read() -> tuple[int, int]:
    """(bytes this thread has read with read() so far: the kernel's ``rchar``; the bytes this call
    read to learn it), or (0, 0) if unknown."""
    try:
        with open("/proc/thread-self/io", "rb", buffering=0) as f:
            data = f.read(4096)
    except OSError:
        return 0, 0
    for line in data.splitlines():
        if line.startswith(b"rchar:"):
            return int(line.split()[1]), len(data)
    return 0, 0


def probe(
    path: Path,
    *,
    allowed_demuxers: Sequence[str],
    probe_bytes: int = 8 * MIB,
    rotation: bool = True,
    io: StorageIO | None = None,
    decodable: Collection[str] | None = None,
) -> MediaInfo:
    """Describe ``path``; raises BadInputError for anything that is not a readable media file.

    ``rotation=False`` skips decoding the first frame: display sizes then ignore any rotation (for
    callers that let ffmpeg rotate and size the picture itself).  With ``io`` (``path`` is on the
    mount) what libav read is added to that ledger: this thread's ``rchar`` over the probe, in the
    1 MiB pieces it reads.  ``decodable``: the codecs the ffmpeg that will decode the source has a
    decoder for (None: not checked).  The first audio and the first video stream that can be decoded
    are used; the ones passed over for want of a decoder are in :attr:`MediaInfo.left_out`; a source
    whose every video stream lacks one is a BadInputError naming its codec.
    """
    import av  # noqa: F401  (imported before the measurement: an import reads files too)

    if io is None:
        return _probe(path, allowed_demuxers, probe_bytes, rotation, decodable)
    before, own = _thread_bytes_read()
    try:
        return _probe(path, allowed_demuxers, probe_bytes, rotation, decodable)
    finally:
        after, _ = _thread_bytes_read()
        if after:
            io.reads_in_pieces(after - before - own, MIB)


def _probe(
    path: Path,
    allowed_demuxers: Sequence[str],
    probe_bytes: int,
    rotation: bool,
    decodable: Collection[str] | None,
) -> MediaInfo:
    size = os.path.getsize(path)
    if size == 0:
        raise BadInputError("empty file (0 bytes)")
    with _open(path, allowed_demuxers, probe_bytes) as container:
        fmt = container.format.name
        demuxer = fmt.split(",")[0]
        if not any(d in fmt.split(",") for d in allowed_demuxers):  # belt and braces
            raise BadInputError(f"demuxer {fmt!r} is not allowed for sources")
        durations = []
        if container.duration and container.duration > 0:
            durations.append(container.duration / 1e6)
        for s in container.streams:
            if s.duration and s.time_base and not container.duration:
                durations.append(float(s.duration * s.time_base))
        video, audio, left_out = _pick_streams(container, rotation, decodable)
        if video is None and (passed := [x for x in left_out if x.type == "video"]):
            raise BadInputError(f"no video stream can be decoded: {'; '.join(map(str, passed))}")
        return MediaInfo(
            demuxer=demuxer,
            format_names=fmt,
            duration=max(durations) if durations else None,
            streams=len(container.streams),
            video=video,
            audio=audio,
            size=size,
            left_out=tuple(left_out),
        )


def _open(path: Path, allowed_demuxers: Sequence[str], probe_bytes: int) -> av.container.InputContainer:
    """The source opened by PyAV with only the allowed demuxers, local files and 1 MiB reads."""
    import av

    options = {
        "pkt_size": str(MIB),
        "protocol_whitelist": "file",
        "format_whitelist": ",".join(allowed_demuxers),
        "probesize": str(probe_bytes),
    }
    try:
        return av.open(str(path), "r", options=options)
    except av.FFmpegError as exc:
        raise BadInputError(
            f"not a media file we accept ({_reason(exc)}; allowed formats: {', '.join(allowed_demuxers)})",
            detail=repr(exc),
        ) from None
    except (OSError, ValueError, MemoryError) as exc:  # pragma: no cover - defensive
        raise BadInputError(f"cannot open media: {exc}") from None


def _pick_streams(
    container: av.container.InputContainer, rotation: bool, decodable: Collection[str] | None
) -> tuple[VideoStream | None, AudioStream | None, list[LeftOut]]:
    """The first video (not a cover picture) and the first audio stream that can be decoded, and the
    streams passed over for want of a decoder."""
    video = audio = None
    left_out: list[LeftOut] = []
    for s in container.streams:
        if s.type == "video" and video is None and not int(s.disposition) & _ATTACHED_PIC:
            vcc: Any = s.codec_context
            if (missing := _no_decoder(container, s, decodable)) is not None:
                left_out.append(missing)
            elif vcc.width > 0 and vcc.height > 0:
                video = _video(container, s, rotation)
        elif s.type == "audio" and audio is None:
            cc: Any = s.codec_context
            if (missing := _no_decoder(container, s, decodable)) is not None:
                left_out.append(missing)
                continue
            channels = getattr(cc, "channels", 0) or getattr(getattr(cc, "layout", None), "nb_channels", 0)
            audio = AudioStream(
                s.index, cc.name, int(channels or 2), int(cc.sample_rate or 0), _layout_known(cc)
            )
    return video, audio, left_out


def _layout_known(cc: Any) -> bool:
    """Whether the decoder gives a channel layout (an unspecified order lists its channels as NONE)."""
    channels = getattr(getattr(cc, "layout", None), "channels", ())
    return bool(channels) and all(getattr(ch, "name", "NONE") not in ("NONE", "UNKNOWN") for ch in channels)


def _no_decoder(container: object, s: object, decodable: Collection[str] | None) -> LeftOut | None:
    """Why stream ``s`` cannot be decoded, or None if it can: PyAV opened no decoder for it (an unknown
    codec, or one without a decoder in PyAV's libav), or the ffmpeg that decodes sources has none."""
    import av

    assert isinstance(container, av.container.InputContainer) and isinstance(s, av.stream.Stream)
    cc: Any = s.codec_context
    if cc is None:
        codec = _codec_names(container).get(s.index, "unknown")
        if codec in ("unknown", "none"):
            return LeftOut(s.index, s.type, "unknown", "a codec ffmpeg does not know")
        if decodable is not None and codec not in decodable:
            return LeftOut(s.index, s.type, codec, "ffmpeg has no decoder for this codec")
        return LeftOut(s.index, s.type, codec, "the probe (PyAV) has no decoder for this codec")
    codec = cc.codec.canonical_name
    if decodable is not None and codec not in decodable:
        return LeftOut(s.index, s.type, codec, "ffmpeg has no decoder for this codec")
    return None


_STREAM_LINE = re.compile(r"^\s*Stream #\d+:(\d+)\S*: (?:Audio|Video|Data|Subtitle): ([A-Za-z0-9_]+)", re.M)


def _codec_names(container: object) -> dict[int, str]:
    """Codec names by stream index, as libav's format dump prints them: PyAV has no other way to name
    the codec of a stream it opened no decoder for (its dump goes through the log, raised meanwhile)."""
    import av
    import av.logging

    assert isinstance(container, av.container.InputContainer)
    level = av.logging.get_level()
    try:
        av.logging.set_level(av.logging.INFO)
        dump = container.dumps_format()  # type: ignore[attr-defined]  # not in PyAV's stubs
    except (av.FFmpegError, ValueError):  # pragma: no cover - defensive: the name is only for the message
        return {}
    finally:
        av.logging.set_level(level)
    names: dict[int, str] = {}
    for m in _STREAM_LINE.finditer(dump):
        names.setdefault(int(m.group(1)), m.group(2))
    return names


def _video(container: object, s: object, with_rotation: bool) -> VideoStream:
    import av

    assert isinstance(container, av.container.InputContainer) and isinstance(s, av.VideoStream)
    cc = s.codec_context
    w, h = cc.width, cc.height
    sar = s.sample_aspect_ratio or cc.sample_aspect_ratio
    dw, dh = w, h
    if sar and sar > 0 and sar != 1:
        dw = max(1, round(w * Fraction(sar)))
    rotation, peak = _first_frame(container, s) if with_rotation else (0, None)
    if rotation % 180 == 90:
        dw, dh = dh, dw
    rate = s.average_rate or s.guessed_rate
    fps = float(rate) if rate and 0 < rate < 1000 else None
    color = Color(
        transfer=_TRC_NAMES.get(int(cc.color_trc or 0)),
        primaries=_PRIMARIES_NAMES.get(int(cc.color_primaries or 0)),
        matrix=_MATRIX_NAMES.get(int(cc.colorspace)) if cc.colorspace not in (None, 2) else None,
        full_range=int(cc.color_range or 0) == 2,
        peak_nits=peak,
    )
    return VideoStream(s.index, cc.name, w, h, dw, dh, rotation, fps, color)


def _first_frame(container: object, s: object) -> tuple[int, float | None]:
    """Display rotation of the first decoded frame (PyAV exposes the display matrix on frames) and its
    HDR peak luminance in nits (content light level MaxCLL, else the mastering display's maximum)."""
    import av

    assert isinstance(container, av.container.InputContainer) and isinstance(s, av.VideoStream)
    s.codec_context.thread_count = 1
    try:
        for n, packet in enumerate(container.demux(s)):
            if n >= _ROTATION_PACKETS:
                break
            for frame in packet.decode():
                return round(getattr(frame, "rotation", 0) or 0) % 360, _peak_nits(frame)
    except (av.FFmpegError, ValueError, MemoryError):
        pass  # undecodable start: ffmpeg will say so; assume no rotation here
    return 0, None


def _peak_nits(frame: object) -> float | None:
    """MaxCLL (AVContentLightMetadata: two unsigned ints), else the mastering display's max luminance
    (AVMasteringDisplayMetadata: max_luminance is the AVRational at byte 72, has_luminance at 84)."""
    found: dict[str, bytes] = {}
    for sd in getattr(frame, "side_data", ()):
        found[str(getattr(sd.type, "name", sd.type))] = bytes(sd)
    cll = found.get("CONTENT_LIGHT_LEVEL")
    if cll is not None and len(cll) >= 8 and (max_cll := struct.unpack("=I", cll[:4])[0]) > 0:
        return float(max_cll)
    md = found.get("MASTERING_DISPLAY_METADATA")
    if md is not None and len(md) >= 88:
        num, den = struct.unpack("=ii", md[72:80])
        if struct.unpack("=i", md[84:88])[0] and den > 0 and num > 0:
            return num / den
    return None


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).split(":")[0].strip() or type(exc).__name__
