"""What processing one source came to: :class:`SourceResult`, in the one status vocabulary.

Kept apart from the engine so that callers that only report (a Lambda invocation that has nothing to
do) need not import the engine, the settings or any pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["ok", "skipped", "failed", "timeout"]


@dataclass
class SourceResult:
    """The outcome for one source."""

    source: str
    status: Status
    outputs: list[str] = field(default_factory=list)
    manifest: str | None = None
    error: str | None = None
    error_kind: str | None = None
    retryable: bool = False
    reason: str | None = None
    duration_s: float = 0.0
    source_bytes: int = 0
    output_bytes: int = 0
    bytes_read: int = 0  # bytes of the source read by the worker itself (tools reading directly not counted)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "status": self.status,
            "outputs": self.outputs,
            "manifest": self.manifest,
            "error": self.error,
            "error_kind": self.error_kind,
            "retryable": self.retryable,
            "reason": self.reason,
            "duration_s": round(self.duration_s, 4),
            "source_bytes": self.source_bytes,
            "output_bytes": self.output_bytes,
        }
