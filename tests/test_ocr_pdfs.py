"""Every PDF of the shared corpus: correct outputs (text layers read, scans OCR'd) or a clean failure."""

from __future__ import annotations

import shutil
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from conftest import CORPUS
from ocr_helpers import cer, deep_page_tree_pdf, engine, text_of, words_json

from pipelines.core.engine import SourceResult

PDFS = CORPUS / "pdfs"
TEXT_LAYER = [
    "federal-register-2020-17221.pdf",
    "habibi-rotated.pdf",
    "issue-1054-example.pdf",
    "nics-background-checks-2015-11-rotated.pdf",
    "nics-background-checks-2015-11.pdf",
    "pr-138-example.pdf",  # encrypted with an empty user password: opens without one
]
SCANNED = [
    "c02-22.pdf",
    "cardinal.pdf",
    "issue-203-decimalize.pdf",
    "malformed-from-issue-932.pdf",
    "rotated_skew.pdf",
]
FAILS = {
    "empty.pdf": "empty file",
    "invalid.pdf": "not a readable PDF",
    "password-example.pdf": "encrypted and needs a password",
    "r6-user-password.pdf": "encrypted and needs a password",
}


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, SourceResult]]:
    if not CORPUS.is_dir():
        pytest.skip(f"shared corpus not found at {CORPUS} (it lives beside the repo as ../shared/corpus)")
    ws = tmp_path_factory.mktemp("pdf-ws")
    (ws / "in").mkdir()
    names = sorted(p.name for p in PDFS.glob("*.pdf"))
    assert sorted([*TEXT_LAYER, *SCANNED, *FAILS]) == names, "a corpus PDF is not covered by this test"
    for name in names:
        shutil.copy(PDFS / name, ws / "in" / name)
    # 150 dpi keeps the ~10 scanned pages quick; accuracy at 300 dpi is test_ocr_accuracy's job
    eng = engine(ws, dpi=150, outputs=["txt", "json", "pdf"])
    return ws, {name: eng.process(f"in/{name}", pipelines=["ocr", "thumbnails"]) for name in names}


@pytest.mark.parametrize("name", TEXT_LAYER)
def test_text_layer_pdfs_are_not_ocrd(corpus_run: tuple[Path, dict[str, SourceResult]], name: str) -> None:
    ws, results = corpus_run
    doc = words_json(ws, results[name])
    assert doc["pages"] and all(p["method"] == "text-layer" for p in doc["pages"])
    assert all(p["text"].strip() and p["words"] for p in doc["pages"])
    assert any("thumbnails/thumb/" in o for o in results[name].outputs)


@pytest.mark.parametrize("name", SCANNED)
def test_scanned_pdfs_are_ocrd(corpus_run: tuple[Path, dict[str, SourceResult]], name: str) -> None:
    ws, results = corpus_run
    doc = words_json(ws, results[name])
    assert doc["pages"] and all(p["method"] == "ocr" for p in doc["pages"])
    assert all(len(p["text"].strip()) >= 20 and p["words"] for p in doc["pages"]), name
    assert any("thumbnails/thumb/" in o for o in results[name].outputs)
    # the searchable PDF has every page, and its invisible text is the OCR text
    (searchable,) = [ws / o for o in results[name].outputs if "/searchable/" in o]
    pdf = pdfium.PdfDocument(searchable)
    assert len(pdf) == len(doc["pages"])
    for i, ocr in enumerate(doc["pages"]):
        # pdfium reads text in content order, so skewed and multi-column layers read as written
        # (malformed-from-issue-932 keeps its own 9-character text layer beside ours)
        assert cer(pdf[i].get_textpage().get_text_range(), ocr["text"]) <= 0.1, (name, ocr["page"])
        w, h = pdf[i].get_size()
        assert (w > h) == (ocr["width"] > ocr["height"])  # upright, as it was OCR'd
    pdf.close()


@pytest.mark.parametrize("name", sorted(FAILS))
def test_broken_and_locked_pdfs_fail_cleanly(
    corpus_run: tuple[Path, dict[str, SourceResult]], name: str
) -> None:
    ws, results = corpus_run
    res = results[name]
    assert res.status == "failed" and res.error_kind == "bad_input", res
    assert FAILS[name] in str(res.error)
    assert res.outputs == [] and res.manifest is None
    assert not [p for p in ws.rglob(f"*{name}*") if p.is_file() and p.parent.name != "in"]


def test_rotate_attribute_comes_out_upright(corpus_run: tuple[Path, dict[str, SourceResult]]) -> None:
    ws, results = corpus_run
    plain = words_json(ws, results["nics-background-checks-2015-11.pdf"])["pages"][0]
    turned = words_json(ws, results["nics-background-checks-2015-11-rotated.pdf"])["pages"][0]
    assert turned["rotation"] == 270 and plain["rotation"] == 0
    assert (turned["width"], turned["height"]) == (plain["width"], plain["height"]) == (1008, 612)
    assert cer(turned["text"], plain["text"]) <= 0.01
    assert turned["text"].startswith("NICS Firearm Background Checks")
    # habibi: /Rotate 90, 180, 270, 360 pages all read the same
    texts = [p["text"] for p in words_json(ws, results["habibi-rotated.pdf"])["pages"]]
    assert len(set(texts)) == 1 and "habibi" in texts[0]


def test_scans_at_any_angle_are_turned_upright(corpus_run: tuple[Path, dict[str, SourceResult]]) -> None:
    ws, results = corpus_run
    pages = words_json(ws, results["cardinal.pdf"])["pages"]
    assert [p["rotation"] for p in pages] == [0, 270, 180, 90]
    for p in pages:  # the same brochure page, baked in at four angles: every copy reads alike
        assert cer(p["text"], pages[0]["text"]) <= 0.05
        assert "LinnSequencer" in p["text"]
        assert p["width"] < p["height"]  # portrait once upright (pages 2 and 4 are landscape sheets)
    skew = words_json(ws, results["rotated_skew.pdf"])["pages"][0]
    assert "LinnSequencer" in skew["text"]


def test_unsupported_script_is_flagged(corpus_run: tuple[Path, dict[str, SourceResult]]) -> None:
    """Chinese with only 'eng' installed: text comes out (garbage), and each page says why."""
    ws, results = corpus_run
    pages = words_json(ws, results["issue-203-decimalize.pdf"])["pages"]
    assert all(p["confidence"] < 60 for p in pages)
    assert all(p["script"] == "Han" for p in pages)
    assert all(any("chi_sim" in w for w in p["warnings"]) for p in pages)
    assert text_of(ws, results["issue-203-decimalize.pdf"]).strip()


@pytest.mark.parametrize(
    ("name", "password", "expect"),
    [
        ("password-example.pdf", "test", None),
        ("r6-user-password.pdf", "asdfzxcv", "pdfencryptiontest"),
        ("pr-138-example.pdf", "not-its-password", "Home Loan"),  # empty user password still opens it
        ("password-example.pdf", "wrong", "does not open it"),
    ],
)
def test_passwords(workspace: Path, corpus: Path, name: str, password: str, expect: str | None) -> None:
    (workspace / "in").mkdir()
    shutil.copy(corpus / "pdfs" / name, workspace / "in" / name)
    res = engine(workspace, password=password, outputs=["txt", "json", "pdf"]).process(
        f"in/{name}", pipelines=["ocr", "thumbnails"]
    )
    if expect == "does not open it":
        assert res.status == "failed" and expect in str(res.error) and res.outputs == []
        return
    assert res.status == "ok", res
    doc = words_json(workspace, res)
    assert all(p["method"] == "text-layer" for p in doc["pages"])
    if expect:
        assert expect in text_of(workspace, res)
    assert len([o for o in res.outputs if "/thumbnails/" in o]) == 6


def test_text_comes_from_pdfium_where_pdfminer_cannot_read_the_pdf(workspace: Path) -> None:
    """pdfminer recurses past Python's limit on a page tree 1,000 levels deep: the page's text layer
    is read with pdfium's text API instead (not OCR'd), with word boxes in points from the top-left."""
    (workspace / "deep.pdf").write_bytes(deep_page_tree_pdf(1000, "Hello deep page tree"))
    res = engine(workspace).process("deep.pdf", pipelines=["ocr"])
    assert res.status == "ok", res
    assert text_of(workspace, res) == "Hello deep page tree\n"
    (page,) = words_json(workspace, res)["pages"]
    assert page["method"] == "text-layer" and (page["width"], page["height"]) == (612, 792)
    assert [w["text"] for w in page["words"]] == ["Hello", "deep", "page", "tree"]
    x0, top, x1, bottom = page["words"][0]["bbox"]
    assert abs(x0 - 72) < 3 and 60 < top < bottom < 100 and x1 > x0  # baseline at y = 700 of 792
