"""The benchmark's load client, one process or several, against a real local SSE server: every prompt
sent once, the concurrency cap held and reached, the usage counted, the results in prompt order."""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections.abc import Iterator

import pytest
from aiohttp import web

from benchmarks.llm_load import Load, run_async, run_load, summarize
from benchmarks.llm_load_processes import run_load_processes, split_clients
from scripts.procs import free_port


class CompletionServer:
    """Streams ``max_tokens`` one-token events per request after a short wait; records each prompt and
    the most requests it held at once."""

    def __init__(self) -> None:
        self.prompts: list[str] = []
        self.in_flight = self.most_in_flight = 0
        self.port = free_port()
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._serve, daemon=True).start()
        assert self._ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/v1/completions", self._complete)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.prompts.append(body["prompt"])
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.02)
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for _ in range(body["max_tokens"]):
                await response.write(b'data: {"choices": [{"text": "a"}]}\n\n')
            usage = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": body["max_tokens"]}}
            await response.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
            return response
        finally:
            self.in_flight -= 1


@pytest.fixture
def server() -> Iterator[CompletionServer]:
    served = CompletionServer()
    yield served
    served._loop.call_soon_threadsafe(served._loop.stop)


def test_clients_are_split_evenly_and_never_into_empty_processes() -> None:
    assert split_clients(64, 4) == [16, 16, 16, 16]
    assert split_clients(10, 4) == [3, 3, 2, 2]
    assert split_clients(2, 4) == [1, 1]
    assert sum(split_clients(63, 8)) == 63


@pytest.mark.parametrize("processes", [1, 3])
def test_every_prompt_is_sent_once_under_the_cap_and_answered_in_order(
    server: CompletionServer, processes: int
) -> None:
    prompts = [f"prompt {i}" for i in range(40)]
    lengths = [1 + i % 5 for i in range(40)]
    load = Load("c", len(prompts), math.inf, 6, client_processes=processes)
    if processes == 1:
        duration, results = run_async(run_load(server.url, "m", prompts, lengths, load, 0.0))
    else:
        duration, results = run_load_processes(server.url, "m", prompts, lengths, load, 0.0)
    assert sorted(server.prompts) == sorted(prompts)
    assert server.most_in_flight == 6
    assert [r.output_tokens for r in results] == lengths  # each result sits at its prompt's index
    assert all(r.ok and r.ttft >= 0.02 for r in results)
    summary = summarize(duration, results, 3)
    assert summary["completed"] == 40 and summary["failed"] == 0
    # 40 requests of >= 20 ms through 6 clients: at least 7 rounds
    assert 0.02 * math.ceil(40 / 6) <= duration < 5


def test_a_paced_load_stays_in_one_process(server: CompletionServer) -> None:
    with pytest.raises(ValueError, match="closed-loop"):
        run_load_processes(server.url, "m", ["a"], 1, Load("r", 1, 4.0, None, client_processes=2), 0.0)
