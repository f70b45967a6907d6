"""Pure, stable cache-key functions.

Keys must be identical across processes, Python versions and restarts (so no ``hash()``), and two
models must never share an entry: the namespace carries the model id, as LangChain's
``CacheBackedEmbeddings`` does with its ``namespace`` argument.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

KEY_FORMAT_VERSION = "v1"


def digest(data: bytes) -> str:
    """blake2b-128 hex: collision-safe for cache keys and shorter than sha256."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def embedding_namespace(model_id: str) -> str:
    """One namespace per embedding model; the version lets a format change start a fresh space."""
    return f"emb:{KEY_FORMAT_VERSION}:{model_id}"


def embedding_key(namespace: str, text: str) -> str:
    """Namespace plus the hash of the exact UTF-8 text (no normalization: spacing can change vectors)."""
    return f"{namespace}:{digest(text.encode('utf-8'))}"


def canonical_json(value: Any) -> bytes:
    """JSON with sorted keys and no spaces: equal requests give equal bytes. A lone surrogate (JSON allows
    the escape ``"\\ud814"``, UTF-8 has no byte form for it) is kept as its own bytes instead of failing
    the request with a 500 before the engine could answer it (found by the schemathesis fuzz)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", errors="surrogatepass")
