"""A test pipeline whose job the test holds open: for the lease tests, and a ledger known by hand.

``gate`` takes .txt sources.  Its run marks ``entered.<pid>`` in the folder ``[plugins.gate] gates``
(outside the workspace), reads the source, writes its ``first`` output, and then waits until the test
creates ``open`` in that folder before it writes ``second``: a job lasts exactly as long as the test
wants, with no sleep of a guessed length.  A source starting with ``FAIL`` fails (bad input) after
the first output.  Outputs depend on the source's bytes only (like a real pipeline's), so two writers
write the same bytes; who ran is in the ``entered.<pid>`` marks.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, ClassVar

from config.base import Section
from config.errors import BadInputError
from config.settings import Settings, load_settings
from pipelines.core.engine import Engine
from pipelines.core.registry import Registry
from pipelines.spec import Job, Pipeline, PlannedOutput, SourceInfo

GATE_LIMIT = 300.0  # a gate the test never opens (a test that failed) ends the job instead of hanging


class GateOptions(Section):
    gates: str = ""  # the test's folder: entered.<pid> marks, and the `open` file (empty: no gate)


class GatePipeline(Pipeline):
    name = "gate"
    description = "Writes two outputs, waiting for the test between them (test fixture)"
    inputs: ClassVar[dict[str, str]] = {"txt": "text/plain"}
    settings_model = GateOptions

    def plan(self, source: SourceInfo, settings: Settings) -> list[PlannedOutput]:
        return [PlannedOutput("first", "txt", "text/plain"), PlannedOutput("second", "txt", "text/plain")]

    def run(self, job: Job) -> None:
        gates = self.options(job.settings).gates
        if gates:
            (Path(gates) / f"entered.{os.getpid()}").touch()
        data = job.read_source()
        digest = hashlib.sha256(data).hexdigest().encode()
        job.write_output(self.name, "first", b"first:" + digest)  # 70 bytes
        if data.startswith(b"FAIL"):
            raise BadInputError("the source asked the gate pipeline to fail")
        if gates:
            wait_for_file(Path(gates) / "open", GATE_LIMIT)
        job.write_output(self.name, "second", b"second:" + digest)  # 71 bytes


def wait_for_file(path: Path, limit: float) -> None:
    end = time.monotonic() + limit
    while not path.exists():
        if time.monotonic() > end:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.01)


def gate_engine(ws: Path, gates: Path | None = None, **overrides: Any) -> Engine:
    """An engine on ``ws`` whose only pipeline is ``gate`` (with ``gates`` as its folder)."""
    registry = Registry()
    registry.register(GatePipeline(), origin="tests/gate_pipeline.py")
    plugins = {"gate": {"gates": str(gates) if gates else ""}}
    return Engine(load_settings(None, workspace=ws, plugins=plugins, **overrides), registry=registry)


def entered(gates: Path) -> list[int]:
    """The pids whose job entered the pipeline."""
    return sorted(int(p.name.split(".", 1)[1]) for p in gates.glob("entered.*"))


FORK = multiprocessing.get_context("fork")


def _job(engine: Engine, rel: str, out: Path, barrier: Any) -> None:
    if barrier is not None:
        barrier.wait(timeout=120)
    result = engine.process(rel)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result.to_dict()))
    tmp.rename(out)


def start_job(engine: Engine, rel: str, out: Path, barrier: Any = None) -> BaseProcess:
    """``engine.process(rel)`` in a process of its own (forked: the engine and its pipeline come along),
    after ``barrier.wait()`` if given; its result is written to ``out`` as JSON."""
    proc = FORK.Process(target=_job, args=(engine, rel, out, barrier))
    proc.start()
    return proc


def result_of(proc: BaseProcess, out: Path, timeout: float = 300) -> dict[str, Any]:
    proc.join(timeout)
    assert proc.exitcode == 0, f"job process {proc.pid}: exit {proc.exitcode}"
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc
