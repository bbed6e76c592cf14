"""Many sources: walk paths in a stable order and process them in a pool of worker processes."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

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
    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(
        max_workers=n, mp_context=ctx, initializer=_init_worker, initargs=(settings,)
    ) as pool:
        pending: dict[Future[SourceResult], str] = {}
        todo = iter(sources)
        # keep the queue short so a huge prefix is not submitted all at once
        for rel in todo:
            pending[pool.submit(_work, rel, pipelines)] = rel
            if len(pending) >= 2 * n:
                break
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                rel = pending.pop(fut)
                try:
                    res = fut.result()
                except Exception as exc:  # the worker process died (OOM kill, segfault in a codec)
                    res = SourceResult(
                        source=rel, status="failed", error=f"worker crashed: {exc!r}", error_kind="crash"
                    )
                results[rel] = res
                if on_result:
                    on_result(res)
                nxt = next(todo, None)
                if nxt is not None:
                    pending[pool.submit(_work, nxt, pipelines)] = nxt
    return [results[r] for r in sources]
