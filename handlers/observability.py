"""Powertools Logger, Metrics and Tracer for the Lambda handlers.

* Logger: JSON lines on stdout; correlation id = the Lambda request id; ``source_key`` on every line
  logged while a source is processed (every module's logger sits under ``media_worker`` and is routed
  through it).
* Metrics: CloudWatch EMF, namespace and service from ``[aws]`` settings, flushed once per invocation.
  Per job: ``Jobs<Status>`` (Count), ``JobDuration`` (Milliseconds), ``SourceBytes``, ``OutputBytes``,
  ``BytesRead1MiB`` (source bytes read by the worker with >= 1 MiB read() calls).
* Tracer: on only with ``aws.tracing = true`` *and* the X-Ray SDK importable; otherwise a no-op.

The objects are created at import (cheap: no settings needed) and configured by :func:`configure`
once settings are loaded.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit

from config.logs import ROOT as LOG_ROOT

if TYPE_CHECKING:
    from config.aws import AwsSettings

logger = Logger(service="media-worker")
metrics = Metrics(namespace="MediaWorker", service="media-worker")
_tracer: Any = None

STATUS_METRICS = {
    "ok": "JobsOk",
    "skipped": "JobsSkipped",
    "failed": "JobsFailed",
    "timeout": "JobsTimeout",
    "ignored": "EventsIgnored",
    "rejected": "EventsRejected",
}


def configure(aws: AwsSettings) -> None:
    """Apply the ``[aws]`` settings to the logger, metrics and tracer (when settings are (re)loaded)."""
    global _tracer
    logger.append_keys(service=aws.service_name)
    metrics.namespace = aws.metrics_namespace
    metrics.service = aws.service_name
    # every module logs under the stdlib logger "media_worker" (config.logs): same JSON handler, same keys
    logging.getLogger(LOG_ROOT)  # make sure it is registered, so it is found and rewired
    copy_config_to_registered_loggers(source_logger=logger, include={LOG_ROOT})
    _tracer = None
    if aws.tracing and importlib.util.find_spec("aws_xray_sdk") is not None:
        from aws_lambda_powertools import Tracer

        _tracer = Tracer(service=aws.service_name)


class ProgressLog:
    """An engine progress callback that logs each pipeline's progress at most every ``interval`` seconds
    (and always when it reaches 100 %), so long transcodes show up in CloudWatch as they run."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[tuple[str, str], float] = {}

    def __call__(self, source: str, pipeline: str, fraction: float, message: str) -> None:
        now = time.monotonic()
        key = (source, pipeline)
        if fraction < 1.0 and now - self._last.get(key, -math.inf) < self.interval:
            return
        self._last[key] = now
        logger.info(
            f"{pipeline}: {fraction:.0%}",
            extra={"pipeline": pipeline, "progress": round(fraction, 3), "detail": message},
        )


def tracing_enabled() -> bool:
    return _tracer is not None and not _tracer.disabled


@contextlib.contextmanager
def segment(name: str, **annotations: str) -> Iterator[None]:
    """An X-Ray subsegment when tracing is on; nothing otherwise."""
    if not tracing_enabled():
        yield
        return
    with _tracer.provider.in_subsegment(name) as sub:
        for k, v in annotations.items():
            sub.put_annotation(k, v)
        yield


@contextlib.contextmanager
def source_context(key: str, relpath: str | None = None) -> Iterator[None]:
    """Every log line inside carries the source key (and its workspace path)."""
    keys = {"source_key": key}
    if relpath is not None:
        keys["source_path"] = relpath
    logger.append_keys(**keys)
    try:
        yield
    finally:
        logger.remove_keys(list(keys))


def count(status: str) -> None:
    metrics.add_metric(name=STATUS_METRICS.get(status, "JobsOther"), unit=MetricUnit.Count, value=1)


def count_configuration_error() -> None:
    """``ConfigurationErrors``: an invocation refused because the deployment is wrong (alarm on it)."""
    metrics.add_metric(name="ConfigurationErrors", unit=MetricUnit.Count, value=1)


def job_metrics(result: Any, *, large_reads: bool) -> None:
    """Per-job metrics from a :class:`pipelines.result.SourceResult`; ``large_reads``: the workspace
    reads in blocks of >= 1 MiB (``read_block_bytes``), so every byte the worker read counts."""
    count(result.status)
    metrics.add_metric(
        name="JobDuration", unit=MetricUnit.Milliseconds, value=round(result.duration_s * 1000, 1)
    )
    metrics.add_metric(name="SourceBytes", unit=MetricUnit.Bytes, value=result.source_bytes)
    metrics.add_metric(name="OutputBytes", unit=MetricUnit.Bytes, value=result.output_bytes)
    metrics.add_metric(
        name="BytesRead1MiB", unit=MetricUnit.Bytes, value=result.bytes_read if large_reads else 0
    )
