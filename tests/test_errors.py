"""One exceptions module: every error type of the project is defined in config/errors.py, where its exit
code, retryability and kind (the status vocabulary's error words) are read in one place."""

from __future__ import annotations

import ast
import inspect

from conftest import REPO

import config.errors as errors


def test_every_exception_class_lives_in_config_errors() -> None:
    stray = []
    for pkg in ("config", "pipelines", "handlers"):
        for path in sorted((REPO / pkg).rglob("*.py")):
            if path == REPO / "config/errors.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef) and any(
                    isinstance(b, ast.Name | ast.Attribute)
                    and (getattr(b, "id", None) or getattr(b, "attr", "")).endswith(("Error", "Exception"))
                    for b in node.bases
                ):
                    stray.append(f"{path.relative_to(REPO)}:{node.lineno} class {node.name}")
    assert stray == []


def test_error_kinds_are_distinct_and_exit_codes_documented() -> None:
    kinds: dict[str, str] = {}
    for name, cls in inspect.getmembers(errors, inspect.isclass):
        if issubclass(cls, errors.MediaWorkerError) and cls is not errors.MediaWorkerError:
            assert cls.kind not in kinds, f"{name} and {kinds.get(cls.kind)} share kind {cls.kind!r}"
            kinds[cls.kind] = name
            assert cls.exit_code in set(errors.ExitCode)
    readme = (REPO / "README.md").read_text()
    for code in errors.ExitCode:
        assert f"**{int(code)}**" in readme, f"exit code {int(code)} is not documented in the README"
