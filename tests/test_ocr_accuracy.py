"""OCR accuracy against ground truth (real tesseract), orientation, text layers, searchable PDFs."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pdfplumber
import pytest
from conftest import CORPUS, SAMPLES
from ocr_helpers import cer, engine, outputs, text_of, words_json

from pipelines.core.engine import SourceResult

OCR = CORPUS / "ocr"
CASES = {
    # source name in the workspace: (file, ground truth, max CER)
    "phototest.tif": (OCR / "phototest.tif", OCR / "phototest.gold.txt", 0.02),
    "phototest-rotated-R.png": (OCR / "phototest-rotated-R.png", OCR / "phototest.gold.txt", 0.02),
    "eurotext.tif": (OCR / "eurotext.tif", OCR / "eurotext.txt", 0.10),
    "page.png": (SAMPLES / "page.png", SAMPLES / "page.txt", 0.02),
    "scan.pdf": (SAMPLES / "scan.pdf", SAMPLES / "scan.txt", 0.02),
    "document.pdf": (SAMPLES / "document.pdf", SAMPLES / "document.txt", 0.0),
}


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, SourceResult]]:
    if not CORPUS.is_dir():
        pytest.skip(f"shared corpus not found at {CORPUS} (it lives beside the repo as ../shared/corpus)")
    ws = tmp_path_factory.mktemp("ocr-ws")
    (ws / "in").mkdir()
    for name, (src, _, _) in CASES.items():
        shutil.copy(src, ws / "in" / name)
    eng = engine(ws, outputs=["txt", "json", "pdf"])
    return ws, {name: eng.process(f"in/{name}", pipelines=["ocr"]) for name in CASES}


@pytest.mark.parametrize("name", list(CASES))
def test_character_error_rate(processed: tuple[Path, dict[str, SourceResult]], name: str) -> None:
    ws, results = processed
    _, truth, limit = CASES[name]
    text = text_of(ws, results[name])
    rate = cer(text, truth.read_text(encoding="utf-8"))
    assert rate <= limit, f"{name}: CER {rate:.2%} > {limit:.0%}\n{text}"


def test_rotated_page_is_detected_and_reads_like_the_upright_one(
    processed: tuple[Path, dict[str, SourceResult]],
) -> None:
    ws, results = processed
    truth = (OCR / "phototest.gold.txt").read_text()
    upright, rotated = results["phototest.tif"], results["phototest-rotated-R.png"]
    assert cer(text_of(ws, rotated), truth) <= cer(text_of(ws, upright), truth) + 0.005
    (up_page,) = words_json(ws, upright)["pages"]
    (page,) = words_json(ws, rotated)["pages"]
    assert up_page["rotation"] == 0
    assert page["rotation"] == 270  # turned 270 degrees clockwise (90 counter-clockwise) to read
    # the words are in the coordinates of the upright page: landscape 640x480, lines run along x
    assert (page["width"], page["height"]) == (640, 480) == (up_page["width"], up_page["height"])
    long_words = [w for w in page["words"] if len(w["text"]) >= 4]
    assert all(w["bbox"][2] - w["bbox"][0] > w["bbox"][3] - w["bbox"][1] for w in long_words)


def test_text_layer_pages_are_extracted_not_ocrd(processed: tuple[Path, dict[str, SourceResult]]) -> None:
    ws, results = processed
    res = results["document.pdf"]
    assert text_of(ws, res) == (SAMPLES / "document.txt").read_text(encoding="utf-8")
    doc = words_json(ws, res)
    assert [p["method"] for p in doc["pages"]] == ["text-layer", "text-layer"]
    assert all(p["dpi"] is None for p in doc["pages"])  # nothing was rendered
    for page in doc["pages"]:
        assert page["unit"] == "pt" and page["confidence"] is None
        assert (round(page["width"]), round(page["height"])) == (595, 842)  # A4
        assert page["words"] and all(w["conf"] is None for w in page["words"])
        for w in page["words"]:
            x0, top, x1, bottom = w["bbox"]
            assert 0 <= x0 < x1 <= page["width"] and 0 <= top < bottom <= page["height"]
    assert doc["pages"][0]["words"][0]["text"] == "Quarterly"


def test_scanned_pdf_json(processed: tuple[Path, dict[str, SourceResult]]) -> None:
    ws, results = processed
    doc = words_json(ws, results["scan.pdf"])
    (page,) = doc["pages"]
    assert page["method"] == "ocr" and page["dpi"] == 200  # the scan's own resolution, not upsampled
    assert (round(page["width"]), round(page["height"])) == (612, 792)  # Letter, in points
    assert page["confidence"] > 80
    first = page["words"][0]
    assert first["text"] == "Minutes" and 0 <= first["conf"] <= 100
    x0, top, x1, bottom = first["bbox"]
    assert 0 < x0 < x1 < 306 and 0 < top < bottom < 200  # top-left quarter of the page, in points


def test_searchable_pdfs(processed: tuple[Path, dict[str, SourceResult]]) -> None:
    ws, results = processed
    for name in ("scan.pdf", "page.png", "phototest-rotated-R.png"):
        out = outputs(ws, results[name])["searchable"]
        truth = CASES[name][1].read_text(encoding="utf-8")
        with pdfplumber.open(out) as pdf:
            (page,) = pdf.pages
            assert page.images, f"{name}: the page image is missing"
            # the invisible text layer is found where the words are, and reads like the OCR text
            assert cer(page.extract_text(), truth) <= 0.05, name
            assert {c["text"] for c in page.chars} and all(
                c["non_stroking_color"] is not None for c in page.chars
            )
            if name == "phototest-rotated-R.png":
                assert page.width > page.height  # the page was turned upright
            if name == "scan.pdf":  # the source's own page; text sits on the words it transcribes
                assert (round(page.width), round(page.height)) == (612, 792)
                assert len(page.images) == 1 and page.images[0]["srcsize"] == (1700, 2200)
                assert out.stat().st_size < 1.2 * (SAMPLES / "scan.pdf").stat().st_size
                first = page.extract_words()[0]
                ocr_first = words_json(ws, results[name])["pages"][0]["words"][0]
                assert first["text"] == ocr_first["text"] == "Minutes"
                assert (
                    abs(first["x0"] - ocr_first["bbox"][0]) < 3
                    and abs(first["top"] - ocr_first["bbox"][1]) < 4
                )
    # document.pdf: text-layer pages are copied as they are
    out = outputs(ws, results["document.pdf"])["searchable"]
    with (
        pdfplumber.open(io.BytesIO(out.read_bytes())) as pdf,
        pdfplumber.open(SAMPLES / "document.pdf") as src,
    ):
        assert [p.extract_text() for p in pdf.pages] == [p.extract_text() for p in src.pages]
        assert not any(p.images for p in pdf.pages)


def test_manifest_lists_every_output(processed: tuple[Path, dict[str, SourceResult]]) -> None:
    import json

    ws, results = processed
    res = results["scan.pdf"]
    manifest = json.loads((ws / str(res.manifest)).read_text())
    kinds = {o["variant"]: o["media_type"] for o in manifest["outputs"]}
    assert kinds == {
        "text": "text/plain; charset=utf-8",
        "words": "application/json",
        "searchable": "application/pdf",
    }
    assert manifest["tools"]["tesseract"].startswith(("4.", "5."))
    assert {"pdfplumber", "pypdfium2", "pypdf"} <= set(manifest["tools"])
    assert all(o["meta"]["ocr_pages"] == 1 for o in manifest["outputs"])
