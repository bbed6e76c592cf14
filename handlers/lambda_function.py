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


def process(event: Any, context: LambdaContext) -> dict[str, Any]:
    """Route by the event's shape (decided once, in :func:`handlers.events.shape`) to its adapter."""
    what = events.shape(event)
    if what in events.UPLOAD_SHAPES:
        from handlers import s3_trigger

        return s3_trigger.process(event, context, shape=what)
    if what == "sqs":
        from handlers import sqs_trigger

        return sqs_trigger.process(event, context)
    if what == "report":
        from handlers import report_event

        return report_event.process(event, context)
    from handlers import batch_events

    return batch_events.process(event, context, shape=what)


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def handler(event: Any, context: Any) -> dict[str, Any]:
    try:
        return process(event, context)
    except UnsupportedEvent as exc:
        logger.error(f"unsupported event: {exc}")
        raise


init_on_lambda()  # under the Lambda runtime: settings, engine and the dependency check in the init phase
