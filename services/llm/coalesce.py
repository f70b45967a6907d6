"""Identical deterministic requests in flight together share one generation.

Under many clients a popular prompt arrives again while its first generation is still running: the
response cache cannot answer it yet (nothing is stored until the answer is complete), so without this
every copy would be generated again. The first request (the leader) starts the engine request; the
copies that arrive while it runs follow its chunks: everything received so far at once, then each chunk
as it comes. The generation belongs to no one client: it runs in a task, and is cancelled (freeing its
engine slot) only when every client following it has gone. One process only: the workers of a service
coalesce each their own requests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable


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
