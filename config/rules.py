"""Rules: which pipelines run for which sources.

Globs are matched against the source path relative to the workspace, case-insensitively
(``*.jpg`` matches ``IMG_1.JPG``).  A glob without ``/`` matches the file name in any folder;
``**`` matches any number of folders.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

import bracex
from pydantic import BaseModel, ConfigDict, Field, field_validator
from wcmatch import glob

GLOB_FLAGS = glob.GLOBSTAR | glob.IGNORECASE | glob.MATCHBASE | glob.DOTMATCH | glob.FORCEUNIX | glob.BRACE


_SUFFIX_ONLY = re.compile(r"\*\.([A-Za-z0-9_+-]+)\Z")
_NAMED_SUFFIX = re.compile(r"[^/]*\.([A-Za-z0-9_+-]+)\Z")  # a last path part ending in a literal .ext


def glob_match(path: str, patterns: Iterable[str]) -> bool:
    """True if the workspace-relative ``path`` matches any of ``patterns``."""
    pats = tuple(patterns)
    if not pats:
        return False
    suffixes, matcher = _compiled(pats)
    if suffixes:
        name = path.rsplit("/", 1)[-1].lower()
        dot = name.rfind(".")
        if dot >= 0 and name[dot:] in suffixes:
            return True
    return matcher is not None and bool(matcher.match(path))


def named_suffixes(pattern: str) -> list[str]:
    """The lower-case suffixes every path ``pattern`` matches must end in, one per brace alternative
    (``*.{jpg,png}``, ``raw/**/IMG_*.JPG``); alternatives whose suffix a glob leaves open (``scans/**``,
    ``*.jp*``, ``*.[jp]pg``) name none."""
    try:
        alternatives = bracex.expand(pattern, keep_escapes=True)
    except (ValueError, RuntimeError):  # over bracex's expansion limit: nothing to decide
        return []
    found = (_NAMED_SUFFIX.match(alt.rsplit("/", 1)[-1]) for alt in alternatives)
    return list(dict.fromkeys(m[1].lower() for m in found if m))


@functools.lru_cache(maxsize=512)
def _compiled(patterns: tuple[str, ...]) -> tuple[frozenset[str], Any]:
    """A pattern set prepared once: ``*.ext`` patterns (the default rules: dozens of them) as a set of
    lower-case suffixes - with MATCHBASE, IGNORECASE and DOTMATCH exactly "the file name ends in .ext" -
    and the rest compiled by wcmatch (which otherwise compiles on every call, ~0.4 ms each, and ~20 ms
    for a rule's whole suffix list)."""
    suffixes = {f".{m[1].lower()}" for p in patterns if (m := _SUFFIX_ONLY.match(p))}
    rest = [p for p in patterns if not _SUFFIX_ONLY.match(p)]
    return frozenset(suffixes), glob.compile(rest, flags=GLOB_FLAGS) if rest else None


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
