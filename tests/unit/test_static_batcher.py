"""benchmarks/static_batcher.py: the static-batching policy that continuous batching is measured
against. Plain asyncio tasks stand in for requests; each holds its slot for as long as its answer takes."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiohttp import web

from benchmarks.static_batcher import StaticBatcher, build_app


async def _request(
    batcher: StaticBatcher, log: list[tuple[str, str, float]], name: str, hold_s: float
) -> None:
    async with batcher.slot():
        log.append(("start", name, time.monotonic()))
        await asyncio.sleep(hold_s)
        log.append(("end", name, time.monotonic()))


def test_a_full_batch_goes_at_once_and_the_next_waits_for_its_longest_request() -> None:
    async def scenario() -> tuple[list[tuple[str, str, float]], list[int]]:
        batcher = StaticBatcher(max_batch=2, max_wait_ms=10_000)
        batcher.start()
        log: list[tuple[str, str, float]] = []
        tasks = [asyncio.create_task(_request(batcher, log, "short", 0.01)),
                 asyncio.create_task(_request(batcher, log, "long", 0.2))]  # fmt: skip
        await asyncio.sleep(0.05)  # "short" is done by now; its slot stays empty
        tasks.append(asyncio.create_task(_request(batcher, log, "late1", 0.0)))
        tasks.append(asyncio.create_task(_request(batcher, log, "late2", 0.0)))
        await asyncio.gather(*tasks)
        await batcher.stop()
        return log, batcher.batches

    log, batches = asyncio.run(scenario())
    starts = {name: t for kind, name, t in log if kind == "start"}
    ends = {name: t for kind, name, t in log if kind == "end"}
    assert batches == [2, 2]
    assert abs(starts["short"] - starts["long"]) < 0.005  # dispatched together, without the 10 s wait
    assert starts["late1"] >= ends["long"] and starts["late2"] >= ends["long"]  # whole batch first


def test_a_lone_request_goes_after_max_wait() -> None:
    async def scenario() -> float:
        batcher = StaticBatcher(max_batch=8, max_wait_ms=80)
        batcher.start()
        log: list[tuple[str, str, float]] = []
        sent = time.monotonic()
        await _request(batcher, log, "alone", 0.0)
        await batcher.stop()
        return log[0][2] - sent

    waited = asyncio.run(scenario())
    assert 0.07 <= waited < 0.5


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        StaticBatcher(max_batch=0, max_wait_ms=10)


def test_the_app_relays_generations_through_the_batcher_and_other_paths_at_once() -> None:
    """A real upstream on a free port: streamed chunks come through unchanged and in order."""

    async def upstream_app() -> web.Application:
        async def completions(request: web.Request) -> web.StreamResponse:
            n = (await request.json())["max_tokens"]
            response = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await response.prepare(request)
            for i in range(n):
                await response.write(f"data: {i}\n\n".encode())
            await response.write_eof()
            return response

        app = web.Application()
        app.router.add_post("/v1/completions", completions)

        async def health(request: web.Request) -> web.Response:
            return web.Response(text="ok")

        app.router.add_get("/health", health)
        return app

    async def scenario() -> tuple[list[str], str, list[int]]:
        up = web.AppRunner(await upstream_app())
        await up.setup()
        up_site = web.TCPSite(up, "127.0.0.1", 0)
        await up_site.start()
        up_port = up_site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        batcher = StaticBatcher(max_batch=3, max_wait_ms=20)
        front = web.AppRunner(build_app(f"http://127.0.0.1:{up_port}", batcher))
        await front.setup()
        site = web.TCPSite(front, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as session:

            async def one(n: int) -> str:
                async with session.post(f"{url}/v1/completions", json={"max_tokens": n}) as r:
                    return await r.text()

            bodies = await asyncio.gather(one(2), one(3), one(1))
            async with session.get(f"{url}/health") as r:
                health = await r.text()
        await front.cleanup()
        await up.cleanup()
        return list(bodies), health, batcher.batches

    bodies, health, batches = asyncio.run(scenario())
    assert bodies == ["data: 0\n\ndata: 1\n\n", "data: 0\n\ndata: 1\n\ndata: 2\n\n", "data: 0\n\n"]
    assert health == "ok" and batches == [3]
