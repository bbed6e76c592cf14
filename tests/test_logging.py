"""One logger tree: every module logs under ``media_worker``, so on Lambda whatever the OCR, PDF or
registry code warns about comes out as Powertools JSON with the invocation's keys."""

from __future__ import annotations

import ast
import importlib
import io
import json
import logging
import pkgutil
import shutil
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium
import pytest
from conftest import REPO, SAMPLES
from lambda_support import FakeContext, configure

import pipelines.core.registry as registry
from config.errors import BadInputError
from config.logs import ROOT
from handlers import lambda_function
from handlers.observability import logger
from pipelines.media.pdf import PdfDocument

PACKAGES = ("config", "pipelines", "handlers")


def test_every_module_logger_is_under_the_root() -> None:
    """No module creates a logger outside ``media_worker`` (checked on the imported modules and in the
    source, so a logger made inside a function is caught too)."""
    for pkg in PACKAGES:
        for info in pkgutil.walk_packages([str(REPO / pkg)], prefix=f"{pkg}."):
            mod = importlib.import_module(info.name)
            for name, value in vars(mod).items():
                if isinstance(value, logging.Logger):
                    assert value.name.startswith(f"{ROOT}."), f"{info.name}.{name} logs as {value.name!r}"
            tree = ast.parse(Path(mod.__file__ or "").read_text())
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "getLogger"
                    and info.name not in ("config.logs", "handlers.observability")
                ):
                    pytest.fail(
                        f"{info.name}:{node.lineno} calls logging.getLogger; use config.logs.get_logger"
                    )


def json_lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(x) for x in buf.getvalue().splitlines() if x.startswith("{")]


def test_warnings_from_ocr_pdf_and_registry_are_powertools_json(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the Lambda handler: a broken plug-in (registry), a PDF whose page counts disagree (pdf) and
    a page whose text layer cannot be parsed (ocr) each warn; every warning is a JSON line of the
    Powertools logger, the per-source ones with ``source_key`` and the request id."""
    buf = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", buf)
    real_eps = registry.entry_points

    def with_a_broken_plugin(group: str) -> list[EntryPoint]:
        return [*real_eps(group=group), EntryPoint("broken", "no_such_module_xyz:Pipeline", group)]

    monkeypatch.setattr(registry, "entry_points", with_a_broken_plugin)
    real_len = pdfium.PdfDocument.__len__
    monkeypatch.setattr(pdfium.PdfDocument, "__len__", lambda self: real_len(self) + 1)

    def unparsable(self: PdfDocument, index: int) -> Any:
        assert self.plumber is not None  # opened: it counts its pages
        raise BadInputError(f"page {index + 1}: content stream cannot be parsed")

    monkeypatch.setattr(PdfDocument, "_plumber_text_layer", unparsable)
    monkeypatch.setattr(PdfDocument, "pdfium_text_layer", unparsable)
    configure(monkeypatch, workspace, rules='[{"include": ["*.pdf"], "pipelines": ["ocr"]}]')
    (workspace / "in").mkdir()
    shutil.copy(SAMPLES / "document.pdf", workspace / "in/doc.pdf")
    res = lambda_function.handler({"prefix": "in/"}, FakeContext(aws_request_id="req-logs"))
    assert res["counts"] == {"ok": 1}, res
    lines = json_lines(buf)
    warnings = [x for x in lines if x["level"] == "WARNING"]
    by_text = {
        "registry": [x for x in warnings if "no_such_module_xyz" in x["message"]],
        "pdf": [x for x in warnings if "pdfplumber sees" in x["message"]],
        "ocr": [x for x in warnings if "OCR'ing the page instead" in x["message"]],
    }
    assert all(by_text.values()), (by_text, lines[-10:])
    for kind, found in by_text.items():
        for x in found:
            assert x["correlation_id"] == "req-logs" and x["service"] == "media-worker", (kind, x)
            if kind != "registry":  # the registry loads before any source is looked at
                assert x["source_key"] == "in/doc.pdf", (kind, x)
