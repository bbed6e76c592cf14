"""The engine: one source in, its outputs and its manifest out.

For each source: choose pipelines (rules or an explicit list), skip it if its manifest says it is
already done for this config (without opening it), plan and validate every output path, run the
pipelines, and write the manifest last.  If anything fails, the outputs written so far (by the
worker or by a tool through :meth:`Job.output_path`) are deleted here, and only here, and no manifest
is written.  The engine raises nothing for a per-file problem: it returns a
:class:`SourceResult`, so a batch goes on.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config.deadline import Deadline
from config.errors import (
    BadInputError,
    ConfigError,
    JobTimeoutError,
    MediaWorkerError,
    MissingDependencyError,
    RetryableError,
    ScratchFullError,
    ToolFailedError,
    WorkspaceFullError,
)
from config.layout import relative_url
from config.logs import get_logger
from config.rules import Rule, select_pipelines
from config.settings import Settings
from config.version import DISTRIBUTION, version
from pipelines.core.registry import Registry, load_registry
from pipelines.core.scratch import Scratch, sweep
from pipelines.core.triage import Verdict, triage
from pipelines.ledger import StorageIO
from pipelines.result import SourceResult
from pipelines.spec import OutputRecord, Pipeline, PlannedOutput, SourceInfo
from pipelines.workspace import failure, manifest
from pipelines.workspace.lease import Lease
from pipelines.workspace.mount import OutputFile, Workspace, clean_relpath

log = get_logger(__name__)
ProgressCallback = Callable[[str, str, float, str], None]  # (source, pipeline, fraction 0-1, message)


@dataclass(frozen=True)
class SourceMeta:
    """What the caller knows about a source from outside the mount (an S3 event)."""

    version_id: str | None = None
    etag: str | None = None
    size: int | None = None


@dataclass
class _Job:
    """The engine's implementation of :class:`pipelines.spec.Job`."""

    ws: Workspace
    source: SourceInfo
    settings: Settings
    deadline: Deadline
    planned: dict[tuple[str, str, str], tuple[str, PlannedOutput]]
    written: list[OutputRecord] = field(default_factory=list)
    tool_written: list[tuple[str, PlannedOutput, str]] = field(
        default_factory=list
    )  # (pipeline, planned, rel)
    writing: list[OutputFile] = field(default_factory=list)  # opened by open_output (closed at commit)
    left_out: list[dict[str, Any]] = field(default_factory=list)  # parts of the source left out
    bytes_read: int = 0
    progress: ProgressCallback | None = None
    _data: bytes | None = None
    _scratch: Scratch | None = None

    @property
    def scratch_dir(self) -> Path:
        if self._scratch is None:
            self._scratch = Scratch()
        return self._scratch.path

    def read_source(self) -> bytes:
        if self._data is None:
            self._data = self.ws.read_source(
                self.source.relpath,
                expected_size=self.source.size,
                max_bytes=self.settings.limits.max_source_bytes,
            )
            self.bytes_read += len(self._data)
        return self._data

    def source_path(self) -> Path:
        return self.ws.resolve_source(self.source.relpath)

    @property
    def io(self) -> StorageIO:
        return self.ws.io

    def report_progress(self, pipeline: str, fraction: float, message: str = "") -> None:
        if self.progress is not None:
            self.progress(self.source.relpath, pipeline, min(max(fraction, 0.0), 1.0), message)

    def _target(self, pipeline: str, variant: str, ext: str | None) -> tuple[str, PlannedOutput]:
        found = [
            v
            for (p, var, e), v in self.planned.items()
            if p == pipeline and var == variant and ext in (None, e)
        ]
        if len(found) != 1:
            what = "did not plan" if not found else "planned more than once (pass ext=)"
            raise MediaWorkerError(f"pipeline {pipeline} wrote {variant!r} ({ext}), which it {what}")
        return found[0]

    def write_output(
        self, pipeline: str, variant: str, data: bytes, *, ext: str | None = None, **meta: Any
    ) -> OutputRecord:
        out, rec = self._open(pipeline, variant, ext, meta)
        with out:
            out.write(data)
        return rec

    def open_output(self, pipeline: str, variant: str, *, ext: str | None = None, **meta: Any) -> OutputFile:
        return self._open(pipeline, variant, ext, meta)[0]

    def _open(
        self, pipeline: str, variant: str, ext: str | None, meta: dict[str, Any]
    ) -> tuple[OutputFile, OutputRecord]:
        """Open a planned output at its final path; its record gets the size and sha256 computed on the
        way when it is closed (nothing is read back)."""
        rel, planned = self._target(pipeline, variant, ext)
        out = self.ws.open_output(rel)
        rec = OutputRecord(rel, 0, "", pipeline, variant, planned.media_type, meta)
        self.written.append(rec)  # from now on a failed job deletes it, whatever was written
        self.writing.append(out)

        def closed(f: OutputFile) -> None:
            rec.size, rec.sha256 = f.size, f.sha256

        out.on_close = closed
        return out, rec

    def leave_out(self, pipeline: str, reason: str, **where: Any) -> None:
        entry = {"pipeline": pipeline, **where, "reason": reason}
        if entry not in self.left_out:  # pipelines of one group may each find the same stream
            self.left_out.append(entry)
            log.info("%s: %s left out %s: %s", self.source.relpath, pipeline, where, reason)

    def output_path(self, pipeline: str, variant: str, *, ext: str | None = None) -> Path:
        rel, planned = self._target(pipeline, variant, ext)
        path = self.ws.resolve_output(rel)
        self.tool_written.append((pipeline, planned, rel))
        return path

    def output_relpath(self, pipeline: str, variant: str, *, ext: str | None = None) -> str:
        return self._target(pipeline, variant, ext)[0]

    def output_url(self, pipeline: str, variant: str, *, ext: str | None = None, referrer: str) -> str:
        return relative_url(self.output_relpath(pipeline, variant, ext=ext), referrer)

    def finish_tool_outputs(self) -> None:
        """Check every output opened through :meth:`open_output` was closed (so its hash is whole), and
        record outputs that tools wrote themselves, by size alone: reading them back from the mount to
        hash them would be paid reads of data just written, so their manifest entry has no sha256 and
        says why (``meta.sha256_omitted``).  Forget the ones the tools did not write."""
        if still_open := [f.relpath for f in self.writing if not f.closed]:
            raise MediaWorkerError(f"output(s) still being written when the pipeline returned: {still_open}")
        self.writing.clear()
        for pipeline, planned, rel in self.tool_written:
            if not (self.ws.root / rel).exists():
                continue
            why = "written by a tool at its final path; not read back from the mount to hash it"
            rec = OutputRecord(rel, self.ws.size_of(rel), None, pipeline, planned.variant, planned.media_type)
            rec.meta["sha256_omitted"] = why
            self.written.append(rec)
        self.tool_written.clear()

    def lost_folder(self) -> str | None:
        """An output handed to a tool whose folder is gone (pruned by a concurrent job's clean-up)."""
        for _, _, rel in self.tool_written:
            if not (self.ws.root / rel).parent.is_dir():
                return rel
        return None

    def cleanup(self, *, delete_outputs: bool) -> None:
        """End the job: remove its scratch folder and, if it failed, every output it wrote or handed
        to a tool (whatever the tool managed to write before it failed or was stopped)."""
        if delete_outputs:
            removed = self.ws.remove([o.path for o in self.written] + [t[2] for t in self.tool_written])
            for rel in removed:
                self.ws.prune_empty_parents(rel)  # and the folders made for them, if now empty
            if removed:
                log.info("deleted %d partial output(s) of %s", len(removed), self.source.relpath)
        if self._scratch is not None:
            self._scratch.remove()
            self._scratch = None


_NO_SPACE = re.compile(r"No space left on device|Disk quota exceeded", re.IGNORECASE)


def out_of_space(exc: BaseException, workspace: Path) -> MediaWorkerError | None:
    """A write that ran out of disk (ours, or a tool's), as the error naming the full file system: the
    workspace (:class:`WorkspaceFullError`) or the local scratch folder (:class:`ScratchFullError`).
    None for anything else.  Tools say only "No space left on device", so the file systems are asked."""
    if isinstance(exc, (WorkspaceFullError, ScratchFullError)):
        return None
    if isinstance(exc, OSError):
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            return None
        said = True
    elif type(exc) is ToolFailedError:
        said = bool(_NO_SPACE.search(f"{exc.message}\n{exc.detail or ''}"))
    else:
        return None
    scratch = Path(tempfile.gettempdir())
    ws, tmp = _space(workspace), _space(scratch)
    if ws is None or tmp is None:
        return None
    if not said and not (ws.full or tmp.full):
        return None  # a tool failed for another reason
    what = str(exc).splitlines()[0][:300]
    detail = exc.detail if isinstance(exc, MediaWorkerError) else None
    if _on_workspace(exc, workspace, scratch, ws, tmp):
        return WorkspaceFullError(
            f"the workspace is full: {ws} ({what}); free space or raise the quota, then retry", detail=detail
        )
    return ScratchFullError(
        f"the local scratch folder {scratch} (TMPDIR) is full: {tmp} ({what}); on Lambda raise the "
        "function's ephemeral storage, or lower transcode.local_copy_max_bytes, then retry",
        detail=detail,
    )


def _on_workspace(exc: BaseException, workspace: Path, scratch: Path, ws: _Space, tmp: _Space) -> bool:
    """Which file system ran out: the failed write's own path if the error names one; else the one that
    is full now (a pipeline may already have removed what it wrote to scratch; the worker's own workspace
    writes are mapped where they happen, so an unnamed error of ours is a scratch write)."""
    if ws.device == tmp.device:
        return True
    name = getattr(exc, "filename", None)
    if isinstance(name, (str, os.PathLike)):
        real = os.path.realpath(name)
        for root, answer in ((workspace, True), (scratch, False)):
            if real.startswith(os.path.realpath(root).rstrip("/") + "/"):
                return answer
    if ws.full != tmp.full:
        return ws.full
    if isinstance(exc, OSError):
        return False
    return ws.free_fraction <= tmp.free_fraction


@dataclass(frozen=True)
class _Space:
    device: int
    free: int
    total: int

    @property
    def free_fraction(self) -> float:
        return self.free / self.total if self.total else 0.0

    @property
    def full(self) -> bool:
        return self.free < (1 << 20) or self.free_fraction < 0.01

    def __str__(self) -> str:
        return f"{self.free / 2**20:.1f} MiB free of {self.total / 2**20:.1f} MiB"


def _space(folder: Path) -> _Space | None:
    try:
        st = os.statvfs(folder)
        return _Space(os.stat(folder).st_dev, st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize)
    except OSError:
        return None


def group_pipelines(pipelines: Sequence[Pipeline]) -> list[tuple[Pipeline, list[Pipeline]]]:
    """Split the selected pipelines, in order, into (lead, partners the lead also runs) groups."""
    groups: list[tuple[Pipeline, list[Pipeline]]] = []
    rest = list(pipelines)
    while rest:
        lead = rest.pop(0)
        partners = [p for p in rest if lead.can_run_with(p)]
        rest = [p for p in rest if p not in partners]
        groups.append((lead, partners))
    return groups


def rules_in_force(settings: Settings, registry: Registry) -> list[Rule]:
    """The enabled rules (the configured ones, else the pipelines' own defaults), after the start-up
    checks that need the installed pipelines: each pipeline's options against its own model, and the
    layout's recursion guard over the outputs every pipeline plans, and that no rule sends a suffix to a
    pipeline that does not take it.  Raises ConfigError."""
    registry.validate_options(settings)
    configured = settings.rules if settings.rules is not None else registry.default_rules()
    registry.check_rules(configured)
    rules = [r for r in configured if r.enabled]
    settings.layout.check_against_rules(rules, settings.exclude, registry.planned_variants(settings))
    return rules


UP_TO_DATE = "up to date (manifest matches)"


@dataclass
class _Selection:
    """What a routed source goes through: the pipelines that accept it (and why the others do not), and
    whether its manifest already says it is done for them."""

    source: SourceInfo
    accepted: list[Pipeline]
    reasons: list[str]  # why the other pipelines the verdict names do not run
    manifest_rel: str
    config_hash: str = ""
    current: bool = False


class Engine:
    """Processes sources of one workspace with one set of settings and pipelines."""

    def __init__(self, settings: Settings, registry: Registry | None = None) -> None:
        """Raises ConfigError from the start-up checks (:func:`rules_in_force`)."""
        self.settings = settings
        self.registry = registry if registry is not None else load_registry()
        self.rules = rules_in_force(settings, self.registry)
        self.ws = Workspace(settings.workspace, read_block=settings.read_block_bytes)
        self._config_hashes: dict[tuple[str, ...], str] = {}
        sweep()  # scratch folders of jobs that were killed (on Lambda, /tmp outlives the process)

    # -- selection -----------------------------------------------------------------------------
    def triage(self, relpath: str, pipelines: Sequence[str] | None = None) -> Verdict:
        """:func:`pipelines.core.triage.triage` with this engine's layout, rules and pipelines."""
        s = self.settings
        return triage(
            relpath,
            layout=s.layout,
            rules=self.rules,
            exclude=s.exclude,
            installed=self.registry.pipelines,
            requested=pipelines,
        )

    def choose(self, names: Sequence[str]) -> tuple[list[Pipeline], list[str]]:
        """The installed pipelines among ``names`` and the reasons the others were left out."""
        missing = self.registry.missing(names)
        chosen = [self.registry.pipelines[name] for name in names if name not in missing]
        return chosen, [f"{name}: {why}" for name, why in missing.items()]

    def pipelines_for(self, relpaths: Iterable[str], pipelines: Sequence[str] | None = None) -> list[str]:
        """Installed pipelines that ``relpaths`` would go through (``pipelines`` if given, else the rules);
        with no paths, every installed pipeline the active rules name."""
        if pipelines:
            wanted = list(pipelines)
        else:
            paths = list(relpaths)
            if paths:
                wanted = [n for rel in paths for n in self.triage(rel).pipelines]
            else:
                wanted = [n for r in self.rules for n in r.pipelines]
        return [n for n in dict.fromkeys(wanted) if self.registry.get(n) is not None]

    def preflight(self, names: Iterable[str]) -> None:
        """Check every program and library these pipelines need, once, before any file is processed.

        Raises one :class:`MissingDependencyError` naming everything that is missing and how to install
        it, instead of one failure per file.
        """
        problems: list[str] = []
        for name in names:
            try:
                self.registry.check(name, self.settings)
            except MissingDependencyError as exc:
                if str(exc) not in problems:
                    problems.append(str(exc))
        if problems:
            raise MissingDependencyError("; ".join(problems))

    def config_hash(self, pipelines: Sequence[Pipeline]) -> str:
        """The effective config of these pipelines (settings are frozen: computed once per set)."""
        key = tuple(p.name for p in pipelines)
        cached = self._config_hashes.get(key)
        if cached is None:
            cached = self._config_hashes[key] = self._compute_config_hash(pipelines)
        return cached

    def _compute_config_hash(self, pipelines: Sequence[Pipeline]) -> str:
        doc = {
            "layout": [self.settings.layout.output, self.settings.layout.manifest],
            "pipelines": [[p.name, p.version, p.settings_fingerprint(self.settings)] for p in pipelines],
        }
        blob = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()
        return hashlib.sha256(blob).hexdigest()

    def up_to_date(self, relpath: str, pipelines: Sequence[str] | None = None) -> SourceResult | None:
        """The "skipped" result :meth:`process` would give ``relpath`` without a job: not routed, or its
        manifest current.  None when it needs :meth:`process` (work, a failure to report, or any doubt).

        Cheap enough to run over a whole prefix before a pool starts: one stat and one small read."""
        t0 = time.monotonic()
        try:
            rel = clean_relpath(relpath)
            verdict = self.triage(rel, pipelines)
            if not verdict.run:
                return SourceResult(source=rel, status="skipped", reason=verdict.reason)
            sel = self._select(rel, verdict, self.ws.stat_source(rel), None)
        except Exception:  # process() reports it properly
            return None
        if not sel.current:
            return None
        return SourceResult(
            source=rel,
            status="skipped",
            reason=UP_TO_DATE,
            manifest=sel.manifest_rel,
            source_bytes=sel.source.size,
            duration_s=time.monotonic() - t0,
        )

    def _select(self, rel: str, verdict: Verdict, st: os.stat_result, meta: SourceMeta | None) -> _Selection:
        """The first half of every job, and all of :meth:`up_to_date`: the pipelines of a routed source
        (``st``: its stat) that are installed and accept it, and whether its manifest says it is done."""
        chosen, reasons = self.choose(verdict.pipelines)
        meta = meta or SourceMeta()
        source = SourceInfo(rel, st.st_size, st.st_mtime_ns, meta.version_id, meta.etag)
        accepted = []
        for p in chosen:
            answer = p.accepts(source, self.settings)
            if answer is True:
                accepted.append(p)
            else:
                reasons.append(f"{p.name}: {answer or 'does not accept this file'}")
        sel = _Selection(source, accepted, reasons, self.settings.layout.manifest_path(rel))
        if accepted:
            sel.config_hash = self.config_hash(accepted)
            sel.current = self._manifest_current(sel)
        return sel

    def _manifest_current(self, sel: _Selection) -> bool:
        done = manifest.decode(self.ws.read_small(sel.manifest_rel))
        return manifest.is_current(done, sel.source, sel.config_hash)

    # -- the job -------------------------------------------------------------------------------
    def process(
        self,
        relpath: str,
        *,
        pipelines: Sequence[str] | None = None,
        verdict: Verdict | None = None,
        meta: SourceMeta | None = None,
        deadline: float | Deadline | None = None,
        progress: ProgressCallback | None = None,
    ) -> SourceResult:
        """Process one source; never raises for a per-file problem.

        ``verdict``: the caller's :meth:`triage` of this path (and ``pipelines``), not asked again.
        ``meta`` comes from an S3 event: the source must then match its size (waiting up to
        ``sync.visibility_wait_seconds`` for S3 Files to import it), or the result is retryable.
        ``deadline`` is a :class:`Deadline` or a ``time.monotonic()`` value (None: no limit); past it the
        job stops with status "timeout".
        """
        t0 = time.monotonic()
        route = verdict or pipelines
        for attempt in range(2):
            result, folder_lost = self._attempt(relpath, route, meta, deadline, progress)
            if not folder_lost or attempt == 1:
                break
            log.info(
                "%s: a concurrent clean-up removed an output folder under a tool; running it again", relpath
            )
        result.duration_s = time.monotonic() - t0
        return result

    def _attempt(
        self,
        relpath: str,
        route: Verdict | Sequence[str] | None,
        meta: SourceMeta | None,
        deadline: float | Deadline | None,
        progress: ProgressCallback | None,
    ) -> tuple[SourceResult, bool]:
        """One run of the job; True beside a failure if a tool's output folder vanished under it (a
        concurrent job's clean-up pruned it as empty), which is worth one more run at once."""
        result = SourceResult(source=relpath, status="failed")
        started: list[_Job] = []  # the job, once created, so a failure can clean it up
        held: list[Lease] = []  # the source's lease, once taken; released after the clean-up
        folder_lost = False
        self.ws.start_ledger()
        try:
            self._process(relpath, route, meta, Deadline.of(deadline), result, started, held, progress)
        except Exception as exc:
            lost = started[0].lost_folder() if started else None
            known = out_of_space(exc, self.ws.root) or exc
            if lost is not None and not isinstance(known, JobTimeoutError):
                folder_lost = True
                known = RetryableError(f"the folder of {lost} was removed while a tool wrote into it ({exc})")
            if isinstance(known, MediaWorkerError):
                result.status = "timeout" if isinstance(known, JobTimeoutError) else "failed"
                result.error, result.error_kind, result.retryable = str(known), known.kind, known.retryable
            else:  # a bug or an unexpected library error: still a per-file failure
                log.exception("internal error on %s", relpath)
                result.error, result.error_kind = f"internal error: {type(exc).__name__}: {exc}", "internal"
        finally:
            failed = result.status in ("failed", "timeout")
            # a job whose lease another worker took over deletes and records nothing: the paths are the
            # new holder's now (it may have committed its manifest naming them already)
            ours = not failed or all(lease.holds() for lease in held)
            for job in started:
                job.cleanup(delete_outputs=failed and ours)
                result.bytes_read = job.bytes_read
                if failure.worth_recording(result) and not folder_lost and ours:
                    self._record_failure(job, result)
            for lease in held:
                lease.release()
            if result.status in ("failed", "timeout"):
                result.outputs, result.manifest = [], None
        return result, folder_lost

    def _record_failure(self, job: _Job, result: SourceResult) -> None:
        """Leave why the job failed where the manifest would be (pipelines/workspace/failure.py)."""
        rel = self.settings.layout.failure_path(job.source.relpath)
        pipelines = sorted({p for p, _, _ in job.planned})
        try:
            self.ws.write_file(rel, failure.encode(job.source, result, pipelines))
        except (OSError, MediaWorkerError) as exc:  # the failure itself is reported either way
            log.warning("could not write the failure record %s: %s", rel, exc)

    def _process(
        self,
        relpath: str,
        route: Verdict | Sequence[str] | None,
        meta: SourceMeta | None,
        deadline: Deadline,
        result: SourceResult,
        started: list[_Job],
        held: list[Lease],
        progress: ProgressCallback | None,
    ) -> None:
        """The job, step by step: route, select, plan, lease, run, commit.  ``route``: the caller's
        verdict, or the pipelines to ask the triage for."""
        rel = result.source = clean_relpath(relpath)
        verdict = route if isinstance(route, Verdict) else self.triage(rel, route)
        if not verdict.run:
            result.status, result.reason = "skipped", verdict.reason
            return
        st = self._wait_until_visible(rel, meta, deadline)
        result.source_bytes = st.st_size
        sel = self._select(rel, verdict, st, meta)
        if not sel.accepted:
            result.status, result.reason = "skipped", "; ".join(sel.reasons)
            return
        if sel.current:
            result.status, result.reason, result.manifest = "skipped", UP_TO_DATE, sel.manifest_rel
            return
        planned = self._plan(sel.source, sel.accepted, sel.manifest_rel)
        for p in sel.accepted:
            self.registry.check(p.name, self.settings)
        lease = self._take_lease(rel, deadline, held)
        if lease is not None and self._manifest_current(sel):  # the other worker finished it
            result.status, result.manifest = "skipped", sel.manifest_rel
            result.reason = "up to date (manifest matches; written by a concurrent worker)"
            return
        # the old manifest no longer describes what is about to be written
        self.ws.remove([sel.manifest_rel])
        job = _Job(self.ws, sel.source, self.settings, deadline, planned, progress=progress)
        started.append(job)
        timings = self._run_pipelines(job, sel.accepted, deadline)
        self._commit(job, sel, timings, lease)
        result.status, result.manifest = "ok", sel.manifest_rel
        result.outputs = [o.path for o in job.written]
        result.output_bytes = sum(o.size for o in job.written)
        if sel.reasons:
            result.reason = "; ".join(sel.reasons)

    def _take_lease(self, rel: str, deadline: Deadline, held: list[Lease]) -> Lease | None:
        """One writer per source: wait for (or refuse) a concurrent one.  None when leases are off."""
        if not self.settings.lease.enabled:
            return None
        lease = Lease(self.ws, self.settings.layout.lease_path(rel), self.settings.lease)
        lease.acquire(deadline)
        held.append(lease)
        return lease

    def _run_pipelines(
        self, job: _Job, pipelines: Sequence[Pipeline], deadline: Deadline
    ) -> dict[str, float]:
        """Run the pipelines in their groups (a lead runs its partners too); seconds per group."""
        timings: dict[str, float] = {}
        for lead, partners in group_pipelines(pipelines):
            t = time.monotonic()
            deadline.check(lead.name)
            if partners:
                lead.run_with(job, partners)
            else:
                lead.run(job)
            job.finish_tool_outputs()
            timings["+".join(p.name for p in [lead, *partners])] = time.monotonic() - t
        return timings

    def _commit(self, job: _Job, sel: _Selection, timings: dict[str, float], lease: Lease | None) -> None:
        """Write the manifest, the outputs' commit marker, if the lease is still ours and the source is
        unchanged; an earlier failure record of the source is history then."""
        tools = {DISTRIBUTION: version()}
        for p in sel.accepted:
            tools.update(p.tool_versions())
        doc = manifest.build(
            sel.source,
            config_hash=sel.config_hash,
            pipelines=[p.name for p in sel.accepted],
            outputs=job.written,
            left_out=job.left_out,
            tools=tools,
            timings=timings,
        )
        if lease is not None:
            lease.check()  # never commit outputs of a job whose lease another worker took over
        self._check_unchanged(sel.source)
        self.ws.write_file(sel.manifest_rel, manifest.encode_with_io(doc, self.ws.io, self.settings))
        self.ws.remove([self.settings.layout.failure_path(sel.source.relpath)])

    def _check_unchanged(self, source: SourceInfo) -> None:
        """Before the commit: the source is still the file the job started from (same size and mtime),
        whoever read it (the worker or a tool).  A source replaced, appended to or deleted under the job
        fails it as retryable: the next delivery processes the new version."""
        try:
            st = self.ws.stat_source(source.relpath)
        except BadInputError:
            raise RetryableError(f"{source.relpath} disappeared while it was processed") from None
        if (st.st_size, st.st_mtime_ns) != (source.size, source.mtime_ns):
            raise RetryableError(
                f"{source.relpath} changed while it was processed (size {source.size} -> {st.st_size}); "
                "its outputs were discarded"
            )

    def _wait_until_visible(self, rel: str, meta: SourceMeta | None, deadline: Deadline) -> os.stat_result:
        """stat() the source; for event-driven jobs wait briefly for S3 Files to show the event's version.

        An upload event can arrive before the object is visible on the mount (S3 Files imports
        changes made through the S3 API within seconds, sometimes a minute or more).  That is
        retryable, never a permanent failure, and an older version is never processed.
        """
        if meta is None:
            return self.ws.stat_source(rel)
        wait = min(self.settings.sync.visibility_wait_seconds, deadline.remaining())
        limit, step = time.monotonic() + wait, min(0.5, max(0.05, wait / 10))
        while True:
            try:
                st = self.ws.stat_source(rel)
                if meta.size is None or st.st_size == meta.size:
                    return st
                why = f"{st.st_size} bytes on the mount, {meta.size} in the event"
            except BadInputError:  # not there (yet)
                why = "not on the mount"
            if time.monotonic() + step > limit:
                raise RetryableError(f"{rel}: {why}; S3 Files has not synced this version yet, retry later")
            time.sleep(step)

    def _plan(
        self, source: SourceInfo, pipelines: Sequence[Pipeline], manifest_rel: str
    ) -> dict[tuple[str, str, str], tuple[str, PlannedOutput]]:
        """Render and validate every output path before anything is written."""
        settings, layout = self.settings, self.settings.layout
        planned: dict[tuple[str, str, str], tuple[str, PlannedOutput]] = {}
        seen: dict[str, str] = {manifest_rel: "the manifest", source.relpath: "the source"}
        for p in pipelines:
            for out in p.plan(source, settings):
                rel = layout.output_path(source.relpath, p.name, out.variant, out.ext)
                if rel in seen:
                    raise ConfigError(f"layout: {p.name}/{out.variant} and {seen[rel]} both map to {rel}")
                # not the triage: that knows outputs; this asks whether the rules alone would take it
                if select_pipelines(rel, self.rules, settings.exclude):
                    raise ConfigError(
                        f"layout: output {rel} would be picked up by the rules again (recursion)"
                    )
                seen[rel] = f"{p.name}/{out.variant}"
                planned[(p.name, out.variant, out.ext)] = (rel, out)
        return planned
