"""Should this path be processed?  One pure answer for every caller: the engine, the CLI, every Lambda
adapter (S3, SQS, prefix batches, Distributed Map, S3 Batch Operations) and the layout's run-time guard.

A path is *skipped* - the same word and reason wherever it comes from - when it is an output or manifest of
the configured layout (the recursion guard), matches an ``exclude`` glob, or no rule routes it.  Otherwise
it goes on, with the pipelines it goes through.  Nothing here touches the file system.  (Events add two
words of their own before a path exists: *ignored* for events that need no work, such as deletes, and
*rejected* for keys that do not map into the workspace; see ``handlers.events``.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from config.layout import Layout
from config.rules import Rule, glob_match, select_pipelines

OUTPUT_OF_LAYOUT = "an output or manifest of the configured layout (recursion guard)"
EXCLUDED = "the path matches an exclude glob"
NO_RULE = "no rule matches this file"


@dataclass(frozen=True)
class Verdict:
    """``pipelines`` to run, or the reason the path is skipped."""

    pipelines: tuple[str, ...] = ()
    reason: str | None = None

    @property
    def run(self) -> bool:
        return self.reason is None


def triage(
    relpath: str,
    *,
    layout: Layout,
    rules: Sequence[Rule],
    exclude: Sequence[str],
    installed: Iterable[str],
    requested: Sequence[str] | None = None,
) -> Verdict:
    """The verdict for a clean workspace-relative ``relpath``.  ``requested`` pipelines (a ``--pipeline``
    option, a batch request's ``pipelines``) replace the rules but not the other two checks."""
    if layout.is_output(relpath, installed):
        return Verdict(reason=OUTPUT_OF_LAYOUT)
    if glob_match(relpath, exclude):
        return Verdict(reason=EXCLUDED)
    names = list(requested) if requested else select_pipelines(relpath, rules)
    return Verdict(pipelines=tuple(names)) if names else Verdict(reason=NO_RULE)
