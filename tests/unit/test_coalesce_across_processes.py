"""Coalescing across processes (services/llm/coalesce.py Coalescer): two coalescers on one SQLite file
stand for two worker processes; the engine is a source of chunks the test releases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.cache.disk import SqliteStore
from services.cache.store import FailSoftStore
from services.cache.write_behind import WriteBehindStore
from services.llm import coalesce
from services.llm.coalesce import Coalescer, SharedGeneration
from services.llm.response_cache import ResponseCache
from tests.unit.test_coalesce import Source, read

KEY = "llm:test:key"
ANSWER = [b"data: a\n\n", b"data: [DONE]\n\n"]


def worker(path: Path, across: bool = True) -> tuple[Coalescer, ResponseCache]:
    cache = ResponseCache(WriteBehindStore(FailSoftStore(SqliteStore(path), "coalesce-test", 1.0)))
    return Coalescer(cache, across_processes=across), cache


def generate(shared: SharedGeneration, cache: ResponseCache, source: Source) -> asyncio.Task[list[bytes]]:
    """What the proxy does as leader: share the engine's chunks and store the answer once complete."""

    async def stored_once_complete() -> AsyncIterator[bytes]:
        received = [chunk async for chunk in source()]
        for chunk in received:
            yield chunk
        cache.put(KEY, b"".join(received), stream=True)

    shared.start([], stored_once_complete())
    return asyncio.create_task(read(shared.follow()))


def test_a_request_in_another_process_is_answered_from_the_leaders_generation(tmp_path: Path) -> None:
    async def scenario() -> None:
        (first, first_cache), (second, _) = worker(tmp_path / "kv"), worker(tmp_path / "kv")
        lead = await first.enter(KEY)
        assert lead.kind == "lead" and lead.generation is not None
        source = Source(ANSWER)
        leader = generate(lead.generation, first_cache, source)
        waiting = [asyncio.create_task(second.enter(KEY)) for _ in range(3)]
        await asyncio.sleep(0.1)
        assert not any(task.done() for task in waiting)  # they wait for the answer, not generate it
        for _ in ANSWER:
            source.release.release()
        assert b"".join(await leader) == b"".join(ANSWER)
        for turn in await asyncio.gather(*waiting):
            assert turn.kind == "stored" and turn.answer == (True, b"".join(ANSWER))

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_when_the_leader_fails_the_other_process_generates(tmp_path: Path) -> None:
    async def scenario() -> None:
        (first, _), (second, second_cache) = worker(tmp_path / "kv"), worker(tmp_path / "kv")
        lead = await first.enter(KEY)
        assert lead.generation is not None
        waiting = [asyncio.create_task(second.enter(KEY)) for _ in range(2)]
        await asyncio.sleep(0.05)
        lead.generation.abandon()  # the engine answered an error: nothing to share
        done, [follower] = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        [new_lead] = [task.result() for task in done]
        assert new_lead.kind == "lead" and new_lead.generation is not None
        source = Source(ANSWER)
        generate(new_lead.generation, second_cache, source)
        assert (await follower).kind == "follow"  # one generation in its place, not two

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_a_leader_that_died_holds_the_others_only_until_its_claim_expires(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(coalesce, "CLAIM_TTL_S", 0.3)
    monkeypatch.setattr(coalesce, "_RENEW_EVERY_S", 60.0)  # the dead process renews nothing

    async def scenario() -> None:
        (first, _), (second, _) = worker(tmp_path / "kv"), worker(tmp_path / "kv")
        assert (await first.enter(KEY)).kind == "lead"  # ...and then never finishes
        turn = await second.enter(KEY)
        assert turn.kind == "lead"

    asyncio.run(asyncio.wait_for(scenario(), 5))


def test_a_live_leader_keeps_its_claim_past_the_ttl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(coalesce, "CLAIM_TTL_S", 0.3)
    monkeypatch.setattr(coalesce, "_RENEW_EVERY_S", 0.1)

    async def scenario() -> None:
        (first, first_cache), (second, _) = worker(tmp_path / "kv"), worker(tmp_path / "kv")
        lead = await first.enter(KEY)
        assert lead.generation is not None
        source = Source(ANSWER)
        leader = generate(lead.generation, first_cache, source)
        waiting = asyncio.create_task(second.enter(KEY))
        await asyncio.sleep(1.0)  # three TTLs
        assert not waiting.done()
        for _ in ANSWER:
            source.release.release()
        await leader
        assert (await waiting).kind == "stored"

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_without_sharing_each_process_leads_its_own(tmp_path: Path) -> None:
    async def scenario() -> None:
        first, _ = worker(tmp_path / "kv", across=False)
        second, _ = worker(tmp_path / "kv", across=False)
        assert (await first.enter(KEY)).kind == (await second.enter(KEY)).kind == "lead"

    asyncio.run(scenario())


def test_a_request_cancelled_while_claiming_leaves_nothing_behind(tmp_path: Path) -> None:
    """The client of the would-be leader leaves while its claim is being taken: an identical request of
    the same process must not wait for a generation nobody will start."""

    async def scenario() -> None:
        first, _ = worker(tmp_path / "kv")
        claiming = asyncio.create_task(first.enter(KEY))
        await asyncio.sleep(0)  # inside the claim
        follower = asyncio.create_task(first.enter(KEY))
        await asyncio.sleep(0)
        claiming.cancel()
        turn = await follower
        assert turn.kind in ("lead", "stored")  # not stuck following the cancelled one

    asyncio.run(asyncio.wait_for(scenario(), 3))  # its claim is released, not left to expire (10 s)
