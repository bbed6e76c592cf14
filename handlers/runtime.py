"""What every Lambda adapter shares: settings and engine (built once per cold start), deadlines, and
one object from an event -> one engine job -> an :class:`Outcome`.

Settings and the engine are built once, by :func:`runtime`.  Under the Lambda runtime
(``AWS_LAMBDA_RUNTIME_API`` set) each handler module calls :func:`init_on_lambda` at import, so they are
built, and the rules' programs checked, in the init phase; anywhere else (tests, the CLI, a benchmark
importing a handler) importing stays cheap (see bench/bench_coldstart.py) and the first invocation
builds them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools.utilities.typing import LambdaContext

from config.errors import ConfigError, InvalidRequest, Rejected, WorkspaceNotWritableError
from handlers import observability as obs
from handlers.events import KeyMapper, ObjectRef
from handlers.observability import logger

if TYPE_CHECKING:
    from config.settings import Settings
    from pipelines.core.engine import Engine
    from pipelines.result import SourceResult, Status

MIB = 1 << 20
MAX_REASON = 1000


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    mapper: KeyMapper


_runtime: Runtime | None = None


def runtime() -> Runtime:
    """Settings (defaults < $MEDIA_WORKER_CONFIG file < MEDIA_WORKER_* env), engine and key mapper."""
    global _runtime
    if _runtime is None:
        from config.settings import load_settings
        from pipelines.core.engine import Engine

        settings = load_settings()
        obs.configure(settings.aws)
        _runtime = Runtime(settings, Engine(settings), KeyMapper(settings.aws))
    return _runtime


def init_on_lambda() -> None:
    """In the Lambda runtime (``AWS_LAMBDA_RUNTIME_API`` set): build settings and engine during the init
    phase and check every program the rules' pipelines need, so that a missing one (an image built
    without tesseract) is an initialisation error, not one failure per object.  Invalid settings are
    left to each invocation, which reports them with the key named."""
    import os

    if not os.environ.get("AWS_LAMBDA_RUNTIME_API"):
        return
    try:
        rt = runtime()
    except ConfigError:
        return
    routed = rt.engine.pipelines_for([])
    rt.engine.preflight(routed)
    rt.engine.registry.warm(routed)  # their first-use imports too: the first job runs as fast as the next


def reset_runtime() -> None:
    """Forget the cached settings/engine (tests change the environment between invocations)."""
    global _runtime
    _runtime = None


def deadline_for(context: LambdaContext, margin_s: float) -> float:
    """A ``time.monotonic()`` deadline: the invocation's remaining time minus the configured margin."""
    remaining = context.get_remaining_time_in_millis() / 1000.0
    return time.monotonic() + max(0.0, remaining - margin_s)


def start(context: LambdaContext) -> tuple[Runtime, float]:
    """Per invocation: runtime, correlation id, deadline; and a workspace this process can write.

    An unwritable workspace fails the whole invocation with one error line (and the
    ``ConfigurationErrors`` metric) instead of one failure per object: on SQS every message then
    returns to the queue for a retry once the deployment is fixed, rather than each being reported as
    a failed item.
    """
    logger.set_correlation_id(context.aws_request_id)  # first: the cold start's own lines carry it too
    rt = runtime()
    try:
        rt.engine.ws.check_writable()
    except WorkspaceNotWritableError as exc:
        err = s3files_fix(rt.settings, exc)
        logger.error(f"configuration error: {err}", extra={"error_kind": err.kind})
        obs.count_configuration_error()
        raise err from None
    return rt, deadline_for(context, rt.settings.aws.deadline_margin_seconds)


MARKER_MODE = "0040755"  # a directory, rwxr-xr-x (S3 user guide, "POSIX permissions in S3 Files")


def s3files_fix(settings: Settings, exc: WorkspaceNotWritableError) -> WorkspaceNotWritableError:
    """``exc`` with the exact fix when the workspace is an S3 Files access point's folder (``aws.bucket``
    and ``aws.workspace_uid`` set, as the SAM template sets them): S3 Files takes a folder's owner from its
    directory marker object, and a folder without one (say, made by an upload before the stack existed,
    or whose marker was deleted) is root:root 0755, which the access point's user cannot write."""
    import json
    import os

    aws = settings.aws
    if aws.bucket is None or aws.workspace_uid is None:
        return exc
    try:
        if os.statvfs(settings.workspace).f_flag & os.ST_RDONLY:
            return exc  # a read-only mount: exc already says what to change
    except OSError:
        pass
    uid, gid = aws.workspace_uid, aws.workspace_gid if aws.workspace_gid is not None else aws.workspace_uid
    meta = json.dumps({"file-owner": str(uid), "file-group": str(gid), "file-permissions": MARKER_MODE})
    key = aws.key_prefix  # "media/": the folder's marker; "" would be the bucket's root (no marker key)
    if not key:
        return exc
    return WorkspaceNotWritableError(
        f"{exc}. On S3 Files a folder's owner comes from its directory marker object, and a folder without "
        f"one is root:root 0755: make uid {uid} the owner of s3://{aws.bucket}/{key} with "
        f"`aws s3api put-object --bucket {aws.bucket} --key {key} --metadata '{meta}'` (the stack's "
        "WorkspaceFolder resource wrote it at deploy time, so it was deleted or changed since; redeploying "
        "writes it again), wait for S3 Files to show the change, then redrive the dead-letter queue "
        "(`media-worker redrive`)"
    )


EventStatus = Literal["ignored", "rejected"]  # verdicts on an event before any workspace path exists


@dataclass
class Outcome:
    """What happened to one object named by an event: the engine's :class:`SourceResult`, wrapped with
    the event's key and bucket.  Objects the engine never saw (ignored, rejected, or failed before a
    job started) carry a result made here, in the same shape and vocabulary."""

    key: str
    bucket: str | None
    result: SourceResult

    @classmethod
    def before_engine(
        cls, ref: ObjectRef | None, status: Status | EventStatus, *, relpath: str | None = None, **why: Any
    ) -> Outcome:
        """An outcome decided by the adapter (``why``: reason, error, error_kind, retryable)."""
        from pipelines.result import SourceResult

        key, bucket = (ref.key, ref.bucket) if ref is not None else ("", None)
        # the engine itself never says ignored/rejected: its Status type leaves them out
        return cls(key, bucket, SourceResult(source=relpath or "", status=status, **why))  # type: ignore[arg-type]

    # the engine's fields, read through
    status = property(lambda self: self.result.status)
    reason = property(lambda self: self.result.reason)
    error = property(lambda self: self.result.error)
    error_kind = property(lambda self: self.result.error_kind)
    retryable = property(lambda self: self.result.retryable)
    outputs = property(lambda self: self.result.outputs)
    manifest = property(lambda self: self.result.manifest)
    relpath = property(lambda self: self.result.source or None)

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "timeout")

    def to_dict(self) -> dict[str, Any]:
        d = {
            "key": self.key,
            "bucket": self.bucket,
            "status": self.status,
            "path": self.relpath,
            "outputs": self.outputs,
            "manifest": self.manifest,
            "reason": self.reason,
            "error": self.error,
            "error_kind": self.error_kind,
            "retryable": self.retryable,
        }
        return {k: v for k, v in d.items() if v not in (None, [])}

    def describe(self) -> str:
        """One line for result strings / error messages."""
        text = self.error or self.reason or ""
        head = f"{self.status}"
        if self.error_kind:
            head += f" ({self.error_kind}{', retryable' if self.retryable else ''})"
        return f"{head}: {text}"[:MAX_REASON] if text else head


def check_pipelines(rt: Runtime, names: Sequence[str] | None) -> list[str] | None:
    """Validate pipeline names chosen by a request; None/empty = the configured rules decide."""
    if not names:
        return None
    if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
        raise InvalidRequest(f"'pipelines' must be a list of pipeline names, got {names!r}")
    try:
        rt.engine.registry.require(names)
    except ConfigError as exc:  # a request's error, not the deployment's
        raise InvalidRequest(str(exc)) from None
    return list(names)


def ignored(ref: ObjectRef) -> Outcome:
    """An object named by an event that needs no work (a delete, a restore, S3's test event): answered
    without settings, engine or workspace (see :func:`nothing_to_do`)."""
    with obs.source_context(ref.key):
        obs.count("ignored")
        out = Outcome.before_engine(ref, "ignored", reason=ref.ignore)
        logger.info(f"ignored: {out.reason}", extra={"status": "ignored", "reason": out.reason})
    return out


def nothing_to_do(refs: Sequence[ObjectRef]) -> bool:
    """Every object the event names is ignored: the invocation needs no settings, engine or mount."""
    return bool(refs) and all(r.ignore for r in refs)


def handle_object(
    rt: Runtime,
    ref: ObjectRef,
    deadline: float,
    *,
    pipelines: Sequence[str] | None = None,
    event_driven: bool = True,
) -> Outcome:
    """Map one event object to its workspace path and run the engine on it (or say why not)."""
    if ref.ignore:
        return ignored(ref)
    with obs.source_context(ref.key):
        out = _handle(rt, ref, deadline, pipelines, event_driven)
        fields = {
            k: v for k, v in out.to_dict().items() if k in ("status", "path", "reason", "error", "error_kind")
        }
        if out.status in ("ignored", "skipped"):
            logger.info(f"{out.status}: {out.reason}", extra=fields)
        elif out.status == "rejected":
            logger.warning(f"rejected: {out.reason}", extra=fields)
        elif out.failed:
            logger.error(f"{out.status}: {out.error}", extra={**fields, "retryable": out.retryable})
        else:
            logger.info(
                f"processed: {len(out.outputs)} output(s)", extra={**fields, "outputs": len(out.outputs)}
            )
        return out


def _handle(
    rt: Runtime, ref: ObjectRef, deadline: float, pipelines: Sequence[str] | None, event_driven: bool
) -> Outcome:
    from pipelines.core.engine import SourceMeta

    settings = rt.settings
    try:
        rels = rt.mapper.relpaths(ref.bucket, ref.keys)
    except Rejected as exc:
        obs.count("rejected")
        return Outcome.before_engine(ref, "rejected", reason=str(exc))
    rel = rels[0]
    if len(rels) > 1 and event_driven:  # the key may or may not have been URL-encoded: the mount decides
        from handlers.keys import resolve

        wait = min(settings.sync.visibility_wait_seconds, max(0.0, deadline - time.monotonic()))
        rel, why = resolve(rt.engine.ws, rels, ref, wait_s=wait, deadline=deadline)
        logger.info(f"key {ref.key!r}: {rel!r} ({why})", extra={"candidates": rels, "path": rel})
    verdict = rt.engine.triage(rel, pipelines)  # the engine's own answer, handed to it below
    if not verdict.run:
        obs.count("skipped")
        return Outcome.before_engine(ref, "skipped", relpath=rel, reason=verdict.reason)
    if ref.storage_class and ref.storage_class.upper() in settings.aws.unsupported_storage_classes:
        obs.count("failed")
        return Outcome.before_engine(
            ref,
            "failed",
            relpath=rel,
            error=f"object is in storage class {ref.storage_class}: S3 Files cannot serve objects in Glacier "
            "storage classes; restore it and copy it to a non-Glacier class first",
            error_kind="storage_class",
        )
    if time.monotonic() >= deadline:
        obs.count("timeout")
        return Outcome.before_engine(
            ref,
            "timeout",
            relpath=rel,
            error="the invocation's time budget ran out before this object was started",
            error_kind="timeout",
            retryable=True,
        )
    meta = SourceMeta(version_id=ref.version_id, etag=ref.etag, size=ref.size) if event_driven else None
    with obs.segment("process", source=rel):
        res = rt.engine.process(
            rel,
            verdict=verdict,
            meta=meta,
            deadline=deadline,
            progress=obs.ProgressLog(settings.aws.progress_log_seconds),
        )
    obs.job_metrics(res, large_reads=settings.read_block_bytes >= MIB)
    return Outcome(ref.key, ref.bucket, res)


def summarize(outcomes: Sequence[Outcome], limit: int) -> dict[str, Any]:
    """Counts by status plus per-failure reasons (at most ``limit`` listed)."""
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    failures = [o.to_dict() for o in outcomes if o.failed or o.status == "rejected"]
    doc: dict[str, Any] = {"counts": counts, "failures": failures[:limit]}
    if len(failures) > limit:
        doc["failures_not_listed"] = len(failures) - limit
    return doc
