#!/usr/bin/env python3
"""Benchmark: what phone media costs over the SDR / JPEG equivalent, measured in the same run.

1. tonemap - the worker's ``transcode`` (+ posters and storyboard: ``video_thumbnails``) of a 1080p 10-bit
   HLG HEVC clip, per ladder (1 rung: 720p; 3 rungs: 720/480/360), against
   a. the same job on the SDR original it was graded from (H.264 8-bit): what an HDR upload costs in all
      (HEVC 10-bit decode + tone mapping);
   b. the same HLG source with ``hdr_to_sdr = false``: the tone mapping alone (same decode, same encodes).
2. heic    - a 12 Mpx (4032x3024) photo-like picture encoded as HEIC (pillow-heif, quality 90) and as JPEG
   (Pillow, quality 90): the thumbnails pipeline's whole in-memory path (``render_thumbnails``: decode, the
   three default sizes, JPEG + WebP) and the decode alone.  HEIC cannot use JPEG's DCT-domain draft
   decode, so the whole 12 Mpx are decoded.

Interleaved runs after a warm-up; the ratio of the fastest runs is reported, medians too.  No targets:
the figures go into docs/benchmarks.md.

Usage: ``.venv/bin/python bench/bench_phone.py [--runs 3] [--seconds 10] [--json]``
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config.settings import load_settings
from pipelines.core.engine import Engine
from pipelines.media.imaging import open_image, render_thumbnails
from pipelines.tools import ffmpeg as ff

LADDERS = {
    "1 rung": [{"height": 720, "max_kbps": 3500}],
    "3 rungs": [
        {"height": 720, "max_kbps": 3500},
        {"height": 480, "max_kbps": 1600},
        {"height": 360, "max_kbps": 900},
    ],
}
BOXES = {"thumb": (150, 150), "medium": (800, 600), "large": (1920, 1080)}


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def compare(name: str, ours: Callable[[], Any], anchor: Callable[[], Any], runs: int) -> dict[str, Any]:
    ours(), anchor()
    a, b = [], []
    for _ in range(runs):
        a.append(timed(ours))
        b.append(timed(anchor))
    return {
        "bench": name,
        "ours_min_s": round(min(a), 3),
        "anchor_min_s": round(min(b), 3),
        "ratio": round(min(a) / min(b), 3),
        "ratio_of_medians": round(statistics.median(a) / statistics.median(b), 3),
        "runs": runs,
    }


def make_sources(folder: Path, seconds: int) -> None:
    exe = ff.locate().path
    sdr = folder / "sdr.mp4"
    subprocess.run(
        [exe, "-hide_banner", "-v", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=s=1920x1080:r=30:d={seconds}",
         "-f", "lavfi", "-i", f"sine=f=440:sample_rate=48000:d={seconds}",
         "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
         "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709",
         "-c:a", "aac", "-b:a", "128k", str(sdr)],
        check=True,
    )  # fmt: skip
    grade = (
        "zscale=tin=bt709:pin=bt709:min=bt709:t=arib-std-b67:p=bt2020:m=bt2020nc:npl=203,format=yuv420p10le"
    )
    subprocess.run(
        [exe, "-hide_banner", "-v", "error", "-y", "-i", str(sdr), "-vf", grade,
         "-c:v", "libx265", "-preset", "veryfast", "-crf", "22", "-x265-params", "log-level=error",
         "-colorspace", "bt2020nc", "-color_primaries", "bt2020", "-color_trc", "arib-std-b67",
         "-tag:v", "hvc1", "-c:a", "copy", str(folder / "hlg.mp4")],
        check=True,
    )  # fmt: skip


def tonemap_pairs(ws: Path, runs: int) -> list[dict[str, Any]]:
    results = []
    for label, ladder in LADDERS.items():
        engines = {
            hdr: Engine(load_settings(None, workspace=ws, transcode={"ladder": ladder, "hdr_to_sdr": hdr}))
            for hdr in (True, False)
        }

        def job(engine: Engine, rel: str) -> Callable[[], None]:
            def go() -> None:
                shutil.rmtree(ws / "processed", ignore_errors=True)
                res = engine.process(rel, pipelines=["transcode", "video_thumbnails"])
                assert res.status == "ok", res

            return go

        hlg = job(engines[True], "in/hlg.mp4")
        results.append(compare(f"HLG vs SDR original, {label}", hlg, job(engines[True], "in/sdr.mp4"), runs))
        results.append(compare(f"tone mapping alone, {label}", hlg, job(engines[False], "in/hlg.mp4"), runs))
    return results


def heic_pairs(runs: int) -> list[dict[str, Any]]:
    import pillow_heif
    from PIL import Image

    w, h = 4032, 3024
    grad = Image.linear_gradient("L").resize((w, h))
    noise = Image.effect_noise((w, h), 40)
    picture = Image.merge("RGB", (grad, Image.radial_gradient("L").resize((w, h)), noise))
    jpeg = io.BytesIO()
    picture.save(jpeg, "JPEG", quality=90)
    heic = io.BytesIO()
    pillow_heif.from_pillow(picture).save(heic, quality=90)
    jpeg_data, heic_data = jpeg.getvalue(), heic.getvalue()

    def thumbs(data: bytes) -> Callable[[], None]:
        return lambda: render_thumbnails(data, boxes=BOXES, formats=["jpeg", "webp"], max_pixels=100_000_000)

    def decode(data: bytes) -> Callable[[], None]:
        return lambda: open_image(data, max_pixels=100_000_000).load()

    return [
        compare("HEIC vs JPEG, thumbnails (3 sizes x JPEG+WebP)", thumbs(heic_data), thumbs(jpeg_data), runs),
        compare("HEIC vs JPEG, full decode only", decode(heic_data), decode(jpeg_data), runs),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10, help="length of the 1080p sources")
    ap.add_argument("--only", choices=["tonemap", "heic"])
    ap.add_argument("--json", action="store_true")
    opts = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-phone-"))
    results: list[dict[str, Any]] = []
    try:
        if opts.only != "heic":
            ws = tmp / "ws"
            (ws / "in").mkdir(parents=True)
            make_sources(ws / "in", opts.seconds)
            results += tonemap_pairs(ws, opts.runs)
        if opts.only != "tonemap":
            results += heic_pairs(opts.runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if opts.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{'bench':52} {'ours':>8} {'anchor':>8} {'ratio':>7} {'(medians)':>10}")
        for r in results:
            print(
                f"{r['bench']:52} {r['ours_min_s']:>7.3f}s {r['anchor_min_s']:>7.3f}s "
                f"{r['ratio']:>7.3f} {r['ratio_of_medians']:>10.3f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
