"""The local stack as the tests drive it: the real CLI (`media-worker stack up/down`), boto3 against its
S3 API, and checks that decode every output fetched back through S3 GET."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, cli_env

from handlers.local.stack import boto3_client

FAST_CONFIG = """
[transcode]
preset = "ultrafast"
ladder = [{height = 240, max_kbps = 800}, {height = 144, max_kbps = 300}]

[sync]
visibility_wait_seconds = 0.5

[stack]
max_receives = 4
retry_base_seconds = 0.5
"""


def fuse_or_skip() -> None:
    """Skip (saying why) where FUSE mounts are impossible; in CI (CI=true) that is a failure instead."""
    why = None
    if not Path("/dev/fuse").exists():
        why = "/dev/fuse does not exist"
    elif not os.access("/dev/fuse", os.R_OK | os.W_OK):
        why = "/dev/fuse is not readable and writable by this user"
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"FUSE is needed for the local stack and CI must run it: {why}")
        pytest.skip(f"no FUSE mounts here ({why}): the local stack cannot mount the bucket")


def stack_cli(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "handlers.cli", "stack", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env or cli_env(),
        timeout=timeout,
    )


def ctrl_c_stops_it() -> None:
    """``preexec_fn`` of a child the test will send SIGINT: the default disposition, whatever the test
    run inherited (a shell's background job, CI's runner, starts with SIGINT ignored; so would the child)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def stack_up_process(folder: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """`media-worker stack up --dir FOLDER ARGS` in the background, Ctrl-C-able (:func:`ctrl_c_stops_it`).
    Afterwards, whatever the test saw: that process killed if still there, `stack down`, and nothing left
    running or mounted."""
    fuse_or_skip()
    proc = subprocess.Popen(
        [sys.executable, "-m", "handlers.cli", "stack", "up", "--dir", str(folder), *args],
        cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=ctrl_c_stops_it,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()  # its parts live on in their own sessions, recorded in state.json: down stops them
            proc.wait()
        down_and_check(folder)


def down_and_check(folder: Path, *args: str) -> None:
    """`stack down` of the stack in ``folder`` (if any), then: nothing of it running or mounted."""
    down = stack_cli("down", "--dir", str(folder), *args)
    assert_nothing_left(folder)
    assert down.returncode == 0, down.stderr


def leftovers(root: Path) -> list[str]:
    """Processes (weed, trigger) whose command line names a path under ``root``, and mounts under it."""
    mounts = [
        line.split()[1]
        for line in Path("/proc/self/mounts").read_text().splitlines()
        if line.split()[1].startswith(f"{root}/")
    ]
    return processes_of(root) + [f"mount {m}" for m in mounts]


@dataclass
class LocalStack:
    dir: Path
    status: dict[str, Any]
    s3: Any  # a boto3 S3 client for the stack

    @property
    def bucket(self) -> str:
        return str(self.status["bucket"])

    def journal(self) -> list[dict[str, Any]]:
        path = self.dir / "journal.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def dead_letters(self) -> list[dict[str, Any]]:
        path = self.dir / "dead-letter.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def get(self, key: str) -> bytes:
        return bytes(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def manifest(self, source_key: str) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.get(f"processed/_manifests/{source_key}.json")))
        except self.s3.exceptions.NoSuchKey:
            return None

    def wait_manifest(
        self, key: str, ok: Callable[[dict[str, Any]], bool] = lambda m: True, timeout: float = 180
    ) -> dict[str, Any]:
        """The source's manifest, read through S3, once ``ok`` holds (bounded wait)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            m = self.manifest(key)
            if m is not None and ok(m):
                return m
            time.sleep(0.2)
        pytest.fail(f"no manifest for {key!r} within {timeout:.0f} s; journal tail: {self.journal()[-5:]}")

    def wait(self, what: str, cond: Callable[[], Any], timeout: float = 60) -> Any:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            value = cond()
            if value:
                return value
            time.sleep(0.1)
        pytest.fail(f"{what}: not within {timeout:.0f} s; journal tail: {self.journal()[-5:]}")


def processes_of(status_dir: Path) -> list[str]:
    """Command lines of live processes that belong to the stack in ``status_dir`` (weed, trigger)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(status_dir) in cmd and state != "Z" and int(proc.name) != os.getpid():
            found.append(cmd.strip())
    return found


def mounted(path: Path) -> bool:
    return any(line.split()[1] == str(path) for line in Path("/proc/self/mounts").read_text().splitlines())


def assert_nothing_left(folder: Path) -> None:
    left = processes_of(folder)
    assert not left, f"still running after down: {left}"
    assert not mounted(folder / "workspace"), f"{folder / 'workspace'} is still mounted"


@contextlib.contextmanager
def local_stack(folder: Path, *extra: str, config: str = FAST_CONFIG) -> Iterator[LocalStack]:
    """`media-worker stack up` (the real CLI) in ``folder``; `stack down --purge` afterwards, checking
    that nothing is left running or mounted."""
    fuse_or_skip()
    folder.mkdir(parents=True, exist_ok=True)
    cfg = folder.parent / f"{folder.name}.toml"
    cfg.write_text(config)
    try:  # a failed (or timed-out) `up`, a failed test: the stack is stopped all the same
        res = stack_cli("up", "--dir", str(folder), "--config", str(cfg), "--json", *extra, timeout=300)
        assert res.returncode == 0, f"stack up failed ({res.returncode}): {res.stderr[-3000:]}"
        status = json.loads(res.stdout)
        yield LocalStack(folder, status, boto3_client(status))
    finally:
        for log in sorted((folder / "logs").glob("*.log")) if folder.exists() else []:
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        down_and_check(folder, "--purge")


# -- checking outputs fetched through S3 --------------------------------------------------------------


def check_output(data: bytes, out: dict[str, Any]) -> str:
    """Decode one output by its media type; returns what was checked (fails the test otherwise)."""
    from PIL import Image

    mt = out["media_type"]
    assert len(data) == out["size"], (
        f"{out['path']}: {len(data)} bytes through S3, manifest says {out['size']}"
    )
    assert hashlib.sha256(data).hexdigest() == out["sha256"], (
        f"{out['path']}: sha256 differs from the manifest"
    )
    if mt.startswith("image/"):
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            meta = out.get("meta", {})
            if "width" in meta:
                assert im.size == (meta["width"], meta["height"]), out["path"]
            return f"image {im.format} {im.size}"
    if mt == "application/vnd.apple.mpegurl":
        text = data.decode()
        assert text.startswith("#EXTM3U"), out["path"]
        return "HLS playlist"
    if mt == "video/iso.segment":  # a CMAF/fMP4 segment: decodable only after its playlist's init segment
        assert data[4:8] in (b"styp", b"moof", b"sidx"), (out["path"], data[:8])
        return "fMP4 segment"
    if mt.startswith(("video/", "audio/")):
        import av

        with av.open(io.BytesIO(data)) as c:
            frames = sum(1 for _ in c.decode(c.streams[0]))
            assert frames > 0, out["path"]
            return f"{mt} {frames} frames of stream 0"
    if mt == "text/vtt":
        assert data.decode().startswith("WEBVTT"), out["path"]
        return "WebVTT"
    if mt == "application/pdf":
        import pdfplumber

        with pdfplumber.open(io.BytesIO(data)) as pdf:
            assert pdf.pages, out["path"]
            return f"PDF {len(pdf.pages)} pages"
    if mt == "application/json":
        json.loads(data)
        return "JSON"
    if mt.startswith("text/"):
        data.decode("utf-8")
        return "text"
    pytest.fail(f"{out['path']}: no check for media type {mt}")
