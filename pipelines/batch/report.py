"""The contact sheet: the merge step of a batch, built from the manifests under a prefix.

The workspace is the coordination mechanism: fan-out workers write outputs and a manifest per source;
this reads them back (one small read per manifest, plus each OCR text shown) and writes one static HTML
page and ``summary.json`` into a report folder of the workspace, each at its final path with one
write, ``summary.json`` last (its commit marker, as a manifest is a source's).  Every link is relative,
so the page works from the mount, from S3 behind CloudFront, or copied to a laptop with the outputs.

A source the rules route but that has no manifest is *failed* when its failure record says why
(pipelines/workspace/failure.py: a failure leaves no outputs and no manifest, only that record), else
*missing*: still in flight, or failed in a way a retry is expected to fix.
"""

from __future__ import annotations

import html
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from config.cost import CostSettings
from config.errors import MediaWorkerError
from config.layout import Layout, relative_url
from pipelines.batch import cost
from pipelines.spec import SourceInfo
from pipelines.workspace import failure
from pipelines.workspace import manifest as manifests
from pipelines.workspace.mount import Workspace, clean_relpath

if TYPE_CHECKING:
    from pipelines.core.engine import Engine

SCHEMA = "media-worker/report/v1"
INDEX = "index.html"
SUMMARY = "summary.json"
OCR_TEXT_SHOWN = 4000  # characters of each source's OCR text on the page (the whole text is linked)
_HLS = "application/vnd.apple.mpegurl"


@dataclass
class Entry:
    """One source of the report: its manifest, or why it has none."""

    source: str
    pipelines: tuple[str, ...]
    manifest_path: str
    manifest: dict[str, Any] | None = None
    failure: dict[str, Any] | None = None  # the failure record, when there is no manifest

    @property
    def status(self) -> str:
        return "ok" if self.manifest else "failed" if self.failure else "missing"

    @property
    def reason(self) -> str:
        if self.failure:
            return f"{self.failure.get('error_kind')}: {self.failure.get('error')}"
        return "no manifest: the job is still running, or failed in a way a retry should fix"

    @property
    def outputs(self) -> list[dict[str, Any]]:
        return list((self.manifest or {}).get("outputs") or [])


@dataclass
class Report:
    """What :func:`collect` found under ``prefix``."""

    prefix: str
    entries: list[Entry] = field(default_factory=list)
    not_routed: int = 0  # files under the prefix that no rule routes (or outputs of the layout)
    cost: dict[str, Any] | None = (
        None  # the manifests' cost ledgers summed and priced (pipelines/batch/cost.py)
    )

    def price(self, prices: CostSettings, cache_days: int, also: Iterable[int] = ()) -> None:
        """Sum the cost ledgers of the manifests found and price them (the report's cost section); the
        mount way also at the cache expiries in ``also``."""
        found = cost.total(e.manifest for e in self.entries if e.manifest)
        self.cost = cost.bill(found, prices, cache_days, also=also)

    def summary(self) -> dict[str, Any]:
        outputs = [o for e in self.entries for o in e.outputs]
        by_pipeline: dict[str, dict[str, int]] = {}
        for o in outputs:
            p = by_pipeline.setdefault(str(o.get("pipeline")), {"outputs": 0, "bytes": 0})
            p["outputs"] += 1
            p["bytes"] += int(o.get("size") or 0)
        seconds = sum(
            float(v) for e in self.entries for v in ((e.manifest or {}).get("timings") or {}).values()
        )
        status = Counter(e.status for e in self.entries)
        return {
            "schema": SCHEMA,
            "prefix": self.prefix,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "sources": len(self.entries),
            "ok": status["ok"],
            "failed": status["failed"],
            "missing": status["missing"],
            "not_routed": self.not_routed,
            "outputs": len(outputs),
            "output_bytes": sum(int(o.get("size") or 0) for o in outputs),
            "source_bytes": sum(
                int(((e.manifest or {}).get("source") or {}).get("size") or 0) for e in self.entries
            ),
            "processing_seconds": round(seconds, 3),
            "by_pipeline": dict(sorted(by_pipeline.items())),
            **({"cost": self.cost} if self.cost is not None else {}),
            "entries": [
                {
                    "source": e.source,
                    "status": e.status,
                    "pipelines": list((e.manifest or {}).get("pipelines") or e.pipelines),
                    "manifest": e.manifest_path if e.manifest else None,
                    "outputs": len(e.outputs),
                    "output_bytes": sum(int(o.get("size") or 0) for o in e.outputs),
                    **({} if e.manifest else {"reason": e.reason}),
                }
                for e in self.entries
            ],
        }


def default_folder(prefix: str) -> str:
    """Where ``media-worker report PREFIX`` writes when not told: ``reports/<prefix>``."""
    rel = prefix.strip("/")
    return f"reports/{rel}" if rel else "reports/_all"


def publish(engine: Engine, prefix: str, folder: str | None = None) -> dict[str, Any]:
    """The report of ``prefix``, priced, written into ``folder`` (default :func:`default_folder`): what
    ``media-worker report`` and the batch's merge step do.  Returns :func:`write`'s summary."""
    folder = folder or default_folder(prefix)
    return write(engine.ws, priced(engine, prefix, skip=[folder]), folder)


def priced(engine: Engine, prefix: str, *, skip: Sequence[str] = (), also: Iterable[int] = ()) -> Report:
    """:func:`collect` ``prefix`` as ``engine`` routes its files, then :meth:`Report.price` it with the
    engine's prices and cache expiry (and the mount way also at the expiries in ``also``)."""
    settings = engine.settings
    report = collect(engine.ws, settings.layout, prefix, engine.triage, skip=skip)
    report.price(settings.cost, settings.sync.cache_expiration_days, also=also)
    return report


def collect(ws: Workspace, layout: Layout, prefix: str, routed: Any, *, skip: Sequence[str] = ()) -> Report:
    """Walk ``prefix`` and read the manifest of each file that ``routed(relpath)`` (a triage verdict)
    says is a source; files under the folders in ``skip`` (the report's own) are left out."""
    report = Report(prefix=prefix.strip("/"))
    skips = tuple(s.rstrip("/") + "/" for s in skip)
    for rel in ws.walk(report.prefix):
        if rel.startswith(skips):
            continue
        verdict = routed(rel)
        if not verdict.run:
            report.not_routed += 1
            continue
        path = layout.manifest_path(rel)
        doc = manifests.decode(ws.read_small(path))
        if doc is not None and (doc.get("source") or {}).get("path") != rel:
            doc = None  # another source's manifest (cannot happen with a valid layout): not ours
        failed = None if doc else failure.decode(ws.read_small(layout.failure_path(rel)))
        if failed is not None and not _of_the_file_now(ws, rel, failed):
            failed = None  # about an earlier version of the file, or not ours: the new one is in flight
        report.entries.append(Entry(rel, tuple(verdict.pipelines), path, doc, failed))
    return report


def _of_the_file_now(ws: Workspace, rel: str, record: dict[str, Any]) -> bool:
    try:
        st = ws.stat_source(rel)
    except MediaWorkerError:  # gone or unreadable since the walk
        return False
    return manifests.same_version(record, SourceInfo(rel, st.st_size, st.st_mtime_ns))


def write(ws: Workspace, report: Report, folder: str) -> dict[str, Any]:
    """Write ``index.html`` then ``summary.json`` (last) into workspace ``folder``; returns the summary
    with the two paths added."""
    folder = clean_relpath(folder)
    index, summary_path = f"{folder}/{INDEX}", f"{folder}/{SUMMARY}"
    summary = report.summary()
    summary["html"], summary["summary"] = index, summary_path
    ws.write_file(index, render(ws, report, summary, index).encode("utf-8"))
    ws.write_file(summary_path, manifests.encode_document(summary))
    return summary


# -- the page ------------------------------------------------------------------------------------
_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f4f6;color:#222}
header{background:#1d2430;color:#fff;padding:16px 24px}
header h1{margin:0 0 6px;font-size:20px}
.totals{display:flex;flex-wrap:wrap;gap:18px;margin:0;padding:0;list-style:none}
.totals b{font-size:18px;display:block}
main{padding:16px 24px;display:grid;gap:14px}
.card{background:#fff;border-radius:8px;padding:12px 14px;box-shadow:0 1px 2px #0002}
.card h2{font-size:15px;margin:0 0 8px;word-break:break-all}
.card.missing{border-left:5px solid #c0392b}
.badge{font-size:12px;padding:1px 7px;border-radius:9px;background:#e8f5e9;color:#1b5e20;margin-left:6px}
.missing .badge{background:#fdecea;color:#b71c1c}
.error{font-family:ui-monospace,monospace;font-size:13px;white-space:pre-wrap;word-break:break-word}
.row{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
figure{margin:0}
figure img{display:block;max-width:100%;height:auto;border:1px solid #ddd;background:#fafafa}
figcaption,.files{font-size:12px;color:#555}
pre{white-space:pre-wrap;max-height:260px;overflow:auto;background:#f7f7f9;padding:8px;margin:0;
flex:1 1 320px;font-size:12px}
video{max-width:480px;width:100%;background:#000}
table{border-collapse:collapse;font-size:12px}
td,th{padding:2px 8px;text-align:left;border-bottom:1px solid #eee}
"""


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)  # pragma: no cover


def _pick_image(outputs: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The output set's picture for the sheet: a ``medium`` JPEG if there is one, else the image nearest
    to 640 px wide (posters and first pages are image outputs too)."""
    images = [
        o
        for o in outputs
        if str(o.get("media_type", "")).startswith("image/") and "width" in (o.get("meta") or {})
    ]
    if not images:
        return None
    return min(
        images,
        key=lambda o: (
            o.get("variant") != "medium",
            o.get("media_type") != "image/jpeg",
            abs(int(o["meta"]["width"]) - 640),
        ),
    )


def _ocr_text(ws: Workspace, outputs: Iterable[dict[str, Any]]) -> tuple[dict[str, Any], str] | None:
    for o in outputs:
        if o.get("pipeline") == "ocr" and str(o.get("media_type", "")).split(";")[0] == "text/plain":
            data = ws.read_small(str(o["path"]), limit=OCR_TEXT_SHOWN * 4 + 1)
            text = (data or b"").decode("utf-8", "replace")
            return o, text[:OCR_TEXT_SHOWN] + ("…" if len(text) > OCR_TEXT_SHOWN else "")
    return None


def render(ws: Workspace, report: Report, summary: dict[str, Any], index: str) -> str:
    """The HTML page (``index``: its own workspace path, for the relative links)."""
    esc = html.escape

    def url(rel: str) -> str:
        return esc(relative_url(rel, index))

    totals = [
        ("sources", summary["sources"]),
        ("ok", summary["ok"]),
        ("failed", summary["failed"]),
        ("missing", summary["missing"]),
        ("outputs", summary["outputs"]),
        ("output size", _size(summary["output_bytes"])),
        ("source size", _size(summary["source_bytes"])),
        ("processing", f"{summary['processing_seconds']:.1f} s"),
    ]
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>media-worker report: {esc(report.prefix or '(whole workspace)')}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<header><h1>{esc(report.prefix or '(whole workspace)')}</h1><ul class=totals>",
        *(f"<li><b>{esc(str(v))}</b>{esc(k)}</li>" for k, v in totals),
        "</ul></header><main>",
    ]
    if summary["by_pipeline"]:
        rows = "".join(
            f"<tr><td>{esc(p)}</td><td>{v['outputs']}</td><td>{_size(v['bytes'])}</td></tr>"
            for p, v in summary["by_pipeline"].items()
        )
        parts.append(
            f'<section class="card"><h2>by pipeline</h2><table><tr><th>pipeline</th><th>outputs</th>'
            f"<th>bytes</th></tr>{rows}</table></section>"
        )
    if "cost" in summary:
        parts.append(_cost_card(summary["cost"]))
    first = {"failed": 0, "missing": 1}  # what needs a look comes first; the rest in path order
    for e in sorted(report.entries, key=lambda e: first.get(e.status, 2)):
        parts.append(_card(ws, e, url))
    parts.append("</main></body></html>\n")
    return "\n".join(parts)


def _usd(v: float) -> str:
    return f"${v:.4f}" if v >= 0.01 else f"${v:.6f}"


def _cost_card(c: dict[str, Any]) -> str:
    """The storage bill of the batch: the ledger's figures and the three ways priced."""
    esc = html.escape
    io_rows = [
        (
            "read straight from S3 (>= 128 KiB reads)",
            f"{_size(c['bytes_read_direct'])} in {c['direct_read_requests']:,} reads",
        ),
        (
            "read through the cache (< 128 KiB reads)",
            f"{_size(c['bytes_read_cached'])} (metered {_size(c['bytes_read_cached_metered'])})",
        ),
        (
            "written to the mount",
            f"{_size(c['bytes_written'])} in {c['write_requests']:,} writes, {c['files_written']:,} files",
        ),
        ("kept (outputs and manifests)", _size(c["bytes_stored"])),
    ]
    ways = [
        (f"S3 Files (cache expiry {c['cache_expiration_days']} d)", c["usd"]["mount_way"]),
        ("download / upload (GET + PUT)", c["usd"]["old_way"]),
        ("EFS", c["usd"]["efs"]),
    ]
    by_days = ", ".join(f"{d} d: {_usd(v)}" for d, v in c["mount_way_usd_by_cache_days"].items())
    note = f"{c['without_ledger']} manifest(s) without a ledger left out. " if c["without_ledger"] else ""
    return (
        '<section class="card cost"><h2>storage cost (approximate)</h2><table>'
        + "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in io_rows)
        + "".join(f'<tr><td>{esc(k)}</td><td class="usd">{_usd(v)}</td></tr>' for k, v in ways)
        + f"</table><p>S3 Files by cache expiry: {esc(by_days)}. {esc(note)}{esc(c['approximate'])}.</p>"
        "</section>"
    )


def _card(ws: Workspace, e: Entry, url: Any) -> str:
    esc = html.escape
    head = f"<h2>{esc(e.source)}<span class=badge>{e.status}</span></h2>"
    if e.failure is not None:
        f = e.failure
        return (
            f'<section class="card missing failed">{head}<p class=error><b>{esc(str(f.get("error_kind")))}'
            f"</b>: {esc(str(f.get('error')))}</p><p>{esc(str(f.get('status')))} at "
            f"{esc(str(f.get('failed_at')))}; no outputs were kept. Pipelines: "
            f"{esc(', '.join(f.get('pipelines') or e.pipelines))}.</p></section>"
        )
    if e.manifest is None:
        return (
            f'<section class="card missing">{head}<p>No manifest at <code>{esc(e.manifest_path)}</code>: '
            f"the job is still running, or failed in a way a retry should fix (its outputs were removed). "
            f"Pipelines: {esc(', '.join(e.pipelines))}.</p></section>"
        )
    outs = e.outputs
    body = []
    row = []
    pic = _pick_image(outs)
    if pic is not None:
        m = pic["meta"]
        row.append(
            f'<figure><img src="{url(pic["path"])}" width="{int(m["width"])}" height="{int(m["height"])}" '
            f'alt="{esc(e.source)}" loading="lazy" style="max-width:{min(int(m["width"]), 320)}px">'
            f"<figcaption>{esc(str(pic.get('pipeline')))}/{esc(str(pic.get('variant')))} "
            f"{int(m['width'])}x{int(m['height'])}</figcaption></figure>"
        )
    ocr = _ocr_text(ws, outs)
    if ocr is not None:
        row.append(f"<pre>{esc(ocr[1])}</pre>")
    if row:
        body.append(f"<div class=row>{''.join(row)}</div>")
    videos = [o for o in outs if o.get("media_type") == "video/mp4"]
    if videos:
        poster = f' poster="{url(pic["path"])}"' if pic is not None else ""
        v = videos[0]
        body.append(f'<video controls preload="metadata" src="{url(v["path"])}"{poster}></video>')
    for a in (o for o in outs if str(o.get("media_type", "")).startswith("audio/")):
        body.append(
            f'<div><audio controls preload="metadata" src="{url(a["path"])}"></audio> '
            f"{esc(a['variant'])}</div>"
        )
    links = []
    for o in outs:
        label = f"{o.get('pipeline')}/{o.get('variant')}"
        kind = " (HLS)" if o.get("media_type") == _HLS else ""
        links.append(
            f'<a href="{url(o["path"])}">{esc(label)}.{esc(str(o["path"]).rsplit(".", 1)[-1])}</a>{kind} '
            f"{_size(int(o.get('size') or 0))}"
        )
    links.append(f'<a href="{url(e.manifest_path)}">manifest</a>')
    body.append(f"<p class=files>{' · '.join(links)}</p>")
    return f'<section class="card">{head}{"".join(body)}</section>'
