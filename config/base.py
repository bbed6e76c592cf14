"""Base class for settings sections."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A frozen settings table; unknown keys are errors that name the key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def planned_variants(self) -> dict[str, list[tuple[str, str]]]:
        """(variant, extension) pairs each pipeline configured here can write, for the layout's
        recursion guard.  Sections that configure a pipeline override this."""
        return {}
