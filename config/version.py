"""The worker's version, written in one place (pyproject.toml) and read from the installed package's
metadata: ``media-worker --version`` and every manifest's ``tools`` name the same one."""

from __future__ import annotations

from functools import cache
from importlib.metadata import version as _distribution_version

DISTRIBUTION = "media-worker"


@cache
def version() -> str:
    """The installed distribution's version (the project is always installed: its pipelines are
    entry points)."""
    return _distribution_version(DISTRIBUTION)
