"""Every knob of every service, read once from the environment.

``Settings`` below is the only reader of ``os.environ`` for configuration; its sections live in
``llm.py`` (the engine and the proxy), ``embedding.py`` and ``sections.py`` (everything else). Variables use the prefix
``INFSTACK_`` and ``__`` between levels: ``INFSTACK_CACHE__BACKEND=redis``,
``INFSTACK_EMBEDDING__MAX_BATCH_SIZE=32``. A typo in a value fails at start-up with the variable's
name and the allowed values; unknown ``INFSTACK_`` variables are rejected too (``extra="forbid"``),
so a misspelled knob never silently does nothing.
"""

from __future__ import annotations

import functools

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.settings.embedding import CPU_PADDED_CHARS_PER_PASS, EmbeddingSettings
from services.settings.llm import KV_CACHE_DTYPES, LLMSettings
from services.settings.sections import (
    CacheSettings,
    ClassicBase,
    ClassicSettings,
    GatewaySettings,
    ProcessSettings,
)

__all__ = [
    "CPU_PADDED_CHARS_PER_PASS",
    "ENV_PREFIX",
    "KV_CACHE_DTYPES",
    "CacheSettings",
    "ClassicBase",
    "ClassicSettings",
    "EmbeddingSettings",
    "GatewaySettings",
    "LLMSettings",
    "ProcessSettings",
    "Settings",
    "SettingsError",
    "env_var_name",
    "get_settings",
    "load_settings",
]


class Settings(BaseSettings):
    """The root object; services receive it (or a section of it), never os.environ."""

    model_config = SettingsConfigDict(
        env_prefix="INFSTACK_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    cache: CacheSettings = CacheSettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    llm: LLMSettings = LLMSettings()
    gateway: GatewaySettings = GatewaySettings()
    classic: ClassicSettings = ClassicSettings()
    process: ProcessSettings = ProcessSettings()


ENV_PREFIX = "INFSTACK_"


class SettingsError(ValueError):
    """A bad environment value, reported by its variable name."""


def env_var_name(loc: tuple[str | int, ...]) -> str:
    """('cache', 'backend') -> 'INFSTACK_CACHE__BACKEND'."""
    return ENV_PREFIX + "__".join(str(part) for part in loc).upper()


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        lines = [f"{env_var_name(err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
