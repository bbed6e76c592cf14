"""Many sources: walk paths in a stable order and process them in a pool of worker processes."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from queue import Empty
from typing import Any

from config.settings import Settings
from pipelines.core.engine import Engine, ProgressCallback, SourceResult
from pipelines.core.registry import import_modules
from pipelines.tools.host import available_cpus

_engine: Engine | None = None


def iter_sources(engine: Engine, paths: Iterable[str]) -> Iterator[str]:
    """Files named by ``paths`` (files or folders), each once, in a stable order."""
    seen: set[str] = set()
    for p in paths:
        for rel in engine.ws.walk(p):
            if rel not in seen:
                seen.add(rel)
                yield rel


_progress_queue: Any = None


def warm_modules(engine: Engine, names: Sequence[str] | None = None) -> dict[str, str]:
    """Modules a worker needs before its first file (name -> who needs it): the engine, and for each
    pipeline in ``names`` (default: all installed) its module and the modules it declares in
    ``warm_modules`` (what it would otherwise import on first use).  A batch of photos does not preload
    the video or OCR libraries."""
    return {"pipelines.batch.pool": "media-worker", **engine.registry.warm_modules(names)}


def _init_worker(
    settings: Settings, progress_queue: Any = None, modules: Mapping[str, str] | None = None
) -> None:
    """Each worker, once: the engine, then the pipelines' first-use imports (already in memory when the
    worker was forked from the parent or from a forkserver that imported them)."""
    global _engine, _progress_queue
    if _engine is None or _engine.settings is not settings:  # forked from the parent: it has one
        _engine = Engine(settings)
    _progress_queue = progress_queue
    import_modules(modules or {})


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
    results: dict[str, SourceResult] = {}
    eng = engine or Engine(settings)
    todo = []
    for rel in sources:  # up-to-date and unrouted sources are settled here: no worker, no IPC
        res = eng.up_to_date(rel, pipelines)
        if res is None:
            todo.append(rel)
            continue
        results[rel] = res
        if on_result:
            on_result(res)
    n = min(workers or settings.workers or available_cpus(), len(todo))
    if n <= 1:
        for rel in todo:
            results[rel] = res = eng.process(rel, pipelines=pipelines, progress=progress)
            if on_result:
                on_result(res)
        return [results[r] for r in sources]
    warm = warm_modules(eng, eng.pipelines_for(todo, pipelines))
    pool_run = _PoolRun(settings, pipelines, results, on_result, progress, warm, eng)
    remaining = todo
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
        modules: Mapping[str, str] | None = None,
        engine: Engine | None = None,
    ) -> None:
        self.settings, self.pipelines, self.results = settings, pipelines, results
        self.on_result, self.progress, self.modules = on_result, progress, dict(modules or {})
        self.engine = engine

    def _context(self) -> Any:
        """Workers forked from this process when it runs no other thread: they start with its engine and
        the pipelines' modules, imported here once (no second interpreter to boot: ~0.4 s less before
        the first file).  Otherwise (a progress bar's refresh thread, say: fork copies only the calling
        thread, and a lock another thread held stays held in the child) from a forkserver that
        imports them."""
        global _engine
        if self.engine is not None and threading.active_count() == 1:
            import_modules(self.modules)
            _engine = self.engine
            return multiprocessing.get_context("fork")
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(list(self.modules))  # imported once, in the forkserver; workers fork warm
        return ctx

    def __call__(self, sources: list[str], n: int) -> tuple[list[str], list[str]]:
        """If the pool breaks, returns (sources in flight, sources not started); else two empty lists."""
        ctx = self._context()
        queue = ctx.Queue() if self.progress is not None else None
        todo = iter(sources)
        in_flight: list[str] = []
        with ProcessPoolExecutor(
            max_workers=n,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(self.settings, queue, self.modules),
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
