"""Image work of ``video_thumbnails`` on the frames ffmpeg wrote: choosing the poster among its
candidates and assembling the storyboard sprite sheet (Pillow; no job, no files of the workspace)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

from pipelines.builtin.av import plan as avplan

BLACK_MEAN, FLAT_STDDEV = 20.0, 6.0  # luma mean / spread below which a frame counts as blank


def pick(frames: Sequence[bytes]) -> tuple[bytes, int]:
    """The first candidate that is not (nearly) black or flat; else the one with the most detail.
    Returns the frame and its index."""
    from PIL import Image, ImageStat

    scores = []
    for i, data in enumerate(frames):
        with Image.open(io.BytesIO(data)) as im:
            stat = ImageStat.Stat(im.convert("L").reduce(4) if min(im.size) >= 8 else im.convert("L"))
        mean, spread = stat.mean[0], stat.stddev[0]
        if mean >= BLACK_MEAN and spread >= FLAT_STDDEV:
            return data, i
        scores.append((spread + mean / 10, i))
    best = max(scores)[1]
    return frames[best], best


def sprite_sheet(
    tiles: Sequence[Path], geo: avplan.SpriteGeometry, *, quality: int
) -> tuple[bytes, avplan.SpriteGeometry, tuple[int, int]]:
    """The tiles, in order, pasted into one progressive JPEG; returns it, the grid actually filled
    (fewer tiles than planned when the video is shorter than it declares) and the sheet's size."""
    from PIL import Image

    from pipelines.media.imaging import encode

    n = len(tiles)
    cols = min(geo.columns, n)
    geo = avplan.SpriteGeometry(geo.interval, n, cols, math.ceil(n / cols), geo.tile_width, geo.tile_height)
    sheet = Image.new("RGB", (geo.columns * geo.tile_width, geo.rows * geo.tile_height))
    for k, f in enumerate(tiles):
        with Image.open(f) as tile:
            sheet.paste(tile.convert("RGB"), ((k % cols) * geo.tile_width, (k // cols) * geo.tile_height))
    return encode(sheet, "jpeg", quality=quality, progressive=True), geo, sheet.size
