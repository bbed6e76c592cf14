#!/usr/bin/env python3
"""Benchmark: the edges around the per-file work - start-up, the Lambda cold path, prefix reruns.

Anchor, measured in the same run: a bare ``python -c pass`` of the same venv (wall time of the whole
process).  Cases (medians of ``--runs`` fresh processes, interleaved with the anchor):

* ``--help``: ``media-worker --help``;
* ``run`` to the first source read: ``media-worker run -j 1 -w WS in/logo.png`` from process start until
  the source is opened (an audit hook, installed through ``sitecustomize``, notes the time);
* Lambda cold path, no work: import ``handlers.lambda_function`` and invoke it on an S3 delete event
  (ignored: nothing to process) - outside Lambda, and with ``AWS_LAMBDA_RUNTIME_API`` set, where the
  import also builds settings and engine and checks the programs (the init phase);
* first vs second real job in one process (two different PNGs through the handler), and the pipeline's
  own first-use cost (the modules it declares warm, imported after the engine, timed in-process);
* prefix rerun: ``media-worker run`` over ``--files`` PNGs (320x240), then again with every source up to
  date: the rerun's share of the first run, and the first run's files/s.

Targets (issue 13): ``--help`` and ``run``-to-first-read <= 6x the anchor; the Lambda no-work cold path
<= 6x; first job - second job <= first-use cost; rerun <= 5 % of the first run.

    .venv/bin/python bench/bench_startup.py [--runs 9] [--files 2000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SITECUSTOMIZE = """
import os, sys, time
_target = os.environ.get("BENCH_FIRST_OPEN")
_done = []
def _hook(event, args):
    if _done or event != "open" or not _target:
        return
    path = args[0]
    if isinstance(path, (str, bytes, os.PathLike)) and os.fsdecode(path) == _target:
        _done.append(time.time())
        with open(os.environ["BENCH_FIRST_OPEN_OUT"], "w") as f:
            f.write(repr(_done[0]))
sys.addaudithook(_hook)
"""
DELETE_EVENT = {
    "Records": [
        {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "us-east-1",
            "eventTime": "2026-12-02T00:00:00.000Z",
            "eventName": "ObjectRemoved:Delete",
            "s3": {
                "s3SchemaVersion": "1.0",
                "bucket": {"name": "media", "arn": "arn:aws:s3:::media"},
                "object": {"key": "in/gone.jpg", "sequencer": "00"},
            },
        }
    ]
}
NO_WORK = """
import json, sys
from handlers.local.invoke import LocalContext
import handlers.lambda_function as fn
out = fn.handler(json.loads(sys.argv[1]), LocalContext(60))
assert out["counts"] == {"ignored": 1}, out
"""
TWO_JOBS = """
import json, sys, time
from handlers.local.invoke import LocalContext
from handlers.local.trigger import Change, s3_notification
import handlers.lambda_function as fn
times = []
for key in sys.argv[1:]:
    t0 = time.perf_counter()
    event = s3_notification(Change(key, None, None, False, time.time_ns()), "media")
    out = fn.handler(event, LocalContext(60))
    times.append(time.perf_counter() - t0)
    assert out["counts"] == {"ok": 1}, out
print(json.dumps(times))
"""
FIRST_USE = """
import importlib, time
from pipelines.core.engine import Engine
from pipelines.builtin.thumbnails import ThumbnailPipeline as T
t0 = time.perf_counter()
for m in T.warm_modules:  # the thumbnails pipeline's first-use imports, after what every job has
    importlib.import_module(m)
print(time.perf_counter() - t0)
"""
# floors: what the libraries the design names cost on their own, in a process that does nothing else
FLOOR_TYPER = """
import sys, typer
app = typer.Typer()
@app.command()
def run(path: str, workers: int = 1) -> None:
    pass
sys.argv = ["run", "x"]
app()
"""
FLOOR_SETTINGS = """
from pydantic_settings import BaseSettings, SettingsConfigDict
class S(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BENCH_", env_nested_delimiter="__")
    workspace: str = "."
S()
"""
FLOOR_MODEL = """
from pydantic import BaseModel
class M(BaseModel):
    workspace: str = "."
M()
"""


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIA_WORKER_", "AWS_LAMBDA_"))}
    env.update(extra)
    return env


def wall(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO, env=env or clean_env())
    return time.perf_counter() - t0


def first_read(ws: Path, hook_dir: Path) -> float:
    """Seconds from launching ``media-worker run`` to its first open() of the source."""
    shutil.rmtree(ws / "processed", ignore_errors=True)
    out = hook_dir / "t"
    out.unlink(missing_ok=True)
    env = clean_env(
        PYTHONPATH=str(hook_dir),
        BENCH_FIRST_OPEN=str(ws / "in" / "logo.png"),
        BENCH_FIRST_OPEN_OUT=str(out),
    )
    t0 = time.time()
    subprocess.run(
        [str(BIN / "media-worker"), "run", "-j", "1", "-w", str(ws), "in/logo.png"],
        check=True, capture_output=True, cwd=REPO, env=env,
    )  # fmt: skip
    return float(out.read_text()) - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    py = sys.executable
    work = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    try:
        return run(args, py, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, py: str, work: Path) -> int:
    from PIL import Image

    hook_dir = work / "hook"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
    ws = work / "ws"
    (ws / "in").mkdir(parents=True)
    shutil.copy(REPO / "sample_media" / "logo.png", ws / "in" / "logo.png")
    base = Image.effect_noise((320, 240), 50).convert("RGB")
    base.save(ws / "in" / "a.png")
    base.rotate(90, expand=True).save(ws / "in" / "b.png")
    lambda_env = clean_env(MEDIA_WORKER_WORKSPACE=str(ws), MEDIA_WORKER_AWS__BUCKET="media")
    on_lambda = {**lambda_env, "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9"}  # init: settings, engine, checks
    event = json.dumps(DELETE_EVENT)

    cases: dict[str, Any] = {
        "anchor: python -c pass": lambda: wall([py, "-c", "pass"]),
        "media-worker --help": lambda: wall([str(BIN / "media-worker"), "--help"]),
        "run, to the first source read": lambda: first_read(ws, hook_dir),
        "Lambda: import + no-work invocation": lambda: wall([py, "-c", NO_WORK, event], lambda_env),
        "Lambda: the same, init phase on (AWS_LAMBDA_RUNTIME_API)": lambda: wall(
            [py, "-c", NO_WORK, event], on_lambda
        ),
        "floor: a one-command Typer app (typer 0.2x coerces with pydantic)": lambda: wall(
            [py, "-c", FLOOR_TYPER]
        ),
        "floor: one pydantic-settings BaseSettings with one field": lambda: wall([py, "-c", FLOOR_SETTINGS]),
        "floor: one plain pydantic BaseModel with one field": lambda: wall([py, "-c", FLOOR_MODEL]),
    }
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.runs):
        for name, fn in cases.items():
            samples[name].append(fn())
    med = {k: statistics.median(v) for k, v in samples.items()}
    anchor = med["anchor: python -c pass"]
    two: dict[str, list[list[float]]] = {"off": [], "on": []}
    for _ in range(max(3, args.runs // 3)):
        for mode, env in (("off", lambda_env), ("on", on_lambda)):
            shutil.rmtree(ws / "processed", ignore_errors=True)
            res = subprocess.run(
                [py, "-c", TWO_JOBS, "in/a.png", "in/b.png"], check=True, capture_output=True, text=True,
                cwd=REPO, env=env,
            )  # fmt: skip
            two[mode].append(json.loads(res.stdout.strip().splitlines()[-1]))
    jobs = two["off"]
    first_job = statistics.median(j[0] for j in jobs)
    second_job = statistics.median(j[1] for j in jobs)
    first_on = statistics.median(j[0] for j in two["on"])
    second_on = statistics.median(j[1] for j in two["on"])
    first_use = statistics.median(
        float(subprocess.run([py, "-c", FIRST_USE], check=True, capture_output=True, text=True, cwd=REPO,
                             env=clean_env()).stdout)
        for _ in range(args.runs)
    )  # fmt: skip

    # prefix: first run and an all-up-to-date rerun, whole CLI processes
    prefix = work / "prefix"
    (prefix / "in").mkdir(parents=True)
    for i in range(args.files):
        base.rotate(i % 360).save(prefix / "in" / f"img{i:05d}.png")
    cli = [str(BIN / "media-worker"), "run", "-w", str(prefix), "in"]
    first_run = wall(cli)
    reruns = [wall(cli) for _ in range(3)]
    rerun = statistics.median(reruns)

    doc = {
        "runs": args.runs,
        "median_s": {k: round(v, 4) for k, v in med.items()},
        "x_anchor": {k: round(v / anchor, 2) for k, v in med.items()},
        "first_job_s": round(first_job, 4),
        "second_job_s": round(second_job, 4),
        "first_use_cost_s": round(first_use, 4),
        "first_minus_second_s": round(first_job - second_job, 4),
        "init_on": {"first_job_s": round(first_on, 4), "second_job_s": round(second_on, 4)},
        "prefix": {
            "files": args.files,
            "first_run_s": round(first_run, 2),
            "files_per_s": round(args.files / first_run, 1),
            "rerun_s": round(rerun, 3),
            "rerun_share": round(rerun / first_run, 4),
        },
    }
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"median of {args.runs} fresh processes; anchor python -c pass = {anchor * 1000:.1f} ms")
    for k, v in med.items():
        print(f"  {k:58} {v * 1000:8.1f} ms  {v / anchor:5.2f}x")
    print(
        f"first real job {first_job * 1000:.1f} ms, second {second_job * 1000:.1f} ms, difference "
        f"{(first_job - second_job) * 1000:.1f} ms; "
        f"the pipeline's first-use imports {first_use * 1000:.1f} ms"
    )
    print(
        f"  with the init phase on (as on Lambda): first {first_on * 1000:.1f} ms, second "
        f"{second_on * 1000:.1f} ms, difference {(first_on - second_on) * 1000:.1f} ms"
    )
    p = doc["prefix"]
    print(
        f"prefix of {p['files']} PNGs: first run {p['first_run_s']} s ({p['files_per_s']} files/s), "
        f"all-up-to-date rerun {p['rerun_s']} s = {p['rerun_share'] * 100:.1f} % (target <= 5 %)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
