"""Every BentoML internal the project relies on still exists and behaves (services/bentoml_adapter.py).

A BentoML upgrade that moves one of them fails here, by name, instead of somewhere in a served Bento.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable

import pytest

from services import bentoml_adapter
from services.classic.schemas import Prediction  # an API output type (resolved by name from here)

# A service with a mounted app, built in a fresh process (a second to_asgi() in one process clashes on
# BentoML's Prometheus series): which routes does BentoML place after the mounted apps?
ROUTES_AFTER_MOUNTS = """
import json
import bentoml
from starlette.applications import Starlette
from _bentoml_impl.server.mount import PassiveMount

@bentoml.asgi_app(Starlette(), path="/", name="probe")
@bentoml.service
class Probe:
    @bentoml.api
    def ping(self) -> str:
        return "pong"

routes = Probe.to_asgi(is_main=True).routes
mounted = next(i for i, r in enumerate(routes) if isinstance(r, PassiveMount))
print(json.dumps([r.path for r in routes[mounted + 1 :]]))
"""

# Which timeout middleware does BentoML's app factory build once the adapter has swapped it?
TIMEOUT_MIDDLEWARE = """
import json
import bentoml
from services.bentoml_adapter import fix_bentoml

fix_bentoml()

@bentoml.service(traffic={"timeout": 7})
class Probe:
    @bentoml.api
    def ping(self) -> str:
        return "pong"

stack = Probe.to_asgi(is_main=True).user_middleware
print(json.dumps([[m.cls.__name__, m.kwargs.get("timeout")] for m in stack]))
"""


# What BentoML's OpenTelemetry middleware makes of an app, without and with a tracing exporter configured.
TRACING = """
import json
import bentoml
from bentoml._internal.configuration.containers import BentoMLContainer
from services.bentoml_adapter import fix_bentoml

fix_bentoml()

@bentoml.service
class Probe:
    @bentoml.api
    def ping(self) -> str:
        return "pong"

otel = next(m for m in Probe.to_asgi(is_main=True).user_middleware if hasattr(m.cls, "only_when_exporting"))
async def app(scope, receive, send): ...
untraced = otel.cls(app, *otel.args, **otel.kwargs) is app
BentoMLContainer.config.tracing.exporter_type.set("in_memory")
traced = type(otel.cls(app, *otel.args, **otel.kwargs)).__name__
print(json.dumps([untraced, traced]))
"""


def _probe(script: str) -> object:
    """Run ``script`` in a fresh process (a second to_asgi() in one process clashes on BentoML's
    Prometheus series) and read the JSON it prints last."""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_dependency_urls_come_from_the_runner_map_bentoml_gives_a_worker() -> None:
    from bentoml._internal.configuration.containers import BentoMLContainer

    before = BentoMLContainer.remote_runner_mapping.get()
    try:
        BentoMLContainer.remote_runner_mapping.set({"llm": "file:///tmp/llm.sock", "x": "http://h:1"})
        assert bentoml_adapter.dependency_url("llm") == "file:///tmp/llm.sock"
        assert bentoml_adapter.dependency_url("x") == "http://h:1"
        assert bentoml_adapter.dependency_url("in_process") is None
    finally:
        BentoMLContainer.remote_runner_mapping.set(before)


def test_the_typed_generate_apis_are_marked_streaming() -> None:
    from services.llm.service import LLM

    method = LLM.apis["generate"]
    assert method.is_stream is True
    assert method.output_spec.media_type == bentoml_adapter.STREAM_MEDIA_TYPE
    route = next(r for r in LLM.schema()["routes"] if r["name"] == "generate")
    assert route["output"]["is_stream"] is True  # what BentoML's clients read from /schema.json


def test_the_openapi_document_is_a_dict_with_the_typed_apis() -> None:
    from services.llm.service import LLM

    document = bentoml_adapter.openapi_document(LLM)
    assert "/generate" in document["paths"] and document["openapi"].startswith("3.")
    json.dumps(document)  # plain data, servable as JSON


@pytest.mark.timeout(120)
def test_only_the_web_ui_comes_after_mounted_apps_so_the_catch_all_leaves_exactly_it() -> None:
    after = _probe(ROUTES_AFTER_MOUNTS)
    assert isinstance(after, list)
    assert "/docs.json" in after and "/" in after
    for path in after:
        assert bentoml_adapter.is_bentoml_ui_path(path) or bentoml_adapter.is_bentoml_ui_path(path + "/"), (
            path
        )


@pytest.mark.timeout(120)
def test_bentoml_builds_our_fixed_middlewares_in_place_of_its_own() -> None:
    stack = _probe(TIMEOUT_MIDDLEWARE)
    names = [name for name, _ in stack]  # type: ignore[attr-defined]
    assert ["TimerReleasingTimeout", 7] in stack, stack  # type: ignore[operator]
    assert "BoundedEndpointMetrics" in names, names
    assert "TimeoutMiddleware" not in names and "RunnerTrafficMetricsMiddleware" not in names, names


@pytest.mark.timeout(120)
def test_requests_are_traced_only_where_a_tracing_exporter_is_configured() -> None:
    assert _probe(TRACING) == [True, "OpenTelemetryMiddleware"]


def test_metric_endpoints_are_known_routes_or_other() -> None:
    apis = frozenset({"/generate", "/embed"})
    assert bentoml_adapter.metric_endpoint("/generate", apis) == "/generate"
    assert bentoml_adapter.metric_endpoint("/v1/chat/completions", apis) == "/v1/chat/completions"
    for path in ("/v1/responses/resp_123", "/wp-admin", '/x"\n{'):
        assert bentoml_adapter.metric_endpoint(path, apis) == bentoml_adapter.OTHER_ENDPOINT


def _live_timers(loop: asyncio.AbstractEventLoop) -> int:
    return sum(not handle.cancelled() for handle in loop._scheduled)  # type: ignore[attr-defined]


async def _call(app: object, timeout: float) -> list[dict[str, object]]:
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    middleware = bentoml_adapter.TimerReleasingTimeout(app, timeout=timeout)
    await middleware({"type": "http", "method": "GET", "path": "/", "headers": []}, receive, send)
    return sent


def test_a_finished_request_leaves_no_timer_on_the_loop() -> None:
    async def app(
        scope: object, receive: object, send: Callable[[dict[str, object]], Awaitable[None]]
    ) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def scenario() -> int:
        before = _live_timers(asyncio.get_running_loop())
        for _ in range(50):
            sent = await _call(app, timeout=600)
            assert sent[0]["status"] == 200
        return _live_timers(asyncio.get_running_loop()) - before

    assert asyncio.run(scenario()) == 0  # BentoML's own middleware leaves 50 here, for 600 s


def test_no_response_within_the_timeout_is_a_504_and_a_failing_app_fails_at_once() -> None:
    async def slow(scope: object, receive: object, send: object) -> None:
        await asyncio.sleep(5)

    async def broken(scope: object, receive: object, send: object) -> None:
        raise RuntimeError("boom")

    sent = asyncio.run(_call(slow, timeout=0.05))
    assert sent[0]["status"] == 504
    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(asyncio.wait_for(_call(broken, timeout=600), timeout=5))


def test_over_asked_gpus_get_a_clear_startup_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    """BentoML's allocator on a 1-GPU machine: the LLM service takes GPU 0, a second whole-GPU claim
    (the embedding service on "cuda") gets index 1, which does not exist, with only a warning. The
    service that got it must say so at start instead of crashing in NVML, forever."""
    import warnings

    from _bentoml_impl.server.allocator import NVIDIA_GPU, ResourceAllocator

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    allocator = ResourceAllocator()
    allocator.system_resources[NVIDIA_GPU] = [0]  # this machine has no GPU: pretend one, as an H200 box
    allocator.remaining_gpus, allocator._available_gpus = 1, [(1.0, 1.0)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assigned = [allocator.assign_gpus(1) for _ in ("llm", "embedding_cache")]
    assert assigned == [[0], [1]]

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert bentoml_adapter.gpu_assignment_error("llm", lambda: 1) is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    reason = bentoml_adapter.gpu_assignment_error("embedding_cache", lambda: 1)
    assert reason is not None and "embedding_cache service GPU 1" in reason and "has 1 GPU" in reason
    assert "INFSTACK_EMBEDDING__DEVICE=cuda:0" in reason  # the way out
    assert bentoml_adapter.gpu_assignment_error("llm", lambda: None) is None  # no NVML: nothing to judge
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert bentoml_adapter.gpu_assignment_error("llm", lambda: 1) is None  # BentoML set nothing: all visible

    def no_nvml_on_a_cpu_service() -> int:
        raise AssertionError("NVML asked although BentoML assigned no GPU")

    assert bentoml_adapter.gpu_assignment_error("embedding_cache", no_nvml_on_a_cpu_service) is None


def test_a_response_media_type_is_worked_out_once_per_output_type(monkeypatch: pytest.MonkeyPatch) -> None:
    """BentoML built the output model's whole JSON schema on every response to pick its media type."""
    from _bentoml_sdk.io_models import IODescriptor, IOMixin

    def predictions() -> list[Prediction]: ...

    def text() -> str: ...

    bentoml_adapter.fix_bentoml()
    output = IODescriptor.from_output(predictions)
    built = []
    schema = output.model_json_schema
    monkeypatch.setattr(output, "model_json_schema", lambda *a, **k: built.append(1) or schema(*a, **k))
    assert output.mime_type() == output.mime_type() == output.mime_type() == "application/json"
    assert len(built) <= 1
    assert IODescriptor.from_output(text).mime_type().startswith("text/plain")  # per type, not one for all
    assert getattr(IOMixin.mime_type, "cached", False)


def dispatcher_probe(decorator: str, max_batch_size: int, measure: str) -> str:
    """A script: a service with a plain batchable API and one marked by ``decorator`` (a
    services.bentoml_adapter decorator call), built by BentoML's app factory; prints, per API, what
    ``measure`` (the source of ``async def measure(dispatcher)``) returns for its dispatcher."""
    name = decorator.partition("(")[0]
    return f"""
import asyncio, json
import bentoml
from services.bentoml_adapter import fix_bentoml
from services.bentoml_dispatch import {name}

fix_bentoml()

@bentoml.service
class Probe:
    @bentoml.api(batchable=True, max_batch_size={max_batch_size}, max_latency_ms=60000)
    def plain(self, xs: list[int]) -> list[int]:
        return xs

    @bentoml.api(batchable=True, max_batch_size={max_batch_size}, max_latency_ms=60000)
    @{decorator}
    def marked(self, xs: list[int]) -> list[int]:
        return xs

from _bentoml_impl.server.app import ServiceAppFactory
{measure}
Probe.inject_config()
dispatchers = ServiceAppFactory(Probe, is_main=True).dispatchers
print(json.dumps({{name: asyncio.run(measure(d)) for name, d in sorted(dispatchers.items())}}))
"""


# BentoML's dispatcher of each batchable API, as its app factory builds it: how many batches run at once?
BATCHES_AT_ONCE = dispatcher_probe("batches_in_flight(3)", 4, """
async def measure(dispatcher) -> int:
    running = most = 0
    async def batch(rows):
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.02)
        running -= 1
        return rows
    call = dispatcher(batch)
    await asyncio.gather(*(call(i) for i in range(120)))
    return most
""")  # fmt: skip


def test_a_marked_batchable_api_runs_that_many_batches_at_once_and_others_one() -> None:
    assert _probe(BATCHES_AT_ONCE) == {"plain": 1, "marked": 3}


# After a burst of load (batches that take 20 ms, 40 requests at a time), requests come one at a time:
# how long does a lone request take (the model answers a single row at once)?
LONE_AFTER_LOAD = dispatcher_probe("learn_wait_from_batches(True)", 16, """
import time

async def measure(dispatcher) -> float:
    async def batch(rows):
        await asyncio.sleep(0.02 if len(rows) > 1 else 0)
        return rows
    call = dispatcher(batch)
    for _ in range(25):
        await asyncio.gather(*(call(i) for i in range(40)))
    dispatcher.optimizer.trigger_refresh()  # as BentoML does every 5 s
    lone = []
    for _ in range(150):
        started = time.perf_counter()
        await call(1)
        lone.append(time.perf_counter() - started)
    return round(sorted(lone[-50:])[25] * 1000, 2)  # median of the last 50, ms
""")  # fmt: skip


@pytest.mark.timeout(120)
def test_a_marked_api_stops_holding_lone_requests_once_the_load_is_gone() -> None:
    found = _probe(LONE_AFTER_LOAD)
    assert found["plain"] > 10, found  # BentoML's own: the hold learned under load sustains itself
    assert found["marked"] < 3, found


# Requests that reach the dispatcher a few per event-loop turn, as a busy worker's do (each after its own
# number of turns), into a model that answers on the loop: BentoML's dispatcher starts a batch with whatever
# is queued, a marked one takes along what keeps arriving, up to max_batch_size. Lone requests before and
# after (past BentoML's warm-up) stay batches of one, a lone batch after a lone batch waits no turn, and no
# row is lost or answered to the wrong request, even when one request's size cannot be counted.
GATHERED = dispatcher_probe("gather_turns(8)", 8, """
async def measure(dispatcher) -> dict:
    sizes = []
    async def batch(requests):
        sizes.append(sum(map(len, requests)))
        return [[row * 10 for row in request] for request in requests]
    call = dispatcher(batch)
    async def after_turns(turns, i):
        for _ in range(turns):
            await asyncio.sleep(0)
        return await call([i])
    for i in range(12):
        await call([i])
    sizes.clear()
    answers = await asyncio.gather(*(after_turns(i // 3, i) for i in range(24)))  # 3 arrive per turn
    assert answers == [[i * 10] for i in range(24)], answers
    busy = list(sizes)
    sizes.clear()
    sleep = asyncio.sleep
    waited = 0
    async def counted_sleep(delay, *args, **kwargs):  # turns waited: sleep(0) (the controller ticks 1 ms)
        nonlocal waited
        waited += delay == 0
        return await sleep(delay, *args, **kwargs)
    asyncio.sleep = counted_sleep
    lone_turns = []
    for i in range(5):
        before = waited
        await call([i])
        lone_turns.append(waited - before)
    asyncio.sleep = sleep
    lone_after = list(sizes)
    counted = dispatcher.get_batch_size  # a request whose size cannot be counted reaches a gathering batch
    dispatcher.get_batch_size = lambda data: 1 // 0 if data == [1004] else counted(data)
    faulty = await asyncio.gather(*(after_turns(i // 3, 1000 + i) for i in range(9)))
    dispatcher.get_batch_size = counted
    served = faulty == [[10000 + i * 10] for i in range(9)] and await call([5]) == [50]
    return {"busy": busy, "lone_after": lone_after, "lone_turns": lone_turns, "served_past_a_fault": served}
""")  # fmt: skip


def test_a_marked_api_takes_along_requests_that_keep_arriving_and_never_holds_a_lone_one() -> None:
    found = _probe(GATHERED)
    assert found["marked"]["busy"] == [8, 8, 8], found  # max_batch_size 8: 24 rows in 3 batches
    assert len(found["plain"]["busy"]) > 3, found
    assert found["marked"]["lone_after"] == found["plain"]["lone_after"] == [1] * 5, found
    assert found["plain"]["lone_turns"] == [0] * 5, found
    # the first lone batch follows a busy one and may wait a turn; the others wait none
    assert found["marked"]["lone_turns"][1:] == [0] * 4, found
    assert found["marked"]["served_past_a_fault"] and found["plain"]["served_past_a_fault"], found


# Requests of 1-3 rows each through the app factory's batch_infer (as its HTTP path calls it: the one field
# by name), into an API that records each merged batch (at most 8 rows: some requests are split across
# two): which rows came back to which request, and how often was the API's callable built?
LEAN_BATCHES = """
import asyncio, json
import bentoml
from _bentoml_sdk.method import APIMethod
from services.bentoml_adapter import fix_bentoml

fix_bentoml()
batches = []
built = 0
local_call = APIMethod._local_call

def counted(self, instance):
    global built
    built += 1
    return local_call(self, instance)

APIMethod._local_call = counted

@bentoml.service
class Probe:
    @bentoml.api(batchable=True, max_batch_size=8, max_latency_ms=60000)
    async def double(self, xs: list[int]) -> list[int]:
        batches.append(list(xs))
        await asyncio.sleep(0.02)
        return [x * 2 for x in xs]

from _bentoml_impl.server.app import ServiceAppFactory
Probe.inject_config()
factory = ServiceAppFactory(Probe, is_main=True)
factory._service_instance = Probe()
requests = [list(range(10 * i, 10 * i + 1 + i % 3)) for i in range(30)]
built = 0  # from here: what serving the requests builds

async def main():
    answers = await asyncio.gather(*(factory.batch_infer("double", (), {"xs": r}) for r in requests))
    return [a == [x * 2 for x in r] for a, r in zip(answers, requests)]

ok = asyncio.run(main())
merged = sorted(x for b in batches for x in b) == sorted(x for r in requests for x in r)
print(json.dumps({"all_own_rows": all(ok), "every_row_once": merged, "built": built,
                  "largest_batch": max(map(len, batches)), "batches": len(batches),
                  "rows_of": factory.dispatchers["double"].get_batch_size([1, 2, 3])}))
"""


def test_batched_requests_get_back_exactly_their_own_rows_through_the_lean_path() -> None:
    found = _probe(LEAN_BATCHES)
    assert found["all_own_rows"] and found["every_row_once"], found
    assert found["largest_batch"] == 8 and found["batches"] < 30, found  # merged up to max_batch_size
    assert found["built"] == 1, found  # once per API, not once per request as BentoML's own path
    assert found["rows_of"] == 3
