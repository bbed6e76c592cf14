"""Engine behaviour that the CLI does not reach: event metadata, sync lag, deadlines, progress."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

from conftest import SAMPLES, failure_records, files_but_failure_records
from gate_pipeline import gate_engine

from config.settings import load_settings
from pipelines.core.engine import Engine, SourceMeta


def engine_for(ws: Path, **overrides: object) -> Engine:
    return Engine(load_settings(None, workspace=ws, **overrides))


def test_event_for_a_file_not_yet_on_the_mount_is_retryable(workspace: Path) -> None:
    eng = engine_for(workspace, sync={"visibility_wait_seconds": 0.6})
    t0 = time.monotonic()
    res = eng.process("in/late.jpg", meta=SourceMeta(size=123, version_id="v1"))
    assert res.status == "failed" and res.retryable and "not on the mount" in (res.error or "")
    assert time.monotonic() - t0 >= 0.5  # it waited before giving up
    assert not (workspace / "processed").exists()


def test_event_size_mismatch_is_retryable_never_an_older_version(workspace: Path) -> None:
    (workspace / "in").mkdir()
    shutil.copy(SAMPLES / "logo.png", workspace / "in/logo.png")
    size = (workspace / "in/logo.png").stat().st_size
    eng = engine_for(workspace, sync={"visibility_wait_seconds": 0})
    res = eng.process("in/logo.png", meta=SourceMeta(size=size + 1))
    assert res.status == "failed" and res.retryable and "in the event" in (res.error or "")
    assert not (workspace / "processed").exists()


def test_event_waits_for_the_object_to_appear(workspace: Path) -> None:
    (workspace / "in").mkdir()
    data = (SAMPLES / "logo.png").read_bytes()

    def upload_later() -> None:
        time.sleep(0.7)
        (workspace / "in/logo.png").write_bytes(data)

    threading.Thread(target=upload_later).start()
    eng = engine_for(workspace, sync={"visibility_wait_seconds": 10})
    res = eng.process(
        "in/logo.png", meta=SourceMeta(size=len(data), version_id="3HL4kqtJlcpXroDTDmJ", etag="abc")
    )
    assert res.status == "ok", res
    manifest = (workspace / res.manifest).read_text() if res.manifest else ""
    assert '"version_id": "3HL4kqtJlcpXroDTDmJ"' in manifest and '"etag": "abc"' in manifest


def test_deadline_gives_timeout_without_outputs_or_manifest(workspace: Path) -> None:
    (workspace / "in").mkdir()
    shutil.copy(SAMPLES / "photo.jpg", workspace / "in/photo.jpg")
    res = engine_for(workspace).process("in/photo.jpg", deadline=time.monotonic() - 1)
    assert res.status == "timeout" and res.retryable
    assert files_but_failure_records(workspace) == ["in/photo.jpg"]  # no output, no manifest
    (record,) = failure_records(workspace).values()  # but the report can say why
    assert record["status"] == "timeout" and record["error"] == res.error


def test_manifest_identity_includes_event_version(workspace: Path) -> None:
    (workspace / "in").mkdir()
    shutil.copy(SAMPLES / "logo.png", workspace / "in/logo.png")
    size = (workspace / "in/logo.png").stat().st_size
    eng = engine_for(workspace)
    assert eng.process("in/logo.png", meta=SourceMeta(size=size, version_id="v1")).status == "ok"
    assert eng.process("in/logo.png", meta=SourceMeta(size=size, version_id="v1")).status == "skipped"
    # same bytes on the mount but the event names another S3 version: processed again
    assert eng.process("in/logo.png", meta=SourceMeta(size=size, version_id="v2")).status == "ok"


def test_a_failed_rerun_leaves_no_manifest_of_the_earlier_version(workspace: Path) -> None:
    """The source changed and its rerun fails after writing one output (at the path the first run's
    output had): the earlier manifest is gone before anything is written, so no manifest is left naming
    an output the failed job deleted; only the failure record, about the new version, remains."""
    eng = gate_engine(workspace)
    (workspace / "in").mkdir()
    src = workspace / "in/a.txt"
    src.write_text("first version\n")
    first = eng.process("in/a.txt")
    assert first.status == "ok" and first.manifest
    src.write_text("FAIL: the second version\n")
    rerun = eng.process("in/a.txt")
    assert rerun.status == "failed" and rerun.error_kind == "bad_input", rerun
    for path in workspace.rglob("*.json"):  # every manifest left names outputs that are there
        doc = json.loads(path.read_bytes())
        for out in doc["outputs"]:
            assert (workspace / out["path"]).is_file(), f"{path.name} names the deleted {out['path']}"
    assert not (workspace / first.manifest).exists()
    record = failure_records(workspace)["in/a.txt"]
    assert record["source"]["size"] == src.stat().st_size and record["error"] == rerun.error
