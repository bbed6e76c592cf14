"""``{"report": "PREFIX"}``: write the contact sheet of a prefix (the merge step after a batch).

The last state of the prefix-batch state machine sends it once the Distributed Map is done, so a batch
ends with its summary in the workspace.  Optional ``"output"``: the report folder (default
``reports/PREFIX``).  The invocation returns ``summary.json`` without its per-source list (a Step
Functions state holds at most 256 KiB; the whole list is in the file)."""

from __future__ import annotations

from typing import Any

from config.errors import UnsupportedEvent
from handlers.observability import logger
from handlers.runtime import LambdaContext, runtime


def process(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    from pipelines.batch.report import publish

    prefix, folder = event.get("report"), event.get("output")
    if not isinstance(prefix, str) or not (folder is None or isinstance(folder, str)):
        raise UnsupportedEvent('a report request is {"report": "PREFIX"} with an optional "output" folder')
    summary = publish(runtime().engine, prefix, folder)
    logger.info(
        "report written",
        extra={
            "prefix": prefix,
            "html": summary["html"],
            "sources": summary["sources"],
            "failed": summary["failed"],
            "missing": summary["missing"],
        },
    )
    return {k: v for k, v in summary.items() if k != "entries"}
