"""The cost ledger: every manifest's ``io`` counts what its job (the worker, PyAV and ffmpeg) read and
wrote on the mount, checked against the kernel (strace -f of the whole process tree); ``media-worker
cost`` sums and prices it; the price table and the cache expiry move the bill as they should."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from avtools import fast_env, make_media
from conftest import SAMPLES, add_samples, cli_env, run_cli
from strace_support import READ

from config.cost import GB, CostSettings

WRITE = re.compile(r"^(?:write|pwrite64)\(\d+<(?P<path>[^>]*)>, .*\) = (?P<ret>-?\d+)$")
VECTORED = re.compile(r"^(?:readv|preadv|preadv2|writev|pwritev|pwritev2)\(\d+<(?P<path>[^>]*)>")
DIRECT = 128 << 10


def kernel_view(trace_dir: Path, root: str) -> dict[str, int]:
    """Reads and writes on files under ``root`` by every process and thread, as strace saw them."""
    seen = dict.fromkeys(("bytes_read", "read_requests", "bytes_read_direct", "direct_read_requests"), 0)
    seen |= {"bytes_written": 0, "write_requests": 0}
    for f in trace_dir.iterdir():
        for line in f.read_text(errors="replace").splitlines():
            if (m := READ.match(line)) and m["path"].startswith(root) and int(m["ret"]) > 0:
                n = int(m["ret"])
                seen["bytes_read"] += n
                seen["read_requests"] += 1
                if n >= DIRECT:
                    seen["bytes_read_direct"] += n
                    seen["direct_read_requests"] += 1
            elif (m := WRITE.match(line)) and m["path"].startswith(root) and int(m["ret"]) > 0:
                seen["bytes_written"] += int(m["ret"])
                seen["write_requests"] += 1
            elif (m := VECTORED.match(line)) and m["path"].startswith(root):
                pytest.fail(f"a vectored call the ledger does not count: {line}")
    return seen


def ledger_view(bill: dict[str, int]) -> dict[str, int]:
    return {
        "bytes_read": bill["bytes_read_direct"] + bill["bytes_read_cached"],
        "read_requests": bill["read_requests"],
        "bytes_read_direct": bill["bytes_read_direct"],
        "direct_read_requests": bill["direct_read_requests"],
        "bytes_written": bill["bytes_written"],
        "write_requests": bill["write_requests"],
    }


@pytest.mark.parametrize("mode", ["local-copy", "direct"])
def test_the_ledger_matches_what_the_process_tree_read_and_wrote(
    workspace: Path, tmp_path: Path, mode: str
) -> None:
    """Photos, a text PDF (OCR), a video (transcode with HLS, posters, storyboard) and audio; in the
    direct mode PyAV probes and ffmpeg decodes the video straight from the mount, so the tools' own
    reads (and the HLS remux's reads of the renditions) are in the ledger too.  Within 2 %."""
    add_samples(workspace, "photo.jpg", "logo.png", "document.pdf", "clip.mp4", "tone.m4a")
    # and a multi-MiB MP4 with its moov last: ffmpeg and PyAV seek in it (lossless noise makes it big)
    noisy = [
        "-vf",
        "noise=alls=12:allf=t",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-qp",
        "0",
        "-c:a",
        "aac",
    ]
    make_media(workspace / "in/moov-last.mp4", *noisy)
    assert (workspace / "in/moov-last.mp4").stat().st_size > 3 << 20
    extra = {"local_copy_max_bytes": 0} if mode == "direct" else {}
    env = fast_env(hls=True, **extra)
    trace = tmp_path / "trace"
    trace.mkdir()
    prefix = [
        "strace", "-f", "-ff", "-qq", "-y", "-s", "0", "-o", str(trace / "t"), "-e",
        "trace=read,pread64,readv,preadv,preadv2,write,pwrite64,writev,pwritev,pwritev2",
    ]  # fmt: skip
    res = run_cli("run", "-w", str(workspace), "--json", "-j", "2", "in", prefix=prefix, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    seen = kernel_view(trace, str(workspace) + "/")

    res = run_cli("cost", "-w", str(workspace), "--json", "in", env=env)
    assert res.returncode == 0, res.stderr
    bill = json.loads(res.stdout)
    assert bill["sources"] == 6 and bill["without_ledger"] == 0 and bill["missing"] == 0
    counted = ledger_view(bill)
    print(f"{mode}: kernel {seen}\n{mode}: ledger {counted}")
    for key, n in seen.items():
        assert n > 0 or key.startswith("direct"), (key, seen)
        if key.endswith("requests"):  # a tool's reads are its bytes in 1 MiB pieces; a seek may add one
            assert counted[key] <= n <= counted[key] + bill["tool_seeks"], (key, counted[key], n)
        assert abs(counted[key] - n) <= 0.02 * n or n - counted[key] <= bill["tool_seeks"], (key, counted, n)
    if mode == "local-copy":  # no tool touched the mount but to write: every figure is exact
        assert bill["tool_seeks"] == 0 and counted == seen
    # the files kept are the outputs and manifests on disk now
    kept = [p for p in (workspace / "processed").rglob("*") if p.is_file()]
    assert bill["files_written"] >= len(kept)
    assert bill["bytes_stored"] == sum(p.stat().st_size for p in kept)
    if mode == "direct":  # the tools' reads of the mount are in it: more than the worker's alone
        assert bill["bytes_read_direct"] >= (workspace / "in/moov-last.mp4").stat().st_size


def test_each_manifest_counts_its_own_write(workspace: Path) -> None:
    """The ledger is inside the file it counts: the manifest's size is in bytes_written and
    bytes_stored exactly (outputs + the manifest), and the priced ``usd`` is there."""
    add_samples(workspace, "photo.jpg")
    assert run_cli("run", "-w", str(workspace), "in").returncode == 0
    (mpath,) = (workspace / "processed/_manifests").rglob("*.json")
    doc = json.loads(mpath.read_text())
    io = doc["io"]
    outputs = sum(o["size"] for o in doc["outputs"])
    assert io["bytes_stored"] == outputs + mpath.stat().st_size
    assert io["files_written"] == len(doc["outputs"]) + 2  # + the lease and the manifest
    assert io["bytes_read_cached"] + io["bytes_read_direct"] >= doc["source"]["size"]
    assert set(doc["usd"]) == {"mount_way", "old_way", "efs"} and all(v > 0 for v in doc["usd"].values())


def test_prices_and_cache_expiry_move_the_bill(workspace: Path) -> None:
    """The cache expiry changes only the mount way's cache term (bytes kept x $/GB-month x days/30);
    a price override from the environment is used; nothing else moves."""
    add_samples(workspace, "photo.jpg", "document.pdf")
    assert run_cli("run", "-w", str(workspace), "in").returncode == 0

    def bill(**env: str) -> dict[str, object]:
        res = run_cli("cost", "-w", str(workspace), "--json", "in", env={**cli_env(), **env})
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    one, thirty = bill(MEDIA_WORKER_SYNC__CACHE_EXPIRATION_DAYS="1"), bill()
    assert one["cache_expiration_days"] == 1 and thirty["cache_expiration_days"] == 30
    gap = thirty["usd"]["mount_way"] - one["usd"]["mount_way"]  # type: ignore[index]
    expected = thirty["bytes_stored"] / GB * CostSettings().s3files_cache_gb_month * 29 / 30  # type: ignore[operator]
    assert gap == pytest.approx(expected, abs=2e-10)  # usd is rounded to 1e-10
    assert one["usd"]["old_way"] == thirty["usd"]["old_way"]  # type: ignore[index]
    assert one["mount_way_usd_by_cache_days"] == thirty["mount_way_usd_by_cache_days"]

    dear = bill(MEDIA_WORKER_COST__S3_PUT_PER_1K="5.0")
    extra = (5.0 - CostSettings().s3_put_per_1k) * thirty["files_written"] / 1000  # type: ignore[operator]
    assert dear["usd"]["old_way"] - thirty["usd"]["old_way"] == pytest.approx(extra, abs=2e-10)  # type: ignore[index,operator]

    res = run_cli("cost", "-w", str(workspace), "in")  # the table: the three ways, every expiry
    assert res.returncode == 0
    for words in ("S3 Files, cache expiry 1 d", "30 d (configured)", "download / upload", "EFS"):
        assert words in res.stdout, res.stdout


def test_cost_prices_another_cache_expiry(workspace: Path) -> None:
    """`--cache-days N` prices the mount way at N as if it were configured (the stack's
    CacheExpirationDays), beside the configured value; nothing else changes."""
    add_samples(workspace, "photo.jpg")
    assert run_cli("run", "-w", str(workspace), "in").returncode == 0

    def bill(*args: str, **env: str) -> dict[str, Any]:
        res = run_cli("cost", "-w", str(workspace), "--json", *args, "in", env={**cli_env(), **env})
        assert res.returncode == 0, res.stderr
        return dict(json.loads(res.stdout))

    asked = bill("--cache-days", "5", "--cache-days", "90")
    at5, at90 = (
        bill(MEDIA_WORKER_SYNC__CACHE_EXPIRATION_DAYS="5"),
        bill(MEDIA_WORKER_SYNC__CACHE_EXPIRATION_DAYS="90"),
    )
    by_days = asked["mount_way_usd_by_cache_days"]
    assert by_days["5"] == at5["usd"]["mount_way"] and by_days["90"] == at90["usd"]["mount_way"]
    assert by_days["5"] < by_days["90"]
    assert asked["cache_expiration_days"] == 30 and asked["usd"] == bill()["usd"]
    res = run_cli("cost", "-w", str(workspace), "--cache-days", "5", "in")
    assert "S3 Files, cache expiry 5 d" in res.stdout, res.stdout
    assert run_cli("cost", "-w", str(workspace), "--cache-days", "0", "in").returncode == 2


def test_a_source_without_a_manifest_is_not_guessed(workspace: Path) -> None:
    add_samples(workspace, "photo.jpg")
    shutil.copy(SAMPLES / "photo.jpg", workspace / "in/later.jpg")
    assert run_cli("run", "-w", str(workspace), "in/photo.jpg").returncode == 0
    bill = json.loads(run_cli("cost", "-w", str(workspace), "--json", "in").stdout)
    assert bill["sources"] == 1 and bill["missing"] == 1
