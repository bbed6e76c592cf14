"""Pipeline discovery: built-ins and third-party pipelines load the same way, from entry points.

A pipeline that fails to import is logged and listed as unavailable, never fatal.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points

from pydantic import ValidationError

from config.errors import ConfigError, MediaWorkerError, MissingDependencyError
from config.logs import get_logger
from config.rules import Rule, named_suffixes
from config.settings import Settings, format_validation_error
from pipelines.spec import Pipeline, SourceInfo

GROUP = "media_worker.pipelines"
log = get_logger(__name__)
_FAILED: set[str] = set()  # warm modules that did not import in this process


@dataclass
class Registry:
    """Loaded pipelines by name, and the ones that could not be loaded (name -> reason)."""

    pipelines: dict[str, Pipeline] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    _checked: dict[str, MediaWorkerError | None] = field(default_factory=dict)

    def get(self, name: str) -> Pipeline | None:
        return self.pipelines.get(name)

    def why_unavailable(self, name: str) -> str:
        return self.unavailable.get(name, "no pipeline of that name is installed")

    def missing(self, names: Iterable[str]) -> dict[str, str]:
        """Each of ``names`` that is not installed, with why (the one check of pipeline names)."""
        return {name: self.why_unavailable(name) for name in names if name not in self.pipelines}

    def require(self, names: Iterable[str]) -> None:
        """ConfigError naming the first of ``names`` (a ``--pipeline`` option, a request's ``pipelines``)
        that is not installed, and why."""
        for name, why in self.missing(names).items():
            raise ConfigError(f"unknown pipeline {name!r}: {why}")

    def check(self, name: str, settings: Settings) -> None:
        """Run the pipeline's dependency check once per process; re-raise its error afterwards."""
        if name not in self._checked:
            try:
                self.pipelines[name].check(settings)
                self._checked[name] = None
            except MediaWorkerError as exc:
                self._checked[name] = exc
        err = self._checked[name]
        if err is not None:
            raise err

    # -- what the declarations give ---------------------------------------------------------------
    def default_rules(self) -> list[Rule]:
        """One rule per pipeline, for the suffixes it declares routed (``Pipeline.routed``/``inputs``):
        the rules in force when the configuration names none."""
        rules = []
        for name, p in sorted(self.pipelines.items()):
            routed = sorted(p.inputs if p.routed is None else p.routed)
            if routed:
                rules.append(Rule(include=[f"*.{s}" for s in routed], pipelines=[name]))
        return rules

    def check_rules(self, rules: Sequence[Rule], where: str = "rules") -> None:
        """ConfigError if a rule sends a suffix to an installed pipeline that does not declare it in its
        ``inputs`` (every such file would come back skipped): e.g. ``*.mp3`` to ``thumbnails``.  Only
        globs whose suffix is decided (``*.ext``, ``**/*.{a,b}``) are checked; ``scans/**`` is not, nor a
        pipeline that declares no inputs (it takes any file)."""
        for i, rule in enumerate(rules):
            for name in rule.pipelines if rule.enabled else ():
                p = self.pipelines.get(name)
                if p is None or not p.inputs:
                    continue
                for pattern in rule.include:
                    refused = [s for s in named_suffixes(pattern) if s not in p.inputs]
                    if refused:
                        takes = " ".join(f".{s}" for s in sorted(p.inputs))
                        raise ConfigError(
                            f"{where}.{i}.include: {pattern!r} sends .{refused[0]} files to pipeline "
                            f"{name!r}, which does not take them (it takes {takes})"
                        )

    def planned_variants(self, settings: Settings) -> dict[str, list[tuple[str, str]]]:
        """(variant, extension) pairs each pipeline can write, from its own ``plan()`` over every input
        type it declares: what the layout's recursion guard checks, for third-party pipelines too."""
        out: dict[str, list[tuple[str, str]]] = {}
        for name, p in self.pipelines.items():
            seen: dict[tuple[str, str], None] = {}
            for suffix in p.inputs or {"bin": ""}:
                for po in p.plan(SourceInfo(f"example.{suffix}", 0, 0), settings):
                    seen[(po.variant, po.ext)] = None
            out[name] = list(seen)
        return out

    def warm_modules(self, names: Sequence[str] | None = None) -> dict[str, str]:
        """Modules a process needs before its first file, each with the pipeline that declares it: for
        each pipeline in ``names`` (default: all installed) its module and the modules it declares in
        ``warm_modules`` (what it would otherwise import on first use).  A batch of photos does not
        preload the video or OCR libraries."""
        mods: dict[str, str] = {}
        for name, p in self.pipelines.items():
            if names is None or name in names:
                for module in (type(p).__module__, *p.warm_modules):
                    mods.setdefault(module, name)
        return mods

    def warm(self, names: Sequence[str] | None = None) -> None:
        """Import :meth:`warm_modules` now."""
        import_modules(self.warm_modules(names))

    def validate_options(self, settings: Settings) -> None:
        """Validate every pipeline's options with its own model; ConfigError naming the bad keys."""
        for name, p in self.pipelines.items():
            try:
                p.options(settings)
            except ValidationError as exc:
                raise ConfigError(format_validation_error(exc, prefix=f"plugins.{name}")) from None

    def register(self, pipeline: Pipeline, origin: str = "") -> None:
        name = pipeline.name
        if name in self.pipelines:
            log.warning(
                "pipeline %r from %s ignored: %s already provides it", name, origin, self.origins[name]
            )
            return
        self.pipelines[name] = pipeline
        self.origins[name] = origin


def import_modules(modules: Mapping[str, str]) -> None:
    """Import each module (name -> the pipeline that declares it); none that fails stops the others.

    A library that is not installed at all is left to its pipeline's own check, on its first file
    (logged at debug).  Any other failure is a warning naming the pipeline and the module: a name inside
    an installed package that does not exist is a stale ``warm_modules`` entry (a module moved or
    renamed), and a module that raises ImportError would fail its pipeline's first file too.
    """
    for name, pipeline in modules.items():
        if name in _FAILED:  # said once per process (a forked worker inherits what its parent said)
            continue
        try:
            importlib.import_module(name)
        except ImportError as exc:
            _FAILED.add(name)
            missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
            if missing and "." not in missing:  # a top-level package: not installed
                log.debug("pipeline %r: warm module %r left to its check: %s", pipeline, name, exc)
            else:
                log.warning("pipeline %r: warm module %r does not import: %s", pipeline, name, exc)


def _load(ep: EntryPoint) -> Pipeline:
    obj = ep.load()
    pipeline = obj() if isinstance(obj, type) else obj
    if not isinstance(pipeline, Pipeline):
        raise TypeError(f"{ep.value} is not a pipelines.spec.Pipeline")
    if pipeline.name != ep.name:
        raise TypeError(f"entry point {ep.name!r} loads a pipeline named {pipeline.name!r}")
    return pipeline


def load_registry(group: str = GROUP) -> Registry:
    """Load every pipeline registered under the entry-point group, in name order."""
    reg = Registry()
    for ep in sorted(entry_points(group=group), key=lambda e: (e.name, e.value)):
        try:
            reg.register(_load(ep), origin=f"{ep.value} ({ep.dist.name if ep.dist else '?'})")
        except MissingDependencyError as exc:
            reg.unavailable.setdefault(ep.name, str(exc))
        except Exception as exc:  # a broken plug-in must not take the worker down
            log.warning("pipeline %r (%s) failed to load: %s: %s", ep.name, ep.value, type(exc).__name__, exc)
            reg.unavailable.setdefault(ep.name, f"failed to load {ep.value}: {type(exc).__name__}: {exc}")
    return reg
