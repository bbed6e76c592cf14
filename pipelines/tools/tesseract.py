"""tesseract: find it, check its version and language packs once, run it on one page image.

The only module that builds tesseract commands.  Each run gets an explicit environment built from
settings (:func:`build_env`: ``OMP_THREAD_LIMIT``, default 1, and ``TMPDIR`` inside the job's scratch
folder), the per-page timeout and the job's deadline; :func:`pipelines.tools.runner.run` starts it and
turns failures into our errors with the tail of tesseract's stderr attached.

pytesseract is used to parse tesseract's TSV and OSD output, not to run it: its runners take neither
an environment (they always pass ``os.environ``) nor a working folder (they write temp files in the
global TMPDIR), and we need both per job.  One recognition pass writes every output at once
(``txt tsv pdf``), so a page is never OCR'd twice for two output kinds.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from config.deadline import NO_DEADLINE, Deadline
from config.errors import MissingDependencyError, PageTimeoutError
from pipelines.tools import query_cache, runner

DEBIAN_PACKAGE = "tesseract-ocr"
PROGRAM = runner.Program(
    "tesseract",
    f"install the Debian package {DEBIAN_PACKAGE} "
    "(apt-get install tesseract-ocr tesseract-ocr-eng tesseract-ocr-osd)",
)
MIN_VERSION = (4, 1)  # LSTM engine, TSV and PDF renderers, --psm 0 OSD
_VERSION_RE = re.compile(r"tesseract\s+v?(\d+)\.(\d+)(?:\.(\d+))?")
_TESSDATA_RE = re.compile(r'^List of available languages in "([^"]+)"', re.MULTILINE)
_PROBE_SECONDS = 30.0


@dataclass(frozen=True)
class Word:
    """One recognised word; ``bbox`` is (left, top, right, bottom) in pixels of the page image."""

    text: str
    conf: float
    bbox: tuple[int, int, int, int]
    block: int
    par: int
    line: int


@dataclass
class PageResult:
    """What one tesseract run produced for one page image."""

    text: str
    words: list[Word]
    width: int
    height: int
    pdf: bytes | None = None
    stderr: str = ""

    @property
    def mean_conf(self) -> float:
        """Mean word confidence (0-100), weighted by word length; 0 when no word was found."""
        total = sum(len(w.text) for w in self.words)
        return sum(w.conf * len(w.text) for w in self.words) / total if total else 0.0


@dataclass(frozen=True)
class Orientation:
    """tesseract's OSD answer: rotate the image by ``rotate`` degrees clockwise to make it upright."""

    rotate: int
    confidence: float
    script: str = ""
    raw: dict[str, object] = field(default_factory=dict, compare=False)


def debian_package(lang: str) -> str:
    """Debian package that ships a tesseract language ('chi_sim' -> 'tesseract-ocr-chi-sim')."""
    return f"tesseract-ocr-{lang.lower().replace('_', '-')}"


@functools.cache
def locate() -> str:
    """Absolute path of the tesseract executable; MissingDependencyError naming the package if absent."""
    return runner.find(PROGRAM)


@functools.cache
def version() -> str:
    """tesseract's version string, e.g. '5.3.0'; raises if it is missing or older than MIN_VERSION."""
    exe = locate()

    def ask() -> str:
        out = runner.run(
            [exe, "--version"], program=PROGRAM, timeout=_PROBE_SECONDS, env=_probe_env(), check=False
        )
        return out.stdout + out.stderr

    said = query_cache.query([exe, "--version"], ask)
    m = _VERSION_RE.search(said)
    if m is None:
        raise MissingDependencyError(f"tesseract at {exe} printed no version: {said[:200]!r}")
    found = (int(m[1]), int(m[2]))
    if found < MIN_VERSION:
        need = ".".join(map(str, MIN_VERSION))
        raise MissingDependencyError(
            f"tesseract {m[1]}.{m[2]} is too old (need >= {need}); install a newer {DEBIAN_PACKAGE}"
        )
    return ".".join(g for g in m.groups() if g is not None)


@functools.cache
def languages(tessdata_dir: str | None = None) -> frozenset[str]:
    """Language packs tesseract can load (``tesseract --list-langs``)."""
    cmd = [locate(), *_tessdata_args(tessdata_dir), "--list-langs"]

    def ask() -> str:
        out = runner.run(cmd, program=PROGRAM, timeout=_PROBE_SECONDS, env=_probe_env(), check=False)
        if out.returncode != 0:  # e.g. no tessdata folder: a missing dependency, not a failed page
            why = runner.last_line(out.tail or out.stdout)
            raise MissingDependencyError(f"tesseract --list-langs failed: {why}", detail=out.tail)
        return out.stdout

    # the answer holds for as long as the tessdata folder it names is unchanged (no pack added or removed)
    lines = query_cache.query(cmd, ask, depends_on=lambda said: _TESSDATA_RE.findall(said)).splitlines()
    return frozenset(ln.strip() for ln in lines[1:] if ln.strip() and not ln.startswith("List of"))


def check(langs: Sequence[str], *, need_osd: bool, tessdata_dir: str | None = None) -> str:
    """Raise MissingDependencyError unless tesseract and every language pack needed is installed.

    Returns tesseract's version.  The message names the Debian package of each missing language.
    """
    found = version()
    have = languages(tessdata_dir)
    wanted = [*langs, *(["osd"] if need_osd else [])]
    missing = [lang for lang in wanted if lang not in have]
    if missing:
        pkgs = " ".join(debian_package(lang) for lang in missing)
        raise MissingDependencyError(
            f"tesseract language pack(s) {', '.join(missing)} not installed (have: "
            f"{', '.join(sorted(have)) or 'none'}); install the Debian package(s) {pkgs}"
            + (" or set ocr.orientation = 'off'" if "osd" in missing else "")
        )
    return found


def build_env(*, omp_thread_limit: int, tmpdir: Path) -> dict[str, str]:
    """The whole environment tesseract runs with: nothing is inherited from ours.

    ``OMP_THREAD_LIMIT`` caps tesseract's OpenMP threads (1 is fastest when pages run in parallel:
    measured 6.7 s/page with the default vs 1.14 s with 1 on 2 cores); ``TMPDIR`` keeps anything it
    or its libraries write inside the job's scratch folder.
    """
    return {
        "OMP_THREAD_LIMIT": str(omp_thread_limit),
        "TMPDIR": str(tmpdir),
        "LC_ALL": "C",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
    }


def _probe_env() -> dict[str, str]:
    return {"OMP_THREAD_LIMIT": "1", "LC_ALL": "C", "PATH": "/usr/local/bin:/usr/bin:/bin"}


def _tessdata_args(tessdata_dir: str | None) -> list[str]:
    return ["--tessdata-dir", tessdata_dir] if tessdata_dir else []


def recognize(
    image: Path,
    *,
    langs: Sequence[str],
    dpi: int | None,
    psm: int,
    want_pdf: bool,
    timeout: float,
    env: Mapping[str, str],
    deadline: Deadline = NO_DEADLINE,
    tessdata_dir: str | None = None,
    what: str = "page",
) -> PageResult:
    """OCR one page image in one pass: text, words (TSV) and, if asked, a one-page PDF holding only
    the invisible text layer (``textonly_pdf``: the caller puts it over the page image it chooses).

    ``timeout`` is the per-page limit (PageTimeoutError); the job's ``deadline`` raises
    JobTimeoutError.  Outputs are written next to ``image`` (in the caller's scratch folder, never the
    workspace) and deleted once read.
    """
    cmd, outputs = _recognize_command(image, langs, dpi, psm, want_pdf, tessdata_dir)
    try:
        stderr = runner.run(
            cmd,
            program=PROGRAM,
            what=f"tesseract on {what}",
            deadline=deadline,
            timeout=timeout,
            timeout_error=PageTimeoutError,
            env=env,
            cwd=image.parent,
        ).stderr
        text = outputs[0].read_text(encoding="utf-8", errors="replace")
        words, size = parse_tsv(outputs[1].read_text(encoding="utf-8", errors="replace"))
        pdf = outputs[2].read_bytes() if want_pdf else None
    finally:
        for out in outputs:
            out.unlink(missing_ok=True)
    return PageResult(
        text=text.replace("\f", "").strip("\n"),
        words=words,
        width=size[0],
        height=size[1],
        pdf=pdf,
        stderr=stderr,
    )


def _recognize_command(
    image: Path, langs: Sequence[str], dpi: int | None, psm: int, want_pdf: bool, tessdata_dir: str | None
) -> tuple[list[str], list[Path]]:
    """tesseract's argv for :func:`recognize` and the files it writes: text, TSV, then the PDF if asked."""
    base = image.with_suffix("")
    renderers = ["txt", "tsv", *(["pdf"] if want_pdf else [])]
    cmd = [
        locate(),
        str(image),
        str(base),
        *_tessdata_args(tessdata_dir),
        "-l",
        "+".join(langs),
        "--psm",
        str(psm),
        *(["--dpi", str(dpi)] if dpi else []),
        *(["-c", "textonly_pdf=1"] if want_pdf else []),
        *renderers,
    ]
    return cmd, [base.with_suffix(f".{r}") for r in renderers]


def detect_orientation(
    image: Path,
    *,
    timeout: float,
    env: Mapping[str, str],
    deadline: Deadline = NO_DEADLINE,
    tessdata_dir: str | None = None,
    what: str = "page",
) -> Orientation | None:
    """Orientation and script detection (``--psm 0``); None when the page has too little text to tell."""
    from pytesseract.pytesseract import OSD_KEYS, osd_to_dict

    cmd = [locate(), str(image), "stdout", *_tessdata_args(tessdata_dir), "--psm", "0", "-l", "osd"]
    proc = runner.run(
        cmd,
        program=PROGRAM,
        what=f"tesseract orientation detection on {what}",
        deadline=deadline,
        timeout=timeout,
        timeout_error=PageTimeoutError,
        env=env,
        cwd=image.parent,
        check=False,
    )
    if proc.returncode < 0:  # killed by a signal: a failure, not an answer
        raise runner.failure(proc, f"tesseract orientation detection on {what}")
    if proc.returncode != 0:
        return None  # "Too few characters": OSD has nothing to go on; not an error
    known = [ln for ln in proc.stdout.splitlines() if ln.split(": ", 1)[0] in OSD_KEYS]
    info = osd_to_dict("\n".join(known))
    if "rotate" not in info:
        return None
    return Orientation(
        rotate=int(info["rotate"]) % 360,
        confidence=float(info.get("orientation_conf", 0.0)),
        script=str(info.get("script", "")),
        raw=info,
    )


def parse_tsv(tsv: str) -> tuple[list[Word], tuple[int, int]]:
    """Words (level 5 rows with text) and the page size from tesseract's TSV output."""
    from pytesseract.pytesseract import file_to_dict

    if not tsv.strip():
        return [], (0, 0)
    table = file_to_dict(tsv, "\t", -1)
    words: list[Word] = []
    size = (0, 0)
    for i, level in enumerate(table.get("level", [])):
        left, top = int(table["left"][i]), int(table["top"][i])
        width, height = int(table["width"][i]), int(table["height"][i])
        if level == 1:
            size = (width, height)
            continue
        text = str(table["text"][i]).strip()
        if level != 5 or not text:
            continue
        words.append(
            Word(
                text=text,
                conf=round(float(table["conf"][i]), 2),
                bbox=(left, top, left + width, top + height),
                block=int(table["block_num"][i]),
                par=int(table["par_num"][i]),
                line=int(table["line_num"][i]),
            )
        )
    return words, size
