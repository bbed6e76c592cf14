"""Error types shared by every layer.

Each class carries the CLI exit code it maps to and whether retrying the same work can help
(Lambda adapters turn ``retryable`` into TemporaryFailure / a re-raised error).  This module
imports nothing of ours so that ``config``, ``pipelines`` and ``handlers`` can all use it.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # some source failed; the run itself completed
    USAGE = 2  # bad command line or configuration
    DEPENDENCY = 3  # a program or library a selected pipeline needs is missing (nothing was processed)


class MediaWorkerError(Exception):
    """Base class: a failure we understand and can report per file."""

    exit_code: ExitCode = ExitCode.FAILED
    retryable: bool = False
    kind: str = "error"

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail  # e.g. the tail of a tool's stderr

    def __str__(self) -> str:
        return self.message


class ConfigError(MediaWorkerError):
    """Invalid configuration; the message names the key and the reason."""

    exit_code = ExitCode.USAGE
    kind = "config"


class StackError(MediaWorkerError):
    """The local stack (``media-worker stack``) cannot start or stop, or is not running."""

    kind = "stack"


class WorkspaceNotWritableError(ConfigError):
    """This process may not create files in the workspace (owner, mode, or a read-only mount).

    A deployment problem, not a per-file one: handlers report it once and stop, instead of failing every
    file the same way.
    """

    kind = "workspace_not_writable"


class BadInputError(MediaWorkerError):
    """The source cannot be processed (corrupt, unsupported, over a limit). Retrying won't help."""

    kind = "bad_input"


class PathError(BadInputError):
    """A path escapes the workspace, contains NUL, is absolute, or is too long for an S3 key."""

    kind = "path"


class MissingDependencyError(MediaWorkerError):
    """An external program or library needed by a pipeline is missing or too old.

    Checked once before any file is processed (:meth:`pipelines.core.engine.Engine.preflight`): the CLI exits
    3 with one message; on Lambda it is an initialisation error.
    """

    exit_code = ExitCode.DEPENDENCY
    kind = "dependency"


class ToolFailedError(MediaWorkerError):
    """An external tool exited with an error."""

    kind = "tool"


class ToolTimeoutError(ToolFailedError):
    """An external tool ran past a configured per-call limit (retrying gives the same result).

    Not the job's deadline: that is :class:`JobTimeoutError`, which is retryable.
    """

    kind = "tool_timeout"


class RetryableError(MediaWorkerError):
    """Transient: the source is not visible yet, changed while being read, or similar."""

    retryable = True
    kind = "retryable"


class WorkspaceFullError(RetryableError):
    """No space (or quota) left on the workspace writing an output; retrying after space is freed helps."""

    kind = "workspace_full"


class ScratchFullError(RetryableError):
    """No space left in the local scratch folder (``TMPDIR``; on Lambda ``/tmp``, sized by the function's
    ephemeral storage); retrying (elsewhere, or after space is freed) helps."""

    kind = "scratch_full"


class ScratchUnsafeError(MediaWorkerError):
    """The worker's own scratch parent in ``TMPDIR`` is not a real folder owned by this user (a symlink,
    a file, or someone else's): no scratch is made there, and nothing in it is swept."""

    kind = "scratch_unsafe"


class BusyError(RetryableError):
    """Another worker holds this source's lease: it is being processed; retry later."""

    kind = "busy"


class JobTimeoutError(RetryableError):
    """The job's deadline was reached; partial outputs were deleted and no manifest written."""

    kind = "timeout"


class PageTimeoutError(ToolTimeoutError):
    """tesseract ran past the per-page timeout (a configured limit; retrying gives the same result)."""

    kind = "timeout_page"


# -- the Lambda edges (handlers/): event and request shapes, and what an invocation reports ----------
# Raised out of a handler, these names are the invocation's errorType (a Distributed Map's Retry/Catch
# and an S3 async retry act on them), so they are part of the interface.


class BatchItemsRetryable(Exception):
    """Some items of a Distributed Map batch failed retryably (retry the batch: done items are skipped)."""


class BatchItemsFailed(Exception):
    """Some items of a Distributed Map batch failed permanently (a retry cannot help)."""


class Rejected(Exception):
    """The event names something this function must not touch (other bucket, key outside the mount)."""


class InvokeError(ValueError):
    """The event file cannot be read or is no event the function handles (usage error, exit 2)."""


class InvalidRequest(ValueError):
    """The invocation payload is malformed or names something unknown (not retryable)."""


class UnsupportedEvent(ValueError):
    """The payload (or a queue or topic message inside it) is no event shape this function handles."""


class RetryLater(Exception):
    """Some objects failed in a way a retry can fix; Lambda's async retry will redeliver the event."""


class RecordFailed(Exception):
    """At least one object named by this SQS message failed; the message is reported in batchItemFailures."""
