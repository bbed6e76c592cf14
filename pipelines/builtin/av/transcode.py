"""The ``transcode`` pipeline: an H.264/AAC ladder (fragmented MP4, optional HLS) for videos, AAC/Opus/
MP3 (and an optional loudness-normalised AAC) for audio, all from one ffmpeg decode.

Its :class:`TranscodeBranch` hangs the rendition ladder (a scaling cascade) off one copy of the decoded
video and maps the decoded audio into the renditions and audio files.  Its finishing step checks that
the source was not cut short, then, with ``hls = true``, runs a second, cheap ffmpeg process: a remux
(``-c copy``, no decode) of each MP4 rendition into one fMP4 file per rung, and writes the playlists.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from config.errors import BadInputError
from config.settings import Settings
from pipelines.builtin.av import plan as avplan
from pipelines.builtin.av.group import (
    AUDIO_INPUTS,
    VIDEO_INPUTS,
    VIDEO_SUFFIXES,
    Branch,
    Decode,
    FfmpegPipeline,
)
from pipelines.spec import Job, PlannedOutput, SourceInfo
from pipelines.tools import ffmpeg as ff

NAME = "transcode"
MEDIA_TYPES = {
    "mp4": "video/mp4",
    "m4a": "audio/mp4",
    "webm": "audio/webm",
    "ogg": "audio/ogg",
    "mp3": "audio/mpeg",
    "m3u8": "application/vnd.apple.mpegurl",
    "m4s": "video/iso.segment",
}
# A source counts as cut short when it decodes to less than its declared duration minus the larger of
# these (containers round, drop a last partial page, or count priming samples).
PARTIAL_SLACK_SECONDS, PARTIAL_SLACK_FRACTION = 2.0, 0.15
# containers whose muxer seeks back to finish the file (WebM: cues, duration; MP3: the Xing header):
# ffmpeg writes them to the scratch folder; the others (fragmented MP4, Ogg) stream through a pipe
SEEKING_CONTAINERS = frozenset({"webm", "mp3"})


class TranscodePipeline(FfmpegPipeline):
    """Renditions and audio files with ffmpeg (see docs/transcode.md)."""

    name: ClassVar[str] = NAME
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "ffmpeg: H.264/AAC ladder (fMP4, HLS), AAC/Opus/MP3 audio, one decode"
    warm_modules: ClassVar[tuple[str, ...]] = ("pipelines.tools.probe", "av")

    inputs: ClassVar[dict[str, str]] = {**VIDEO_INPUTS, **AUDIO_INPUTS}
    settings_section: ClassVar[str] = "transcode"

    def settings_fingerprint(self, settings: Settings) -> Any:
        t = settings.transcode.model_dump(mode="json")
        t.pop("ffmpeg_binary", None)
        return {"transcode": t}

    def plan(self, source: SourceInfo, settings: Settings) -> list[PlannedOutput]:
        t = settings.transcode
        variants = t.audio_variants()
        if source.suffix in VIDEO_SUFFIXES:
            # a "video" file may hold only audio (an .mp4 voice memo): then the audio outputs are made
            variants = t.rendition_variants() + variants
        return [PlannedOutput(v, ext, _media_type(v, ext)) for v, ext in variants]

    def decodes_whole_source(self, settings: Settings) -> bool:
        return True

    def branch(self, job: Job, decode: Decode) -> TranscodeBranch | None:
        t = job.settings.transcode
        v, a = decode.info.video, decode.info.audio
        b = TranscodeBranch(decode)
        if v is not None:
            fps = min(v.fps or 30.0, t.max_fps)
            if v.fps and v.fps > t.max_fps + 0.01:
                b.fps_cap = t.max_fps
            sizes = avplan.ladder(v, t.ladder)
            for size in sizes:
                level = avplan.h264_level(size.width, size.height, fps)
                # the HLS remux reads a local copy of the rendition, not the mount
                local = job.scratch_dir / f"rendition-{size.rung.name}.mp4" if t.hls else None
                mp4 = sink(job, size.rung.name, "mp4", copy=local)
                b.renditions.append(
                    ff.VideoOut(
                        width=size.width,
                        height=size.height,
                        path=mp4,
                        crf=t.crf,
                        preset=t.preset,
                        profile=t.profile,
                        level=level,
                        max_kbps=size.rung.max_kbps,
                        gop_seconds=t.gop_seconds,
                        audio_kbps=t.video_audio_kbps if a is not None else None,
                        bt709_tags=decode.tonemap is not None,
                    )
                )
                if local is not None:  # remuxed from the MP4 afterwards: no second encode
                    b.hls.append(
                        _hls_rung(job, size, local, avplan.codecs_string(t.profile, level, a is not None))
                    )
            if t.hdr_rung and v.color.hdr is not None and sizes:
                top = sizes[0]
                b.hdr = ff.HdrOut(
                    width=top.width,
                    height=top.height,
                    path=sink(job, "hdr", "mp4"),
                    crf=t.hdr_crf,
                    preset=t.preset,
                    color=v.color,
                    gop_seconds=t.gop_seconds,
                    audio_kbps=t.video_audio_kbps if a is not None else None,
                )
        if a is not None and (v is None or t.audio_from_video):
            for kind in t.audio_outputs:
                kbps = {"aac": t.aac_kbps, "opus": t.opus_kbps, "mp3": t.mp3_kbps}[kind]
                container = {"aac": "mp4", "mp3": "mp3"}.get(kind, t.opus_container)
                ext = t.audio_ext(kind)
                out = sink(job, kind, ext, staged=container in SEEKING_CONTAINERS)
                b.audios.append(ff.AudioOut(kind, container, kbps, out))
            if t.loudnorm:
                out = sink(job, "loudnorm", "m4a")
                b.audios.append(ff.AudioOut("aac", "mp4", t.aac_kbps, out, loudnorm_lufs=t.loudnorm_lufs))
        return b if b.renditions or b.audios or b.hdr else None


def sink(job: Job, variant: str, ext: str, *, staged: bool = False, copy: Path | None = None) -> ff.Sink:
    """A planned output that ffmpeg hands to the worker, which writes it at its final path and hashes it
    on the way (nothing is read back from the mount): through a pipe, or, for a container whose muxer
    seeks back to finish the file, ``staged`` in the scratch folder and copied after the run."""
    return ff.Sink(
        job.output_relpath(NAME, variant, ext=ext),
        functools.partial(job.open_output, NAME, variant, ext=ext),
        staged=job.scratch_dir / f"staged-{variant}.{ext}" if staged else None,
        copy=copy,
    )


@dataclass(frozen=True)
class HlsRung:
    """One HLS rendition: remuxed from its MP4 after the encode."""

    size: avplan.RungSize
    codecs: str  # RFC 6381, for the master playlist
    remux: ff.HlsOut


@dataclass
class TranscodeBranch(Branch):
    """The ladder and the audio files, from one copy of the decoded video and the decoded audio."""

    decode: Decode
    renditions: list[ff.VideoOut] = field(default_factory=list)
    audios: list[ff.AudioOut] = field(default_factory=list)
    hls: list[HlsRung] = field(default_factory=list)
    fps_cap: float | None = None  # only when the source is faster than transcode.max_fps
    hdr: ff.HdrOut | None = None  # transcode.hdr_rung, for an HDR source

    @property
    def video_taps(self) -> int:
        return 1 if self.renditions else 0

    @property
    def hdr_taps(self) -> int:
        return 1 if self.hdr is not None else 0

    @property
    def uses_audio(self) -> bool:
        hdr_audio = self.hdr is not None and bool(self.hdr.audio_kbps)
        return bool(self.audios) or any(v.audio_kbps for v in self.renditions) or hdr_audio

    @property
    def frame_rate(self) -> float | None:
        v = self.decode.info.video
        if not self.renditions or v is None or not v.fps:
            return None
        return min(v.fps, self.fps_cap) if self.fps_cap else v.fps

    @property
    def files(self) -> list[Path | ff.Sink]:
        hdr = [self.hdr.path] if self.hdr is not None else []
        return [v.path for v in self.renditions] + hdr + [a.path for a in self.audios]

    def outputs(
        self, video: Sequence[ff.Stream], audio: ff.Stream | None, opts: ff.OutputOptions
    ) -> list[ff.Output]:
        outputs = []
        if self.renditions:
            outputs += ff.renditions(video[0], audio, self.renditions, fps_cap=self.fps_cap, opts=opts)
        if self.hdr is not None:
            outputs.append(ff.hdr_rendition(video[self.video_taps], audio, self.hdr, opts))
        for out in self.audios:
            assert audio is not None  # uses_audio asked for it; the branch has audio files only with audio
            outputs.append(ff.audio_file(audio, out, opts))
        return outputs

    def finish(self, job: Job, result: ff.RunResult) -> None:
        if not job.settings.transcode.allow_partial:
            self._check_complete(result)
        if self.hls:
            write_hls(job, self.decode.tool, self.hls)

    def _check_complete(self, result: ff.RunResult) -> None:
        """A truncated upload decodes to far less than its container declares: fail it, do not publish."""
        expected = avplan.output_seconds(self.decode.info.duration, self.decode.limit_seconds)
        if expected is None:
            return
        if result.seconds_done < expected - max(PARTIAL_SLACK_SECONDS, PARTIAL_SLACK_FRACTION * expected):
            raise BadInputError(
                f"source is truncated or damaged: decoded {result.seconds_done:.2f} s of the "
                f"{expected:.2f} s it declares (set transcode.allow_partial to accept such files)",
                detail=result.stderr_tail,
            )


def _hls_rung(job: Job, size: avplan.RungSize, mp4: Path, codecs: str) -> HlsRung:
    variant = f"hls-{size.rung.name}"
    playlist = job.scratch_dir / f"{variant}.m3u8"
    segments = sink(job, variant, "m4s")  # a pipe: no name of ours reaches the HLS muxer ('%v')
    remux = ff.HlsOut(mp4, segments, playlist, job.settings.transcode.hls_segment_seconds)
    return HlsRung(size, codecs, remux)


def write_hls(job: Job, tool: ff.Ffmpeg, rungs: Sequence[HlsRung]) -> None:
    """The second ffmpeg run (``-c copy``: no decode, no encode) remuxes each MP4 rendition into one
    fMP4 file per rung; its media playlists (written to the scratch folder) are rewritten with the
    segment URL relative to the layout, then the master playlist is written."""
    t = job.settings.transcode
    remux = [r.remux for r in rungs]
    ff.run(
        ff.hls_args(remux, tool),
        deadline=job.deadline,
        margin=t.deadline_margin_seconds,
        io=job.io,
        local=job.scratch_dir,
        sinks=[r.segments for r in remux if isinstance(r.segments, ff.Sink)],
    )
    ff.require_outputs([r.segments for r in remux] + [r.playlist for r in remux], "")
    entries = []
    master_rel = job.output_relpath(NAME, "hls", ext="m3u8")
    for r in rungs:
        variant = f"hls-{r.size.rung.name}"
        media_rel = job.output_relpath(NAME, variant, ext="m3u8")
        seg_url = job.output_url(NAME, variant, ext="m4s", referrer=media_rel)
        text, peak, _ = avplan.rewrite_media_playlist(r.remux.playlist.read_text(), seg_url)
        job.write_output(NAME, variant, text.encode(), ext="m3u8", width=r.size.width, height=r.size.height)
        media_url = job.output_url(NAME, variant, ext="m3u8", referrer=master_rel)
        entries.append((media_url, peak, r.size.width, r.size.height, r.codecs))
    job.write_output(NAME, "hls", avplan.master_playlist(entries).encode(), ext="m3u8")


def _media_type(variant: str, ext: str) -> str:
    if ext == "m4a":
        return "audio/mp4"
    if ext == "webm" and variant != "opus":
        return "video/webm"
    return MEDIA_TYPES[ext]
