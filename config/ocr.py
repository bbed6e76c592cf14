"""Settings of the ``ocr`` pipeline (tesseract, pdfplumber)."""

from __future__ import annotations

from pydantic import Field

from config.base import Section


class OcrSettings(Section):
    """OCR of images and PDFs."""

    languages: list[str] = Field(
        default=["eng"], description="tesseract language packs, e.g. ['eng', 'deu']."
    )
