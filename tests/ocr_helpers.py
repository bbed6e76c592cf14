"""Helpers for the OCR tests: an in-process engine, character error rate, output readers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rapidfuzz.distance import Levenshtein

from config.settings import load_settings
from pipelines.engine import Engine, SourceResult


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
