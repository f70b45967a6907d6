"""The public port is the product: what a client of the one Bento reaches at the gateway's address.

vLLM's whole HTTP API answers there as the engine itself does (compared with the engine's own loopback
port), OpenAI embeddings answer from the embedding cache, ``/metrics`` is one valid exposition with vLLM's
families, ``/docs.json`` documents all of it, and LLM traffic crosses one relay, not two.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from langchain_openai import OpenAIEmbeddings
from prometheus_client.parser import text_string_to_metric_families

from scripts.procs import BentoServer, metric_value
from services.llm import compat
from tests.conftest import TINY_LLM, refs

pytestmark = pytest.mark.integration
EMBEDDING_MODEL = "all-MiniLM-L6-v2"


def unique(prefix: str, n: int) -> list[str]:
    tag = uuid.uuid4().hex[:8]
    return [f"{prefix} ({tag}-{i})" for i in range(n)]


@pytest.fixture(scope="module")
def gateway(gateway_server: BentoServer) -> str:
    return gateway_server.url


@pytest.fixture(scope="module")
def engine(gateway_server: BentoServer) -> str:
    """The vLLM engine's own loopback address inside the Bento (what raw vLLM would answer)."""
    return f"http://127.0.0.1:{gateway_server.env['INFSTACK_LLM__ENGINE_PORT']}"


@pytest.fixture(scope="module")
def client(gateway: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key="unused", max_retries=0, timeout=60)


def test_start_up_logged_no_traceback(gateway_server: BentoServer) -> None:
    """While the engine loads, each readiness poll of the gateway is one line at most."""
    startup = gateway_server.startup_log
    assert "Service inference_stack initialized" in startup
    assert "Traceback" not in startup
    assert all(len(line) < 400 for line in startup.splitlines() if "/readyz: not ready" in line)


ENGINE_ROUTES: list[tuple[str, str, dict[str, Any] | None, int]] = [
    ("GET", "/version", None, 200),
    ("GET", "/health", None, 200),
    ("GET", "/v1/models", None, 200),
    ("POST", "/tokenize", {"model": TINY_LLM, "prompt": "Hello world"}, 200),
    ("POST", "/detokenize", {"model": TINY_LLM, "tokens": [5, 6, 7]}, 200),
    ("POST", "/tokenize", {"model": TINY_LLM, "prompt": 5}, 400),
    ("POST", "/v1/completions/render", {"model": TINY_LLM, "prompt": "Hi"}, 403),  # vLLM: disabled by default
    ("GET", "/no/such/route", None, 404),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), ENGINE_ROUTES)
def test_engine_routes_answer_through_the_gateway_as_the_engine_does(
    gateway: str, engine: str, method: str, path: str, body: dict | None, status: int
) -> None:
    through = httpx.request(method, gateway + path, json=body, timeout=30)
    itself = httpx.request(method, engine + path, json=body, timeout=30)
    assert (through.status_code, itself.status_code) == (status, status), through.text
    if itself.headers.get("content-type", "").startswith("application/json"):
        expected, got = itself.json(), through.json()
        if path == "/v1/models":  # vLLM stamps each answer with its time and fresh permission ids
            for listing in (expected, got):
                for model in listing["data"]:
                    model.pop("created"), model.pop("permission")
        assert got == expected
    else:
        assert through.content == itself.content


def test_the_responses_api_answers_and_streams_through_the_gateway(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=TINY_LLM, input="Say something.", max_output_tokens=6, temperature=0
    )
    assert response.usage is not None and response.usage.output_tokens == 6
    assert response.output_text
    events = list(
        client.responses.create(
            model=TINY_LLM, input="Say something.", max_output_tokens=6, temperature=0, stream=True
        )
    )
    streamed = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert streamed == response.output_text
    assert events[-1].type in ("response.completed", "response.incomplete")


# --- /v1/embeddings ------------------------------------------------------------------------------------
def test_openai_sdk_embeddings_are_the_models_vectors_and_hit_the_cache_the_second_time(
    gateway: str, client: openai.OpenAI, reference_model
) -> None:
    texts = unique("An OpenAI embedding request", 3)
    expected = reference_model.encode(texts, convert_to_numpy=True)
    first = client.embeddings.create(model=EMBEDDING_MODEL, input=texts)  # the SDK asks for base64
    np.testing.assert_allclose(np.float32([d.embedding for d in first.data]), expected, atol=1e-5)
    assert [d.index for d in first.data] == [0, 1, 2] and first.model == EMBEDDING_MODEL
    tokens = sum(len(ids) for ids in reference_model.tokenizer(texts)["input_ids"])
    assert first.usage.prompt_tokens == first.usage.total_tokens == tokens

    as_floats = client.embeddings.create(model=EMBEDDING_MODEL, input=texts, encoding_format="float")
    assert [d.embedding for d in as_floats.data] == [d.embedding for d in first.data]
    raw = httpx.post(f"{gateway}/v1/embeddings", json={"input": texts[0]}, timeout=30)  # model omitted
    assert raw.status_code == 200 and raw.headers["x-infstack-cache-hits"] == "1"
    np.testing.assert_allclose(raw.json()["data"][0]["embedding"], expected[0], atol=1e-5)


def test_langchain_openai_embeddings_work_on_the_gateway(gateway: str, reference_model) -> None:
    texts = unique("A LangChain document", 3)
    embedder = OpenAIEmbeddings(
        base_url=f"{gateway}/v1", api_key="unused", model=EMBEDDING_MODEL, check_embedding_ctx_length=False
    )
    documents = embedder.embed_documents(texts)
    np.testing.assert_allclose(np.float32(documents), reference_model.encode(texts), atol=1e-5)
    np.testing.assert_allclose(embedder.embed_query(texts[1]), documents[1], atol=1e-6)


@pytest.mark.parametrize(
    ("body", "error", "param", "needle"),
    [
        ({"input": "x", "model": "text-embedding-3-small"}, openai.NotFoundError, "model", "does not exist"),
        ({"input": ["x"] * 33}, openai.BadRequestError, "input", "at most 32 texts"),
        ({"input": ["ok", "y" * 201]}, openai.BadRequestError, "input", "at most 200 characters"),
        ({"input": [[1, 2, 3]]}, openai.BadRequestError, "input", "token ids are not accepted"),
    ],
)
def test_bad_embedding_requests_get_openais_error_naming_the_field(
    client: openai.OpenAI, body: dict, error: type[openai.APIStatusError], param: str, needle: str
) -> None:
    with pytest.raises(error) as caught:
        client.embeddings.create(model=body.get("model", EMBEDDING_MODEL), input=body["input"])
    detail = caught.value.body
    assert isinstance(detail, dict) and detail["param"] == param and needle in detail["message"], detail


# --- one scrape target, one document ---------------------------------------------------------------------
def test_public_metrics_are_one_valid_exposition_with_every_services_and_vllms_families(gateway: str) -> None:
    completion = {"model": TINY_LLM, "prompt": unique("metrics", 1)[0], "max_tokens": 3, "temperature": 0}
    assert httpx.post(f"{gateway}/v1/completions", json=completion, timeout=60).status_code == 200
    assert httpx.post(f"{gateway}/embed", json={"texts": unique("metrics", 1)}, timeout=60).status_code == 200
    text = httpx.get(f"{gateway}/metrics", timeout=30).text
    families = {f.name: f for f in text_string_to_metric_families(text)}  # the reference parser accepts it
    types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types)), "a family is declared twice"
    samples = [line.rpartition(" ")[0] for line in text.splitlines() if line and not line.startswith("#")]
    assert len(samples) == len(set(samples)), "a sample is exposed twice"
    assert {
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:time_to_first_token_seconds",
    } <= set(families)
    assert set(compat.KV_CACHE_USAGE_METRICS) & set(families)
    assert {"infstack_cache_lookups", "infstack_embedding_texts", "bentoml_service_request"} <= set(families)
    services = {s.labels.get("service_name") for s in families["bentoml_service_request"].samples}
    assert {"inference_stack", "embedding_cache"} <= services
    assert metric_value(text, "vllm:request_success_total", finished_reason="length") is not None


def test_docs_json_documents_the_typed_apis_and_every_relayed_route(gateway: str) -> None:
    document = httpx.get(f"{gateway}/docs.json", timeout=30).json()
    assert document["openapi"] == "3.1.0"
    paths = set(document["paths"])
    assert {"/generate", "/embed", "/classify_text", "/predict_tabular"} <= paths
    assert {
        "/v1/completions",
        "/v1/chat/completions",
        "/v1/responses",
        "/v1/models",
        "/v1/embeddings",
    } <= paths
    assert {"/tokenize", "/detokenize", "/version"} <= paths
    schemas = document["components"]["schemas"]
    assert {r.rsplit("/", 1)[1] for r in refs(document)} <= set(schemas), "a $ref does not resolve"


def test_llm_traffic_crosses_one_relay_straight_to_the_engine(
    gateway: str, gateway_server: BentoServer
) -> None:
    """On one host the gateway relays to the vLLM engine itself: the LLM service's worker never sees the
    request (the response cache applies in the gateway: the header says so)."""
    status = httpx.get(f"{gateway}/status", timeout=30).json()
    assert status["llm"] == {"ready": True, "route": "engine"}

    def count(text: str, service: str) -> float:
        labels = {"endpoint": "/v1/completions", "http_response_code": "200", "service_name": service}
        return metric_value(text, "bentoml_service_request_total", **labels) or 0.0

    before = httpx.get(f"{gateway}/metrics", timeout=30).text
    payload = {"model": TINY_LLM, "prompt": unique("one hop", 1)[0], "max_tokens": 3, "temperature": 0}
    replies = [httpx.post(f"{gateway}/v1/completions", json=payload, timeout=60) for _ in range(2)]
    assert [r.headers["x-infstack-cache"] for r in replies] == ["miss", "hit"]
    after = httpx.get(f"{gateway}/metrics", timeout=30).text
    assert count(after, "inference_stack") - count(before, "inference_stack") == 2
    assert count(after, "llm") == count(before, "llm") == 0


def test_a_request_id_travels_from_the_client_to_vllm_and_into_every_log_line(
    gateway: str, gateway_server: BentoServer
) -> None:
    request_id = f"it-{uuid.uuid4().hex[:12]}"
    payload = {"model": TINY_LLM, "prompt": unique("request id", 1)[0], "max_tokens": 3, "temperature": 0}
    reply = httpx.post(
        f"{gateway}/v1/completions", json=payload, headers={"x-request-id": request_id}, timeout=60
    )
    assert reply.headers["x-request-id"] == request_id
    assert reply.json()["id"].startswith(f"cmpl-{request_id}")  # vLLM took it as its own request id
    embedded = httpx.post(
        f"{gateway}/embed", json={"texts": unique("id", 1)}, headers={"x-request-id": request_id + "e"}
    )
    assert embedded.status_code == 200 and embedded.headers["x-request-id"] == request_id + "e"
    made = httpx.get(f"{gateway}/v1/models", timeout=30).headers["x-request-id"]
    assert len(made) == 32  # none given: one is made

    def logged(needle: str) -> list[str]:
        return [line for line in gateway_server.log_tail(10**7).splitlines() if needle in line]

    def services(lines: list[str]) -> set[str]:  # BentoML's component tag: [entry_service:NAME:1]
        return {
            name
            for line in lines
            for name in ("inference_stack", "embedding_cache")
            if f"service:{name}:" in line
        }

    wait_for = time.monotonic() + 10  # each process writes its access line once it has answered
    while time.monotonic() < wait_for and len(services(logged(f"(request_id={request_id}e)"))) < 2:
        time.sleep(0.2)
    completions = logged(f"(request_id={request_id})")
    assert any("path=/v1/completions" in line and "inference_stack" in line for line in completions), (
        completions
    )
    embeds = logged(f"(request_id={request_id}e)")
    assert services(embeds) == {"inference_stack", "embedding_cache"}, (
        embeds
    )  # the gateway's and the service's lines
