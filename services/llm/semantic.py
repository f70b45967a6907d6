"""Opt-in semantic cache: answer a deterministic request with the cached answer of a near-identical
earlier prompt (cosine similarity of prompt embeddings >= threshold, same model and parameters).

The index maps a *parameter signature* (everything but the prompt) to the unit vectors of earlier
prompts and their exact response-cache keys; the answers themselves stay in the response cache.
The index lives in the worker's memory (bounded, oldest dropped first): it is rebuilt by traffic
after a restart and is not shared between replicas, while the exact-match cache is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from services.cache.keys import canonical_json, digest

PromptEmbedder = Callable[[str], Awaitable[np.ndarray]]
_PROMPT_FIELDS = frozenset({"prompt", "messages", "user", "request_id"})


def prompt_text(payload: dict[str, Any]) -> str | None:
    """The text whose meaning decides the answer, or None when it is not plain text."""
    prompt = payload.get("prompt")
    if isinstance(prompt, str):
        return prompt
    messages = payload.get("messages")
    if isinstance(messages, list) and all(
        isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages
    ):
        return "\n".join(f"{m.get('role', '')}: {m['content']}" for m in messages)
    return None


def signature(route: str, payload: dict[str, Any]) -> str:
    """Requests may only share answers when everything except the prompt is equal."""
    rest = {k: v for k, v in payload.items() if k not in _PROMPT_FIELDS}
    return f"{route}:{digest(canonical_json(rest))}"


class SemanticIndex:
    def __init__(self, threshold: float, max_entries: int = 10_000) -> None:
        self.threshold = threshold
        self.max_entries = max_entries
        self._vectors: dict[str, np.ndarray] = {}
        self._keys: dict[str, list[str]] = {}

    def find(self, sig: str, vector: np.ndarray) -> tuple[str, float] | None:
        """The exact-cache key of the most similar earlier prompt, with its similarity."""
        vectors = self._vectors.get(sig)
        if vectors is None:
            return None
        scores = vectors @ _unit(vector)
        best = int(np.argmax(scores))
        score = float(scores[best])
        return (self._keys[sig][best], score) if score >= self.threshold else None

    def add(self, sig: str, vector: np.ndarray, key: str) -> None:
        row = _unit(vector)[None, :]
        vectors = self._vectors.get(sig)
        keys = self._keys.setdefault(sig, [])
        self._vectors[sig] = row if vectors is None else np.vstack([vectors, row])[-self.max_entries :]
        keys.append(key)
        del keys[: max(0, len(keys) - self.max_entries)]


def _unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    return vector / max(float(np.linalg.norm(vector)), 1e-12)
