"""OCR settings, limits, missing dependencies, multi-page TIFFs: clean per-file outcomes."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from conftest import SAMPLES, add_samples, assert_only_failure_record
from ocr_helpers import cer, engine, text_of, words_json
from PIL import Image, ImageStat

from config.errors import ConfigError, MissingDependencyError
from config.rules import Rule
from config.settings import load_settings
from pipelines.core.engine import rules_in_force
from pipelines.core.registry import load_registry
from pipelines.tools import tesseract


def test_env_is_built_from_settings(tmp_path: Path) -> None:
    s = load_settings(workspace=tmp_path)
    assert s.ocr.omp_thread_limit == 1
    env = tesseract.build_env(omp_thread_limit=s.ocr.omp_thread_limit, tmpdir=tmp_path)
    assert env["OMP_THREAD_LIMIT"] == "1" and env["TMPDIR"] == str(tmp_path)
    env = tesseract.build_env(omp_thread_limit=3, tmpdir=tmp_path)
    assert env["OMP_THREAD_LIMIT"] == "3"


def test_tesseract_probe() -> None:
    assert tuple(int(x) for x in tesseract.version().split(".")[:2]) >= (4, 1)
    assert {"eng", "osd"} <= tesseract.languages()
    assert tesseract.check(["eng"], need_osd=True) == tesseract.version()


def test_missing_language_pack_names_the_package() -> None:
    with pytest.raises(MissingDependencyError, match=r"chi_sim.*tesseract-ocr-chi-sim"):
        tesseract.check(["eng", "chi_sim"], need_osd=False)


def test_missing_language_fails_the_file_and_says_why(workspace: Path) -> None:
    (rel,) = add_samples(workspace, "page.png")
    res = engine(workspace, languages=["eng", "chi_sim"]).process(rel, pipelines=["ocr"])
    assert res.status == "failed" and res.error_kind == "dependency"
    assert "tesseract-ocr-chi-sim" in str(res.error)
    assert not (workspace / "processed").exists()


def test_missing_tesseract_names_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no tesseract on PATH
    tesseract.locate.cache_clear()
    tesseract.version.cache_clear()
    try:
        with pytest.raises(MissingDependencyError, match="tesseract-ocr"):
            tesseract.check(["eng"], need_osd=True)
    finally:
        tesseract.locate.cache_clear()
        tesseract.version.cache_clear()


@pytest.mark.parametrize(
    ("ocr", "message"),
    [
        ({"languages": ["osd"]}, "ocr.languages"),
        ({"languages": ["eng", "eng"]}, "ocr.languages"),
        ({"languages": ["../eng"]}, "ocr.languages"),
        ({"outputs": []}, "ocr.outputs"),
        ({"outputs": ["docx"]}, "ocr.outputs"),
        ({"dpi": 20}, "ocr.dpi"),
        ({"orientation": "sometimes"}, "ocr.orientation"),
        ({"wrkers": 2}, "ocr.wrkers"),
    ],
)
def test_bad_ocr_settings_name_the_key(tmp_path: Path, ocr: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_settings(workspace=tmp_path, ocr=ocr)


def test_recursion_guard_knows_ocr_outputs(tmp_path: Path) -> None:
    """A sidecar searchable PDF (x.pdf.ocr.searchable.pdf) would be picked up again by a *.pdf rule."""
    rules = [Rule(include=["*.pdf"], pipelines=["ocr"])]
    layout = {"preset": "sidecar"}
    reg = load_registry()
    rules_in_force(
        load_settings(workspace=tmp_path, rules=rules, layout=layout, ocr={"outputs": ["txt", "json"]}), reg
    )
    with pytest.raises(ConfigError, match=r"searchable\.pdf"):
        rules_in_force(
            load_settings(workspace=tmp_path, rules=rules, layout=layout, ocr={"outputs": ["txt", "pdf"]}),
            reg,
        )


def test_password_is_not_in_the_fingerprint(tmp_path: Path) -> None:
    from pipelines.builtin.ocr.pipeline import OcrPipeline

    a = load_settings(workspace=tmp_path, ocr={"password": "secret-1"})
    b = load_settings(workspace=tmp_path, ocr={"password": "secret-2"})
    fa = OcrPipeline().settings_fingerprint(a)
    assert fa == OcrPipeline().settings_fingerprint(b) and "secret" not in repr(fa)
    assert "secret-1" not in a.model_dump_json()


def test_max_pages(workspace: Path) -> None:
    (rel,) = add_samples(workspace, "document.pdf")
    res = engine(workspace, max_pages=1).process(rel, pipelines=["ocr"])
    assert res.status == "failed" and res.error_kind == "bad_input"
    assert "2 pages, over ocr.max_pages = 1" in str(res.error)


def test_max_page_pixels(workspace: Path) -> None:
    (rel,) = add_samples(workspace, "scan.pdf")
    res = engine(workspace, max_page_pixels=2_000_000).process(rel, pipelines=["ocr"])
    assert res.status == "failed" and "over ocr.max_page_pixels" in str(res.error)
    assert_only_failure_record(workspace, rel, res.error)


def test_page_timeout_is_a_clean_failure(workspace: Path) -> None:
    (rel,) = add_samples(workspace, "scan.pdf")
    res = engine(workspace, page_timeout_seconds=0.05).process(rel, pipelines=["ocr"])
    assert res.status == "failed" and res.error_kind == "timeout_page"
    assert "took longer than" in str(res.error) and "page 1" in str(res.error)
    assert_only_failure_record(workspace, rel, res.error)


@pytest.mark.parametrize("seconds", [0.0, 0.3])
def test_job_deadline_stops_ocr(workspace: Path, seconds: float) -> None:
    """Before OCR or while tesseract runs: a retryable timeout, never the per-page-limit failure."""
    (rel,) = add_samples(workspace, "page.png")
    res = engine(workspace).process(rel, pipelines=["ocr"], deadline=time.monotonic() + seconds)
    assert res.status == "timeout" and res.retryable and res.error_kind == "timeout", res
    assert_only_failure_record(workspace, rel, res.error)


def test_multipage_tiff_every_page(workspace: Path, corpus: Path) -> None:
    """Three pages of different kinds (grey, bilevel, upside down) in one TIFF: each read, in order."""
    page = Image.open(SAMPLES / "page.png").convert("L")
    photo = Image.open(corpus / "ocr" / "phototest.tif")
    flipped = page.rotate(180)
    (workspace / "in").mkdir()
    page.save(
        workspace / "in/pages.tif", save_all=True, append_images=[photo, flipped], compression="tiff_lzw"
    )
    res = engine(workspace).process("in/pages.tif", pipelines=["ocr"])
    doc = words_json(workspace, res)
    assert [p["page"] for p in doc["pages"]] == [1, 2, 3]
    assert [p["rotation"] for p in doc["pages"]] == [0, 0, 180]
    assert [(p["width"], p["height"]) for p in doc["pages"]] == [(2000, 1400), (640, 480), (2000, 1400)]
    truth = (SAMPLES / "page.txt").read_text()
    gold = (corpus / "ocr" / "phototest.gold.txt").read_text()
    texts = text_of(workspace, res).split("\f")
    assert len(texts) == 3
    assert cer(texts[0], truth) <= 0.02 and cer(texts[1], gold) <= 0.02 and cer(texts[2], truth) <= 0.02


def test_images_the_ocr_pipeline_refuses(workspace: Path) -> None:
    (workspace / "in").mkdir()
    (workspace / "in/notes.png").write_bytes(b"not a PNG at all")
    shutil.copy(SAMPLES / "clip.mp4", workspace / "in/clip.mp4")
    eng = engine(workspace)
    bad = eng.process("in/notes.png", pipelines=["ocr"])
    assert bad.status == "failed" and bad.error_kind == "bad_input"
    skipped = eng.process("in/clip.mp4", pipelines=["ocr"])
    assert skipped.status == "skipped" and "not a PDF or an image" in str(skipped.reason)


def test_text_layer_pages_do_not_keep_their_layout() -> None:
    """pdfplumber caches each page's pdfminer layout (~3 MB a page of dense text) for as long as the
    document is open: a 500-page text PDF peaked at 1.65 GB (bench/bench_memory.py) until every page was
    closed after its text was taken (then 270 MB)."""
    from pipelines.media.pdf import PdfDocument

    with PdfDocument((SAMPLES / "document.pdf").read_bytes()) as doc:
        layer = doc.text_layer(0)
        assert layer.readable_chars > 100
        page = doc.plumber.pages[0]
        assert not hasattr(page, "_layout"), "the page's layout is still cached"


def test_a_page_over_the_limit_is_left_out_and_named(workspace: Path) -> None:
    """Page 1 a 2600x2600 pt drawing (117 Mpx at 300 dpi: over ocr.max_page_pixels and over
    limits.max_image_pixels, with the default settings), page 2 text, page 3 a scan: page 1 is left out
    and named in the manifest and in the text; pages 2 and 3 are read; the thumbnail is page 2."""
    from fpdf import FPDF

    pdf = FPDF(unit="pt")
    pdf.add_page(format=(2600, 2600))
    pdf.set_fill_color(30, 60, 200)
    pdf.rect(0, 0, 2600, 2600, style="F")
    pdf.add_page(format="A4")
    pdf.set_font("Helvetica", size=14)
    second = "Second page. The quick brown fox jumps over the lazy dog. " * 5
    pdf.multi_cell(0, 20, second)
    pdf.add_page(format="A4")
    pdf.image(str(SAMPLES / "page.png"), x=0, y=0, w=595)
    (workspace / "in").mkdir()
    (workspace / "in/mixed.pdf").write_bytes(bytes(pdf.output()))

    res = engine(workspace).process("in/mixed.pdf")  # the default rules: thumbnails and ocr
    assert res.status == "ok", res
    doc = json.loads((workspace / str(res.manifest)).read_text())
    left = {x["pipeline"]: x for x in doc["left_out"]}
    assert set(left) == {"ocr", "thumbnails"} and {x["page"] for x in left.values()} == {1}
    assert "10833x10833 = 117353889 pixels, over ocr.max_page_pixels = 60000000" in left["ocr"]["reason"]
    assert "over limits.max_image_pixels = 100000000" in left["thumbnails"]["reason"]

    texts = text_of(workspace, res).split("\f")
    assert len(texts) == 3
    assert texts[0].startswith("[page 1 left out: ") and "ocr.max_page_pixels" in texts[0]
    assert cer(texts[1], second) <= 0.02
    assert cer(texts[2], (SAMPLES / "page.txt").read_text()) <= 0.02
    pages = words_json(workspace, res)["pages"]
    assert [p["method"] for p in pages] == ["left-out", "text-layer", "ocr"]
    assert pages[0]["words"] == [] and pages[0]["warnings"] == [left["ocr"]["reason"]]

    thumbs = [o for o in doc["outputs"] if o["pipeline"] == "thumbnails"]
    assert len(thumbs) == 6 and {o["meta"]["page"] for o in thumbs} == {2}
    with Image.open(workspace / "processed/thumbnails/medium/in/mixed.pdf.jpg") as im:
        assert abs(im.width / im.height - 595.28 / 841.89) < 0.01  # A4 page 2, not the square page 1
        assert min(ImageStat.Stat(im.convert("RGB")).mean) > 200  # white paper, not page 1's blue
