"""The ``video_thumbnails`` pipeline: a poster frame in the image-thumbnail sizes and formats, and a
storyboard sprite sheet with its WebVTT map, from the same ffmpeg decode as ``transcode``."""

from __future__ import annotations

from typing import Any, ClassVar

from config.settings import Settings
from pipelines.avjob import THUMBS, VIDEO_INPUTS, FfmpegPipeline
from pipelines.spec import PlannedOutput, SourceInfo
from pipelines.thumbnails import MEDIA_TYPES as IMAGE_TYPES


class VideoThumbnailPipeline(FfmpegPipeline):
    """Poster thumbnails (not a black frame) and a scrub-preview storyboard."""

    name: ClassVar[str] = "video_thumbnails"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "ffmpeg: poster frame in the thumbnail sizes, sprite sheet + WebVTT"
    makes: ClassVar[str] = THUMBS

    inputs: ClassVar[dict[str, str]] = VIDEO_INPUTS
    settings_section: ClassVar[str] = "transcode"

    def settings_fingerprint(self, settings: Settings) -> Any:
        t = settings.transcode
        keys = {"poster_fraction", "poster_seconds", "poster_candidates", "max_output_seconds"}
        keys |= {k for k in type(t).model_fields if k.startswith("sprite")}
        return {
            "thumbnails": settings.thumbnails.model_dump(mode="json"),
            "transcode": {k: getattr(t, k) for k in sorted(keys)},
            "max_image_pixels": settings.limits.max_image_pixels,
        }

    def plan(self, source: SourceInfo, settings: Settings) -> list[PlannedOutput]:
        th, t = settings.thumbnails, settings.transcode
        out = [
            PlannedOutput(size, IMAGE_TYPES[fmt][0], IMAGE_TYPES[fmt][1])
            for size in th.sizes
            for fmt in th.formats
        ]
        if t.sprite:
            out += [
                PlannedOutput("sprite", "jpg", "image/jpeg"),
                PlannedOutput("storyboard", "vtt", "text/vtt"),
            ]
        return out
