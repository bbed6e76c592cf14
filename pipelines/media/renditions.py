"""Thumbnails as the ``thumbnails`` settings ask for them, for every pipeline that renders them.

What images we decode (:data:`IMAGE_INPUTS`), the output formats' extensions and media types
(:data:`OUTPUT_TYPES`) and the one mapping of ``settings.thumbnails`` to the arguments of
:func:`pipelines.media.imaging.render_thumbnails` (:func:`render_image`: image thumbnails, video posters)
and :func:`pipelines.media.pdf.pdf_thumbnails` (:func:`render_pdf`).  Light to import: Pillow and
pypdfium2 are imported only when something is rendered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from config.settings import Settings

if TYPE_CHECKING:
    from pipelines.media.imaging import Rendered
    from pipelines.media.pdf import PdfThumbnails

OUTPUT_TYPES = {"jpeg": ("jpg", "image/jpeg"), "webp": ("webp", "image/webp"), "png": ("png", "image/png")}
# every image suffix pipelines.media.imaging opens (its first frame): one list for thumbnails and OCR
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
PDF_NATIVE_DPI = 300  # a PDF page's "native" size, which thumbnails never exceed, is its size at 300 dpi


def render_image(data: bytes, settings: Settings, suffix: str = "") -> Rendered:
    """Every configured thumbnail size and format of an encoded image (also a video's poster frame);
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


def render_pdf(data: bytes, settings: Settings) -> PdfThumbnails:
    """Every configured thumbnail size and format of a PDF's first page within limits (the password is
    the one OCR uses); the pages passed over before it are in the result."""
    from pipelines.media.pdf import pdf_thumbnails

    t, ocr = settings.thumbnails, settings.ocr
    return pdf_thumbnails(
        data,
        boxes=dict(t.sizes),
        formats=list(t.formats),
        dpi=PDF_NATIVE_DPI,
        password=ocr.password.get_secret_value() if ocr.password else None,
        quality={"jpeg": t.jpeg_quality, "webp": t.webp_quality, "png": 0},
        progressive=t.progressive,
        background=t.background,
        max_pixels=settings.limits.max_image_pixels,
    )
