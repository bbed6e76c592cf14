"""The ffmpeg wrapper: find the binary, check it once, build one command for a whole job, run it.

Which ffmpeg: ``transcode.ffmpeg_binary`` if set, else ``ffmpeg`` on PATH, else the static build shipped
by the ``imageio-ffmpeg`` package.  An ffmpeg whose file protocol has no ``pkt_size`` option (Debian 12's
5.1) reads in 32 KiB pieces, which S3 Files serves from its paid cache: a configured one is refused
(MissingDependencyError), one found on PATH is skipped with a warning in favour of imageio-ffmpeg's.

A run is ONE ffmpeg process that decodes the source once: :func:`open_input` splits the decoded video
into one copy per user (the rendition ladder, the poster candidates, the storyboard tiles); the
functions by output kind below build each output; :func:`command` joins them.  Sources are opened
with ``-protocol_whitelist file``, a forced demuxer (the one the probe found in the whitelist) and a
``file:`` URL, so a crafted upload cannot make ffmpeg read another file or the network, and a name
starting with ``-`` is not an option.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import itertools
import os
import re
import stat
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from io import FileIO
from pathlib import Path
from typing import Any, BinaryIO

from config.deadline import NO_DEADLINE, Deadline
from config.errors import BadInputError, JobTimeoutError, MissingDependencyError
from config.logs import get_logger
from pipelines.ledger import StorageIO
from pipelines.spec import OutputWriter
from pipelines.tools import query_cache, runner

log = get_logger(__name__)
MIB = 1 << 20
REQUIRED_ENCODERS = ("libx264", "aac", "libopus", "libmp3lame", "mjpeg", "bmp")
_VERSION = re.compile(r"ffmpeg version (\S+)")
PROGRAM = runner.Program(
    "ffmpeg",
    "install the Python package imageio-ffmpeg (it ships a static ffmpeg) or put an ffmpeg >= 6 on PATH",
)
_PROBE_SECONDS = 30.0
FFMPEG_PROBESIZE = 500_000
# ffmpeg messages that mean the input, not ffmpeg, is at fault
_BAD_INPUT = re.compile(
    r"Invalid data found|partial file|Error while decoding|Decoding error|received no packets|"
    r"Invalid NAL|moov atom not found|End of file|Decode error rate|could not find codec parameters",
    re.IGNORECASE,
)


# ------------------------------------------------------------------------------------------ locate


@dataclass(frozen=True)
class Ffmpeg:
    """A usable ffmpeg binary."""

    path: str
    version: str
    origin: str  # "config", "PATH" or "imageio-ffmpeg"


def _probe(path: str, *args: str) -> str:
    """stdout of a short ffmpeg query (exit status ignored: the caller checks what it printed); asked
    once per ffmpeg binary, then answered from the tool query cache."""
    argv = [path, "-hide_banner", *args]
    return query_cache.query(
        argv, lambda: runner.run(argv, program=PROGRAM, timeout=_PROBE_SECONDS, check=False).stdout
    )


def _version(path: str) -> str:
    m = _VERSION.search(_probe(path, "-version"))
    if not m:
        raise MissingDependencyError(f"{path} does not look like ffmpeg (no version line)")
    return m.group(1)


def _has_pkt_size(path: str) -> bool:
    return "pkt_size" in _probe(path, "-h", "protocol=file")


def _missing_encoders(path: str) -> list[str]:
    out = _probe(path, "-encoders")
    have = {line.split()[1] for line in out.splitlines() if len(line.split()) > 1 and line.startswith(" ")}
    return [e for e in REQUIRED_ENCODERS if e not in have]


@functools.lru_cache(maxsize=4)
def decodable_codecs(tool: Ffmpeg) -> frozenset[str] | None:
    """The codecs (ffmpeg's names, as a probe gives them) ``tool`` has a decoder for, from ``-codecs``;
    None if it listed none (an ffmpeg that lists nothing is not taken to decode nothing)."""
    found = set()
    for line in _probe(tool.path, "-codecs").splitlines():
        parts = line.split()
        if len(parts) > 1 and len(parts[0]) == 6 and parts[0][0] == "D" and parts[1] != "=":
            found.add(parts[1])
    return frozenset(found) or None


def _imageio_ffmpeg() -> str | None:
    """The static ffmpeg that imageio-ffmpeg ships.  Looked up in its package first: its own
    ``get_ffmpeg_exe()`` runs ``ffmpeg -version`` to test it, which :func:`locate` does anyway (and
    answers from the tool query cache)."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    with contextlib.suppress(ImportError, AttributeError, KeyError, OSError):
        from importlib.resources import files

        from imageio_ffmpeg._definitions import FNAME_PER_PLATFORM, get_platform

        bundled = Path(str(files("imageio_ffmpeg.binaries"))) / FNAME_PER_PLATFORM[get_platform()]
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
    try:
        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except RuntimeError:
        return None


_found: list[Ffmpeg] = []


def located() -> Ffmpeg | None:
    """The ffmpeg found by the last :func:`locate`, if any (for the manifest's tool versions)."""
    return _found[-1] if _found else None


@functools.lru_cache(maxsize=4)
def locate(configured: str | None = None) -> Ffmpeg:
    """Find and check ffmpeg once per process (configured, PATH, imageio-ffmpeg)."""
    candidates: list[tuple[str, str]] = []
    if configured:
        found = runner.which(configured)
        if not found:
            raise MissingDependencyError(
                f"transcode.ffmpeg_binary {configured!r} not found or not executable"
            )
        candidates.append((found, "config"))
    else:
        if on_path := runner.which("ffmpeg"):
            candidates.append((on_path, "PATH"))
        if bundled := _imageio_ffmpeg():
            candidates.append((bundled, "imageio-ffmpeg"))
    if not candidates:
        raise PROGRAM.missing("not found")
    for path, origin in candidates:
        version = _version(path)
        if not _has_pkt_size(path):
            why = (
                f"ffmpeg {version} at {path} has no file-protocol option pkt_size, so it reads sources in "
                "32 KiB pieces (S3 Files would serve them from its paid cache)"
            )
            if origin == "config":
                raise MissingDependencyError(f"{why}; use ffmpeg >= 6 (e.g. the one from imageio-ffmpeg)")
            log.warning("%s; skipping it", why)
            continue
        if missing := _missing_encoders(path):
            why = f"ffmpeg {version} at {path} lacks encoder(s) {', '.join(missing)}"
            if origin == "config":
                raise MissingDependencyError(why)
            log.warning("%s; skipping it", why)
            continue
        log.info("using ffmpeg %s from %s (%s)", version, origin, path)
        _found.append(Ffmpeg(path, version, origin))
        return _found[-1]
    raise MissingDependencyError(
        "no usable ffmpeg (see warnings above): install the Python package imageio-ffmpeg"
    )


# ------------------------------------------------------------------------------------------ encode
#
# ONE command per run, built from pieces named for what they build: the input (input_options,
# open_input: the decoded video split into one copy per user, so the source is decoded once), then per
# output kind a function that hangs its filters off a decoded stream and returns the ffmpeg output -
# renditions (video_rendition_args), audio_file (audio_args), poster_frames and storyboard_tiles
# (frames_args) - and command(), which joins the outputs.  The HLS remux is a command of its own
# (hls_args).  The pipelines choose the outputs (pipelines/builtin/av/group.py, transcode.py,
# video_thumbnails.py); only this module speaks ffmpeg-python.

Stream = Any  # an ffmpeg-python stream: a decoded input stream or a filter's output
Output = Any  # an ffmpeg-python output node (one output file and its options)


@dataclass(eq=False)
class Sink:
    """An output that ffmpeg does not write on the workspace: the worker writes it to its final path
    through ``open()`` in ``MIB`` writes, hashing it on the way, so it is never read back to be hashed.

    A streamable format (fragmented MP4, Ogg, the HLS segments file) goes through a pipe that a thread
    drains while ffmpeg runs (:func:`run`); a format whose muxer seeks back to finish the file (WebM's
    cues and duration, MP3's Xing header) is written by ffmpeg to ``staged``, in the job's scratch
    folder, and copied after ffmpeg exited 0 (local reads cost nothing; the mount is written once).
    ``copy``: a local file that also gets a pipe's bytes (the HLS remux reads the rendition from it).
    """

    name: str  # the output's workspace path: messages, and the placeholder in the command line
    open: Callable[[], OutputWriter]  # an output opened at its final path (Job.open_output)
    staged: Path | None = None
    copy: Path | None = None
    size: int = 0  # bytes written to the final path

    @property
    def url(self) -> str:
        """Its URL in the command: the staged file, or for a pipe a placeholder :func:`run` replaces
        with ``pipe:<fd>``."""
        return _url(self.staged) if self.staged is not None else f"pipe:<{self.name}>"


def _write_through(sink: Sink, src: FileIO) -> None:
    """Copy ``src`` to ``sink.open()`` (and ``sink.copy``) in ``MIB`` writes; opens nothing if ``src``
    is empty (ffmpeg wrote nothing: :func:`require_outputs` says so)."""
    buf = bytearray(MIB)
    view = memoryview(buf)
    out: OutputWriter | None = None
    copy: BinaryIO | None = None
    try:
        while True:
            filled = 0
            while filled < MIB and (n := src.readinto(view[filled:])):
                filled += n
            if not filled:
                break
            if out is None:
                out = sink.open()
                copy = open(sink.copy, "wb") if sink.copy is not None else None  # noqa: SIM115
            out.write(view[:filled])
            sink.size += filled
            if copy is not None:
                copy.write(view[:filled])
    finally:
        view.release()
        if copy is not None:
            copy.close()
        if out is not None:
            out.close()


class _Drain(threading.Thread):
    """Drains one output pipe to its sink while ffmpeg runs; closing the read end when it stops early
    (a full workspace) makes ffmpeg's next write fail at once (EPIPE) instead of blocking."""

    def __init__(self, sink: Sink, fd: int) -> None:
        super().__init__(name=f"ffmpeg-output-{fd}", daemon=True)
        self.sink, self.fd = sink, fd
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with open(self.fd, "rb", buffering=0) as src:
                _write_through(self.sink, src)
        except BaseException as exc:  # raised by run() after ffmpeg has stopped
            self.error = exc


def _copy_staged(sinks: Sequence[Sink]) -> None:
    for sink in sinks:
        assert sink.staged is not None
        with contextlib.suppress(FileNotFoundError), open(sink.staged, "rb", buffering=0) as src:
            _write_through(sink, src)
        sink.staged.unlink(missing_ok=True)  # scratch space back before the next output


@dataclass(frozen=True)
class VideoOut:
    """One H.264/AAC rendition: a fragmented MP4."""

    width: int
    height: int
    path: Path | Sink  # a Sink: the worker writes it (a pipe: fragmented MP4 streams)
    crf: int
    preset: str
    profile: str
    level: str
    max_kbps: int
    gop_seconds: float
    audio_kbps: int | None  # None: no audio
    bt709_tags: bool = False  # tag the stream BT.709 (set when the source was tone-mapped from HDR)


@dataclass(frozen=True)
class HdrOut:
    """The optional HDR rendition: HEVC Main 10 in fragmented MP4, the source's colour tags kept."""

    width: int
    height: int
    path: Path | Sink
    crf: int
    preset: str
    color: Any  # probe.Color of the source (transfer, primaries, matrix)
    gop_seconds: float
    audio_kbps: int | None


@dataclass(frozen=True)
class ToneMap:
    """HDR (PQ or HLG) to SDR BT.709, applied once to the decoded video, before it is split.

    In linear light: the source's transfer is undone with ``reference_white_nits`` (BT.2408: 203) as 1.0,
    so SDR-range content keeps its brightness; BT.2020 primaries become BT.709; then ffmpeg's ``tonemap``
    (mobius: linear below its knee, highlights rolled off up to ``peak_nits``); then BT.709 transfer and
    matrix, limited range, 8-bit 4:2:0.  See docs/transcode.md ("HDR sources") for the choices.
    """

    transfer: str  # "smpte2084" | "arib-std-b67"
    primaries: str
    matrix: str
    full_range: bool
    reference_white_nits: float
    peak_nits: float
    operator: str = "mobius"
    knee: float = 0.5

    def apply(self, video: Stream) -> Stream:
        linear = video.filter(
            "zscale",
            tin=self.transfer,
            pin=self.primaries,
            min=self.matrix,
            rin="full" if self.full_range else "limited",
            t="linear",
            npl=f"{self.reference_white_nits:g}",
        )
        s = linear.filter("format", "gbrpf32le").filter("zscale", p="bt709")
        peak = max(1.0, self.peak_nits / self.reference_white_nits)
        s = s.filter("tonemap", tonemap=self.operator, param=f"{self.knee:g}", desat=0, peak=f"{peak:.3f}")
        return s.filter("zscale", t="bt709", m="bt709", r="limited").filter("format", "yuv420p")


@dataclass(frozen=True)
class AudioOut:
    """One audio file."""

    codec: str  # "aac" | "opus" | "mp3"
    container: str  # "mp4" | "webm" | "ogg" | "mp3"
    kbps: int
    path: Path | Sink  # WebM and MP3 muxers seek back to finish: staged, not piped
    loudnorm_lufs: float | None = None


@dataclass(frozen=True)
class PosterOut:
    """Candidate poster frames as BMP files in a local folder: ``start`` + k seconds, k < count
    (after the video's first frame when ``first_frame``)."""

    start: float
    count: int
    width: int | None  # None: the full displayed size (SAR applied; ffmpeg applies the rotation)
    height: int | None
    folder: Path
    first_frame: bool = False

    def times(self, seek: float | None) -> list[float]:
        """Media time of each file ``poster%02d.bmp``, in file order."""
        base = seek or 0.0
        head = [0.0] if self.first_frame else []
        return head + [base + self.start + k for k in range(self.count)]


@dataclass(frozen=True)
class SpriteOut:
    """Storyboard tiles as BMP files in a local folder: one every ``interval`` s, ``max_tiles`` at most."""

    interval: float
    tile_width: int
    tile_height: int
    max_tiles: int
    folder: Path


@dataclass(frozen=True)
class Input:
    """The one input of a run: the source and how ffmpeg opens it."""

    source: Path
    demuxer: str  # forced: the one the probe found
    whitelist: tuple[str, ...]  # demuxers ffmpeg may open (format_whitelist)
    seek: float | None = None  # start at the keyframe at or before this time (poster-only runs)
    limit_seconds: float | None = None


@dataclass(frozen=True)
class OutputOptions:
    """What every output of a run shares."""

    threads: int = 0  # 0: ffmpeg's default
    stereo: bool = False  # the source has more than two channels: audio outputs are downmixed
    # the decoded audio has a channel count but no layout (Speex), which the AAC encoder refuses: the
    # outputs get that count (-ac), with the default layout for it
    channels: int | None = None

    def common(self) -> dict[str, Any]:
        """Options of every output: no metadata or chapters copied, the thread limit."""
        opts: dict[str, Any] = {"map_metadata": -1, "map_chapters": -1}
        if self.threads:
            opts["threads"] = self.threads
        return opts

    def audio(self) -> dict[str, Any]:
        """Options of every encoded audio stream."""
        if self.stereo:
            return {"ac": 2}
        return {"ac": self.channels} if self.channels else {}


def _url(path: Path | Sink) -> str:
    """A ``file:`` URL for a path (never parsed as an option or another protocol), or a sink's URL."""
    if isinstance(path, Sink):
        return path.url
    return "file:" + os.path.abspath(path)


def input_options(inp: Input) -> dict[str, Any]:
    """Options of the source: file protocol only, forced and whitelisted demuxer, 1 MiB reads."""
    opts: dict[str, Any] = {
        "f": inp.demuxer,
        "pkt_size": MIB,
        "protocol_whitelist": "file",
        "format_whitelist": ",".join(inp.whitelist),
        # the probe already knows the streams and the duration: a small probesize keeps the demuxer's
        # header scan inside the first 1 MiB buffer, and no PTS scan at the end of the file, so an
        # MPEG-TS is not read twice (5 MB scan + seek back + a jump to the end without these)
        "probesize": FFMPEG_PROBESIZE,
        "skip_estimate_duration_from_pts": 1,
    }
    if inp.seek is not None:  # poster-only: start at the keyframe at or before the poster time
        opts["ss"] = f"{inp.seek:.3f}"
        opts["noaccurate_seek"] = None
    if inp.limit_seconds is not None:
        opts["t"] = f"{inp.limit_seconds:.3f}"
    return opts


def open_input(
    inp: Input,
    *,
    video: int | None,
    video_taps: int,
    audio: int | None,
    tonemap: ToneMap | None = None,
    hdr_taps: int = 0,
) -> tuple[list[Stream], list[Stream], Stream | None]:
    """The decoded video in ``video_taps`` copies (one ``split``: one decode for every user), tone-mapped
    once before the split when ``tonemap`` is given, plus ``hdr_taps`` copies of the untouched HDR video;
    and the decoded audio (mapped into every output that wants it)."""
    import ffmpeg

    node = ffmpeg.input(_url(inp.source), **input_options(inp))
    taps: list[Stream] = []
    hdr: list[Stream] = []
    if video is not None and (video_taps or hdr_taps):
        decoded = node[str(video)]
        if hdr_taps and video_taps:
            first = _split(decoded, hdr_taps + 1)
            hdr, decoded = first[:hdr_taps], first[hdr_taps]
        elif hdr_taps:
            hdr, decoded = _split(decoded, hdr_taps), None
        if decoded is not None and video_taps:
            if tonemap is not None:
                decoded = tonemap.apply(decoded)
            taps = _split(decoded, video_taps)
    return taps, hdr, node[str(audio)] if audio is not None else None


def _split(stream: Stream, copies: int) -> list[Stream]:
    if copies == 1:
        return [stream]
    split = stream.filter_multi_output("split", copies)
    return [split.stream(i) for i in range(copies)]


def _ladder(src: Stream, videos: Sequence[VideoOut], fps_cap: float | None) -> list[Stream]:
    """One filtered stream per rendition: a cascade, each rung scaled from the next larger one.

    Scaling every rung from a 1080p source runs three full-size scalers in one filter thread, which
    then limits the whole process; scaling 720p from 1080p, then 480p and 360p from 720p, costs a
    fraction (bicubic at these ratios keeps the quality).
    """
    if fps_cap:  # set only when the source is faster; poster/sprite branches keep exact times
        src = src.filter("fps", f"{fps_cap:g}")
    sizes: list[tuple[int, int]] = []
    for v in videos:
        if (v.width, v.height) not in sizes:
            sizes.append((v.width, v.height))
    sizes.sort(key=lambda wh: -wh[0] * wh[1])
    per_size: dict[tuple[int, int], list[Stream]] = {}
    prev = src
    for i, (w, h) in enumerate(sizes):
        scaled = prev.filter("scale", w, h, flags="bicubic", out_range="tv")
        users = sum((v.width, v.height) == (w, h) for v in videos) + (i < len(sizes) - 1)
        if users > 1:
            split = scaled.filter_multi_output("split", users)
            streams = [split.stream(k) for k in range(users)]
        else:
            streams = [scaled]
        if i < len(sizes) - 1:
            prev = streams.pop()
        per_size[(w, h)] = streams
    return [
        per_size[(v.width, v.height)].pop(0).filter("setsar", "1").filter("format", "yuv420p") for v in videos
    ]


def video_rendition_args(out: VideoOut, opts: OutputOptions, *, with_audio: bool) -> dict[str, Any]:
    """Output options of one rendition: x264 with capped rate and forced keyframes, AAC, fragmented MP4
    (moov first, written once, 1 MiB writes)."""
    args: dict[str, Any] = {
        **opts.common(),
        "c:v": "libx264",
        "preset": out.preset,
        "crf": out.crf,
        "profile:v": out.profile,
        "level:v": out.level,
        "maxrate": f"{out.max_kbps}k",
        "bufsize": f"{2 * out.max_kbps}k",
        "force_key_frames": f"expr:gte(t,n_forced*{out.gop_seconds:g})",
    }
    if out.bt709_tags:
        args.update(colorspace="bt709", color_primaries="bt709", color_trc="bt709", color_range="tv")
    if with_audio:
        args.update({"c:a": "aac", "b:a": f"{out.audio_kbps}k", **opts.audio()})
    args.update(f="mp4", movflags="+frag_keyframe+empty_moov+default_base_moof", pkt_size=MIB)
    return args


def hdr_rendition(video: Stream, audio: Stream | None, out: HdrOut, opts: OutputOptions) -> Output:
    """The HDR rendition from a copy of the untouched decoded video: HEVC Main 10 (``hvc1``, as Apple
    players want it), the source's transfer, primaries and matrix tags (HDR10 metadata passed on by
    ffmpeg), AAC, fragmented MP4."""
    import ffmpeg

    c = out.color
    s = video.filter("scale", out.width, out.height, flags="bicubic").filter("setsar", "1")
    s = s.filter("format", "yuv420p10le")
    args: dict[str, Any] = {
        **opts.common(),
        "c:v": "libx265",
        "preset": out.preset,
        "crf": out.crf,
        "tag:v": "hvc1",
        "x265-params": f"log-level=error:keyint={max(1, round(out.gop_seconds * 30))}",
        "color_trc": c.transfer,
        "color_primaries": c.primaries or "bt2020",
        "colorspace": c.matrix or "bt2020nc",
        "color_range": "tv",
    }
    streams = [s]
    if audio is not None and out.audio_kbps:
        streams.append(audio)
        args.update({"c:a": "aac", "b:a": f"{out.audio_kbps}k", **opts.audio()})
    args.update(f="mp4", movflags="+frag_keyframe+empty_moov+default_base_moof", pkt_size=MIB)
    return ffmpeg.output(*streams, _url(out.path), **args)


def renditions(
    video: Stream,
    audio: Stream | None,
    videos: Sequence[VideoOut],
    *,
    fps_cap: float | None,
    opts: OutputOptions,
) -> list[Output]:
    """The rendition ladder from one copy of the decoded video (the scaling cascade), with audio."""
    import ffmpeg

    outputs = []
    for out, scaled in zip(videos, _ladder(video, videos, fps_cap), strict=True):
        with_audio = audio is not None and bool(out.audio_kbps)
        streams = [scaled, audio] if with_audio else [scaled]
        args = video_rendition_args(out, opts, with_audio=with_audio)
        outputs.append(ffmpeg.output(*streams, _url(out.path), **args))
    return outputs


def audio_args(out: AudioOut, opts: OutputOptions) -> dict[str, Any]:
    """Output options of one audio file (AAC in fragmented MP4 with 2 s fragments, Opus, MP3)."""
    args: dict[str, Any] = {**opts.common(), **opts.audio(), "b:a": f"{out.kbps}k", "pkt_size": MIB}
    if out.codec == "aac":
        args.update({"c:a": "aac", "f": "mp4", "movflags": "+empty_moov+default_base_moof"})
        args["frag_duration"] = 2_000_000
    elif out.codec == "opus":
        args.update({"c:a": "libopus", "f": out.container})
    else:
        args.update({"c:a": "libmp3lame", "f": "mp3", "id3v2_version": 0, "write_xing": 1})
    return args


def audio_file(audio: Stream, out: AudioOut, opts: OutputOptions) -> Output:
    """One audio file from the decoded audio (through ``loudnorm`` when asked)."""
    import ffmpeg

    if out.loudnorm_lufs is not None:
        audio = audio.filter("loudnorm", I=f"{out.loudnorm_lufs:g}", TP="-1.5", LRA="11")
        audio = audio.filter("aresample", 48000)
    return ffmpeg.output(audio, _url(out.path), **audio_args(out, opts))


def frames_args(count: int, opts: OutputOptions) -> dict[str, Any]:
    """Output options of numbered BMP frames in a local folder (poster candidates, storyboard tiles)."""
    return {
        **opts.common(),
        "f": "image2",
        "c:v": "bmp",
        "frames:v": count,
        "start_number": 0,
        "fps_mode": "passthrough",
    }


def poster_frames(video: Stream, poster: PosterOut, opts: OutputOptions) -> Output:
    """The poster candidates from one copy of the decoded video."""
    import ffmpeg

    p = poster
    s = video.filter("setpts", "PTS-STARTPTS")
    # candidates at start, start+1 s, ...; with first_frame also the first frame, at once (a
    # fallback, and it lets ffmpeg's progress start before the poster time is reached)
    pick = f"gte(t,{p.start:.3f}+selected_n)"
    if p.first_frame:
        pick = f"eq(selected_n,0)+gte(t,{p.start:.3f}+selected_n-1)"
    s = s.filter("select", pick)
    if p.width and p.height:
        s = s.filter("scale", p.width, p.height, flags="lanczos")
    else:
        s = s.filter("scale", "trunc(iw*sar/2+0.5)*2", "ih", flags="lanczos")
    s = s.filter("setsar", "1").filter("format", "bgr24")
    frames = p.count + p.first_frame
    return ffmpeg.output(s, _url(p.folder / "poster%02d.bmp"), **frames_args(frames, opts))


def storyboard_tiles(video: Stream, sprite: SpriteOut, opts: OutputOptions) -> Output:
    """The storyboard tiles from one copy of the decoded video."""
    import ffmpeg

    sp = sprite
    # the first frame at or after each multiple of the interval; unlike fps=1/N this emits the
    # first tile at once, so ffmpeg's progress (the slowest output's time) keeps moving
    s = video.filter("setpts", "PTS-STARTPTS").filter("select", f"gte(t,selected_n*{sp.interval:g})")
    s = s.filter("scale", sp.tile_width, sp.tile_height, flags="bicubic").filter("setsar", "1")
    s = s.filter("format", "bgr24")
    return ffmpeg.output(s, _url(sp.folder / "tile%05d.bmp"), **frames_args(sp.max_tiles, opts))


def command(ff: Ffmpeg, outputs: Sequence[Output]) -> list[str]:
    """The ffmpeg command line writing ``outputs`` (one process), with -progress on stdout."""
    import ffmpeg

    if not outputs:
        raise ValueError("nothing to encode")
    graph = ffmpeg.merge_outputs(*outputs) if len(outputs) > 1 else outputs[0]
    args: list[str] = graph.compile(cmd=ff.path, overwrite_output=False)
    globals_ = ["-hide_banner", "-nostdin", "-y", "-v", "error", "-progress", "pipe:1", "-nostats"]
    return [args[0], *globals_, *args[1:]]


@dataclass(frozen=True)
class HlsOut:
    """An HLS rendition remuxed (no re-encode) from a fragmented MP4 rendition."""

    mp4: Path  # input: a local copy of the rendition just written (never read back from the mount)
    segments: Path | Sink  # the single fMP4 file with every segment (byte ranges)
    playlist: Path  # the media playlist, written by ffmpeg into a local folder
    seconds: float


def hls_args(items: Sequence[HlsOut], ff: Ffmpeg) -> list[str]:
    """One ffmpeg process that remuxes every rendition into HLS: ``-c copy``, VOD, single file, so
    each file is written once and nothing is renamed (temp_file/live playlists would rename)."""
    import ffmpeg

    outputs = []
    for item in items:
        inp = ffmpeg.input(_url(item.mp4), f="mov", pkt_size=MIB, protocol_whitelist="file")
        outputs.append(
            ffmpeg.output(
                inp,
                _url(item.playlist),
                c="copy",
                f="hls",
                hls_segment_type="fmp4",
                hls_playlist_type="vod",
                hls_flags="single_file",
                hls_time=f"{item.seconds:g}",
                hls_segment_filename=_url(item.segments),
            )
        )
    graph = ffmpeg.merge_outputs(*outputs) if len(outputs) > 1 else outputs[0]
    args: list[str] = graph.compile(cmd=ff.path, overwrite_output=False)
    return [args[0], "-hide_banner", "-nostdin", "-y", "-v", "error", *args[1:]]


# --------------------------------------------------------------------------------------------- run


@dataclass
class RunResult:
    """What a finished ffmpeg run reported."""

    seconds_done: float  # media time processed (last out_time of -progress)
    stderr_tail: str


def run(
    args: list[str],
    *,
    deadline: Deadline = NO_DEADLINE,
    margin: float = 1.5,
    expected_seconds: float | None = None,
    video_fps: float | None = None,
    on_progress: Callable[[float, str], None] | None = None,
    env: Mapping[str, str] | None = None,
    io: StorageIO | None = None,
    local: Path | None = None,
    sinks: Sequence[Sink] = (),
) -> RunResult:
    """Run ffmpeg through :func:`runner.run`, stopping it ``margin`` seconds before ``deadline``.

    ``on_progress(fraction, message)`` is called from -progress output (fraction of
    ``expected_seconds``).  ffmpeg's ``out_time`` is the time of its slowest output (a poster taken
    at 10 % holds it at 0 until then), so with ``video_fps`` the first video output's frame count
    counts too.  Raises like :func:`runner.run` (BadInputError when ffmpeg blames the input); what
    ffmpeg wrote stays for the engine to delete.

    With ``io`` and ``local`` (the job's scratch folder), what ffmpeg read and wrote outside ``local``
    (on the mount) is added to the job's ledger, from ffmpeg's own per-file I/O statistics
    (:func:`count_io`).

    ``sinks``: outputs the worker writes (:class:`Sink`): each piped one gets a pipe whose write end
    ffmpeg inherits (its placeholder in ``args`` becomes ``pipe:<fd>``) and a thread that writes what
    comes out to its final path; staged ones are copied there after ffmpeg exited 0.  An error of a
    sink (a full workspace) is raised in preference to ffmpeg's own (which then is a broken pipe).
    """
    piped = [k for k in sinks if k.staged is None]
    for k in piped:
        if args.count(k.url) != 1:
            raise ValueError(f"the command does not name the output {k.name} once ({k.url})")
    write_ends: list[int] = []
    drains: list[_Drain] = []
    try:
        for k in piped:
            r, w = os.pipe()
            write_ends.append(w)
            with contextlib.suppress(OSError):  # fewer wake-ups; the default (64 KiB) works too
                fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, MIB)
            args = [f"pipe:{w}" if a == k.url else a for a in args]
            drains.append(_Drain(k, r))
            drains[-1].start()
        result = _run(
            args, write_ends, deadline, margin, expected_seconds, video_fps, on_progress, env, io, local
        )
    except BaseException as exc:
        _end_drains(write_ends, drains, exc)
        raise
    _end_drains(write_ends, drains, None)
    _copy_staged([k for k in sinks if k.staged is not None])
    return result


def _end_drains(write_ends: list[int], drains: list[_Drain], failure: BaseException | None) -> None:
    """ffmpeg has exited: close our write ends (the threads see the end of their pipes), wait for the
    threads, and raise the first sink error (the cause of ffmpeg's failure, if it failed)."""
    for w in write_ends:
        os.close(w)
    write_ends.clear()
    for d in drains:
        d.join()
    error = next((d.error for d in drains if d.error is not None), None)
    if error is not None and (failure is None or isinstance(failure, Exception)):  # not over a Ctrl-C
        raise error from failure


def _run(
    args: list[str],
    pass_fds: Sequence[int],
    deadline: Deadline,
    margin: float,
    expected_seconds: float | None,
    video_fps: float | None,
    on_progress: Callable[[float, str], None] | None,
    env: Mapping[str, str] | None,
    io: StorageIO | None,
    local: Path | None,
) -> RunResult:
    done = [0.0]
    report = None
    if io is not None and local is not None:
        report = local / f"ffreport-{os.getpid()}-{next(_REPORTS)}.log"
        env = {**os.environ, **(env or {}), "FFREPORT": f"file={_report_escape(report)}:level=40"}

    def read_progress(line: str) -> None:
        key, _, value = line.strip().partition("=")
        if key == "out_time_us" and value.lstrip("-").isdigit():
            done[0] = max(done[0], int(value) / 1e6)
        elif key == "frame" and video_fps and value.isdigit():
            done[0] = max(done[0], int(value) / video_fps)
        elif key == "progress" and on_progress is not None:
            frac = 1.0 if value == "end" else done[0] / expected_seconds if expected_seconds else 0.0
            with contextlib.suppress(Exception):  # a broken callback must not stop the parsing
                on_progress(min(frac, 1.0), f"{done[0]:.1f} s")

    try:
        result = runner.run(
            args,
            program=PROGRAM,
            deadline=deadline.earlier(margin),
            env=env,
            on_stdout=read_progress,
            bad_input=_BAD_INPUT,
            grace=min(1.0, max(margin / 2, 0.1)),
            pass_fds=pass_fds,
        )
    except JobTimeoutError as exc:
        raise JobTimeoutError(f"{exc} ({done[0]:.1f} s of media done)", detail=exc.detail) from None
    if report is not None and io is not None and local is not None:
        count_io(report, args, io, local)  # the report stays in the scratch folder, removed with it
    return RunResult(done[0], result.tail)


_REPORTS = itertools.count()
# [AVIOContext @ 0x...] Statistics: 86056 bytes read, 0 seeks  |  ... 1618 bytes written, 2 seeks, 4 writeouts
_STATS = re.compile(r"Statistics: (\d+) bytes (read|written), (\d+) seeks(?:, (\d+) writeouts)?")
_INPUT_FILE = re.compile(r"\] Input file #\d+ \((.*)\):\s*$")


def _report_escape(path: Path) -> str:
    """``FFREPORT``'s value is ``key=value:...`` with ``%`` expanded: escape both in the path."""
    return str(path).replace("\\", "\\\\").replace(":", "\\:").replace("%", "%%")


def _local_path(url: str) -> Path:
    return Path(url[5:] if url.startswith("file:") else url)


def count_io(report: Path, args: Sequence[str], io: StorageIO, local: Path) -> None:
    """Add to ``io`` what one ffmpeg run read and wrote outside ``local``, from its report (level
    verbose): each file's AVIOContext logs its bytes and, for a written file, its writeouts (one
    write() each).  An input's statistics follow its "Input file #N (url)" summary; its reads are its
    bytes in ``pkt_size`` (1 MiB) pieces, plus its seeks (each may have cost one shorter read).  A
    written file is known by its size among the command's output files outside ``local`` (a file
    whose figures are not found counts as 1 MiB writes)."""
    try:
        text = report.read_text(errors="replace")
    except OSError:
        log.warning("ffmpeg left no report (%s): its mount I/O is not in the ledger", report)
        return
    local_dir = str(local.resolve()) + "/"
    written: list[tuple[int, int]] = []  # (bytes, writeouts)
    url: str | None = None
    for line in text.splitlines():
        if m := _INPUT_FILE.search(line):
            url = m.group(1)
        elif m := _STATS.search(line):
            n = int(m.group(1))
            if m.group(2) == "written":
                written.append((n, int(m.group(4) or 1)))
            elif url is not None:
                if not str(_local_path(url).resolve()).startswith(local_dir):
                    io.reads_in_pieces(n, MIB, int(m.group(3)))
                url = None
    inputs = {args[i + 1] for i, a in enumerate(args[:-1]) if a == "-i"}
    seen: set[Path] = set()
    for arg in args[1:]:
        if arg in inputs or arg.startswith("-"):
            continue
        path = _local_path(arg)
        if path in seen or not path.is_absolute() or str(path.resolve()).startswith(local_dir):
            continue
        seen.add(path)
        with contextlib.suppress(OSError):
            st = path.stat()
            if not stat.S_ISREG(st.st_mode):
                continue
            match = next((w for w in written if w[0] == st.st_size), None)
            if match is not None:
                written.remove(match)
                io.wrote(match[0], match[1])
            else:
                io.wrote(st.st_size, max(1, -(-st.st_size // MIB)))
            io.new_file()


def require_outputs(paths: Sequence[Path | Sink], stderr_tail: str) -> None:
    """ffmpeg can exit 0 without writing an output (e.g. no packet decoded): that is a bad input."""
    empty = [
        p for p in paths if (p.size == 0 if isinstance(p, Sink) else not p.is_file() or p.stat().st_size == 0)
    ]
    if empty:
        raise BadInputError(
            f"ffmpeg produced no data for {len(empty)} output(s): {runner.last_line(stderr_tail)}",
            detail=stderr_tail,
        )
