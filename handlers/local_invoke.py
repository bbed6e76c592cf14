"""``media-worker invoke``: the dispatching Lambda handler called in-process, without Docker or the emulator.

:class:`LocalContext` is what Lambda passes as ``context``: a request id, the function's names and limits,
and a remaining time that really counts down from ``--timeout``, so deadlines, margins and cursors behave
as they do on Lambda.  Logs and EMF metrics go to stderr; stdout carries only the handler's JSON response
(or, when the handler raises, Lambda's ``{"errorType", "errorMessage"}`` document).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class LocalContext:
    """A Lambda context whose remaining time counts down from ``timeout_s`` at creation."""

    timeout_s: float = 300.0
    memory_limit_in_mb: int = 2048
    function_name: str = field(
        default_factory=lambda: os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "media-worker")
    )
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _end: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._end = time.monotonic() + self.timeout_s

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:local:000000000000:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"{time.strftime('%Y/%m/%d')}/[{self.function_version}]local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._end - time.monotonic()) * 1000))


class InvokeError(ValueError):
    """The event file cannot be read or is no event the function handles (usage error, exit 2)."""


def read_event(path: Path) -> Any:
    """The JSON document in ``path`` ('-' = standard input)."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvokeError(f"cannot read event file {path}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvokeError(f"event file {path} is not JSON: {exc}") from None


def invoke(event: Any, context: LocalContext) -> tuple[bool, Any]:
    """Run the dispatching handler; (True, response) or (False, Lambda's error document).

    Raises :class:`InvokeError` for an event shape the function does not handle.
    """
    from handlers import lambda_function
    from handlers.observability import logger
    from handlers.runtime import UnsupportedEvent

    for h in logger.handlers:  # keep stdout for the response alone
        if isinstance(h, logging.StreamHandler) and h.stream in (sys.stdout, sys.__stdout__):
            h.setStream(sys.stderr)
    try:
        lambda_function.route(event)
    except UnsupportedEvent as exc:
        raise InvokeError(f"unsupported event: {exc}") from None
    with contextlib.redirect_stdout(sys.stderr):  # EMF metrics are printed
        try:
            return True, lambda_function.handler(event, context)
        except Exception as exc:  # what Lambda reports as the invocation's error
            return False, {"errorType": type(exc).__name__, "errorMessage": str(exc)}
