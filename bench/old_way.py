"""The design's "old way", written as a careful Lambda author would: for each object in an S3 event,
download it to /tmp, process it with the same pipeline code media-worker runs, upload each output
(with its content type) and the manifest last, clean /tmp whatever happened.

Used by bench/bench_old_vs_mount.py as the anchor.  Everything between the ``# plumbing`` markers is
code the mount way does not need; the benchmark counts those lines.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from config.settings import Settings
from pipelines.core.engine import Engine, SourceResult


class OldWay:
    """One warm function: the engine is built once (the init phase), each event's jobs run in /tmp."""

    def __init__(self, settings: Settings, s3: Any, tmp: Path) -> None:
        self.s3 = s3
        self.tmp = tmp
        self.root = tmp / "old-way"
        self.root.mkdir(parents=True, exist_ok=True)
        self.engine = Engine(settings.model_copy(update={"workspace": self.root}))

    def handle(self, event: dict[str, Any]) -> list[SourceResult]:
        results = []
        for record in event["Records"]:
            bucket = record["s3"]["bucket"]["name"]
            key = unquote_plus(record["s3"]["object"]["key"])
            results.append(self.one(bucket, key))
        return results

    def one(self, bucket: str, key: str) -> SourceResult:
        # plumbing: begin
        local = self.root / key
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            try:
                self.s3.download_file(bucket, key, str(local))
            except Exception as exc:  # missing object, no permission, /tmp full
                return SourceResult(source=key, status="failed", error=f"download: {exc}", retryable=True)
            # plumbing: end
            result = self.engine.process(key)
            # plumbing: begin
            if result.status != "ok":
                return result
            for rel in [*result.outputs, result.manifest]:  # the manifest last: the commit marker
                if rel is None:
                    continue
                try:
                    self.s3.upload_file(
                        str(self.root / rel), bucket, rel, ExtraArgs={"ContentType": _content_type(rel)}
                    )
                except Exception as exc:  # a partial upload leaves earlier outputs without a manifest
                    result.status, result.error, result.retryable = "failed", f"upload {rel}: {exc}", True
                    return result
            return result
        finally:  # /tmp outlives the invocation on a warm function: never leave a job's files there
            for child in list(self.root.iterdir()):
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        # plumbing: end


def _content_type(rel: str) -> str:
    # plumbing: begin
    import mimetypes

    guess = mimetypes.guess_type(rel)[0]
    return guess or "application/octet-stream"
    # plumbing: end


def plumbing_lines() -> int:
    """Non-blank, non-comment lines between the ``# plumbing`` markers of this file."""
    count, inside = 0, False
    for line in Path(__file__).read_text().splitlines():
        text = line.strip()
        if text == "# plumbing: begin":
            inside = True
        elif text == "# plumbing: end":
            inside = False
        elif inside and text and not text.startswith("#"):
            count += 1
    return count
