"""Which engine replica answers a generation, when the LLM runs as several data-parallel replicas.

vLLM's prefix cache lives in each engine: a prompt whose system prompt replica A has cached is a prefill
of a few tokens there and of thousands on replica B. So ``prefix-affinity`` ranks the replicas for each
prompt by a hash of the prompt's beginning (rendezvous hashing: the same prefix ranks them the same way in
every process, and removing a replica moves only its own prefixes) and takes the first one whose
requests in flight stay under ``affinity_load_factor`` times the mean (bounded-load hashing), so a
popular prefix spills over to its second replica instead of queueing on one. ``round-robin`` is the
baseline that ignores prefixes.

The counts are this process's own requests in flight: every process that routes (the gateway, the LLM
service's workers) sees its own share, which is the whole traffic when the gateway talks to the engines.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from services import metrics
from services.relay import Upstream

Routing = Literal["prefix-affinity", "round-robin"]
CHARS_PER_TOKEN_ID = 4  # a prompt sent as token ids: each id stands for about this many characters


def prefix_key(payload: dict[str, Any] | None, prefix_chars: int) -> bytes | None:
    """The beginning of the prompt that picks the replica (None: no prompt to go by)."""
    if payload is None:
        return None
    prompt = payload.get("prompt")
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], list):
        prompt = prompt[0]  # a batch of token-id prompts: the first one decides
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
        prompt = prompt[0]  # a batch of text prompts
    if isinstance(prompt, str):
        return prompt[:prefix_chars].encode()
    if isinstance(prompt, list) and all(isinstance(i, int) for i in prompt):
        ids = prompt[: max(1, prefix_chars // CHARS_PER_TOKEN_ID)]
        return b"ids:" + ",".join(map(str, ids)).encode()
    messages = payload.get("messages")
    if isinstance(messages, list):
        text = "".join(
            f"{m.get('role', '')}:{m.get('content', '')}\n" for m in messages if isinstance(m, dict)
        )
        return text[:prefix_chars].encode()
    return None


def rank(key: bytes, replicas: int) -> list[int]:
    """Replica indices in this key's order of preference (highest rendezvous score first)."""
    scores = [
        hashlib.blake2b(key, digest_size=8, salt=i.to_bytes(8, "little")).digest() for i in range(replicas)
    ]
    return sorted(range(replicas), key=lambda i: scores[i], reverse=True)


@dataclass
class Replica:
    index: int
    upstream: Upstream
    in_flight: int = 0


class EnginePool:
    """The engine replicas and the policy that picks one per generation."""

    def __init__(
        self, upstreams: list[Upstream], routing: Routing, prefix_chars: int = 1024, load_factor: float = 1.25
    ) -> None:
        if not upstreams:
            raise ValueError("an engine pool needs at least one engine")
        self.replicas = [Replica(i, u) for i, u in enumerate(upstreams)]
        self.routing = routing
        self.prefix_chars = prefix_chars
        self.load_factor = load_factor
        self._turn = itertools.count()

    @property
    def primary(self) -> Upstream:
        """The replica that answers everything but generations (models, tokenize, health of the Bento)."""
        return self.replicas[0].upstream

    @property
    def upstreams(self) -> list[Upstream]:
        return [r.upstream for r in self.replicas]

    def choose(self, payload: dict[str, Any] | None) -> Replica:
        """The replica for this request, counted in flight until ``release``."""
        replica, decision = self._pick(payload)
        replica.in_flight += 1
        if len(self.replicas) > 1:
            metrics.LLM_ROUTED.labels(str(replica.index), decision).inc()
        return replica

    def _pick(self, payload: dict[str, Any] | None) -> tuple[Replica, str]:
        if len(self.replicas) == 1:
            return self.replicas[0], "only"
        key = prefix_key(payload, self.prefix_chars) if self.routing == "prefix-affinity" else None
        if key is None:
            return self.replicas[next(self._turn) % len(self.replicas)], "round-robin"
        total = sum(r.in_flight for r in self.replicas) + 1
        capacity = math.ceil(self.load_factor * total / len(self.replicas))
        order = rank(key, len(self.replicas))
        for position, index in enumerate(order):
            if self.replicas[index].in_flight < capacity:
                return self.replicas[index], "affinity" if position == 0 else "spill"
        return min(
            self.replicas, key=lambda r: r.in_flight
        ), "spill"  # unreachable: someone is under the mean

    def release(self, replica: Replica) -> None:
        replica.in_flight -= 1

    async def released_after(self, replica: Replica, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """``chunks`` as they come; the replica's count drops when the reply ends or is abandoned."""
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            self.release(replica)

    async def close(self) -> None:
        for replica in self.replicas:
            await replica.upstream.close()
