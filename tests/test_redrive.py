"""``media-worker redrive``: a dead-letter queue's messages back to the upload queue.

Only SQS can run this for real. Here ``handlers.redrive.redrive`` (our code, unstubbed) drives botocore's
Stubber: every request it makes is checked against botocore's own SQS service model (names, types,
batch limits) and answered as SQS documents its responses, including partial batch failures.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from conftest import run_cli

from handlers.redrive import redrive, region_of

DLQ = "https://sqs.eu-west-1.amazonaws.com/123456789012/media-worker-UploadRuleDeadLetterQueue-AbC"
QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/media-worker-UploadQueue-XyZ"


def event(i: int) -> str:
    return json.dumps(
        {"source": "aws.s3", "detail-type": "Object Created", "detail": {"object": {"key": f"m/{i}"}}}
    )


def messages(ids: range) -> list[dict[str, Any]]:
    """As EventBridge leaves them in its target's dead-letter queue: the event, and its attributes."""
    return [
        {
            "MessageId": f"id-{i}",
            "ReceiptHandle": f"rh-{i}",
            "Body": event(i),
            "MessageAttributes": {"ERROR_CODE": {"DataType": "String", "StringValue": "SQS_ERROR"}},
        }
        for i in ids
    ]


def sqs() -> Any:
    return boto3.client("sqs", region_name="eu-west-1", aws_access_key_id="t", aws_secret_access_key="t")


def receive(stub: Stubber, got: list[dict[str, Any]], want: int = 10) -> None:
    params = {"QueueUrl": DLQ, "MaxNumberOfMessages": want, "WaitTimeSeconds": ANY, "VisibilityTimeout": ANY}
    stub.add_response("receive_message", {"Messages": got} if got else {}, params)


def test_every_message_moves_with_its_body_unchanged() -> None:
    client = sqs()
    with Stubber(client) as stub:
        for batch in (messages(range(10)), messages(range(10, 12))):
            receive(stub, batch)
            entries = [{"Id": str(i), "MessageBody": m["Body"]} for i, m in enumerate(batch)]  # no attributes
            ok = [{"Id": e["Id"], "MessageId": "new", "MD5OfMessageBody": "x"} for e in entries]
            stub.add_response(
                "send_message_batch",
                {"Successful": ok, "Failed": []},
                {"QueueUrl": QUEUE, "Entries": entries},
            )
            done = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)]
            deleted = {"Successful": [{"Id": d["Id"]} for d in done], "Failed": []}
            stub.add_response("delete_message_batch", deleted, {"QueueUrl": DLQ, "Entries": done})
        receive(stub, [])
        moved = redrive(client, DLQ, QUEUE)
        stub.assert_no_pending_responses()
    assert moved.sent == 12 and moved.failed == []


def test_a_message_the_queue_refuses_stays_in_the_dead_letter_queue() -> None:
    """Only what was sent is deleted; the run stops and names the message that was not moved."""
    client = sqs()
    batch = messages(range(3))
    with Stubber(client) as stub:
        receive(stub, batch)
        ok = [{"Id": i, "MessageId": "new", "MD5OfMessageBody": "x"} for i in ("0", "2")]
        failed = [{"Id": "1", "SenderFault": False, "Code": "InternalError", "Message": "try again"}]
        stub.add_response("send_message_batch", {"Successful": ok, "Failed": failed})
        done = [{"Id": "0", "ReceiptHandle": "rh-0"}, {"Id": "2", "ReceiptHandle": "rh-2"}]
        stub.add_response("delete_message_batch", {"Successful": [{"Id": "0"}, {"Id": "2"}], "Failed": []},
                          {"QueueUrl": DLQ, "Entries": done})  # fmt: skip
        moved = redrive(client, DLQ, QUEUE)
        stub.assert_no_pending_responses()
    assert moved.sent == 2 and moved.failed == ["id-1: InternalError try again"]


def test_a_limit_is_kept() -> None:
    client = sqs()
    with Stubber(client) as stub:
        receive(stub, messages(range(3)), want=3)
        ok = [{"Id": str(i), "MessageId": "n", "MD5OfMessageBody": "x"} for i in range(3)]
        stub.add_response("send_message_batch", {"Successful": ok, "Failed": []})
        stub.add_response(
            "delete_message_batch", {"Successful": [{"Id": str(i)} for i in range(3)], "Failed": []}
        )
        moved = redrive(client, DLQ, QUEUE, limit=3)
        stub.assert_no_pending_responses()
    assert moved.sent == 3


def test_queue_urls_are_checked() -> None:
    assert region_of(DLQ) == "eu-west-1"
    for bad in ("arn:aws:sqs:eu-west-1:123456789012:q", "https://example.com/q", DLQ + "/extra"):
        with pytest.raises(ValueError, match="not an SQS queue URL"):
            region_of(bad)
    with pytest.raises(ValueError, match="same queue"):
        redrive(sqs(), QUEUE, QUEUE)
    res = run_cli("redrive", "arn:aws:sqs:eu-west-1:123456789012:q", "--to", QUEUE)
    assert res.returncode == 2 and "DeadLetterQueueUrl" in res.stderr, res.stderr
