"""Settings of the Lambda adapters: which bucket is mounted where, time margins, observability."""

from __future__ import annotations

from pydantic import Field

from config.base import Section


class AwsSettings(Section):
    """How S3 events map onto the mount, and Lambda-side behaviour."""

    bucket: str | None = Field(
        default=None, description="The bucket mounted at the workspace (events for others are rejected)."
    )
