"""Many sources: walk paths in a stable order and process them in a pool of worker processes."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from config.settings import Settings
from pipelines.engine import Engine, SourceResult

_engine: Engine | None = None


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def iter_sources(engine: Engine, paths: Iterable[str]) -> Iterator[str]:
    """Files named by ``paths`` (files or folders), each once, in a stable order."""
    seen: set[str] = set()
    for p in paths:
        for rel in engine.ws.walk(p):
            if rel not in seen:
                seen.add(rel)
                yield rel


def _init_worker(settings: Settings) -> None:
    global _engine
    _engine = Engine(settings)


def _work(relpath: str, pipelines: Sequence[str] | None) -> SourceResult:
    assert _engine is not None
    return _engine.process(relpath, pipelines=pipelines)


def run_many(
    settings: Settings,
    sources: Sequence[str],
    *,
    pipelines: Sequence[str] | None = None,
    workers: int | None = None,
    on_result: Callable[[SourceResult], None] | None = None,
    engine: Engine | None = None,
) -> list[SourceResult]:
    """Process ``sources``; results come back in ``sources`` order, ``on_result`` sees each as it ends."""
    n = min(workers or settings.workers or available_cpus(), len(sources))
    results: dict[str, SourceResult] = {}
    if n <= 1:
        eng = engine or Engine(settings)
        for rel in sources:
            results[rel] = res = eng.process(rel, pipelines=pipelines)
            if on_result:
                on_result(res)
        return [results[r] for r in sources]
    remaining = list(sources)
    while remaining:
        suspects, remaining = _pool_run(settings, remaining, pipelines, n, results, on_result)
        # a worker died (OOM kill, a codec segfault) and took the pool down: retry the sources that
        # were in flight one at a time, each in a fresh process, so only the culprit fails
        for rel in suspects:
            crashed, _ = _pool_run(settings, [rel], pipelines, 1, results, on_result)
            if crashed:
                res = SourceResult(
                    source=rel,
                    status="failed",
                    error_kind="crash",
                    error="the worker process died while processing this file (killed or crashed)",
                )
                results[rel] = res
                if on_result:
                    on_result(res)
    return [results[r] for r in sources]


def _pool_run(
    settings: Settings,
    sources: list[str],
    pipelines: Sequence[str] | None,
    n: int,
    results: dict[str, SourceResult],
    on_result: Callable[[SourceResult], None] | None,
) -> tuple[list[str], list[str]]:
    """Run ``sources`` in a pool of ``n``.  If the pool breaks, returns (sources in flight, sources
    not started); otherwise two empty lists."""
    ctx = multiprocessing.get_context("forkserver")
    todo = iter(sources)
    in_flight: list[str] = []
    with ProcessPoolExecutor(
        max_workers=n, mp_context=ctx, initializer=_init_worker, initargs=(settings,)
    ) as pool:
        pending: dict[Future[SourceResult], str] = {}
        while True:
            for rel in todo:  # keep the queue short so a huge prefix is not submitted all at once
                pending[pool.submit(_work, rel, pipelines)] = rel
                if len(pending) >= 2 * n:
                    break
            if not pending:
                return [], []
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                rel = pending.pop(fut)
                try:
                    res = fut.result()
                except BrokenProcessPool:
                    in_flight.append(rel)
                    continue
                results[rel] = res
                if on_result:
                    on_result(res)
            if in_flight:
                in_flight.extend(pending.values())
                return in_flight, list(todo)
