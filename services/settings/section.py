"""The base of every settings section: frozen, and unknown keys rejected (a misspelled knob fails)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
