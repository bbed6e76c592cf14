#!/usr/bin/env python3
"""Benchmark: three thumbnail sizes from a 24-megapixel photo-like JPEG, three ways.

* ours  - read the file in 1 MiB buffered reads, ``pipelines.media.imaging.render_thumbnails``
* naive - ``Image.open``; per size ``im.copy()``, ``thumbnail(box)``, ``save(..., quality=85)``
* vips  - ``vipsthumbnail SRC -s WxH -o OUT.jpg[Q=85]``, one process per size
* pyvips - libvips in-process, its own way: ``thumbnail`` (shrink-on-load) to the largest box, each
  smaller size from the previous one (``thumbnail_image``), JPEG Q 85 / WebP Q 80

``--batch N`` also times whole processes on N different photos (the default three sizes, JPEG only):
``media-worker run`` (start-up and process pool included) against one ``python`` process running the
pyvips cascade over the same files, and one running the naive code.  Target: ours <= 0.6x pyvips.

Each design runs ``--runs`` times (interleaved, after one warm-up round) and the median wall time is
reported, plus each design's PSNR against a reference (full decode, plain LANCZOS, no DCT scaling)
so that speed is not bought with quality.  A second round adds WebP outputs (informational).

Usage: ``.venv/bin/python bench/bench_thumbnails.py [--runs 7] [--batch 12] [--json]``
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageStat

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.media.imaging import render_thumbnails

BOXES: dict[str, tuple[int, int]] = {"thumb": (150, 150), "medium": (800, 600), "large": (1920, 1080)}
MAX_PIXELS = 100_000_000
SIZE = (6000, 4000)
EXT = {"jpeg": "jpg", "webp": "webp"}


# ------------------------------------------------------------------------------------- test image


def make_photo(path: Path, *, seed: int, size: tuple[int, int] = SIZE) -> None:
    """A seeded photo-like JPEG (quality 90): smooth gradients, shapes, multi-scale texture, grain."""
    rng = random.Random(seed)
    w, h = size

    def noise(cells_w: int, cells_h: int, amount: int) -> Image.Image:
        """Grey noise of ``cells_w x cells_h`` values, smoothly upscaled, centred on 128."""
        small = Image.frombytes("L", (cells_w, cells_h), rng.randbytes(cells_w * cells_h))
        small = small.point(lambda v: 128 + (v - 128) * amount // 128)
        return small.resize(size, Image.Resampling.BICUBIC)

    r = Image.linear_gradient("L").resize(size)
    g = Image.linear_gradient("L").rotate(90).resize(size)
    b = Image.radial_gradient("L").resize(size)
    img = Image.merge("RGB", (r, g, b))

    draw = ImageDraw.Draw(img)
    for _ in range(60):  # "objects": soft-edged blobs of colour
        x, y = rng.randrange(w), rng.randrange(h)
        rx, ry = rng.randrange(w // 40, w // 6), rng.randrange(h // 40, h // 6)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=colour)
    img = img.filter(ImageFilter.GaussianBlur(6))

    for cells, amount in ((64, 60), (400, 40), (1500, 30)):  # texture at several scales
        layer = noise(cells, max(1, cells * h // w), amount)
        img = ImageChops.add(img, Image.merge("RGB", (layer, layer, layer)), scale=1.0, offset=-128)
    grain = Image.frombytes("L", size, rng.randbytes(w * h)).point(lambda v: 128 + (v - 128) // 10)
    img = ImageChops.add(img, Image.merge("RGB", (grain, grain, grain)), scale=1.0, offset=-128)
    img.save(path, "JPEG", quality=90)


# ---------------------------------------------------------------------------------------- designs


def run_ours(src: Path, out: Path, formats: list[str], progressive: bool = True) -> None:
    with open(src, "rb", buffering=1 << 20) as f:
        data = f.read()
    rendered = render_thumbnails(
        data, boxes=BOXES, formats=formats, max_pixels=MAX_PIXELS, progressive=progressive
    )
    tag = "ours" if progressive else "ours_baseline"
    for (name, fmt), (blob, _) in rendered.items():
        (out / f"{tag}_{name}.{EXT[fmt]}").write_bytes(blob)


def run_naive(src: Path, out: Path, formats: list[str]) -> None:
    im = Image.open(src)
    for name, box in BOXES.items():
        t = im.copy()
        t.thumbnail(box)
        t.save(out / f"naive_{name}.jpg", "JPEG", quality=85)
        if "webp" in formats:
            t.save(out / f"naive_{name}.webp", "WEBP", quality=80)


def run_vips(src: Path, out: Path, formats: list[str]) -> None:
    for name, (w, h) in BOXES.items():
        for fmt in formats:
            q = 85 if fmt == "jpeg" else 80
            target = f"{out / f'vips_{name}.{EXT[fmt]}'}[Q={q}]"
            subprocess.run(["vipsthumbnail", str(src), "-s", f"{w}x{h}", "-o", target], check=True)


PYVIPS_CASCADE = """
import sys, pyvips
from pathlib import Path
boxes = {boxes!r}
def cascade(src, out, formats, tag):
    order = sorted(boxes.items(), key=lambda kv: -kv[1][0] * kv[1][1])
    prev = None
    for name, (w, h) in order:
        if prev is None:  # libvips' shrink-on-load straight to the largest size
            im = pyvips.Image.thumbnail(str(src), w, height=h).copy_memory()
        else:  # each smaller size from the one before
            im = prev.thumbnail_image(w, height=h)
        for fmt in formats:
            ext = {{"jpeg": "jpg", "webp": "webp"}}[fmt]
            opts = {{"Q": 85, "interlace": {interlace}}} if fmt == "jpeg" else {{"Q": 80}}
            im.write_to_file(str(Path(out) / f"{{tag}}{{name}}.{{ext}}"), **opts)
        prev = im
"""


def run_pyvips(src: Path, out: Path, formats: list[str]) -> None:
    scope: dict[str, Any] = {}
    exec(PYVIPS_CASCADE.format(boxes=BOXES, interlace=False), scope)  # the same code the batch script runs
    scope["cascade"](src, out, formats, "pyvips_")


def have_pyvips() -> bool:
    try:
        import pyvips  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def batch(tmp: Path, n: int, runs: int) -> dict[str, Any]:
    """Whole processes on ``n`` photos: media-worker run vs one pyvips script vs one naive script."""
    import os

    repo = Path(__file__).resolve().parents[1]
    folder = tmp / "batch" / "in"
    folder.mkdir(parents=True)
    for i in range(n):
        make_photo(folder / f"p{i:02d}.jpg", seed=1000 + i)
    out = tmp / "batch-out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIA_WORKER_")}
    env["MEDIA_WORKER_THUMBNAILS__FORMATS"] = '["jpeg"]'
    scripts = {
        "pyvips": PYVIPS_CASCADE.format(boxes=BOXES, interlace=False)
        + "for i, f in enumerate(sorted(Path(sys.argv[1]).iterdir())):\n"
        + "    cascade(f, sys.argv[2], ['jpeg'], f'{i}_')\n",
        "pyvips_progressive": PYVIPS_CASCADE.format(boxes=BOXES, interlace=True)
        + "for i, f in enumerate(sorted(Path(sys.argv[1]).iterdir())):\n"
        + "    cascade(f, sys.argv[2], ['jpeg'], f'{i}_')\n",
        "naive": "import sys\nfrom pathlib import Path\nfrom PIL import Image\n"
        + f"boxes = {BOXES!r}\n"
        + "for i, f in enumerate(sorted(Path(sys.argv[1]).iterdir())):\n"
        + "    im = Image.open(f)\n"
        + "    for name, box in boxes.items():\n"
        + "        t = im.copy(); t.thumbnail(box)\n"
        + "        t.save(Path(sys.argv[2]) / f'{i}_{name}.jpg', quality=85)\n",
    }

    def ours(progressive: bool = True) -> None:
        shutil.rmtree(tmp / "batch" / "processed", ignore_errors=True)
        cmd = [
            sys.executable,
            "-m",
            "handlers.cli",
            "run",
            "-w",
            str(tmp / "batch"),
            "-p",
            "thumbnails",
            "in",
        ]
        run_env = {**env, "MEDIA_WORKER_THUMBNAILS__PROGRESSIVE": "true" if progressive else "false"}
        subprocess.run(cmd, check=True, env=run_env, cwd=repo, capture_output=True)

    def script(name: str) -> Callable[[], None]:
        def go() -> None:
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            subprocess.run([sys.executable, "-c", scripts[name], str(folder), str(out)], check=True)

        return go

    # like for like: our default (progressive JPEG) against pyvips writing progressive too, and both
    # writing baseline JPEG (pyvips' default, and what the naive script writes)
    designs: dict[str, Callable[[], None]] = {
        "ours": ours,
        "ours_baseline": partial(ours, False),
        "naive": script("naive"),
    }
    if have_pyvips():
        designs["pyvips"] = script("pyvips")
        designs["pyvips_progressive"] = script("pyvips_progressive")
    med = median_times(designs, runs)
    doc: dict[str, Any] = {"photos": n, "median_s": {k: round(v, 3) for k, v in med.items()}}
    doc["ours/naive"] = round(med["ours"] / med["naive"], 3)
    if "pyvips" in med:
        doc["ours/pyvips_progressive"] = round(med["ours"] / med["pyvips_progressive"], 3)
        doc["ours_baseline/pyvips"] = round(med["ours_baseline"] / med["pyvips"], 3)
        doc["ours/pyvips"] = round(med["ours"] / med["pyvips"], 3)
    return doc


def median_times(designs: dict[str, Callable[[], None]], runs: int) -> dict[str, float]:
    """Median seconds per design; rounds are interleaved so drift hits every design alike."""
    for fn in designs.values():
        fn()  # warm-up: imports, plugin registration, page cache
    samples: dict[str, list[float]] = {name: [] for name in designs}
    for _ in range(runs):
        for name, fn in designs.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    return {name: statistics.median(s) for name, s in samples.items()}


# ---------------------------------------------------------------------------------------- quality


def psnr(a: Image.Image, b: Image.Image) -> float:
    diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
    mse = sum(v * v for v in ImageStat.Stat(diff).rms) / 3
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def quality_report(src: Path, out: Path, designs: list[str]) -> dict[str, dict[str, float]]:
    """PSNR (dB) of each design's JPEG output against a full-resolution LANCZOS reference."""
    with Image.open(src) as im:
        full = im.convert("RGB")
    report: dict[str, dict[str, float]] = {}
    for design in designs:
        report[design] = {}
        for name in BOXES:
            with Image.open(out / f"{design}_{name}.jpg") as got:
                ref = full.resize(got.size, Image.Resampling.LANCZOS)
                report[design][name] = round(psnr(got, ref), 2)
    return report


# ------------------------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per design (median reported)")
    parser.add_argument("--seed", type=int, default=20240601, help="seed for the generated photo")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead")
    parser.add_argument("--batch", type=int, default=0, help="also time whole processes on N photos")
    args = parser.parse_args()

    have_vips = shutil.which("vipsthumbnail") is not None
    with tempfile.TemporaryDirectory(prefix="bench-thumbs-") as tmp:
        tmpdir = Path(tmp)
        src = tmpdir / "photo.jpg"
        make_photo(src, seed=args.seed)
        out = tmpdir / "out"
        out.mkdir()

        results: dict[str, Any] = {
            "source": {"size": list(SIZE), "bytes": src.stat().st_size, "quality": 90},
            "runs": args.runs,
            "boxes": BOXES,
            "pillow": Image.__version__,
        }
        for label, formats in (("jpeg", ["jpeg"]), ("jpeg+webp", ["jpeg", "webp"])):
            designs: dict[str, Callable[[], None]] = {
                "ours": partial(run_ours, src, out, formats),
                "naive": partial(run_naive, src, out, formats),
            }
            if have_vips:
                designs["vips"] = partial(run_vips, src, out, formats)
            if have_pyvips():
                designs["pyvips"] = partial(run_pyvips, src, out, formats)
            if label == "jpeg":  # naive and vips write baseline JPEGs: ours like for like (informational)
                designs["ours_baseline"] = partial(run_ours, src, out, formats, False)
            med = median_times(designs, args.runs)
            entry: dict[str, Any] = {"median_s": {k: round(v, 4) for k, v in med.items()}}
            entry["naive/ours"] = round(med["naive"] / med["ours"], 2)
            if have_vips:
                entry["vips/ours"] = round(med["vips"] / med["ours"], 2)
            if "pyvips" in med:
                entry["pyvips/ours"] = round(med["pyvips"] / med["ours"], 2)
            if label == "jpeg":
                entry["naive/ours_baseline"] = round(med["naive"] / med["ours_baseline"], 2)
                entry["psnr_db_vs_full_lanczos"] = quality_report(src, out, list(designs))
            results[label] = entry
        if args.batch:
            results["batch"] = batch(tmpdir, args.batch, max(3, args.runs // 2))

    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        f"source: {SIZE[0]}x{SIZE[1]} JPEG q90, {results['source']['bytes'] / 2**20:.1f} MiB; "
        f"median of {args.runs} runs; Pillow {Image.__version__}"
        + ("" if have_vips else "; vipsthumbnail not found, vips skipped")
    )
    print(f"{'outputs':<10} {'design':<14} {'median ms':>10} {'vs ours':>8}")
    for label in ("jpeg", "jpeg+webp"):
        med = results[label]["median_s"]
        for name, seconds in med.items():
            print(f"{label:<10} {name:<14} {seconds * 1000:>10.1f} {seconds / med['ours']:>7.2f}x")
    jpeg = results["jpeg"]
    print(
        f"targets (jpeg): naive/ours = {jpeg['naive/ours']} (>= 3), "
        + (f"vips/ours = {jpeg['vips/ours']} (>= 1.0)" if have_vips else "vips/ours = n/a")
        + f"; like for like (baseline JPEG): naive/ours_baseline = {jpeg['naive/ours_baseline']}"
    )
    print("PSNR dB of the JPEG outputs vs full-resolution decode + LANCZOS:")
    for name, per_size in jpeg["psnr_db_vs_full_lanczos"].items():
        print(f"  {name:<14} " + "  ".join(f"{k}={v}" for k, v in per_size.items()))
    if "batch" in results:
        b = results["batch"]
        print(f"batch of {b['photos']} photos, whole processes (median s): {b['median_s']}")
        print(
            f"  like for like (target <= 0.6): progressive JPEG ours/pyvips_progressive = "
            f"{b.get('ours/pyvips_progressive', 'n/a')}, baseline JPEG ours_baseline/pyvips = "
            f"{b.get('ours_baseline/pyvips', 'n/a')}; our default vs pyvips' default (progressive vs "
            f"baseline) = {b.get('ours/pyvips', 'n/a')}; ours/naive = {b['ours/naive']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
