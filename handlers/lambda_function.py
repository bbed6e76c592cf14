"""One entry point for every event source: dispatches by the event's shape.

The container image's default ``CMD`` is ``handlers.lambda_function.handler``, so one function can be
wired to S3, SQS, SNS, EventBridge, Step Functions and S3 Batch Operations at once.  Each source also
has its own module (``handlers.s3_trigger``, ``handlers.sqs_trigger``, ``handlers.batch_events``) to name in
``ImageConfig.Command`` when a function serves one source only; this module imports the one it needs
on first use, so its import stays as cheap as theirs.
"""

from __future__ import annotations

from typing import Any

from config.errors import UnsupportedEvent
from handlers import events
from handlers.observability import logger, metrics
from handlers.runtime import LambdaContext, init_on_lambda


def route(event: Any) -> str:
    """'s3', 'sqs' or 'batch' for an event, or :class:`UnsupportedEvent`."""
    if not isinstance(event, dict):
        raise UnsupportedEvent(f"event must be a JSON object, got {type(event).__name__}")
    if events.is_s3_notification(event) or events.is_eventbridge_s3(event) or events.is_sns(event):
        return "s3"
    recs = event.get("Records")
    if (
        isinstance(recs, list)
        and recs
        and all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in recs)
    ):
        return "sqs"
    from handlers import batch_events as batch

    batch.kind(event)  # raises UnsupportedEvent with the list of accepted shapes
    return "batch"


def process(event: Any, context: LambdaContext) -> dict[str, Any]:
    where = route(event)
    if where == "s3":
        from handlers import s3_trigger

        return s3_trigger.process(event, context)
    if where == "sqs":
        from handlers import sqs_trigger

        return sqs_trigger.process(event, context)
    from handlers import batch_events as batch

    return batch.process(event, context)


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def handler(event: Any, context: Any) -> dict[str, Any]:
    try:
        return process(event, context)
    except UnsupportedEvent as exc:
        logger.error(f"unsupported event: {exc}")
        raise


init_on_lambda()  # under the Lambda runtime: settings, engine and the dependency check in the init phase
