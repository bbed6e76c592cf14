"""The ``ocr`` pipeline: text of images and PDFs, text layer first, OCR only where needed.

Per source, one output set (each selectable in ``ocr.outputs``):

* ``text`` (.txt): the text, pages separated by a form feed, each page ending with a newline;
* ``words`` (.json): per page its number, method (``text-layer`` | ``ocr``), size, text and words
  with confidence and box (PDF: points, top-left origin; images: pixels);
* ``searchable`` (.pdf): page images with tesseract's invisible text layer; PDF pages that already
  had a usable text layer are copied as they are (turned upright when their text ran sideways).

The source is read once (``job.read_source()``); pages are decoded or rendered one at a time and
OCR'd in parallel (see :mod:`pipelines.builtin.ocr.pages`); scratch holds only the pages in flight.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from config.errors import BadInputError, MediaWorkerError
from config.logs import get_logger
from config.ocr import OUTPUTS
from config.settings import Settings
from pipelines.media.renditions import IMAGE_INPUTS  # one list of the images we decode
from pipelines.spec import Job, Pipeline, PlannedOutput, SourceInfo

PDF_INPUTS = {"pdf": "application/pdf"}
PDF_SUFFIXES = frozenset(PDF_INPUTS)
if TYPE_CHECKING:
    from PIL import Image

    from pipelines.builtin.ocr.pages import OcrPage, OcrParams, PageImage
    from pipelines.media.pdf import PdfDocument, TextLayer
    from pipelines.tools.tesseract import Word

log = get_logger(__name__)
JSON_FORMAT = "media-worker-ocr/1"
# tesseract OSD script -> language packs that read it (a page in another script gets a warning)
SCRIPT_LANGUAGES: dict[str, frozenset[str]] = {
    "Han": frozenset({"chi_sim", "chi_tra", "chi_sim_vert", "chi_tra_vert", "jpn", "jpn_vert", "kor"}),
    "Japanese": frozenset({"jpn", "jpn_vert"}),
    "Hangul": frozenset({"kor", "kor_vert"}),
    "Cyrillic": frozenset({"rus", "ukr", "bul", "bel", "srp", "mkd", "kaz", "kir", "mon", "tgk", "uzb_cyrl"}),
    "Arabic": frozenset({"ara", "fas", "urd", "pus", "snd", "uig"}),
    "Greek": frozenset({"ell", "grc"}),
    "Hebrew": frozenset({"heb", "yid"}),
    "Devanagari": frozenset({"hin", "mar", "nep", "san"}),
    "Thai": frozenset({"tha"}),
}


@dataclass
class PageOut:
    """One page of the result."""

    number: int  # 1-based
    method: Literal["text-layer", "ocr", "left-out"]  # left-out: over a limit or unrenderable, see warnings
    text: str
    words: list[dict[str, Any]]
    width: float
    height: float
    unit: Literal["pt", "px"]
    rotation: int = 0  # degrees clockwise the page was turned to read upright
    dpi: int | None = None  # resolution the page was OCR'd at (when known)
    confidence: float | None = None
    script: str | None = None  # from tesseract OSD, when it ran for this page
    warnings: list[str] = field(default_factory=list)
    pdf: bytes | None = field(default=None, repr=False)
    pdf_text_only: bool = False  # ``pdf`` is a text layer to lay over the source's own page
    json_text: str = field(default="", repr=False)  # to_json() serialised, once :meth:`compact` ran

    def compact(self) -> PageOut:
        """This page with its words kept only as their JSON text (~15x smaller than the dicts: a 500-page
        scan's words would otherwise stay in memory as ~250,000 dicts until the outputs are written)."""
        doc = json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":"))
        return dataclasses.replace(self, words=[], json_text=doc)

    def to_json(self) -> dict[str, Any]:
        return {
            "page": self.number,
            "method": self.method,
            "width": self.width,
            "height": self.height,
            "unit": self.unit,
            "dpi": self.dpi,
            "rotation": self.rotation,
            "confidence": self.confidence,
            "script": self.script,
            "warnings": self.warnings,
            "text": self.text,
            "words": self.words,
        }


class OcrPipeline(Pipeline):
    """Text from images (tesseract) and PDFs (text layer via pdfplumber, else pypdfium2 + tesseract)."""

    name: ClassVar[str] = "ocr"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = (
        "OCR (tesseract) and PDF text layers (pdfplumber): txt, words JSON, searchable PDF"
    )
    warm_modules: ClassVar[tuple[str, ...]] = (
        "pipelines.builtin.ocr.pages",
        "pipelines.media.pdf",
        "pipelines.media.imaging",
    )

    inputs: ClassVar[dict[str, str]] = {**PDF_INPUTS, **IMAGE_INPUTS}
    routed: ClassVar[frozenset[str]] = PDF_SUFFIXES  # images only where a rule says so (e.g. scans/**)
    settings_section: ClassVar[str] = "ocr"

    def accepts(self, source: SourceInfo, settings: Settings) -> bool | str:
        ok = source.suffix in self.inputs
        return ok or f"not a PDF or an image tesseract reads (.{source.suffix})"

    def check(self, settings: Settings) -> None:
        from pipelines.tools import tesseract

        s = settings.ocr
        tesseract.check(s.languages, need_osd=s.orientation != "off", tessdata_dir=s.tessdata_dir)

    def tool_versions(self) -> dict[str, str]:
        from importlib.metadata import version

        from pipelines.tools import tesseract

        out = {"tesseract": tesseract.version()}
        for dist in ("pdfplumber", "pypdfium2", "pypdf"):
            out[dist] = version(dist)
        return out

    def settings_fingerprint(self, settings: Settings) -> Any:
        ocr = settings.ocr.model_dump(mode="json", exclude={"password", "workers", "tessdata_dir"})
        return {"ocr": ocr, "max_image_pixels": settings.limits.max_image_pixels}

    def plan(self, source: SourceInfo, settings: Settings) -> list[PlannedOutput]:
        return [PlannedOutput(*OUTPUTS[o]) for o in settings.ocr.outputs]

    def run(self, job: Job) -> None:
        data = job.read_source()
        job.deadline.check("OCR")
        pages = _run_pdf(job, data) if job.source.suffix in PDF_SUFFIXES else _run_image(job, data)
        job.deadline.check("writing OCR outputs")
        self._write(job, pages, data)

    def _write(self, job: Job, pages: list[PageOut], data: bytes) -> None:
        s = job.settings.ocr
        meta: dict[str, Any] = {
            "pages": len(pages),
            "ocr_pages": sum(p.method == "ocr" for p in pages),
            "text_layer_pages": sum(p.method == "text-layer" for p in pages),
        }
        if left_out := [p.number for p in pages if p.method == "left-out"]:
            meta["left_out_pages"] = left_out
        if "txt" in s.outputs:
            job.write_output(self.name, "text", document_text(pages).encode("utf-8"), ext="txt", **meta)
        if "json" in s.outputs:
            head = {"format": JSON_FORMAT, "source": job.source.relpath, "languages": s.languages}
            text = json.dumps(head, ensure_ascii=False, separators=(",", ":"))[:-1]
            body = ",".join(p.json_text or json.dumps(p.to_json(), ensure_ascii=False, separators=(",", ":"))
                            for p in pages)  # fmt: skip
            blob = f'{text},"pages":[{body}]}}'.encode()
            del body
            job.write_output(self.name, "words", blob, ext="json", **meta)
        if "pdf" in s.outputs:
            password = s.password.get_secret_value() if s.password else None
            blob = merge_searchable(pages, data if job.source.suffix in PDF_SUFFIXES else None, password)
            job.write_output(self.name, "searchable", blob, ext="pdf", **meta)


MIN_SCAN_DPI = 150


def page_dpi(configured: int, image_dpi: float | None) -> int:
    """Render resolution for OCR: a scanned page at its scan's own resolution (more pixels than the
    scanner made add nothing but tesseract time), never above ``ocr.dpi`` nor below 150."""
    if image_dpi is None:
        return configured
    return min(configured, max(MIN_SCAN_DPI, round(image_dpi)))


def document_text(pages: list[PageOut]) -> str:
    """Pages joined by form feeds, each ending with a newline (pdftotext's convention)."""
    return "\f".join(p.text.rstrip("\n") + "\n" for p in pages)


# ---------------------------------------------------------------------------------------------- runs


def _ocr_params(job: Job) -> OcrParams:
    from pipelines.builtin.ocr.pages import OcrParams

    return OcrParams(
        settings=job.settings.ocr,
        scratch=job.scratch_dir,
        want_pdf="pdf" in job.settings.ocr.outputs,
        deadline=job.deadline,
    )


def _workers(job: Job) -> int:
    from pipelines.tools.host import available_cpus

    return job.settings.ocr.workers or available_cpus()


def _script_warnings(script: str | None, languages: list[str]) -> list[str]:
    """A warning when OSD saw a script none of the configured languages reads (e.g. Han with eng)."""
    wanted = SCRIPT_LANGUAGES.get(script or "")
    if not wanted or wanted & set(languages) or f"script/{script}" in languages:
        return []
    return [
        f"OSD detected {script} script, which none of the configured languages ({', '.join(languages)}) "
        f"reads: the text is likely wrong; install e.g. tesseract-ocr-{sorted(wanted)[0].replace('_', '-')} "
        f"and add {sorted(wanted)[0]!r} to ocr.languages"
    ]


def _from_ocr(page: OcrPage, *, unit: Literal["pt", "px"], scale: float, languages: list[str]) -> PageOut:
    r = page.result
    script = page.osd.script if page.osd is not None else None
    return PageOut(
        page.index + 1,
        "ocr",
        r.text,
        _ocr_words(r.words, scale),
        round(r.width * scale, 2),
        round(r.height * scale, 2),
        unit,
        rotation=page.rotated,
        dpi=page.dpi,
        confidence=round(r.mean_conf, 2),
        script=script,
        warnings=_script_warnings(script, languages),
        pdf=r.pdf,
        pdf_text_only=page.text_only_pdf,
    )


def _ocr_words(words: list[Word], scale: float) -> list[dict[str, Any]]:
    return [
        {
            "text": w.text,
            "conf": w.conf,
            "bbox": [round(v * scale, 2) for v in w.bbox] if scale != 1 else list(w.bbox),
            "block": w.block,
            "par": w.par,
            "line": w.line,
        }
        for w in words
    ]


def _run_pdf(job: Job, data: bytes) -> list[PageOut]:
    from pipelines.builtin.ocr.pages import PageImage, ocr_pages
    from pipelines.media.pdf import PdfDocument, has_usable_text

    s = job.settings.ocr
    password = s.password.get_secret_value() if s.password else None
    want_pdf = "pdf" in s.outputs
    out: dict[int, PageOut] = {}
    with PdfDocument(data, password=password) as doc:
        n = doc.n_pages
        if n > s.max_pages:
            raise BadInputError(f"the PDF has {n} pages, over ocr.max_pages = {s.max_pages}")
        done = 0
        left_out: list[str] = []  # why each page left out was

        def progress(message: str) -> None:
            nonlocal done
            done += 1
            job.report_progress("ocr", done / n, message)

        def pages_needing_ocr() -> Iterator[PageImage]:
            for i in range(n):
                job.deadline.check(f"page {i + 1}")
                layer = None if s.force_ocr else _text_layer_or_none(doc, i)
                if layer is not None and has_usable_text(layer, s.text_layer_min_chars):
                    out[i] = PageOut(
                        i + 1,
                        "text-layer",
                        layer.text,
                        layer.words,
                        layer.width,
                        layer.height,
                        "pt",
                        rotation=layer.turned,
                    ).compact()
                    progress(f"page {i + 1}/{n}: text layer")
                    continue
                dpi = page_dpi(s.dpi, layer.image_dpi if layer is not None else None)
                try:
                    image = doc.render(i, scale=dpi / 72, max_pixels=s.max_page_pixels)
                except BadInputError as exc:  # over ocr.max_page_pixels, or unrenderable: this page only
                    out[i] = _left_out_page(doc, i, str(exc))
                    left_out.append(str(exc))
                    job.leave_out("ocr", str(exc), page=i + 1)
                    progress(f"page {i + 1}/{n}: left out")
                    continue
                yield PageImage(i, image, dpi, onto_source_page=want_pdf and doc.rotation(i) == 0)

        def record(page: OcrPage) -> None:
            out[page.index] = _from_ocr(
                page, unit="pt", scale=72 / (page.dpi or s.dpi), languages=s.languages
            ).compact()
            progress(f"page {page.index + 1}/{n}: OCR")

        ocr_pages(pages_needing_ocr(), _ocr_params(job), workers=_workers(job), on_done=record)
    if len(left_out) == n:  # nothing of the document could be read
        raise BadInputError(left_out[0] if n == 1 else f"every page was left out: {'; '.join(left_out)}")
    return [out[i] for i in range(n)]


def _left_out_page(doc: PdfDocument, index: int, reason: str) -> PageOut:
    """A page OCR could not read (over a limit): a marker as its text; the searchable PDF copies the
    source's page as it is."""
    try:
        width, height = doc.page_size(index)
    except BadInputError:
        width = height = 0.0
    marker = f"[page {index + 1} left out: {reason}]"
    return PageOut(
        index + 1, "left-out", marker, [], round(width, 2), round(height, 2), "pt", warnings=[reason]
    )


def _text_layer_or_none(doc: PdfDocument, index: int) -> TextLayer | None:
    """The page's text layer; None (so the page is OCR'd) when pdfminer cannot parse its content."""
    try:
        return doc.text_layer(index)
    except BadInputError as exc:
        log.warning("%s; OCR'ing the page instead", exc)
        return None


def _run_image(job: Job, data: bytes) -> list[PageOut]:
    from pipelines.builtin.ocr.pages import ocr_pages

    s = job.settings.ocr
    out: dict[int, PageOut] = {}
    n, frames = _image_pages(
        data,
        max_pixels=job.settings.limits.max_image_pixels,
        max_pages=s.max_pages,
        max_page_pixels=s.max_page_pixels,
        suffix=job.source.suffix,
    )

    def pages() -> Iterator[PageImage]:
        for page in frames:
            job.deadline.check(f"page {page.index + 1}")
            yield page

    def record(page: OcrPage) -> None:
        out[page.index] = _from_ocr(page, unit="px", scale=1, languages=s.languages).compact()
        job.report_progress("ocr", len(out) / n, f"page {page.index + 1}/{n}")

    ocr_pages(pages(), _ocr_params(job), workers=_workers(job), on_done=record)
    return [out[i] for i in range(n)]


def _image_pages(
    data: bytes, *, max_pixels: int, max_pages: int, max_page_pixels: int, suffix: str = ""
) -> tuple[int, Iterator[PageImage]]:
    """The page count (every page of a multi-page TIFF; other formats: the first frame) and the pages,
    decoded one at a time as mode 1, L or RGB."""
    from pipelines.media.imaging import open_image

    im = open_image(data, max_pixels=min(max_pixels, max_page_pixels), suffix=suffix)
    n = getattr(im, "n_frames", 1) if im.format == "TIFF" else 1  # GIF/WebP frames are animation, not pages
    if n > max_pages:
        raise BadInputError(f"the image has {n} pages, over ocr.max_pages = {max_pages}")
    return n, _decode_pages(im, n, max_page_pixels)


def _decode_pages(im: Image.Image, n: int, max_page_pixels: int) -> Iterator[PageImage]:
    from PIL import ImageSequence

    from pipelines.builtin.ocr.pages import PageImage
    from pipelines.media.imaging import decode_frame, flatten

    dpi = _dpi(im.info.get("dpi"))
    for i, frame in enumerate(ImageSequence.Iterator(im)):
        if i >= n:
            break
        w, h = frame.size
        if w * h > max_page_pixels:
            raise BadInputError(
                f"page {i + 1} is {w}x{h} pixels, over ocr.max_page_pixels = {max_page_pixels}"
            )
        page = decode_frame(frame, f"decode page {i + 1}", orient=i == 0 and im.format in ("JPEG", "MPO"))
        if page.mode != "1" or page.has_transparency_data:  # bilevel scans stay 1-bit (small PDFs)
            page = flatten(page, (255, 255, 255))
        yield PageImage(i, page, _dpi(frame.info.get("dpi")) or dpi)


def _dpi(value: Any) -> int | None:
    """A usable resolution from Pillow's info['dpi'] (missing, 0, 1 or absurd values mean unknown)."""
    try:
        d = round(float(value[0]))
    except (TypeError, ValueError, IndexError):
        return None
    return d if 70 <= d <= 2400 else None


# ----------------------------------------------------------------------------------- searchable PDF


def merge_searchable(pages: list[PageOut], source_pdf: bytes | None, password: str | None) -> bytes:
    """One PDF from the pages' parts.

    * text-layer pages: the source's own page (turned upright if its text ran sideways);
    * OCR'd pages of unrotated PDF pages: the source's own page with tesseract's invisible text laid
      over it (the scan keeps its original image and size);
    * other OCR'd pages (images, /Rotate pages, pages OSD turned): the page image under the text.
    """
    from pypdf import PdfReader, PdfWriter, Transformation
    from pypdf.errors import PyPdfError

    writer = PdfWriter()
    reader: PdfReader | None = None
    for p in pages:
        try:
            if p.pdf is not None and not p.pdf_text_only:
                writer.add_page(PdfReader(io.BytesIO(p.pdf)).pages[0])
                continue
            if source_pdf is None:
                raise MediaWorkerError(f"page {p.number}: no page PDF to merge")
            if reader is None:
                reader = PdfReader(io.BytesIO(source_pdf))
                if reader.is_encrypted:
                    reader.decrypt(password or "")
            added = writer.add_page(reader.pages[p.number - 1])
            if p.pdf is not None:  # text-only layer in displayed-page points: onto the crop box
                text = PdfReader(io.BytesIO(p.pdf)).pages[0]
                x0, y0, x1, y1 = (float(v) for v in added.cropbox)
                left, bottom = min(x0, x1), min(y0, y1)  # corners may come in any order (inverted boxes)
                sx = abs(x1 - x0) / float(text.mediabox.width)
                sy = abs(y1 - y0) / float(text.mediabox.height)
                added.merge_transformed_page(text, Transformation().scale(sx, sy).translate(left, bottom))
            elif p.rotation:
                added.rotate(p.rotation)
        except (PyPdfError, ValueError, KeyError, TypeError) as exc:
            raise BadInputError(f"page {p.number}: cannot be copied into the searchable PDF: {exc}") from None
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()
