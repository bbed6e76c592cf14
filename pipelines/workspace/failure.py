"""The failure record: why a source has no manifest, for the merge step to show.

A job that fails for good (bad input, a tool failure, an internal error, or its deadline) leaves no
outputs and no manifest; the engine then writes this small record beside where the manifest would be
(``layout.failure_path``), with one write, while it still holds the source's lease.  A later job that
commits a manifest for the source removes it.  Failures a retry is expected to fix (the source not
visible yet, changed while read, another worker busy with it) write none: they are in flight.
"""

from __future__ import annotations

import time
from typing import Any

from pipelines.result import SourceResult
from pipelines.spec import SourceInfo
from pipelines.workspace.manifest import decode_document, encode_document

SCHEMA = "media-worker/failure/v1"


def worth_recording(result: SourceResult) -> bool:
    """A per-file failure with its reason (not an interrupt of the whole process: Ctrl-C, SystemExit)."""
    if result.error is None:
        return False
    return result.status == "timeout" or (result.status == "failed" and not result.retryable)


def encode(source: SourceInfo, result: SourceResult, pipelines: list[str]) -> bytes:
    doc = {
        "schema": SCHEMA,
        "status": result.status,
        "source": {"path": source.relpath, "size": source.size, "mtime_ns": source.mtime_ns},
        "pipelines": pipelines,
        "error": result.error,
        "error_kind": result.error_kind,
        "failed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return encode_document(doc)


def decode(data: bytes | None) -> dict[str, Any] | None:
    """A failure record we can trust, or None."""
    return decode_document(data, SCHEMA)
