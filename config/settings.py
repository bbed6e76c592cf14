"""Settings: defaults < TOML file < ``MEDIA_WORKER_*`` environment variables.

Built once at the edge (CLI or Lambda handler) with :func:`load_settings` and passed down as an
argument.  Below ``handlers/`` one variable only is read from the environment:
``MEDIA_WORKER_TOOL_CACHE`` (:mod:`pipelines.tools.query_cache`), where this installation keeps its
programs' answers - a property of the process, not a setting, asked where no settings are at hand
(``Pipeline.tool_versions``).  Nested fields use ``__`` in environment variables, e.g.
``MEDIA_WORKER_THUMBNAILS__JPEG_QUALITY=90``; lists and tables are JSON, e.g.
``MEDIA_WORKER_RULES='[{"include": ["*.jpg"], "pipelines": ["thumbnails"]}]'``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from config.aws import AwsSettings
from config.base import Section
from config.cost import DIRECT_READ_MIN, CostSettings
from config.errors import ConfigError
from config.layout import Layout
from config.ocr import OcrSettings
from config.rules import Rule
from config.stack import StackSettings
from config.sync import SyncSettings
from config.transcode import TranscodeSettings

MIB = 1 << 20
CONFIG_ENV = "MEDIA_WORKER_CONFIG"
DEFAULT_CONFIG_NAME = "media-worker.toml"


class ThumbnailSettings(Section):
    """Image thumbnails (Pillow)."""

    sizes: dict[str, tuple[int, int]] = Field(
        default={"thumb": (150, 150), "medium": (800, 600), "large": (1920, 1080)},
        description="Named boxes (width, height); each image is fitted inside, never upscaled.",
    )
    formats: list[Literal["jpeg", "webp", "png"]] = Field(
        default=["jpeg", "webp"], description="Output formats, one file per size and format."
    )
    jpeg_quality: int = Field(default=85, ge=1, le=95, description="JPEG quality.")
    webp_quality: int = Field(default=80, ge=1, le=100, description="WebP quality.")
    progressive: bool = Field(default=True, description="Write progressive JPEGs.")
    background: tuple[int, int, int] = Field(
        default=(255, 255, 255), description="RGB colour that alpha is flattened onto for JPEG."
    )
    background_auto: bool = Field(
        default=True,
        description="For JPEG, when what is visible of an image would not show on `background` (white "
        "text on transparency onto white), flatten onto `contrast_background` instead, and draw a fully "
        "transparent image as a checkerboard; the manifest's meta.flatten_reason says which. Off: "
        "always `background`.",
    )
    contrast_background: tuple[int, int, int] = Field(
        default=(32, 32, 32), description="RGB colour for content too close to `background` (see above)."
    )

    @field_validator("sizes")
    @classmethod
    def _check_sizes(cls, v: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        if not v:
            raise ValueError("at least one size is needed")
        for name, (w, h) in v.items():
            if not name or not name.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"size name {name!r} must be letters, digits, '-' or '_'")
            if not (1 <= w <= 16384 and 1 <= h <= 16384):
                raise ValueError(f"size {name!r}: {w}x{h} is outside 1..16384")
        return v

    @field_validator("formats")
    @classmethod
    def _check_formats(cls, v: list[str]) -> list[str]:
        if not v or len(set(v)) != len(v):
            raise ValueError("give one or more distinct formats")
        return v


class LeaseSettings(Section):
    """One writer per source: a lease file beside the manifest (see docs/leases.md)."""

    enabled: bool = Field(default=True, description="Take a lease before writing a source's outputs.")
    ttl_seconds: float = Field(
        default=60, ge=1, le=3600, description="A lease lasts this long; the holder renews it every third."
    )
    wait_seconds: float = Field(
        default=30,
        ge=0,
        le=900,
        description="How long a second worker waits for the holder (within its "
        "deadline) before it reports a retryable 'busy'.",
    )
    clock_skew_seconds: float = Field(
        default=30,
        ge=0,
        le=600,
        description="Clock difference between hosts tolerated before an expired lease is taken over.",
    )


class LimitSettings(Section):
    """Per-file limits: over a limit is a clean per-file failure."""

    max_image_pixels: int = Field(
        default=100_000_000, ge=1, description="Largest image (width*height) decoded; a bigger one fails."
    )
    max_source_bytes: int = Field(
        default=2 * 1024 * MIB, ge=1, description="Largest source read into memory by in-memory pipelines."
    )


class Settings(BaseSettings):
    """Everything media-worker can be told.  See docs/configuration.md."""

    model_config = SettingsConfigDict(
        env_prefix="MEDIA_WORKER_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    workspace: Path = Field(
        default=Path("/mnt/workspace"), description="Root of the S3 Files mount; every path is inside it."
    )
    read_block_bytes: int = Field(
        default=MIB,
        ge=DIRECT_READ_MIN,
        description="Size every source read() asks for (>= 128 KiB so S3 Files serves it straight from S3).",
    )
    workers: int = Field(
        default=0, ge=0, description="Process pool size for directory runs; 0 = CPUs available."
    )
    rules: list[Rule] | None = Field(
        default=None,
        description="Which pipelines run for which sources; unset = each installed pipeline's own "
        "defaults (the file types it declares, see `media-worker pipelines`).",
    )
    exclude: list[str] = Field(
        default=["processed/**", "**/.*", "**/.*/**"],
        description="Globs never processed by any rule: the mirror layout's outputs, hidden files and "
        "folders (which include S3 Files' .s3files-lost+found-*).",
    )
    layout: Layout = Field(default_factory=Layout, description="Where outputs and manifests are written.")
    thumbnails: ThumbnailSettings = Field(default_factory=ThumbnailSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    lease: LeaseSettings = Field(default_factory=LeaseSettings)
    transcode: TranscodeSettings = Field(default_factory=TranscodeSettings)
    ocr: OcrSettings = Field(default_factory=OcrSettings)
    aws: AwsSettings = Field(default_factory=AwsSettings, description="Lambda adapters.")
    sync: SyncSettings = Field(default_factory=SyncSettings, description="S3 Files synchronization settings.")
    cost: CostSettings = Field(
        default_factory=CostSettings, description="Approximate prices for the cost ledger (config/cost.py)."
    )
    stack: StackSettings = Field(
        default_factory=StackSettings,
        description="The local S3 + mount + upload trigger (`media-worker stack`).",
    )
    plugins: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Options of third-party pipelines, by pipeline name; each table is validated at start-up "
        "by the pipeline's own settings_model (unknown keys are errors naming plugins.<name>.<key>).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = _active_toml
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


_active_toml: Path | None = None


def find_config_file(
    explicit: str | os.PathLike[str] | None, environ: dict[str, str] | None = None
) -> Path | None:
    """``--config`` wins, then ``$MEDIA_WORKER_CONFIG``, then ./media-worker.toml if present."""
    env = os.environ if environ is None else environ
    if explicit:
        path = Path(explicit)
    elif env.get(CONFIG_ENV):
        path = Path(env[CONFIG_ENV])
    else:
        path = Path(DEFAULT_CONFIG_NAME)
        return path if path.is_file() else None
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    return path


def load_settings(config_file: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Build settings from defaults, the TOML file, the environment and explicit overrides.

    Raises :class:`ConfigError` whose message names each bad key and why.
    """
    global _active_toml
    path = find_config_file(config_file)
    if path is not None:
        _check_toml_syntax(path)
    _active_toml = path
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, path)) from None
    except ConfigError as exc:
        where = f" ({path})" if path else ""
        raise ConfigError(f"invalid config{where}: {exc.message}") from None
    finally:
        _active_toml = None


def _check_toml_syntax(path: Path) -> None:
    import tomllib

    try:
        tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def format_validation_error(exc: ValidationError, path: Path | None = None, prefix: str = "") -> str:
    """One line per bad key (``prefix`` is prepended to each key, e.g. ``plugins.wordcount``)."""
    lines = [f"invalid config{f' ({path})' if path else ''}:"]
    for err in exc.errors():
        key = ".".join([prefix, *(str(p) for p in err["loc"])] if prefix else [str(p) for p in err["loc"]])
        key = key or "(root)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)
