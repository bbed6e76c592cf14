"""Helpers for the Lambda handler tests: a fake context, event templates, a configured runtime."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest

EVENTS = Path(__file__).resolve().parent / "events"
BUCKET = "media-bucket"


@dataclass
class FakeContext:
    """What Lambda passes as ``context`` (the attributes Powertools and our handlers read)."""

    remaining_ms: int = 60_000
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    function_name: str = "media-worker"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:media-worker"
    log_group_name: str = "/aws/lambda/media-worker"
    log_stream_name: str = "2026/11/26/[$LATEST]abc"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def s3_key(key: str) -> str:
    """A key as S3 notifications carry it: form-encoded, '+' for spaces, '/' kept."""
    return quote_plus(key, safe="/")


def render(template: str | Path, **values: str) -> Any:
    """Fill a SAM CLI event template's {{{placeholders}}} (values are inserted as JSON string content)."""
    text = Path(template).read_text() if isinstance(template, Path) else template

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in values:
            raise KeyError(f"template needs {{{{{{{name}}}}}}}")
        return json.dumps(values[name])[1:-1]

    return json.loads(re.sub(r"\{\{\{(\w+)\}\}\}", sub, text))


def load_event(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


def configure(monkeypatch: pytest.MonkeyPatch, workspace: Path, **env: str) -> None:
    """Point the handlers' settings at ``workspace`` (and more MEDIA_WORKER_* values)."""
    from handlers.runtime import reset_runtime

    for k in list(os.environ):
        if k.startswith("MEDIA_WORKER_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("MEDIA_WORKER_WORKSPACE", str(workspace))
    monkeypatch.setenv("MEDIA_WORKER_AWS__BUCKET", env.pop("bucket", BUCKET))
    monkeypatch.setenv("MEDIA_WORKER_SYNC__VISIBILITY_WAIT_SECONDS", env.pop("visibility_wait", "0"))
    for k, v in env.items():
        monkeypatch.setenv(f"MEDIA_WORKER_{k.upper()}", v)
    reset_runtime()
