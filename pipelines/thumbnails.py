"""The ``thumbnails`` pipeline: every configured size, in every configured format, from one decode."""

from __future__ import annotations

from typing import Any, ClassVar

from config.settings import Settings
from pipelines.spec import Job, Pipeline, PlannedOutput, SourceInfo, check_deadline

MEDIA_TYPES = {"jpeg": ("jpg", "image/jpeg"), "webp": ("webp", "image/webp"), "png": ("png", "image/png")}
IMAGE_SUFFIXES = frozenset(
    {"jpg", "jpeg", "jpe", "png", "webp", "gif", "tif", "tiff", "bmp", "avif", "heic", "heif", "mpo", "ico"}
)


class ThumbnailPipeline(Pipeline):
    """Image thumbnails with Pillow: EXIF orientation applied, sRGB, alpha handled, never upscaled."""

    name: ClassVar[str] = "thumbnails"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "Image thumbnails (Pillow): sizes x formats, one decode, JPEG draft mode"

    def accepts(self, source: SourceInfo, settings: Settings) -> bool | str:
        return source.suffix in IMAGE_SUFFIXES or f"not an image file type (.{source.suffix})"

    def tool_versions(self) -> dict[str, str]:
        import PIL

        return {"pillow": PIL.__version__}

    def settings_fingerprint(self, settings: Settings) -> Any:
        return {
            "thumbnails": settings.thumbnails.model_dump(mode="json"),
            "max_image_pixels": settings.limits.max_image_pixels,
        }

    def plan(self, source: SourceInfo, settings: Settings) -> list[PlannedOutput]:
        t = settings.thumbnails
        return [
            PlannedOutput(size, MEDIA_TYPES[fmt][0], MEDIA_TYPES[fmt][1])
            for size in t.sizes
            for fmt in t.formats
        ]

    def run(self, job: Job) -> None:
        from pipelines.imaging import render_thumbnails  # Pillow is imported only when a job needs it

        t = job.settings.thumbnails
        data = job.read_source()
        check_deadline(job, "decoding")
        rendered = render_thumbnails(
            data,
            boxes=dict(t.sizes),
            formats=list(t.formats),
            max_pixels=job.settings.limits.max_image_pixels,
            jpeg_quality=t.jpeg_quality,
            webp_quality=t.webp_quality,
            progressive=t.progressive,
            background=t.background,
        )
        check_deadline(job, "writing thumbnails")
        for (size, fmt), (blob, (w, h)) in rendered.items():
            job.write_output(self.name, size, blob, ext=MEDIA_TYPES[fmt][0], width=w, height=h)
