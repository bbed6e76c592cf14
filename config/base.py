"""Base class for settings sections."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A frozen settings table; unknown keys are errors that name the key."""

    model_config = ConfigDict(extra="forbid", frozen=True)
