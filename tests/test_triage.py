"""One triage: the same path gets the same status word and reason from the CLI, an S3 notification, an
SQS message, a prefix batch, a Distributed Map batch and S3 Batch Operations."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, SAMPLES, json_lines, run_cli
from lambda_support import BUCKET, EVENTS, FakeContext, configure, render, s3_key
from test_handlers import put, s3_event

from handlers import batch_events as batch
from handlers import events, lambda_function
from handlers.observability import logger
from handlers.runtime import Outcome
from pipelines.core.engine import Engine
from pipelines.core.triage import EXCLUDED, NO_RULE, OUTPUT_OF_LAYOUT, Verdict

PATHS = {
    "processed/thumbnails/thumb/in/a.jpg.jpg": OUTPUT_OF_LAYOUT,  # our own output
    "processed/_manifests/in/a.jpg.json": OUTPUT_OF_LAYOUT,
    "in/.drafts/b.jpg": EXCLUDED,  # a hidden folder
    "in/notes.txt": NO_RULE,
}


def from_logs(buf: io.StringIO, rel: str) -> tuple[str, str]:
    (line,) = [
        x
        for x in (json.loads(y) for y in buf.getvalue().splitlines() if y.startswith("{"))
        if x.get("path") == rel
    ]
    return line["status"], line["reason"]


def via_cli(ws: Path, rel: str, buf: io.StringIO) -> tuple[str, str]:
    res = run_cli("run", "-w", str(ws), "--json", rel)
    (r,) = json_lines(res.stdout)
    return r["status"], r["reason"]


def via_s3(ws: Path, rel: str, buf: io.StringIO) -> tuple[str, str]:
    lambda_function.handler(s3_event(ws, (rel, "v1"), ("in/a.jpg", "v2")), FakeContext())
    return from_logs(buf, rel)


def via_sqs(ws: Path, rel: str, buf: io.StringIO) -> tuple[str, str]:
    body = json.dumps(s3_event(ws, (rel, "v1"), ("in/a.jpg", "v2")))
    msg = {
        "messageId": "m1",
        "receiptHandle": "r",
        "body": body,
        "attributes": {},
        "messageAttributes": {},
        "md5OfBody": "x",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:q",
        "awsRegion": "eu-west-1",
    }
    assert lambda_function.handler({"Records": [msg]}, FakeContext()) == {"batchItemFailures": []}
    return from_logs(buf, rel)


def via_prefix(ws: Path, rel: str, buf: io.StringIO) -> tuple[str, str]:
    res = lambda_function.handler({"prefix": rel}, FakeContext())
    assert res["done"] and res["processed"] == 1, res
    return from_logs(buf, rel)


def via_distributed_map(ws: Path, rel: str, buf: io.StringIO) -> tuple[str, str]:
    event = {
        "Items": [{"Key": rel, "Size": (ws / rel).stat().st_size, "Etag": '"e"'}],
        "BatchInput": {"bucket": BUCKET},
    }
    (item,) = lambda_function.handler(event, FakeContext())["results"]
    return item["status"], item["reason"]


def via_batch_operations(ws: Path, rel: str, buf: io.StringIO) -> tuple[str, str]:
    ev = render(
        EVENTS / "s3-batch-operations-v2.json", key=s3_key(rel), bucket=BUCKET, version="v", pipelines=""
    )
    (r,) = batch.handler(ev, FakeContext())["results"]
    assert r["resultCode"] == "Succeeded"  # nothing to do is not a failure
    status, _, reason = r["resultString"].partition(": ")
    return status, reason


CALLERS: dict[str, Callable[[Path, str, io.StringIO], tuple[str, str]]] = {
    "cli": via_cli,
    "s3": via_s3,
    "sqs": via_sqs,
    "prefix": via_prefix,
    "distributed_map": via_distributed_map,
    "batch_operations": via_batch_operations,
}


@pytest.mark.parametrize("caller", sorted(CALLERS))
@pytest.mark.parametrize("rel", sorted(PATHS))
def test_same_path_same_word_and_reason(
    caller: str, rel: str, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, workspace)
    buf = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", buf)
    put(workspace, "in/a.jpg")
    put(workspace, rel, data=b"x" * 10)
    assert CALLERS[caller](workspace, rel, buf) == ("skipped", PATHS[rel])


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "events").glob("*.json")))
def test_each_event_is_routed_once(name: str, workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dispatcher decides an event's shape once and hands it on; no adapter decides it again."""
    configure(monkeypatch, workspace, bucket="media-worker-local")
    shutil.copytree(SAMPLES, workspace, dirs_exist_ok=True)
    (workspace / "uploads").mkdir()
    shutil.copy(SAMPLES / "photo.jpg", workspace / "uploads/beach day+sunset.jpg")
    calls: list[str] = []
    real = events.shape

    def counted(event: Any) -> events.Shape:
        calls.append(real(event))
        return calls[-1]

    monkeypatch.setattr(events, "shape", counted)
    lambda_function.handler(json.loads((REPO / "events" / name).read_text()), FakeContext())
    assert len(calls) == 1, calls


def test_each_object_is_triaged_once(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Lambda path asks the triage once per object and hands the verdict to the engine."""
    configure(monkeypatch, workspace)
    put(workspace, "in/a.jpg")
    put(workspace, "in/b.jpg")
    asked: list[str] = []
    real = Engine.triage

    def counted(self: Engine, relpath: str, pipelines: Any = None) -> Verdict:
        asked.append(relpath)
        return real(self, relpath, pipelines)

    monkeypatch.setattr(Engine, "triage", counted)
    res = lambda_function.handler(s3_event(workspace, ("in/a.jpg", "v1"), ("in/b.jpg", "v2")), FakeContext())
    assert res["counts"] == {"ok": 2}
    assert sorted(asked) == ["in/a.jpg", "in/b.jpg"]
    asked.clear()
    event = {"Items": [{"Key": "in/b.jpg", "Size": (workspace / "in/b.jpg").stat().st_size}]}
    (item,) = lambda_function.handler({**event, "BatchInput": {"bucket": BUCKET}}, FakeContext())["results"]
    assert item["status"] == "skipped" and asked == ["in/b.jpg"]  # up to date: its manifest matches


def test_outcome_wraps_the_engine_result() -> None:
    """The edge keeps the engine's SourceResult whole instead of copying its fields."""
    assert [f.name for f in dataclasses.fields(Outcome)] == ["key", "bucket", "result"]
