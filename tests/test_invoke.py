"""``media-worker invoke``: the dispatching handler in-process on the committed events/ files, with a
Lambda-like context whose time really runs out; and an unwritable workspace reported once, as a
configuration error, by the CLI and the Lambda path alike."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, SAMPLES, cli_env, need_root, run_cli
from PIL import Image

from handlers.local.invoke import LocalContext

EVENTS = REPO / "events"
ODD_KEY = "uploads/beach day+sunset.jpg"
NOBODY = 65534


def invoke(ws: Path, name: str, *extra: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "invoke", "--event", str(EVENTS / name), "-w", str(ws), "--bucket", "media-worker-local", *extra,
        env=cli_env(**env),
    )  # fmt: skip


@pytest.fixture
def sample_ws(workspace: Path) -> Path:
    shutil.copytree(SAMPLES, workspace, dirs_exist_ok=True)
    (workspace / ODD_KEY).parent.mkdir()
    shutil.copy(SAMPLES / "photo.jpg", workspace / ODD_KEY)
    return workspace


def test_every_committed_event(sample_ws: Path) -> None:
    """The ready event files, in the order a user would try them; outputs decoded."""
    res = invoke(sample_ws, "s3-put-photo.json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"counts": {"ok": 1}, "failures": []}
    assert res.stdout.lstrip().startswith("{") and '"level"' not in res.stdout  # logs went to stderr
    assert '"level":"INFO"' in res.stderr
    with Image.open(sample_ws / "processed/thumbnails/medium/photo.jpg.webp") as im:
        assert im.size[0] < im.size[1]  # EXIF orientation 6 applied: portrait
    res = invoke(sample_ws, "s3-put-odd-key.json")
    assert json.loads(res.stdout)["counts"] == {"ok": 1}
    assert (sample_ws / f"processed/thumbnails/thumb/{ODD_KEY}.jpg").is_file()
    res = invoke(sample_ws, "sqs-batch-one-malformed.json")
    bad = json.loads((EVENTS / "sqs-batch-one-malformed.json").read_text())["Records"][1]["messageId"]
    assert json.loads(res.stdout) == {"batchItemFailures": [{"itemIdentifier": bad}]}
    res = invoke(sample_ws, "eventbridge-object-created.json")
    assert json.loads(res.stdout)["counts"] == {"ok": 1}
    assert "ocr" in (sample_ws / "processed/_manifests/scan.pdf.json").read_text()
    res = invoke(sample_ws, "distributed-map-batch.json")
    assert json.loads(res.stdout)["counts"] == {"ok": 2}, res.stdout
    earlier = {m: m.stat().st_mtime_ns for m in (sample_ws / "processed/_manifests").rglob("*.json")}
    res = invoke(sample_ws, "prefix-batch.json")
    doc = json.loads(res.stdout)
    # page.png and document.pdf were left; the 6 sources done before are skipped through their manifests
    assert doc["done"] is True and doc["counts"]["ok"] == 2 and set(doc["counts"]) == {"ok", "skipped"}, doc
    assert len(earlier) == 6 and all(m.stat().st_mtime_ns == t for m, t in earlier.items())


def test_event_sizes_are_the_samples() -> None:
    """events/ is generated from sample_media (events/make_events.py): regenerate when the samples change."""
    sys.path.insert(0, str(EVENTS))
    try:
        import make_events
    finally:
        sys.path.remove(str(EVENTS))
    for name, doc in make_events.events().items():
        assert json.loads((EVENTS / name).read_text()) == doc, f"events/{name} is stale: make events"


@pytest.mark.parametrize(
    ("content", "message"),
    [("not json", "is not JSON"), ('{"hello": "world"}', "unsupported event"), (None, "cannot read")],
)
def test_bad_event_is_a_usage_error(
    tmp_path: Path, workspace: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "event.json"
    if content is not None:
        path.write_text(content)
    res = run_cli("invoke", "--event", str(path), "-w", str(workspace))
    assert res.returncode == 2, res
    assert message in " ".join(res.stderr.split()) and "Traceback" not in res.stderr + res.stdout


def test_context_time_runs_out() -> None:
    ctx = LocalContext(timeout_s=3)
    first = ctx.get_remaining_time_in_millis()
    time.sleep(0.05)
    assert 2900 < first <= 3000 and ctx.get_remaining_time_in_millis() <= first - 50
    assert LocalContext(timeout_s=0.01).get_remaining_time_in_millis() >= 0


def test_budget_spent_is_a_retryable_error(sample_ws: Path) -> None:
    """--timeout equal to the deadline margin leaves no time: the object times out, and the S3 handler
    raises for Lambda's retry (exit 1 with Lambda's error document)."""
    res = invoke(
        sample_ws, "s3-put-photo.json", "--timeout", "5", MEDIA_WORKER_AWS__DEADLINE_MARGIN_SECONDS="5"
    )
    assert res.returncode == 1, res
    doc = json.loads(res.stdout)
    assert doc["errorType"] == "RetryLater" and "timeout" in doc["errorMessage"], doc
    assert not (sample_ws / "processed").exists()


@pytest.fixture
def root_owned_ws() -> Iterator[Path]:
    """A workspace owned by root, mode 755, that another uid can read but not write."""
    need_root("to run the worker as another uid")
    base = Path(tempfile.mkdtemp(prefix="mw-ro-"))
    os.chmod(base, 0o755)
    ws = base / "ws"
    shutil.copytree(SAMPLES, ws)
    for p in [ws, *ws.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    yield ws
    shutil.rmtree(base)


def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    env = cli_env(HOME="/tmp", MEDIA_WORKER_AWS__BUCKET="media-worker-local")
    return subprocess.run(
        [sys.executable, "-m", "handlers.cli", *args],
        capture_output=True, text=True, env=env, cwd=REPO, user=NOBODY, group=NOBODY, timeout=300,
    )  # fmt: skip


def test_unwritable_s3files_workspace_names_the_exact_fix(root_owned_ws: Path) -> None:
    """Deployed (the template sets the bucket, the key prefix and the access point's POSIX user), a
    root-owned 0755 workspace folder - what S3 Files makes of a folder without a directory marker - fails
    the invocation with the one command that makes the access point's user its owner."""
    import re
    import shlex

    env = cli_env(
        HOME="/tmp",
        MEDIA_WORKER_AWS__BUCKET="media-worker-local",
        MEDIA_WORKER_AWS__KEY_PREFIX="media/",
        MEDIA_WORKER_AWS__WORKSPACE_UID="1000",
        MEDIA_WORKER_AWS__WORKSPACE_GID="1001",
    )
    res = subprocess.run(
        [sys.executable, "-m", "handlers.cli", "invoke", "-e", str(EVENTS / "s3-put-photo.json"), "-w",
         str(root_owned_ws)],
        capture_output=True, text=True, env=env, cwd=REPO, user=NOBODY, group=NOBODY, timeout=300,
    )  # fmt: skip
    assert res.returncode == 1, res
    doc = json.loads(res.stdout)
    assert doc["errorType"] == "WorkspaceNotWritableError", doc
    found = re.search(r"`(aws s3api put-object [^`]*)`", doc["errorMessage"])
    assert found, doc["errorMessage"]
    argv = shlex.split(found.group(1))
    opts = dict(zip(argv[3::2], argv[4::2], strict=True))
    assert opts["--bucket"] == "media-worker-local" and opts["--key"] == "media/"
    meta = json.loads(opts["--metadata"])
    assert meta == {"file-owner": "1000", "file-group": "1001", "file-permissions": "0040755"}
    assert int(meta["file-permissions"], 8) & 0o170000 == 0o040000  # a directory
    assert "media-worker redrive" in doc["errorMessage"]


def test_unwritable_workspace_is_one_configuration_error(root_owned_ws: Path) -> None:
    ws = root_owned_ws
    res = as_nobody("run", "-w", str(ws), ".")
    assert res.returncode == 2, res
    assert res.stderr.count("not writable") == 1, res.stderr
    for word in (str(ws), f"uid {NOBODY}", "owned by 0:0", "PosixUser"):
        assert word in res.stderr.replace("\n", ""), (word, res.stderr)
    for name in ("s3-put-photo.json", "sqs-batch-one-malformed.json"):
        res = as_nobody("invoke", "-e", str(EVENTS / name), "-w", str(ws))
        assert res.returncode == 1, res
        doc = json.loads(res.stdout)
        assert doc["errorType"] == "WorkspaceNotWritableError", doc  # the whole invocation, not an item
        assert "internal error" not in res.stderr and res.stderr.count("configuration error") == 1
    assert not (ws / "processed").exists()
