"""One writer per source: two workers given the same source at the same moment give one complete output
set (``ok`` + ``skipped``), and a lease left by a SIGKILLed holder is taken over after it expires."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from avtools import make_media
from conftest import REPO, cli_env, failure_records, json_lines
from gate_pipeline import FORK, entered, gate_engine, result_of, start_job
from PIL import Image

LEASE = "processed/_manifests/in/{name}.json.lease"


def start_cli(ws: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "handlers.cli", "run", "-w", str(ws), "--json", *args],
        cwd=REPO, env=cli_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the first worker ended before taking its lease: {proc.communicate()}"
        assert time.monotonic() < end, f"no lease at {path}"
        time.sleep(0.01)


def outputs(ws: Path) -> dict[str, str]:
    """Every file the worker wrote, with its sha256."""
    return {
        p.relative_to(ws).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((ws / "processed").rglob("*"))
        if p.is_file()
    }


def check_manifest(ws: Path, rel: str) -> dict[str, object]:
    doc = json.loads((ws / f"processed/_manifests/{rel}.json").read_text())
    for out in doc["outputs"]:
        assert hashlib.sha256((ws / out["path"]).read_bytes()).hexdigest() == out["sha256"]
    return doc


@pytest.fixture
def video_ws(workspace: Path) -> Path:
    (workspace / "in").mkdir()
    make_media(workspace / "in/long.mp4", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
               seconds=12, size="640x480")  # fmt: skip
    return workspace


def test_two_clis_on_one_source_write_one_output_set(video_ws: Path) -> None:
    """The second worker starts while the first holds the lease: it waits, then finds the manifest."""
    ws = video_ws
    first = start_cli(ws, "in/long.mp4")
    wait_for(ws / LEASE.format(name="long.mp4"), first)
    second = start_cli(ws, "in/long.mp4")
    out1, err1 = first.communicate(timeout=300)
    out2, err2 = second.communicate(timeout=300)
    (a,), (b,) = json_lines(out1), json_lines(out2)
    assert a["status"] == "ok", (a, err1[-2000:])
    assert b["status"] == "skipped" and "concurrent worker" in b["reason"], (b, err2[-2000:])
    assert first.returncode == 0 and second.returncode == 0
    doc = check_manifest(ws, "in/long.mp4")
    written = outputs(ws)
    assert sorted(written) == sorted(
        [o["path"] for o in doc["outputs"]] + ["processed/_manifests/in/long.mp4.json"]
    )
    assert not (ws / LEASE.format(name="long.mp4")).exists()  # released


def test_concurrent_thumbnails_are_byte_identical_to_a_single_run(workspace: Path, tmp_path: Path) -> None:
    big = Image.effect_noise((6000, 4000), 64).convert("RGB")
    (workspace / "in").mkdir()
    big.save(workspace / "in/big.jpg", quality=90)
    single = tmp_path / "single"
    shutil.copytree(workspace, single)
    res = subprocess.run([sys.executable, "-m", "handlers.cli", "run", "-w", str(single), "in"],
                         cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr
    first = start_cli(workspace, "in/big.jpg")
    wait_for(workspace / LEASE.format(name="big.jpg"), first)
    second = start_cli(workspace, "in/big.jpg")
    (a,) = json_lines(first.communicate(timeout=300)[0])
    (b,) = json_lines(second.communicate(timeout=300)[0])
    assert {a["status"], b["status"]} == {"ok", "skipped"}, (a, b)
    mine, ref = outputs(workspace), outputs(single)
    manifest = "processed/_manifests/in/big.jpg.json"
    assert mine.pop(manifest) and ref.pop(manifest)  # manifests differ only in timings and mtime
    assert mine == ref


def test_two_lambda_invocations_on_one_object(video_ws: Path, tmp_path: Path) -> None:
    ws = video_ws
    data = (ws / "in/long.mp4").read_bytes()
    obj = {"key": "in/long.mp4", "size": len(data), "etag": hashlib.md5(data).hexdigest(), "version-id": "v1"}
    event = {
        "version": "0",
        "id": "1",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-12-02T10:00:00Z",
        "region": "eu-west-1",
        "resources": [],
        "detail": {"version": "0", "bucket": {"name": "media-bucket"}, "object": obj, "reason": "PutObject"},
    }
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))

    def invoke() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "handlers.cli", "invoke", "-e", str(path), "-w", str(ws),
             "--bucket", "media-bucket"],
            cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    first = invoke()
    wait_for(ws / LEASE.format(name="long.mp4"), first)
    second = invoke()
    r1, r2 = (json.loads(p.communicate(timeout=300)[0]) for p in (first, second))
    assert r1["counts"] == {"ok": 1} and r2["counts"] == {"skipped": 1}, (r1, r2)
    check_manifest(ws, "in/long.mp4")


def test_a_killed_holders_lease_is_taken_over_after_expiry(video_ws: Path) -> None:
    """SIGKILL mid-transcode: the rerun is refused as busy while the lease is valid, then takes it over."""
    ws = video_ws
    lease = ws / LEASE.format(name="long.mp4")
    short = {"MEDIA_WORKER_LEASE__TTL_SECONDS": "2", "MEDIA_WORKER_LEASE__CLOCK_SKEW_SECONDS": "0"}
    first = start_cli(ws, "in/long.mp4", **short)
    wait_for(lease, first)
    time.sleep(0.5)  # into the transcode
    os.kill(first.pid, signal.SIGKILL)
    first.communicate(timeout=60)
    assert lease.exists() and not (ws / "processed/_manifests/in/long.mp4.json").exists()
    # a holder that died on this very host is taken over at once (a crashed pool worker, tests/test_plugins);
    # one on another host only after its expiry: make this lease another host's
    doc = json.loads(lease.read_text())
    lease.write_text(json.dumps({**doc, "host": "another-host", "space": "another-boot/1"}))
    # not expired yet and no waiting: a retryable "busy", nothing written
    before = outputs(ws)
    busy = subprocess.run(
        [sys.executable, "-m", "handlers.cli", "run", "-w", str(ws), "--json", "in/long.mp4"],
        cwd=REPO, env=cli_env(MEDIA_WORKER_LEASE__WAIT_SECONDS="0", MEDIA_WORKER_LEASE__TTL_SECONDS="600"),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    (r,) = json_lines(busy.stdout)
    assert r["status"] == "failed" and r["error_kind"] == "busy" and r["retryable"], r
    assert outputs(ws) == before
    # the rerun waits for the expiry, takes the lease over and completes
    rerun = subprocess.run(
        [sys.executable, "-m", "handlers.cli", "run", "-w", str(ws), "--json", "in/long.mp4"],
        cwd=REPO, env=cli_env(**short), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    (r,) = json_lines(rerun.stdout)
    assert r["status"] == "ok", (r, rerun.stderr[-2000:])
    assert "taking over the expired lease" in rerun.stderr
    doc = check_manifest(ws, "in/long.mp4")
    manifest = ["processed/_manifests/in/long.mp4.json"]
    assert sorted(outputs(ws)) == sorted([o["path"] for o in doc["outputs"]] + manifest)  # nothing stale
    assert not lease.exists()


def test_the_verify_wait_is_only_paid_when_a_lease_was_there(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh source: the lease is created and held at once (the 50 ms re-read was half the time of a
    small file). After a stale lease was taken over, the re-read still happens."""
    from config.deadline import NO_DEADLINE
    from config.settings import LeaseSettings
    from pipelines.workspace import lease as lease_mod
    from pipelines.workspace.mount import Workspace

    slept: list[float] = []
    real_sleep = time.sleep
    monkeypatch.setattr(lease_mod.time, "sleep", lambda s: (slept.append(s), real_sleep(s)))
    ws = Workspace(workspace)
    settings = LeaseSettings(ttl_seconds=1, clock_skew_seconds=0)
    fresh = lease_mod.Lease(ws, "a.json.lease", settings)
    fresh.acquire(NO_DEADLINE)
    fresh.check()
    fresh.release()
    assert lease_mod.VERIFY_DELAY not in slept
    stale = {"owner": "dead", "host": "elsewhere", "pid": 1, "space": "x", "acquired": 0, "expires": 0}
    (workspace / "b.json.lease").write_text(json.dumps(stale))
    taker = lease_mod.Lease(ws, "b.json.lease", settings)
    taker.acquire(NO_DEADLINE)
    assert lease_mod.VERIFY_DELAY in slept
    # the commit check reads the file: a lease taken over during a short job is seen before the manifest
    (workspace / "b.json.lease").write_text(
        json.dumps({**stale, "owner": "other", "expires": time.time() + 60})
    )
    with pytest.raises(Exception, match="took this source's lease over"):
        taker.check()
    taker.release()


# -- the defences, with the gate pipeline (tests/gate_pipeline.py): jobs that last as long as the test says


def until(cond: Callable[[], object], what: str, limit: float = 120) -> None:
    """Wait for ``cond`` (polling); fail naming ``what`` if it is not met within ``limit`` seconds."""
    end = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < end, f"gave up waiting for {what}"
        time.sleep(0.01)


def lease_doc(path: Path) -> dict[str, Any]:
    """The lease file's document (the holder truncates and rewrites it when it renews: read again)."""
    docs: list[dict[str, Any]] = []

    def parsed() -> bool:
        with contextlib.suppress(OSError, ValueError):
            docs.append(json.loads(path.read_bytes()))
        return bool(docs)

    until(parsed, f"a readable lease at {path}")
    return docs[0]


@pytest.fixture
def gated(workspace: Path, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A workspace with one source, in/a.txt, and the gate pipeline's folder (opened at the end)."""
    (workspace / "in").mkdir()
    (workspace / "in/a.txt").write_text("one two three\n")
    gates = tmp_path / "gates"
    gates.mkdir()
    yield workspace, gates
    (gates / "open").touch()  # a test that failed midway: no job stays parked on the gate


def test_a_job_longer_than_the_lease_ttl_keeps_its_lease(gated: tuple[Path, Path], tmp_path: Path) -> None:
    """The holder renews its lease while the job runs: a second worker that comes after the expiry the
    lease was first written with finds it still held, is refused as busy and runs nothing; the first
    commits.  (Without renewal the second takes the source over while the first is still at work.)"""
    ws, gates = gated
    settings = {"ttl_seconds": 5, "clock_skew_seconds": 0, "wait_seconds": 0}
    engine = gate_engine(ws, gates, lease=settings)
    first = start_job(engine, "in/a.txt", tmp_path / "first.json")
    until(lambda: entered(gates) or first.exitcode is not None, "the first job to start")
    assert entered(gates) == [first.pid]  # it holds the lease and waits on the gate
    expires = lease_doc(ws / LEASE.format(name="a.txt"))["expires"]
    until(lambda: time.time() > expires, "the lease's first expiry to pass", limit=60)
    second = start_job(engine, "in/a.txt", tmp_path / "second.json")
    until(lambda: second.exitcode is not None or len(entered(gates)) > 1, "the second worker's answer")
    (gates / "open").touch()
    a, b = result_of(first, tmp_path / "first.json"), result_of(second, tmp_path / "second.json")
    assert entered(gates) == [first.pid], "a second job ran on a source whose holder was still at work"
    assert b["status"] == "failed" and b["error_kind"] == "busy" and b["retryable"], b
    assert a["status"] == "ok", a
    doc = check_manifest(ws, "in/a.txt")
    assert sorted(outputs(ws)) == sorted([o["path"] for o in doc["outputs"]] + [a["manifest"]])


def test_a_holder_whose_lease_was_taken_over_commits_nothing(
    gated: tuple[Path, Path], tmp_path: Path
) -> None:
    """The holder is frozen (SIGSTOP: a paused VM, a frozen Lambda) past its lease's expiry; a second
    worker takes the source over, does the job and commits.  When the first resumes, its check at the
    commit refuses: it fails as retryable, the manifest standing is the second's, byte for byte, and every
    output it names is there (the first deletes nothing: those paths are the new holder's).  Without the
    check the first commits too: two writers of one manifest."""
    ws, gates = gated
    settings = {"ttl_seconds": 2, "clock_skew_seconds": 0, "wait_seconds": 0}
    first = start_job(gate_engine(ws, gates, lease=settings), "in/a.txt", tmp_path / "first.json")
    try:
        until(lambda: entered(gates) or first.exitcode is not None, "the first job to start")
        assert entered(gates) == [first.pid]
        os.kill(first.pid, signal.SIGSTOP)
        _, status = os.waitpid(first.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status)
        (gates / "open").touch()  # for the second; the first is stopped
        taker = gate_engine(ws, gates, lease={**settings, "wait_seconds": 120})  # waits for the expiry
        second = start_job(taker, "in/a.txt", tmp_path / "second.json")
        b = result_of(second, tmp_path / "second.json")
        assert b["status"] == "ok", b
        assert entered(gates) == sorted([first.pid, second.pid])
        manifest = (ws / b["manifest"]).read_bytes()
        committed = outputs(ws)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    a = result_of(first, tmp_path / "first.json")
    assert a["status"] == "failed" and a["retryable"], a
    assert "took this source's lease over" in a["error"], a
    assert (ws / b["manifest"]).read_bytes() == manifest, "the first worker committed over the second"
    check_manifest(ws, "in/a.txt")
    assert outputs(ws) == committed
    assert failure_records(ws) == {}  # the failure was not the first worker's to record
    assert not (ws / LEASE.format(name="a.txt")).exists()


def test_workers_released_at_one_instant_give_one_writer(workspace: Path, tmp_path: Path) -> None:
    """Six processes released together by a barrier on one source, round after round: the exclusive
    create of the lease (O_EXCL, pipelines/workspace/mount.py) lets exactly one run; the others are refused as
    busy and write nothing, while the one is still at work (it waits on the gate until they are done)."""
    (workspace / "in").mkdir()
    for r in range(5):
        one_race(workspace, tmp_path / f"round{r}", f"in/r{r}.txt", n=6)


def one_race(ws: Path, folder: Path, rel: str, n: int) -> None:
    gates = folder / "gates"
    gates.mkdir(parents=True)
    (ws / rel).write_text(f"{rel}\n")
    engine = gate_engine(ws, gates, lease={"wait_seconds": 0})
    barrier = FORK.Barrier(n)
    outs = [folder / f"{i}.json" for i in range(n)]
    procs = [start_job(engine, rel, out, barrier) for out in outs]
    try:
        # every worker has answered or is at work on the source (parked on the gate)
        until(lambda: sum(p.exitcode is not None for p in procs) + len(entered(gates)) >= n,
              f"{rel}: every worker to answer or start")  # fmt: skip
        ran = entered(gates)
    finally:
        (gates / "open").touch()
    results = [result_of(p, out) for p, out in zip(procs, outs, strict=True)]
    assert len(ran) == 1, f"{rel}: {len(ran)} workers ran the job at once"
    (winner,) = [res for p, res in zip(procs, results, strict=True) if p.pid == ran[0]]
    assert winner["status"] == "ok", winner
    for res in results:
        if res is not winner:
            assert res["status"] == "failed" and res["error_kind"] == "busy" and res["retryable"], res
            assert res["outputs"] == [] and res["manifest"] is None
    doc = check_manifest(ws, rel)
    mine = [k for k in outputs(ws) if k.endswith((f"/{rel}.txt", f"/{rel}.json"))]
    assert sorted(mine) == sorted([o["path"] for o in doc["outputs"]] + [winner["manifest"]])
    assert not (ws / "processed/_manifests" / f"{rel}.json.lease").exists()
