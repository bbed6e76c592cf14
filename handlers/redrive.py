"""``media-worker redrive``: move the messages of a dead-letter queue back to a queue the function reads.

SQS's own redrive, ``StartMessageMoveTask``, only moves messages out of a queue that is the dead-letter
queue of another SQS queue.  The upload queue's dead-letter queue is one; the EventBridge target's is not
(EventBridge puts the events it could not deliver there), so its messages cannot be moved that way.  This
works for both: receive a batch, send each body unchanged to the destination, delete from the source only
what was sent.  Message attributes are left behind (EventBridge's RULE_ARN, ERROR_CODE ...: the upload
queue's own messages have none).  A message that could not be sent stays in the source queue and becomes
visible again after ``visibility`` seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

QUEUE_URL = re.compile(r"https://sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/(\d{12})/([A-Za-z0-9_-]{1,80})\Z")


@dataclass
class Moved:
    """What a redrive did."""

    sent: int = 0
    failed: list[str] = field(default_factory=list)  # "<message id>: <code> <reason>"


def region_of(queue_url: str) -> str:
    """The Region in a queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>)."""
    m = QUEUE_URL.match(queue_url)
    if m is None:
        raise ValueError(
            f"{queue_url!r} is not an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME; the "
            "stack's outputs DeadLetterQueueUrl, UploadRuleDeadLetterQueueUrl and UploadQueueUrl are)"
        )
    return m.group(1)


def redrive(
    sqs: Any,
    source_url: str,
    dest_url: str,
    *,
    limit: int | None = None,
    visibility: int = 120,
    wait: int = 5,
) -> Moved:
    """Move up to ``limit`` messages (all, if None) from ``source_url`` to ``dest_url``; stops at the
    first receive that returns nothing after a ``wait``-second long poll (which asks every SQS server)."""
    if source_url == dest_url:
        raise ValueError("the source and the destination are the same queue")
    moved = Moved()
    while limit is None or moved.sent + len(moved.failed) < limit:
        want = 10 if limit is None else min(10, limit - moved.sent - len(moved.failed))
        got = sqs.receive_message(
            QueueUrl=source_url, MaxNumberOfMessages=want, WaitTimeSeconds=wait, VisibilityTimeout=visibility
        ).get("Messages", [])
        if not got:
            break
        entries = [{"Id": str(i), "MessageBody": m["Body"]} for i, m in enumerate(got)]
        answer = sqs.send_message_batch(QueueUrl=dest_url, Entries=entries)
        sent = {e["Id"] for e in answer.get("Successful", [])}
        for f in answer.get("Failed", []):
            moved.failed.append(f"{got[int(f['Id'])]['MessageId']}: {f.get('Code')} {f.get('Message', '')}")
        done = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got) if str(i) in sent
        ]
        if done:
            deleted = sqs.delete_message_batch(QueueUrl=source_url, Entries=done)
            for f in deleted.get("Failed", []):  # sent, but still in the source: it would come back twice
                moved.failed.append(
                    f"{got[int(f['Id'])]['MessageId']}: sent but not deleted ({f.get('Code')})"
                )
        moved.sent += len(sent)
        if answer.get("Failed"):
            break  # the destination refuses: stop rather than cycle through the same messages
    return moved
