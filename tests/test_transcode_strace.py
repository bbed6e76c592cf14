"""The mount contract for the ffmpeg pipelines, seen from the kernel (strace -f, every process).

For MP4 (moov first and moov last), MKV, WebM, MOV, MPEG-TS and audio files:

* >= 99 % of the bytes read from each source come from read() calls that asked for >= 1 MiB, in the
  worker, the PyAV probe and the ffmpeg child alike;
* transcode and video_thumbnails share ONE decode: the source (or its local copy) is read by exactly
  one ffmpeg process, and <= 1.05 times;
* write amplification (bytes written to the workspace / final bytes) <= 1.02; nothing is renamed.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from avtools import fast_env, make_media
from conftest import run_cli
from strace_support import MIB, READ, RENAME, VREAD

WRITE = re.compile(r"^(?:write|pwrite64|writev|pwritev|pwritev2)\(\d+<(?P<path>[^>]*)>.*\) = (?P<ret>-?\d+)$")
EXECVE = re.compile(r'^execve\("(?P<prog>[^"]*)"')
THREAD = re.compile(r"^clone3?\(.*CLONE_THREAD.* = (?P<tid>\d+)$")
LOCAL_COPY = re.compile(
    r"/media-worker-[^/]+/(?:job-[^/]+/)?source\.[a-z0-9]+$"
)  # the job's copy in its scratch folder

X264 = ["-vf", "noise=alls=12:allf=t", "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-g", "50"]


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Multi-MiB test files in every container the issue names (lossless video to make them big)."""
    d = tmp_path_factory.mktemp("media")
    aac = ["-c:a", "aac"]
    made = {
        "moov-end.mp4": make_media(d / "moov-end.mp4", *X264, *aac),
        "moov-start.mp4": make_media(d / "moov-start.mp4", *X264, *aac, "-movflags", "+faststart"),
        "clip.mkv": make_media(d / "clip.mkv", *X264, *aac),
        "clip.webm": make_media(
            d / "clip.webm",
            "-vf",
            "noise=alls=12:allf=t",
            "-c:v",
            "libvpx",
            "-b:v",
            "12M",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-c:a",
            "libopus",
        ),
        "clip.mov": make_media(d / "clip.mov", *X264, *aac),
        "clip.ts": make_media(d / "clip.ts", *X264, *aac),
        "song.flac": make_media(
            d / "song.flac",
            "-map",
            "1:a",
            "-ac",
            "2",
            "-c:a",
            "flac",
            seconds=12,
            audio_src="anoisesrc=a=0.3:sample_rate=48000",
        ),
        "song.wav": make_media(d / "song.wav", "-map", "1:a", "-c:a", "pcm_s16le", seconds=15),
    }
    for name, p in made.items():
        assert p.stat().st_size > 1.2 * MIB, (name, p.stat().st_size)
    return made


def strace_run(tmp: Path, ws: Path, env: dict[str, str]) -> dict[str, list[str]]:
    """Run the CLI on the workspace under strace -f; returns traced lines per process."""
    out = tmp / "trace"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    prefix = [
        "strace", "-f", "-ff", "-qq", "-y", "-s", "0", "-o", str(out / "t"), "-e",
        "trace=execve,clone,clone3,openat,read,pread64,readv,preadv,preadv2,write,pwrite64,writev,pwritev,pwritev2,"
        "rename,renameat,renameat2",
    ]  # fmt: skip
    res = run_cli("run", "-w", str(ws), "--json", "-j", "2", "in", prefix=prefix, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    return {f.name: f.read_text(errors="replace").splitlines() for f in sorted(out.iterdir())}


def check_contract(
    ws: Path, traces: dict[str, list[str]], sizes: dict[str, int]
) -> tuple[dict[str, dict[str, int]], dict[str, set[str]]]:
    """Assert the read/write/rename contract; returns per-source bytes read by 'worker'/'ffmpeg', and
    the ffmpeg processes that read each source or local copy (keyed by its path)."""
    root = str(ws)
    srcs = {f"{root}/in/{name}": name for name in sizes}
    per: dict[str, dict[str, int]] = {name: {"worker": 0, "ffmpeg": 0} for name in sizes}
    big = small = 0
    small_calls: list[str] = []
    written: dict[str, int] = {}
    decoders: dict[str, set[str]] = {}  # source or local copy -> ffmpeg processes reading it
    # strace -ff writes one file per thread: group threads into their process (CLONE_THREAD)
    processes = {tid: tid for tid in traces}
    for tid, lines in traces.items():
        for line in lines:
            if m := THREAD.match(line):
                processes[f"t.{m['tid']}"] = tid
    for tid in processes:
        while processes[processes[tid]] != processes[tid]:
            processes[tid] = processes[processes[tid]]
    ffmpeg_processes = {
        processes[tid]
        for tid, lines in traces.items()
        if any((m := EXECVE.match(ln)) and "ffmpeg" in m["prog"] for ln in lines)
    }
    for tid, lines in traces.items():
        who = "ffmpeg" if processes[tid] in ffmpeg_processes else "worker"
        for line in lines:
            if (
                who == "ffmpeg"
                and (m := READ.match(line))
                and int(m["ret"]) > 0
                and (m["path"] in srcs or LOCAL_COPY.search(m["path"]))
            ):
                decoders.setdefault(m["path"], set()).add(processes[tid])
            if (m := READ.match(line)) and m["path"] in srcs and int(m["ret"]) > 0:
                n = int(m["ret"])
                per[srcs[m["path"]]][who] += n
                if int(m["count"]) >= MIB:
                    big += n
                else:
                    small += n
                    small_calls.append(line)
            elif (m := VREAD.match(line)) and m["path"] in srcs:
                pytest.fail(f"vectored read on a source: {line}")
            elif (
                (m := WRITE.match(line)) and m["path"].startswith(f"{root}/processed/") and int(m["ret"]) > 0
            ):
                written[m["path"]] = written.get(m["path"], 0) + int(m["ret"])
            elif RENAME.match(line) and root in line:
                pytest.fail(f"rename on the workspace: {line}")
    assert big / (big + small) >= 0.99, small_calls[:5]
    final = {str(p): p.stat().st_size for p in (ws / "processed").rglob("*") if p.is_file()}
    # each job's lease (docs/leases.md) is written once and deleted at the job's end: a control file,
    # not an output, so it is checked on its own and left out of the write amplification
    leases = {p for p in written if p.endswith(".json.lease")}
    assert len(leases) == len(srcs) and not leases & set(final), (leases, len(srcs))
    written = {p: n for p, n in written.items() if p not in leases}
    assert set(written) == set(final), set(written) ^ set(final)  # nothing written and then deleted
    wa = sum(written.values()) / sum(final.values())
    print(f"1 MiB-read share {big / (big + small):.4f}; write amplification {wa:.4f}; per source {per}")
    assert wa <= 1.02, wa
    return per, decoders


def setup_ws(ws: Path, sources: dict[str, Path]) -> dict[str, int]:
    (ws / "in").mkdir()
    for name, p in sources.items():
        shutil.copy(p, ws / "in" / name)
    return {name: p.stat().st_size for name, p in sources.items()}


def test_local_copy_mode_reads_each_source_once(
    workspace: Path, tmp_path: Path, sources: dict[str, Path]
) -> None:
    """Default: sources <= 64 MiB are read once by the worker (1 MiB reads); probe and ffmpeg read a copy."""
    sizes = setup_ws(workspace, sources)
    env = fast_env(hls=True, audio_outputs=["aac", "opus", "mp3"], loudnorm=True)  # every writer
    per, decoders = check_contract(workspace, strace_run(tmp_path, workspace, env), sizes)
    for name, size in sizes.items():
        assert per[name] == {"worker": size, "ffmpeg": 0}, name  # read amplification 1.00
    # one decode per source: each local copy is read by exactly one ffmpeg process (the HLS remux
    # reads the renditions, not the source)
    assert len(decoders) == len(sizes) and all(len(p) == 1 for p in decoders.values()), decoders
    assert len(list((workspace / "processed/_manifests/in").glob("*.json"))) == len(sizes)
    assert (workspace / "processed/video_thumbnails/sprite/in/clip.ts.jpg").is_file()
    assert (workspace / "processed/transcode/hls/in/clip.mkv.m3u8").is_file()
    assert (workspace / "processed/transcode/loudnorm/in/song.wav.m4a").is_file()


def test_direct_mode_one_decode_and_bounded_probe(
    workspace: Path, tmp_path: Path, sources: dict[str, Path]
) -> None:
    """local_copy_max_bytes=0: PyAV probes and ffmpeg decodes straight from the mount."""
    sizes = setup_ws(workspace, sources)
    env = fast_env(local_copy_max_bytes=0)
    per, decoders = check_contract(workspace, strace_run(tmp_path, workspace, env), sizes)
    for name, size in sizes.items():
        assert len(decoders[f"{workspace}/in/{name}"]) == 1, (name, decoders)  # one ffmpeg process
        # one ffmpeg decode for transcode AND video_thumbnails: the source is read once (+ a block)
        assert size <= per[name]["ffmpeg"] <= 1.05 * size + MIB, (name, per[name], size)
        # the probe reads a bounded part: the head (plus the moov of a moov-last MP4, or the last
        # MiB of an MPEG-TS for its duration)
        assert per[name]["worker"] <= 4 * MIB, (name, per[name])
    assert len(list((workspace / "processed/_manifests/in").glob("*.json"))) == len(sizes)
