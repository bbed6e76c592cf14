"""ThumbHash placeholders: a ~25-byte blurry preview (colour, aspect ratio, alpha) of an image, for
``meta.thumbhash`` in the manifest.

The encoder is Evan Wallace's reference algorithm (https://evanw.github.io/thumbhash/, MIT), with the
DCT computed separably (rows, then columns: the same sums in another order) and JavaScript's
``Math.round`` (half up).  It runs on the smallest rendition the thumbnails path already holds, shrunk
to at most ``MAX_SIDE`` pixels: no extra decode.
"""

from __future__ import annotations

import base64
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

MAX_SIDE = 32  # the hash keeps at most 7x7 low frequencies; the reference accepts up to 100


def _round(x: float) -> int:
    return math.floor(x + 0.5)


def thumbhash(image: Image.Image) -> str:
    """The base64 ThumbHash of ``image`` (any mode)."""
    from PIL import Image as PILImage

    im = image.convert("RGBA")
    if max(im.size) > MAX_SIDE:
        im = im.copy()
        im.thumbnail((MAX_SIDE, MAX_SIDE), PILImage.Resampling.BOX)
    w, h = im.size
    return base64.b64encode(bytes(encode(w, h, im.tobytes()))).decode("ascii")


def encode(w: int, h: int, rgba: bytes) -> list[int]:
    """ThumbHash bytes of ``w`` x ``h`` RGBA pixels (8 bits per channel, row-major)."""
    if not (0 < w <= 100 and 0 < h <= 100) or len(rgba) != w * h * 4:
        raise ValueError(f"{w}x{h} RGBA of {len(rgba)} bytes does not fit ThumbHash (at most 100x100)")
    alphas, lum, pch, qch, has_alpha = _lpqa(w, h, rgba)
    l_limit = 5 if has_alpha else 7
    lx = max(1, _round(l_limit * w / max(w, h)))
    ly = max(1, _round(l_limit * h / max(w, h)))
    l_dc, l_ac, l_scale = _dct(lum, w, h, max(3, lx), max(3, ly))
    p_dc, p_ac, p_scale = _dct(pch, w, h, 3, 3)
    q_dc, q_ac, q_scale = _dct(qch, w, h, 3, 3)
    landscape = w > h
    header24 = (
        _round(63 * l_dc)
        | (_round(31.5 + 31.5 * p_dc) << 6)
        | (_round(31.5 + 31.5 * q_dc) << 12)
        | (_round(31 * l_scale) << 18)
        | (int(has_alpha) << 23)
    )
    header16 = (ly if landscape else lx) | (_round(63 * p_scale) << 3) | (_round(63 * q_scale) << 9)
    header16 |= int(landscape) << 15
    out = [header24 & 255, (header24 >> 8) & 255, header24 >> 16, header16 & 255, header16 >> 8]
    acs = [l_ac, p_ac, q_ac]
    if has_alpha:
        a_dc, a_ac, a_scale = _dct(alphas, w, h, 5, 5)
        out.append(_round(15 * a_dc) | (_round(15 * a_scale) << 4))
        acs.append(a_ac)
    start = len(out)
    for index, f in enumerate(f for ac in acs for f in ac):
        pos = start + (index >> 1)
        if pos == len(out):
            out.append(0)
        out[pos] |= _round(15 * f) << ((index & 1) << 2)
    return out


def _lpqa(w: int, h: int, rgba: bytes) -> tuple[list[float], list[float], list[float], list[float], bool]:
    """The pixels as ThumbHash's channels: alpha, then luminance and the two colour differences (P, Q)
    of each pixel composited on the image's average colour; and whether any pixel is transparent."""
    n = w * h
    alphas = [rgba[i + 3] / 255 for i in range(0, 4 * n, 4)]
    avg_a = sum(alphas)
    avg = [0.0, 0.0, 0.0]
    for k in range(3):
        avg[k] = sum(alphas[i] / 255 * rgba[4 * i + k] for i in range(n))
    if avg_a:
        avg = [v / avg_a for v in avg]
    lum, pch, qch = [], [], []
    for i in range(n):
        a = alphas[i]
        r, g, b = (avg[k] * (1 - a) + a / 255 * rgba[4 * i + k] for k in range(3))
        lum.append((r + g + b) / 3)
        pch.append((r + g) / 2 - b)
        qch.append(r - g)
    return alphas, lum, pch, qch, avg_a < n


def _dct(values: list[float], w: int, h: int, nx: int, ny: int) -> tuple[float, list[float], float]:
    """One channel's low frequencies: its DC term, its AC terms scaled to 0..1, and their scale."""
    n = w * h
    fx = [[math.cos(math.pi / w * cx * (x + 0.5)) for x in range(w)] for cx in range(nx)]
    fy = [[math.cos(math.pi / h * cy * (y + 0.5)) for y in range(h)] for cy in range(ny)]
    rows = [values[y * w : (y + 1) * w] for y in range(h)]
    # per row, its sum against each horizontal frequency; then those sums against each vertical one
    by_row = [[sum(v * c for v, c in zip(row, fx[cx], strict=True)) for row in rows] for cx in range(nx)]
    dc, ac, scale = 0.0, [], 0.0
    for cy in range(ny):
        cx = 0
        while cx * ny < nx * (ny - cy):
            f = sum(r * c for r, c in zip(by_row[cx], fy[cy], strict=True)) / n
            if cx or cy:
                ac.append(f)
                scale = max(scale, abs(f))
            else:
                dc = f
            cx += 1
    if scale:
        ac = [0.5 + 0.5 / scale * f for f in ac]
    return dc, ac, scale
