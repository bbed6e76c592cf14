"""The cost ledger: every manifest's ``io`` counts what its job (the worker, PyAV and ffmpeg) read and
wrote on the mount, checked against the kernel (strace -f of the whole process tree); ``media-worker
cost`` sums and prices it; the price table and the cache expiry move the bill as they should.  The
metering rules (128 KiB direct, 32 KiB minimum) and every price term are checked against figures worked
out by hand here, never against the code's own formula."""

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

from config.cost import CostSettings

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

    one = bill(MEDIA_WORKER_SYNC__CACHE_EXPIRATION_DAYS="1")
    thirty = bill(MEDIA_WORKER_SYNC__CACHE_EXPIRATION_DAYS="30")
    assert one["cache_expiration_days"] == 1 and thirty["cache_expiration_days"] == 30
    kept = [p for p in (workspace / "processed").rglob("*") if p.is_file()]  # outputs and manifests
    assert thirty["bytes_stored"] == sum(p.stat().st_size for p in kept)
    assert thirty["files_written"] == len(kept) + 2  # and the two sources' leases, deleted since
    gap = thirty["usd"]["mount_way"] - one["usd"]["mount_way"]  # type: ignore[index]
    # the cache at $0.30/GB-month (config/cost.py) for 29 days more
    expected = sum(p.stat().st_size for p in kept) / 2**30 * 0.30 * (30 - 1) / 30
    assert gap == pytest.approx(expected, abs=2e-10)  # usd is rounded to 1e-10
    assert one["usd"]["old_way"] == thirty["usd"]["old_way"]  # type: ignore[index]
    assert one["mount_way_usd_by_cache_days"] == thirty["mount_way_usd_by_cache_days"]

    dear = bill(MEDIA_WORKER_COST__S3_PUT_PER_1K="5.0")
    extra = (5.0 - 0.005) * (len(kept) + 2) / 1000  # a PUT per file at $5 instead of $0.005 per 1,000
    assert dear["usd"]["old_way"] - thirty["usd"]["old_way"] == pytest.approx(extra, abs=2e-10)  # type: ignore[index,operator]

    res = run_cli("cost", "-w", str(workspace), "in")  # the table: the three ways, every expiry
    assert res.returncode == 0
    for words in ("S3 Files, cache expiry 1 d", "2 d (configured)", "30 d", "download / upload", "EFS"):
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
    assert asked["cache_expiration_days"] == 2 and asked["usd"] == bill()["usd"]  # the default expiry
    res = run_cli("cost", "-w", str(workspace), "--cache-days", "5", "in")
    assert "S3 Files, cache expiry 5 d" in res.stdout, res.stdout
    assert run_cli("cost", "-w", str(workspace), "--cache-days", "0", "in").returncode == 2


def test_a_source_without_a_manifest_is_not_guessed(workspace: Path) -> None:
    add_samples(workspace, "photo.jpg")
    shutil.copy(SAMPLES / "photo.jpg", workspace / "in/later.jpg")
    assert run_cli("run", "-w", str(workspace), "in/photo.jpg").returncode == 0
    bill = json.loads(run_cli("cost", "-w", str(workspace), "--json", "in").stdout)
    assert bill["sources"] == 1 and bill["missing"] == 1


# -- figures by hand: the metering rules and each price term of config/cost.py, written out as numbers
# Published prices (config/cost.py, CostSettings defaults): S3 Files cache $0.30/GB-month, small reads
# $0.03/GB, writes $0.06/GB; S3 Standard $0.023/GB-month, GET $0.0004 and PUT $0.005 per 1,000; EFS
# storage $0.30/GB-month, reads $0.03/GB, writes $0.06/GB; 1 month of storage; GB = 2**30 bytes.

KIB = 1024


def test_reads_are_metered_as_s3_files_meters_them() -> None:
    """Below 128 KiB a read goes through the cache and is metered at least 32 KiB; from 128 KiB it is
    direct (served from S3) and not metered there; a read of 0 bytes (end of file) is no request."""
    from pipelines.ledger import StorageIO

    io = StorageIO()
    for n in (1, 32 * KIB - 1, 32 * KIB, 32 * KIB + 1, 128 * KIB - 1, 128 * KIB, 3 * 1024 * KIB, 0):
        io.read(n)
    assert io.read_requests == 7
    assert io.bytes_read_direct == 128 * KIB + 3 * 1024 * KIB and io.direct_read_requests == 2
    assert io.bytes_read_cached == 1 + (32 * KIB - 1) + 32 * KIB + (32 * KIB + 1) + (128 * KIB - 1)
    # the first three are metered 32 KiB each; the two above the minimum as what they read
    assert io.bytes_read_cached_metered == 3 * 32 * KIB + (32 * KIB + 1) + (128 * KIB - 1)


def test_a_jobs_ledger_and_bill_by_hand(workspace: Path) -> None:
    """Two jobs of the gate pipeline (tests/gate_pipeline.py), read in 128 KiB blocks, with no lease:
    a.txt, 2 x 128 KiB + 1,000 bytes, is two direct reads and one small read metered 32 KiB; b.txt,
    50,000 bytes, one small read metered as itself.  Each writes two outputs (70 and 71 bytes) and its
    manifest.  Every figure of the ledgers, their sum and the three ways' USD, worked out here."""
    from gate_pipeline import gate_engine

    from pipelines.batch import cost

    (workspace / "in").mkdir()
    (workspace / "in/a.txt").write_bytes(b"a" * (2 * 128 * KIB + 1000))
    (workspace / "in/b.txt").write_bytes(b"b" * 50_000)
    engine = gate_engine(
        workspace, read_block_bytes=128 * KIB, lease={"enabled": False}, sync={"cache_expiration_days": 30}
    )
    docs = {}
    for name in ("a", "b"):
        res = engine.process(f"in/{name}.txt")
        assert res.status == "ok" and res.manifest, res
        size = (workspace / res.manifest).stat().st_size  # the manifest, as written on disk
        docs[name] = (json.loads((workspace / res.manifest).read_bytes()), size)
    (a, ma), (b, mb) = docs["a"], docs["b"]
    assert a["io"] == {
        "bytes_read_direct": 2 * 128 * KIB,
        "bytes_read_cached": 1000,
        "bytes_read_cached_metered": 32 * KIB,  # 1,000 bytes read, metered at the 32 KiB minimum
        "read_requests": 3,
        "direct_read_requests": 2,
        "bytes_written": 70 + 71 + ma,
        "write_requests": 3,
        "files_written": 3,
        "tool_seeks": 0,
        "sources": 1,
        "source_bytes": 2 * 128 * KIB + 1000,
        "cache_expiration_days": 30,
        "bytes_stored": 70 + 71 + ma,
    }
    assert b["io"] == {
        **a["io"],
        "bytes_read_direct": 0,
        "bytes_read_cached": 50_000,
        "bytes_read_cached_metered": 50_000,  # over the minimum: metered as read
        "read_requests": 1,
        "direct_read_requests": 0,
        "bytes_written": 70 + 71 + mb,
        "source_bytes": 50_000,
        "bytes_stored": 70 + 71 + mb,
    }
    kept_a, kept_b = 141 + ma, 141 + mb
    assert a["usd"] == pytest.approx(
        {
            "mount_way": 32 * KIB / 2**30 * 0.03  # small reads
            + kept_a / 2**30 * 0.06  # writes
            + kept_a / 2**30 * 0.30 * 30 / 30  # kept in the cache 30 days
            + 2 * 0.0004 / 1000  # a GET per direct read
            + 3 * 0.005 / 1000  # a PUT per file exported
            + kept_a / 2**30 * 0.023,  # a month in S3 Standard
            "old_way": 1 * 0.0004 / 1000 + 3 * 0.005 / 1000 + kept_a / 2**30 * 0.023,
            "efs": (2 * 128 * KIB + 1000) / 2**30 * 0.03
            + kept_a / 2**30 * 0.06
            + (2 * 128 * KIB + 1000 + kept_a) / 2**30 * 0.30,
        },
        rel=0,
        abs=1e-10,  # the manifest's usd is rounded to 1e-10
    )
    # media-worker cost's sum and bill over both
    bill = cost.bill(cost.total([a, b]), CostSettings(), 30)
    sums = {k: bill[k] for k in ("bytes_read_cached_metered", "direct_read_requests", "files_written")}
    assert sums == {
        "bytes_read_cached_metered": 32 * KIB + 50_000,
        "direct_read_requests": 2,
        "files_written": 6,
    }
    assert bill["sources"] == 2 and bill["bytes_stored"] == kept_a + kept_b
    for days in (1, 30):
        assert bill["mount_way_usd_by_cache_days"][str(days)] == pytest.approx(
            (32 * KIB + 50_000) / 2**30 * 0.03
            + (kept_a + kept_b) / 2**30 * (0.06 + 0.30 * days / 30 + 0.023)
            + 2 * 0.0004 / 1000
            + 6 * 0.005 / 1000,
            rel=0,
            abs=1e-10,
        )


# A ledger with every figure set: 3 small reads (metered 3 x 32 KiB), 5 direct reads of 128 KiB, 1 GiB
# written in 4 files, 0.5 GiB kept, 2 sources of 3 GiB in all.
LEDGER = {
    "bytes_read_cached": 3 * 1000,
    "bytes_read_cached_metered": 3 * 32 * KIB,
    "bytes_read_direct": 5 * 128 * KIB,
    "direct_read_requests": 5,
    "read_requests": 8,
    "bytes_written": 2**30,
    "files_written": 4,
    "bytes_stored": 2**29,
    "sources": 2,
    "source_bytes": 3 * 2**30,
}
PRICES = [name for name in CostSettings.model_fields if name != "storage_months"]
TERMS = [  # (price, cache days, storage months, mount way, old way, EFS): that price alone, by hand
    ("s3files_small_read_gb", 30, 1, 3 * 32 * KIB / 2**30 * 0.03, 0, 0),
    ("s3files_write_gb", 30, 1, 1 * 0.06, 0, 0),
    ("s3files_cache_gb_month", 30, 1, 0.5 * 0.30 * 30 / 30, 0, 0),
    ("s3files_cache_gb_month", 1, 1, 0.5 * 0.30 * 1 / 30, 0, 0),
    ("s3_get_per_1k", 30, 1, 5 * 0.0004 / 1000, 2 * 0.0004 / 1000, 0),
    ("s3_put_per_1k", 30, 1, 4 * 0.005 / 1000, 4 * 0.005 / 1000, 0),
    ("s3_standard_gb_month", 30, 1, 0.5 * 0.023, 0.5 * 0.023, 0),
    ("s3_standard_gb_month", 30, 2, 0.5 * 0.023 * 2, 0.5 * 0.023 * 2, 0),
    ("efs_read_gb", 30, 1, 0, 0, (5 * 128 * KIB + 3 * 1000) / 2**30 * 0.03),
    ("efs_write_gb", 30, 1, 0, 0, 1 * 0.06),
    ("efs_storage_gb_month", 30, 1, 0, 0, (3 + 0.5) * 0.30),
    ("efs_storage_gb_month", 30, 2, 0, 0, (3 + 0.5) * 0.30 * 2),
]


def test_every_price_has_its_term_checked() -> None:
    assert sorted({t[0] for t in TERMS}) == sorted(PRICES)


@pytest.mark.parametrize(("price", "days", "months", "mount_way", "old_way", "efs"), TERMS)
def test_each_price_term_by_hand(
    price: str, days: int, months: int, mount_way: float, old_way: float, efs: float
) -> None:
    """Every price but one set to 0: the bill is that one term, at its published price."""
    from config.cost import usd

    prices = CostSettings(storage_months=months, **{p: 0.0 for p in PRICES if p != price})
    got = usd(LEDGER, prices, days)
    assert got == pytest.approx({"mount_way": mount_way, "old_way": old_way, "efs": efs}, rel=0, abs=1e-10)
    assert mount_way or old_way or efs  # the term is there to be seen
