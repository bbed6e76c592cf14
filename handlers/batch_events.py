"""Batch runs: a prefix walked directly, Step Functions Distributed Map batches, S3 Batch Operations.

* Direct invocation ``{"prefix": "incoming/", "pipelines": [...], "max_items": N, "cursor": "..."}``:
  walks the mount under the prefix in :func:`pipelines.workspace.mount.sort_key` order, stops before the time
  budget (or ``max_items``) runs out, and returns counts, failures and a ``cursor`` (the last source
  finished) to pass back in; ``"done": true`` when the walk is complete.
* Distributed Map (S3 ItemReader + ItemBatcher): ``{"Items": [{"Key", "Size", "Etag", "StorageClass"}],
  "BatchInput": {"bucket": ..., "pipelines": [...]}}`` (a single item without ItemBatcher works too).
  Returns per-item results when nothing failed; otherwise raises :class:`BatchItemsRetryable` (some
  failure could succeed on a retry) or :class:`BatchItemsFailed` (all failures are permanent), whose
  names are the ``Error`` a Map's ``Retry``/``Catch`` and ``ToleratedFailure*`` act on.
* S3 Batch Operations, schema 1.0 and 2.0 (``userArguments.pipelines``: comma-separated names):
  ``Succeeded`` / ``TemporaryFailure`` (anything retryable) / ``PermanentFailure``, built with
  Powertools' ``S3BatchOperationResponse``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools.utilities.data_classes.s3_batch_operation_event import (
    S3BatchOperationEvent,
    S3BatchOperationResponse,
    S3BatchOperationResponseRecord,
)

from config.errors import BatchItemsFailed, BatchItemsRetryable, InvalidRequest, UnsupportedEvent
from handlers import events
from handlers.observability import logger, metrics
from handlers.runtime import (
    MAX_REASON,
    LambdaContext,
    Outcome,
    Runtime,
    check_pipelines,
    handle_object,
    init_on_lambda,
    start,
    summarize,
)

# -- direct invocation over a prefix -----------------------------------------------------------------


def _split_prefix(prefix: Any) -> tuple[str, str]:
    """(folder to walk, name prefix within it) for a workspace-relative prefix like 'in/2024-'."""
    if not isinstance(prefix, str) or "\0" in prefix or prefix.startswith("/"):
        raise InvalidRequest(f"'prefix' must be a workspace-relative path prefix, got {prefix!r}")
    folder, _, _ = prefix.rpartition("/")
    if any(p in (".", "..") for p in folder.split("/")):
        raise InvalidRequest(f"'prefix' must not contain '.' or '..' segments: {prefix!r}")
    return folder, prefix


def _paging(event: dict[str, Any]) -> tuple[int | None, str | None, tuple[str, ...] | None]:
    """The event's ``max_items`` and ``cursor``, checked, and the sort key the walk resumes after."""
    from pipelines.workspace.mount import clean_relpath, sort_key

    max_items = event.get("max_items")
    if max_items is not None and (not isinstance(max_items, int) or max_items < 1):
        raise InvalidRequest(f"'max_items' must be a positive integer, got {max_items!r}")
    cursor = event.get("cursor")
    after: tuple[str, ...] | None = None
    if cursor is not None:
        if not isinstance(cursor, str):
            raise InvalidRequest(f"'cursor' must be the string returned by the previous call, got {cursor!r}")
        try:
            after = sort_key(clean_relpath(cursor))
        except Exception as exc:
            raise InvalidRequest(f"'cursor' {cursor!r} is not a workspace path: {exc}") from None
    return max_items, cursor, after


def run_prefix(rt: Runtime, event: dict[str, Any], deadline: float) -> dict[str, Any]:
    """Process the sources under the event's ``prefix`` in sort order, from its ``cursor``, until
    ``max_items`` or the time budget; the result holds the cursor to continue from."""
    from pipelines.workspace.mount import sort_key

    folder, prefix = _split_prefix(event.get("prefix"))
    pipelines = check_pipelines(rt, event.get("pipelines"))
    max_items, cursor, after = _paging(event)
    outcomes: list[Outcome] = []
    last_done: str | None = cursor
    done = True
    stop_reason = None
    try:
        walk = rt.engine.ws.walk(folder)
        for rel in walk:
            if not rel.startswith(prefix) or (after is not None and sort_key(rel) <= after):
                continue
            if max_items is not None and len(outcomes) >= max_items:
                done, stop_reason = False, f"max_items ({max_items}) reached"
                break
            if time.monotonic() >= deadline:
                done, stop_reason = False, "time budget reached"
                break
            ref = events.ObjectRef(bucket=None, key=rel, origin="prefix")
            out = handle_object(rt, ref, deadline, pipelines=pipelines, event_driven=False)
            if out.status == "timeout":  # not finished: the next call starts with it again
                done, stop_reason = (
                    False,
                    "time budget reached during a job (its partial outputs were removed)",
                )
                break
            outcomes.append(out)
            last_done = rel
    except Exception as exc:
        from config.errors import BadInputError

        if isinstance(exc, BadInputError) and not outcomes:
            raise InvalidRequest(f"prefix {prefix!r}: {exc}") from None
        raise
    doc = summarize(outcomes, rt.settings.aws.max_failures_reported)
    doc.update({"prefix": prefix, "processed": len(outcomes), "done": done})
    if not done:
        doc["cursor"] = last_done
        doc["stopped"] = stop_reason
    logger.info(
        f"prefix {prefix!r}: {len(outcomes)} source(s), done={done}",
        extra={"counts": doc["counts"], "cursor": doc.get("cursor")},
    )
    return doc


# -- Step Functions Distributed Map ------------------------------------------------------------------


def _map_result(out: Outcome) -> dict[str, Any]:
    """A compact per-item result (a Step Functions state's output is limited to 256 KiB; the manifest
    lists the outputs)."""
    d = out.to_dict()
    keep = ("key", "status", "manifest", "reason", "error", "error_kind", "retryable")
    doc = {k: d[k] for k in keep if k in d}
    if out.outputs:
        doc["outputs"] = len(out.outputs)
    return doc


def _error_detail(doc: dict[str, Any]) -> str:
    """JSON for the error message (Step Functions keeps a Cause of up to 32,768 characters)."""
    for n in (10, 3, 0):
        text = json.dumps({"counts": doc["counts"], "failures": doc["failures"][:n]}, ensure_ascii=False)
        if len(text) <= 32_000:
            return text
    return json.dumps({"counts": doc["counts"]})


def run_map(rt: Runtime, event: dict[str, Any], deadline: float) -> dict[str, Any]:
    if "Items" in event:
        items, batch_input = event["Items"], event.get("BatchInput") or {}
        if not isinstance(items, list) or not isinstance(batch_input, dict):
            raise InvalidRequest("'Items' must be a list and 'BatchInput' an object")
    else:  # one item, no ItemBatcher
        items, batch_input = [event], {}
    bucket = batch_input.get("bucket") or batch_input.get("Bucket")
    pipelines = check_pipelines(rt, batch_input.get("pipelines"))
    outcomes: list[Outcome] = []
    for ref in events.map_items(items, bucket):
        if isinstance(ref, str):
            out = Outcome.before_engine(None, "rejected", reason=ref)
            out.bucket = bucket
            logger.warning(f"rejected: {ref}")
        else:
            out = handle_object(rt, ref, deadline, pipelines=pipelines)
        outcomes.append(out)
    doc = summarize(outcomes, rt.settings.aws.max_failures_reported)
    failed = [o for o in outcomes if o.failed or o.status == "rejected"]
    if failed:
        if any(o.retryable for o in failed):
            raise BatchItemsRetryable(_error_detail(doc))
        raise BatchItemsFailed(_error_detail(doc))
    return {"counts": doc["counts"], "results": [_map_result(o) for o in outcomes]}


# -- S3 Batch Operations -----------------------------------------------------------------------------


def _pipelines_argument(args: dict[str, str]) -> list[str] | None:
    raw = args.get("pipelines")
    if raw is None:
        return None
    names = [p.strip() for p in str(raw).split(",") if p.strip()]
    return names or None  # '' = the configured rules decide


def run_batch_operations(rt: Runtime, event: dict[str, Any], deadline: float) -> dict[str, Any]:
    ev = S3BatchOperationEvent(event)
    response = S3BatchOperationResponse(ev.invocation_schema_version, ev.invocation_id, "PermanentFailure")
    task = ev.task
    if len(event.get("tasks") or []) > 1:
        logger.warning("S3 Batch Operations sent more than one task; only the first is answered")
    result: S3BatchOperationResponseRecord | None = None
    try:
        pipelines = check_pipelines(rt, _pipelines_argument(ev.job.user_arguments))
        ref = events.ObjectRef(
            bucket=task.s3_bucket, key=task.s3_key, origin="batch-operations", version_id=task.s3_version_id
        )
        out = handle_object(rt, ref, deadline, pipelines=pipelines)
        if out.failed:
            if out.retryable:
                result = task.build_task_batch_response("TemporaryFailure", out.describe())
            else:
                result = task.build_task_batch_response("PermanentFailure", out.describe())
        elif out.status == "rejected":
            result = task.build_task_batch_response("PermanentFailure", out.describe())
        else:
            text = out.manifest if out.status == "ok" else out.describe()
            result = task.build_task_batch_response("Succeeded", (text or out.status)[:MAX_REASON])
    except InvalidRequest as exc:
        result = task.build_task_batch_response("PermanentFailure", f"invalid request: {exc}"[:MAX_REASON])
    except Exception as exc:  # a bug: report it on the task rather than failing the whole invocation
        logger.exception("internal error")
        result = task.build_task_batch_response(
            "PermanentFailure", f"internal error: {type(exc).__name__}: {exc}"
        )
    finally:
        if result is not None:
            response.add_result(result)
    return response.asdict()


# -- the handler --------------------------------------------------------------------------------------


def process(
    event: dict[str, Any], context: LambdaContext, *, shape: events.Shape | None = None
) -> dict[str, Any]:
    """``shape`` as the dispatcher found it; this module's own handler finds it itself."""
    what = shape or events.shape(event)
    if what not in events.BATCH_SHAPES:
        raise UnsupportedEvent(
            f"a {what} event, not a batch request: expected {{'prefix': ...}}, a Distributed Map batch "
            "{'Items': [...]}, or an S3 Batch Operations invocation"
        )
    rt, deadline = start(context)
    if what == "batch-operations":
        return run_batch_operations(rt, event, deadline)
    if what == "map":
        return run_map(rt, event, deadline)
    return run_prefix(rt, event, deadline)


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process(event, context)


init_on_lambda()  # under the Lambda runtime: settings, engine and the dependency check in the init phase
