"""Settings of the Lambda adapters: which bucket is mounted where, time margins, observability."""

from __future__ import annotations

from pydantic import Field, field_validator

from config.base import Section

# Storage classes S3 Files cannot serve (objects must be restored/copied to another class first).
GLACIER_CLASSES = ("GLACIER", "DEEP_ARCHIVE", "GLACIER_IR")


class AwsSettings(Section):
    """How S3 events map onto the mount, and Lambda-side behaviour."""

    bucket: str | None = Field(
        default=None,
        description="The bucket mounted at the workspace; S3 events for any other bucket are rejected "
        "(and, while unset, every S3 event is rejected).",
    )
    key_prefix: str = Field(
        default="",
        description="Key prefix mapped to the workspace root ('' = the whole bucket), e.g. 'media/' when "
        "the S3 Files file system was created with Prefix 'media/'. Keys outside it are rejected.",
    )
    workspace_uid: int | None = Field(
        default=None,
        ge=0,
        le=4294967295,
        description="The POSIX user every request through the S3 Files access point runs as (its PosixUser "
        "Uid), who must own the workspace folder; names the exact fix when the workspace is not writable.",
    )
    workspace_gid: int | None = Field(
        default=None, ge=0, le=4294967295, description="The access point's PosixUser Gid (see workspace_uid)."
    )
    deadline_margin_seconds: float = Field(
        default=10.0,
        ge=0,
        le=600,
        description="Time kept free before the Lambda timeout: jobs get the remaining time minus this.",
    )
    progress_log_seconds: float = Field(
        default=5.0,
        ge=0,
        description="Log a job's progress at most this often (and when a pipeline finishes); "
        "0 logs every report.",
    )
    service_name: str = Field(default="media-worker", description="Powertools service name (logs, metrics).")
    metrics_namespace: str = Field(
        default="MediaWorker", min_length=1, max_length=255, description="CloudWatch (EMF) metrics namespace."
    )
    tracing: bool = Field(
        default=False,
        description="X-Ray tracing through Powertools Tracer; a no-op when the X-Ray SDK is not installed.",
    )
    unsupported_storage_classes: list[str] = Field(
        default=list(GLACIER_CLASSES),
        description="Storage classes S3 Files cannot serve; such items fail permanently with that reason.",
    )
    max_failures_reported: int = Field(
        default=50,
        ge=1,
        le=1000,
        description="Per-failure reasons listed in a batch response (the rest are counted).",
    )

    @field_validator("key_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if v.startswith("/") or "\0" in v or any(s in (".", "..") for s in v.split("/")):
            raise ValueError("must be a plain S3 key prefix such as 'media/' (no leading '/', '.' or '..')")
        if v and not v.endswith("/"):
            raise ValueError("must be '' or end with '/' (the mount root is a folder)")
        return v

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str | None) -> str | None:
        if v is not None and (not 3 <= len(v) <= 63 or "/" in v or ":" in v):
            raise ValueError("must be a bucket name (3-63 characters, no '/' or ':'), not an ARN or URL")
        return v
