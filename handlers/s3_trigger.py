"""Upload triggers invoking the function directly (asynchronously): S3 event notifications,
EventBridge "Object Created" events, and S3 notifications published to SNS.

Each object is processed in turn.  If any of them failed with a *retryable* error (not visible on the
mount yet, deadline), the handler raises :class:`RetryLater` after the others are done, so Lambda's
asynchronous retries (or EventBridge's retry policy) bring the event back; finished objects are then
skipped through their manifests.  Permanent failures are logged and returned, never raised: a retry
cannot help them.
"""

from __future__ import annotations

from typing import Any

from config.errors import RetryLater, UnsupportedEvent
from handlers import events
from handlers.observability import logger, metrics
from handlers.runtime import (
    LambdaContext,
    handle_object,
    ignored,
    init_on_lambda,
    nothing_to_do,
    start,
    summarize,
)


def objects(event: dict[str, Any], shape: events.Shape) -> list[events.ObjectRef]:
    if shape == "eventbridge":
        return [events.eventbridge(event)]
    if shape == "s3":
        return events.s3_notification(event)
    if shape == "sns":
        return events.sns_event(event)
    raise UnsupportedEvent("not an S3 notification, an SNS-wrapped one, or an EventBridge S3 event")


def process(
    event: dict[str, Any], context: LambdaContext, *, shape: events.Shape | None = None
) -> dict[str, Any]:
    """``shape`` as the dispatcher found it; this module's own handler finds it itself."""
    what = shape or events.shape(event)
    refs = objects(event, what)
    if nothing_to_do(refs):  # deletes, restores, S3's test event: no settings, engine or mount needed
        logger.set_correlation_id(context.aws_request_id)
        return summarize([ignored(r) for r in refs], limit=1)
    rt, deadline = start(context)
    outcomes = [handle_object(rt, ref, deadline) for ref in refs]
    summary = summarize(outcomes, rt.settings.aws.max_failures_reported)
    retry = [o for o in outcomes if o.failed and o.retryable]
    if retry:
        raise RetryLater(
            f"{len(retry)} of {len(outcomes)} object(s) failed retryably: "
            + "; ".join(f"{o.key}: {o.describe()}" for o in retry[:5])
        )
    return summary


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process(event, context)


init_on_lambda()  # under the Lambda runtime: settings, engine and the dependency check in the init phase
