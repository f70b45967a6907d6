"""What every classic model's training shares: versions by fingerprint, reuse of a stored version, saving.

A model's version is a hash of its data, parameters, seed and library versions: the same inputs give the
same tag, so ``python -m models.train_classic`` trains nothing the store already has.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.classic.contract import Log

SEED = 0
TEST_SIZE = 0.2


def fingerprint(*parts: object) -> str:
    """A model version: the same inputs give the same tag, so training is skipped when it exists."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.blake2b(blob, digest_size=8).hexdigest()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def reusable(kind: str, tag: str, force: bool, log: Log) -> Any:
    """The stored model with this exact fingerprint (data, parameters, seed, library versions), unless
    retraining is forced: the same inputs train the same model, so it is not trained twice."""
    import bentoml
    from bentoml.exceptions import NotFound

    if force:
        return None
    try:
        found = bentoml.models.get(tag)
    except NotFound:
        return None
    accuracy: float = found.info.metadata["accuracy"]  # type: ignore[assignment]
    log(f"[{kind}] {tag} is in the model store (accuracy {accuracy:.3f}); reusing it")
    return found


# What a model's training returns: its metadata, and a function that writes its files into the store.
Trained = tuple[dict[str, Any], Callable[[Any], None]]


def train_once(kind: str, tag: str, force: bool, log: Log, train: Callable[[], Trained]) -> Any:
    """The stored model ``tag``: reused when the store has it, else trained by ``train`` and stored."""
    import bentoml

    if (found := reusable(kind, tag, force, log)) is not None:
        return found
    started = time.perf_counter()
    metadata, write_files = train()
    with bentoml.models.create(tag, metadata=metadata) as stored:
        write_files(stored)
    log(f"[{kind}] saved {tag} in {time.perf_counter() - started:.1f} s")
    return bentoml.models.get(tag)


def store_name(tag_setting: str) -> str:
    """The model-store name of a configured tag (``classic-text-topic:latest`` -> ``classic-text-topic``)."""
    return tag_setting.split(":", 1)[0]
