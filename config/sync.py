"""S3 Files synchronization settings and the ``PutSynchronizationConfiguration`` request they make.

The request shape follows botocore's ``s3files`` service model (API 2025-05-05); the same values go
into CloudFormation as ``AWS::S3Files::FileSystem.SynchronizationConfiguration``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_SIZE_LESS_THAN = 52_673_613_135_872
FS_ID = re.compile(
    r"(arn:aws[-a-z]*:s3files:[0-9a-z-:]+:file-system/fs-[0-9a-f]{17,40}|fs-[0-9a-f]{17,40})\Z"
)


class ImportRule(BaseModel):
    """Which objects S3 Files copies into its cache when their folder or file is first accessed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str = Field(default="", description="'' (the root) or a prefix ending in '/'.")
    size_less_than: int = Field(
        default=128 * 1024,
        ge=0,
        le=MAX_SIZE_LESS_THAN,
        description="Only objects strictly smaller than this many bytes are imported.",
    )
    trigger: Literal["ON_DIRECTORY_FIRST_ACCESS", "ON_FILE_ACCESS"] = "ON_DIRECTORY_FIRST_ACCESS"

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if v and not v.endswith("/"):
            raise ValueError("must be '' or end with '/'")
        return v


class SyncSettings(BaseModel):
    """S3 Files cache expiry and import rules (applied by the deployer, printed by ``config sync-rules``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file_system_id: str | None = Field(default=None, description="fs-… id or file-system ARN.")
    cache_expiration_days: int = Field(
        default=2,
        ge=1,
        le=365,
        description="Days after last access before cached data expires (1-2 for touch-once outputs: see "
        "docs/report-and-cost.md; the SAM stack sets it from CacheExpirationDays).",
    )
    import_rules: list[ImportRule] = Field(
        default_factory=lambda: [ImportRule()], min_length=1, max_length=10
    )
    visibility_wait_seconds: float = Field(
        default=10.0,
        ge=0,
        le=900,
        description="How long an event-driven job waits for the event's object to appear on the mount "
        "(within its deadline) before failing as retryable.",
    )

    @field_validator("file_system_id")
    @classmethod
    def _fs_id(cls, v: str | None) -> str | None:
        if v is not None and not FS_ID.match(v):
            raise ValueError("must look like fs-0123456789abcdef0 (17-40 hex digits) or a file-system ARN")
        return v

    @model_validator(mode="after")
    def _one_root_rule(self) -> SyncSettings:
        prefixes = [r.prefix for r in self.import_rules]
        if prefixes.count("") != 1:
            raise ValueError("import_rules: exactly one rule must cover the root (prefix '')")
        if len(set(prefixes)) != len(prefixes):
            raise ValueError("import_rules: prefixes must be distinct")
        return self

    def put_request(self, file_system_id: str | None = None) -> dict[str, Any]:
        """Keyword arguments for ``boto3.client('s3files').put_synchronization_configuration``."""
        fs = file_system_id or self.file_system_id or "fs-00000000000000000"
        return {
            "fileSystemId": fs,
            "importDataRules": [
                {"prefix": r.prefix, "sizeLessThan": r.size_less_than, "trigger": r.trigger}
                for r in self.import_rules
            ],
            "expirationDataRules": [{"daysAfterLastAccess": self.cache_expiration_days}],
        }

    def cloudformation(self) -> dict[str, Any]:
        """The same settings as ``AWS::S3Files::FileSystem`` ``SynchronizationConfiguration``."""
        return {
            "ImportDataRules": [
                {"Prefix": r.prefix, "SizeLessThan": r.size_less_than, "Trigger": r.trigger}
                for r in self.import_rules
            ],
            "ExpirationDataRules": [{"DaysAfterLastAccess": self.cache_expiration_days}],
        }
