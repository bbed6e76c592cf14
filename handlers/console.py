"""The CLI's rich consoles, made on first use: ``media-worker --help`` and other quick commands do not
pay for importing rich's console machinery they never print through."""

from __future__ import annotations

from typing import Any


class LazyConsole:
    """A :class:`rich.console.Console` created the first time any attribute is asked for."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Any = None

    def real(self) -> Any:
        """The console itself (for rich objects that take one, such as a Progress)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real(), name)


# errors are never hard-wrapped: a path or a key in a message stays whole (to copy, to grep)
err: Any = LazyConsole(stderr=True, soft_wrap=True)
out: Any = LazyConsole()
