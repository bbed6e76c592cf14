"""The pipeline plug-in spec: what a pipeline is, what it is given, and who calls what.

Built-in and third-party pipelines are classes registered under the entry-point group
``media_worker.pipelines`` (see :mod:`pipelines.core.registry`)::

    [project.entry-points."media_worker.pipelines"]
    watermark = "my_package.watermark:WatermarkPipeline"

A pipeline knows nothing of events, Lambda or the CLI.  It never opens workspace files itself:
it reads the source through :class:`Job` (sequential reads of ``read_block_bytes``) and writes
each output once, at its final path, through :class:`Job`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel

from config.deadline import Deadline
from config.settings import Settings

if TYPE_CHECKING:
    from pipelines.ledger import StorageIO


@dataclass(frozen=True)
class SourceInfo:
    """A source file on the workspace, identified without opening it."""

    relpath: str
    size: int
    mtime_ns: int
    version_id: str | None = None  # from the S3 event, when the caller knows it
    etag: str | None = None

    @property
    def suffix(self) -> str:
        """Lower-case extension without the dot ('' if none)."""
        return PurePosixPath(self.relpath).suffix[1:].lower()


@dataclass(frozen=True)
class PlannedOutput:
    """One output a pipeline may write for a source."""

    variant: str
    ext: str
    media_type: str


@dataclass
class OutputRecord:
    """One output written for a source (goes into the manifest)."""

    path: str
    size: int
    sha256: str | None  # None: not hashed (a tool wrote it at its final path); meta.sha256_omitted says why
    pipeline: str
    variant: str
    media_type: str
    meta: dict[str, Any] = field(default_factory=dict)


class OutputWriter(Protocol):
    """An output being written at its final path (:meth:`Job.open_output`): hashed as it is written and
    recorded in the manifest when closed; nothing is read back from the mount."""

    def write(self, data: bytes | bytearray | memoryview) -> None: ...

    def close(self) -> None: ...


class Job(Protocol):
    """What a pipeline's :meth:`Pipeline.run` is given (implemented by the engine)."""

    source: SourceInfo
    settings: Settings
    deadline: Deadline  # the job's one time budget: ``deadline.check(what)`` between steps

    @property
    def scratch_dir(self) -> Path:
        """A local folder for this job (never on the workspace), removed when the job ends."""
        ...

    def read_source(self) -> bytes:
        """The whole source, read once with sequential >= 1 MiB reads (cached for later pipelines)."""
        ...

    def source_path(self) -> Path:
        """Absolute path of the source, for a tool that reads it itself with large reads."""
        ...

    @property
    def io(self) -> StorageIO:
        """The job's storage ledger (manifest ``io``): the worker's own workspace reads and writes are
        counted already; a pipeline whose tool reads or writes the mount itself adds what it measured."""
        ...

    def report_progress(self, pipeline: str, fraction: float, message: str = "") -> None:
        """Tell the caller how far this pipeline is (0.0-1.0); the CLI draws it, Lambda logs it."""
        ...

    def write_output(
        self, pipeline: str, variant: str, data: bytes, *, ext: str | None = None, **meta: Any
    ) -> OutputRecord:
        """Write one planned output at its final path (no temp file, no rename).  ``ext`` picks
        among planned outputs that share a variant name (e.g. one size in two formats)."""
        ...

    def open_output(
        self, pipeline: str, variant: str, *, ext: str | None = None, **meta: Any
    ) -> OutputWriter:
        """Open a planned output at its final path to write it in pieces (a tool's output streamed
        through the worker): each ``write()`` goes to the mount as given (write large pieces: 1 MiB),
        hashed on the way; close it before the pipeline returns, and the manifest lists its size and
        sha256.  Nothing is read back from the mount."""
        ...

    def leave_out(self, pipeline: str, reason: str, **where: Any) -> None:
        """Record a part of the source the pipeline left out while making the rest (a stream without a
        decoder, a page over a limit): ``where`` names the part (``stream=1, type="audio"``, ``page=3``);
        the manifest lists it under ``left_out`` with ``reason``."""
        ...

    def output_path(self, pipeline: str, variant: str, *, ext: str | None = None) -> Path:
        """Final path for a tool that writes a planned output itself; recorded for the manifest by its
        size, without a sha256 (reading it back to hash it would cost paid reads of data just written:
        prefer :meth:`open_output`).  The engine deletes it if the job fails: a pipeline never deletes
        workspace files."""
        ...

    def output_relpath(self, pipeline: str, variant: str, *, ext: str | None = None) -> str:
        """Workspace-relative path of a planned output (as the manifest lists it); nothing is recorded."""
        ...

    def output_url(self, pipeline: str, variant: str, *, ext: str | None = None, referrer: str) -> str:
        """URL of a planned output relative to the output at ``referrer`` (a relpath from
        :meth:`output_relpath`), for links between outputs: playlists, a storyboard's sprite."""
        ...


class Pipeline(ABC):
    """Base class for pipelines.  The engine calls, per source, in this order:

    1. :meth:`accepts` - without opening the source; ``True``, or ``False``/a reason to skip it.
    2. :meth:`check` - once per process, before the first run; raises ``MissingDependencyError``.
    3. :meth:`plan` - the outputs it may write; the engine renders and validates their paths.
    4. :meth:`run` - does the work through the :class:`Job`; raises ``MediaWorkerError`` subclasses.
       Pipelines that share work (one decode for several) say so with :meth:`can_run_with`; the
       engine then calls :meth:`run_with` on the first of them once, instead of each :meth:`run`.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"  # bump when outputs change for the same settings
    description: ClassVar[str] = ""
    # What the pipeline takes, declared once (like Pillow's register_extensions): file suffix -> media
    # type.  The default rules, accepts(), the recursion guard and `media-worker pipelines` derive from it.
    inputs: ClassVar[Mapping[str, str]] = {}
    # Suffixes the default rules send here; None = all of ``inputs`` (OCR takes images only by a rule).
    routed: ClassVar[frozenset[str] | None] = None
    # Its options (like OCRmyPDF's register_options): a pydantic model, validated at start-up.  Built-ins
    # name their table of Settings; a third party's lives under [plugins.<name>].
    settings_model: ClassVar[type[BaseModel] | None] = None
    settings_section: ClassVar[str | None] = None
    # Modules a pool worker imports before its first file (what run() imports on first use), so no
    # worker pays them mid-batch; a CLI run on one file and a Lambda invocation import them when needed.
    warm_modules: ClassVar[tuple[str, ...]] = ()

    def accepts(self, source: SourceInfo, settings: Settings) -> bool | str:
        """Whether to run on ``source`` (decided without opening it); the default uses ``inputs``."""
        if not self.inputs or source.suffix in self.inputs:
            return True
        return f"{self.name} does not take .{source.suffix} files"

    def options(self, settings: Settings) -> Any:
        """This pipeline's validated options (raises pydantic's ValidationError for bad ones)."""
        if self.settings_section is not None:
            return getattr(settings, self.settings_section)
        raw = settings.plugins.get(self.name, {})
        return self.settings_model.model_validate(raw) if self.settings_model is not None else raw

    def check(self, settings: Settings) -> None:  # noqa: B027 - optional hook
        """Raise MissingDependencyError if a program or library is missing."""

    def tool_versions(self) -> dict[str, str]:
        """Versions of the libraries/programs this pipeline uses (recorded in the manifest)."""
        return {}

    def settings_fingerprint(self, settings: Settings) -> Any:
        """The part of the settings that changes this pipeline's outputs (hashed into the manifest)."""
        opts = self.options(settings)
        return opts.model_dump(mode="json") if isinstance(opts, BaseModel) else opts

    @abstractmethod
    def plan(self, source: SourceInfo, settings: Settings) -> list[PlannedOutput]:
        """Every output this pipeline may write for ``source``."""

    @abstractmethod
    def run(self, job: Job) -> None:
        """Produce the planned outputs through ``job``."""

    def can_run_with(self, other: Pipeline) -> bool:
        """True if :meth:`run_with` can also produce ``other``'s outputs for the same source, e.g. from
        one read and decode.  The engine asks the first selected pipeline about each later one."""
        return False

    def run_with(self, job: Job, partners: Sequence[Pipeline]) -> None:
        """Produce this pipeline's and ``partners``' outputs (those it said it ``can_run_with``).
        Called by the engine instead of each one's :meth:`run`; the default runs them in turn."""
        self.run(job)
        for p in partners:
            p.run(job)
