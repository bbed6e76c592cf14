"""Settings of the ``ocr`` pipeline (tesseract, pdfplumber, pypdfium2, pypdf)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from config.base import Section

OcrOutput = Literal["txt", "json", "pdf"]
# output kind -> (variant, extension, media type); the variant names the output in the layout
OUTPUTS: dict[str, tuple[str, str, str]] = {
    "txt": ("text", "txt", "text/plain; charset=utf-8"),
    "json": ("words", "json", "application/json"),
    "pdf": ("searchable", "pdf", "application/pdf"),
}
_LANG = re.compile(r"^[A-Za-z0-9_]+(?:/[A-Za-z0-9_]+)?$")


class OcrSettings(Section):
    """OCR of images and PDFs.  PDF pages with a usable text layer are read, not OCR'd."""

    languages: list[str] = Field(
        default=["eng"],
        description="tesseract language packs, e.g. ['eng', 'deu'] (Debian: tesseract-ocr-<lang>); "
        "every one must be installed or the pipeline is reported unavailable.",
    )
    outputs: list[OcrOutput] = Field(
        default=["txt", "json"],
        description="txt: the text (pages separated by form feeds); json: per page the method, text and "
        "words with confidence and box; pdf: a searchable PDF (page images with an invisible text layer; "
        "PDF pages that already have text are copied as they are).",
    )
    dpi: int = Field(default=300, ge=72, le=1200, description="Resolution PDF pages are rendered at for OCR.")
    orientation: Literal["auto", "always", "off"] = Field(
        default="auto",
        description="Page orientation (tesseract OSD): 'auto' runs OSD only when a first pass looks "
        "sideways or reads badly (upright pages pay nothing), 'always' on every page before OCR, "
        "'off' never.",
    )
    osd_min_confidence: float = Field(
        default=2.0, ge=0, description="Least OSD orientation confidence for a page to be rotated."
    )
    psm: int = Field(
        default=3,
        ge=1,
        le=13,
        description="tesseract page segmentation mode (3 = fully automatic; 6 = one uniform block).",
    )
    password: SecretStr | None = Field(
        default=None, description="Password for encrypted PDFs (user or owner password)."
    )
    text_layer_min_chars: int = Field(
        default=20,
        ge=1,
        description="A PDF page whose text layer has at least this many readable characters is "
        "extracted instead of OCR'd (so is a page with any readable text and no image).",
    )
    force_ocr: bool = Field(
        default=False,
        description="OCR every PDF page, even pages with a usable text layer (e.g. one known to be bad).",
    )
    max_pages: int = Field(default=500, ge=1, description="A document with more pages fails.")
    max_page_pixels: int = Field(
        default=60_000_000,
        ge=1,
        description="Largest page image OCR'd (width*height; a PDF page at the configured dpi).  A PDF "
        "page over it is left out (named in the manifest's left_out and by a marker in the text), the "
        "other pages are read; an image, or a PDF whose every page is over it, fails.",
    )
    page_timeout_seconds: float = Field(
        default=180, gt=0, description="Longest tesseract may spend on one page; longer fails the file."
    )
    omp_thread_limit: int = Field(
        default=1,
        ge=1,
        description="OMP_THREAD_LIMIT for each tesseract process (pages already run in parallel).",
    )
    workers: int = Field(
        default=0, ge=0, description="Pages OCR'd at once (tesseract processes); 0 = CPUs available."
    )
    tessdata_dir: str | None = Field(
        default=None, description="Folder of .traineddata files; default: tesseract's own."
    )

    @field_validator("languages")
    @classmethod
    def _check_languages(cls, v: list[str]) -> list[str]:
        if not v or len(set(v)) != len(v):
            raise ValueError("give one or more distinct language names")
        for lang in v:
            if not _LANG.match(lang) or lang == "osd":
                raise ValueError(f"{lang!r} is not a tesseract language name such as 'eng' or 'chi_sim'")
        return v

    @field_validator("outputs")
    @classmethod
    def _check_outputs(cls, v: list[str]) -> list[str]:
        if not v or len(set(v)) != len(v):
            raise ValueError("give one or more distinct outputs from txt, json, pdf")
        return v
