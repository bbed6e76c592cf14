"""The contact sheet (media-worker report / {"report": PREFIX}): built from the manifests of a real run over
the sample media plus a broken photo, checked as files (every link resolves inside the workspace, every
picture decodes at the size the page says, the OCR text is on the page) and in Debian's headless chromium
(every <img> decoded, every <video>/<audio> reached its metadata, no error on the page)."""

from __future__ import annotations

import html
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from conftest import SAMPLES, run_cli
from lambda_support import FakeContext, configure
from PIL import Image

SOURCES = ("clip.mp4", "document.pdf", "photo.jpg", "tone.m4a", "logo.png")


class Links(HTMLParser):
    """Every src/href on the page, with the tag's attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace after one CLI run: the sample media and a photo that is not a JPEG at all; then an
    upload the run did not see (in flight)."""
    ws = tmp_path_factory.mktemp("ws")
    (ws / "in").mkdir()
    for name in SOURCES:
        shutil.copy(SAMPLES / name, ws / "in" / name)
    (ws / "in" / "broken photo.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG" * 20)
    res = run_cli("run", "-w", str(ws), "in", "--json")
    assert res.returncode == 1, res.stderr  # the broken photo failed; the rest went on
    shutil.copy(SAMPLES / "logo.png", ws / "in" / "late.png")
    return ws


def files(ws: Path) -> set[str]:
    return {p.relative_to(ws).as_posix() for p in ws.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def report(batch: Path) -> dict[str, Any]:
    before = files(batch)
    res = run_cli("report", "in", "-w", str(batch), "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    # the report wrote its two files and nothing else
    assert files(batch) - before == {"reports/in/index.html", "reports/in/summary.json"}
    return summary


def test_summary_counts_the_manifests(batch: Path, report: dict[str, Any]) -> None:
    manifests = [json.loads(p.read_text()) for p in (batch / "processed/_manifests/in").glob("*.json")]
    assert report["sources"] == len(SOURCES) + 2 and report["ok"] == len(manifests) == len(SOURCES)
    assert (report["failed"], report["missing"]) == (1, 1)
    (failed,) = [e for e in report["entries"] if e["status"] == "failed"]
    record = json.loads((batch / "processed/_manifests/in/broken photo.jpg.json.failed").read_text())
    assert failed["source"] == "in/broken photo.jpg"
    assert failed["reason"] == f"bad_input: {record['error']}" and "cannot read image" in record["error"]
    (missing,) = [e for e in report["entries"] if e["status"] == "missing"]
    assert missing["source"] == "in/late.png" and "no manifest" in missing["reason"]
    outputs = [o for m in manifests for o in m["outputs"]]
    assert report["outputs"] == len(outputs)
    assert (
        report["output_bytes"]
        == sum(o["size"] for o in outputs)
        == sum((batch / o["path"]).stat().st_size for o in outputs)
    )
    assert sum(p["outputs"] for p in report["by_pipeline"].values()) == len(outputs)
    on_disk = json.loads((batch / report["summary"]).read_text())
    assert on_disk["entries"] == report["entries"] and on_disk["schema"] == "media-worker/report/v1"
    # the bill: the manifests' cost ledgers summed (the failed photo has none), priced three ways
    cost = report["cost"]
    assert cost["sources"] == len(manifests) and cost["without_ledger"] == 0
    for key in ("bytes_written", "write_requests", "read_requests", "bytes_stored"):
        assert cost[key] == sum(m["io"][key] for m in manifests), key
    assert cost["usd"]["mount_way"] == pytest.approx(sum(m["usd"]["mount_way"] for m in manifests), rel=1e-6)
    page = (batch / report["html"]).read_text()
    assert "storage cost (approximate)" in page and f"${cost['usd']['old_way']:.6f}" in page


def test_every_link_is_relative_and_resolves(batch: Path, report: dict[str, Any]) -> None:
    index = batch / report["html"]
    page = index.read_text()
    parser = Links()
    parser.feed(page)
    seen = {"img": 0, "video": 0, "audio": 0, "a": 0}
    for tag, attrs in parser.tags:
        url = attrs.get("src") or attrs.get("href") or attrs.get("poster")
        if tag not in seen or not url:
            continue
        seen[tag] += 1
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc and not url.startswith("/"), url
        target = (index.parent / unquote(parts.path)).resolve()
        assert target.is_file() and batch.resolve() in target.parents, url
        if tag == "img":  # the page's size is the picture's decoded size
            with Image.open(target) as im:
                im.load()
                assert (im.width, im.height) == (int(attrs["width"]), int(attrs["height"]))
    # a picture per processed source with pictures (clip poster, document page, photo, logo), the clip
    # as a video, the tone as audio players, every output and manifest linked
    assert seen["img"] == 4 and seen["video"] == 1 and seen["audio"] >= 1
    assert seen["a"] >= report["outputs"] + report["ok"]
    expected = (SAMPLES / "document.txt").read_text().split()
    assert sum(w in page for w in expected[:20]) >= 15  # the OCR text is beside the page's thumbnail
    assert "broken photo.jpg" in page and html.escape(failed_error(batch)) in page  # why it failed
    assert "late.png" in page and "No manifest" in page
    # what needs a look comes first: failed, then missing, then the processed sources
    assert page.index("in/broken photo.jpg<") < page.index("in/late.png<") < page.index("in/clip.mp4<")


def failed_error(batch: Path) -> str:
    error: str = json.loads((batch / "processed/_manifests/in/broken photo.jpg.json.failed").read_text())[
        "error"
    ]
    return error


def test_a_failure_record_is_history_once_the_file_changes_and_gone_once_it_succeeds(workspace: Path) -> None:
    """A record is about the version that failed: replaced by a new upload it no longer counts (the new
    version is in flight), and the manifest that the new version gets removes it."""
    (workspace / "in").mkdir()
    (workspace / "in/p.png").write_bytes(b"not a PNG at all")

    def entry() -> dict[str, Any]:
        res = run_cli("report", "in", "-w", str(workspace), "--json")
        assert res.returncode == 0, res.stderr
        (e,) = json.loads(res.stdout)["entries"]
        return e

    assert run_cli("run", "-w", str(workspace), "in").returncode == 1
    assert entry()["status"] == "failed"
    shutil.copy(SAMPLES / "logo.png", workspace / "in/p.png")  # a new upload, not processed yet
    assert entry()["status"] == "missing"
    assert run_cli("run", "-w", str(workspace), "in").returncode == 0
    assert entry()["status"] == "ok"
    assert not (workspace / "processed/_manifests/in/p.png.json.failed").exists()


PROBE = "<script>" + (Path(__file__).parent / "fixtures" / "report_probe.js").read_text() + "</script>"


def browse(index: Path) -> dict[str, Any]:
    """Open a copy of the page with PROBE in its <head> (same folder, so the same relative links) in
    headless chromium; returns what the probe saw once every media element reached its metadata."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed (Debian package chromium; `make test` installs it)")
    probe = index.with_name("probe-test.html")
    probe.write_text(index.read_text().replace("</title>", "</title>" + PROBE, 1))
    try:
        res = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
             "--virtual-time-budget=15000", "--dump-dom", probe.as_uri()],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        probe.unlink()
    parser = _ProbeResult()
    parser.feed(res.stdout)
    assert parser.result, f"the page did not finish loading in chromium: {res.stderr[-2000:]}"
    return json.loads(parser.result)


class _ProbeResult(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self._inside = False
        self.result = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._inside = tag == "pre" and ("id", "probe-result") in attrs

    def handle_data(self, data: str) -> None:
        if self._inside:
            self.result += data


def test_the_page_in_a_real_browser(batch: Path, report: dict[str, Any]) -> None:
    seen = browse(batch / report["html"])
    assert len(seen["imgs"]) == 4
    for src, w, h, want_w, want_h in seen["imgs"]:
        assert (w, h) == (want_w, want_h) and w > 0, src  # decoded, at the size the page says
    assert len(seen["media"]) >= 2
    for src, ready, duration, error in seen["media"]:
        assert ready >= 1 and error == 0 and duration > 2.5, src  # metadata reached: ~3 s clips
    assert seen["errors"] == []


def test_a_missing_output_is_seen_by_the_browser(batch: Path, report: dict[str, Any], tmp_path: Path) -> None:
    """The browser check can fail: hide one picture and the probe reports it undecoded."""
    pic = batch / "processed/thumbnails/medium/in/photo.jpg.jpg"
    hidden = tmp_path / "hidden.jpg"
    shutil.move(pic, hidden)
    try:
        seen = browse(batch / report["html"])
    finally:
        shutil.move(hidden, pic)
    bad = [src for src, w, *_ in seen["imgs"] if w == 0]
    assert bad == ["../../processed/thumbnails/medium/in/photo.jpg.jpg"] and seen["errors"]


def test_report_event(batch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """{"report": PREFIX} through the one Lambda handler: the same files, the summary without its list."""
    from handlers import lambda_function

    configure(monkeypatch, batch)
    res = lambda_function.handler({"report": "in", "output": "reports/from-lambda"}, FakeContext())
    assert res["html"] == "reports/from-lambda/index.html" and "entries" not in res
    assert (res["sources"], res["ok"], res["failed"], res["missing"]) == (
        len(SOURCES) + 2,
        len(SOURCES),
        1,
        1,
    )
    written = json.loads((batch / "reports/from-lambda/summary.json").read_text())
    assert {k: v for k, v in written.items() if k not in ("entries", "created_at")} == {
        k: v for k, v in res.items() if k != "created_at"
    }
    assert (batch / "reports/from-lambda/index.html").stat().st_size > 1000
