"""The per-source manifest: written last, in one write, as the commit marker for a source's outputs.

Readers (downstream jobs, people) treat a source's outputs as complete only when its manifest exists;
S3 Files has no flush API, and outputs reach S3 in about a minute, in no guaranteed order.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from config.cost import usd
from pipelines.spec import OutputRecord, SourceInfo

if TYPE_CHECKING:
    from config.settings import Settings
    from pipelines.ledger import StorageIO

SCHEMA = "media-worker/manifest/v1"


def build(
    source: SourceInfo,
    *,
    config_hash: str,
    pipelines: list[str],
    outputs: list[OutputRecord],
    left_out: list[dict[str, Any]] | None = None,
    tools: dict[str, str],
    timings: dict[str, float],
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "status": "ok",
        "source": {
            "path": source.relpath,
            "size": source.size,
            "mtime_ns": source.mtime_ns,
            "version_id": source.version_id,
            "etag": source.etag,
        },
        "config_hash": config_hash,
        "pipelines": pipelines,
        "outputs": [asdict(o) for o in outputs],
        # parts of the source the outputs do not cover, and why: {"pipeline", where (e.g. "page": 3,
        # or "stream": 1, "type": "audio", "codec": "ac4"), "reason"}
        "left_out": list(left_out or []),
        "tools": {"python": platform.python_version(), **tools},
        "timings": {k: round(v, 4) for k, v in timings.items()},
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def encode_document(doc: dict[str, Any]) -> bytes:
    """One of the JSON files the worker writes (manifest, failure record, report summary), as its bytes:
    indented UTF-8 with a final newline; :func:`decode_document` reads it back."""
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def encode_with_io(manifest: dict[str, Any], io: StorageIO, settings: Settings) -> bytes:
    """Encode ``manifest`` with its cost ledger: ``io``, the job's storage I/O counted so far plus the
    one write of this manifest itself, and ``usd``, that work priced three ways (config/cost.py)."""
    outputs = sum(o["size"] for o in manifest["outputs"])
    days = settings.sync.cache_expiration_days
    size = 0
    for _ in range(16):  # the figures are inside the file they count: settle on its length
        ledger = {
            **io.as_dict(),
            "sources": 1,
            "source_bytes": manifest["source"]["size"],
            "cache_expiration_days": days,
        }
        ledger["bytes_written"] += size
        ledger["write_requests"] += 1
        ledger["files_written"] += 1
        ledger["bytes_stored"] = outputs + size
        data = encode_document({**manifest, "io": ledger, "usd": usd(ledger, settings.cost, days)})
        if len(data) <= size:  # shorter: pad the JSON with spaces to the length it counted
            return data[:-1] + b" " * (size - len(data)) + data[-1:]
        size = len(data)
    raise AssertionError("manifest length did not settle")


def decode(data: bytes | None) -> dict[str, Any] | None:
    """A manifest we can trust, or None (absent, unreadable, another schema)."""
    return decode_document(data, SCHEMA)


def decode_document(data: bytes | None, schema: str) -> dict[str, Any] | None:
    """A JSON object of ``schema`` (one of the files the worker writes: :func:`encode_document`), or None."""
    if not data:
        return None
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return doc if isinstance(doc, dict) and doc.get("schema") == schema else None


def is_current(manifest: dict[str, Any] | None, source: SourceInfo, config_hash: str) -> bool:
    """True when the manifest is for this very source version and this effective config."""
    if not manifest or manifest.get("status") != "ok" or manifest.get("config_hash") != config_hash:
        return False
    return same_version(manifest, source)


def same_version(doc: dict[str, Any], source: SourceInfo) -> bool:
    """True when ``doc``'s ``source`` (a manifest's or a failure record's) is this very version of it:
    path, size and mtime; and, when both sides know them, the S3 version id and ETag."""
    src = doc.get("source") or {}
    if (src.get("path"), src.get("size"), src.get("mtime_ns")) != (
        source.relpath,
        source.size,
        source.mtime_ns,
    ):
        return False
    for key in ("version_id", "etag"):
        ours = getattr(source, key)
        if ours and src.get(key) and src[key] != ours:
            return False
    return True
