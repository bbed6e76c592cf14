"""Transparent images whose visible content would be lost when flattened for JPEG (issue 21): white text
on transparency gets a contrasting background, a fully transparent image a checkerboard, and the
manifest says what was done.  Images are made by Pillow, run through the thumbnails pipeline, and the
decoded outputs measured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageFont, ImageStat

from config.settings import load_settings
from pipelines.core.engine import Engine


def _text(fill: tuple[int, int, int, int], clear: tuple[int, int, int, int]) -> Image.Image:
    """A 600x200 logo: the word 'Media' in ``fill`` on ``clear`` (transparent)."""
    im = Image.new("RGBA", (600, 200), clear)
    ImageDraw.Draw(im).text((40, 30), "Media", fill=fill, font=ImageFont.load_default(size=120))
    return im


def _run(ws: Path, im: Image.Image, **thumbnails: Any) -> dict[str, dict[str, Any]]:
    """Thumbnails of ``im`` (a PNG) as JPEG and WebP; the manifest's outputs by (variant, format)."""
    (ws / "in").mkdir(parents=True, exist_ok=True)
    im.save(ws / "in/logo.png")
    settings = load_settings(None, workspace=ws, thumbnails={"formats": ["jpeg", "webp"], **thumbnails})
    res = Engine(settings).process("in/logo.png")
    assert res.status == "ok", res
    doc = json.loads((ws / res.manifest).read_text())
    return {f"{o['variant']}.{o['path'].rsplit('.', 1)[1]}": o for o in doc["outputs"]}


def _luma(ws: Path, out: dict[str, Any]) -> ImageStat.Stat:
    return ImageStat.Stat(Image.open(ws / out["path"]).convert("L"))


@pytest.mark.parametrize("clear", [(255, 255, 255, 0), (0, 0, 0, 0)])
def test_white_text_on_transparency_gets_a_dark_background(workspace: Path, clear: tuple[int, ...]) -> None:
    """The text stays readable in the JPEG: a dark background (spread of luma as large as the text's),
    whatever colour the transparent pixels hold; the WebP keeps the alpha, unchanged."""
    outs = _run(workspace, _text((255, 255, 255, 255), clear))  # type: ignore[arg-type]
    for size in ("thumb", "medium", "large"):
        jpeg, webp = outs[f"{size}.jpg"], outs[f"{size}.webp"]
        stat = _luma(workspace, jpeg)
        (lo, hi), spread = stat.extrema[0], stat.stddev[0]
        assert spread > 40 and hi > 200 and lo < 50, (size, spread, lo, hi)
        assert jpeg["meta"]["flattened_onto"] == "#202020"
        assert jpeg["meta"]["flatten_reason"] == "low_contrast"
        webp_im = Image.open(workspace / webp["path"])
        assert webp_im.mode == "RGBA" and "flatten_reason" not in webp["meta"]
        assert ImageStat.Stat(webp_im.getchannel("A")).extrema[0] == (0, 255)


def test_all_transparent_image_gives_a_checkerboard(workspace: Path) -> None:
    outs = _run(workspace, Image.new("RGBA", (400, 300), (255, 255, 255, 0)))
    jpeg = outs["medium.jpg"]
    board = Image.open(workspace / jpeg["path"]).convert("L")
    hist, total = board.histogram(), board.width * board.height
    assert sum(hist[198:211]) > 0.4 * total and sum(hist[249:]) > 0.4 * total  # grey and white squares
    assert _luma(workspace, jpeg).stddev[0] > 15  # two kinds of square, not a blank page
    assert jpeg["meta"]["flattened_onto"] == "checkerboard"
    assert jpeg["meta"]["flatten_reason"] == "all_transparent"
    assert outs["medium.webp"]["meta"]["all_transparent"] is True  # alpha kept: fully transparent


def test_dark_logo_on_transparency_is_flattened_onto_the_configured_background(workspace: Path) -> None:
    """A normal logo is unchanged: onto white, byte for byte what the fixed background gives."""
    logo = _text((20, 40, 120, 255), (0, 0, 0, 0))
    auto = _run(workspace / "auto", logo)
    fixed = _run(workspace / "fixed", logo, background_auto=False)
    jpeg = auto["large.jpg"]
    assert jpeg["meta"] == {**jpeg["meta"], "flattened_onto": "#ffffff", "flatten_reason": "configured"}
    im = Image.open(workspace / "auto" / jpeg["path"]).convert("RGB")
    assert min(im.getpixel((5, 5))) > 245  # type: ignore[arg-type]
    assert {k: o["sha256"] for k, o in auto.items()} == {k: o["sha256"] for k, o in fixed.items()}


def test_fixed_background_is_kept_when_asked(workspace: Path) -> None:
    outs = _run(workspace, _text((255, 255, 255, 255), (0, 0, 0, 0)), background_auto=False)
    jpeg = outs["large.jpg"]
    assert jpeg["meta"]["flattened_onto"] == "#ffffff" and jpeg["meta"]["flatten_reason"] == "configured"
    assert _luma(workspace, jpeg).stddev[0] < 3  # white on white: what the setting asks for


def test_opaque_images_say_nothing_of_flattening(workspace: Path) -> None:
    outs = _run(workspace, _text((0, 0, 0, 255), (255, 255, 255, 255)).convert("RGB"))
    for o in outs.values():
        assert "flattened_onto" not in o["meta"] and "all_transparent" not in o["meta"], o
