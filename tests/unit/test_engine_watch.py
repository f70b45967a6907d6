"""When the LLM worker restarts its engine: a refusing engine soon, a silent one only when it stays silent.

A real HTTP server plays the engine's /health: answering, answering too late, then gone. Only the
restart itself (which ends the process) is recorded instead of done."""

from __future__ import annotations

import asyncio

from aiohttp import web

from scripts.procs import free_port
from services.llm.supervision import EngineWatch
from services.relay import Upstream


class RecordingWatch(EngineWatch):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.restarts: list[float] = []

    def _restart(self, group: int | None) -> None:
        self.restarts.append(asyncio.get_running_loop().time())


async def _engine(port: int, state: dict[str, float]) -> web.AppRunner:
    async def health(_: web.Request) -> web.Response:
        await asyncio.sleep(state["delay_s"])
        return web.Response(status=200)

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def stop(watch: EngineWatch) -> None:
    assert watch._task is not None
    watch._task.cancel()
    await watch.engines[0].close()


def watch_for(port: int, hung_after_s: float) -> RecordingWatch:
    upstream = Upstream("vLLM engine", f"http://127.0.0.1:{port}")
    return RecordingWatch([upstream], owns_engine=True, period_s=0.05, misses=3, timeout_s=0.2,
                          hung_after_s=hung_after_s)  # fmt: skip


def test_a_silent_engine_keeps_its_readiness_and_is_restarted_only_after_hung_after_s() -> None:
    async def run() -> None:
        port, state = free_port(), {"delay_s": 0.0}
        runner = await _engine(port, state)
        watch = watch_for(port, hung_after_s=1.5)
        watch.start()
        await asyncio.sleep(0.3)
        assert watch.healthy and watch.restarts == []
        state["delay_s"] = 5.0  # busy: every check times out
        silent_from = asyncio.get_running_loop().time()
        await asyncio.sleep(1.0)  # well past `misses` checks
        assert watch.healthy and watch.restarts == []
        await asyncio.sleep(2.0)
        assert watch.restarts and watch.restarts[0] - silent_from >= 1.5
        await stop(watch)
        await runner.cleanup()

    asyncio.run(run())


def test_a_refusing_engine_is_down_at_once_and_restarted_after_misses_checks() -> None:
    async def run() -> None:
        port = free_port()
        runner = await _engine(port, {"delay_s": 0.0})
        watch = watch_for(port, hung_after_s=60)
        watch.start()
        await asyncio.sleep(0.3)
        assert watch.healthy
        await runner.cleanup()  # the engine is gone: connections are refused
        gone_at = asyncio.get_running_loop().time()
        await asyncio.sleep(1.0)
        assert not watch.healthy
        assert watch.restarts and watch.restarts[0] - gone_at < 1.0  # not hung_after_s
        await stop(watch)

    asyncio.run(run())


def test_an_engine_that_never_came_up_is_not_restarted_by_the_watch() -> None:
    """Start-up belongs to preflight and the start timeout; the watch acts only on an engine that was up."""

    async def run() -> None:
        watch = watch_for(free_port(), hung_after_s=0.1)
        watch.start()
        await asyncio.sleep(0.5)
        assert not watch.healthy and watch.restarts == []
        await stop(watch)

    asyncio.run(run())
