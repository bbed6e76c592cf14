"""Helpers for the OCR tests: an in-process engine, character error rate, output readers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rapidfuzz.distance import Levenshtein

from config.settings import load_settings
from pipelines.core.engine import Engine, SourceResult


def engine(ws: Path, **ocr: Any) -> Engine:
    return Engine(load_settings(workspace=ws, ocr=ocr))


def norm(text: str) -> str:
    """Whitespace-insensitive form for CER: line breaks and runs of spaces count as one space."""
    return " ".join(text.split())


def cer(hyp: str, ref: str) -> float:
    """Character error rate: edit distance / reference length (rapidfuzz), whitespace-normalised."""
    r = norm(ref)
    return Levenshtein.distance(norm(hyp), r) / max(1, len(r))


def outputs(ws: Path, res: SourceResult) -> dict[str, Path]:
    """variant -> path of each output of a result ('text', 'words', 'searchable', thumbnail sizes)."""
    assert res.status == "ok", res
    found = {}
    for rel in res.outputs:
        parts = rel.split("/")
        found[parts[2]] = ws / rel  # processed/<pipeline>/<variant>/...
    return found


def words_json(ws: Path, res: SourceResult) -> dict[str, Any]:
    return json.loads(outputs(ws, res)["words"].read_text(encoding="utf-8"))


def text_of(ws: Path, res: SourceResult) -> str:
    return outputs(ws, res)["text"].read_text(encoding="utf-8")


def deep_page_tree_pdf(depth: int, text: str) -> bytes:
    """A one-page PDF whose page sits under ``depth`` nested /Pages nodes (each with one kid), the page
    showing ``text`` in Helvetica.  pdfminer walks the page tree recursively: 1,000 levels exceed Python's
    recursion limit; pdfium allows 1,024 and renders the page."""
    page, contents, font = depth + 2, depth + 3, depth + 4
    objs = {1: b"<< /Type /Catalog /Pages 2 0 R >>"}
    for i in range(depth):
        kid = i + 3 if i < depth - 1 else page
        parent = f" /Parent {i + 1} 0 R" if i else ""
        objs[i + 2] = f"<< /Type /Pages /Kids [{kid} 0 R] /Count 1{parent} >>".encode()
    objs[page] = (
        f"<< /Type /Page /Parent {depth + 1} 0 R /MediaBox [0 0 612 792] /Contents {contents} 0 R "
        f"/Resources << /Font << /F1 {font} 0 R >> >> >>"
    ).encode()
    stream = f"BT /F1 36 Tf 72 700 Td ({text}) Tj ET".encode()
    objs[contents] = b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream"
    objs[font] = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
    out, offsets = bytearray(b"%PDF-1.7\n"), {}
    for n in sorted(objs):
        offsets[n] = len(out)
        out += b"%d 0 obj\n" % n + objs[n] + b"\nendobj\n"
    xref, size = len(out), max(objs) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    out += b"".join(b"%010d 00000 n \n" % offsets[n] for n in range(1, size))
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref)
    return bytes(out)
