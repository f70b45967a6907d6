"""Identical deterministic requests in flight together share one generation.

Under many clients a popular prompt arrives again while its first generation is still running: the
response cache cannot answer it yet (nothing is stored until the answer is complete), so without this
every copy would be generated again. The first request (the leader) starts the engine request; the
copies that arrive while it runs follow its chunks: everything received so far at once, then each chunk
as it comes. The generation belongs to no one client: it runs in a task, and is cancelled (freeing its
engine slot) only when every client following it has gone.

Across processes (several workers of the proxy, or replicas sharing Redis) the leader also claims the
key in the cache store (``ClaimStore``); a request that finds it claimed elsewhere waits for the answer
to be stored, then is answered from the cache. Without this, four gateway workers on the H200 Zipf
workload generated 155 answers instead of 102 (benchmarks/results/llm_zipf_gpu_h200_gateway_workers4.json).
A leader keeps its claim alive while it generates and releases it once the answer is committed, or at
once when it fails; a leader that dies holds its followers ``CLAIM_TTL_S`` at most.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal

from services import metrics
from services.cache.write_behind import WriteBehindStore
from services.llm.response_cache import ResponseCache

CLAIM_TTL_S = 10.0
_RENEW_EVERY_S = CLAIM_TTL_S / 3
_POLL_FIRST_S, _POLL_MAX_S = 0.002, 0.025  # a waiter's cache lookups: 2 ms, then doubling up to 25 ms


class SharedGeneration:
    """One engine answer, followed by every identical request that arrives while it runs."""

    def __init__(self, on_finished: Callable[[], None]) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self._opened: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._received: list[bytes] = []
        self._done = False
        self._error: BaseException | None = None
        self._changed = asyncio.Event()
        self._followers = 0
        self._task: asyncio.Task[None] | None = None
        self._on_finished = on_finished
        # Set while this process holds the key's claim in the shared store (Coalescer): keeps it alive.
        self.claim_renewal: asyncio.Task[None] | None = None

    def start(self, headers: list[tuple[bytes, bytes]], chunks: AsyncIterator[bytes]) -> None:
        """The engine answered 200: share its body from now on."""
        self.headers = headers
        self._task = asyncio.create_task(self._pump(chunks))
        self._opened.set_result(True)

    def abandon(self) -> None:
        """The leader got nothing to share (engine down, an error status): followers ask themselves."""
        if not self._opened.done():
            self._opened.set_result(False)
        self._on_finished()

    async def joined(self) -> bool:
        """Wait for the leader's engine request to open; False when there is nothing to follow."""
        return await asyncio.shield(self._opened)

    async def _pump(self, chunks: AsyncIterator[bytes]) -> None:
        try:
            async for chunk in chunks:
                self._received.append(chunk)
                self._wake()
        except asyncio.CancelledError:
            self._error = ConnectionResetError("every client of this generation went away")
            raise
        except Exception as exc:  # the engine broke off: every follower ends the way the leader would
            self._error = exc
        finally:
            with contextlib.suppress(Exception):
                await chunks.aclose()  # type: ignore[attr-defined]
            self._done = True
            self._wake()
            self._on_finished()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def follow(self) -> AsyncIterator[bytes]:
        """The answer's chunks, from the first; raises what broke the generation, if anything did.
        Counted as a follower from this call on, not from its first chunk."""
        self._followers += 1
        return self._follow()

    async def _follow(self) -> AsyncIterator[bytes]:
        sent = 0
        try:
            while True:
                if sent < len(self._received):
                    sent += 1
                    yield self._received[sent - 1]
                elif self._done:
                    if self._error is not None:
                        raise self._error
                    return
                else:
                    await self._changed.wait()
        finally:
            self._followers -= 1
            if self._followers == 0 and not self._done and self._task is not None:
                self._task.cancel()  # nobody is listening: free the engine slot


@dataclass
class Turn:
    """What a deterministic miss does: ``lead`` its own generation (``generation``), ``follow`` one in
    flight in this process (``generation``), or answer with what another process ``stored`` (``answer``:
    is_stream, body)."""

    kind: Literal["lead", "follow", "stored"]
    generation: SharedGeneration | None = None
    answer: tuple[bool, bytes] | None = None


class Coalescer:
    """Where an identical request finds the generation it can share, in this process or another."""

    def __init__(self, cache: ResponseCache, across_processes: bool) -> None:
        self._cache = cache
        store = cache.store
        self._claims = store if across_processes and isinstance(store, WriteBehindStore) else None
        self._in_flight: dict[str, SharedGeneration] = {}
        self._waits: dict[str, asyncio.Task[tuple[bool, bytes] | None]] = {}

    async def enter(self, key: str) -> Turn:
        while True:
            running = self._in_flight.get(key)
            if running is not None and await running.joined():
                metrics.LLM_COALESCED.labels("in_flight").inc()
                return Turn("follow", running)
            if (wait := self._waits.get(key)) is None:
                shared = self._share(key)  # identical requests of this process follow it meanwhile
                if self._claims is None:
                    return Turn("lead", shared)
                claiming = asyncio.ensure_future(
                    asyncio.to_thread(self._claims.claim, _claim_key(key), CLAIM_TTL_S)
                )
                try:
                    claimed = await asyncio.shield(claiming)
                except BaseException:  # cancelled (the client left): nobody leads here after all
                    shared.abandon()
                    claiming.add_done_callback(lambda done: self._give_back(key, done))
                    raise
                if claimed:
                    shared.claim_renewal = asyncio.create_task(self._keep_claimed(key))
                    return Turn("lead", shared)
                wait = self._waits[key] = asyncio.create_task(self._stored_elsewhere(key))
                wait.add_done_callback(lambda _: self._waits.pop(key, None))
                shared.abandon()  # its followers wait for the other process's answer too
            if (answer := await asyncio.shield(wait)) is not None:
                metrics.LLM_COALESCED.labels("stored").inc()
                return Turn("stored", answer=answer)
            # The other process gave up (or died): the first request back here leads, in its place.

    def _share(self, key: str) -> SharedGeneration:
        """Register the generation of ``key`` for identical requests to follow while it runs."""

        def finished() -> None:
            if self._in_flight.get(key) is shared:
                del self._in_flight[key]
            if shared.claim_renewal is not None:
                shared.claim_renewal.cancel()
                asyncio.get_running_loop().run_in_executor(None, self._release, key)

        shared = SharedGeneration(finished)
        self._in_flight[key] = shared
        return shared

    async def _keep_claimed(self, key: str) -> None:
        assert self._claims is not None
        while True:
            await asyncio.sleep(_RENEW_EVERY_S)
            await asyncio.to_thread(self._claims.extend, _claim_key(key), CLAIM_TTL_S)

    def _give_back(self, key: str, claiming: asyncio.Future[bool]) -> None:
        """A claim taken for a request that left before leading: release it now, not at its expiry."""
        if not claiming.cancelled() and claiming.exception() is None and claiming.result():
            asyncio.get_running_loop().run_in_executor(None, self._release, key)

    def _release(self, key: str) -> None:
        """Runs in a thread: the answer (if any) is committed first, so a waiter that sees the claim gone
        finds it."""
        assert self._claims is not None
        self._claims.committed(key)
        self._claims.release(_claim_key(key))

    async def _stored_elsewhere(self, key: str) -> tuple[bool, bytes] | None:
        """The answer another process is generating, once stored; None when it gave up (or died)."""
        assert self._claims is not None
        delay = _POLL_FIRST_S
        while True:
            await asyncio.sleep(delay)
            delay = min(2 * delay, _POLL_MAX_S)
            if (answer := self._cache.peek(key)) is not None:
                return answer
            if not self._claims.is_claimed(_claim_key(key)):
                return self._cache.peek(key)


def _claim_key(key: str) -> str:
    return f"claim:{key}"
