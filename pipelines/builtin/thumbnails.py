"""The ``thumbnails`` pipeline: every configured size, in every configured format, from one decode."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from config.settings import Settings
from pipelines.media.renditions import IMAGE_INPUTS, OUTPUT_TYPES, render_image, render_pdf
from pipelines.spec import Job, Pipeline, PlannedOutput, SourceInfo

if TYPE_CHECKING:
    from pipelines.media.imaging import Rendered

DOCUMENT_INPUTS = {"pdf": "application/pdf"}  # first page, rendered by pypdfium2 (see pipelines.media.pdf)
DOCUMENT_SUFFIXES = frozenset(DOCUMENT_INPUTS)


class ThumbnailPipeline(Pipeline):
    """Image thumbnails with Pillow: EXIF orientation applied, sRGB, alpha handled, never upscaled."""

    name: ClassVar[str] = "thumbnails"
    version: ClassVar[str] = "3"  # 2: manifests carry meta.thumbhash; 3: transparency by contrast
    description: ClassVar[str] = (
        "Image and PDF first-page thumbnails (Pillow, pypdfium2): sizes x formats, one decode"
    )
    # pipelines.media.imaging imports the Pillow plug-ins it opens and writes
    warm_modules: ClassVar[tuple[str, ...]] = (
        "pipelines.media.imaging",
        "pipelines.media.placeholder",
        "pi_heif",
    )

    inputs: ClassVar[dict[str, str]] = {**IMAGE_INPUTS, **DOCUMENT_INPUTS}
    settings_section: ClassVar[str] = "thumbnails"

    def tool_versions(self) -> dict[str, str]:
        import PIL

        versions = {"pillow": PIL.__version__}
        try:
            import pi_heif  # the HEIC/HEIF decoder (pipelines.media.imaging registers it on first use)

            versions.update({"pi-heif": pi_heif.__version__, "libheif": pi_heif.libheif_version()})
        except ImportError:
            pass
        return versions

    def settings_fingerprint(self, settings: Settings) -> Any:
        return {
            "thumbnails": settings.thumbnails.model_dump(mode="json"),
            "max_image_pixels": settings.limits.max_image_pixels,
        }

    def plan(self, source: SourceInfo, settings: Settings) -> list[PlannedOutput]:
        t = settings.thumbnails
        return [
            PlannedOutput(size, OUTPUT_TYPES[fmt][0], OUTPUT_TYPES[fmt][1])
            for size in t.sizes
            for fmt in t.formats
        ]

    def run(self, job: Job) -> None:
        data = job.read_source()
        job.deadline.check("decoding")
        extra: dict[str, Any] = {}
        if job.source.suffix in DOCUMENT_SUFFIXES:
            rendered, extra["page"] = _pdf_thumbnails(job, data)
        else:
            rendered = render_image(data, job.settings, suffix=job.source.suffix)
        job.deadline.check("writing thumbnails")
        for (size, fmt), (blob, (w, h)) in rendered.items():
            meta = {**extra, **rendered.meta(fmt)}
            job.write_output(self.name, size, blob, ext=OUTPUT_TYPES[fmt][0], width=w, height=h, **meta)


def _pdf_thumbnails(job: Job, data: bytes) -> tuple[Rendered, int]:
    """The first page of a PDF within limits, rendered as images are, and its number; the pages passed
    over before it are named in the manifest."""
    found = render_pdf(data, job.settings)
    for page, why in found.passed_over:
        job.leave_out("thumbnails", why, page=page)
    return found.rendered, found.page
