"""Box fitting, the one rule every output size follows: a source's aspect ratio kept, inside a box,
never larger than the source (image and PDF thumbnails, video posters and sprites)."""

from __future__ import annotations

Box = tuple[int, int]


def fit(size: Box, box: Box) -> Box:
    """Largest size with ``size``'s aspect ratio inside ``box``; never larger than ``size``.

    The side that limits is found with integers, so a source of exactly the box's aspect fills it."""
    w, h = size
    bw, bh = box
    if bw <= 0 or bh <= 0:
        raise ValueError(f"box must be positive, got {box}")
    if w <= bw and h <= bh:
        return w, h
    if w * bh >= h * bw:  # width is the limit
        return bw, max(1, min(bh, round(h * bw / w)))
    return max(1, min(bw, round(w * bh / h))), bh


def fit_scale(size: Box, box: Box) -> float:
    """The factor :func:`fit` shrinks ``size`` by (1.0 when it fits already): to render at that size."""
    return min(1.0, box[0] / size[0], box[1] / size[1])
