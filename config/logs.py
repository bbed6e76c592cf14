"""One logger tree: every module logs under ``media_worker`` (``media_worker.pipelines.ocr`` ...).

The Lambda adapters give that one root Powertools' JSON handler, so whatever any module logs comes out
as a JSON line with the invocation's keys (``source_key`` included); the CLI configures plain logging.
"""

from __future__ import annotations

import logging

ROOT = "media_worker"


def get_logger(module: str) -> logging.Logger:
    """The logger for ``module`` (pass ``__name__``), under the one root."""
    return logging.getLogger(f"{ROOT}.{module}")
