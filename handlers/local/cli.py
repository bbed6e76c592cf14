"""``media-worker stack up|down|status|env|send``: the local S3 API + mount + upload trigger."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from config.errors import ExitCode, MediaWorkerError, StackError
from handlers.console import err, out

if TYPE_CHECKING:
    from handlers.local.stack import Stack

stack_app = typer.Typer(
    rich_markup_mode=None,  # plain help: rich's help formatter costs ~55 ms of every --help
    help="A local S3 API, a FUSE mount of the same bucket as the workspace, and an upload trigger "
    "(SeaweedFS; see docs/local-stack.md).",
    no_args_is_help=True,
)
REPO = Path(__file__).resolve().parents[2]

DirOpt = Annotated[
    Path | None,
    typer.Option("--dir", "-d", help="State folder (default: $MEDIA_WORKER_STACK_DIR, else ./.stack)."),
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config file (default: $MEDIA_WORKER_CONFIG).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the status as one JSON object.")]


def _stack(folder: Path | None, config: Path | None = None) -> Stack:
    from config.settings import find_config_file, load_settings
    from handlers.local.stack import Stack

    root = folder or Path(os.environ.get("MEDIA_WORKER_STACK_DIR", ".stack"))
    try:
        cfg = find_config_file(config)
        return Stack(root, load_settings(cfg), cfg)
    except MediaWorkerError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(ExitCode.USAGE) from None


def _show(status: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(status, indent=2))
        return
    state = "[green]running[/green]" if status["running"] else "[red]not running[/red]"
    out.print(f"stack in {status['dir']}: {state}")
    for part, ok in status["parts"].items():
        out.print(f"  {part:8} {'up' if ok else 'DOWN'}")
    if status.get("endpoint_url"):
        out.print(
            f"  S3 API   {status['endpoint_url']}  bucket {status['bucket']}  region {status['region']}"
        )
        out.print(f"  keys     {status['access_key_id']} / {status['secret_access_key']}")
        out.print(f"  mount    {status['mount']}  (the worker's workspace)")
        out.print(f"  uploads  s3://{status['bucket']}/{status['input_prefix']}…  -> {status['function']}")
        t = status["trigger"]
        if t:
            out.print(
                f"  trigger  {t.get('delivered', 0)} deliveries, {t.get('succeeded', 0)} ok, "
                f"{t.get('redelivered', 0)} retried, {t.get('dead_lettered', 0)} dead-lettered, "
                f"{t.get('pending', 0)} pending"
            )
        out.print(f"  journal  {status['journal']}\n  dlq      {status['dead_letter']}")


def _rie() -> Path | None:
    if os.environ.get("MEDIA_WORKER_RIE"):
        return Path(os.environ["MEDIA_WORKER_RIE"])
    script = REPO / "scripts" / "image.sh"
    if script.is_file():
        from pipelines.tools.runner import Program, run

        res = run(
            [str(script), "rie"], program=Program("scripts/image.sh", "a checkout"), cwd=REPO, check=False
        )
        if res.returncode == 0:
            return Path(res.stdout.strip())
    return None


@stack_app.command("up")
def up(
    folder: DirOpt = None,
    config: ConfigOpt = None,
    image: Annotated[
        str | None,
        typer.Option("--image", help="Run the function as this built image under the Lambda emulator."),
    ] = None,
    attach: Annotated[
        bool, typer.Option("--attach", help="Stay in the foreground, print deliveries; Ctrl-C stops all.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Start the S3 API, the mount and the upload trigger; return when an S3 PUT reaches all three."""
    stack = _stack(folder, config)
    try:
        status = stack.up(image=image, rie=_rie() if image else None)
    except StackError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(ExitCode.FAILED) from None
    except KeyboardInterrupt:  # up() has already stopped what it started
        err.print("interrupted: the stack was stopped")
        raise typer.Exit(130) from None
    if attach:
        _follow(stack, status, as_json)
    else:
        _show(status, as_json)


def _follow(stack: Stack, status: dict[str, Any], as_json: bool) -> None:
    """Show the status, then each delivery until Ctrl-C or SIGTERM; then stop the stack (a Ctrl-C at any
    point after ``up`` returned lands here)."""
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    seen = 0
    try:
        _show(status, as_json)
        err.print("attached: deliveries below; Ctrl-C stops the stack")
        while stack.running():
            entries = list(stack.journal())
            for e in entries[seen:]:
                mark = "[green]ok[/green]" if e["ok"] else "[red]error[/red]"
                more = e.get("error") or json.dumps(e.get("response", {}).get("counts", {}))
                out.print(f"{e['time']}  {e['key']}  attempt {e['attempt']}  {mark}  {more}", highlight=False)
            seen = len(entries)
            time.sleep(0.5)
        err.print("a part of the stack stopped; stopping the rest")
    except KeyboardInterrupt:
        pass
    finally:
        stack.down()
        err.print("stack stopped")


@stack_app.command("down")
def down(
    folder: DirOpt = None,
    purge: Annotated[
        bool, typer.Option("--purge", help="Also delete the state folder and its data.")
    ] = False,
) -> None:
    """Stop the trigger, the mount and the server; nothing is left running or mounted."""
    stack = _stack(folder)
    try:
        stack.down(purge=purge)
    except StackError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(ExitCode.FAILED) from None
    err.print(f"stack in {stack.paths.root} stopped{' and deleted' if purge else ''}")


@stack_app.command("status")
def status(folder: DirOpt = None, as_json: JsonOpt = False) -> None:
    """Endpoint, bucket, credentials, mount, input prefix and the trigger's counters (exit 1: not running)."""
    st = _stack(folder).status()
    _show(st, as_json)
    raise typer.Exit(ExitCode.OK if st["running"] else ExitCode.FAILED)


@stack_app.command("env")
def env(folder: DirOpt = None) -> None:
    """Shell exports for S3 clients (AWS CLI, boto3): eval "$(media-worker stack env)"."""
    st = _stack(folder).status()
    if not st["env"]:
        err.print("[red]error:[/red] the stack is not running")
        raise typer.Exit(ExitCode.FAILED)
    for k, v in st["env"].items():
        print(f"export {k}={v}")


@stack_app.command("send")
def send(
    event: Annotated[Path, typer.Argument(help="Event JSON file (e.g. an S3 notification).")],
    folder: DirOpt = None,
) -> None:
    """Hand an event to the trigger (delivered with the same retries and dead-letter file)."""
    from handlers.local.invoke import read_event

    try:
        path = _stack(folder).send(read_event(event))
    except (StackError, MediaWorkerError, ValueError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(ExitCode.USAGE) from None
    err.print(f"queued as {path.name}")
