#!/usr/bin/env python3
"""Benchmark: peak memory of ONE worker (the CLI, ``-j 1``, its ffmpeg/tesseract children included) on the
largest inputs it accepts by default, and memory over a 2,000-file prefix batch.

Target: every case <= 512 MB, the smallest Lambda memory size at which S3 Files serves reads straight
from S3.  Cases (inputs generated into a scratch folder, never committed):

* ``jpeg-100mp``  a 12000x8400 photo-like JPEG (quality 90) -> the default thumbnails;
* ``pdf-text-500``  a 500-page born-digital PDF (fpdf2) -> thumbnails + OCR (text layer of every page);
* ``pdf-scan-500``  a 500-page scanned PDF (200 dpi pages of text as images) -> thumbnails + OCR of
  every page (rendered at 300 dpi, one tesseract per CPU);
* ``video-2gb``  a >= 2 GiB 1080p H.264/AAC file (a high-bitrate clip repeated with ``-c copy``) ->
  the default transcode ladder + posters + storyboard;
* ``batch-2000``  2,000 small PNGs under one prefix, the default pool: 0 lost (every source a manifest
  or a recorded failure), memory flat (peak of the first vs the last quarter of the run).

Memory is the process tree's resident set (the worker and every descendant: pool workers, ffmpeg,
tesseract), summed from ``/proc`` every 50 ms; also the largest single process seen in those samples.
Page cache is not counted (the kernel's, not the function's).  Anchor measured in the same run: a bare
``python -c pass`` of the venv.

    .venv/bin/python bench/bench_memory.py [--cases jpeg-100mp,video-2gb] [--pages 500] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TARGET_MB = 512
PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 1e6


@dataclass
class Measured:
    case: str
    input: str
    wall_s: float
    tree_peak_mb: float
    largest_process_mb: float
    results: dict[str, int] = field(default_factory=dict)
    notes: str = ""
    samples: list[tuple[float, float]] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.tree_peak_mb <= TARGET_MB


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(name))
    return kids


def tree_rss(root: int) -> tuple[int, int]:
    """Resident bytes of ``root`` and all its descendants, and of the largest of them."""
    kids, total, largest, todo = _children(), 0, 0, [root]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                rss = int(f.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            rss = 0
        total, largest = total + rss, max(largest, rss)
        todo += kids.get(pid, [])
    return total, largest


def measure(case: str, what: str, cmd: list[str], env: dict[str, str]) -> tuple[Measured, str]:
    """Run ``cmd``, sampling its tree's RSS; returns the figures and its stdout."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples: list[tuple[float, float]] = []
    largest = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            total, big = tree_rss(proc.pid)
            samples.append((time.monotonic() - t0, total / MB))
            largest[0] = max(largest[0], big)
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    stop.set()
    sampler.join()
    wall = time.monotonic() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{case}: exit {proc.returncode}\n{err[-3000:]}")
    m = Measured(
        case=case,
        input=what,
        wall_s=round(wall, 1),
        tree_peak_mb=round(max((s for _, s in samples), default=0.0), 1),
        largest_process_mb=round(largest[0] / MB, 1),
        samples=samples,
    )
    return m, out


def results_of(stdout: str) -> tuple[dict[str, int], list[dict[str, Any]]]:
    rows = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return counts, rows


def cli(ws: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "handlers.cli", "run", "-w", str(ws), "--json", *args]


def worker_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIA_WORKER_")}
    env.update(extra)
    return env


# -- inputs ---------------------------------------------------------------------------------------


def make_jpeg(path: Path) -> str:
    from PIL import Image

    w, h = 12000, 8333  # 99.996 Mpx: just under the default limits.max_image_pixels (100 Mpx)
    small = Image.effect_noise((w // 8, h // 8), 60).convert("RGB")
    grad = Image.merge(
        "RGB",
        (Image.linear_gradient("L").resize((w, h)), Image.radial_gradient("L").resize((w, h)),
         small.resize((w, h)).getchannel(0)),
    )  # fmt: skip
    grad.save(path, quality=90)
    return f"{w}x{h} JPEG, {path.stat().st_size / MB:.1f} MB"


def make_text_pdf(path: Path, pages: int) -> str:
    from fpdf import FPDF

    pdf = FPDF(format="letter")
    pdf.set_font("Helvetica", size=11)
    line = "The quick brown fox jumps over the lazy dog; invoice 0042 totals 1,234.56 EUR."
    for n in range(pages):
        pdf.add_page()
        for k in range(45):
            pdf.cell(0, 5.5, f"{n + 1}.{k + 1} {line}", new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))
    return f"{pages}-page born-digital PDF, {path.stat().st_size / MB:.1f} MB"


def make_scan_pdf(path: Path, pages: int) -> str:
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=28)
    images = []
    for n in range(pages):
        im = Image.new("L", (1700, 2200), 255)  # letter at 200 dpi
        d = ImageDraw.Draw(im)
        for k in range(40):
            text = f"Page {n + 1} line {k + 1}: the quick brown fox jumps over the lazy dog."
            d.text((120, 120 + k * 48), text, fill=0, font=font)
        images.append(im.convert("1"))
    images[0].save(path, save_all=True, append_images=images[1:], resolution=200)
    return f"{pages}-page scanned PDF (200 dpi, 1-bit), {path.stat().st_size / MB:.1f} MB"


def make_video(path: Path, min_bytes: int, work: Path) -> str:
    from pipelines.tools import ffmpeg as ff

    exe = ff.locate().path
    clip = work / "clip.mp4"
    subprocess.run(
        [exe, "-hide_banner", "-v", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=s=1920x1080:r=30:d=20,noise=alls=12:allf=t",
         "-f", "lavfi", "-i", "sine=f=440:sample_rate=48000:d=20",
         "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "80M", "-maxrate", "80M", "-bufsize", "80M",
         "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", str(clip)],
        check=True,
    )  # fmt: skip
    copies = -(-min_bytes // clip.stat().st_size)
    listing = work / "list.txt"
    listing.write_text("ffconcat version 1.0\n" + f"file '{clip}'\n" * copies)
    subprocess.run(
        [exe, "-hide_banner", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing),
         "-c", "copy", "-movflags", "+faststart", str(path)],
        check=True,
    )  # fmt: skip
    clip.unlink()
    return f"1080p30 H.264/AAC, {copies * 20} s, {path.stat().st_size / 2**30:.2f} GiB"


def make_batch(folder: Path, n: int) -> str:
    from PIL import Image

    folder.mkdir(parents=True)
    base = Image.effect_noise((320, 240), 50).convert("RGB")
    for i in range(n):
        base.rotate(i % 360).save(folder / f"img{i:05d}.png")
    return f"{n} PNGs of 320x240"


# -- cases ----------------------------------------------------------------------------------------


def single(case: str, tmp: Path, name: str, make: Callable[[Path], str], **env: str) -> Measured:
    ws = tmp / case / "ws"
    (ws / "in").mkdir(parents=True)
    what = make(ws / "in" / name)
    m, out = measure(case, what, cli(ws, "-j", "1", f"in/{name}"), worker_env(**env))
    m.results, rows = results_of(out)
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        m.notes = "; ".join(f"{r['source']}: {r['error']}" for r in failed)[:300]
    shutil.rmtree(tmp / case, ignore_errors=True)
    return m


def batch(tmp: Path, n: int) -> Measured:
    ws = tmp / "batch" / "ws"
    what = make_batch(ws / "in", n)
    m, out = measure("batch-2000", what, cli(ws, "in"), worker_env())
    m.results, rows = results_of(out)
    manifests = {r["source"] for r in rows if r["status"] == "ok" and (ws / str(r["manifest"])).is_file()}
    recorded_failures = {r["source"] for r in rows if r["status"] in ("failed", "timeout") and r["error"]}
    sources = {f"in/{p.name}" for p in (ws / "in").iterdir()}
    lost = sources - manifests - recorded_failures
    q = m.wall_s / 4
    first = max((s for t, s in m.samples if t <= q), default=0.0)
    last = max((s for t, s in m.samples if t >= 3 * q), default=0.0)
    m.notes = (
        f"{len(sources)} sources: {len(manifests)} with a manifest, {len(recorded_failures)} recorded "
        f"failures, {len(lost)} lost; peak first quarter {first:.0f} MB, last quarter {last:.0f} MB; "
        f"{len(sources) / m.wall_s:.0f} files/s"
    )
    m.results["lost"] = len(lost)
    shutil.rmtree(tmp / "batch", ignore_errors=True)
    return m


def anchor() -> Measured:
    m, _ = measure(
        "anchor: python -c pass", "the venv's interpreter", [sys.executable, "-c", "pass"], worker_env()
    )
    return m


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    all_cases = ["jpeg-100mp", "pdf-text-500", "pdf-scan-500", "video-2gb", "batch-2000"]
    ap.add_argument("--cases", default=",".join(all_cases))
    ap.add_argument("--pages", type=int, default=500, help="pages of the PDF cases")
    ap.add_argument("--video-bytes", type=int, default=2 << 30)
    ap.add_argument("--files", type=int, default=2000, help="files of the batch case")
    ap.add_argument("--workdir", type=Path, help="scratch folder (default: a temp folder)")
    ap.add_argument("--json", action="store_true")
    opts = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-memory-", dir=opts.workdir))
    runs: list[Measured] = [anchor()]
    try:
        for case in opts.cases.split(","):
            if case == "jpeg-100mp":
                runs.append(single(case, tmp, "big.jpg", make_jpeg))
            elif case == "pdf-text-500":
                runs.append(single(case, tmp, "text.pdf", lambda p: make_text_pdf(p, opts.pages)))
            elif case == "pdf-scan-500":
                runs.append(single(case, tmp, "scan.pdf", lambda p: make_scan_pdf(p, opts.pages)))
            elif case == "video-2gb":
                runs.append(single(case, tmp, "big.mp4", lambda p: make_video(p, opts.video_bytes, tmp)))
            elif case == "batch-2000":
                runs.append(batch(tmp, opts.files))
            else:
                raise SystemExit(f"unknown case {case!r}; known: {', '.join(all_cases)}")
            print(
                f"... {runs[-1].case}: {runs[-1].tree_peak_mb:.0f} MB in {runs[-1].wall_s:.0f} s",
                file=sys.stderr,
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if opts.json:
        rows = [{**{k: v for k, v in asdict(r).items() if k != "samples"}, "ok": r.ok} for r in runs]
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'case':24} {'wall':>7} {'tree peak':>10} {'largest':>8}  target {TARGET_MB} MB  input / results")
    for r in runs:
        verdict = "" if r.case.startswith("anchor") else ("ok" if r.ok else "OVER")
        figures = f"{r.wall_s:>6.1f}s {r.tree_peak_mb:>8.0f}MB {r.largest_process_mb:>6.0f}MB"
        print(f"{r.case:24} {figures}  {verdict:4}  {r.input}; {r.results} {r.notes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
