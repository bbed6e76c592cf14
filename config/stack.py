"""Settings of the local stack (``media-worker stack``): a SeaweedFS S3 API, a FUSE mount of the same
bucket as the workspace, and an upload trigger that delivers S3 notifications to the handler."""

from __future__ import annotations

from pydantic import Field, field_validator

from config.base import Section


class StackSettings(Section):
    """The local S3 + mount + upload trigger (see docs/local-stack.md)."""

    bucket: str = Field(
        default="media",
        min_length=3,
        max_length=63,
        pattern=r"^[a-z0-9][a-z0-9.-]+[a-z0-9]$",
        description="Bucket created on the local S3 API and mounted as the workspace.",
    )
    input_prefix: str = Field(
        default="",
        description="Only new objects under this key prefix trigger the worker ('' = the whole bucket; "
        "the layout's own outputs and manifests never do).",
    )
    max_receives: int = Field(
        default=4,
        ge=1,
        le=100,
        description="Deliveries of one event before it is dead-lettered (SQS maxReceiveCount).",
    )
    retry_base_seconds: float = Field(
        default=1.0, gt=0, le=300, description="First redelivery delay after a retryable failure."
    )
    retry_max_seconds: float = Field(
        default=30.0, gt=0, le=900, description="Redelivery delays double up to this."
    )
    settle_seconds: float = Field(
        default=0.3,
        ge=0,
        le=60,
        description="A key's events are delivered once it has been quiet this long (a file written "
        "through the mount changes several times; an S3 PUT is one event).",
    )
    function_timeout_seconds: float = Field(
        default=900, gt=0, le=900, description="Each delivery's time budget (the Lambda timeout)."
    )
    uid: int = Field(
        default=1000,
        ge=0,
        description="Owner of the files as the mount shows them: the access point's PosixUser (the "
        "image runs as 1000, as template.yaml's access point does).",
    )

    @field_validator("input_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if v.startswith("/") or (v and not v.endswith("/")):
            raise ValueError("must be '' or a key prefix ending in '/' (no leading '/')")
        return v
