"""AWS events -> the S3 objects they name -> workspace paths.

Keys are decoded with Powertools' event data classes, never by hand.  Note (Powertools 3.37, checked
by tests/test_handlers_events.py): ``S3Event.object_key`` URL-decodes (``unquote_plus``) but the
per-record ``record.s3.get_object.key`` is still URL-encoded, so each record is decoded through an
``S3Event`` of its own.  EventBridge keys (``S3EventBridgeNotificationObject.key``) and S3 Batch
Operations keys (``S3BatchOperationTask.s3_key``) are decoded by Powertools too; Step Functions
Distributed Map items carry the raw key from ListObjectsV2 (not encoded).

Nothing here touches the mount; :class:`KeyMapper` turns a (bucket, key) into a workspace-relative
path or a :class:`Rejected` with a reason, and never yields a path outside the workspace.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools.utilities.data_classes.s3_event import S3Event, S3EventBridgeNotificationEvent
from aws_lambda_powertools.utilities.data_classes.sns_event import SNSEvent, SNSMessage

from config.errors import Rejected, UnsupportedEvent

if TYPE_CHECKING:  # settings (pydantic) load on the first invocation, not at import
    from config.aws import AwsSettings

NAME_MAX = 255  # bytes in one file name (Linux NAME_MAX; NFS mounts such as S3 Files have the same limit)


@dataclass(frozen=True)
class ObjectRef:
    """One S3 object named by an event, key decoded."""

    bucket: str | None
    key: str
    origin: str  # s3 | eventbridge | sqs/s3 | sns/s3 | batch-operations | distributed-map
    size: int | None = None
    etag: str | None = None
    version_id: str | None = None
    storage_class: str | None = None
    ignore: str | None = None  # why this event needs no work (delete, restore, expiry, test event)
    event_name: str | None = None
    # the key exactly as the event carried it, when decoding changed it: S3 notifications URL-encode keys
    # (documented); whether EventBridge does is not settled (a real event seen with ':' unencoded), so
    # either reading may name the object and handlers/keys.py lets the mount decide
    raw_key: str | None = None

    @property
    def keys(self) -> list[str]:
        """The readings of the key to try, decoded first."""
        return list(dict.fromkeys(k for k in (self.key, self.raw_key) if k))


class KeyMapper:
    """(bucket, key) -> workspace-relative path, per ``[aws]`` settings."""

    def __init__(self, aws: AwsSettings) -> None:
        self.bucket = aws.bucket
        self.prefix = aws.key_prefix

    def relpath(self, bucket: str | None, key: str) -> str:
        """The path of ``key`` under the workspace; raises :class:`Rejected` with the reason."""
        from config.errors import PathError
        from config.layout import MAX_KEY_BYTES
        from pipelines.workspace.mount import clean_relpath

        if bucket is not None:
            if self.bucket is None:
                raise Rejected(f"event for bucket {bucket!r}, but aws.bucket is not configured")
            if bucket != self.bucket:
                raise Rejected(f"event for bucket {bucket!r}; this function mounts {self.bucket!r}")
        if not isinstance(key, str) or not key:
            raise Rejected("empty object key")
        size = len(key.encode("utf-8", "surrogatepass"))
        if size > MAX_KEY_BYTES:
            raise Rejected(f"key is {size} bytes, over the S3 limit of {MAX_KEY_BYTES}")
        if "\0" in key:
            raise Rejected("key contains a NUL character")
        if not key.startswith(self.prefix):
            raise Rejected(f"key {key[:200]!r} is outside the mounted prefix {self.prefix!r}")
        rel = key[len(self.prefix) :]
        parts = rel.split("/")
        # '' (a//b, /a, a/) and '.'/'..' segments have no faithful file-system path: never guess one
        if any(p in ("", ".", "..") for p in parts):
            raise Rejected(f"key {key[:200]!r} has an empty, '.' or '..' segment: no path on the mount")
        longest = max(len(p.encode("utf-8", "surrogatepass")) for p in parts)
        if longest > NAME_MAX:
            raise Rejected(
                f"key has a {longest}-byte segment; a file name on the mount is at most {NAME_MAX}"
            )
        try:
            return clean_relpath(rel)
        except PathError as exc:
            raise Rejected(str(exc)) from None

    def relpaths(self, bucket: str | None, keys: list[str]) -> list[str]:
        """The workspace paths of the readings of one key that map into the workspace (in order, without
        repeats); raises the first reading's :class:`Rejected` when none does."""
        out: list[str] = []
        first: Rejected | None = None
        for key in keys:
            try:
                rel = self.relpath(bucket, key)
            except Rejected as exc:
                first = first or exc
                continue
            if rel not in out:
                out.append(rel)
        if not out:
            raise first or Rejected("empty object key")
        return out


# -- S3 notifications ---------------------------------------------------------------------------------


def _s3_record(raw: Mapping[str, Any], origin: str) -> ObjectRef:
    event = S3Event({"Records": [raw]})  # Powertools decodes object_key only for the first record
    record = event.record
    obj = record.s3.get_object
    name = record.event_name
    ignore = None
    if not name.startswith("ObjectCreated:"):
        ignore = f"{name} event (only ObjectCreated events are processed)"
    elif record.glacier_event_data is not None:
        ignore = f"{name} event carries restore data (glacierEventData): restored copies are not processed"
    size = obj.get("size")
    key = event.object_key
    return ObjectRef(
        bucket=event.bucket_name,
        key=key,
        raw_key=obj.key if obj.key != key else None,
        origin=origin,
        size=int(size) if size is not None else None,
        etag=obj.etag or None,
        version_id=obj.version_id or None,
        ignore=ignore,
        event_name=name,
    )


def _records_from(event: Mapping[str, Any], source: str, key: str = "eventSource") -> bool:
    """``Records`` is a non-empty list of records that all name ``source`` (``aws:s3``, ``aws:sqs``…)."""
    recs = event.get("Records")
    return (
        isinstance(recs, list)
        and bool(recs)
        and all(isinstance(r, dict) and r.get(key) == source for r in recs)
    )


def is_s3_notification(event: Mapping[str, Any]) -> bool:
    return _records_from(event, "aws:s3")


def s3_notification(event: Mapping[str, Any], origin: str = "s3") -> list[ObjectRef]:
    """Objects named by an S3 event notification (``Records[]``)."""
    return [_s3_record(r, origin) for r in event["Records"]]


# -- EventBridge --------------------------------------------------------------------------------------


def is_eventbridge_s3(event: Mapping[str, Any]) -> bool:
    return (
        event.get("source") == "aws.s3" and "detail-type" in event and isinstance(event.get("detail"), dict)
    )


def eventbridge(event: Mapping[str, Any], origin: str = "eventbridge") -> ObjectRef:
    """The object named by an S3 event delivered through EventBridge."""
    eb = S3EventBridgeNotificationEvent(dict(event))
    detail = eb.detail
    obj = detail.object
    kind = eb.detail_type
    ignore = None
    if kind != "Object Created":
        why = f", reason {detail.reason!r}" if detail.reason else ""
        ignore = f"EventBridge {kind!r} event{why} (only 'Object Created' is processed)"
    raw = obj.get("key")
    return ObjectRef(
        bucket=detail.bucket.name,
        key=obj.key,
        raw_key=raw if isinstance(raw, str) and raw != obj.key else None,
        origin=origin,
        size=obj.size,
        etag=obj.etag or None,
        version_id=obj.get("version-id"),
        ignore=ignore,
        event_name=kind,
    )


# -- SNS, and message bodies (SQS) --------------------------------------------------------------------


def is_sns(event: Mapping[str, Any]) -> bool:
    return _records_from(event, "aws:sns", key="EventSource")


def sns_event(event: Mapping[str, Any]) -> list[ObjectRef]:
    """Objects named by S3 notifications published to SNS and delivered to Lambda directly."""
    out: list[ObjectRef] = []
    for record in SNSEvent(dict(event)).records:
        out.extend(message_body(record.sns.message, via="sns"))
    return out


Shape = Literal["eventbridge", "s3", "sns", "sqs", "prefix", "map", "batch-operations", "report"]
UPLOAD_SHAPES = ("eventbridge", "s3", "sns")
BATCH_SHAPES = ("prefix", "map", "batch-operations")


def shape(event: Any) -> Shape:
    """What an invocation payload is, decided once per invocation (the dispatcher passes it on)."""
    if not isinstance(event, dict):
        raise UnsupportedEvent(f"event must be a JSON object, got {type(event).__name__}")
    if is_eventbridge_s3(event):
        return "eventbridge"
    if is_s3_notification(event):
        return "s3"
    if is_sns(event):
        return "sns"
    if _records_from(event, "aws:sqs"):
        return "sqs"
    if "invocationSchemaVersion" in event and "tasks" in event:
        return "batch-operations"
    if isinstance(event.get("Items"), list) or ("Key" in event and ("Size" in event or "Etag" in event)):
        return "map"
    if "prefix" in event:
        return "prefix"
    if "report" in event:
        return "report"
    raise UnsupportedEvent(
        "not an S3, EventBridge, SNS or SQS event, nor a batch request: expected {'prefix': ...}, a "
        "Distributed Map batch {'Items': [...]}, or an S3 Batch Operations invocation"
    )


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        raise UnsupportedEvent(f"{what} is not JSON: {str(text)[:120]!r}") from None


def message_body(body: str, via: str = "sqs") -> list[ObjectRef]:
    """Objects named by one queue/topic message: an S3 notification, an SNS envelope holding one,
    an EventBridge S3 event, or S3's ``s3:TestEvent`` (ignored)."""
    doc = _json(body, f"{via} message body")
    if not isinstance(doc, dict):
        raise UnsupportedEvent(f"{via} message body is JSON but not an object")
    if doc.get("Type") == "Notification" and "Message" in doc and "TopicArn" in doc:
        return message_body(SNSMessage(doc).message, via=f"{via}/sns")
    if doc.get("Event") == "s3:TestEvent":
        return [
            ObjectRef(
                bucket=doc.get("Bucket"),
                key="",
                origin=f"{via}/s3",
                ignore="s3:TestEvent (sent when a notification is configured)",
            )
        ]
    if is_s3_notification(doc):
        return s3_notification(doc, origin=f"{via}/s3")
    if is_eventbridge_s3(doc):
        return [eventbridge(doc, origin=f"{via}/eventbridge")]
    raise UnsupportedEvent(
        f"{via} message is neither an S3 notification nor an SNS/EventBridge wrapper of one"
    )


# -- Step Functions Distributed Map items -------------------------------------------------------------


def map_items(items: Iterable[Any], bucket: str | None) -> Iterator[ObjectRef | str]:
    """ListObjectsV2 items (``Key``, ``Size``, ``Etag``, ``StorageClass``); a str for a malformed item."""
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("Key"), str):
            yield f"item is not an object with a string 'Key': {str(item)[:120]}"
            continue
        size = item.get("Size")
        etag = item.get("Etag") or item.get("ETag")
        yield ObjectRef(
            bucket=bucket,
            key=item["Key"],
            origin="distributed-map",
            size=int(size) if isinstance(size, int | str) and str(size).isdigit() else None,
            etag=etag.strip('"') if isinstance(etag, str) else None,
            version_id=item.get("VersionId"),
            storage_class=item.get("StorageClass"),
        )
