"""SharedGeneration: one engine answer followed by identical requests (services/llm/coalesce.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from services.llm.coalesce import SharedGeneration


class Source:
    """An engine answer whose chunks the test releases one by one."""

    def __init__(self, chunks: list[bytes], fail_after: int | None = None) -> None:
        self.chunks = chunks
        self.fail_after = fail_after
        self.release = asyncio.Semaphore(0)
        self.closed = False

    async def __call__(self) -> AsyncIterator[bytes]:
        try:
            for i, chunk in enumerate(self.chunks):
                await self.release.acquire()
                if self.fail_after is not None and i == self.fail_after:
                    raise ConnectionError("engine broke off")
                yield chunk
        finally:
            self.closed = True


async def read(chunks: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in chunks]


def test_a_late_follower_gets_everything_from_the_first_chunk() -> None:
    async def scenario() -> None:
        finished: list[bool] = []
        shared = SharedGeneration(lambda: finished.append(True))
        source = Source([b"a", b"b", b"c"])
        shared.start([], source())
        leader = asyncio.create_task(read(shared.follow()))
        source.release.release()
        await asyncio.sleep(0.01)
        assert await shared.joined()
        late = asyncio.create_task(read(shared.follow()))  # joins after the first chunk
        for _ in range(2):
            source.release.release()
        assert await leader == await late == [b"a", b"b", b"c"]
        assert finished == [True]

    asyncio.run(scenario())


def test_a_broken_generation_ends_every_follower_with_its_error() -> None:
    async def scenario() -> None:
        shared = SharedGeneration(lambda: None)
        source = Source([b"a", b"b"], fail_after=1)
        shared.start([], source())
        followers = [asyncio.create_task(read(shared.follow())) for _ in range(3)]
        for _ in range(2):
            source.release.release()
        for follower in followers:
            with pytest.raises(ConnectionError, match="engine broke off"):
                await follower

    asyncio.run(scenario())


def test_when_every_follower_leaves_the_generation_is_cancelled() -> None:
    async def scenario() -> Source:
        shared = SharedGeneration(lambda: None)
        source = Source([b"a", b"b", b"c"])
        shared.start([], source())
        followers = [shared.follow() for _ in range(2)]
        source.release.release()
        for follower in followers:
            assert await anext(follower) == b"a"
        assert not source.closed
        await followers[0].aclose()  # type: ignore[attr-defined]
        await asyncio.sleep(0.01)
        assert not source.closed  # one still listens
        await followers[1].aclose()  # type: ignore[attr-defined]
        await asyncio.sleep(0.01)
        return source

    assert asyncio.run(scenario()).closed  # the engine request is closed: its slot is free


def test_an_abandoned_generation_has_nothing_to_follow() -> None:
    async def scenario() -> bool:
        finished: list[bool] = []
        shared = SharedGeneration(lambda: finished.append(True))
        waiting = asyncio.create_task(shared.joined())
        await asyncio.sleep(0)
        shared.abandon()
        assert finished == [True]
        return await waiting

    assert asyncio.run(scenario()) is False
