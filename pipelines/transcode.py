"""The ``transcode`` pipeline: an H.264/AAC ladder (fragmented MP4, optional HLS) for videos, AAC/Opus/
MP3 (and an optional loudness-normalised AAC) for audio, all from one ffmpeg decode."""

from __future__ import annotations

from typing import Any, ClassVar

from config.settings import Settings
from pipelines.avjob import AUDIO_INPUTS, MEDIA_TYPES, TRANSCODE, VIDEO_INPUTS, VIDEO_SUFFIXES, FfmpegPipeline
from pipelines.spec import PlannedOutput, SourceInfo


class TranscodePipeline(FfmpegPipeline):
    """Renditions and audio files with ffmpeg (see docs/transcode.md)."""

    name: ClassVar[str] = "transcode"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "ffmpeg: H.264/AAC ladder (fMP4, HLS), AAC/Opus/MP3 audio, one decode"
    makes: ClassVar[str] = TRANSCODE

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


def _media_type(variant: str, ext: str) -> str:
    if ext == "m4a":
        return "audio/mp4"
    if ext == "webm" and variant != "opus":
        return "video/webm"
    return MEDIA_TYPES[ext]
