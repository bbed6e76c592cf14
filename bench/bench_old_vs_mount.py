#!/usr/bin/env python3
"""Benchmark: the old way (download to /tmp, process, upload each output, clean up) vs the mount way
(media-worker on a mount of the bucket), on the same files and the same S3 endpoint.

Both run on the local stack (``media-worker stack``: SeaweedFS's S3 API + a FUSE mount of the same
bucket), each object as its own S3 notification event, with the same pipeline code and settings:

* **old way** - :mod:`old_way` (bench/old_way.py): boto3 ``download_file`` to /tmp, the engine on the
  /tmp copy, ``upload_file`` per output and the manifest last, /tmp cleaned; the engine built once;
* **mount way** - the dispatching Lambda handler in this process, the workspace being the mount.

Cases: a batch of photos (24 MP JPEGs), a 1080p H.264 clip (default ladder, posters, storyboard), a
scanned PDF (OCR).  Per case and way:

* ``time to visible`` - from the first event until the last output and manifest answer a HEAD through
  the S3 API (on SeaweedFS a mount write is visible at once; on S3 Files the export adds ~60 s);
* ``peak /tmp`` - bytes under the job's TMPDIR, sampled every 10 ms;
* ``source bytes read`` - old way: bytes of S3 GET responses; mount way: bytes ``read()`` from the source
  through the mount by the whole process tree (strace of a separate ``media-worker invoke`` per object),
  with the number of reads and how many were < 128 KiB (those go through S3 Files' paid cache);
* ``outputs read back`` - mount way: bytes the same traced run read from the outputs it wrote (none:
  they are hashed as they are written);
* ``S3 requests`` - made by the function (botocore's own count); for the mount way the function makes
  none: S3 Files does (one PUT per file written, exported; GETs for direct reads) - estimated;
* ``plumbing lines`` - lines of storage code each way needs (bench/old_way.py's marked lines; the
  mount way has none: the engine opens paths);
* the cost of 1,000 such jobs, recomputed from the measured bytes and requests (PRICES below:
  approximate us-east-1 list prices, as in the design's table), with the cache expiry at 30 and 1 days.

    .venv/bin/python bench/bench_old_vs_mount.py [--photos 12] [--video-seconds 10] [--pages 6] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from config.cost import GB, CostSettings  # noqa: E402  (the one price table: config/cost.py)

KIB, MIB = 1024, 1 << 20
SMALL_READ = 128 * KIB  # S3 Files serves reads >= 128 KB of synced data straight from S3
_P = CostSettings()
PRICES = {  # USD, approximate (us-east-1 list prices, the design's table); check the AWS price pages
    "s3_get_per_1k": _P.s3_get_per_1k,
    "s3_put_per_1k": _P.s3_put_per_1k,
    "s3files_cache_gb_month": _P.s3files_cache_gb_month,
    "s3files_small_read_gb": _P.s3files_small_read_gb,
    "s3files_write_gb": _P.s3files_write_gb,
    "efs_storage_gb_month": _P.efs_storage_gb_month,
    "efs_read_gb": _P.efs_read_gb,
    "efs_write_gb": _P.efs_write_gb,
    "lambda_gb_second": 0.0000166667,
}
FUNCTION_GB = 2.0  # template.yaml's default memory
PUT_CLASS = {"PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "CopyObject"}
BUCKET_PREFIX = "bench/"  # the stack's trigger watches trigger/ only: these uploads are processed by us


@dataclass
class Way:
    seconds_to_visible: float = 0.0
    peak_tmp_bytes: int = 0
    source_bytes_read: int = 0
    source_reads: int = 0
    small_reads: int = 0
    outputs_read_back: int = 0  # mount way: bytes read() from the job's own outputs (strace)
    s3_requests: dict[str, int] = field(default_factory=dict)
    files_written: int = 0
    output_bytes: int = 0
    plumbing_lines: int = 0
    usd_per_1000_jobs: dict[str, float] = field(default_factory=dict)


@dataclass
class Case:
    name: str
    input: str
    sources: list[str]
    source_bytes: int
    old: Way = field(default_factory=Way)
    mount: Way = field(default_factory=Way)


# -- inputs -------------------------------------------------------------------------------------------


def make_inputs(folder: Path, photos: int, video_s: int, pages: int) -> dict[str, tuple[str, list[Path]]]:
    from bench_memory import make_scan_pdf
    from bench_thumbnails import make_photo

    from pipelines.tools import ffmpeg as ff

    folder.mkdir(parents=True, exist_ok=True)
    shots = []
    for i in range(photos):
        p = folder / f"photo{i:02d}.jpg"
        make_photo(p, seed=i)
        shots.append(p)
    clip = folder / "clip.mp4"
    subprocess.run(
        [ff.locate().path, "-hide_banner", "-v", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=s=1920x1080:r=30:d={video_s},noise=alls=8:allf=t",
         "-f", "lavfi", "-i", f"sine=f=440:sample_rate=48000:d={video_s}",
         "-c:v", "libx264", "-preset", "veryfast", "-b:v", "12M", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", str(clip)],
        check=True,
    )  # fmt: skip
    scan = folder / "scan.pdf"
    scan_what = make_scan_pdf(scan, pages)
    return {
        "photos": (f"{photos} x 24 MP JPEG (6000x4000)", shots),
        "video": (f"1080p30 H.264/AAC, {video_s} s, 12 Mbit/s", [clip]),
        "scan": (scan_what, [scan]),
    }


# -- measuring ----------------------------------------------------------------------------------------


class TmpPeak:
    """Peak bytes under a folder, sampled every 10 ms in a thread."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.peak, self._stop = folder, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _size(self) -> int:
        total = 0
        for dirpath, _dirs, files in os.walk(self.folder):
            for f in files:
                with contextlib.suppress(OSError):  # gone between listing and lstat
                    total += os.lstat(os.path.join(dirpath, f)).st_size
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._size())
            self._stop.wait(0.01)

    def __enter__(self) -> TmpPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._size())


def counting(s3: Any) -> Counter[str]:
    """Count every request the client makes, by operation, and the bytes of GetObject bodies."""
    seen: Counter[str] = Counter()

    def after_call(model: Any, parsed: dict[str, Any], **_: Any) -> None:
        seen[model.name] += 1
        if model.name == "GetObject":
            seen["_get_bytes"] += int(parsed.get("ContentLength") or 0)

    s3.meta.events.register("after-call.s3", after_call)
    return seen


def event_for(bucket: str, key: str, size: int) -> dict[str, Any]:
    from handlers.local.trigger import Change, s3_notification

    return s3_notification(Change(key, size, None, False, time.time_ns()), bucket)


def wait_visible(s3: Any, bucket: str, keys: list[str], timeout: float = 600) -> None:
    end = time.monotonic() + timeout
    for key in keys:
        while True:
            try:
                s3.head_object(Bucket=bucket, Key=key)
                break
            except s3.exceptions.ClientError:
                if time.monotonic() > end:
                    raise SystemExit(f"{key} not visible through S3 after {timeout:.0f} s") from None
                time.sleep(0.01)


def outputs_of(results: list[Any]) -> list[str]:
    keys = []
    for r in results:
        if r.status != "ok":
            raise SystemExit(f"{r.source}: {r.status}: {r.error or r.reason}")
        keys += [*r.outputs, r.manifest]
    return keys


def run_old(case: Case, settings: Any, status: dict[str, Any], tmp: Path) -> Way:
    from old_way import OldWay, plumbing_lines

    from handlers.local.stack import boto3_client

    s3, checker = boto3_client(status), boto3_client(status)
    seen = counting(s3)
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"], tempfile.tempdir = str(tmp), str(tmp)  # one /tmp for downloads and scratch
    old = OldWay(settings, s3, tmp)
    results = []
    with TmpPeak(tmp) as peak:
        t0 = time.monotonic()
        for key in case.sources:
            size = checker.head_object(Bucket=status["bucket"], Key=key)["ContentLength"]  # the event's size
            results += old.handle(event_for(status["bucket"], key, size))
        keys = outputs_of(results)
        wait_visible(checker, status["bucket"], keys)
        seconds = time.monotonic() - t0
    tempfile.tempdir = None
    way = Way(
        seconds_to_visible=round(seconds, 2),
        peak_tmp_bytes=peak.peak,
        source_bytes_read=seen.pop("_get_bytes", 0),
        source_reads=seen["GetObject"],
        s3_requests=dict(seen),
        files_written=len(keys),
        output_bytes=sum(r.output_bytes for r in results),
        plumbing_lines=plumbing_lines(),
    )
    seen.clear()
    return way


def run_mount(case: Case, status: dict[str, Any], tmp: Path) -> Way:
    from handlers.local.invoke import LocalContext, invoke
    from handlers.local.stack import boto3_client
    from handlers.runtime import reset_runtime, runtime

    checker = boto3_client(status)
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        MEDIA_WORKER_WORKSPACE=status["mount"], MEDIA_WORKER_AWS__BUCKET=status["bucket"], TMPDIR=str(tmp)
    )
    tempfile.tempdir = str(tmp)
    reset_runtime()
    runtime()  # the init phase, as the old way's engine is built before its clock starts
    results = []
    with TmpPeak(tmp) as peak:
        t0 = time.monotonic()
        for key in case.sources:
            size = os.stat(Path(status["mount"]) / key).st_size
            ok, response = invoke(event_for(status["bucket"], key, size), LocalContext(900))
            if not ok or response["counts"].get("ok") != 1:
                raise SystemExit(f"mount way failed on {key}: {response}")
            rel = key
            manifest = json.loads(
                (Path(status["mount"]) / "processed/_manifests" / f"{rel}.json").read_text()
            )
            results.append(manifest)
        keys = [o["path"] for m in results for o in m["outputs"]] + [
            f"processed/_manifests/{k}.json" for k in case.sources
        ]
        wait_visible(checker, status["bucket"], keys)
        seconds = time.monotonic() - t0
    tempfile.tempdir = None
    return Way(
        seconds_to_visible=round(seconds, 2),
        peak_tmp_bytes=peak.peak,
        s3_requests={},
        files_written=len(keys),
        output_bytes=sum(o["size"] for m in results for o in m["outputs"]),
        plumbing_lines=0,
    )


READ = re.compile(r"^(?:read|pread64)\(\d+<(?P<path>[^>]*)>, .*, (?P<count>\d+)(?:, \d+)?\) = (?P<ret>\d+)")


def traced_reads(case: Case, status: dict[str, Any], tmp: Path) -> tuple[int, int, int, int]:
    """(bytes, reads, reads < 128 KiB) the process tree read from the sources through the mount, and
    the bytes it read back from the outputs it wrote (manifests and leases left out)."""
    total = reads = small = read_back = 0
    outputs = str(Path(status["mount"]) / "processed") + "/"
    for key in case.sources:
        trace_dir = tmp / "strace"
        shutil.rmtree(trace_dir, ignore_errors=True)
        trace_dir.mkdir(parents=True)
        source = Path(status["mount"]) / key
        ev = tmp / "event.json"
        ev.write_text(json.dumps(event_for(status["bucket"], key, source.stat().st_size)))
        # the manifest is current after the timed run: a traced rerun must process again
        (Path(status["mount"]) / "processed/_manifests" / f"{key}.json").unlink(missing_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIA_WORKER_")}
        env.update(
            MEDIA_WORKER_WORKSPACE=status["mount"], MEDIA_WORKER_AWS__BUCKET=status["bucket"], TMPDIR=str(tmp)
        )
        subprocess.run(
            ["strace", "-ff", "-y", "-s", "0", "-e", "trace=read,pread64", "-o", str(trace_dir / "t"),
             sys.executable, "-m", "handlers.cli", "invoke", "-e", str(ev), "-t", "900"],
            cwd=REPO, env=env, check=True, capture_output=True,
        )  # fmt: skip
        for f in trace_dir.iterdir():
            for line in f.read_text(errors="replace").splitlines():
                m = READ.match(line)
                if m and m["path"] == str(source) and int(m["ret"]) > 0:
                    total += int(m["ret"])
                    reads += 1
                    small += int(m["count"]) < SMALL_READ
                elif m and m["path"].startswith(outputs) and "/_manifests/" not in m["path"]:
                    read_back += max(0, int(m["ret"]))
    return total, reads, small, read_back


# -- cost ---------------------------------------------------------------------------------------------


def costs(case: Case) -> None:
    """USD per 1,000 jobs like this case's, from the measured figures."""
    p, n = PRICES, 1000 / len(case.sources)
    old, mnt = case.old, case.mount
    gets = sum(v for k, v in old.s3_requests.items() if k not in PUT_CLASS)
    puts = sum(v for k, v in old.s3_requests.items() if k in PUT_CLASS)
    lam_old = old.seconds_to_visible * FUNCTION_GB * p["lambda_gb_second"]
    old.usd_per_1000_jobs = {
        "s3_requests": n * (gets * p["s3_get_per_1k"] + puts * p["s3_put_per_1k"]) / 1000,
        "lambda": n * lam_old,
    }
    old.usd_per_1000_jobs["total"] = sum(old.usd_per_1000_jobs.values())
    direct = mnt.source_reads - mnt.small_reads  # served from S3: GETs (upper bound: one per read)
    small_bytes = mnt.source_bytes_read * (mnt.small_reads / mnt.source_reads) if mnt.source_reads else 0
    base = {
        "s3_requests (direct-read GETs, export PUTs)": n
        * (direct * p["s3_get_per_1k"] + mnt.files_written * p["s3_put_per_1k"])
        / 1000,
        "small reads": n * small_bytes / GB * p["s3files_small_read_gb"],
        "writes": n * mnt.output_bytes / GB * p["s3files_write_gb"],
        "lambda": n * mnt.seconds_to_visible * FUNCTION_GB * p["lambda_gb_second"],
    }
    for days in (30, 1):
        cache = n * mnt.output_bytes / GB * p["s3files_cache_gb_month"] * days / 30
        mnt.usd_per_1000_jobs[f"total, cache expiry {days} d"] = sum(base.values()) + cache
    mnt.usd_per_1000_jobs.update(base)
    efs = n * (
        case.source_bytes / GB * p["efs_read_gb"]
        + mnt.output_bytes / GB * p["efs_write_gb"]
        + (case.source_bytes + mnt.output_bytes) / GB * p["efs_storage_gb_month"]
    )
    mnt.usd_per_1000_jobs["efs (all bytes at EFS prices, kept a month)"] = efs


# -- main ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=12)
    ap.add_argument("--video-seconds", type=int, default=10)
    ap.add_argument("--pages", type=int, default=6)
    ap.add_argument("--cases", default="photos,video,scan")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from config.settings import load_settings
    from handlers.local.stack import Stack, boto3_client

    work = Path(tempfile.mkdtemp(prefix="bench-old-vs-mount-", dir=args.workdir))
    settings = load_settings(None, stack={"input_prefix": "trigger/"})
    # the old way uploads its outputs under old-way/: a key written through S3 and then again through
    # the mount (S3 Files: one writer per path) lost the mount's write on SeaweedFS in a first version
    old_settings = load_settings(
        None,
        layout={
            "output_template": "old-way/{pipeline}/{variant}/{dir}/{name}.{ext}",
            "manifest_template": "old-way/_manifests/{dir}/{name}.json",
        },
        exclude=["old-way/**", "processed/**", "**/.*", "**/.*/**"],
    )
    stack = Stack(work / "stack", settings)
    cases: list[Case] = []
    try:
        status = stack.up()
        s3 = boto3_client(status)
        inputs = make_inputs(work / "inputs", args.photos, args.video_seconds, args.pages)
        for name in args.cases.split(","):
            what, files = inputs[name]
            keys = []
            for f in files:
                key = f"{BUCKET_PREFIX}{name}/{f.name}"
                s3.upload_file(str(f), status["bucket"], key)
                keys.append(key)
            case = Case(name, what, keys, sum(f.stat().st_size for f in files))
            case.old = run_old(case, old_settings, status, work / "tmp-old" / name)
            case.mount = run_mount(case, status, work / "tmp-mount" / name)
            (
                case.mount.source_bytes_read,
                case.mount.source_reads,
                case.mount.small_reads,
                case.mount.outputs_read_back,
            ) = traced_reads(case, status, work / "tmp-trace" / name)
            case.mount.s3_requests = {
                "by the function": 0,
                "by S3 Files (estimate): export PUTs": case.mount.files_written,
                "by S3 Files (estimate): direct-read GETs, at most": case.mount.source_reads
                - case.mount.small_reads,
            }
            costs(case)
            cases.append(case)
            print(f"{name}: done", file=sys.stderr)
    finally:
        stack.down(purge=False)
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps([asdict(c) for c in cases], indent=2))
    else:
        report(cases)
    return 0


def report(cases: list[Case]) -> None:
    rows: list[tuple[str, Callable[[Way], str]]] = [
        ("time to last output visible through S3", lambda w: f"{w.seconds_to_visible:.2f} s"),
        ("peak /tmp", lambda w: f"{w.peak_tmp_bytes / 1e6:.1f} MB"),
        ("source bytes read", lambda w: f"{w.source_bytes_read / 1e6:.1f} MB in {w.source_reads} reads/GETs"),
        ("reads < 128 KiB (S3 Files' paid cache)", lambda w: str(w.small_reads)),
        (
            "outputs read back",
            lambda w: (
                f"{w.outputs_read_back / 1e6:.2f} MB ({w.outputs_read_back / max(w.output_bytes, 1):.3f}x)"
            ),
        ),
        ("S3 requests", lambda w: ", ".join(f"{k} {v}" for k, v in w.s3_requests.items()) or "0"),
        ("files written / output bytes", lambda w: f"{w.files_written} / {w.output_bytes / 1e6:.1f} MB"),
        ("storage plumbing lines", lambda w: str(w.plumbing_lines)),
        ("USD per 1,000 jobs", lambda w: "; ".join(f"{k} {v:.4f}" for k, v in w.usd_per_1000_jobs.items())),
    ]
    for c in cases:
        print(f"\n## {c.name}: {c.input} ({len(c.sources)} source(s), {c.source_bytes / 1e6:.1f} MB)")
        print("| | old way (download/process/upload) | mount way (media-worker) |\n|---|---|---|")
        for label, fmt in rows:
            print(f"| {label} | {fmt(c.old)} | {fmt(c.mount)} |")
        ratio = c.mount.seconds_to_visible / c.old.seconds_to_visible if c.old.seconds_to_visible else 0
        print(f"\nmount way / old way, time to visible: {ratio:.2f}x")
    print(f"\nPrices (approximate, us-east-1): {json.dumps(PRICES)}; Lambda at {FUNCTION_GB:.0f} GB.")


if __name__ == "__main__":
    sys.exit(main())
