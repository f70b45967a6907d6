"""A static-batching front for a vLLM server: benchmark-only code, the alternative continuous batching beats.

    python -m benchmarks.static_batcher --upstream http://127.0.0.1:8000 --port 8100 \\
        --max-batch 16 --max-wait-ms 50

What "static batching" means here (what servers did before continuous batching, and what the guide's
"continuous batching 2-3x" claim is measured against):

- requests queue in arrival order;
- a batch is dispatched when ``max_batch`` requests wait, or ``max_wait_ms`` after the first of them
  arrived, whichever comes first; it takes up to ``max_batch`` of the waiting requests;
- the NEXT batch is dispatched only when EVERY request of the current one has finished (its whole
  answer relayed), so a short answer's slot stays empty until the batch's longest answer ends, and a
  request that arrives meanwhile waits for the whole batch.

The engine behind it is the same vLLM server that continuous batching is measured on; with
``max_batch`` <= the engine's ``max_num_seqs`` each batch runs inside the engine at once. Only the
generation routes (``/v1/completions``, ``/v1/chat/completions``) are batched; every other path
(``/health``, ``/metrics``, ``/v1/models``) is relayed at once. Streams are relayed chunk by chunk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

BATCHED_PATHS = frozenset({"/v1/completions", "/v1/chat/completions"})
SESSION = web.AppKey("session", aiohttp.ClientSession)
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "host"})


@dataclass
class _Slot:
    """One queued request: released by the dispatcher, reports back when its answer is complete."""

    arrived: float
    go: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class StaticBatcher:
    """The dispatch policy alone (no HTTP), so it can be tested with plain tasks.

    ``async with batcher.slot(): ...`` waits until the request's batch is dispatched, and the body of
    the block is the request's whole life; leaving the block marks it finished."""

    def __init__(self, max_batch: int, max_wait_ms: float) -> None:
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError("max_batch >= 1 and max_wait_ms >= 0")
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1e3
        self._queue: deque[_Slot] = deque()
        self._arrival = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.batches: list[int] = []  # size of every dispatched batch, in order

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._dispatch_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        slot = _Slot(time.monotonic())
        self._queue.append(slot)
        self._arrival.set()
        try:
            await slot.go.wait()
            yield
        finally:
            slot.done.set()  # also when the client went away: the batch must not wait for it
            with contextlib.suppress(ValueError):
                self._queue.remove(slot)

    async def _dispatch_forever(self) -> None:
        while True:
            while not self._queue:
                self._arrival.clear()
                await self._arrival.wait()
            deadline = self._queue[0].arrived + self.max_wait_s
            while len(self._queue) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                self._arrival.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrival.wait(), left)
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            self.batches.append(len(batch))
            for slot in batch:
                slot.go.set()
            await asyncio.gather(*(slot.done.wait() for slot in batch))  # the whole batch, then the next


def build_app(upstream: str, batcher: StaticBatcher | None) -> web.Application:
    """An aiohttp app relaying everything to ``upstream``; generation routes pass the batcher first.
    Without a batcher it only relays: the same hop with continuous batching behind it, which tells the
    relay's own cost from the batching policy's."""
    app = web.Application(client_max_size=64 * 2**20)

    async def on_startup(app: web.Application) -> None:
        app[SESSION] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None)
        )
        if batcher is not None:
            batcher.start()

    async def on_cleanup(app: web.Application) -> None:
        if batcher is not None:
            await batcher.stop()
        await app[SESSION].close()

    async def relay(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        if batcher is None or request.path not in BATCHED_PATHS or request.method != "POST":
            return await _forward(request, app[SESSION], upstream, body, headers)
        async with batcher.slot():
            return await _forward(request, app[SESSION], upstream, body, headers)

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_route("*", "/{tail:.*}", relay)
    return app


async def _forward(
    request: web.Request, session: aiohttp.ClientSession, upstream: str, body: bytes, headers: dict[str, str]
) -> web.StreamResponse:
    """Send one request upstream and relay its answer as it arrives (never re-chunked)."""
    url = upstream.rstrip("/") + request.path_qs
    async with session.request(request.method, url, data=body, headers=headers) as up:
        response = web.StreamResponse(status=up.status)
        for name, value in up.headers.items():
            if name.lower() not in _HOP_BY_HOP:
                response.headers[name] = value
        await response.prepare(request)
        async for chunk in up.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--upstream", required=True, help="the vLLM server, e.g. http://127.0.0.1:8000")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--max-batch", type=int, default=16, help="<= the engine's max_num_seqs; 0: relay only")
    p.add_argument(
        "--max-wait-ms", type=float, default=50.0, help="longest wait after a batch's first arrival"
    )
    args = p.parse_args(argv)
    batcher = StaticBatcher(args.max_batch, args.max_wait_ms) if args.max_batch else None
    try:  # the same event loop as the load client: less CPU per relayed chunk on a small machine
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    web.run_app(build_app(args.upstream, batcher), host=args.host, port=args.port, print=None, loop=loop)


if __name__ == "__main__":
    main()
