"""PDF first-page thumbnails: the image thumbnail sizes and formats, rendered upright, clean failures."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from conftest import add_samples, failure_records, files_but_failure_records
from ocr_helpers import deep_page_tree_pdf, engine
from PIL import Image, ImageOps


def expected_fit(src: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    scale = min(box[0] / src[0], box[1] / src[1], 1.0)
    return round(src[0] * scale), round(src[1] * scale)


def test_first_page_thumbnails_match_image_sizes(workspace: Path) -> None:
    (rel,) = add_samples(workspace, "document.pdf")
    res = engine(workspace).process(rel, pipelines=["thumbnails"])
    assert res.status == "ok", res
    assert len(res.outputs) == 6
    native = (round(595.28 * 300 / 72), round(841.89 * 300 / 72))  # A4 at 300 dpi
    for size, box in {"thumb": (150, 150), "medium": (800, 600), "large": (1920, 1080)}.items():
        for ext, fmt in (("jpg", "JPEG"), ("webp", "WEBP")):
            with Image.open(workspace / f"processed/thumbnails/{size}/in/document.pdf.{ext}") as im:
                assert im.format == fmt
                w, h = im.size
                ew, eh = expected_fit(native, box)
                assert abs(w - ew) <= 1 and abs(h - eh) <= 1, (size, im.size)
                grey = ImageOps.grayscale(im)
                # the bold title sits in the top-left; the bottom half of page 1 is blank paper
                top = grey.crop((0, 0, w // 2, h // 12))
                bottom = grey.crop((0, h // 2, w, h))
                assert top.getextrema()[0] < 100 and bottom.getextrema()[0] > 200


def test_rotated_page_thumbnail_is_upright(workspace: Path, corpus: Path) -> None:
    (workspace / "in").mkdir()
    shutil.copy(corpus / "pdfs/nics-background-checks-2015-11-rotated.pdf", workspace / "in/r.pdf")
    shutil.copy(corpus / "pdfs/issue-1054-example.pdf", workspace / "in/crop.pdf")
    eng = engine(workspace)
    assert eng.process("in/r.pdf", pipelines=["thumbnails"]).status == "ok"
    assert eng.process("in/crop.pdf", pipelines=["thumbnails"]).status == "ok"
    with Image.open(workspace / "processed/thumbnails/medium/in/r.pdf.jpg") as im:
        assert im.height > im.width  # /Rotate 90 on a landscape MediaBox: shown as portrait
    with Image.open(workspace / "processed/thumbnails/medium/in/crop.pdf.jpg") as im:
        assert abs(im.width / im.height - 595 / 842) < 0.01  # the crop box, not the 2920x2225 poster


def test_locked_and_broken_pdfs_fail_cleanly(workspace: Path, corpus: Path) -> None:
    (workspace / "in").mkdir()
    shutil.copy(corpus / "pdfs/password-example.pdf", workspace / "in/locked.pdf")
    (workspace / "in/empty.pdf").write_bytes(b"")
    eng = engine(workspace)
    errors = {}
    for name, why in (("locked.pdf", "encrypted"), ("empty.pdf", "empty file")):
        res = eng.process(f"in/{name}", pipelines=["thumbnails"])
        assert res.status == "failed" and res.error_kind == "bad_input" and why in str(res.error)
        errors[f"in/{name}"] = res.error
    assert files_but_failure_records(workspace / "processed") == []
    assert {k: r["error"] for k, r in failure_records(workspace).items()} == errors
    res = engine(workspace, password="test").process("in/locked.pdf", pipelines=["thumbnails"])
    assert res.status == "ok" and len(res.outputs) == 6
    assert list(failure_records(workspace)) == ["in/empty.pdf"]  # the manifest replaced locked.pdf's record


def test_a_pdf_pdfminer_cannot_read_still_gets_its_thumbnails(workspace: Path) -> None:
    """A page tree 1,000 levels deep sends pdfminer past Python's recursion limit; pdfium renders the
    page, and thumbnails never go through pdfminer."""
    import pdfplumber

    data = deep_page_tree_pdf(1000, "Deep page tree")
    with pytest.raises(Exception, match="recursion"), pdfplumber.open(io.BytesIO(data)) as pdf:
        len(pdf.pages)  # what the thumbnails failed on
    (workspace / "in").mkdir()
    (workspace / "in/deep.pdf").write_bytes(data)
    res = engine(workspace).process("in/deep.pdf", pipelines=["thumbnails"])
    assert res.status == "ok" and len(res.outputs) == 6, res
    with Image.open(workspace / "processed/thumbnails/medium/in/deep.pdf.jpg") as im:
        grey = ImageOps.grayscale(im)
        w, h = im.size
        assert (w, h) == expected_fit((round(612 * 300 / 72), round(792 * 300 / 72)), (800, 600))
        assert grey.crop((0, 0, w, h // 6)).getextrema()[0] < 100  # the line of text near the top
        assert grey.crop((0, h // 3, w, h)).getextrema()[0] > 200  # blank below
