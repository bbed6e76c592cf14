"""Upload triggers delivered through SQS: S3 -> SQS, S3 -> SNS -> SQS and EventBridge -> SQS.

Powertools' ``BatchProcessor`` runs one record at a time and answers with ``batchItemFailures``
(enable ``ReportBatchItemFailures`` on the event source mapping).  A record fails, and comes back
after the visibility timeout (then to the dead-letter queue after ``maxReceiveCount``), when any object
in it failed or when its body is not a message we understand.  Ignored events (deletes, other event
types, test events, keys no rule matches) and rejected ones (other bucket, key outside the mount)
succeed with a log line: redelivering them cannot change the answer.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from config.errors import RecordFailed, UnsupportedEvent
from handlers import events
from handlers.observability import logger, metrics
from handlers.runtime import (
    LambdaContext,
    deadline_for,
    handle_object,
    init_on_lambda,
    runtime,
    start,
    summarize,
)

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def record_handler(record: SQSRecord, lambda_context: LambdaContext) -> dict[str, Any]:
    rt = runtime()
    deadline = deadline_for(lambda_context, rt.settings.aws.deadline_margin_seconds)
    try:
        refs = events.message_body(record.body)
    except UnsupportedEvent as exc:
        logger.error(f"message {record.message_id}: {exc}", extra={"message_id": record.message_id})
        raise
    outcomes = [handle_object(rt, ref, deadline) for ref in refs]
    failed = [o for o in outcomes if o.failed]
    if failed:
        raise RecordFailed("; ".join(f"{o.key}: {o.describe()}" for o in failed[:5]))
    return summarize(outcomes, rt.settings.aws.max_failures_reported)


def process(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    start(context)
    return process_partial_response(  # type: ignore[return-value]
        event=event,
        record_handler=record_handler,
        processor=processor,
        context=context,
    )


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process(event, context)


init_on_lambda()  # under the Lambda runtime: settings, engine and the dependency check in the init phase
