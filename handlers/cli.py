"""``media-worker``: the local command line (run, pipelines, config, demo).

Exit codes: 0 nothing failed, 1 some source failed, 2 usage or configuration error, 3 a program or
library a selected pipeline needs is missing (checked before any file is processed).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from config.errors import ExitCode, MediaWorkerError
from handlers.console import err, out
from handlers.local.cli import stack_app

if TYPE_CHECKING:  # settings, engine and rich load when a command needs them (start-up: bench_startup.py)
    from config.settings import Settings
    from pipelines.core.engine import Engine
    from pipelines.result import SourceResult

app = typer.Typer(
    rich_markup_mode=None,  # plain help: rich's help formatter costs ~55 ms of every --help
    name="media-worker",
    help="Process media on an S3 Files mount (or any folder): thumbnails, transcodes, OCR.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(
    rich_markup_mode=None, help="Show, validate and export the configuration.", no_args_is_help=True
)
app.add_typer(config_app, name="config")
app.add_typer(stack_app, name="stack")


def _print_version(value: bool) -> None:
    if value:
        from config.version import version

        print(f"media-worker {version()}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    pass  # the help text is the app's (above)


ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config file (default: $MEDIA_WORKER_CONFIG).")
]
MountOpt = Annotated[Path | None, typer.Option("--workspace", "-w", help="Workspace root (mount).")]
PrefixArg = Annotated[
    str, typer.Argument(help="Folder of sources, relative to the workspace or absolute inside it ('' = all).")
]
# beside the code in a checkout; in the container image under $LAMBDA_TASK_ROOT (the code is installed)
SAMPLE_MEDIA = next(
    (
        p
        for p in (
            Path(__file__).resolve().parents[1] / "sample_media",
            Path(os.environ.get("LAMBDA_TASK_ROOT", "/var/task")) / "sample_media",
        )
        if p.is_dir()
    ),
    Path(__file__).resolve().parents[1] / "sample_media",
)


def _settings(config: Path | None, **overrides: Any) -> Settings:
    from config.settings import load_settings

    try:
        return load_settings(config, **{k: v for k, v in overrides.items() if v is not None})
    except MediaWorkerError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(ExitCode.USAGE) from None


@app.command()
def run(
    paths: Annotated[
        list[str], typer.Argument(help="Files or folders: relative to the workspace, or absolute inside it.")
    ],
    workspace: MountOpt = None,
    pipeline: Annotated[
        list[str] | None, typer.Option("--pipeline", "-p", help="Run only these pipelines (bypasses rules).")
    ] = None,
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per source on stdout.")] = False,
    workers: Annotated[
        int | None, typer.Option("--workers", "-j", help="Worker processes (default: CPUs).")
    ] = None,
) -> None:
    """Process sources; folders are walked in a stable order."""
    settings = _settings(config, workspace=workspace)
    results = _run(settings, paths, pipeline or None, workers, as_json)
    if not as_json:
        _summary(results)
    raise typer.Exit(
        ExitCode.FAILED if any(r.status in ("failed", "timeout") for r in results) else ExitCode.OK
    )


def _run(
    settings: Settings, paths: list[str], pipelines: list[str] | None, workers: int | None, as_json: bool
) -> list[SourceResult]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pipelines.batch.pool import run_many

    engine, sources = _prepare(settings, paths, pipelines)
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err.real(),
        transient=as_json,
        disable=not err.is_terminal,
        auto_refresh=False,  # redrawn from the callbacks below: no refresh thread, so the pool can fork
    )

    bars: dict[str, Any] = {}  # one bar per file in flight: its slowest pipeline's progress

    def file_progress(source: str, pipeline: str, fraction: float, message: str) -> None:
        if source not in bars:
            bars[source] = (progress.add_task(f"  {source}", total=1.0), {})
        bar, fractions = bars[source]
        fractions[pipeline] = fraction
        progress.update(bar, completed=min(fractions.values()), refresh=True)

    def report(res: SourceResult) -> None:
        if res.source in bars:
            progress.remove_task(bars.pop(res.source)[0])
        progress.advance(task)
        progress.refresh()
        if as_json:
            print(json.dumps(res.to_dict(), ensure_ascii=False), flush=True)
        elif res.status in ("failed", "timeout"):
            progress.console.print(f"[red]{res.status}[/red] {res.source}: {res.error}", highlight=False)

    with progress:
        task = progress.add_task("processing", total=len(sources))
        return run_many(
            settings,
            sources,
            pipelines=pipelines,
            workers=workers,
            on_result=report,
            engine=engine,
            progress=file_progress if progress.console.is_terminal and not as_json else None,
        )


def _prepare(settings: Settings, paths: list[str], pipelines: list[str] | None) -> tuple[Engine, list[str]]:
    """The engine and the sources ``paths`` name, once the pipelines asked for exist, the workspace is
    writable and every program the sources' pipelines need is there; else exit with the error."""
    from pipelines.batch.pool import iter_sources
    from pipelines.core.engine import Engine

    try:
        engine = Engine(settings)
        engine.registry.require(pipelines or [])
        sources = list(iter_sources(engine, [_in_workspace(engine.ws.root, p) for p in paths]))
        engine.ws.check_writable()
        engine.preflight(engine.pipelines_for(sources, pipelines))
    except MediaWorkerError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(exc.exit_code if exc.exit_code != ExitCode.FAILED else ExitCode.USAGE) from None
    return engine, sources


def _in_workspace(root: Path, arg: str) -> str:
    """A command-line path as the workspace-relative path the engine takes: relative ones as given (the
    workspace checks them), absolute ones inside the root made relative; absolute ones outside it are
    an error.  Lexical: a symlink under the root stays a symlink for the workspace to judge."""
    if not os.path.isabs(arg):
        return arg
    path = os.path.normpath(arg)
    for base in dict.fromkeys((os.path.abspath(root), os.path.realpath(root))):
        if os.path.commonpath((base, path)) == base:
            rel = os.path.relpath(path, base)
            return "" if rel == "." else rel
    from config.errors import PathError

    raise PathError(f"{arg}: outside the workspace {root} (give paths relative to it, or absolute under it)")


def _summary(results: list[SourceResult]) -> None:
    from rich.table import Table

    table = Table(title="media-worker", show_lines=False)
    for col in ("status", "sources", "outputs", "output bytes"):
        table.add_column(col, justify="right" if col != "status" else "left")
    for status in ("ok", "skipped", "failed", "timeout"):
        rs = [r for r in results if r.status == status]
        if rs:
            table.add_row(
                status,
                str(len(rs)),
                str(sum(len(r.outputs) for r in rs)),
                f"{sum(r.output_bytes for r in rs):,}",
            )
    err.print(table)
    for r in results:
        if r.status in ("failed", "timeout"):
            err.print(f"  [red]{r.status}[/red] {r.source}: {r.error}", highlight=False)


@app.command()
def pipelines(config: ConfigOpt = None) -> None:
    """List installed pipelines (and ones that failed to load)."""
    from rich.table import Table

    from pipelines.core.registry import load_registry

    settings = _settings(config)
    reg = load_registry()
    table = Table(title="pipelines")
    for col in ("name", "status", "description / reason", "takes (default rules: *)", "from"):
        table.add_column(col, overflow="fold")
    for name, p in sorted(reg.pipelines.items()):
        try:
            reg.check(name, settings)
            status = "[green]available[/green]"
        except MediaWorkerError as exc:
            status = f"[yellow]missing dependency[/yellow]: {exc}"
        routed = p.inputs.keys() if p.routed is None else p.routed
        takes = " ".join(f".{s}{'*' if s in routed else ''}" for s in sorted(p.inputs)) or "any file"
        table.add_row(name, status, p.description, takes, reg.origins.get(name, ""))
    for name, why in sorted(reg.unavailable.items()):
        table.add_row(name, "[red]unavailable[/red]", why, "", "")
    out.print(table)


@config_app.command("show")
def config_show(config: ConfigOpt = None) -> None:
    """Print the effective configuration (defaults < file < environment) as JSON."""
    out.print_json(_settings(config).model_dump_json())


@config_app.command("validate")
def config_validate(config: ConfigOpt = None) -> None:
    """Check the configuration; exit 2 with the bad keys named if it is invalid."""
    from pipelines.core.engine import rules_in_force
    from pipelines.core.registry import load_registry

    settings = _settings(config)
    reg = load_registry()
    try:
        rules = rules_in_force(settings, reg)
    except MediaWorkerError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(ExitCode.USAGE) from None
    unknown = sorted({p for r in rules for p in r.pipelines} - set(reg.pipelines))
    for name in unknown:
        err.print(f"[yellow]warning:[/yellow] rules name pipeline {name!r}: {reg.why_unavailable(name)}")
    out.print("[green]config ok[/green]")


@config_app.command("sync-rules")
def config_sync_rules(
    config: ConfigOpt = None,
    file_system_id: Annotated[str | None, typer.Option("--file-system-id", help="fs-… id or ARN.")] = None,
    cloudformation: Annotated[
        bool, typer.Option("--cloudformation", help="Print the CloudFormation SynchronizationConfiguration.")
    ] = False,
) -> None:
    """Print the S3 Files PutSynchronizationConfiguration request for the configured sync settings."""
    settings = _settings(config)
    if file_system_id:
        try:
            sync = settings.sync.model_validate(
                {**settings.sync.model_dump(), "file_system_id": file_system_id}
            )
        except ValueError as exc:
            err.print(f"[red]error:[/red] --file-system-id: {exc}")
            raise typer.Exit(ExitCode.USAGE) from None
    else:
        sync = settings.sync
    doc = sync.cloudformation() if cloudformation else sync.put_request()
    print(json.dumps(doc, indent=2))


@app.command()
def demo(
    workspace: Annotated[
        Path | None, typer.Option("--workspace", "-w", help="Scratch workspace (default: new temp dir).")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Copy sample_media into a scratch workspace, run every available pipeline, write its report."""
    if not SAMPLE_MEDIA.is_dir():
        err.print(f"[red]error:[/red] sample media not found at {SAMPLE_MEDIA}")
        raise typer.Exit(ExitCode.USAGE)
    ws = workspace or Path(tempfile.mkdtemp(prefix="media-worker-demo-"))
    dest = ws / "sample_media"
    shutil.copytree(
        SAMPLE_MEDIA, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.py", "*.md", "*.txt")
    )
    settings = _settings(config, workspace=ws)
    results = _run(settings, ["sample_media"], None, None, as_json=False)
    summary = _report(settings, "sample_media", None)
    for line in demo_lines(results):
        out.print(line, highlight=False, soft_wrap=True)
    page = Path(summary["workspace"]) / summary["html"]
    out.print(f"report: {page}", highlight=False, soft_wrap=True)
    out.print(f"open it in a browser: {page.as_uri()}", highlight=False, soft_wrap=True)
    raise typer.Exit(
        ExitCode.FAILED if any(r.status in ("failed", "timeout") for r in results) else ExitCode.OK
    )


def demo_lines(results: list[SourceResult]) -> list[str]:
    """One line per source (status, number of outputs, time, and the reason when it did not run) and a
    total: what ``media-worker demo`` ends with instead of every output's path."""
    width = max((len(r.source) for r in results), default=0)
    lines = []
    for r in results:
        line = f"{r.source:<{width}}  {r.status:<7}  {len(r.outputs):>3} outputs  {r.duration_s:6.2f} s"
        why = r.error or (r.reason if r.status == "skipped" else None)
        lines.append(f"{line}  {why}" if why else line)
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "skipped", "failed", "timeout")}
    lines.append(
        f"{len(results)} source(s): "
        + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        + f"; {sum(len(r.outputs) for r in results)} output(s)"
    )
    return lines


@app.command()
def report(
    prefix: PrefixArg = "",
    out_dir: Annotated[
        str | None,
        typer.Option("--output", "-o", help="Report folder in the workspace (default: reports/PREFIX)."),
    ] = None,
    workspace: MountOpt = None,
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print summary.json on stdout.")] = False,
) -> None:
    """The contact sheet of a prefix: one HTML page and summary.json from the manifests under it."""
    summary = _report(_settings(config, workspace=workspace), prefix, out_dir)
    if as_json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        out.print(
            f"{summary['sources']} source(s): {summary['ok']} ok, {summary['failed']} failed, "
            f"{summary['missing']} missing; "
            f"{summary['outputs']} output(s)"
        )
        out.print(f"report: {Path(summary['workspace']) / summary['html']}")


@app.command()
def cost(
    prefix: PrefixArg = "",
    workspace: MountOpt = None,
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    cache_days: Annotated[
        list[int] | None,
        typer.Option(
            "--cache-days",
            min=1,
            max=365,
            help="Also price the mount way at this cache expiry (days; repeatable), e.g. a value for the "
            "stack's CacheExpirationDays.",
        ),
    ] = None,
) -> None:
    """What the jobs under a prefix did on storage and what it costs: the mount way (S3 Files, by
    cache expiry), the old way (GET the source, PUT each output) and EFS; from the manifests' ledgers.
    Prices are approximate (config [cost])."""
    from pipelines.batch.report import default_folder, priced
    from pipelines.core.engine import Engine

    settings = _settings(config, workspace=workspace)
    try:
        engine = Engine(settings)
        prefix = _in_workspace(engine.ws.root, prefix)
        found = priced(engine, prefix, skip=[default_folder("")], also=cache_days or ())
    except MediaWorkerError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(exc.exit_code) from None
    bill = found.cost or {}
    missing = sum(1 for e in found.entries if e.manifest is None)  # failed or in flight: no ledger
    if as_json:
        print(json.dumps({"prefix": found.prefix, **bill, "missing": missing}, indent=2))
        return
    _print_bill(found.prefix, bill, missing)


def _print_bill(prefix: str, bill: dict[str, Any], missing: int) -> None:
    from rich.table import Table

    mib = 1 << 20
    io = Table(title=f"storage I/O of {bill['sources']} job(s) under {prefix or '(workspace)'}")
    io.add_column("")
    io.add_column("bytes", justify="right")
    io.add_column("requests", justify="right")
    io.add_row(
        "read straight from S3 (>= 128 KiB)",
        f"{bill['bytes_read_direct'] / mib:,.2f} MiB",
        f"{bill['direct_read_requests']:,}",
    )
    io.add_row(
        "read through the cache (< 128 KiB)",
        f"{bill['bytes_read_cached'] / mib:,.2f} MiB",
        f"{bill['read_requests'] - bill['direct_read_requests']:,}",
    )
    io.add_row("written", f"{bill['bytes_written'] / mib:,.2f} MiB", f"{bill['write_requests']:,}")
    io.add_row(
        "kept (outputs + manifests)",
        f"{bill['bytes_stored'] / mib:,.2f} MiB",
        f"{bill['files_written']:,} files",
    )
    out.print(io)
    ways = Table(title="approximate USD (prices: config \\[cost]; compute left out)")
    ways.add_column("way")
    ways.add_column("USD", justify="right")
    days = bill["cache_expiration_days"]
    for d, v in bill["mount_way_usd_by_cache_days"].items():
        mark = " (configured)" if int(d) == days else ""
        ways.add_row(f"S3 Files, cache expiry {d} d{mark}", f"{v:.6f}")
    ways.add_row("download / upload (GET + PUT)", f"{bill['usd']['old_way']:.6f}")
    ways.add_row("EFS", f"{bill['usd']['efs']:.6f}")
    out.print(ways)
    if bill["without_ledger"] or missing:
        out.print(
            f"left out: {bill['without_ledger']} manifest(s) without a ledger, {missing} source(s) "
            "without a manifest (failed or in flight)"
        )
    out.print(
        "touch-once batches: a cache expiry of 1-2 days (sync.cache_expiration_days) keeps the "
        "cache bill small"
    )


def _report(settings: Settings, prefix: str, out_dir: str | None) -> dict[str, Any]:
    from pipelines.batch.report import publish
    from pipelines.core.engine import Engine

    try:
        engine = Engine(settings)
        summary = publish(engine, _in_workspace(engine.ws.root, prefix), out_dir)
    except MediaWorkerError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(exc.exit_code) from None
    summary["workspace"] = str(engine.ws.root)
    return summary


@app.command()
def invoke(
    event: Annotated[Path, typer.Option("--event", "-e", help="Event JSON file ('-' = standard input).")],
    workspace: Annotated[
        Path | None, typer.Option("--workspace", "-w", help="Workspace root (default: settings).")
    ] = None,
    bucket: Annotated[
        str | None, typer.Option("--bucket", help="Bucket mounted at the workspace (aws.bucket).")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", "-t", min=1, max=900, help="Function timeout in seconds.")
    ] = 300,
    config: ConfigOpt = None,
) -> None:
    """Call the Lambda handler in-process on an event file and print its JSON response.

    Exit 0 when the handler returned, 1 when it raised (Lambda's errorType/errorMessage are printed),
    2 for a file that is not JSON or an event shape the function does not handle.
    """
    from handlers.local.invoke import InvokeError, LocalContext, read_event
    from handlers.local.invoke import invoke as call
    from handlers.runtime import reset_runtime

    for key, value in (("WORKSPACE", workspace), ("AWS__BUCKET", bucket), ("CONFIG", config)):
        if value is not None:
            os.environ[f"MEDIA_WORKER_{key}"] = str(value)
    _settings(config)  # a configuration error stops here, before any event is handled
    reset_runtime()
    try:
        ok, response = call(read_event(event), LocalContext(timeout_s=timeout))
    except InvokeError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(ExitCode.USAGE) from None
    print(json.dumps(response, indent=2, ensure_ascii=False))
    raise typer.Exit(ExitCode.OK if ok else ExitCode.FAILED)


@app.command()
def redrive(
    source: Annotated[
        str,
        typer.Argument(
            help="Dead-letter queue URL (stack output DeadLetterQueueUrl or UploadRuleDeadLetterQueueUrl)."
        ),
    ],
    to: Annotated[
        str, typer.Option("--to", help="URL of the queue to move them to (stack output UploadQueueUrl).")
    ],
    limit: Annotated[
        int | None, typer.Option("--max", min=1, help="Move at most this many messages (default: all).")
    ] = None,
) -> None:
    """Move a dead-letter queue's messages back to the upload queue, after a fix. Works for both of the
    stack's dead-letter queues, also the EventBridge target's, which SQS's StartMessageMoveTask cannot
    redrive (it is no SQS queue's dead-letter queue). Exit 1 if a message could not be moved."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from handlers.redrive import redrive as move
    from handlers.redrive import region_of

    try:
        region = region_of(source)
        region_of(to)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(ExitCode.USAGE) from None
    try:
        moved = move(boto3.client("sqs", region_name=region), source, to, limit=limit)
    except (BotoCoreError, ClientError, ValueError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(ExitCode.USAGE) from None
    out.print(f"moved {moved.sent} message(s) to {to}", highlight=False)
    for line in moved.failed:
        err.print(f"not moved: {line}", highlight=False)
    raise typer.Exit(1 if moved.failed else 0)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except MediaWorkerError as exc:  # anything not caught per file
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
