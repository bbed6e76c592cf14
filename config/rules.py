"""Rules: which pipelines run for which sources.

Globs are matched against the source path relative to the workspace, case-insensitively
(``*.jpg`` matches ``IMG_1.JPG``).  A glob without ``/`` matches the file name in any folder;
``**`` matches any number of folders.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field, field_validator
from wcmatch import glob

GLOB_FLAGS = glob.GLOBSTAR | glob.IGNORECASE | glob.MATCHBASE | glob.DOTMATCH | glob.FORCEUNIX | glob.BRACE


def glob_match(path: str, patterns: Iterable[str]) -> bool:
    """True if the workspace-relative ``path`` matches any of ``patterns``."""
    pats = list(patterns)
    return bool(pats) and glob.globmatch(path, pats, flags=GLOB_FLAGS)


class Rule(BaseModel):
    """Sources matching ``include`` (and not ``exclude``) go through ``pipelines``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    include: list[str] = Field(description="Globs selecting sources, e.g. ['*.jpg', 'photos/**/*.png'].")
    exclude: list[str] = Field(default=[], description="Globs removed from the selection.")
    pipelines: list[str] = Field(description="Pipeline names, in the order they run.")
    enabled: bool = Field(default=True, description="A disabled rule is kept in config but not used.")

    @field_validator("include", "exclude", mode="before")
    @classmethod
    def _one_or_many(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v

    @field_validator("include", "pipelines")
    @classmethod
    def _not_empty(cls, v: list[str]) -> list[str]:
        if not v or any(not s.strip() for s in v):
            raise ValueError("must be a non-empty list of non-empty strings")
        return v

    @field_validator("include", "exclude")
    @classmethod
    def _relative(cls, v: list[str]) -> list[str]:
        for pat in v:
            if pat.startswith("/") or "\0" in pat:
                raise ValueError(f"glob {pat!r} must be relative to the workspace")
        return v

    def matches(self, path: str) -> bool:
        return glob_match(path, self.include) and not glob_match(path, self.exclude)


def select_pipelines(path: str, rules: Iterable[Rule], exclude: Iterable[str] = ()) -> list[str]:
    """Pipelines for ``path``: the union over matching rules, in first-seen order."""
    if glob_match(path, exclude):
        return []
    chosen: list[str] = []
    for rule in rules:
        if rule.enabled and rule.matches(path):
            chosen.extend(p for p in rule.pipelines if p not in chosen)
    return chosen
