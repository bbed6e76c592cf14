"""The Lambda handlers end to end on real images: upload triggers, SQS partial batches, prefix runs with
a cursor, Distributed Map, S3 Batch Operations, sync lag, deadlines, logs and EMF metrics."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import SAMPLES, failure_records, files_but_failure_records
from lambda_support import BUCKET, EVENTS, FakeContext, configure, render, s3_key
from PIL import Image

from config.errors import UnsupportedEvent
from handlers import batch_events as batch
from handlers import events, lambda_function, s3_trigger, sqs_trigger
from handlers.observability import logger

BOXES = {"thumb": (150, 150), "medium": (800, 600), "large": (1920, 1080)}


def put(ws: Path, rel: str, sample: str = "photo.jpg", data: bytes | None = None) -> tuple[int, str]:
    """Place a file in the workspace as if uploaded; returns (size, md5 etag)."""
    path = ws / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = data if data is not None else (SAMPLES / sample).read_bytes()
    path.write_bytes(blob)
    return len(blob), hashlib.md5(blob).hexdigest()


def files(ws: Path) -> dict[str, int]:
    return {p.relative_to(ws).as_posix(): p.stat().st_mtime_ns for p in ws.rglob("*") if p.is_file()}


def check_thumbnails(ws: Path, rel: str, displayed: tuple[int, int]) -> None:
    """Every size x format exists, decodes, fits its box and keeps the aspect ratio."""
    for size, (bw, bh) in BOXES.items():
        for ext, fmt in (("jpg", "JPEG"), ("webp", "WEBP")):
            with Image.open(ws / f"processed/thumbnails/{size}/{rel}.{ext}") as im:
                im.load()
                assert im.format == fmt
                w, h = im.size
                assert w <= bw and h <= bh and (w == min(bw, displayed[0]) or h == min(bh, displayed[1]))
                assert abs(w / h - displayed[0] / displayed[1]) < 0.02


def manifest(ws: Path, rel: str) -> dict[str, Any]:
    return json.loads((ws / f"processed/_manifests/{rel}.json").read_text())


def s3_event(ws: Path, *objs: tuple[str, str], bucket: str = BUCKET) -> dict[str, Any]:
    """A two-record S3 notification (tests/events/s3-put-two-records.json) for files in ``ws``."""
    assert len(objs) == 2
    values = {"bucket": bucket}
    for i, (rel, version) in enumerate(objs, 1):
        data = (ws / rel).read_bytes() if (ws / rel).exists() else b"missing"
        values |= {
            f"key{i}": s3_key(rel),
            f"size{i}": str(len(data)),
            f"etag{i}": hashlib.md5(data).hexdigest(),
            f"version{i}": version,
        }
    return render(EVENTS / "s3-put-two-records.json", **values)


@pytest.fixture
def log_stream(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """Everything the Powertools logger (and the engine, routed through it) writes."""
    buf = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", buf)
    return buf


def log_lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.startswith("{")]


def emf(stdout: str) -> list[dict[str, Any]]:
    return [d for d in (json.loads(x) for x in stdout.splitlines() if x.startswith('{"_aws"'))]


# -- upload triggers ---------------------------------------------------------------------------------


def test_s3_notification_processes_decoded_keys_and_is_idempotent(
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
    log_stream: io.StringIO,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure(monkeypatch, workspace, aws__metrics_namespace="MW-Test", aws__service_name="mw-test")
    a, b = "in/Été 2024/my photo+1.jpg", "in/logo 100%.png"
    put(workspace, a, "photo.jpg")
    put(workspace, b, "logo.png")
    event = s3_event(workspace, (a, "v-photo-1"), (b, "v-logo-1"))
    assert event["Records"][0]["s3"]["object"]["key"] == "in/%C3%89t%C3%A9+2024/my+photo%2B1.jpg"

    res = s3_trigger.handler(event, FakeContext(aws_request_id="req-put-1"))
    assert res["counts"] == {"ok": 2} and res["failures"] == []
    check_thumbnails(workspace, a, (1200, 1600))  # EXIF orientation 6 applied
    check_thumbnails(workspace, b, Image.open(SAMPLES / "logo.png").size)
    doc = manifest(workspace, a)
    assert doc["source"]["version_id"] == "v-photo-1"
    assert doc["source"]["etag"] == event["Records"][0]["s3"]["object"]["eTag"]
    assert len(doc["outputs"]) == 6

    lines = log_lines(log_stream)
    per_source = [x for x in lines if x.get("source_key") == a]
    assert per_source and all(x["correlation_id"] == "req-put-1" for x in per_source)
    assert any(x["message"].startswith("processed") and x["status"] == "ok" for x in per_source)
    metrics = emf(capsys.readouterr().out)
    assert metrics and metrics[-1]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "MW-Test"
    assert metrics[-1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]
    assert metrics[-1]["service"] == "mw-test" and all(x["service"] == "mw-test" for x in per_source)
    assert metrics[-1]["JobsOk"] == [1.0, 1.0]
    assert sorted(metrics[-1]["SourceBytes"]) == sorted(
        [float((workspace / a).stat().st_size), float((workspace / b).stat().st_size)]
    )
    assert all(v > 0 for v in metrics[-1]["OutputBytes"])
    assert metrics[-1]["BytesRead1MiB"] == metrics[-1]["SourceBytes"]

    # a retried delivery: nothing is written again, both are logged as skipped
    before = files(workspace)
    res = s3_trigger.handler(event, FakeContext(aws_request_id="req-put-2"))
    assert res["counts"] == {"skipped": 2}
    assert files(workspace) == before
    assert any(
        x.get("status") == "skipped" and x["correlation_id"] == "req-put-2" for x in log_lines(log_stream)
    )


def test_eventbridge_object_created_and_other_types(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, workspace)
    rel = "uploads/cat photo.jpg"
    size, etag = put(workspace, rel)
    event = render(
        EVENTS / "eventbridge-object-created.json",
        bucket=BUCKET,
        key=s3_key(rel),
        size=str(size),
        etag=etag,
        version="eb-v1",
    )
    res = lambda_function.handler(event, FakeContext())
    assert res["counts"] == {"ok": 1}
    check_thumbnails(workspace, rel, (1200, 1600))
    assert manifest(workspace, rel)["source"]["version_id"] == "eb-v1"

    before = files(workspace)
    for kind, reason in (("Object Deleted", "DeleteObject"), ("Object Restore Completed", None)):
        ev = json.loads(json.dumps(event))
        ev["detail-type"] = kind
        ev["detail"]["reason"] = reason
        res = lambda_function.handler(ev, FakeContext())
        assert res["counts"] == {"ignored": 1}
    assert files(workspace) == before


def test_ignored_and_rejected_keys_do_no_work(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, workspace, aws__key_prefix="media/")
    put(workspace, "in/a.jpg")
    put(workspace, "in/notes.txt", data=b"not media")
    put(workspace, "processed/thumbnails/thumb/in/a.jpg.jpg")  # an output (recursion guard)
    before = files(workspace)
    template = EVENTS / "s3-put-two-records.json"

    def one(key: str, bucket: str = BUCKET, event_name: str = "ObjectCreated:Put") -> dict[str, Any]:
        ev = render(
            template, bucket=bucket, key1=s3_key(key), size1="1", etag1="e", version1="v",
            key2="x", size2="1", etag2="e", version2="v",
        )  # fmt: skip
        ev["Records"] = ev["Records"][:1]
        ev["Records"][0]["eventName"] = event_name
        return s3_trigger.handler(ev, FakeContext())

    cases = {
        ("media/in/a.jpg", "other-bucket", "ObjectCreated:Put"): "rejected",
        ("in/a.jpg", BUCKET, "ObjectCreated:Put"): "rejected",  # outside the mounted prefix
        ("media/../etc/passwd", BUCKET, "ObjectCreated:Put"): "rejected",
        ("media/in//a.jpg", BUCKET, "ObjectCreated:Put"): "rejected",
        ("media/in/a.jpg", BUCKET, "ObjectRemoved:Delete"): "ignored",
        ("media/in/a.jpg", BUCKET, "ObjectRestore:Completed"): "ignored",
        ("media/in/a.jpg", BUCKET, "LifecycleExpiration:Delete"): "ignored",
        # a path the triage does not take: "skipped", with the reason the CLI gives for the same path
        ("media/processed/thumbnails/thumb/in/a.jpg.jpg", BUCKET, "ObjectCreated:Put"): "skipped",
        ("media/in/notes.txt", BUCKET, "ObjectCreated:Put"): "skipped",
        ("media/.hidden/a.jpg", BUCKET, "ObjectCreated:Put"): "skipped",
        ("media/in/", BUCKET, "ObjectCreated:Put"): "rejected",  # a "folder" marker
    }
    for (key, bucket, name), expected in cases.items():
        res = one(key, bucket, name)
        assert res["counts"] == {expected: 1}, (key, name, res)
        if expected == "rejected":
            assert res["failures"][0]["reason"]
    assert files(workspace) == before


def test_sync_lag_is_retryable_and_never_processes_an_older_version(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, workspace, visibility_wait="0")
    put(workspace, "in/old.jpg", "logo.png")  # the mount still has an older, different object
    event = s3_event(workspace, ("in/missing.jpg", "v1"), ("in/old.jpg", "v2"))
    event["Records"][1]["s3"]["object"]["size"] += 10  # the event's version is bigger
    with pytest.raises(s3_trigger.RetryLater, match="retryabl") as info:
        s3_trigger.handler(event, FakeContext())
    assert "not on the mount" in str(info.value) and "in the event" in str(info.value)
    assert not (workspace / "processed").exists()

    # the new version lands on the mount: the redelivered event is processed
    size, _ = put(workspace, "in/old.jpg", "photo.jpg")
    put(workspace, "in/missing.jpg", "photo.jpg")
    event["Records"][1]["s3"]["object"]["size"] = size
    event["Records"][0]["s3"]["object"]["size"] = size
    assert s3_trigger.handler(event, FakeContext())["counts"] == {"ok": 2}
    check_thumbnails(workspace, "in/old.jpg", (1200, 1600))


def test_deadline_comes_from_the_context_minus_the_margin(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, workspace, aws__deadline_margin_seconds="30")
    put(workspace, "in/a.jpg")
    put(workspace, "in/b.jpg")
    event = s3_event(workspace, ("in/a.jpg", "v"), ("in/b.jpg", "v"))
    with pytest.raises(s3_trigger.RetryLater, match="time budget"):
        s3_trigger.handler(event, FakeContext(remaining_ms=29_000))
    assert not (workspace / "processed").exists()
    assert s3_trigger.handler(event, FakeContext(remaining_ms=300_000))["counts"] == {"ok": 2}


def test_permanent_failures_are_returned_not_raised(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, workspace)
    put(workspace, "in/good.jpg")
    put(workspace, "in/broken.jpg", data=(SAMPLES / "photo.jpg").read_bytes()[:3000])
    res = s3_trigger.handler(s3_event(workspace, ("in/good.jpg", "v"), ("in/broken.jpg", "v")), FakeContext())
    assert res["counts"] == {"ok": 1, "failed": 1}
    (failure,) = res["failures"]
    assert failure["key"] == "in/broken.jpg" and not failure["retryable"] and failure["error"]
    assert not any("broken" in p for p in files_but_failure_records(workspace / "processed"))
    assert failure_records(workspace)["in/broken.jpg"]["error"] == failure["error"]


# -- SQS ----------------------------------------------------------------------------------------------


def sqs_event(corpus: Path, bodies: list[str]) -> dict[str, Any]:
    """SQS records shaped like the corpus sample (powertools/s3SqsEvent.json) with our bodies."""
    template = json.loads((corpus / "events/powertools/s3SqsEvent.json").read_text())["Records"][0]
    records = []
    for i, body in enumerate(bodies):
        rec = json.loads(json.dumps(template))
        rec["messageId"] = f"msg-{i}"
        rec["body"] = body
        records.append(rec)
    return {"Records": records}


def sns_envelope(corpus: Path, message: str) -> str:
    """An SNS notification envelope (the body SNS -> SQS delivers), from the corpus sample."""
    outer = json.loads((corpus / "events/powertools/snsSqsEvent.json").read_text())["Records"][0]
    env = json.loads(outer["body"])
    env["Message"] = message
    return json.dumps(env)


def test_sqs_partial_batch_failures(workspace: Path, monkeypatch: pytest.MonkeyPatch, corpus: Path) -> None:
    configure(monkeypatch, workspace)
    for name in ("a.jpg", "b.png", "c.jpg"):
        put(workspace, f"q/{name}", "logo.png" if name.endswith("png") else "photo.jpg")
    direct = s3_event(workspace, ("q/a.jpg", "va"), ("q/b.png", "vb"))
    via_sns = s3_event(workspace, ("q/c.jpg", "vc"), ("q/a.jpg", "va"))
    missing = s3_event(workspace, ("q/late.jpg", "v"), ("q/a.jpg", "va"))
    size, etag = put(workspace, "q/eb.jpg")
    eventbridge = render(
        EVENTS / "eventbridge-object-created.json",
        bucket=BUCKET,
        key="q/eb.jpg",
        size=str(size),
        etag=etag,
        version="1",
    )
    bodies = [
        json.dumps(direct),
        sns_envelope(corpus, json.dumps(via_sns)),
        "not json at all",
        json.dumps(missing),
        json.dumps(eventbridge),
        json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": BUCKET}),
    ]
    res = lambda_function.handler(sqs_event(corpus, bodies), FakeContext())
    assert res == {"batchItemFailures": [{"itemIdentifier": "msg-2"}, {"itemIdentifier": "msg-3"}]}
    for rel in ("q/a.jpg", "q/c.jpg", "q/eb.jpg"):
        check_thumbnails(workspace, rel, (1200, 1600))
    check_thumbnails(workspace, "q/b.png", Image.open(SAMPLES / "logo.png").size)
    assert not (workspace / "processed/_manifests/q/late.jpg.json").exists()

    # the failed message comes back once the object is there
    put(workspace, "q/late.jpg")
    again = json.loads(json.dumps(missing))
    again["Records"][0]["s3"]["object"]["size"] = (workspace / "q/late.jpg").stat().st_size
    assert sqs_trigger.handler(sqs_event(corpus, [json.dumps(again)]), FakeContext()) == {
        "batchItemFailures": []
    }
    check_thumbnails(workspace, "q/late.jpg", (1200, 1600))


# -- prefix runs --------------------------------------------------------------------------------------


def test_prefix_run_with_cursor_processes_everything_exactly_once(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, workspace)
    names = ["incoming/b/2.jpg", "incoming/a.png", "incoming/b/1 x.jpg", "incoming/c.txt", "incoming/z.jpg"]
    for n in names:
        put(
            workspace,
            n,
            "logo.png" if n.endswith(".png") else "photo.jpg",
            b"text" if n.endswith(".txt") else None,
        )
    put(workspace, "other/skip.jpg")
    seen: list[dict[str, Any]] = []
    request: dict[str, Any] = {"prefix": "incoming/", "max_items": 2}
    calls = 0
    while True:
        calls += 1
        res = batch.handler(request, FakeContext())
        seen += [{"n": res["processed"], **res["counts"]}]
        if res["done"]:
            assert "cursor" not in res
            break
        assert res["cursor"] and res["processed"] == 2
        request = {**request, "cursor": res["cursor"]}
        assert calls < 10
    assert calls == 3
    totals: dict[str, int] = {}
    for s in seen:
        for k, v in s.items():
            if k != "n":
                totals[k] = totals.get(k, 0) + v
    # nothing skipped but incoming/c.txt (no rule takes it): nothing was processed twice
    assert totals == {"ok": 4, "skipped": 1}
    for n in names:
        if n.endswith(".jpg"):
            check_thumbnails(workspace, n, (1200, 1600))
    assert not (workspace / "processed/thumbnails/thumb/other").exists()

    # everything is done: a fresh run skips all of it from the manifests
    res = batch.handler({"prefix": "incoming/"}, FakeContext())
    assert res["done"] and res["counts"] == {"skipped": 5}


def test_prefix_run_stops_at_the_time_budget(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, workspace, aws__deadline_margin_seconds="5")
    put(workspace, "in/a.jpg")
    res = batch.handler({"prefix": "in"}, FakeContext(remaining_ms=4000))
    assert res["done"] is False and res["processed"] == 0 and res["cursor"] is None
    assert res["stopped"] == "time budget reached"
    assert not (workspace / "processed").exists()
    res = batch.handler({"prefix": "in", "cursor": res["cursor"]}, FakeContext())
    assert res["done"] and res["counts"] == {"ok": 1}


@pytest.mark.parametrize(
    "request_, message",
    [
        ({"prefix": "../etc"}, "'.' or '..'"),
        ({"prefix": "in/", "pipelines": ["nope"]}, "unknown pipeline 'nope'"),
        ({"prefix": "in/", "max_items": 0}, "max_items"),
        ({"prefix": "in/", "cursor": "../x"}, "cursor"),
        ({"prefix": "nowhere/"}, "no such file or folder"),
    ],
)
def test_prefix_run_bad_requests(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, request_: dict[str, Any], message: str
) -> None:
    configure(monkeypatch, workspace)
    put(workspace, "in/a.jpg")
    with pytest.raises(ValueError, match=message):
        batch.handler(request_, FakeContext())
    assert not (workspace / "processed").exists()


# -- Step Functions Distributed Map -------------------------------------------------------------------


def map_event(ws: Path, rel1: str, rel2: str, bucket: str = BUCKET) -> dict[str, Any]:
    values: dict[str, str] = {"bucket": bucket}
    for i, rel in enumerate((rel1, rel2), 1):
        data = (ws / rel).read_bytes() if (ws / rel).exists() else b""
        values |= {f"key{i}": rel, f"size{i}": str(len(data)), f"etag{i}": hashlib.md5(data).hexdigest()}
    return render(EVENTS / "distributed-map-batch.json", **values)


def test_distributed_map_batch(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, workspace)
    put(workspace, "dm/one 1.jpg")
    put(workspace, "dm/two+2.png", "logo.png")
    res = lambda_function.handler(map_event(workspace, "dm/one 1.jpg", "dm/two+2.png"), FakeContext())
    assert res["counts"] == {"ok": 2}
    assert [r["key"] for r in res["results"]] == ["dm/one 1.jpg", "dm/two+2.png"]
    assert all(r["manifest"] and r["outputs"] == 6 and r["status"] == "ok" for r in res["results"])
    check_thumbnails(workspace, "dm/one 1.jpg", (1200, 1600))
    doc = manifest(workspace, "dm/one 1.jpg")
    assert doc["source"]["etag"] == hashlib.md5((workspace / "dm/one 1.jpg").read_bytes()).hexdigest()

    # a permanent failure (corrupt file, Glacier) fails the batch with BatchItemsFailed
    put(workspace, "dm/bad.jpg", data=b"\xff\xd8\xff\xe0 not really a jpeg")
    ev = map_event(workspace, "dm/bad.jpg", "dm/one 1.jpg")
    ev["Items"].append({"Key": "dm/cold.jpg", "Size": 10, "Etag": '"x"', "StorageClass": "DEEP_ARCHIVE"})
    with pytest.raises(batch.BatchItemsFailed) as info:
        lambda_function.handler(ev, FakeContext())
    detail = json.loads(str(info.value))
    assert detail["counts"] == {"failed": 2, "skipped": 1}
    reasons = {f["key"]: f for f in detail["failures"]}
    assert "Glacier" in reasons["dm/cold.jpg"]["error"] and not reasons["dm/cold.jpg"]["retryable"]
    assert reasons["dm/bad.jpg"]["error_kind"] and not reasons["dm/bad.jpg"]["retryable"]

    # a retryable one (not on the mount yet) makes it BatchItemsRetryable; a retry skips the done items
    ev = map_event(workspace, "dm/one 1.jpg", "dm/late.jpg")
    ev["Items"][1]["Size"] = (SAMPLES / "photo.jpg").stat().st_size
    with pytest.raises(batch.BatchItemsRetryable):
        lambda_function.handler(ev, FakeContext())
    put(workspace, "dm/late.jpg")
    assert lambda_function.handler(ev, FakeContext())["counts"] == {"skipped": 1, "ok": 1}

    # a single item without ItemBatcher; another bucket in BatchInput is rejected
    item = map_event(workspace, "dm/one 1.jpg", "dm/late.jpg")["Items"][0]
    assert lambda_function.handler(item, FakeContext())["counts"] == {"skipped": 1}
    with pytest.raises(batch.BatchItemsFailed, match="other-bucket"):
        lambda_function.handler(
            map_event(workspace, "dm/one 1.jpg", "dm/late.jpg", "other-bucket"), FakeContext()
        )


# -- S3 Batch Operations ------------------------------------------------------------------------------


def test_s3_batch_operations_schema_1(workspace: Path, monkeypatch: pytest.MonkeyPatch, corpus: Path) -> None:
    configure(monkeypatch, workspace)
    rel = "batch/a photo+.jpg"
    put(workspace, rel)
    event = render(
        corpus / "events/sam-cli/S3BatchInvocation.json", key=s3_key(rel), bucket_arn=f"arn:aws:s3:::{BUCKET}"
    )
    res = lambda_function.handler(event, FakeContext())
    assert res["invocationSchemaVersion"] == "1.0" and res["invocationId"] == event["invocationId"]
    (result,) = res["results"]
    assert result["taskId"] == event["tasks"][0]["taskId"]
    assert result["resultCode"] == "Succeeded" and result["resultString"].endswith(".json")
    check_thumbnails(workspace, rel, (1200, 1600))
    assert manifest(workspace, rel)["source"]["version_id"] == "1"

    missing = render(
        corpus / "events/sam-cli/S3BatchInvocation.json",
        key="batch/late.jpg",
        bucket_arn=f"arn:aws:s3:::{BUCKET}",
    )
    assert lambda_function.handler(missing, FakeContext())["results"][0]["resultCode"] == "TemporaryFailure"
    other = render(
        corpus / "events/sam-cli/S3BatchInvocation.json",
        key=s3_key(rel),
        bucket_arn="arn:aws:s3:::someone-else",
    )
    out = lambda_function.handler(other, FakeContext())["results"][0]
    assert out["resultCode"] == "PermanentFailure" and "someone-else" in out["resultString"]


def test_s3_batch_operations_schema_2_user_arguments(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, workspace, rules='[{"include": ["*.png"], "pipelines": ["thumbnails"]}]')
    put(workspace, "b2/doc.jpg", "photo.jpg")  # no rule matches .jpg: userArguments choose the pipeline
    put(workspace, "b2/broken.jpg", data=b"GIF89a broken")

    def invoke(key: str, pipelines: str) -> dict[str, Any]:
        ev = render(
            EVENTS / "s3-batch-operations-v2.json",
            key=s3_key(key),
            bucket=BUCKET,
            version="v9",
            pipelines=pipelines,
        )
        res = batch.handler(ev, FakeContext())
        assert res["invocationSchemaVersion"] == "2.0" and len(res["results"]) == 1
        return res["results"][0]

    ignored = invoke("b2/doc.jpg", "")  # no pipelines argument, no rule: nothing to do, not a failure
    assert ignored["resultCode"] == "Succeeded" and "no rule" in ignored["resultString"]
    assert not (workspace / "processed").exists()
    ok = invoke("b2/doc.jpg", "thumbnails")
    assert ok["resultCode"] == "Succeeded" and ok["resultString"].endswith("doc.jpg.json")
    out = invoke("b2/broken.jpg", "thumbnails")
    assert out["resultCode"] == "PermanentFailure" and out["resultString"]
    out = invoke("b2/doc.jpg", "thumbnails, no-such-pipeline")
    assert out["resultCode"] == "PermanentFailure" and "no-such-pipeline" in out["resultString"]
    with Image.open(workspace / "processed/thumbnails/thumb/b2/doc.jpg.webp") as im:
        assert max(im.size) == 150


def test_unknown_payloads_are_rejected(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, workspace)
    for payload in ({}, {"hello": 1}, [1, 2], {"Records": [{"eventSource": "aws:kinesis"}]}):
        with pytest.raises(ValueError, match=r"event|batch request"):
            lambda_function.handler(payload, FakeContext())


def test_a_broken_message_inside_an_event_is_an_unsupported_event(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, corpus: Path
) -> None:
    """One error for a payload, or a topic message inside it, that is no event the function handles."""
    configure(monkeypatch, workspace)
    event = json.loads((corpus / "events/powertools/snsEvent.json").read_text())
    event["Records"][0]["Sns"]["Message"] = "not json at all"
    with pytest.raises(UnsupportedEvent, match="sns message body is not JSON"):
        lambda_function.handler(event, FakeContext())
    with pytest.raises(UnsupportedEvent, match="neither an S3 notification"):
        events.message_body(json.dumps({"hello": "world"}))


def test_workspace_copy_of_samples_untouched(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sources are never modified by a handler run (outputs never overwrite sources)."""
    configure(monkeypatch, workspace, rules='[{"include": ["*.jpg", "*.png"], "pipelines": ["thumbnails"]}]')
    shutil.copytree(SAMPLES, workspace / "s", ignore=shutil.ignore_patterns("*.py", "*.md"))
    before = {p: hashlib.sha256((workspace / p).read_bytes()).hexdigest() for p in files(workspace)}
    res = batch.handler({"prefix": "s/"}, FakeContext())
    assert res["done"] and res["counts"] == {"ok": 3, "skipped": 7}  # photo, logo, page; 7 other files
    for p, digest in before.items():
        assert hashlib.sha256((workspace / p).read_bytes()).hexdigest() == digest
    assert sorted(os.listdir(workspace)) == ["processed", "s"]


def test_s3_notification_through_sns_directly(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, corpus: Path
) -> None:
    """S3 -> SNS -> Lambda: the corpus SNS event (powertools/snsEvent.json) carrying an S3 notification."""
    configure(monkeypatch, workspace)
    put(workspace, "sns/a b.jpg")
    put(workspace, "sns/c.png", "logo.png")
    event = json.loads((corpus / "events/powertools/snsEvent.json").read_text())
    event["Records"][0]["Sns"]["Message"] = json.dumps(
        s3_event(workspace, ("sns/a b.jpg", "1"), ("sns/c.png", "2"))
    )
    res = lambda_function.handler(event, FakeContext())
    assert res["counts"] == {"ok": 2}
    check_thumbnails(workspace, "sns/a b.jpg", (1200, 1600))


def test_sqs_records_past_the_deadline_fail_retryably(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, corpus: Path
) -> None:
    configure(monkeypatch, workspace, aws__deadline_margin_seconds="60")
    put(workspace, "q/a.jpg")
    put(workspace, "q/b.jpg")
    body = json.dumps(s3_event(workspace, ("q/a.jpg", "1"), ("q/b.jpg", "2")))
    res = sqs_trigger.handler(sqs_event(corpus, [body, body]), FakeContext(remaining_ms=59_000))
    assert res == {"batchItemFailures": [{"itemIdentifier": "msg-0"}, {"itemIdentifier": "msg-1"}]}
    assert not (workspace / "processed").exists()


def until_deadline_pipeline() -> Any:
    """A test pipeline: one small text output; for sources named 'slow*' it writes part of it, waits for
    the job's deadline and stops there, as a long transcode would (deadline.check raises JobTimeoutError)."""
    import time

    from pipelines.spec import Pipeline, PlannedOutput

    class UntilDeadline(Pipeline):
        name = "until_deadline"

        def plan(self, source: Any, settings: Any) -> list[PlannedOutput]:
            return [PlannedOutput("size", "txt", "text/plain")]

        def run(self, job: Any) -> None:
            if Path(job.source.relpath).name.startswith("slow") and job.deadline.remaining() < 30:
                job.write_output(self.name, "size", b"partial")
                time.sleep(job.deadline.remaining() + 0.05)
                job.deadline.check("finishing")
            job.write_output(self.name, "size", str(len(job.read_source())).encode())

    return UntilDeadline()


def test_prefix_run_timeout_inside_a_job_keeps_the_cursor_before_it(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from handlers.runtime import runtime

    configure(monkeypatch, workspace, aws__deadline_margin_seconds="5")
    for name in ("a.bin", "slow.bin", "z.bin"):
        put(workspace, f"in/{name}", data=name.encode() * 10)
    rt = runtime()
    rt.engine.registry.register(until_deadline_pipeline(), origin="tests")
    # a budget of ~2 s: a.bin finishes, slow.bin runs into the deadline (partial output removed)
    res = batch.handler({"prefix": "in/", "pipelines": ["until_deadline"]}, FakeContext(remaining_ms=7000))
    assert res["done"] is False and res["cursor"] == "in/a.bin" and res["counts"] == {"ok": 1}
    assert "during a job" in res["stopped"]
    assert not (workspace / "processed/until_deadline/size/in/slow.bin.txt").exists()
    res = batch.handler(
        {"prefix": "in/", "pipelines": ["until_deadline"], "cursor": res["cursor"]},
        FakeContext(remaining_ms=300_000),
    )
    assert res["done"] is True and res["counts"] == {"ok": 2}  # slow.bin and z.bin; a.bin not again
    assert (workspace / "processed/until_deadline/size/in/slow.bin.txt").read_text() == str(
        len(b"slow.bin" * 10)
    )


def test_long_jobs_log_progress_lines(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, log_stream: io.StringIO
) -> None:
    """A video through the Lambda path: the transcode's progress shows up in the JSON logs as it runs."""
    configure(monkeypatch, workspace, aws__progress_log_seconds="0")
    put(workspace, "in/clip.mp4", "clip.mp4")
    put(workspace, "in/logo.png", "logo.png")
    event = s3_event(workspace, ("in/clip.mp4", "v1"), ("in/logo.png", "v1"))
    res = s3_trigger.handler(event, FakeContext(aws_request_id="req-progress"))
    assert res["counts"] == {"ok": 2}, res
    progress = [x for x in log_lines(log_stream) if "progress" in x and x.get("source_key") == "in/clip.mp4"]
    assert progress, "no progress lines logged"
    assert all(x["correlation_id"] == "req-progress" for x in progress)
    fractions = [x["progress"] for x in progress if x["pipeline"].startswith("transcode")]
    assert fractions and fractions == sorted(fractions) and fractions[-1] == 1.0
