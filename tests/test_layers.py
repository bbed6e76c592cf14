"""Which folder may import which: the boundaries of docs/architecture.md, checked over the source.

Every import (at any depth: inside functions and ``TYPE_CHECKING`` blocks too) of every module under
config/, pipelines/ and handlers/ is mapped to the folder it names and checked against :data:`ALLOWED`.
A plug-in (pipelines/builtin/<family>) knows the contract at pipelines/'s root and the shared media and
tools helpers only: never the engine, the pool, the report, the workspace, nor another plug-in, as a
third party's plug-in could not.  Also: the declared ``warm_modules`` of every installed pipeline import.
"""

from __future__ import annotations

import ast
import functools
import importlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO

from pipelines.core import registry
from pipelines.core.registry import import_modules, load_registry

ROOTS = ("config", "pipelines", "handlers")
SUBFOLDERS = ("core", "workspace", "batch", "media", "tools")  # pipelines/<name>/
FAMILIES = ("pipelines.builtin.thumbnails", "pipelines.builtin.ocr", "pipelines.builtin.av")

CONTRACT = {"config", "pipelines"}  # the settings and errors; spec.py, result.py, ledger.py
PLUGIN = {*CONTRACT, "pipelines.media", "pipelines.tools"}
ENGINE = {*CONTRACT, "pipelines.core", "pipelines.workspace", "pipelines.batch", "pipelines.tools"}
# folder -> the folders it may import (besides the standard library and third-party packages)
ALLOWED: dict[str, set[str]] = {
    "config": {"config"},
    "pipelines": CONTRACT,
    "pipelines.tools": {*CONTRACT, "pipelines.tools"},
    "pipelines.workspace": {*CONTRACT, "pipelines.workspace"},
    "pipelines.media": {*CONTRACT, "pipelines.media", "pipelines.tools"},
    "pipelines.core": {*CONTRACT, "pipelines.core", "pipelines.workspace", "pipelines.tools"},
    "pipelines.batch": ENGINE,
    "pipelines.builtin": PLUGIN,
    **{family: {*PLUGIN, family} for family in FAMILIES},  # a plug-in family and its own modules
    "handlers": {*ENGINE, "handlers"},
    "handlers.local": {*ENGINE, "handlers", "handlers.local"},
}
# (file, folder it may import although its own folder may not): why
EXCEPTIONS = {
    ("handlers/cli.py", "handlers.local"): "the one CLI mounts the local stack's commands (stack, invoke)",
}


def folder_of(name: str) -> str | None:
    """The folder of a dotted module (or module.attribute) name; None outside config/pipelines/handlers."""
    parts = name.split(".")
    if parts[0] not in ROOTS:
        return None
    if parts[0] == "handlers":
        return "handlers.local" if parts[1:2] == ["local"] else "handlers"
    if parts[0] == "pipelines" and len(parts) > 1:
        if parts[1] in SUBFOLDERS:
            return f"pipelines.{parts[1]}"
        if parts[1] == "builtin":
            return f"pipelines.builtin.{parts[2]}" if len(parts) > 2 else "pipelines.builtin"
    return parts[0]


def module_name(rel: Path) -> str:
    parts = rel.with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(tree: ast.Module, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, imported name) for every import in ``tree``; ``from a.b import c`` gives ``a.b.c``."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def source_files() -> Iterator[tuple[Path, str, str]]:
    """(path, module, folder) of every module under config/, pipelines/ and handlers/."""
    for root in ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            module = module_name(path.relative_to(REPO))
            folder = folder_of(module)
            assert folder is not None
            yield path, module, folder


@functools.cache
def source_imports() -> list[tuple[str, int, str, str]]:
    """(file, line, importing folder, imported name) over config/, pipelines/ and handlers/."""
    out = []
    for path, module, folder in source_files():
        rel = path.relative_to(REPO).as_posix()
        tree = ast.parse(path.read_text(), filename=rel)
        for line, name in sorted(imports(tree, module, path.name == "__init__.py")):
            out.append((rel, line, folder, name))
    return out


def offences(found: list[tuple[str, int, str, str]]) -> list[str]:
    """One line per import that crosses a boundary: ``file:line: folder imports name (folder)``."""
    out = []
    for file, line, folder, name in found:
        target = folder_of(name)
        if target is None or target == folder:
            continue
        if folder not in ALLOWED:
            out.append(f"{file}:{line}: no rule for folder {folder}: add it to ALLOWED")
        elif target not in ALLOWED[folder] and (file, target) not in EXCEPTIONS:
            out.append(f"{file}:{line}: {folder} may not import {name} ({target})")
        elif name.rpartition(".")[2].startswith("_") and not name.endswith("__"):
            out.append(f"{file}:{line}: {folder} imports the private {name} from {target}")
    return out


def test_each_folder_imports_only_the_folders_below_it() -> None:
    bad = offences(source_imports())
    assert not bad, "imports across a boundary (docs/architecture.md):\n" + "\n".join(bad)


def test_nothing_in_config_or_pipelines_imports_handlers() -> None:
    up = [
        f"{file}:{line}: {name}"
        for file, line, folder, name in source_imports()
        if folder.split(".")[0] in ("config", "pipelines") and name.split(".")[0] == "handlers"
    ]
    assert not up, "\n".join(up)


def test_every_folder_has_a_rule_and_every_rule_a_folder() -> None:
    folders = {folder for _, _, folder in source_files()}
    assert folders == set(ALLOWED), (folders ^ set(ALLOWED), "a new folder needs its row in ALLOWED")


def test_the_check_sees_imports_at_any_depth_and_relative_ones() -> None:
    """A plug-in importing the pool inside a function, the workspace under TYPE_CHECKING, a sibling
    plug-in relatively, and a media helper's private name: each is reported with its file and line."""
    src = (
        "from typing import TYPE_CHECKING\n"
        "from pipelines.spec import Job\n"
        "if TYPE_CHECKING:\n"
        "    from pipelines.workspace.mount import Workspace\n"
        "def f():\n"
        "    from pipelines.batch.pool import available_cpus\n"
        "    import pipelines.core.engine\n"
        "from ..thumbnails import render_image\n"
        "from pipelines.media.imaging import _flatten, encode\n"
        "from . import pages\n"
    )
    found = [
        ("pipelines/builtin/ocr/x.py", line, "pipelines.builtin.ocr", name)
        for line, name in imports(ast.parse(src), "pipelines.builtin.ocr.x", is_package=False)
    ]
    assert sorted(b.split(": ", 1)[0] for b in offences(found)) == [
        f"pipelines/builtin/ocr/x.py:{n}" for n in (4, 6, 7, 8, 9)
    ], offences(found)


# ------------------------------------------------------------------------------------------ warm-up


def declared_warm_modules() -> list[tuple[str, str]]:
    reg = load_registry()
    assert {"thumbnails", "ocr", "transcode", "video_thumbnails"} <= set(reg.pipelines), reg.unavailable
    return sorted((pipeline, module) for module, pipeline in reg.warm_modules().items())


@pytest.mark.parametrize(("pipeline", "module"), declared_warm_modules())
def test_every_declared_warm_module_imports(pipeline: str, module: str) -> None:
    importlib.import_module(module)  # an ImportError here is a stale name in the pipeline's warm_modules


def test_a_stale_warm_module_is_named_in_a_warning(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name inside an installed package that does not exist (a module moved or renamed) is a warning
    naming the pipeline and the module; a library that is not installed at all is left to the
    pipeline's own check (debug only); neither stops the others from importing."""
    monkeypatch.setattr(registry, "_FAILED", set())  # what this process already said
    caplog.set_level(logging.DEBUG, logger="media_worker")
    import_modules(
        {
            "pipelines.media.imagin": "thumbnails",
            "no_such_library_for_media_worker": "third_party",
            "json": "thumbnails",
        }
    )
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "pipelines.media.imagin" in warnings[0] and "'thumbnails'" in warnings[0], warnings
    left = [r for r in caplog.records if "no_such_library_for_media_worker" in r.getMessage()]
    assert [r.levelno for r in left] == [logging.DEBUG]
