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
from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from config.errors import InvokeError


class LocalContext(LambdaContext):
    """Powertools' LambdaContext, filled in locally; the remaining time counts down from ``timeout_s``."""

    def __init__(self, timeout_s: float = 300.0, memory_limit_in_mb: int = 2048) -> None:
        name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "media-worker")
        self._function_name, self._function_version = name, "$LATEST"
        self._invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{name}"
        self._memory_limit_in_mb = memory_limit_in_mb
        self._aws_request_id = str(uuid.uuid4())
        self._log_group_name = f"/aws/lambda/{name}"
        self._log_stream_name = f"{time.strftime('%Y/%m/%d')}/[$LATEST]local"
        self._end = time.monotonic() + timeout_s

    # Powertools types it as a staticmethod (its class is a type stub); ours counts down per instance
    def get_remaining_time_in_millis(self) -> int:  # type: ignore[override]
        return max(0, int((self._end - time.monotonic()) * 1000))


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
    from config.errors import UnsupportedEvent
    from handlers import lambda_function
    from handlers.observability import logger

    for h in logger.handlers:  # keep stdout for the response alone
        if isinstance(h, logging.StreamHandler) and h.stream in (sys.stdout, sys.__stdout__):
            h.setStream(sys.stderr)
    with contextlib.redirect_stdout(sys.stderr):  # EMF metrics are printed
        try:
            return True, lambda_function.handler(event, context)
        except UnsupportedEvent as exc:
            raise InvokeError(f"unsupported event: {exc}") from None
        except Exception as exc:  # what Lambda reports as the invocation's error
            return False, {"errorType": type(exc).__name__, "errorMessage": str(exc)}
