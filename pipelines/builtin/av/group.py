"""What the ffmpeg pipelines share: one probe and ONE ffmpeg process for every output they make.

``transcode`` and ``video_thumbnails`` are both :class:`FfmpegPipeline`; when both are selected for a
source the engine runs them as one group (:meth:`Pipeline.run_with`), so the source is read and decoded
once.  Each pipeline contributes a :class:`Branch` (its filter chains, its ffmpeg outputs, its finishing
step); this module only puts them together:

1. the source: if any pipeline of the group decodes the whole source (:meth:`FfmpegPipeline.
   decodes_whole_source`) and it is at most ``transcode.local_copy_max_bytes``, it is read once with
   1 MiB reads into the job's local scratch folder (probe and ffmpeg then cost no extra reads on the
   mount); bigger ones, and poster-only jobs (which seek), are read by ffmpeg straight from the mount;
2. probe (PyAV, bounded), limits: one :class:`Decode` that every pipeline builds its branch for;
3. :func:`command`: one input, one decode, the decoded video ``split`` into every branch's copies, the
   decoded audio into every branch that uses it; run with progress and the job deadline;
4. every output has data, then each branch's :meth:`Branch.finish` (transcode: completeness
   check, HLS remux and playlists; video_thumbnails: poster choice and sizes, storyboard).

Outputs are named through the job (``open_output`` via a :class:`~pipelines.tools.ffmpeg.Sink`,
``output_relpath``, ``output_url``), never by rendering the layout here: ffmpeg writes nothing on the
workspace itself, the worker writes what it hands over and hashes it on the way (docs/mount.md); on
any failure this module just raises and the engine deletes them.
"""

from __future__ import annotations

import contextlib
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from config.errors import BadInputError, MissingDependencyError
from config.logs import get_logger
from config.settings import Settings
from config.transcode import TranscodeSettings
from pipelines.builtin.av import plan as avplan
from pipelines.spec import Job, Pipeline
from pipelines.tools import ffmpeg as ff
from pipelines.tools.probe import MediaInfo, probe, pyav_version

log = get_logger(__name__)
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
    "mpg": "video/mpeg",  # MPEG-PS or an MPEG-1/2 elementary stream: the probe tells (mpeg / mpegvideo)
    "mpeg": "video/mpeg",
    "m2v": "video/mpeg",  # MPEG-2 video elementary stream
    "m1v": "video/mpeg",
    "vob": "video/dvd",  # DVD: MPEG-PS
    "3gp": "video/3gpp",  # phone video (H.263/MPEG-4/H.264 + AMR/AAC); mov demuxer
    "3g2": "video/3gpp2",
    "flv": "video/x-flv",
    "wmv": "video/x-ms-wmv",  # Windows Media (the asf demuxer)
    "asf": "video/x-ms-asf",
    "h264": "video/h264",  # raw H.264 / HEVC elementary streams (camera and encoder dumps)
    "264": "video/h264",
    "hevc": "video/h265",
    "h265": "video/h265",
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
    "mka": "audio/x-matroska",
    "m4b": "audio/mp4",  # audiobook: MP4 audio with chapters
    "amr": "audio/amr",  # voice notes (AMR-NB/WB)
    "ac3": "audio/ac3",
    "eac3": "audio/eac3",
    "spx": "audio/ogg",  # Speex in Ogg (ffmpeg's native Speex decoder)
}
VIDEO_SUFFIXES = frozenset(VIDEO_INPUTS)
HLG_NOMINAL_PEAK_NITS = 1000.0  # BT.2100's HLG reference display


@dataclass(frozen=True)
class Decode:
    """The one decode of a source that every branch of a group hangs off."""

    tool: ff.Ffmpeg
    path: Path  # what ffmpeg reads: the local copy, or the source on the mount
    info: MediaInfo
    whole: bool  # some pipeline of the group decodes the whole source: no branch may seek
    whitelist: tuple[str, ...]  # demuxers ffmpeg may open
    limit_seconds: float | None  # transcode.max_output_seconds
    threads: int
    tonemap: ff.ToneMap | None = None  # an HDR source made SDR once, before the split (hdr_to_sdr)


@dataclass(frozen=True)
class Seek:
    """A branch that needs a few frames only asks ffmpeg to start at the keyframe at or before ``at``."""

    at: float
    seconds: float  # media time decoded after it (what progress counts up to)


class Branch(ABC):
    """One pipeline's part of the shared ffmpeg run, built for one :class:`Decode` by
    :meth:`FfmpegPipeline.branch`.  :func:`run_group` uses, in this order:

    1. :attr:`video_taps`, :attr:`uses_audio`, :attr:`seek` - the input and the shared ``split``;
    2. :meth:`outputs` - its filter chains and ffmpeg outputs, given its copies of the decoded streams
       (built with the wrapper's functions by output kind, :mod:`pipelines.tools.ffmpeg`);
    3. :attr:`frame_rate` - progress: ffmpeg counts the frames of its first video output, so a branch
       with a frame rate goes first in the command;
    4. :attr:`files` - the workspace files ffmpeg writes for it: each must hold data after the run;
    5. :meth:`finish` - after ffmpeg exited 0, in command order: checks, and what is made in Python.
    """

    @property
    def video_taps(self) -> int:
        """Copies of the decoded video it filters (0: it needs no video)."""
        return 0

    @property
    def hdr_taps(self) -> int:
        """Copies of the decoded video it takes before tone mapping (an HDR rendition of an HDR source);
        they follow its :attr:`video_taps` copies in :meth:`outputs`."""
        return 0

    @property
    def uses_audio(self) -> bool:
        """Whether any of its outputs takes the decoded audio."""
        return False

    @property
    def seek(self) -> Seek | None:
        """An input seek; only a branch of a group that does not decode the whole source asks one."""
        return None

    @property
    def frame_rate(self) -> float | None:
        """Frame rate of its first video output, if ffmpeg's frame count measures its progress."""
        return None

    @property
    def files(self) -> list[Path | ff.Sink]:
        """Its outputs: workspace files ffmpeg writes, or :class:`~pipelines.tools.ffmpeg.Sink` s it
        hands to the worker (written and hashed on the way); each must hold data after the run
        (scratch files are not listed)."""
        return []

    @abstractmethod
    def outputs(
        self, video: Sequence[ff.Stream], audio: ff.Stream | None, opts: ff.OutputOptions
    ) -> list[ff.Output]:
        """Its ffmpeg outputs: ``video`` holds its :attr:`video_taps` copies of the decoded video (SDR:
        tone-mapped if the source is HDR), then its :attr:`hdr_taps` untouched copies; ``audio`` the
        decoded audio (None if it did not ask or the source has none)."""

    @abstractmethod
    def finish(self, job: Job, result: ff.RunResult) -> None:
        """After ffmpeg: check what it wrote, write what is made in Python; raise to fail the job."""


class FfmpegPipeline(Pipeline):
    """Base of the ffmpeg pipelines: they run together, sharing one probe and one decode."""

    def check(self, settings: Settings) -> None:
        ff.decodable_codecs(ff.locate(settings.transcode.ffmpeg_binary))  # asked here: cached with the rest
        pyav_version()

    def tool_versions(self) -> dict[str, str]:
        versions = {}
        if found := ff.located():
            versions["ffmpeg"] = f"{found.version} ({found.origin})"
        with contextlib.suppress(MissingDependencyError):
            versions["pyav"] = pyav_version()
        return versions

    # the kinds of stream its outputs take: a stream of one of them left out is named in its manifest
    stream_types: ClassVar[frozenset[str]] = frozenset({"video", "audio"})

    @abstractmethod
    def decodes_whole_source(self, settings: Settings) -> bool:
        """Whether its branch needs every frame (False: a few frames, which ffmpeg may seek to)."""

    @abstractmethod
    def branch(self, job: Job, decode: Decode) -> Branch | None:
        """Its part of the shared ffmpeg run for this source, or None if it makes nothing of it (e.g.
        ``video_thumbnails`` of an audio-only file).  May raise BadInputError."""

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


def run_group(job: Job, pipelines: Sequence[FfmpegPipeline]) -> None:
    """Produce the outputs of ``pipelines`` for one source with one probe and one ffmpeg run."""
    t = job.settings.transcode
    decode = _probe_source(job, pipelines)
    info = decode.info
    branches = _branches(job, pipelines, decode)
    if not branches:
        return  # e.g. video_thumbnails alone on an audio-only file: nothing to make
    branches.sort(key=lambda b: b.frame_rate is None)  # ffmpeg counts its first video output's frames
    args = command(decode, branches)
    log.debug("ffmpeg command: %s", args)
    seek = _seek(decode, branches)
    expected = seek.seconds if seek else avplan.output_seconds(info.duration, decode.limit_seconds)

    def progress(fraction: float, message: str) -> None:
        for p in pipelines:
            job.report_progress(p.name, fraction * 0.97, message)

    files = [f for b in branches for f in b.files]
    result = ff.run(
        args,
        deadline=job.deadline,
        margin=t.deadline_margin_seconds,
        expected_seconds=expected,
        video_fps=branches[0].frame_rate,
        on_progress=progress,
        io=job.io,
        local=job.scratch_dir,
        sinks=[f for f in files if isinstance(f, ff.Sink)],
    )
    ff.require_outputs(files, result.stderr_tail)
    job.deadline.check("writing posters and playlists")
    for b in branches:
        b.finish(job, result)
    for p in pipelines:
        job.report_progress(p.name, 1.0, "done")


def _probe_source(job: Job, pipelines: Sequence[FfmpegPipeline]) -> Decode:
    """Steps 1-2: the source ffmpeg reads (local copy or the mount), probed and checked against the
    limits, as the one :class:`Decode` every branch is built for."""
    t = job.settings.transcode
    tool = ff.locate(t.ffmpeg_binary)
    if job.source.size == 0:
        raise BadInputError("empty file (0 bytes)")
    whole = any(p.decodes_whole_source(job.settings) for p in pipelines)
    src = _source_for_ffmpeg(job, whole)
    job.deadline.check("probing")
    # a poster-only job lets ffmpeg rotate and size the frame: no first-frame decode in the probe
    on_mount = not src.is_relative_to(job.scratch_dir)
    info = probe(
        src,
        allowed_demuxers=t.allowed_demuxers(),
        probe_bytes=t.probe_bytes,
        rotation=whole,
        io=job.io if on_mount else None,
        decodable=ff.decodable_codecs(tool),
    )
    avplan.check_limits(info, t)
    if info.video is None and info.audio is None:
        if info.left_out:  # e.g. an audio-only file in a codec ffmpeg cannot decode
            raise BadInputError(f"no stream can be decoded: {'; '.join(map(str, info.left_out))}")
        raise BadInputError("no audio or video stream")
    return Decode(
        tool,
        src,
        info,
        whole,
        tuple(t.allowed_demuxers()),
        t.max_output_seconds,
        t.threads,
        tonemap_for(info, t),
    )


def _branches(job: Job, pipelines: Sequence[FfmpegPipeline], decode: Decode) -> list[Branch]:
    """Each pipeline's branch for ``decode`` (none for a pipeline that makes nothing of this source);
    the streams left out of the command are recorded in the manifests of the pipelines that take them."""
    info = decode.info
    branches = []
    for p in pipelines:
        if (b := p.branch(job, decode)) is None:
            continue
        branches.append(b)
        for stream in info.left_out:  # not mapped into the command: the outputs are made without it
            if stream.type in p.stream_types:
                job.leave_out(
                    p.name, stream.reason, stream=stream.index, type=stream.type, codec=stream.codec
                )
    return branches


def command(decode: Decode, branches: Sequence[Branch]) -> list[str]:
    """ONE ffmpeg command for ``branches``: one input, one decode, the decoded video split into every
    branch's copies, in branch order, and the decoded audio to every branch that uses it."""
    info, seek = decode.info, _seek(decode, branches)
    inp = ff.Input(
        decode.path,
        info.demuxer,
        decode.whitelist,
        seek=seek.at if seek else None,
        limit_seconds=None if seek else decode.limit_seconds,
    )
    wants_audio = info.audio is not None and any(b.uses_audio for b in branches)
    taps, hdr, audio = ff.open_input(
        inp,
        video=info.video.index if info.video else None,
        video_taps=sum(b.video_taps for b in branches),
        audio=info.audio.index if wants_audio and info.audio else None,
        tonemap=decode.tonemap,
        hdr_taps=sum(b.hdr_taps for b in branches),
    )
    a = info.audio
    opts = ff.OutputOptions(
        threads=decode.threads,
        stereo=a is not None and a.channels > 2,
        channels=a.channels if a is not None and not a.layout_known else None,
    )
    outputs = []
    for b in branches:
        mine, taps = taps[: b.video_taps], taps[b.video_taps :]
        raw, hdr = hdr[: b.hdr_taps], hdr[b.hdr_taps :]
        outputs += b.outputs([*mine, *raw], audio, opts)
    return ff.command(decode.tool, outputs)


def tonemap_for(info: MediaInfo, t: TranscodeSettings) -> ff.ToneMap | None:
    """How to make this source SDR: None for SDR sources (their commands do not change) or when
    ``transcode.hdr_to_sdr`` is off.  PQ's peak is the stream's MaxCLL / mastering peak, else
    ``hdr_peak_nits``; HLG is relative, with a nominal 1,000 cd/m2 peak (BT.2100)."""
    v = info.video
    if v is None or v.color.hdr is None or not t.hdr_to_sdr:
        return None
    c = v.color
    peak = (c.peak_nits or t.hdr_peak_nits) if c.hdr == "pq" else HLG_NOMINAL_PEAK_NITS
    return ff.ToneMap(
        transfer=c.transfer or "",
        primaries=c.primaries or "bt2020",
        matrix=c.matrix or "bt2020nc",
        full_range=c.full_range,
        reference_white_nits=t.hdr_reference_white_nits,
        peak_nits=peak,
    )


def _seek(decode: Decode, branches: Sequence[Branch]) -> Seek | None:
    seeks = [b.seek for b in branches if b.seek is not None]
    if not seeks:
        return None
    if decode.whole or len(seeks) > 1:  # a seek would cut the others' outputs short
        raise ValueError("an input seek only for a single branch that needs a few frames")
    return seeks[0]


def _source_for_ffmpeg(job: Job, whole: bool) -> Path:
    """A local copy of a small source (read once, 1 MiB reads) or the source on the mount."""
    t = job.settings.transcode
    if whole and job.source.size <= t.local_copy_max_bytes:
        data = job.read_source()
        suffix = job.source.suffix if re.fullmatch(r"[a-z0-9]{1,8}", job.source.suffix) else "bin"
        local = job.scratch_dir / f"source.{suffix}"
        local.write_bytes(data)
        return local
    return job.source_path()
