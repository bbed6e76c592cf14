"""Write the ready-to-POST event files in this folder for the sample media (run after make_samples.py).

Each file is shaped like what AWS delivers (field names as in the AWS documentation and the SAM CLI /
Powertools samples), for a workspace that is a copy of ``sample_media`` mounted at /mnt/workspace and a
function configured with ``MEDIA_WORKER_AWS__BUCKET=media-worker-local`` (key prefix ''): sizes and ETags
are the sample files' own, keys URL-encoded as S3 notifications carry them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import quote_plus

HERE = Path(__file__).resolve().parent
SAMPLES = HERE.parent / "sample_media"
BUCKET = "media-worker-local"
# uploaded under a name with a space and a '+': the S3 notification carries "beach+day%2Bsunset.jpg"
ODD_KEY = "uploads/beach day+sunset.jpg"


def obj(name: str) -> tuple[int, str]:
    data = (SAMPLES / name).read_bytes()
    return len(data), hashlib.md5(data).hexdigest()


def s3_record(key: str, sample: str, version: str) -> dict:
    size, etag = obj(sample)
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "eu-west-1",
        "eventTime": "2026-12-02T10:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.7"},
        "responseElements": {
            "x-amz-request-id": "C3D13FE58DE4C810",
            "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD",
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "media-worker-uploads",
            "bucket": {
                "name": BUCKET,
                "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                "arn": f"arn:aws:s3:::{BUCKET}",
            },
            "object": {
                "key": quote_plus(key, safe="/"),
                "size": size,
                "eTag": etag,
                "versionId": version,
                "sequencer": "0A1B2C3D4E5F678901",
            },
        },
    }


def sqs_message(message_id: str, body: str) -> dict:
    return {
        "messageId": message_id,
        "receiptHandle": f"AQEB{message_id.replace('-', '')}",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1795730000000",
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": "1795730000100",
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:media-worker-uploads",
        "awsRegion": "eu-west-1",
    }


def eventbridge(key: str, sample: str, version: str) -> dict:
    size, etag = obj(sample)
    return {
        "version": "0",
        "id": "2d4eba74-fd51-3966-4bfa-b013c9da8ff1",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-12-02T10:00:00Z",
        "region": "eu-west-1",
        "resources": [f"arn:aws:s3:::{BUCKET}"],
        "detail": {
            "version": "0",
            "bucket": {"name": BUCKET},
            "object": {
                "key": key,
                "size": size,
                "etag": etag,
                "version-id": version,
                "sequencer": "00617F08299329D189",
            },
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "123456789012",
            "source-ip-address": "203.0.113.7",
            "reason": "PutObject",
        },
    }


def events() -> dict[str, object]:
    eb_logo = eventbridge("logo.png", "logo.png", "Yj1xG3hYh0cH5sT0dE2tB7yZ2nN8wQ4r")
    items = []
    for name in ("clip.mp4", "tone.m4a"):
        size, etag = obj(name)
        items.append(
            {
                "Etag": f'"{etag}"',
                "Key": name,
                "LastModified": 1795730000,
                "Size": size,
                "StorageClass": "STANDARD",
            }
        )
    return {
        "s3-put-photo.json": {
            "Records": [s3_record("photo.jpg", "photo.jpg", "3HL4kqtJlcpXroDTDmjVBH40Nrjfkd")]
        },
        "s3-put-odd-key.json": {
            "Records": [s3_record(ODD_KEY, "photo.jpg", "9nUKc2kUjvtyCW0XzOWv7eQHTXDTgh")]
        },
        "sqs-batch-one-malformed.json": {
            "Records": [
                sqs_message("059f36b4-87a3-44ab-83d2-661975830a7d", json.dumps(eb_logo)),
                sqs_message("2e1424d4-f796-459a-8184-9c92662be6da", "this is not an S3 event {"),
            ]
        },
        "eventbridge-object-created.json": eventbridge(
            "scan.pdf", "scan.pdf", "fJ2SnGUQ0Hn3wzNQcLrfqA6yBVmVpQNX"
        ),
        "distributed-map-batch.json": {"Items": items, "BatchInput": {"bucket": BUCKET}},
        "prefix-batch.json": {"prefix": ""},
    }


def main() -> None:
    for name, doc in events().items():
        (HERE / name).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote events/{name}")


if __name__ == "__main__":
    main()
