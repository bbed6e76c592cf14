"""What start-up and whole batches rely on: the CPUs a container really gives, warm pool workers, up-to-date
sources settled without a pool, and Lambda events that need no work answered without settings or engine.
(The timings themselves are in bench/bench_startup.py and bench/bench_thumbnails.py --batch.)"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, add_samples, cli_env, run_cli

from pipelines.tools.host import cgroup_cpu_quota


def cgroup_tree(tmp_path: Path, files: dict[str, str], membership: str) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    member = tmp_path / "self-cgroup"
    member.write_text(membership)
    return root, member


def test_cgroup_v2_quota_is_read_and_the_tightest_ancestor_wins(tmp_path: Path) -> None:
    root, member = cgroup_tree(
        tmp_path,
        {
            "cgroup.controllers": "cpu io memory\n",
            "a/b/cpu.max": "150000 100000\n",
            "a/cpu.max": "max 100000\n",
        },
        "0::/a/b\n",
    )
    assert cgroup_cpu_quota(root, member) == 1.5
    (root / "a/cpu.max").write_text("50000 100000\n")
    assert cgroup_cpu_quota(root, member) == 0.5
    (root / "a/b/cpu.max").write_text("max 100000\n")
    (root / "a/cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(root, member) is None  # unlimited: the affinity mask decides


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    root, member = cgroup_tree(
        tmp_path,
        {"cpu,cpuacct/job/cpu.cfs_quota_us": "200000\n", "cpu,cpuacct/job/cpu.cfs_period_us": "100000\n"},
        "12:memory:/job\n5:cpu,cpuacct:/job\n",
    )
    assert cgroup_cpu_quota(root, member) == 2.0
    (root / "cpu,cpuacct/job/cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(root, member) is None
    # a container: /proc/self/cgroup names the host's path, the mount starts at the container's cgroup
    (root / "cpu,cpuacct/cpu.cfs_quota_us").write_text("100000\n")
    (root / "cpu,cpuacct/cpu.cfs_period_us").write_text("100000\n")
    member.write_text("5:cpu,cpuacct:/libpod_parent/libpod-0123\n0::/libpod_parent/libpod-0123\n")
    assert cgroup_cpu_quota(root, member) == 1.0


def test_pool_workers_import_what_the_pipelines_need_before_their_first_file(workspace: Path) -> None:
    probe = """
import sys
from config.settings import load_settings
from pipelines.core.engine import Engine
from pipelines.batch.pool import _init_worker, warm_modules
settings = load_settings()
mods = warm_modules(Engine(settings))
assert "pipelines.media.imaging" in mods and "av" in mods and "pipelines.media.placeholder" in mods, mods
assert "pipelines.media.imaging" not in sys.modules and "av" not in sys.modules
_init_worker(settings, None, mods)
print(sorted(m for m in mods if m not in sys.modules))
"""
    env = cli_env(MEDIA_WORKER_WORKSPACE=str(workspace))
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "[]"


def python_execs(trace: str) -> list[str]:
    return [ln for ln in trace.splitlines() if re.search(r'execve\("[^"]*python[^"]*"', ln) and "= 0" in ln]


def test_a_rerun_of_an_up_to_date_prefix_starts_no_worker_process(workspace: Path, tmp_path: Path) -> None:
    for i in range(6):
        add_samples(workspace, "logo.png", folder=f"in{i}")
    folders = [f"in{i}" for i in range(6)]
    first = run_cli("run", "-w", str(workspace), "--workers", "2", "--json", *folders)
    assert first.returncode == 0, first.stderr
    trace = tmp_path / "trace"
    again = run_cli(
        "run", "-w", str(workspace), "--workers", "2", "--json", *folders,
        prefix=["strace", "-f", "-qq", "-e", "trace=execve", "-o", str(trace)],
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    results = [json.loads(x) for x in again.stdout.splitlines() if x.startswith("{")]
    assert len(results) == 6 and {r["status"] for r in results} == {"skipped"}
    assert all(r["reason"] == "up to date (manifest matches)" for r in results)
    assert len(python_execs(trace.read_text())) == 1  # the CLI itself: no forkserver, no workers
    # the check can fail: a stale source brings the pool back
    (workspace / "in0/logo.png").write_bytes((workspace / "in1/logo.png").read_bytes() + b"\0")
    third = run_cli(
        "run", "-w", str(workspace), "--workers", "2", "--json", *folders,
        prefix=["strace", "-f", "-qq", "-e", "trace=execve", "-o", str(trace)],
    )  # fmt: skip
    assert len(python_execs(trace.read_text())) == 1  # one stale source: processed in-process
    statuses = sorted(json.loads(x)["status"] for x in third.stdout.splitlines() if x.startswith("{"))
    assert statuses == ["ok"] + ["skipped"] * 5


def test_an_event_that_needs_no_work_builds_no_settings_or_engine(tmp_path: Path) -> None:
    """A delete event is answered even where the workspace does not exist: nothing was loaded."""
    probe = """
import json, sys
from handlers.local.invoke import LocalContext
import handlers.lambda_function as fn
import handlers.runtime as rt
event = {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
  "eventTime": "2026-12-02T00:00:00.000Z", "eventName": "ObjectRemoved:Delete",
  "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": "media", "arn": "arn:aws:s3:::media"},
         "object": {"key": "in/gone.jpg", "sequencer": "00"}}}]}
out = fn.handler(event, LocalContext(60))
loaded = ["pipelines.core.engine" in sys.modules, "config.settings" in sys.modules]
print(json.dumps([out, rt._runtime is None, *loaded]))
"""
    env = cli_env(MEDIA_WORKER_WORKSPACE=str(tmp_path / "no-such-mount"), MEDIA_WORKER_AWS__BUCKET="media")
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    out, no_runtime, engine_loaded, settings_loaded = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["counts"] == {"ignored": 1}
    assert no_runtime and not engine_loaded and not settings_loaded


def test_on_lambda_the_init_phase_imports_what_the_first_job_needs(workspace: Path) -> None:
    """Under the Lambda runtime the init phase also imports the routed pipelines' first-use modules, so
    the first PNG job imports no pipeline, Pillow or codec module (only the event's handler module)."""
    add_samples(workspace, "logo.png")
    probe = """
import json, sys, time
from handlers.local.invoke import LocalContext
from handlers.local.trigger import Change, s3_notification
import handlers.lambda_function as fn
before = set(sys.modules)
out = fn.handler(s3_notification(Change("in/logo.png", None, None, False, time.time_ns()), "media"),
                 LocalContext(60))
assert out["counts"] == {"ok": 1}, out
print(json.dumps(sorted(set(sys.modules) - before)))
"""
    env = cli_env(
        MEDIA_WORKER_WORKSPACE=str(workspace), MEDIA_WORKER_AWS__BUCKET="media",
        AWS_LAMBDA_RUNTIME_API="127.0.0.1:9",
    )  # fmt: skip
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    new = json.loads(res.stdout.strip().splitlines()[-1])
    assert [m for m in new if not m.startswith("handlers.")] == [], new


@pytest.mark.parametrize("terminal", [False, True])
def test_a_batch_forks_its_workers_from_the_cli_process(
    workspace: Path, tmp_path: Path, terminal: bool
) -> None:
    """No second interpreter boots for the pool: the workers are forks of the CLI process, which has
    imported the engine and the pipelines' modules once; each worker does its share of the files.  On a
    terminal too: the progress bar is redrawn from the results, with no refresh thread to block a fork."""
    for i in range(6):
        add_samples(workspace, "logo.png", folder=f"in{i}")
    trace = tmp_path / "trace"
    strace = ["strace", "-f", "-qq", "-e", "trace=execve,openat", "-o", str(trace)]
    args = ["run", "-w", str(workspace), "--workers", "2", *[f"in{i}" for i in range(6)]]
    if terminal:  # under a pseudo-terminal (util-linux script): the progress bar is drawn
        cmd = shlex.join([*strace, sys.executable, "-m", "handlers.cli", *args])
        res = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True, cwd=REPO,
                             env=cli_env(), timeout=300)  # fmt: skip
        assert res.returncode == 0 and "processing" in res.stdout, res.stdout[-2000:]
    else:
        res = run_cli(*args, "--json", prefix=strace)
        assert res.returncode == 0, res.stderr[-2000:]
        assert {json.loads(x)["status"] for x in res.stdout.splitlines() if x.startswith("{")} == {"ok"}
    assert len(list(workspace.glob("processed/_manifests/in*/logo.png.json"))) == 6
    text = trace.read_text()
    assert len(python_execs(text)) == 1  # the CLI itself (a forkserver pool: 3, with its resource tracker)
    readers = {ln.split()[0] for ln in text.splitlines() if re.search(r'openat\(.*/in\d/logo\.png"', ln)}
    assert len(readers) == 2, readers  # two worker processes read the sources


def test_the_pool_uses_a_forkserver_while_another_thread_runs(workspace: Path) -> None:
    """fork copies only the calling thread: with a second thread alive (a progress bar's refresher) the
    workers come from a forkserver instead."""
    import threading

    from config.settings import load_settings
    from pipelines.batch.pool import _PoolRun
    from pipelines.core.engine import Engine

    settings = load_settings(None, workspace=workspace)
    run = _PoolRun(settings, None, {}, None, None, [], Engine(settings))
    assert run._context().get_start_method() == "fork"
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert run._context().get_start_method() == "forkserver"
    finally:
        stop.set()
        other.join()
