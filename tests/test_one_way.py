"""One way through the house: one process runner, and only the engine deletes workspace files.

Static checks over the source (AST, no imports) and a behavioural check with a real tool (sh) that
writes part of an output before it fails or runs into the job's deadline.
"""

from __future__ import annotations

import ast
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, failure_records, files_but_failure_records

from config.settings import load_settings
from pipelines.core.engine import Engine
from pipelines.spec import Pipeline, PlannedOutput
from pipelines.tools import runner

# Deletions outside the engine that are allowed: files in the job's scratch folder, removed by the
# code that made them.  (module, enclosing function) -> why it is not a workspace file.
SCRATCH_CLEANUPS = {
    ("pipelines/tools/tesseract.py", "recognize"): "tesseract's txt/tsv/pdf next to the scratch page image",
    ("pipelines/builtin/ocr/pages.py", "_ocr_page"): "the page image in the job's scratch folder",
    (
        "pipelines/tools/ffmpeg.py",
        "_copy_staged",
    ): "an output ffmpeg staged in scratch, once copied to its path",
    ("pipelines/core/scratch.py", "remove"): "the job's own scratch folder (TMPDIR), when the job ends",
    ("pipelines/core/scratch.py", "sweep"): "scratch folders (TMPDIR) of jobs that died, their flock free",
    (
        "pipelines/core/scratch.py",
        "_new_job",
    ): "a job's scratch folder it could not lock and mark (TMPDIR full)",
}
ENGINE_ONLY = {
    "pipelines/core/engine.py",
    "pipelines/workspace/mount.py",
}  # the engine and the only code opening files
DELETERS = {"unlink", "rmdir", "rmtree", "removedirs"}  # method or function names that delete
OS_DELETERS = {"remove", "unlink", "rmdir", "removedirs"}
# starting processes: only the runner may
PROCESS_MODULES = {"subprocess", "pty"}
OS_SPAWNERS = {"system", "popen", "fork", "forkpty", "posix_spawn", "posix_spawnp"}
RUNNER = "pipelines/tools/runner.py"


def modules(*folders: str) -> Iterator[tuple[str, ast.Module]]:
    for folder in folders:
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            yield rel, ast.parse(path.read_text(), filename=rel)


def calls_with_function(tree: ast.Module) -> Iterator[tuple[ast.Call, str]]:
    """Every call in ``tree`` and the name of the function it is in ('' at module level)."""

    def visit(node: ast.AST, func: str) -> Iterator[tuple[ast.Call, str]]:
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else func
            if isinstance(child, ast.Call):
                yield child, func
            yield from visit(child, name)

    yield from visit(tree, "")


def deletes(call: ast.Call) -> bool:
    f = call.func
    if isinstance(f, ast.Attribute):
        if isinstance(f.value, ast.Name) and f.value.id == "os":
            return f.attr in OS_DELETERS
        return f.attr in DELETERS
    return isinstance(f, ast.Name) and f.id in DELETERS  # from os import unlink; from shutil import rmtree


def deletions(folders: tuple[str, ...] = ("pipelines",)) -> list[tuple[str, str, int]]:
    """(module, function, line) of each file deletion outside the engine."""
    found = []
    for rel, tree in modules(*folders):
        if rel in ENGINE_ONLY:
            continue
        for call, func in calls_with_function(tree):
            if deletes(call):
                found.append((rel, func, call.lineno))
    return found


def test_no_pipeline_module_deletes_files_except_scratch_cleanups() -> None:
    unexpected = [d for d in deletions() if (d[0], d[1]) not in SCRATCH_CLEANUPS]
    assert unexpected == [], "only the engine (through mount.py) deletes workspace files"
    # the allow-list stays exact: an entry whose deletion is gone must be dropped
    assert {(m, f) for m, f, _ in deletions()} == set(SCRATCH_CLEANUPS)


def test_the_deletion_check_sees_each_way_of_deleting(tmp_path: Path) -> None:
    """The check itself: each spelling of a deletion is caught, other calls are not."""
    src = (
        "import os, shutil\nfrom os import unlink\nfrom pathlib import Path\n"
        "def f(p):\n    os.unlink(p); os.remove(p); unlink(p); Path(p).unlink(); shutil.rmtree(p)\n"
        "    os.rmdir(p); items.remove(p); p.replace('a', 'b'); run(p)\n"
    )
    tree = ast.parse(src)
    assert [c.lineno for c, func in calls_with_function(tree) if deletes(c) and func == "f"] == [5] * 5 + [6]


def process_starts(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, what) of each import of a process module and each use of an ``os`` spawner."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] in PROCESS_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in PROCESS_MODULES or node.module == "asyncio.subprocess":
                found.append((node.lineno, node.module))
            elif node.module in ("os", "asyncio"):
                found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names if spawner(a.name)]
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("os", "asyncio")
            and spawner(node.attr)
        ):
            found.append((node.lineno, f"{node.value.id}.{node.attr}"))
    return found


def spawner(name: str) -> bool:
    return name in OS_SPAWNERS or name.startswith(("exec", "spawn", "create_subprocess"))


def test_only_the_runner_starts_processes() -> None:
    offenders = [
        f"{rel}:{line}: {what}"
        for rel, tree in modules("config", "pipelines", "handlers")
        if rel != RUNNER
        for line, what in process_starts(tree)
    ]
    assert offenders == [], "start child processes through pipelines.tools.runner.run"
    # the check itself finds each spelling (and the runner's own use)
    src = "import subprocess\nfrom os import execv\nimport os\nos.system('x')\nos.getpid()\n"
    assert [line for line, _ in process_starts(ast.parse(src))] == [1, 2, 4]
    assert process_starts(ast.parse((REPO / RUNNER).read_text()))


def test_pipelines_do_not_render_layout_paths() -> None:
    """Output paths and links come from the job (output_path/output_relpath/output_url)."""
    offenders = []
    for rel, tree in modules("pipelines"):
        if (
            rel in ENGINE_ONLY or rel == "pipelines/core/triage.py"
        ):  # the engine's triage asks, renders nothing
            continue
        if (
            rel == "pipelines/batch/report.py"
        ):  # the merge step reads the layout's manifests back, like the engine
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "layout":
                owner = node.value
                if (isinstance(owner, ast.Name) and owner.id == "settings") or (
                    isinstance(owner, ast.Attribute) and owner.attr == "settings"
                ):
                    offenders.append(f"{rel}:{node.lineno}: settings.layout")
            if isinstance(node, ast.ImportFrom) and node.module == "config.layout":
                offenders.append(f"{rel}:{node.lineno}: from config.layout import ...")
            if isinstance(node, ast.Attribute) and node.attr == "manifest_path":
                offenders.append(f"{rel}:{node.lineno}: manifest_path")
    assert offenders == []


# ---------------------------------------------------------------------------------- behaviour

SH = runner.Program("sh", "install the Debian package dash")


class PartialTool(Pipeline):
    """Writes one output itself and has a tool (sh) write another, which then does ``self.ending``."""

    name = "partial_tool"

    def __init__(self, ending: str) -> None:
        self.ending = ending
        self.pids: list[int] = []

    def plan(self, source: Any, settings: Any) -> list[PlannedOutput]:
        return [
            PlannedOutput("note", "txt", "text/plain"),
            PlannedOutput("out", "bin", "application/octet-stream"),
        ]

    def run(self, job: Any) -> None:
        job.write_output(self.name, "note", b"written by the worker")
        path = job.output_path(self.name, "out", ext="bin")
        script = f'printf partial > "$1"; echo $$; {self.ending}'
        runner.run(
            ["sh", "-c", script, "sh", str(path)],
            program=SH,
            deadline=job.deadline,
            on_stdout=lambda line: self.pids.append(int(line)),
            grace=0.2,
        )


def engine_with(workspace: Path, pipeline: Pipeline) -> Engine:
    (workspace / "in").mkdir(exist_ok=True)
    (workspace / "in/a.dat").write_bytes(b"source")
    eng = Engine(load_settings(None, workspace=workspace))
    eng.registry.register(pipeline, origin="tests")
    return eng


def files(workspace: Path) -> list[str]:
    return sorted(p.relative_to(workspace).as_posix() for p in workspace.rglob("*") if p.is_file())


def test_a_tool_written_output_is_kept_when_the_job_succeeds(workspace: Path) -> None:
    """The control: the same tool, exiting 0, leaves its output (so the failure tests mean something)."""
    res = engine_with(workspace, PartialTool("exit 0")).process("in/a.dat", pipelines=["partial_tool"])
    assert res.status == "ok", res
    out = [o for o in res.outputs if o.endswith(".bin")]
    assert len(out) == 1 and (workspace / out[0]).read_bytes() == b"partial"
    assert len(files(workspace)) == 4  # source, two outputs, manifest


@pytest.mark.parametrize(
    ("ending", "status", "kind"),
    [("echo 'disk on fire' >&2; exit 2", "failed", "tool"), ("exec sleep 30", "timeout", "timeout")],
)
def test_a_failing_tools_partial_output_is_removed_by_the_engine(
    workspace: Path, ending: str, status: str, kind: str
) -> None:
    tool = PartialTool(ending)
    res = engine_with(workspace, tool).process(
        "in/a.dat", pipelines=["partial_tool"], deadline=time.monotonic() + 1.0
    )
    assert res.status == status and res.error_kind == kind, res
    assert res.outputs == [] and res.manifest is None
    # the tool's partial file and the worker's output are gone; the record of why is all that is left
    assert files_but_failure_records(workspace) == ["in/a.dat"]
    assert failure_records(workspace)["in/a.dat"]["error"] == res.error
    assert tool.pids and not Path(f"/proc/{tool.pids[0]}").exists()  # the tool is gone too


class PrunedUnderTheTool(Pipeline):
    """A tool writes the output; on the first run, the output's (still empty) folder is pruned just
    before the tool starts, as a concurrent job's failed clean-up does (``prune_empty_parents``)."""

    name = "pruned_under_the_tool"

    def __init__(self) -> None:
        self.runs = 0

    def plan(self, source: Any, settings: Any) -> list[PlannedOutput]:
        return [PlannedOutput("out", "bin", "application/octet-stream")]

    def run(self, job: Any) -> None:
        self.runs += 1
        path = job.output_path(self.name, "out", ext="bin")
        if self.runs == 1:
            job.ws.prune_empty_parents(job.output_relpath(self.name, "out", ext="bin"))
            assert not path.parent.exists()
        runner.run(["sh", "-c", 'printf whole > "$1"', "sh", str(path)], program=SH, deadline=job.deadline)


def test_a_tool_whose_folder_a_concurrent_clean_up_pruned_is_run_again(workspace: Path) -> None:
    """The tool fails (its output folder is gone); the engine sees the folder vanished and runs the job
    once more, which succeeds: no spurious failure from a neighbour's clean-up."""
    tool = PrunedUnderTheTool()
    res = engine_with(workspace, tool).process("in/a.dat", pipelines=[tool.name])
    assert res.status == "ok", res
    assert tool.runs == 2
    (out,) = res.outputs
    assert (workspace / out).read_bytes() == b"whole"


class Interrupted(Pipeline):
    """Writes its output, then the process is interrupted (Ctrl-C reaching a pool worker)."""

    name = "interrupted"

    def plan(self, source: Any, settings: Any) -> list[PlannedOutput]:
        return [PlannedOutput("note", "txt", "text/plain")]

    def run(self, job: Any) -> None:
        job.write_output(self.name, "note", b"half done")
        raise KeyboardInterrupt


def test_an_interrupted_job_leaves_no_output_and_no_failure_record(workspace: Path) -> None:
    """An interrupt is not the file's fault: it propagates, the partial output goes, and no failure
    record claims the source failed (there is no reason to give)."""
    with pytest.raises(KeyboardInterrupt):
        engine_with(workspace, Interrupted()).process("in/a.dat", pipelines=["interrupted"])
    assert files_but_failure_records(workspace) == ["in/a.dat"]
    assert failure_records(workspace) == {}


class SourceChanger(Pipeline):
    """Writes its output, then does ``self.change`` to the source - as an uploader overwriting it would."""

    name = "source_changer"

    def __init__(self, change: str) -> None:
        self.change = change

    def plan(self, source: Any, settings: Any) -> list[PlannedOutput]:
        return [PlannedOutput("note", "txt", "text/plain")]

    def run(self, job: Any) -> None:
        job.write_output(self.name, "note", b"made from the old source")
        path = job.source_path()
        if self.change == "append":
            with open(path, "ab") as f:
                f.write(b" and more")
        elif self.change == "touch":
            os.utime(path, ns=(0, 0))
        elif self.change == "delete":
            path.unlink()


@pytest.mark.parametrize("change", ["append", "touch", "delete"])
def test_a_source_changed_under_the_job_is_retryable_and_uncommitted(workspace: Path, change: str) -> None:
    eng = engine_with(workspace, SourceChanger(change))
    res = eng.process("in/a.dat", pipelines=["source_changer"])
    assert res.status == "failed" and res.retryable and res.manifest is None, res
    assert ("disappeared" if change == "delete" else "changed while it was processed") in str(res.error)
    assert not (workspace / "processed").exists()  # the output is gone, and the folders made for it
