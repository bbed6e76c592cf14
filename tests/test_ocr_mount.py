"""The mount and /tmp contract for OCR, seen from the kernel (strace -f) and from the TMPDIR we set.

* each source is opened once and read with >= 1 MiB read() calls, never re-opened per page; tesseract
  only ever opens page images in the job's scratch folder;
* nothing is renamed on the workspace;
* tesseract runs with OMP_THREAD_LIMIT=1 and TMPDIR inside the scratch folder;
* TMPDIR holds at most the pages in flight while a job runs, and nothing once it ends, failed jobs
  included.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import REPO, SAMPLES, assert_only_failure_record, cli_env, json_lines
from PIL import Image
from strace_support import MIB, OPEN, READ, RENAME

EXECVE = re.compile(r'^execve\("(?P<exe>[^"]*)", \[(?P<argv>.*?)\], \[(?P<env>.*)\]\) = 0')
PAGE_FILE = re.compile(r"page-\d+\.(?:png|jpg)$")


def run_traced(tmp: Path, tmpdir: Path, *args: str, **env: str) -> tuple[int, list[str], str]:
    """The CLI under strace -f (one file per process), with TMPDIR set; returns (rc, lines, stdout)."""
    if shutil.which("strace") is None:
        pytest.fail("strace is not installed (Debian package strace; `make test` installs it)")
    out = tmp / "trace"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    cmd = [
        "strace", "-f", "-ff", "-qq", "-y", "-v", "-s", "200", "-o", str(out / "t"),
        "-e", "trace=openat,read,pread64,rename,renameat,renameat2,execve",
        sys.executable, "-m", "handlers.cli", *args,
    ]  # fmt: skip
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        env=cli_env(TMPDIR=str(tmpdir), **env),
    )
    lines = []
    for f in sorted(out.iterdir()):
        lines += f.read_text(errors="replace").splitlines()
    return proc.returncode, lines, proc.stdout


class TmpWatcher:
    """Samples TMPDIR while the worker runs: the most page images present at once, and every name."""

    def __init__(self, root: Path) -> None:
        self.root, self.most_pages, self.names = root, 0, set[str]()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                files = [p for p in self.root.rglob("*") if p.is_file()]
            except OSError:  # a file vanished mid-walk
                continue
            self.names.update(p.name for p in files)
            self.most_pages = max(self.most_pages, sum(1 for p in files if PAGE_FILE.search(p.name)))
            self._stop.wait(0.005)

    def __enter__(self) -> TmpWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def sources(workspace: Path) -> dict[str, int]:
    (workspace / "in").mkdir()
    shutil.copy(SAMPLES / "scan.pdf", workspace / "in/scan.pdf")
    shutil.copy(SAMPLES / "document.pdf", workspace / "in/document.pdf")
    # an uncompressed 3-page TIFF of ~8 MiB, so reads span several 1 MiB blocks
    page = Image.open(SAMPLES / "page.png").convert("L")
    page.save(workspace / "in/pages.tif", save_all=True, append_images=[page, page])
    return {p.relative_to(workspace).as_posix(): p.stat().st_size for p in (workspace / "in").iterdir()}


def test_ocr_reads_once_in_1mib_blocks_and_keeps_tmp_clean(
    workspace: Path, tmp_path: Path, sources: dict[str, int]
) -> None:
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    assert max(sources.values()) > 3 * MIB
    with TmpWatcher(tmpdir) as watch:
        rc, lines, stdout = run_traced(
            tmp_path, tmpdir, "run", "-w", str(workspace), "--json", "-j", "1",
            "-p", "ocr", "-p", "thumbnails", "in",
            MEDIA_WORKER_OCR__OUTPUTS='["txt","json","pdf"]', MEDIA_WORKER_OCR__WORKERS="2",
        )  # fmt: skip
    assert rc == 0, stdout
    assert [r["status"] for r in json_lines(stdout)] == ["ok", "ok", "ok"]
    root = str(workspace)
    src_paths = {f"{root}/{rel}": size for rel, size in sources.items()}
    opens = dict.fromkeys(src_paths, 0)
    read_bytes = dict.fromkeys(src_paths, 0)
    tesseract_runs = []
    for line in lines:
        if (m := OPEN.match(line)) and m["path"] in src_paths:
            opens[m["path"]] += 1
        elif (m := READ.match(line)) and m["path"] in src_paths and int(m["ret"]) > 0:
            assert int(m["count"]) >= MIB, line
            read_bytes[m["path"]] += int(m["ret"])
        elif RENAME.match(line) and root in line:
            pytest.fail(f"rename on the workspace: {line}")
        elif (m := EXECVE.match(line)) and m["exe"].endswith("/tesseract"):
            tesseract_runs.append(m)
    # every source opened once and read whole once, by both pipelines together
    assert opens == dict.fromkeys(src_paths, 1)
    assert read_bytes == src_paths
    # tesseract: OMP_THREAD_LIMIT=1, TMPDIR inside the job's scratch folder, page images only
    ocr_runs = [m for m in tesseract_runs if "--list-langs" not in m["argv"] and "--version" not in m["argv"]]
    assert len(ocr_runs) >= 4  # scan.pdf's page and the TIFF's three (document.pdf has a text layer)
    for m in ocr_runs:
        assert '"OMP_THREAD_LIMIT=1"' in m["env"], m["env"]
        job = rf"{re.escape(str(tmpdir))}/media-worker-scratch-[0-9]+/job-[^/\"]+"
        assert re.search(rf'"TMPDIR={job}"', m["env"]), m["env"]
        image = m["argv"].split(", ")[1].strip('"')
        assert image.startswith(str(tmpdir)) and PAGE_FILE.search(image), m["argv"]
    # at most the pages in flight (2 OCR workers) were in TMPDIR at once; nothing is left behind
    assert 1 <= watch.most_pages <= 2, watch.most_pages
    assert not [n for n in watch.names if n.startswith(("scan", "document", "pages"))]
    assert list(tmpdir.iterdir()) == []


def test_failed_ocr_job_leaves_tmp_clean(workspace: Path, tmp_path: Path) -> None:
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    (workspace / "in").mkdir()
    shutil.copy(SAMPLES / "scan.pdf", workspace / "in/scan.pdf")
    proc = subprocess.run(
        [sys.executable, "-m", "handlers.cli", "run", "-w", str(workspace), "--json", "-p", "ocr", "in"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env=cli_env(
            TMPDIR=str(tmpdir),
            MEDIA_WORKER_OCR__PAGE_TIMEOUT_SECONDS="0.05",
            MEDIA_WORKER_OCR__OUTPUTS='["txt","json","pdf"]',
        ),
    )
    assert proc.returncode == 1
    (res,) = json_lines(proc.stdout)
    assert res["status"] == "failed" and "took longer than" in res["error"]
    assert list(tmpdir.iterdir()) == []
    assert_only_failure_record(workspace, "in/scan.pdf", res["error"])
