"""No function in config/, pipelines/ or handlers/ is longer than MAX_LINES: a longer one is split into
steps named for what they do (issue 22).

A function's length is ``end_lineno - lineno + 1`` of its ``def`` node: from the ``def`` line (its
decorators are not counted) to its last line, docstring, comments and nested functions included.
Nested functions and methods are measured too, by their qualified name.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from conftest import REPO

MAX_LINES = 60
PACKAGES = ("config", "pipelines", "handlers")
# Functions allowed to stay longer for now, by "path::qualified.name".  Keep it empty: an entry is only
# for a function another change is already restructuring, and goes when that change lands.
ALLOWED: frozenset[str] = frozenset()  # none left: Engine._process was split into named steps


def function_lengths(source: str) -> Iterator[tuple[str, int]]:
    """(qualified name, lines) of every function and method in ``source``, nested ones included."""

    def visit(node: ast.AST, prefix: str) -> Iterator[tuple[str, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                assert child.end_lineno is not None
                yield name, child.end_lineno - child.lineno + 1
                yield from visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                yield from visit(child, f"{prefix}{child.name}.")
            else:
                yield from visit(child, prefix)

    yield from visit(ast.parse(source), "")


def long_functions() -> dict[str, int]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            for name, lines in function_lengths(path.read_text(encoding="utf-8")):
                if lines > MAX_LINES:
                    found[f"{rel}::{name}"] = lines
    return found


def test_lengths_count_from_the_def_line_to_the_last_line() -> None:
    source = (
        "import functools\n"
        "@functools.cache\n"  # not counted
        "def f():\n"
        "    '''Doc.'''\n"
        "    def inner():\n"
        "        return 1\n"
        "    return inner()\n"
        "class C:\n"
        "    async def m(self):\n"
        "        pass\n"
    )
    assert dict(function_lengths(source)) == {"f": 5, "f.inner": 2, "C.m": 2}


def test_no_function_is_longer_than_the_limit() -> None:
    too_long = {name: n for name, n in long_functions().items() if name not in ALLOWED}
    assert not too_long, f"split these into steps of at most {MAX_LINES} lines: {too_long}"


def test_the_allow_list_names_only_functions_still_too_long() -> None:
    stale = ALLOWED - long_functions().keys()
    assert not stale, f"no longer over {MAX_LINES} lines (or gone): drop them from ALLOWED: {sorted(stale)}"
