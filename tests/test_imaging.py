"""Tests of pipelines.media.imaging with real Pillow: the shared corpus, targeted properties, draft mode."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageFilter, ImageOps, ImageStat, features

from config.errors import BadInputError
from pipelines.media.geometry import fit, fit_scale
from pipelines.media.imaging import (
    Box,
    decode_frame,
    encode,
    fit_sizes,
    flatten,
    load_for_box,
    open_image,
    render_thumbnails,
)

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
IMAGES = CORPUS / "images"
NO_CORPUS = f"shared corpus not found at {IMAGES} (expected ../shared/corpus next to the repo root)"

BOXES: dict[str, Box] = {"thumb": (150, 150), "medium": (800, 600), "large": (1920, 1080)}
FORMATS = ["jpeg", "webp"]
MAX_PIXELS = 100_000_000

# Known outcome per corpus file.  Files not listed (later additions) may render or be refused.
EXPECTED_BAD = {
    "broken.png": "cannot identify image format",
    "crash-86214e58da443d2b80820cff9677a38a33dcbbca.tif": "decoder error",
    "decompression_bomb.gif": "over the limit of 100 Mpx",
    "decompression_bomb.ico": "over the limit of 100 Mpx",
    "oom-225817ca0f8c663be7ab4b9e717b02c661e66834.tif": "cannot identify image format",
    "png_decompression_dos.png": "MAX_TEXT_CHUNK",
    "reallybig.bmp": "over the limit of 100 Mpx",
    "shortfile.bmp": "truncated image data",
    "truncated_image.png": "truncated image data",
    "truncated_jpeg.jpg": "truncated image data",
}
EXPECTED_GOOD = {
    "chi.gif", "exif_imagemagick_orientation.png", "hopper.bmp", "hopper.jpg", "hopper.webp",
    "hopper_bad_exif.jpg", "hopper_g4.tif", "hopper_lzw.tif", "hopper_orientation_3.jpg",
    "hopper_orientation_5.jpg", "hopper_orientation_6.jpg", "hopper_orientation_6.webp",
    "hopper_orientation_8.jpg", "i_trns.png", "icc_profile_big.jpg", "iss634.webp",
    "lossless_indexed_4bit_palette.webp", "mode_16bit.png", "multipage.tiff", "orientation_rectangle.jpg",
    "pil123p.png", "pil123rgba.png", "pil_sample_cmyk.jpg", "python.ico", "sugarshack.mpo",
    "tiff_16bit_RGB.tiff", "transparent.webp",
}  # fmt: skip
if features.check("avif"):
    EXPECTED_GOOD |= {"hopper.avif", "rot1mir0.avif"}
EXPECTED_GOOD |= {"hopper.heif"}  # decoded by pi-heif (a runtime dependency)


def corpus_files() -> list[object]:
    if not IMAGES.is_dir():
        return [pytest.param(None, id="no-corpus", marks=pytest.mark.skip(reason=NO_CORPUS))]
    return [pytest.param(p, id=p.name) for p in sorted(IMAGES.iterdir()) if p.is_file()]


def corpus(name: str) -> bytes:
    path = IMAGES / name
    if not path.is_file():
        pytest.skip(NO_CORPUS if not IMAGES.is_dir() else f"{name} missing from the corpus")
    return path.read_bytes()


def render(data: bytes, **kwargs: object) -> dict[tuple[str, str], tuple[bytes, Box]]:
    return render_thumbnails(data, boxes=BOXES, formats=FORMATS, max_pixels=MAX_PIXELS, **kwargs)  # type: ignore[arg-type]


def reopen(blob: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(blob))
    im.load()
    return im


def oriented_size(data: bytes) -> Box:
    """Displayed size of the source, computed independently of the code under test."""
    with Image.open(io.BytesIO(data)) as im:
        w, h = im.size
        return (h, w) if im.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (w, h)


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
    return sum(ImageStat.Stat(diff).mean) / 3


def on_white(im: Image.Image) -> Image.Image:
    rgba = im.convert("RGBA")
    flat = Image.new("RGB", rgba.size, (255, 255, 255))
    flat.paste(rgba, (0, 0), rgba)
    return flat


def as_bytes(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


# ------------------------------------------------------------------------------ (a) whole corpus


@pytest.mark.parametrize("path", corpus_files())
def test_corpus_file_renders_or_is_refused_cleanly(path: Path) -> None:
    data = path.read_bytes()
    try:
        out = render(data)
    except BadInputError as exc:
        assert path.name not in EXPECTED_GOOD, f"{path.name} should render, got: {exc}"
        assert EXPECTED_BAD.get(path.name, "") in str(exc)
        return
    assert path.name not in EXPECTED_BAD, f"{path.name} should be refused"

    assert set(out) == {(size, fmt) for size in BOXES for fmt in FORMATS}
    src_w, src_h = oriented_size(data)
    for (size, fmt), (blob, reported) in out.items():
        im = reopen(blob)
        assert im.format == fmt.upper()
        assert im.mode in ({"RGB", "L"} if fmt == "jpeg" else {"RGB", "RGBA"})
        assert im.size == reported
        w, h = im.size
        bw, bh = BOXES[size]
        assert 1 <= w <= min(bw, src_w) and 1 <= h <= min(bh, src_h), (size, im.size, (src_w, src_h))
        assert (w, h) == (src_w, src_h) or w == bw or h == bh, "not the largest fit inside the box"
        assert abs(w - h * src_w / src_h) <= 1 or abs(h - w * src_h / src_w) <= 1, "aspect ratio drifted"


def test_corpus_never_crashes_the_interpreter() -> None:
    """Whole corpus in a child process with a 3 GiB address-space cap: a segfault or a runaway
    allocation fails this test instead of taking the test session (or the machine) down."""
    if not IMAGES.is_dir():
        pytest.skip(NO_CORPUS)
    script = textwrap.dedent(
        f"""
        import resource, sys
        from pathlib import Path
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
        sys.path.insert(0, {str(REPO)!r})
        from config.errors import BadInputError
        from pipelines.media.imaging import render_thumbnails
        for p in sorted(Path({str(IMAGES)!r}).iterdir()):
            try:
                render_thumbnails(p.read_bytes(), boxes={BOXES!r}, formats=["jpeg"], max_pixels={MAX_PIXELS})
            except BadInputError:
                pass
        print("done")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "done", proc.stderr[-2000:]


# ------------------------------------------------------------------------ (b) targeted properties


def test_orientation_8_rectangle_comes_out_taller_than_wide() -> None:
    data = corpus("orientation_rectangle.jpg")
    with Image.open(io.BytesIO(data)) as src:
        assert src.size == (2, 1)
    for (_, fmt), (blob, size) in render(data).items():
        assert size == (1, 2), fmt
        assert reopen(blob).size == (1, 2)


@pytest.mark.parametrize(
    "name",
    ["hopper_orientation_3.jpg", "hopper_orientation_5.jpg", "hopper_orientation_6.jpg",
     "hopper_orientation_8.jpg", "hopper_orientation_6.webp"],
)  # fmt: skip
def test_exif_orientation_is_applied(name: str) -> None:
    """Each file is hopper stored rotated/mirrored: the output must look like upright hopper."""
    upright = Image.open(io.BytesIO(corpus("hopper.jpg"))).convert("RGB")
    data = corpus(name)
    stored = Image.open(io.BytesIO(data)).convert("RGB")
    out = reopen(render(data)[("large", "jpeg")][0])
    assert mean_abs_diff(stored, upright) > 40  # the stored pixels really are turned
    assert mean_abs_diff(out, upright) < 10


def test_orientation_5_avif_swaps_width_and_height() -> None:
    if not features.check("avif"):
        pytest.skip("Pillow built without AVIF support")
    data = corpus("rot1mir0.avif")
    with Image.open(io.BytesIO(data)) as src:
        assert src.size == (427, 640)
    assert render(data)[("large", "jpeg")][1] == (640, 427)


def test_cmyk_jpeg_comes_out_rgb_with_the_right_colours() -> None:
    """Adobe (inverted) CMYK: red top-left corner, black bottom-right, mean close to Pillow's own
    CMYK->RGB conversion and nowhere near its inverse."""
    data = corpus("pil_sample_cmyk.jpg")
    reference = Image.open(io.BytesIO(data)).convert("RGB")
    out = reopen(render(data)[("large", "jpeg")][0])
    assert out.mode == "RGB" and out.size == reference.size
    r, g, b = out.getpixel((0, 0))  # type: ignore[misc]
    assert r > 200 and g < 80 and b < 80
    assert max(out.getpixel((99, 99))) < 40  # type: ignore[arg-type]
    assert mean_abs_diff(out, reference) < 10
    assert mean_abs_diff(out, ImageChops.invert(reference)) > 150
    webp = reopen(render(data)[("large", "webp")][0])
    assert webp.mode == "RGB" and mean_abs_diff(webp, reference) < 12


@pytest.mark.parametrize("name", ["pil123rgba.png", "transparent.webp", "pil123p.png"])
def test_alpha_is_flattened_on_white_for_jpeg_and_kept_for_webp(name: str) -> None:
    data = corpus(name)
    src = Image.open(io.BytesIO(data)).convert("RGBA")
    # Pixels whose whole 17x17 neighbourhood is transparent: away from JPEG block and chroma bleeding.
    alpha = src.getchannel("A").filter(ImageFilter.MaxFilter(17))
    clear = [
        (x, y) for x in range(0, src.width, 3) for y in range(0, src.height, 3) if alpha.getpixel((x, y)) == 0
    ]
    assert clear, "test file has no transparent area"
    out = render(data)
    jpeg = reopen(out[("large", "jpeg")][0])
    webp = reopen(out[("large", "webp")][0])
    assert jpeg.size == webp.size == src.size  # smaller than the large box: not resized
    assert jpeg.mode == "RGB" and webp.mode == "RGBA"
    for xy in clear[:: max(1, len(clear) // 50)]:
        assert min(jpeg.getpixel(xy)) >= 240, xy  # type: ignore[arg-type]
        assert webp.getpixel(xy)[3] <= 8, xy  # type: ignore[index]
    assert mean_abs_diff(jpeg, on_white(src)) < 6


def test_jpeg_background_colour_is_used_for_transparency() -> None:
    clear = Image.new("RGBA", (40, 30), (0, 0, 255, 0))
    out = render_thumbnails(
        as_bytes(clear, "PNG"), boxes={"t": (40, 30)}, formats=["jpeg", "png"], max_pixels=MAX_PIXELS,
        background=(255, 0, 0),
    )  # fmt: skip
    r, g, b = reopen(out[("t", "jpeg")][0]).getpixel((20, 15))  # type: ignore[misc]
    assert r > 240 and g < 15 and b < 15
    png = reopen(out[("t", "png")][0])
    assert png.mode == "RGBA" and png.getpixel((20, 15))[3] == 0  # type: ignore[index]


@pytest.mark.parametrize("name", ["chi.gif", "iss634.webp"])
def test_animation_gives_the_first_frame(name: str) -> None:
    """Lossless PNG output at full size must equal frame 0 and differ from the most different frame."""

    def rgba_diff(a: Image.Image, b: Image.Image) -> float:
        return sum(ImageStat.Stat(ImageChops.difference(a.convert("RGBA"), b.convert("RGBA"))).mean) / 4

    data = corpus(name)
    with Image.open(io.BytesIO(data)) as src:
        first = src.convert("RGBA")
        frames = []
        for i in range(1, getattr(src, "n_frames", 1)):
            src.seek(i)
            frames.append(src.convert("RGBA"))
    farthest = max(frames, key=lambda f: rgba_diff(f, first))
    assert rgba_diff(farthest, first) > 1, "frames too alike to tell apart"
    out = render_thumbnails(data, boxes={"large": (1920, 1080)}, formats=["png"], max_pixels=MAX_PIXELS)
    got = reopen(out[("large", "png")][0])
    assert got.size == first.size
    assert rgba_diff(got, first) < 0.01
    assert rgba_diff(got, farthest) > 1


def test_16bit_rgb_tiff_is_neither_blank_nor_saturated() -> None:
    data = corpus("tiff_16bit_RGB.tiff")
    reference = Image.open(io.BytesIO(data)).convert("RGB")  # libtiff's own 16 -> 8 bit reduction
    out = reopen(render(data)[("large", "jpeg")][0])
    stat = ImageStat.Stat(out)
    assert all(8 < m < 200 for m in stat.mean) and all(s > 5 for s in stat.stddev), stat.mean
    assert mean_abs_diff(out, reference) < 6


def test_16bit_rgba_apng_first_frame_keeps_its_colour() -> None:
    data = corpus("mode_16bit.png")
    reference = on_white(Image.open(io.BytesIO(data)))
    out = reopen(render(data)[("large", "jpeg")][0])
    assert mean_abs_diff(out, reference) < 4
    r, g, b = ImageStat.Stat(out).mean
    assert r > 240 and g < 15 and b < 15


def test_16bit_grey_png_is_scaled_not_clipped() -> None:
    """I;16 data around 30000 must come out mid-grey (30000 / 256 = 117), not white."""
    width, height = 64, 32
    values = [29000 + 2000 * x // width for y in range(height) for x in range(width)]
    im = Image.frombytes("I;16", (width, height), b"".join(v.to_bytes(2, "little") for v in values))
    out = render_thumbnails(
        as_bytes(im, "PNG"), boxes={"t": (64, 64)}, formats=["png", "jpeg"], max_pixels=MAX_PIXELS
    )
    for fmt in ("png", "jpeg"):
        got = reopen(out[("t", fmt)][0])
        assert got.mode == "L"
        assert abs(ImageStat.Stat(got).mean[0] - sum(values) / len(values) / 256) < 2
        lo, hi = ImageStat.Stat(got).extrema[0]
        assert hi < 130 and lo > 105


def test_16bit_grey_png_with_trns_matches_reference() -> None:
    """i_trns.png is I;16 with values 0..255 (of 65535) and tRNS 255: correctly scaled it is black,
    with its tRNS pixels transparent (white in JPEG, alpha 0 in WebP)."""
    data = corpus("i_trns.png")
    src = Image.open(io.BytesIO(data))
    src.load()
    assert src.mode == "I;16" and src.info.get("transparency") == 255
    out = render(data)
    jpeg = reopen(out[("large", "jpeg")][0])
    webp = reopen(out[("large", "webp")][0])
    transparent = [(x, y) for x in range(64) for y in range(64) if src.getpixel((x, y)) == 255]
    opaque = [(x, y) for x in range(64) for y in range(64) if src.getpixel((x, y)) != 255]
    assert transparent and opaque and webp.mode == "RGBA"
    hole = [xy for xy in transparent if all(src.getpixel((x, y)) == 255 for x, y in _around(xy))]
    solid = [xy for xy in opaque if all(src.getpixel((x, y)) != 255 for x, y in _around(xy))]
    for xy in hole:
        assert min(jpeg.getpixel(xy)) > 230 and webp.getpixel(xy)[3] < 10  # type: ignore[arg-type,index]
    for xy in solid:
        assert max(jpeg.getpixel(xy)) < 25 and webp.getpixel(xy)[3] > 245  # type: ignore[arg-type,index]


def _around(xy: tuple[int, int]) -> list[tuple[int, int]]:
    x, y = xy
    return [(i, j) for i in range(x - 2, x + 3) for j in range(y - 2, y + 3) if 0 <= i < 64 and 0 <= j < 64]


@pytest.mark.parametrize("name", ["decompression_bomb.gif", "decompression_bomb.ico", "reallybig.bmp"])
def test_decompression_bombs_are_refused_with_the_limit(name: str) -> None:
    with pytest.raises(BadInputError) as err:
        render(corpus(name))
    assert "over the limit of 100 Mpx" in str(err.value)


@pytest.mark.parametrize("name", ["truncated_jpeg.jpg", "truncated_image.png", "shortfile.bmp"])
def test_truncated_files_fail_cleanly(name: str) -> None:
    with pytest.raises(BadInputError, match="truncated image data"):
        render(corpus(name))


def test_unidentifiable_and_empty_data() -> None:
    with pytest.raises(BadInputError, match="cannot identify image format"):
        render(corpus("broken.png"))
    with pytest.raises(BadInputError, match="empty file"):
        render(b"")
    with pytest.raises(BadInputError, match="cannot identify image format"):
        render(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")  # EPS would run Ghostscript


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + kind + payload + zlib.crc32(kind + payload).to_bytes(4, "big")


def test_pixel_limit_is_checked_before_decoding() -> None:
    """A 10000x5000 PNG whose pixel data is a few bytes: refused for its size, not as truncated."""
    ihdr = (10000).to_bytes(4, "big") + (5000).to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 100))
        + _png_chunk(b"IEND", b"")
    )
    with pytest.raises(BadInputError, match=r"^image is 10000x5000 = 50 Mpx, over the limit of 10 Mpx$"):
        render_thumbnails(data, boxes=BOXES, formats=FORMATS, max_pixels=10_000_000)
    with pytest.raises(BadInputError, match="truncated image data"):  # within the limit: decoded, fails
        render_thumbnails(data, boxes=BOXES, formats=FORMATS, max_pixels=MAX_PIXELS)
    with pytest.raises(BadInputError, match=r"= 2 Mpx, over the limit of 1 Mpx"):
        open_image(as_bytes(Image.new("RGB", (2000, 1000)), "PNG"), max_pixels=1_000_000)


def test_icc_profile_is_converted_to_srgb_and_not_embedded() -> None:
    from PIL import ImageCms

    data = corpus("icc_profile_big.jpg")
    src = Image.open(io.BytesIO(data))
    profile = ImageCms.ImageCmsProfile(io.BytesIO(src.info["icc_profile"]))
    reference = ImageCms.profileToProfile(src, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
    assert reference is not None
    out = reopen(render(data)[("large", "jpeg")][0])
    assert not out.info.get("icc_profile")
    assert mean_abs_diff(out, reference) < 4
    assert mean_abs_diff(out, src.convert("RGB")) > mean_abs_diff(out, reference) + 2


def test_broken_icc_profile_is_kept_as_it_was() -> None:
    junk = b"\x00\x00\x02\x00junk" + b"RGB " * 10
    data = as_bytes(Image.new("RGB", (300, 200), (10, 200, 30)), "JPEG", icc_profile=junk)
    out = render_thumbnails(
        data, boxes={"t": (150, 150)}, formats=["jpeg", "webp", "png"], max_pixels=MAX_PIXELS
    )
    for (_, fmt), (blob, size) in out.items():
        im = reopen(blob)
        assert size == (150, 100) and im.info.get("icc_profile") == junk, fmt
        assert mean_abs_diff(im, Image.new("RGB", size, (10, 200, 30))) < 6


# ------------------------------------------------------------------------------ (c) draft mode etc.


def _photo(size: Box, **save: object) -> bytes:
    im = Image.merge(
        "RGB",
        (Image.linear_gradient("L").resize(size), Image.radial_gradient("L").resize(size),
         Image.linear_gradient("L").rotate(90).resize(size)),
    )  # fmt: skip
    return as_bytes(im, "JPEG", quality=80, **save)


def test_draft_mode_decodes_small_but_not_smaller_than_the_box() -> None:
    data = _photo((4000, 3000))
    im = open_image(data, max_pixels=MAX_PIXELS)
    loaded = load_for_box(im, (150, 150), max_pixels=MAX_PIXELS)
    assert loaded.size == (500, 375)  # DCT-scaled by 1/8 while decoding
    assert loaded.width < 4000 and loaded.height < 3000
    assert loaded.width >= 150 and loaded.height >= 150
    sized = fit_sizes(loaded, {"thumb": (150, 150)})
    assert sized["thumb"].size == (150, 112)


def test_draft_target_uses_the_displayed_orientation() -> None:
    """Stored 4000x1000 with orientation 6 is displayed 1000x4000: for a 500x2000 box the decode
    must stay >= 500x2000 displayed (a box applied to the stored axes would allow 1/8 scaling)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _photo((4000, 1000), exif=exif.tobytes())
    loaded = load_for_box(open_image(data, max_pixels=MAX_PIXELS), (500, 2000), max_pixels=MAX_PIXELS)
    assert loaded.size == (500, 2000)
    out = render_thumbnails(
        data, boxes={"tall": (500, 2000), "t": (150, 150)}, formats=["jpeg"], max_pixels=MAX_PIXELS
    )
    assert out[("tall", "jpeg")][1] == (500, 2000)
    assert out[("t", "jpeg")][1] == (38, 150)


def test_fit_sizes_never_upscales_and_handles_boxes_that_do_not_nest() -> None:
    im = Image.new("RGB", (1000, 1000), (1, 2, 3))
    sized = fit_sizes(im, {"strip": (1000, 100), "square": (300, 300), "huge": (5000, 5000)})
    assert {k: v.size for k, v in sized.items()} == {
        "strip": (100, 100), "square": (300, 300), "huge": (1000, 1000),
    }  # fmt: skip
    assert list(sized) == ["strip", "square", "huge"]  # caller's order


def test_encode_outputs_and_options() -> None:
    im = ImageOps.pad(Image.new("RGB", (64, 48), (200, 10, 10)), (80, 60))
    prog = reopen(encode(im, "jpeg", quality=85))
    assert prog.format == "JPEG" and prog.info.get("progressive")
    base = reopen(encode(im, "jpeg", quality=85, progressive=False))
    assert not base.info.get("progressive")
    assert reopen(encode(im.convert("RGBA"), "webp", quality=80)).format == "WEBP"
    assert reopen(encode(im.convert("L"), "png", quality=0)).mode == "L"
    with pytest.raises(ValueError, match="unsupported output format"):
        encode(im, "gif", quality=1)
    with pytest.raises(ValueError, match="unsupported output format"):
        render_thumbnails(b"", boxes=BOXES, formats=["tiff"], max_pixels=MAX_PIXELS)


def test_exif_is_not_copied_into_thumbnails() -> None:
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x0112] = 3
    data = _photo((400, 300), exif=exif.tobytes())
    for (_, fmt), (blob, _) in render(data).items():
        assert not reopen(blob).getexif(), fmt


def test_a_limit_above_pillows_own_is_honoured() -> None:
    """Pillow refuses > 179 Mpx by itself; a configured limit of 300 Mpx must let a 210 Mpx header through."""
    ihdr = (15000).to_bytes(4, "big") + (14000).to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    data = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b"")
    assert open_image(data, max_pixels=300_000_000).size == (15000, 14000)
    with pytest.raises(BadInputError, match="over the limit"):
        open_image(data, max_pixels=200_000_000)


# ------------------------------------------------------------------- frames for callers that walk them


def test_decode_frame_orients_on_request_and_names_the_step_that_failed() -> None:
    """OCR's pages go through decode_frame and flatten: a JPEG stored sideways (EXIF orientation 6)
    comes out upright only when asked, a truncated one fails as a BadInputError naming the step."""
    im = Image.merge("RGB", [Image.effect_noise((400, 200), 64)] * 3)  # noise: the scan data dominates
    exif = Image.Exif()
    exif[0x0112] = 6
    data = as_bytes(im, "JPEG", exif=exif.tobytes())
    assert decode_frame(open_image(data, max_pixels=MAX_PIXELS), "decode page 1").size == (400, 200)
    upright = decode_frame(open_image(data, max_pixels=MAX_PIXELS), "decode page 1", orient=True)
    assert upright.size == (200, 400)
    truncated = open_image(data[: len(data) // 2], max_pixels=MAX_PIXELS)
    with pytest.raises(BadInputError, match="cannot decode page 1: truncated image data"):
        decode_frame(truncated, "decode page 1")


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_flatten_composites_transparency_onto_the_background(mode: str) -> None:
    im = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    im.paste((10, 10, 10, 255), (0, 0, 4, 8))
    src = im.convert(mode) if mode != "P" else im.convert("RGB").quantize(2)
    if mode == "P":  # the palette index of the left half's colour is opaque, the other transparent
        src.info["transparency"] = src.getpixel((7, 0))
    flat = flatten(src, (255, 255, 255))
    assert flat.mode in ("RGB", "L")
    assert flat.convert("L").getpixel((7, 0)) == 255  # transparent: the background
    assert flat.convert("L").getpixel((0, 0)) < 40  # opaque: the content


def test_fit_keeps_the_aspect_inside_the_box_and_its_scale_says_how_much() -> None:
    """The one box fit (image and PDF thumbnails, video posters): inside the box, never larger than the
    source, one side on the box unless the source fits already, the aspect kept to a pixel."""
    for size in [(1200, 1600), (1920, 1080), (725, 1856), (150, 150), (4000, 3), (3, 4000)]:
        for box in [(150, 150), (800, 600), (1920, 1080), (1, 1), (160, 90)]:
            w, h = fit(size, box)
            assert 1 <= w <= min(size[0], box[0]) and 1 <= h <= min(size[1], box[1])
            assert (w, h) == size or w == box[0] or h == box[1]
            scale = fit_scale(size, box)
            assert abs(w - size[0] * scale) <= 0.5 + 1e-9 or w == 1
            assert abs(h - size[1] * scale) <= 0.5 + 1e-9 or h == 1
    assert fit((1600, 900), (160, 90)) == (160, 90)
    with pytest.raises(ValueError, match="positive"):
        fit((10, 10), (0, 10))
