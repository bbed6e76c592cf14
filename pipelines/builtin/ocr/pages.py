"""OCR of page images in parallel: a thread pool driving one tesseract process per page.

Pages come from an iterator that decodes or renders them one at a time (in the calling thread: pdfium
and pdfplumber are not thread-safe); at most ``workers`` pages are in flight, so the scratch folder
holds only those pages' images, never the whole document.  Each page is written to the scratch
folder, OCR'd once (text, words and, if asked, a one-page searchable PDF from the same pass) and
deleted.  Orientation: see :func:`_ocr_page`.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from config.deadline import NO_DEADLINE, Deadline
from config.ocr import OcrSettings
from pipelines.tools import tesseract
from pipelines.tools.tesseract import Orientation, PageResult

_CLOCKWISE = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}
AUTO_OSD_BELOW_CONF = 60.0  # 'auto': a first pass with a lower mean word confidence gets an OSD check


@dataclass
class PageImage:
    """One page to OCR: its 0-based index, pixels (mode 1, L or RGB) and resolution if known."""

    index: int
    image: Image.Image
    dpi: int | None
    # the searchable PDF will lay the text over the source's own PDF page (unrotated PDF pages):
    # keep tesseract's text-only layer instead of building an image page
    onto_source_page: bool = False


@dataclass
class OcrPage:
    """OCR result of one page, in pixels of the (upright) page image."""

    index: int
    result: PageResult
    rotated: int = 0  # degrees clockwise applied to make the page upright
    osd: Orientation | None = None
    dpi: int | None = None
    text_only_pdf: bool = False  # result.pdf is tesseract's text layer alone, for the source page


@dataclass(frozen=True)
class OcrParams:
    """Everything a page's OCR needs besides the page (picklable, shared by the threads)."""

    settings: OcrSettings
    scratch: Path
    want_pdf: bool
    deadline: Deadline = NO_DEADLINE

    @property
    def env(self) -> dict[str, str]:
        return tesseract.build_env(omp_thread_limit=self.settings.omp_thread_limit, tmpdir=self.scratch)


def ocr_pages(
    pages: Iterable[PageImage],
    params: OcrParams,
    *,
    workers: int,
    on_done: Callable[[OcrPage], None] | None = None,
) -> dict[int, OcrPage]:
    """OCR every page, ``workers`` at a time; results by page index.  The first failure cancels the rest."""
    results: dict[int, OcrPage] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ocr")
    pending: set[Future[OcrPage]] = set()

    def collect(done: Iterable[Future[OcrPage]]) -> None:
        for fut in done:
            page = fut.result()  # re-raises the page's error
            results[page.index] = page
            if on_done is not None:
                on_done(page)

    try:
        for page in pages:
            while len(pending) >= max(1, workers):
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                collect(done)
            pending.add(pool.submit(_ocr_page, page, params))
            del page  # the pool holds the only reference now
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            collect(done)
    finally:
        # running tesseracts finish (bounded by their timeouts) before the scratch folder goes away
        pool.shutdown(wait=True, cancel_futures=True)
    return results


def _save(image: Image.Image, path: Path, dpi: int | None) -> None:
    extra = {"dpi": (dpi, dpi)} if dpi else {}
    if path.suffix == ".jpg":
        image.save(path, "JPEG", quality=88, **extra)
    else:
        image.save(path, "PNG", compress_level=1, **extra)


def _page_file(params: OcrParams, page: PageImage) -> Path:
    return params.scratch / f"page-{page.index + 1:05d}.png"  # lossless: OCR reads exactly the pixels


def searchable_page(image: Image.Image, text_pdf: bytes, dpi: int | None) -> bytes:
    """One PDF page: the page image (JPEG, or lossless when bilevel) under tesseract's invisible text.

    The text layer is scaled onto the image page, so both agree whatever resolution either assumed.
    """
    from pypdf import PdfReader, PdfWriter, Transformation

    buf = io.BytesIO()
    jpeg = {} if image.mode == "1" else {"quality": 85}  # Pillow stores bilevel pages as CCITT G4
    image.save(buf, "PDF", resolution=float(dpi or 300), **jpeg)
    writer = PdfWriter(clone_from=io.BytesIO(buf.getvalue()))
    page = writer.pages[0]
    text = PdfReader(io.BytesIO(text_pdf)).pages[0]
    sx = float(page.mediabox.width) / float(text.mediabox.width)
    sy = float(page.mediabox.height) / float(text.mediabox.height)
    page.merge_transformed_page(text, Transformation().scale(sx, sy))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _ocr_file(params: OcrParams, path: Path, dpi: int | None, what: str) -> PageResult:
    s = params.settings
    return tesseract.recognize(
        path,
        langs=s.languages,
        dpi=dpi,
        psm=s.psm,
        want_pdf=params.want_pdf,
        timeout=s.page_timeout_seconds,
        deadline=params.deadline,
        env=params.env,
        tessdata_dir=s.tessdata_dir,
        what=what,
    )


def _orientation(params: OcrParams, path: Path, what: str) -> Orientation | None:
    s = params.settings
    return tesseract.detect_orientation(
        path,
        timeout=s.page_timeout_seconds,
        deadline=params.deadline,
        env=params.env,
        tessdata_dir=s.tessdata_dir,
        what=what,
    )


def looks_wrong(result: PageResult) -> bool:
    """True when a first pass suggests a rotated page: most words are taller than wide, or it read badly."""
    long_words = [w for w in result.words if len(w.text) >= 3]
    if not long_words:
        return False  # nothing to go on: OSD would find too few characters too
    tall = sum(1 for w in long_words if (w.bbox[3] - w.bbox[1]) > 1.2 * (w.bbox[2] - w.bbox[0]))
    return tall * 2 > len(long_words) or result.mean_conf < AUTO_OSD_BELOW_CONF


def _ocr_page(page: PageImage, params: OcrParams) -> OcrPage:
    """OCR one page; orientation per settings.

    'always': OSD first, rotate, then OCR.  'auto': OCR; if the result looks sideways or reads badly,
    OSD; if OSD says rotate (with enough confidence), OCR the rotated page and keep the better reading.
    The per-page limit fails the page (PageTimeoutError); the job's deadline times the job out.
    """
    s = params.settings
    what = f"page {page.index + 1}"
    path = _page_file(params, page)
    image = page.image
    try:
        _save(image, path, page.dpi)
        osd: Orientation | None = None
        rotated = 0
        if s.orientation == "always":
            osd = _orientation(params, path, what)
            if osd is not None and osd.rotate and osd.confidence >= s.osd_min_confidence:
                image, rotated = image.transpose(_CLOCKWISE[osd.rotate]), osd.rotate
                _save(image, path, page.dpi)
        result = _ocr_file(params, path, page.dpi, what)
        if s.orientation == "auto" and looks_wrong(result):
            osd = _orientation(params, path, what)
            if osd is not None and osd.rotate and osd.confidence >= s.osd_min_confidence:
                turned = image.transpose(_CLOCKWISE[osd.rotate])
                _save(turned, path, page.dpi)
                second = _ocr_file(params, path, page.dpi, what)
                if second.mean_conf >= result.mean_conf:
                    result, rotated, image = second, osd.rotate, turned
        text_only = result.pdf is not None and page.onto_source_page and rotated == 0
        if result.pdf is not None and not text_only:
            result.pdf = searchable_page(image, result.pdf, page.dpi)  # the page as read, upright
        return OcrPage(page.index, result, rotated=rotated, osd=osd, dpi=page.dpi, text_only_pdf=text_only)
    finally:
        path.unlink(missing_ok=True)
