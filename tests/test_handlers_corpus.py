"""Every AWS sample event in ../shared/corpus/events is processed correctly or ignored/rejected as specified.

Powertools' samples are used as they are (their buckets configured as the mounted bucket where the
event should do work); SAM CLI's are templates, rendered with real bucket/key values pointing at
sample_media files copied into the temporary workspace.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import SAMPLES
from lambda_support import FakeContext, configure, render, s3_key
from PIL import Image

from config.errors import UnsupportedEvent
from handlers import lambda_function
from handlers.batch_events import BatchItemsFailed

POWERTOOLS = "events/powertools"
SAM = "events/sam-cli"


def load(corpus: Path, name: str) -> Any:
    return json.loads((corpus / name).read_text())


def padded(sample: str, size: int) -> bytes:
    """A sample image padded with trailing bytes to the size an event announces (decoders ignore them)."""
    data = (SAMPLES / sample).read_bytes()
    assert len(data) <= size
    return data + b"\0" * (size - len(data))


def thumbs(ws: Path, rel: str) -> list[tuple[int, int]]:
    sizes = []
    for p in sorted(ws.glob(f"processed/thumbnails/*/{rel}.*")):
        with Image.open(p) as im:
            im.load()
            sizes.append(im.size)
    return sizes


def outputs(ws: Path) -> list[str]:
    return sorted(
        p.relative_to(ws).as_posix() for p in ws.rglob("*") if p.is_file() and "processed" in p.parts
    )


def test_every_corpus_event_is_covered(corpus: Path) -> None:
    names = {p.relative_to(corpus).as_posix() for p in (corpus / "events").rglob("*.json")}
    assert names == set(EXPECTED), sorted(names ^ set(EXPECTED))


# event file -> (bucket to configure, expected outcome)
EXPECTED: dict[str, tuple[str | None, str]] = {
    f"{POWERTOOLS}/s3Event.json": ("lambda-artifacts-deafc19498e3f2df", "skipped"),  # key without extension
    f"{POWERTOOLS}/s3EventDecodedKey.json": ("sourcebucket", "ok"),
    f"{POWERTOOLS}/s3EventDeleteObject.json": ("lambda-artifacts-deafc19498e3f2df", "ignored"),
    f"{POWERTOOLS}/s3EventGlacier.json": ("lambda-artifacts-deafc19498e3f2df", "ignored"),
    f"{POWERTOOLS}/s3EventBridgeNotificationObjectCreatedEvent.json": ("example-bucket", "ok"),
    f"{POWERTOOLS}/s3EventBridgeNotificationObjectDeletedEvent.json": ("example-bucket", "ignored"),
    f"{POWERTOOLS}/s3EventBridgeNotificationObjectExpiredEvent.json": ("example-bucket", "ignored"),
    f"{POWERTOOLS}/s3EventBridgeNotificationObjectRestoreCompletedEvent.json": ("example-bucket", "ignored"),
    f"{POWERTOOLS}/s3BatchOperationEventSchemaV1.json": ("powertools-dataset", "Succeeded"),
    f"{POWERTOOLS}/s3BatchOperationEventSchemaV2.json": ("powertools-dataset", "Succeeded"),
    f"{POWERTOOLS}/s3SqsEvent.json": ("xxx", "sqs-retry"),  # test.pdf is not on the mount: sync lag
    f"{POWERTOOLS}/snsSqsEvent.json": (None, "sqs-fail"),  # SNS message is not an S3 notification
    f"{POWERTOOLS}/sqsEvent.json": (None, "sqs-fail"),
    f"{POWERTOOLS}/sqsDlqTriggerEvent.json": (None, "sqs-fail"),
    f"{POWERTOOLS}/snsEvent.json": (None, "unsupported"),
    f"{POWERTOOLS}/s3ObjectEventIAMUser.json": (None, "unsupported"),
    f"{POWERTOOLS}/s3ObjectEventTempCredentials.json": (None, "unsupported"),
    f"{SAM}/S3Put.json": ("example-bucket", "ok"),
    f"{SAM}/S3Delete.json": ("example-bucket", "ignored"),
    f"{SAM}/S3BatchInvocation.json": ("example-bucket", "Succeeded"),
    f"{SAM}/StepFunctionsError.json": (None, "unsupported"),
}


def prepare(name: str, corpus: Path, ws: Path) -> tuple[Any, str | None]:
    """The event to send, and the workspace path it should produce outputs for."""
    if name.endswith("s3EventDecodedKey.json"):  # 'Happy%20Face.jpg', size 1024
        (ws / "Happy Face.jpg").write_bytes(padded_small(1024))
        return load(corpus, name), "Happy Face.jpg"
    if name.endswith("ObjectCreatedEvent.json"):  # IMG_m7fzo3.jpg, size 184662
        (ws / "IMG_m7fzo3.jpg").write_bytes(padded("photo.jpg", 184662))
        return load(corpus, name), "IMG_m7fzo3.jpg"
    if name.endswith("S3Put.json"):
        rel = "uploads/sample photo+1.jpg"
        (ws / "uploads").mkdir()
        shutil.copy(SAMPLES / "photo.jpg", ws / rel)
        ev = render(
            corpus / name, region="us-east-1", partition="aws", bucket="example-bucket", key=s3_key(rel)
        )
        ev["Records"][0]["s3"]["object"]["size"] = (ws / rel).stat().st_size  # the template says 1024
        return ev, rel
    if name.endswith("S3Delete.json"):
        (ws / "uploads").mkdir()
        shutil.copy(SAMPLES / "photo.jpg", ws / "uploads/gone.jpg")
        ev = render(
            corpus / name,
            region="us-east-1",
            partition="aws",
            bucket="example-bucket",
            key="uploads/gone.jpg",
        )
        return ev, None
    if name.endswith("S3BatchInvocation.json"):
        rel = "batch/logo 1.png"
        (ws / "batch").mkdir()
        shutil.copy(SAMPLES / "logo.png", ws / rel)
        return render(corpus / name, key=s3_key(rel), bucket_arn="arn:aws:s3:::example-bucket"), rel
    if name.endswith("StepFunctionsError.json"):
        return render(corpus / name, error="ErrorName", cause="This is the cause of the error."), None
    return load(corpus, name), None


def padded_small(size: int) -> bytes:
    """A real PNG of at most ``size`` bytes, padded to exactly ``size``."""
    import io

    with Image.open(SAMPLES / "logo.png") as im:
        buf = io.BytesIO()
        im.convert("RGB").resize((24, 24)).save(buf, "PNG")
    data = buf.getvalue()
    assert len(data) <= size
    return data + b"\0" * (size - len(data))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_event(name: str, corpus: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket, expected = EXPECTED[name]
    configure(monkeypatch, workspace, bucket=bucket or "unrelated-bucket")
    event, rel = prepare(name, corpus, workspace)
    ctx = FakeContext()
    if expected == "unsupported":
        with pytest.raises(UnsupportedEvent):
            lambda_function.handler(event, ctx)
        assert outputs(workspace) == []
        return
    if expected in ("sqs-fail", "sqs-retry"):
        res = lambda_function.handler(event, ctx)
        assert res == {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"]]}
        assert outputs(workspace) == []
        return
    res = lambda_function.handler(event, ctx)
    if expected in ("Succeeded",):
        (result,) = res["results"]
        assert result["resultCode"] == "Succeeded", result
        if rel is None:  # the Powertools samples name a .json.gz no rule matches
            assert "no rule matches" in result["resultString"]
            assert outputs(workspace) == []
        return
    assert res["counts"] == {expected: 1}, res
    if expected == "ok":
        assert rel is not None
        sizes = thumbs(workspace, rel)
        assert len(sizes) == 6 and all(max(s) <= 1920 for s in sizes)
        doc = json.loads((workspace / f"processed/_manifests/{rel}.json").read_text())
        assert doc["source"]["size"] == (workspace / rel).stat().st_size
        assert doc["source"]["path"] == rel
    else:
        assert outputs(workspace) == []


def test_corpus_events_for_another_bucket_are_rejected(
    corpus: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Upload events whose bucket is not the mounted one: rejected, nothing touched, no retry."""
    configure(monkeypatch, workspace, bucket="the-mounted-bucket")
    (workspace / "IMG_m7fzo3.jpg").write_bytes(padded("photo.jpg", 184662))
    for name in (
        "s3EventBridgeNotificationObjectCreatedEvent.json",
        "s3EventDecodedKey.json",
        "s3Event.json",
    ):
        res = lambda_function.handler(load(corpus, f"{POWERTOOLS}/{name}"), FakeContext())
        assert res["counts"] == {"rejected": 1}, name
        assert "the-mounted-bucket" in res["failures"][0]["reason"]
    res = lambda_function.handler(
        load(corpus, f"{POWERTOOLS}/s3BatchOperationEventSchemaV2.json"), FakeContext()
    )
    assert res["results"][0]["resultCode"] == "PermanentFailure"
    assert outputs(workspace) == []


def test_corpus_sqs_s3_event_processed_once_the_object_is_there(
    corpus: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """powertools/s3SqsEvent.json names test.pdf (104,681 bytes, a version id): once a PDF of that size is
    on the mount the record succeeds; the manifest carries the event's version id and ETag."""
    # only thumbnails (first page) for PDFs, so the outcome does not depend on the other pipelines
    configure(
        monkeypatch, workspace, bucket="xxx", rules='[{"include": ["*.pdf"], "pipelines": ["thumbnails"]}]'
    )
    event = load(corpus, f"{POWERTOOLS}/s3SqsEvent.json")
    (workspace / "test.pdf").write_bytes(padded("document.pdf", 104681))
    assert lambda_function.handler(event, FakeContext()) == {"batchItemFailures": []}
    written = outputs(workspace)
    assert "processed/_manifests/test.pdf.json" in written
    assert "processed/thumbnails/thumb/test.pdf.jpg" in written
    manifest = json.loads((workspace / "processed/_manifests/test.pdf.json").read_text())
    assert manifest["source"]["version_id"] == "yd3d4HaWOT2zguDLvIQLU6ptDTwKBnQV"
    assert manifest["source"]["etag"] == "2e3ad1e983318bbd8e73b080e2997980"


def test_distributed_map_rejects_missing_keys(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, workspace)
    with pytest.raises(BatchItemsFailed, match="string 'Key'"):
        lambda_function.handler({"Items": [{"Size": 3}], "BatchInput": {}}, FakeContext())
    assert outputs(workspace) == []
