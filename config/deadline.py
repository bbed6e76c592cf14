"""The job's time budget as one value, built once at the edge and passed down.

A :class:`Deadline` wraps a ``time.monotonic()`` instant, or nothing (no limit).  The engine makes one
per job from what the handler gives it; pipelines and the process runner only ask it questions.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from config.errors import JobTimeoutError


@dataclass(frozen=True)
class Deadline:
    """A ``time.monotonic()`` instant past which the job stops; ``at=None`` means no limit."""

    at: float | None = None

    @classmethod
    def of(cls, value: float | Deadline | None) -> Deadline:
        """A Deadline from a monotonic instant, a Deadline, or None (no limit)."""
        if isinstance(value, Deadline):
            return value
        if value is not None and not math.isfinite(value):
            raise ValueError(f"a deadline must be a finite time.monotonic() value, not {value!r}")
        return cls(None if value is None else float(value))

    def remaining(self) -> float:
        """Seconds left (0.0 once expired; ``math.inf`` without a limit)."""
        if self.at is None:
            return math.inf
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at

    def check(self, what: str) -> None:
        """Raise JobTimeoutError ("deadline reached before <what>") once expired."""
        if self.expired():
            raise JobTimeoutError(f"deadline reached before {what}")

    def timeout(self, cap: float | None = None) -> float | None:
        """A subprocess timeout: the smaller of ``cap`` and the time left; None if neither limits."""
        left = self.remaining()
        if cap is not None:
            left = min(left, cap)
        return None if math.isinf(left) else left

    def earlier(self, seconds: float) -> Deadline:
        """The same deadline moved ``seconds`` earlier (a safety margin); no limit stays no limit."""
        return self if self.at is None else Deadline(self.at - seconds)


NO_DEADLINE = Deadline()
