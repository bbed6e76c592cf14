"""Output layout: where each output and each source's manifest is written.

Templates are relative to the workspace and use ``{placeholders}``:

========== ===================================================== ====================
name       meaning                                               ``photos/Cat.JPG``
========== ===================================================== ====================
pipeline   pipeline name                                         ``thumbnails``
variant    pipeline's name for the output                        ``thumb``
dir        source folder ('' at the root)                        ``photos``
stem       source file name without its last extension           ``Cat``
name       source file name                                      ``Cat.JPG``
src_ext    source extension, without the dot, as written         ``JPG``
ext        output extension, without the dot                     ``webp``
========== ===================================================== ====================

Empty path segments (``{dir}`` at the root) are dropped.  Rendered paths must fit in an S3 key
(1,024 bytes of UTF-8).
"""

from __future__ import annotations

import posixpath
import re
import string
from collections.abc import Iterable, Iterator, Mapping
from pathlib import PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from config.errors import ConfigError, PathError
from config.rules import Rule, glob_match

MAX_KEY_BYTES = 1024
PLACEHOLDERS = ("pipeline", "variant", "dir", "stem", "name", "src_ext", "ext")

PRESETS: dict[str, tuple[str, str]] = {
    # name: (output template, manifest template)
    "mirror": ("processed/{pipeline}/{variant}/{dir}/{name}.{ext}", "processed/_manifests/{dir}/{name}.json"),
    "sidecar": ("{dir}/{name}.{pipeline}.{variant}.{ext}", "{dir}/{name}.manifest.json"),
}


def _fields(template: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]


def _check_template(template: str, *, needs: Iterable[str]) -> str:
    try:
        fields = _fields(template)
    except ValueError as exc:
        raise ValueError(f"template {template!r}: {exc}") from None
    for f in fields:
        if f not in PLACEHOLDERS:
            raise ValueError(
                f"template {template!r}: unknown placeholder {{{f}}}; use {', '.join(PLACEHOLDERS)}"
            )
    for f in needs:
        if f not in fields:
            raise ValueError(
                f"template {template!r} must use {{{f}}} so different outputs get different paths"
            )
    if template.startswith("/") or ".." in PurePosixPath(template).parts:
        raise ValueError(f"template {template!r} must stay inside the workspace")
    return template


def split_source(relpath: str) -> dict[str, str]:
    """Placeholder values that come from the source path."""
    p = PurePosixPath(relpath)
    parent = str(p.parent)
    return {
        "dir": "" if parent == "." else parent,
        "name": p.name,
        "stem": p.stem if p.suffix else p.name,
        "src_ext": p.suffix[1:],
    }


def normalise(rendered: str) -> str:
    """Drop empty segments; refuse '.'/'..' segments and keys longer than S3 allows."""
    parts = [s for s in rendered.split("/") if s]
    if any(s in (".", "..") for s in parts) or not parts:
        raise PathError(f"rendered path {rendered!r} is not a plain relative path")
    path = "/".join(parts)
    size = len(path.encode("utf-8", "surrogateescape"))
    if size > MAX_KEY_BYTES:
        raise PathError(
            f"output path is {size} bytes of UTF-8, over the S3 key limit of {MAX_KEY_BYTES}: {path[:80]}…"
        )
    return path


def _template_regex(template: str, pipelines: Iterable[str] = ()) -> re.Pattern[str]:
    """A regex matching any path this template can render ({dir} may be empty, other fields not;
    {pipeline} is one of ``pipelines`` when they are given)."""
    names = "|".join(re.escape(p) for p in sorted(pipelines)) or "[^/]+"
    chunks = []
    for piece in template.split("{dir}/"):
        out = []
        for literal, field, _, _ in string.Formatter().parse(piece):
            out.append(re.escape(literal))
            if field is not None:
                out.append({"dir": ".*", "pipeline": f"(?:{names})"}.get(field, "[^/]+"))
        chunks.append("".join(out))
    return re.compile("(?:.+/)?".join(chunks) + r"\Z")


LEASE_SUFFIX = ".lease"
FAILURE_SUFFIX = ".failed"


class Layout(BaseModel):
    """Output and manifest path templates (a preset or your own)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: Literal["mirror", "sidecar"] = Field(
        default="mirror", description="mirror: under processed/; sidecar: next to the source."
    )
    output_template: str | None = Field(default=None, description="Overrides the preset's output template.")
    manifest_template: str | None = Field(
        default=None, description="Overrides the preset's manifest template."
    )

    @field_validator("output_template")
    @classmethod
    def _check_output(cls, v: str | None) -> str | None:
        return None if v is None else _check_template(v, needs=("pipeline", "variant", "ext"))

    @field_validator("manifest_template")
    @classmethod
    def _check_manifest(cls, v: str | None) -> str | None:
        return None if v is None else _check_template(v, needs=())

    @model_validator(mode="after")
    def _distinct(self) -> Layout:
        if not ({"name"} & set(_fields(self.output)) or {"stem"} & set(_fields(self.output))):
            raise ValueError("output_template must use {name} or {stem}")
        if "name" not in _fields(self.manifest):
            raise ValueError("manifest_template must use {name} so each source has its own manifest")
        return self

    @property
    def output(self) -> str:
        return self.output_template or PRESETS[self.preset][0]

    @property
    def manifest(self) -> str:
        return self.manifest_template or PRESETS[self.preset][1]

    def output_path(self, source: str, pipeline: str, variant: str, ext: str) -> str:
        values = split_source(source) | {"pipeline": pipeline, "variant": variant, "ext": ext}
        return normalise(self.output.format_map(values))

    def manifest_path(self, source: str) -> str:
        return normalise(
            self.manifest.format_map(split_source(source) | {"pipeline": "", "variant": "", "ext": ""})
        )

    def lease_path(self, source: str) -> str:
        """The job's lease file: beside the manifest, so rules and upload filters ignore it as they do
        the manifest (pipelines/workspace/lease.py)."""
        return self.manifest_path(source) + LEASE_SUFFIX

    def failure_path(self, source: str) -> str:
        """The record of a source's last failure (pipelines/workspace/failure.py): beside the manifest,
        like the lease, and removed when a later job commits its manifest."""
        return self.manifest_path(source) + FAILURE_SUFFIX

    def is_output(self, relpath: str, pipelines: Iterable[str] = ()) -> bool:
        """True if ``relpath`` looks like something this layout writes (an output of one of
        ``pipelines``, any pipeline if none are given, a manifest, or a manifest's lease or failure
        record)."""
        rel = relpath.removesuffix(LEASE_SUFFIX).removesuffix(FAILURE_SUFFIX)
        return bool(
            _template_regex(self.output, pipelines).match(relpath)
            or _template_regex(self.manifest).match(rel)
        )

    def output_globs(self, pipelines: Iterable[str] = ()) -> list[str]:
        """Globs that match what this layout writes (for ``pipelines``), to put in an ``exclude``."""
        templates = [self.output.replace("{pipeline}", p) for p in pipelines] or [self.output]
        globs = []
        for t in [*templates, self.manifest, self.manifest + LEASE_SUFFIX, self.manifest + FAILURE_SUFFIX]:
            g = re.sub(r"\{dir\}/?", "**/", t)
            g = re.sub(r"\{[a-z_]+\}", "*", g)
            globs.append(g.removeprefix("**/"))
        return globs

    def check_against_rules(
        self, rules: list[Rule], exclude: list[str], variants: Mapping[str, list[tuple[str, str]]]
    ) -> None:
        """Recursion guard: refuse a layout whose outputs the rules would pick up as sources."""
        for example, path in self._example_outputs(rules, variants):
            if glob_match(path, exclude):
                continue
            for other in rules:
                if other.matches(path):
                    names = sorted({p for r in rules for p in r.pipelines})
                    raise ConfigError(
                        f"layout: output {path!r} (of {example!r}) would be picked up again by the rule for "
                        f"{other.pipelines}: an upload trigger would process its own outputs. "
                        f"Add exclude = {self.output_globs(names)!r}, or change the layout."
                    )

    def _example_outputs(
        self, rules: list[Rule], variants: Mapping[str, list[tuple[str, str]]]
    ) -> Iterator[tuple[str, str]]:
        """(example source, path written for it) for a source matching each include glob of each rule."""
        for rule in rules:
            for pattern in rule.include:
                example = example_path(pattern)
                if not rule.matches(example):
                    continue
                yield example, self.manifest_path(example)
                for pipeline in rule.pipelines:
                    for variant, ext in variants.get(pipeline, []):
                        yield example, self.output_path(example, pipeline, variant, ext)


def example_path(pattern: str) -> str:
    """A concrete path that a glob like ``incoming/**/*.JPG`` matches, for layout checks."""
    p = pattern.replace("**", "x")
    p = re.sub(r"\{([^,}]*)[^}]*\}", r"\1", p)  # {a,b} -> a
    p = re.sub(r"\[!?([^\]])[^\]]*\]", r"\1", p)  # [abc] -> a
    p = p.replace("*", "sample").replace("?", "s")
    return p if "/" in pattern else p.rsplit("/", 1)[-1]


def relative_url(target_rel: str, from_rel: str) -> str:
    """URL of workspace path ``target_rel`` relative to the file ``from_rel`` (both relative paths)."""
    from urllib.parse import quote

    rel = posixpath.relpath(target_rel, posixpath.dirname(from_rel) or ".")
    return "/".join(quote(part, safe="!$&'()*+,;=:@-._~") for part in rel.split("/"))
