"""Pillow for every pipeline: pure functions from source bytes to checked, normalized images and encoded
thumbnails - the thumbnail pipeline's whole path, the images OCR reads (:func:`open_image`), the video
posters' sizes (:func:`encode`) and the PDF pages' (:func:`fit_sizes`, :func:`encode_sizes`).

No file I/O: the caller reads the source and hands over the bytes.  Every failure caused by the input
(unknown format, truncated or corrupt data, over the pixel limit) is raised as ``BadInputError``;
anything else is a bug.

The path for one source is :func:`open_image` (header only, pixel limit checked before any decoding),
:func:`load_for_box` (one decode, JPEG DCT-scaled to the largest output, EXIF orientation, sRGB,
normalized mode), :func:`fit_sizes` (each size derived from the next larger one) and :func:`encode`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, cast

from PIL import Image, ImageChops, ImageCms, ImageOps, ImageStat, UnidentifiedImageError, features

from config.errors import BadInputError
from pipelines.media.geometry import Box, fit

# Formats we are willing to decode.  Deliberately short: no EPS (runs Ghostscript), no exotic
# fuzz-prone plugins.  JPEG includes MPO; PNG includes APNG and AVIF its sequences (.avifs), as their
# first frame; "HEIF" is pi-heif's plug-in (:func:`_register_heif`).  Each is known by its signature.
_OPEN_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "DIB", "ICO", "AVIF", "HEIF", "JPEG2000", "QOI")
# Formats without a signature (a TGA header is a few plausible numbers): tried only for a source whose
# suffix names them, so a corrupt file of another kind is not taken for one.
_SUFFIX_FORMATS = {"tga": "TGA"}
# their plug-ins (and the encoders', JPEG/PNG/WEBP), imported here rather than by Image.init(), which
# imports all ~45 of Pillow's: with every format we open registered, Image.open never calls it.
# Image.preinit() brings BMP, GIF, JPEG, PPM and PNG (and Image.open calls it anyway).
Image.preinit()
for _name in ("WebP", "Tiff", "Ico", "Avif", "Jpeg2K", "Qoi", "Tga"):
    with contextlib.suppress(ImportError):  # a Pillow built without it (AVIF): that format stays closed
        importlib.import_module(f"PIL.{_name}ImagePlugin")
if not features.check_codec("jpg_2000"):  # a Pillow built without OpenJPEG identifies JPEG 2000 but
    Image.OPEN.pop("JPEG2000", None)  # cannot decode it: leave it unknown ("cannot identify")
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
_SWAPPED_ORIENTATIONS = frozenset({5, 6, 7, 8})  # transpose / rotate 90: displayed w, h = stored h, w
_ORIENTATION_TAG = 0x0112

# Exceptions Pillow and its codecs raise on corrupt or hostile data.  UnidentifiedImageError is an
# OSError; the warning is only raised when the interpreter runs with warnings turned into errors.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    ZeroDivisionError,
    OverflowError,
    struct.error,
    MemoryError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)
# Decoders outside Pillow that report what they found in the input as a plain RuntimeError: pi-heif
# raises libheif's errors that it has no closer type for so ("Memory allocation error: Security limit
# exceeded: Image size 40000x40000 exceeds the maximum image size", a grid declaring more pixels than
# its header).  Only a RuntimeError raised from their own code is the input's fault.
_DECODER_MODULES = ("pi_heif", "pillow_heif")
# Broken EXIF blocks: ignored (orientation 1), the pixels are still fine.
_EXIF_ERRORS: tuple[type[BaseException], ...] = (*_DECODE_ERRORS, KeyError, TypeError)

# Pillow's thumbnail() default: PSNR on par with LANCZOS for these ratios (bench), ~30 % faster
_RESAMPLE = Image.Resampling.BICUBIC
_REDUCING_GAP = 3.0  # box-reduce first only beyond 3x the target: indistinguishable from a plain resample
_FORMATS = {"jpeg": "JPEG", "webp": "WEBP", "png": "PNG"}
_FLATTENED = frozenset({"jpeg"})  # output formats without alpha
_PILLOW_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")

T = TypeVar("T")


# --------------------------------------------------------------------------------------------- open


def open_image(data: bytes, *, max_pixels: int, suffix: str = "") -> Image.Image:
    """Identify ``data`` and read its header only; the first frame of animations and multi-page files.

    ``suffix`` (the source's, lower case, no dot) lets formats without a signature (TGA) be tried.

    Raises ``BadInputError`` for unknown or corrupt data and when width * height > ``max_pixels``
    (checked before any pixel is decoded).  Pillow's own check still fires inside ``open`` for images
    over twice its limit, which is raised to ``max_pixels`` when that is higher.
    """
    if not data:
        raise BadInputError("empty file")
    # Pillow's own bomb check (an error above 2x this) must not cap a higher limit of ours
    Image.MAX_IMAGE_PIXELS = max(max_pixels, _PILLOW_MAX_PIXELS)
    _register_heif()
    named = _SUFFIX_FORMATS.get(suffix)
    formats = [f for f in (*_OPEN_FORMATS, *([named] if named else [])) if f in Image.OPEN]
    try:
        im = Image.open(io.BytesIO(data), formats=formats)
    except UnidentifiedImageError as exc:
        raise BadInputError("cannot identify image format", detail=str(exc)) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadInputError(_bomb_message(exc, max_pixels), detail=str(exc)) from exc
    except _DECODE_ERRORS as exc:
        raise BadInputError(f"cannot read image header: {_describe(exc)}", detail=repr(exc)) from exc
    _check_pixels(im.size, max_pixels)
    return im


@functools.cache
def _register_heif() -> bool:
    """Register pi-heif's HEIF/HEIC opener with Pillow, once, on first use (it is not imported at start).

    pi-heif is the decode-only build of pillow-heif (libheif + libde265, LGPL-3.0; no x265, which is GPL).
    It opens the primary image (the one a phone shows; a burst's or sequence's other images are ignored),
    applies the HEIF transforms (irot/imir) while decoding and resets EXIF orientation to 1, so the
    orientation is applied once; 10/12-bit images come out 8-bit; an embedded ICC profile is in
    ``info['icc_profile']``.  Thumbnails, depth and auxiliary images are not decoded.
    """
    try:
        import pi_heif
    except ImportError:  # HEIF stays unknown: "cannot identify image format"
        return False
    pi_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
    return True


def _check_pixels(size: Box, max_pixels: int) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise BadInputError(f"image has an empty size {w}x{h}")
    if w * h > max_pixels:
        raise BadInputError(
            f"image is {w}x{h} = {_px(w * h)}, over the limit of {_px(max_pixels)}",
        )


def _bomb_message(exc: Exception, max_pixels: int) -> str:
    """Pillow refused the size before we saw it (its message has the pixel count, not the size)."""
    limit = max_pixels
    if Image.MAX_IMAGE_PIXELS is not None:  # the error fires at 2x Pillow's limit, the warning at 1x
        pillow = Image.MAX_IMAGE_PIXELS * (2 if isinstance(exc, Image.DecompressionBombError) else 1)
        limit = min(max_pixels, pillow)
    m = _BOMB_PIXELS.search(str(exc))
    size = _px(int(m.group(1))) if m else "too large"
    return f"image is {size}, over the limit of {_px(limit)}"


def _px(n: int) -> str:
    """Human-readable pixel count: 100 Mpx, 4.4 Gpx, 6000 Gpx."""
    for unit, name in ((10**9, "Gpx"), (10**6, "Mpx"), (10**3, "kpx")):
        if n >= unit:
            return f"{n / unit:.1f}".removesuffix(".0") + f" {name}"
    return f"{n} px"


def _describe(exc: BaseException) -> str:
    """Short reason for a decode failure, e.g. 'truncated image data'."""
    text = str(exc).strip()
    if isinstance(exc, MemoryError):
        return "out of memory while decoding"
    if isinstance(exc, Image.DecompressionBombWarning | Image.DecompressionBombError):
        return "image too large (decompression bomb)"
    if "truncated" in text or isinstance(exc, EOFError):
        return "truncated image data"
    return text or type(exc).__name__


def _decoding(what: str, func: Callable[[], T]) -> T:
    """Run one Pillow decode step, mapping decode failures to BadInputError."""
    try:
        return func()
    except _DECODE_ERRORS as exc:
        raise BadInputError(f"cannot {what}: {_describe(exc)}", detail=repr(exc)) from exc
    except RuntimeError as exc:
        if not _raised_by_decoder(exc):
            raise
        raise BadInputError(f"cannot {what}: {_describe(exc)}", detail=repr(exc)) from exc


def _raised_by_decoder(exc: BaseException) -> bool:
    """True when the innermost Python frame of ``exc`` is in a decoder plug-in (:data:`_DECODER_MODULES`):
    the error comes from its C library reading the input, not from our code."""
    tb, module = exc.__traceback__, ""
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        tb = tb.tb_next
    return module.split(".")[0] in _DECODER_MODULES


def decode_frame(frame: Image.Image, what: str, *, orient: bool = False) -> Image.Image:
    """A decoded copy of ``frame`` (an opened image's current frame: one page of a multi-page TIFF), EXIF
    orientation applied when ``orient``; a decode failure is ``BadInputError("cannot <what>: ...")``.
    For callers that walk frames themselves (OCR's pages) rather than render thumbnails."""
    _decoding(what, frame.load)
    copy = frame.copy()
    if not orient:
        return copy
    return _decoding("apply EXIF orientation", lambda: ImageOps.exif_transpose(copy))


def flatten(im: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """``im`` as RGB or L (bilevel, palette, 16-bit and CMYK images converted first) with any
    transparency composited onto ``background``."""
    return _flatten(_normalize_mode(im), background)


# --------------------------------------------------------------------------------------------- load


def _orientation(im: Image.Image) -> int:
    """EXIF orientation 1-8; a broken EXIF block counts as 1 (the pixels are still usable)."""
    try:
        value = im.getexif().get(_ORIENTATION_TAG, 1)
    except _EXIF_ERRORS:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def load_for_box(im: Image.Image, box: Box, *, max_pixels: int) -> Image.Image:
    """Decode ``im`` once, no smaller than the image fitted in ``box``; oriented, sRGB, RGB/RGBA/L.

    ``box`` applies to the displayed (EXIF-oriented) image.  JPEGs are DCT-scaled while decoding
    (``draft``) by the largest power of two (1/2, 1/4, 1/8) that keeps the decoded image at least
    as large as the image fitted in ``box`` (for a box of the image's aspect ratio: at least the
    box), so every output can still be derived from it without upscaling.  ``im`` is consumed:
    it is drafted, loaded and transposed in place; use the returned image.
    """
    orientation = _orientation(im)
    swapped = orientation in _SWAPPED_ORIENTATIONS
    if im.format in _JPEG_FORMATS:
        stored = im.size
        displayed = (stored[1], stored[0]) if swapped else stored
        tw, th = fit(displayed, box)
        target = (th, tw) if swapped else (tw, th)
        if target != stored:
            _decoding("decode image", lambda: im.draft(im.mode, target))
    _decoding("decode image", im.load)
    _check_pixels(im.size, max_pixels)  # some plugins (ICO, GIF) settle their size while loading
    icc = im.info.get("icc_profile") or None
    if orientation != 1:
        # Unreadable EXIF: keep the stored orientation rather than reject the image.
        with contextlib.suppress(*_EXIF_ERRORS):
            ImageOps.exif_transpose(im, in_place=True)
    out = _to_srgb_and_mode(im, icc)
    out.info = {"icc_profile": out.info["icc_profile"]} if out.info.get("icc_profile") else {}
    return out


def _icc_space(icc: bytes) -> str:
    """Colour space signature from an ICC header ('RGB', 'CMYK', 'GRAY', ...), '' if unreadable."""
    return icc[16:20].decode("ascii", "replace").strip() if len(icc) >= 20 else ""


def _is_srgb(profile: ImageCms.ImageCmsProfile) -> bool:
    try:
        description = ImageCms.getProfileDescription(profile)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return False
    return "srgb" in description.lower()


def _to_srgb_and_mode(im: Image.Image, icc: bytes | None) -> Image.Image:
    """Convert to sRGB (when an ICC profile says otherwise) and to RGB, RGBA or L.

    The result's ``info['icc_profile']`` is set only when the pixels are still in that profile's
    space: a broken RGB/gray profile is kept so the encoder embeds it; an sRGB one is dropped.
    """
    space = _icc_space(icc) if icc else ""
    profile: ImageCms.ImageCmsProfile | None = None
    if icc:
        try:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
            profile = None  # broken: keep pixels as they are (and the bytes, if the space still fits)

    if im.mode == "CMYK" and profile is not None and space == "CMYK":
        try:
            out = ImageCms.profileToProfile(im, profile, _SRGB, outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            out = None  # unusable profile: fall back to Pillow's plain CMYK -> RGB below
        if out is not None:
            out.info = {}
            return out

    family_before = _family(im.mode)
    out = _normalize_mode(im)
    out.info = dict(out.info)
    out.info.pop("icc_profile", None)
    if not icc or _family(out.mode) != family_before or space not in ("", _family(out.mode)):
        return out  # no profile, or it no longer describes these pixels (e.g. CMYK -> RGB)
    if profile is None:
        out.info["icc_profile"] = icc  # broken profile: embed it as it was
    elif space == "RGB" and out.mode in ("RGB", "RGBA") and not _is_srgb(profile):
        try:
            converted = ImageCms.profileToProfile(out, profile, _SRGB, outputMode=out.mode)
        except (ImageCms.PyCMSError, OSError, ValueError):
            out.info["icc_profile"] = icc
        else:
            if converted is not None:
                out = converted
                out.info = {}
    elif space == "GRAY":
        out.info["icc_profile"] = icc  # grey stays grey; viewers apply the profile
    return out


def _family(mode: str) -> str:
    """Colour family of a Pillow mode, in ICC header terms."""
    if mode in ("1", "L", "LA", "La") or mode.startswith(("I", "F")):
        return "GRAY"
    if mode == "CMYK":
        return "CMYK"
    return "RGB"


def _normalize_mode(im: Image.Image) -> Image.Image:
    """Return ``im`` as RGB, RGBA or L (may return ``im`` itself)."""
    mode = im.mode
    if mode in ("RGB", "RGBA", "L") and "transparency" not in im.info:
        return im
    try:
        if mode.startswith(("I", "F")):
            return _deep_to_8bit(im)
        if mode in ("LA", "PA", "RGBa", "RGBA"):
            return im.convert("RGBA")
        if mode == "La":
            return _unpremultiply_la(im)
        if mode in ("1", "L", "P", "RGB") and im.has_transparency_data:
            return im.convert("RGBA")
        if mode == "1":
            return im.convert("L")
        return im.convert("RGB")  # P, CMYK without a usable profile, YCbCr, LAB, HSV, RGBX, ...
    except (ValueError, OSError) as exc:
        raise BadInputError(f"unsupported image mode {mode}", detail=repr(exc)) from exc


def _unpremultiply_la(im: Image.Image) -> Image.Image:
    """'La' (premultiplied) to RGBA, via Pillow's RGBa -> RGBA conversion."""
    grey, alpha = im.split()
    return Image.merge("RGBa", (grey, grey, grey, alpha)).convert("RGBA")


def _deep_to_8bit(im: Image.Image) -> Image.Image:
    """16-bit / 32-bit / float grey to L, scaled (not clipped); alpha kept when tRNS says so."""
    if im.mode.startswith("I;16"):
        scale, offset = 1 / 256, 0.0  # the 16-bit range maps onto the 8-bit range, as libpng does
        wide = im.convert("I")
    else:
        wide = im if im.mode in ("I", "F") else im.convert("I")
        lo, hi = cast(tuple[float, float], wide.getextrema())
        if wide.mode == "F" and lo >= 0 and hi <= 1:
            scale, offset = 255.0, 0.0
        elif lo >= 0 and hi <= 65535 and wide.mode == "I":
            scale, offset = 1 / 256, 0.0
        elif hi > lo:  # no conventional range: stretch min..max
            scale = 255.0 / (hi - lo)
            offset = -lo * scale
        else:
            scale, offset = 0.0, float(max(0.0, min(255.0, lo)))
    grey = wide.point(lambda v: v * scale + offset).convert("L")
    if im.has_transparency_data:
        alpha = im.convert("LA").getchannel("A")  # Pillow derives alpha from the tRNS value
        return Image.merge("LA", (grey, alpha)).convert("RGBA")
    return grey


# ---------------------------------------------------------------------------------------------- fit


def fit_sizes(im: Image.Image, boxes: dict[str, Box]) -> dict[str, Image.Image]:
    """Fit ``im`` inside each box (aspect kept, never upscaled), largest first, each from a larger one.

    Each size is resampled (bicubic, antialiased) from the smallest already-made image that is at least
    as large in both dimensions, so no size is derived from one smaller than itself.
    """
    targets = {name: fit(im.size, box) for name, box in boxes.items()}
    made: list[Image.Image] = [im]
    result: dict[str, Image.Image] = {}
    for name in sorted(targets, key=lambda n: targets[n][0] * targets[n][1], reverse=True):
        tw, th = targets[name]
        src = min(
            (m for m in made if m.width >= tw and m.height >= th),
            key=lambda m: m.width * m.height,
        )
        if src.size == (tw, th):
            result[name] = src
            continue
        out = src.resize((tw, th), _RESAMPLE, reducing_gap=_REDUCING_GAP)
        out.info = dict(im.info)
        made.append(out)
        result[name] = out
    return {name: result[name] for name in boxes}


# ------------------------------------------------------------------------------------------- encode


def encode(
    im: Image.Image,
    fmt: str,
    *,
    quality: int,
    progressive: bool = True,
    background: tuple[int, int, int] | None = (255, 255, 255),
) -> bytes:
    """Encode as 'jpeg', 'webp' or 'png' (``quality`` unused); embeds ``im.info['icc_profile']``, never EXIF.

    JPEG has no alpha: transparent pixels are flattened onto ``background`` (None: a checkerboard, see
    :func:`choose_background`).  WebP and PNG keep alpha.
    ``optimize`` is off: progressive output gets optimized Huffman tables anyway, and for baseline
    output it measured 2-2.5x the encode time for 1-3 % fewer bytes.
    """
    pil_format = _FORMATS.get(fmt)
    if pil_format is None:
        raise ValueError(f"unsupported output format {fmt!r}; expected one of {sorted(_FORMATS)}")
    icc = im.info.get("icc_profile") or None
    buf = io.BytesIO()
    if pil_format == "JPEG":
        flat = _flatten(im, background)
        flat.save(
            buf,
            "JPEG",
            quality=quality,
            progressive=progressive,
            optimize=False,
            icc_profile=icc,
        )
    elif pil_format == "WEBP":
        src = im if im.mode in ("RGB", "RGBA") else im.convert("RGBA" if _has_alpha(im) else "RGB")
        src.save(buf, "WEBP", quality=quality, method=4, icc_profile=icc)
    else:
        im.save(buf, "PNG", compress_level=6, icc_profile=icc)
    return buf.getvalue()


def _has_alpha(im: Image.Image) -> bool:
    return "A" in im.getbands() or "a" in im.getbands() or im.has_transparency_data


def _flatten(im: Image.Image, background: tuple[int, int, int] | None) -> Image.Image:
    """RGB or L image with any transparency composited onto ``background`` (None: a checkerboard)."""
    if im.mode in ("RGB", "L") and not im.has_transparency_data:
        return im
    if not _has_alpha(im):
        return im.convert("RGB")
    rgba = im if im.mode == "RGBA" else im.convert("RGBA")
    flat = _checkerboard(rgba.size) if background is None else Image.new("RGB", rgba.size, background)
    flat.paste(rgba, (0, 0), rgba)
    return flat


# -------------------------------------------------------------------------------------- transparency

CHECKERBOARD = "checkerboard"
_CHECKS = ((255, 255, 255), (204, 204, 204))  # white and light grey, as image editors show transparency
_MIN_CONTENT_CONTRAST = 32.0  # luma levels (of 255) the visible content must differ from the background


def _checkerboard(size: Box) -> Image.Image:
    """White and light grey squares, 8 along the short side (at least 4 px): how transparency is shown."""
    w, h = size
    cell = max(4, min(w, h) // 8)
    tile = Image.new("RGB", (2 * cell, 2 * cell), _CHECKS[0])
    tile.paste(_CHECKS[1], (cell, 0, 2 * cell, cell))
    tile.paste(_CHECKS[1], (0, cell, cell, 2 * cell))
    board = Image.new("RGB", size)
    for y in range(0, h, 2 * cell):
        for x in range(0, w, 2 * cell):
            board.paste(tile, (x, y))
    return board


@dataclass(frozen=True)
class Background:
    """What an image's transparency is flattened onto for outputs without alpha (JPEG), and why:
    ``configured`` (``thumbnails.background``), ``low_contrast`` (the content would not show on it:
    ``thumbnails.contrast_background`` instead) or ``all_transparent`` (nothing is visible: a
    checkerboard, the usual picture of transparency, instead of a blank square)."""

    colour: tuple[int, int, int] | None  # None: the checkerboard
    reason: str

    def meta(self) -> dict[str, str]:
        """What the manifest says of a flattened output."""
        onto = CHECKERBOARD if self.colour is None else "#{:02x}{:02x}{:02x}".format(*self.colour)
        return {"flattened_onto": onto, "flatten_reason": self.reason}


def choose_background(
    im: Image.Image, background: tuple[int, int, int], contrast: tuple[int, int, int] | None
) -> Background | None:
    """Where ``im``'s transparency goes when flattened; None if it has none.

    ``contrast`` None: always ``background`` (a fully transparent image is still reported as such).
    Otherwise the content's contrast against a colour is the
    alpha-weighted mean difference in luma between the visible pixels and that colour; below 32 (of 255:
    white text on a white background) ``contrast`` is used if the content stands out more on it, and a
    fully transparent image is drawn as a checkerboard.  Decided once per source (on its smallest size)
    so that every size and format agrees.
    """
    if not _has_alpha(im):
        return None
    rgba = im if im.mode == "RGBA" else im.convert("RGBA")
    alpha = rgba.getchannel("A")
    weight = ImageStat.Stat(alpha).sum[0]
    if weight == 0:
        return Background(background if contrast is None else None, "all_transparent")
    if contrast is None:
        return Background(background, "configured")
    luma = rgba.convert("RGB").convert("L")

    def stands_out(colour: tuple[int, int, int]) -> float:
        level = round(colour[0] * 0.299 + colour[1] * 0.587 + colour[2] * 0.114)
        diff = ImageChops.difference(luma, Image.new("L", luma.size, level))
        return ImageStat.Stat(ImageChops.multiply(diff, alpha)).sum[0] * 255 / weight

    on_background = stands_out(background)
    if on_background < _MIN_CONTENT_CONTRAST and stands_out(contrast) > on_background:
        return Background(contrast, "low_contrast")
    return Background(background, "configured")


# ------------------------------------------------------------------------------------------ pipeline


def render_thumbnails(
    data: bytes,
    *,
    boxes: dict[str, Box],
    formats: list[str],
    max_pixels: int,
    jpeg_quality: int = 85,
    webp_quality: int = 80,
    progressive: bool = True,
    background: tuple[int, int, int] = (255, 255, 255),
    contrast_background: tuple[int, int, int] | None = None,
    suffix: str = "",
) -> Rendered:
    """Every (size name, format) for one source, from a single decode.

    Returns ``{(size_name, fmt): (encoded_bytes, (width, height))}``.  ``contrast_background``: see
    :func:`choose_background`; ``suffix``: the source's, for :func:`open_image`.
    """
    for fmt in formats:
        if fmt not in _FORMATS:
            raise ValueError(f"unsupported output format {fmt!r}; expected one of {sorted(_FORMATS)}")
    if not boxes or not formats:
        return Rendered()
    im = open_image(data, max_pixels=max_pixels, suffix=suffix)
    w, h = im.size
    displayed = (h, w) if _orientation(im) in _SWAPPED_ORIENTATIONS else (w, h)
    # The box whose fitted size is largest (not simply the largest box) bounds the decode size.
    biggest = max(boxes.values(), key=lambda b: _area(fit(displayed, b)))
    loaded = load_for_box(im, biggest, max_pixels=max_pixels)
    quality = {"jpeg": jpeg_quality, "webp": webp_quality, "png": 0}
    return encode_sizes(
        fit_sizes(loaded, boxes),
        formats,
        quality=quality,
        progressive=progressive,
        background=background,
        contrast_background=contrast_background,
    )


def encode_sizes(
    sized: dict[str, Image.Image],
    formats: list[str],
    *,
    quality: dict[str, int],
    progressive: bool,
    background: tuple[int, int, int],
    contrast_background: tuple[int, int, int] | None = None,
) -> Rendered:
    """Encode every fitted size in every format: {(size name, format): (bytes, (w, h))}, and the set's
    ThumbHash (:attr:`Rendered.thumbhash`) and flattening (:attr:`Rendered.background`) from its
    smallest size, already in memory."""
    from pipelines.media.placeholder import thumbhash

    smallest = min(sized.values(), key=lambda im: im.size[0] * im.size[1]) if sized else None
    chosen = choose_background(smallest, background, contrast_background) if smallest else None
    onto = chosen.colour if chosen else background
    out = Rendered(
        {
            (name, fmt): (
                encode(img, fmt, quality=quality[fmt], progressive=progressive, background=onto),
                img.size,
            )
            for name, img in sized.items()
            for fmt in formats
        }
    )
    if smallest is not None:
        out.thumbhash = thumbhash(smallest)
    out.background = chosen
    return out


class Rendered(dict[tuple[str, str], tuple[bytes, Box]]):
    """Encoded renditions by (size name, format), with the set's placeholder and flattening."""

    thumbhash: str | None = None
    background: Background | None = None  # None: the image has no transparency

    def meta(self, fmt: str) -> dict[str, object]:
        """What the manifest says of the outputs in ``fmt`` beyond their size: the placeholder, how
        transparency was flattened (formats without alpha), whether the image is all transparent."""
        out: dict[str, object] = {"thumbhash": self.thumbhash} if self.thumbhash else {}
        bg = self.background
        if bg is not None and fmt in _FLATTENED:
            out.update(bg.meta())
        elif bg is not None and bg.reason == "all_transparent":
            out["all_transparent"] = True
        return out


def _area(size: Box) -> int:
    return size[0] * size[1]
