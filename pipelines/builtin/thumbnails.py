"""The ``thumbnails`` pipeline: every configured size, in every configured format, from one decode."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from config.settings import Settings
from pipelines.spec import Job, Pipeline, PlannedOutput, SourceInfo

if TYPE_CHECKING:
    from pipelines.media.imaging import Rendered

MEDIA_TYPES = {"jpeg": ("jpg", "image/jpeg"), "webp": ("webp", "image/webp"), "png": ("png", "image/png")}
IMAGE_INPUTS = {
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "jpe": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "gif": "image/gif",
    "tif": "image/tiff",
    "tiff": "image/tiff",
    "bmp": "image/bmp",
    "avif": "image/avif",
    "heic": "image/heic",
    "heif": "image/heif",
    "mpo": "image/mpo",
    "ico": "image/vnd.microsoft.icon",
    "hif": "image/heif",  # camera HEIF (Canon, Fujifilm): pi-heif
    "avifs": "image/avif",  # AVIF sequence: the first frame
    "apng": "image/apng",  # animated PNG: the first frame
    "jp2": "image/jp2",  # JPEG 2000 (OpenJPEG, inside Pillow)
    "j2k": "image/jp2",  # JPEG 2000 codestream
    "tga": "image/x-tga",
    "qoi": "image/qoi",
}
DOCUMENT_INPUTS = {"pdf": "application/pdf"}  # first page, rendered by pypdfium2 (see pipelines.media.pdf)
DOCUMENT_SUFFIXES = frozenset(DOCUMENT_INPUTS)
PDF_NATIVE_DPI = 300  # a PDF page's "native" size, which thumbnails never exceed, is its size at 300 dpi


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
            PlannedOutput(size, MEDIA_TYPES[fmt][0], MEDIA_TYPES[fmt][1])
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
            job.write_output(self.name, size, blob, ext=MEDIA_TYPES[fmt][0], width=w, height=h, **meta)


def _pdf_thumbnails(job: Job, data: bytes) -> tuple[Rendered, int]:
    """The first page of a PDF within limits through the same sizes, formats and encoders as images,
    and its number; the pages passed over before it are named in the manifest."""
    from pipelines.media.pdf import pdf_thumbnails

    t, ocr = job.settings.thumbnails, job.settings.ocr  # the PDF password is the one OCR uses
    found = pdf_thumbnails(
        data,
        boxes=dict(t.sizes),
        formats=list(t.formats),
        dpi=PDF_NATIVE_DPI,
        password=ocr.password.get_secret_value() if ocr.password else None,
        quality={"jpeg": t.jpeg_quality, "webp": t.webp_quality, "png": 0},
        progressive=t.progressive,
        background=t.background,
        max_pixels=job.settings.limits.max_image_pixels,
    )
    for page, why in found.passed_over:
        job.leave_out("thumbnails", why, page=page)
    return found.rendered, found.page


def render_image(data: bytes, settings: Settings, suffix: str = "") -> Rendered:
    """Every configured thumbnail size and format of an encoded image (also used for video posters);
    ``suffix``: the source's (formats without a signature are tried only for theirs)."""
    from pipelines.media.imaging import render_thumbnails  # Pillow is imported only when a job needs it

    t = settings.thumbnails
    return render_thumbnails(
        data,
        boxes=dict(t.sizes),
        formats=list(t.formats),
        max_pixels=settings.limits.max_image_pixels,
        jpeg_quality=t.jpeg_quality,
        webp_quality=t.webp_quality,
        progressive=t.progressive,
        background=t.background,
        contrast_background=t.contrast_background if t.background_auto else None,
        suffix=suffix,
    )
