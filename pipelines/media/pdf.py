"""PDFs from bytes: open (password, clean errors), text layers, page rendering, first-page thumbnails.

No file I/O: the caller reads the source once and hands over the bytes.  pdfplumber reads text
layers; pypdfium2 (which pdfplumber depends on) renders pages; pypdf copies pages into searchable
PDFs.  pdfium and pdfplumber are not thread-safe: use one :class:`PdfDocument` from one thread.

pdfium opens the document and counts its pages; pdfplumber (pdfminer) is opened only when a text layer
is asked for, so rendering (thumbnails, OCR) never depends on pdfminer.  Where pdfminer cannot read the
document or a page (a page tree nested deeper than Python's recursion limit, a zoo of exceptions on
broken content), the text layer comes from pdfium's text API instead.

Coordinates are PDF points of the page as displayed (``/Rotate`` applied, origin top-left).
"""

from __future__ import annotations

import contextlib
import io
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image

from config.errors import BadInputError
from config.logs import get_logger
from pipelines.media.geometry import fit_scale

if TYPE_CHECKING:
    from pipelines.media.imaging import Rendered

log = get_logger(__name__)
HEADER_WINDOW = 1024  # readers accept "%PDF-" anywhere in the first KiB


@dataclass
class TextLayer:
    """A page's text layer, upright: text, words with boxes (points), page size (points)."""

    text: str
    words: list[dict[str, Any]]
    width: float
    height: float
    readable_chars: int
    has_images: bool
    image_dpi: float | None  # resolution of the largest-resolution image covering >= 1/4 of the page
    turned: int  # degrees clockwise the text was turned to read upright (0 for normal pages)


def _page_size_note(w: float, h: float) -> str:
    return f"{w:.0f}x{h:.0f} pt"


class PdfDocument:
    """One open PDF: pdfplumber for text, pdfium for pixels."""

    def __init__(self, data: bytes, *, password: str | None = None) -> None:
        import pypdfium2 as pdfium

        if not data:
            raise BadInputError("empty file (0 bytes): not a PDF")
        if b"%PDF-" not in data[:HEADER_WINDOW]:
            raise BadInputError("not a PDF (no %PDF- header in the first 1 KiB)")
        self.data = data
        self.password = password
        self.encrypted = False
        try:
            self.pdfium = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            if "password" not in str(exc).lower():
                raise BadInputError(f"not a readable PDF: {exc}") from None
            self.encrypted = True
            if not password:
                raise BadInputError(
                    "the PDF is encrypted and needs a password: set ocr.password "
                    "(MEDIA_WORKER_OCR__PASSWORD) to process it"
                ) from None
            try:
                self.pdfium = pdfium.PdfDocument(data, password=password)
            except pdfium.PdfiumError:
                raise BadInputError("the PDF is encrypted and ocr.password does not open it") from None
        self.n_pages = len(self.pdfium)
        self._plumber: Any = None
        self.plumber_error: str | None = None  # why pdfminer cannot read the document, once it failed
        if self.n_pages == 0:
            self.close()
            raise BadInputError("the PDF has no pages")

    @property
    def plumber(self) -> Any:
        """The document in pdfplumber, opened on first use; BadInputError if pdfminer cannot read it."""
        import pdfplumber

        if self._plumber is None and self.plumber_error is None:
            try:
                doc = pdfplumber.open(io.BytesIO(self.data), password=self.password if self.encrypted else "")
                if len(doc.pages) != self.n_pages:
                    log.warning("pdfplumber sees %d pages, pdfium %d", len(doc.pages), self.n_pages)
                self._plumber = doc
            except Exception as exc:  # pdfminer raises a zoo of exception types (RecursionError too)
                self.plumber_error = f"pdfminer cannot read the PDF: {_why(exc)}"
        if self._plumber is None:
            raise BadInputError(self.plumber_error or "pdfminer cannot read the PDF")
        return self._plumber

    def close(self) -> None:
        if self._plumber is not None:
            self._plumber.close()
        self.pdfium.close()

    def __enter__(self) -> PdfDocument:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- text layer ----------------------------------------------------------------------------
    def text_layer(self, index: int) -> TextLayer:
        """The page's text layer, turned upright if its text runs sideways or upside down; from pdfium
        (:meth:`pdfium_text_layer`) where pdfminer cannot read the document or the page."""
        try:
            return self._plumber_text_layer(index)
        except BadInputError as exc:
            log.warning("%s; taking the page's text from pdfium", exc)
        try:
            return self.pdfium_text_layer(index)
        except Exception as exc:  # pdfium's text API on a broken page
            raise BadInputError(f"page {index + 1}: cannot read its text layer: {_why(exc)}") from None

    def _plumber_text_layer(self, index: int) -> TextLayer:
        from pdfplumber.utils import chars_to_textmap, extract_words

        pages = self.plumber.pages
        if index >= len(pages):
            raise BadInputError(f"page {index + 1}: pdfminer does not see it")
        page = pages[index]
        try:
            chars, images = _layout_chars(page)
            x0, top, x1, bottom = box = _visible_box(page)
            if box != tuple(float(v) for v in page.bbox):
                chars = [
                    c
                    for c in chars
                    if x0 <= (c["x0"] + c["x1"]) / 2 <= x1 and top <= (c["top"] + c["bottom"]) / 2 <= bottom
                ]
            width, height = x1 - x0, bottom - top
            readable = sum(1 for c in chars if _readable(c["text"]))
            turn = _text_turn(chars)
            chars = [_turn_char(c, turn, width, height, x0, top) for c in chars]
            if turn in (90, 270):
                width, height = height, width
            bbox = (0.0, 0.0, width, height)
            text = chars_to_textmap(
                chars, layout_bbox=bbox, layout_width=width, layout_height=height
            ).as_string
            words = extract_words(chars)
        except Exception as exc:  # pdfminer raises a zoo of exception types for broken content
            raise BadInputError(
                f"page {index + 1}: pdfminer cannot read its text layer: {_why(exc)}"
            ) from None
        finally:
            page.close()  # pdfplumber keeps every page's layout otherwise: ~3 MB a page of dense text
        return TextLayer(
            text=text,
            words=[
                {
                    "text": w["text"],
                    "conf": None,
                    "bbox": [round(w["x0"], 2), round(w["top"], 2), round(w["x1"], 2), round(w["bottom"], 2)],
                }
                for w in words
            ],
            width=round(width, 2),
            height=round(height, 2),
            readable_chars=readable,
            has_images=bool(images),
            image_dpi=max((d for d, a in images if a >= 0.25 * width * height and d > 0), default=None),
            turned=turn,
        )

    def pdfium_text_layer(self, index: int) -> TextLayer:
        """The page's text layer as pdfium reads it: words split at white space, boxes in points of the
        page as displayed; no turn for sideways text (``turned`` is 0)."""
        import pypdfium2.raw as pdfium_c

        with _closing(self.pdfium[index]) as page, _closing(page.get_textpage()) as tp:
            width, height = (float(v) for v in page.get_size())
            x0, y0, x1, y1 = (float(v) for v in page.get_bbox())
            turn = int(page.get_rotation()) % 360

            def box(i: int) -> tuple[float, float, float, float]:
                left, bottom, right, top = tp.get_charbox(i)
                corners = [_displayed(x, y, turn, x0, y0, x1, y1) for x, y in ((left, bottom), (right, top))]
                xs, ys = [c[0] for c in corners], [c[1] for c in corners]
                return min(xs), min(ys), max(xs), max(ys)

            count = tp.count_chars()
            text = tp.get_text_range(0, count).replace("\r\n", "\n") if count > 0 else ""
            words: list[dict[str, Any]] = []
            current: list[tuple[str, tuple[float, float, float, float]]] = []
            for i in range(count):
                ch = tp.get_text_range(i, 1)
                if ch.strip():
                    current.append((ch, box(i)))
                    if i < count - 1:
                        continue
                if current:
                    boxes = [b for _, b in current]
                    words.append(
                        {
                            "text": "".join(c for c, _ in current),
                            "conf": None,
                            "bbox": [
                                round(min(b[0] for b in boxes), 2),
                                round(min(b[1] for b in boxes), 2),
                                round(max(b[2] for b in boxes), 2),
                                round(max(b[3] for b in boxes), 2),
                            ],
                        }
                    )
                    current = []
            images = []
            for obj in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=8):
                with contextlib.suppress(Exception):  # an image pdfium cannot measure: not counted
                    left, bottom, right, top = obj.get_bounds()
                    area = max(0.0, right - left) * max(0.0, top - bottom)
                    pw, ph = obj.get_px_size()
                    images.append((72 * (pw * ph / area) ** 0.5 if area > 0 and pw * ph > 0 else 0.0, area))
        return TextLayer(
            text=text,
            words=words,
            width=round(width, 2),
            height=round(height, 2),
            readable_chars=sum(1 for c in text if _readable(c)),
            has_images=bool(images),
            image_dpi=max((d for d, a in images if a >= 0.25 * width * height and d > 0), default=None),
            turned=0,
        )

    # -- pixels --------------------------------------------------------------------------------
    def page_size(self, index: int) -> tuple[float, float]:
        """Displayed page size in points (crop box, /Rotate applied)."""
        with _closing(self._page(index)) as page:
            w, h = page.get_size()
        return float(w), float(h)

    def rotation(self, index: int) -> int:
        """The page's /Rotate (0, 90, 180 or 270)."""
        with _closing(self._page(index)) as page:
            return int(page.get_rotation())

    def _page(self, index: int) -> Any:
        import pypdfium2 as pdfium

        try:
            return self.pdfium[index]
        except (pdfium.PdfiumError, IndexError) as exc:
            raise BadInputError(f"page {index + 1} cannot be loaded: {exc}") from None

    def render(self, index: int, *, scale: float, max_pixels: int | None = None) -> Image.Image:
        """The page as displayed, at ``scale`` pixels per point, as an RGB image."""
        w, h = self.page_size(index)
        pw, ph = round(w * scale), round(h * scale)
        if max_pixels is not None and pw * ph > max_pixels:
            raise BadInputError(
                f"page {index + 1} ({_page_size_note(w, h)}) renders to {pw}x{ph} = {pw * ph} pixels, "
                f"over ocr.max_page_pixels = {max_pixels}"
            )
        if pw < 1 or ph < 1:
            raise BadInputError(f"page {index + 1} has no area ({_page_size_note(w, h)})")
        try:
            # pdfium's pages and bitmaps are closed at once: a document keeps every page it opened
            # otherwise, which grew a 500-page scan's worker by ~1 MB a page
            with (
                _closing(self.pdfium[index]) as page,
                _closing(page.render(scale=scale, may_draw_forms=True)) as bm,
            ):
                return _grey_if_grey(bm.to_pil().convert("RGB"))
        except Exception as exc:
            raise BadInputError(f"page {index + 1} cannot be rendered: {exc}") from None


def _why(exc: BaseException) -> str:
    """``Type: message`` of a parser's exception, e.g. 'RecursionError: maximum recursion depth exceeded'."""
    cause = exc.__cause__ or exc.__context__
    if type(exc).__name__ == "PdfminerException" and cause is not None:  # pdfplumber's wrapper
        exc = cause
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


def _displayed(
    x: float, y: float, turn: int, x0: float, y0: float, x1: float, y1: float
) -> tuple[float, float]:
    """A point of PDF user space on the page as displayed: crop box ``x0 y0 x1 y1``, /Rotate ``turn``
    (clockwise) applied, origin top-left."""
    if turn == 90:
        return y - y0, x - x0
    if turn == 180:
        return x1 - x, y - y0
    if turn == 270:
        return y1 - y, x1 - x
    return x - x0, y1 - y


@contextlib.contextmanager
def _closing(obj: Any) -> Iterator[Any]:
    """pdfium objects (pages, bitmaps) closed when the block ends."""
    try:
        yield obj
    finally:
        obj.close()


def _image_dpi_area(obj: Any) -> tuple[float, float]:
    """(resolution in dpi, displayed area in pt²) of a pdfminer LTImage; dpi 0 when unknown."""
    from pdfminer.pdftypes import resolve1

    area = max(0.0, float(obj.width)) * max(0.0, float(obj.height))
    try:
        sw, sh = (resolve1(v) for v in obj.srcsize)
        pixels = float(sw) * float(sh)
    except (TypeError, ValueError):
        return 0.0, area
    return (72 * (pixels / area) ** 0.5 if area > 0 and pixels > 0 else 0.0), area


def _grey_if_grey(im: Image.Image) -> Image.Image:
    """Mode L when the page has no colour (a grey scan, black text): a third of the pixels to encode."""
    from PIL import ImageChops

    r, g, b = im.reduce(8).split()
    spread = max(_top(ImageChops.difference(r, g)), _top(ImageChops.difference(g, b)))
    return im.convert("L") if spread <= 8 else im


def _top(band: Image.Image) -> int:
    """Largest value of a single-band image."""
    hist = band.histogram()
    return max((v for v, n in enumerate(hist) if n), default=0)


def _readable(text: str) -> bool:
    return bool(text.strip()) and not text.startswith("(cid:") and "\ufffd" not in text and text.isprintable()


def has_usable_text(layer: TextLayer, min_chars: int) -> bool:
    """True when extracting beats OCR: enough readable characters (glyphs without a Unicode map
    don't count), or some readable text and no image on the page for OCR to find more in."""
    return layer.readable_chars >= min_chars or (layer.readable_chars > 0 and not layer.has_images)


def _visible_box(page: Any) -> tuple[float, float, float, float]:
    """The part of the page a viewer shows: its crop box within its media box (x0, top, x1, bottom).

    pdfplumber's own ``cropbox`` is wrong on pages with /Rotate 90/270 (it swaps x and y instead of
    rotating), so the crop box is mapped here with the same matrix pdfminer applies to the content.
    """
    from pdfplumber.utils.pdfinternals import resolve_all

    attrs = page.page_obj.attrs
    raw_crop, raw_media = resolve_all(attrs.get("CropBox")), page.page_obj.mediabox
    whole = tuple(float(v) for v in page.bbox)
    if not raw_crop or not raw_media:  # no crop box: keep everything, even text pdfminer put off the page
        return whole  # type: ignore[return-value]
    try:
        mx0, my0 = min(raw_media[0], raw_media[2]), min(raw_media[1], raw_media[3])
        mx1, my1 = max(raw_media[0], raw_media[2]), max(raw_media[1], raw_media[3])
        a, b, c, d, e, f = {
            90: (0, -1, 1, 0, -my0, mx1),
            180: (-1, 0, 0, -1, mx1, my1),
            270: (0, 1, -1, 0, my1, -mx0),
        }.get(page.rotation, (1, 0, 0, 1, -mx0, -my0))
        pts = [(raw_crop[0], raw_crop[1]), (raw_crop[2], raw_crop[3])]
        xs = [a * x + c * y + e for x, y in pts]
        ys = [b * x + d * y + f for x, y in pts]
        height = float(page.mediabox[3] - page.mediabox[1])
        box = (min(xs), height - max(ys), max(xs), height - min(ys))
    except (TypeError, IndexError):
        return whole  # type: ignore[return-value]  # a malformed crop box: use the whole page
    x0, top, x1, bottom = whole
    box = (max(x0, box[0]), max(top, box[1]), min(x1, box[2]), min(bottom, box[3]))
    if box[2] <= box[0] or box[3] <= box[1]:
        return whole  # type: ignore[return-value]
    return box


def _layout_chars(page: Any) -> tuple[list[dict[str, Any]], list[tuple[float, float]]]:
    """The page's characters as pdfplumber char dicts (only the keys its text functions use), and
    (resolution in dpi, area in pt²) of each image the page shows.

    Built from ``page.layout`` (pdfminer's layout of the page) directly: pdfplumber's ``page.chars``
    gives the same coordinates but converts every attribute of every object, about 3x slower.
    """
    from pdfminer.layout import LTChar, LTContainer, LTImage

    height = float(page.height)
    mb_x0, mb_top = float(page.mediabox[0]), float(page.mediabox[1])
    chars: list[dict[str, Any]] = []
    images: list[tuple[float, float]] = []
    stack: list[Any] = [iter(page.layout)]
    while stack:
        obj = next(stack[-1], None)
        if obj is None:
            stack.pop()
        elif isinstance(obj, LTChar):
            top, bottom = height - obj.y1 + mb_top, height - obj.y0 + mb_top
            chars.append(
                {
                    "object_type": "char",
                    "text": obj.get_text(),
                    "fontname": obj.fontname,
                    "size": obj.size,
                    "upright": obj.upright,
                    "matrix": obj.matrix,
                    "x0": obj.x0 + mb_x0,
                    "x1": obj.x1 + mb_x0,
                    "top": top,
                    "bottom": bottom,
                    "doctop": top,
                    "width": obj.width,
                    "height": obj.height,
                }
            )
        elif isinstance(obj, LTImage):
            images.append(_image_dpi_area(obj))
        elif isinstance(obj, LTContainer):
            stack.append(iter(obj))
    return chars, images


def _text_turn(chars: list[dict[str, Any]]) -> int:
    """Degrees clockwise to turn the page so its dominant text direction reads left to right."""
    votes: Counter[int] = Counter()
    for c in chars:
        if not _readable(c["text"]):
            continue
        a, b = c["matrix"][0], c["matrix"][1]  # the text direction in PDF space (y up)
        if abs(a) >= abs(b):
            votes[0 if a > 0 else 180] += 1
        else:
            votes[90 if b > 0 else 270] += 1  # going up the page: turn clockwise
    if not votes:
        return 0
    turn, n = votes.most_common(1)[0]
    return turn if n * 2 > sum(votes.values()) else 0


def _turn_char(
    c: dict[str, Any], turn: int, w: float, h: float, x_off: float, y_off: float
) -> dict[str, Any]:
    """A char with its box turned ``turn`` degrees clockwise on a w x h page (top-left origin)."""
    x0, x1, top, bottom = c["x0"] - x_off, c["x1"] - x_off, c["top"] - y_off, c["bottom"] - y_off
    if turn == 90:  # (x, y) -> (h - y, x)
        nx0, nx1, ntop, nbottom = h - bottom, h - top, x0, x1
    elif turn == 270:  # (x, y) -> (y, w - x)
        nx0, nx1, ntop, nbottom = top, bottom, w - x1, w - x0
    elif turn == 180:  # (x, y) -> (w - x, h - y)
        nx0, nx1, ntop, nbottom = w - x1, w - x0, h - bottom, h - top
    else:
        nx0, nx1, ntop, nbottom = x0, x1, top, bottom
    out = dict(c)
    out.update(
        x0=nx0,
        x1=nx1,
        top=ntop,
        bottom=nbottom,
        doctop=ntop,
        upright=True if turn else c["upright"],
    )
    return out


THUMBNAIL_PAGES = 20  # pages tried at most for a thumbnail (a page may be over the limit or broken)


@dataclass
class PdfThumbnails:
    """The thumbnails of one page, its 1-based number and the pages passed over before it, with why."""

    rendered: Rendered
    page: int
    passed_over: list[tuple[int, str]]


def pdf_thumbnails(
    data: bytes,
    *,
    boxes: dict[str, tuple[int, int]],
    formats: list[str],
    dpi: int,
    password: str | None,
    quality: dict[str, int],
    progressive: bool,
    background: tuple[int, int, int],
    max_pixels: int | None = None,
) -> PdfThumbnails:
    """Thumbnails of the first page within limits, with the same sizes and encoders as image thumbnails.

    The page's "native" size is its size at ``dpi``: sizes fit inside it and are never larger.  A page
    whose native size is over ``max_pixels`` (as an image that big would be), or that has no area or
    cannot be rendered, is passed over for the next one; when no page is within ``max_pixels``, the
    first page that renders is used (a thumbnail is a small render whatever the page's size).
    """
    from pipelines.media.imaging import encode_sizes, fit_sizes

    failed: dict[int, str] = {}
    with PdfDocument(data, password=password) as doc:
        pages = range(min(doc.n_pages, THUMBNAIL_PAGES))
        over = {i: why for i in pages if (why := _over_limit(doc, i, dpi, max_pixels))}
        for i in [i for i in pages if i not in over] + sorted(over):
            try:
                w, h = doc.page_size(i)
                native = (max(1, round(w * dpi / 72)), max(1, round(h * dpi / 72)))
                fits = [fit_scale(native, box) for box in boxes.values()]
                page = doc.render(i, scale=dpi / 72 * max(fits))  # one render, as big as the largest needs
            except BadInputError as exc:
                failed[i] = str(exc)
                continue
            rendered = encode_sizes(
                fit_sizes(page, boxes),
                formats,
                quality=quality,
                progressive=progressive,
                background=background,
            )
            passed = [(j + 1, failed.get(j) or over[j]) for j in range(i)]
            return PdfThumbnails(rendered, i + 1, passed)
    raise BadInputError("no page of the PDF can be rendered: " + "; ".join(failed.values()))


def _over_limit(doc: PdfDocument, index: int, dpi: int, max_pixels: int | None) -> str | None:
    """Why the page's native size is over ``max_pixels``, or None."""
    try:
        w, h = doc.page_size(index)
    except Exception:  # a page pdfium cannot load: render() says why
        return None
    pw, ph = round(w * dpi / 72), round(h * dpi / 72)
    if max_pixels is None or pw * ph <= max_pixels:
        return None
    return (
        f"page {index + 1} ({_page_size_note(w, h)}) is {pw}x{ph} = {pw * ph} pixels at {dpi} dpi, "
        f"over limits.max_image_pixels = {max_pixels}"
    )
