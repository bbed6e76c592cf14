"""Many sources: walk paths in a stable order and process them in a pool of worker processes."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from queue import Empty
from typing import Any

from config.settings import Settings
from pipelines.engine import Engine, ProgressCallback, SourceResult

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


_progress_queue: Any = None


def _init_worker(settings: Settings, progress_queue: Any = None) -> None:
    global _engine, _progress_queue
    _engine = Engine(settings)
    _progress_queue = progress_queue


def _report(source: str, pipeline: str, fraction: float, message: str) -> None:
    if _progress_queue is not None:
        _progress_queue.put((source, pipeline, fraction, message))


def _work(relpath: str, pipelines: Sequence[str] | None) -> SourceResult:
    assert _engine is not None
    return _engine.process(relpath, pipelines=pipelines, progress=_report if _progress_queue else None)


def _drain(queue: Any, progress: ProgressCallback | None) -> None:
    while progress is not None:
        try:
            progress(*queue.get_nowait())
        except Empty:
            return


def run_many(
    settings: Settings,
    sources: Sequence[str],
    *,
    pipelines: Sequence[str] | None = None,
    workers: int | None = None,
    on_result: Callable[[SourceResult], None] | None = None,
    engine: Engine | None = None,
    progress: ProgressCallback | None = None,
) -> list[SourceResult]:
    """Process ``sources``; results come back in ``sources`` order, ``on_result`` sees each as it ends,
    ``progress`` sees the pipelines' progress reports (in this process, also from pool workers)."""
    n = min(workers or settings.workers or available_cpus(), len(sources))
    results: dict[str, SourceResult] = {}
    if n <= 1:
        eng = engine or Engine(settings)
        for rel in sources:
            results[rel] = res = eng.process(rel, pipelines=pipelines, progress=progress)
            if on_result:
                on_result(res)
        return [results[r] for r in sources]
    pool_run = _PoolRun(settings, pipelines, results, on_result, progress)
    remaining = list(sources)
    while remaining:
        suspects, remaining = pool_run(remaining, n)
        # a worker died (OOM kill, a codec segfault) and took the pool down: retry the sources that
        # were in flight one at a time, each in a fresh process, so only the culprit fails
        for rel in suspects:
            crashed, _ = pool_run([rel], 1)
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


class _PoolRun:
    """Runs a list of sources in a fresh pool; reports results and progress as they come."""

    def __init__(
        self,
        settings: Settings,
        pipelines: Sequence[str] | None,
        results: dict[str, SourceResult],
        on_result: Callable[[SourceResult], None] | None,
        progress: ProgressCallback | None,
    ) -> None:
        self.settings, self.pipelines, self.results = settings, pipelines, results
        self.on_result, self.progress = on_result, progress

    def __call__(self, sources: list[str], n: int) -> tuple[list[str], list[str]]:
        """If the pool breaks, returns (sources in flight, sources not started); else two empty lists."""
        ctx = multiprocessing.get_context("forkserver")
        queue = ctx.Queue() if self.progress is not None else None
        todo = iter(sources)
        in_flight: list[str] = []
        with ProcessPoolExecutor(
            max_workers=n, mp_context=ctx, initializer=_init_worker, initargs=(self.settings, queue)
        ) as pool:
            pending: dict[Future[SourceResult], str] = {}
            while True:
                for rel in todo:  # keep the queue short so a huge prefix is not submitted all at once
                    pending[pool.submit(_work, rel, self.pipelines)] = rel
                    if len(pending) >= 2 * n:
                        break
                if not pending:
                    _drain(queue, self.progress)
                    return [], []
                done, _ = wait(
                    pending, timeout=0.25 if queue is not None else None, return_when=FIRST_COMPLETED
                )
                _drain(queue, self.progress)
                for fut in done:
                    rel = pending.pop(fut)
                    try:
                        res = fut.result()
                    except BrokenProcessPool:
                        in_flight.append(rel)
                        continue
                    self.results[rel] = res
                    if self.on_result:
                        self.on_result(res)
                if in_flight:
                    in_flight.extend(pending.values())
                    return in_flight, list(todo)
