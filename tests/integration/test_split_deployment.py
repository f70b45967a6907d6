"""The split deployment: each service of the Bento in its own process, wired with `--depends` over TCP.

This is the recipe of deploy/split/README.md (one service per pod), run on loopback. It must answer
what the single `bentoml serve` of the gateway answers.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from scripts.procs import BentoServer, metric_value, process_tree
from services.classic.registry import MODELS as CLASSIC_MODELS
from tests.conftest import GATEWAY_TARGET, TINY_LLM, gateway_env

pytestmark = pytest.mark.integration

START_HTTP_SERVER = [sys.executable, "-m", "bentoml_cli._internal.start", "start-http-server", GATEWAY_TARGET]
# Each service and the services it calls (its --depends), in dependency order.
SERVICES: dict[str, tuple[str, ...]] = {
    "embedding_cache": (),
    "classic_ml": ("embedding_cache",),
    "llm": (),
    "inference_stack": ("embedding_cache", "classic_ml", "llm"),
}
CLASSIC_APIS = {model.SPEC.api for model in CLASSIC_MODELS}  # one per registered classic model
APIS = {
    "embedding_cache": {"embed", "info"},
    "classic_ml": {"info", *CLASSIC_APIS},
    "llm": {"generate"},
    "inference_stack": {"embed", "generate", *CLASSIC_APIS},
}
TOPICS = [
    "Open a TCP connection to the host and port and return a socket.",
    "Return the square root of x as a decimal number.",
    "Wait until the lock is released by another thread.",
]
ROWS = load_breast_cancer().data[:5].tolist()


def unique(prefix: str, n: int) -> list[str]:
    tag = uuid.uuid4().hex[:8]
    return [f"{prefix} ({tag}-{i})" for i in range(n)]


def post(server: BentoServer, route: str, **payload: object) -> httpx.Response:
    return httpx.post(f"{server.url}{route}", json=payload, timeout=60)


def both(single: BentoServer, split: BentoServer, route: str, **payload: object) -> tuple[dict, dict]:
    """The same request to both deployments: both 200, their JSON bodies."""
    replies = post(single, route, **payload), post(split, route, **payload)
    assert [r.status_code for r in replies] == [200, 200], [r.text[:300] for r in replies]
    return replies[0].json(), replies[1].json()


@pytest.fixture(scope="module")
def split(session_dir: Path, tiny_llm: str, classic_models: dict) -> Iterator[dict[str, BentoServer]]:
    """One process per service, the same INFSTACK_ settings in each (its own cache and engine port,
    so nothing is answered from the single deployment's cache). Stopped at the end of the module.

    All four start at once: a port is chosen before its process starts, and a service reports ready
    only once the services it calls are ready (BentoML's runner probe), so the order does not matter."""
    env = gateway_env(session_dir / "split-cache", classic_models)
    servers: dict[str, BentoServer] = {}
    for name, calls in SERVICES.items():
        depends = [arg for dep in calls for arg in ("--depends", f"{dep}={servers[dep].url}")]
        argv = [*START_HTTP_SERVER, "--service-name", name, *depends]
        servers[name] = BentoServer(GATEWAY_TARGET, env, session_dir / f"split-{name}.log", argv=argv)
    with ThreadPoolExecutor(len(servers)) as pool:
        try:
            for future in [pool.submit(server.start, 300) for server in servers.values()]:
                future.result()
            yield servers
        finally:
            list(pool.map(BentoServer.stop, servers.values()))


def served_services(server: BentoServer) -> list[str]:
    """The --service-name of every BentoML worker in the server's process tree."""
    assert server.proc is not None
    names = []
    for pid, _ in process_tree(server.proc.pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if "_bentoml_impl.worker.service" in argv:
            names.append(argv[argv.index("--service-name") + 1])
    return names


def requests_served(server: BentoServer, endpoint: str) -> float:
    """Successful requests to ``endpoint`` that the service counted in its own /metrics."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    names = {
        line.split("{")[0] for line in text.splitlines() if line.split("{")[0].endswith("_request_total")
    }
    assert len(names) == 1, names
    return metric_value(text, names.pop(), endpoint=endpoint, http_response_code="200") or 0


def test_each_process_serves_exactly_one_service(split: dict[str, BentoServer]) -> None:
    for name, server in split.items():
        assert served_services(server) == [name]
        schema = httpx.get(f"{server.url}/schema.json", timeout=10).json()
        assert schema["name"] == name
        assert {route["name"] for route in schema["routes"]} == APIS[name]


def test_split_gateway_calls_its_dependencies_over_tcp(split: dict[str, BentoServer]) -> None:
    """--depends took effect: the calls reach the other processes (a dependency missing from --depends
    would be instantiated inside the gateway process instead, silently)."""
    gateway, embedding, classic = split["inference_stack"], split["embedding_cache"], split["classic_ml"]
    before = requests_served(embedding, "/embed"), requests_served(classic, "/classify_text")
    assert post(gateway, "/embed", texts=unique("counted", 2)).status_code == 200
    assert post(gateway, "/classify_text", texts=unique(TOPICS[0], 1)).status_code == 200
    after = requests_served(embedding, "/embed"), requests_served(classic, "/classify_text")
    # /embed: one call from the gateway, one from classic_ml (the embeddings of its classify batch).
    assert (after[0] - before[0], after[1] - before[1]) == (2, 1)


def test_split_answers_the_same_requests_as_the_single_process(
    gateway_server: BentoServer, split: dict[str, BentoServer]
) -> None:
    gateway = split["inference_stack"]
    texts = unique("A sentence for both deployments", 4)
    one, other = both(gateway_server, gateway, "/embed", texts=texts)
    assert (
        (one["model"], one["dimension"]) == (other["model"], other["dimension"]) == ("all-MiniLM-L6-v2", 384)
    )
    assert (one["cache_hits"], other["cache_hits"]) == (0, 0)  # each computed them itself
    np.testing.assert_allclose(np.float32(other["embeddings"]), np.float32(one["embeddings"]), atol=1e-5)

    one, other = both(gateway_server, gateway, "/classify_text", texts=TOPICS)
    assert [p["label"] for p in one] == [p["label"] for p in other] == ["network", "numbers", "concurrency"]
    for a, b in zip(one, other, strict=True):
        assert b["probabilities"] == pytest.approx(a["probabilities"], abs=1e-4)

    one, other = both(gateway_server, gateway, "/predict_tabular", rows=ROWS)
    assert [p["label"] for p in one] == [p["label"] for p in other]
    for a, b in zip(one, other, strict=True):
        assert b["probabilities"] == pytest.approx(a["probabilities"], abs=1e-6)

    one, other = (
        httpx.get(f"{server.url}/v1/models", timeout=30).json() for server in (gateway_server, gateway)
    )
    assert [m["id"] for m in one["data"]] == [m["id"] for m in other["data"]] == [TINY_LLM]

    prompt = unique("Once upon a time", 1)[0]
    one, other = both(gateway_server, gateway, "/v1/completions", model=TINY_LLM, prompt=prompt, max_tokens=8,
                      temperature=0)  # fmt: skip
    assert other["choices"][0]["text"] == one["choices"][0]["text"]
    assert other["usage"] == one["usage"]
    generated = post(gateway, "/generate", prompt=prompt, max_tokens=8)
    assert (generated.status_code, generated.text) == (200, one["choices"][0]["text"])

    messages = [{"role": "user", "content": prompt}]
    one, other = both(gateway_server, gateway, "/v1/chat/completions", model=TINY_LLM, messages=messages,
                      max_tokens=6, temperature=0)  # fmt: skip
    assert other["choices"][0]["message"] == one["choices"][0]["message"]


def test_split_status_shows_every_dependency_ready(
    gateway_server: BentoServer, split: dict[str, BentoServer]
) -> None:
    one, other = (
        httpx.get(f"{server.url}/status", timeout=30) for server in (gateway_server, split["inference_stack"])
    )
    assert (one.status_code, other.status_code) == (200, 200)
    single, split_view = one.json(), other.json()
    assert all(dependency["ready"] is True for dependency in split_view.values()), split_view
    # LLM traffic: straight to the engine on one host, through the LLM service when it is elsewhere
    assert (single["llm"].pop("route"), split_view["llm"].pop("route")) == ("engine", "service")
    assert split_view == single


def test_split_gateway_serves_the_whole_public_surface_through_the_other_services(
    gateway_server: BentoServer, split: dict[str, BentoServer]
) -> None:
    """vLLM's routes through the LLM service, OpenAI embeddings through the embedding service, and one
    /metrics that gathers every service's series, each family once."""
    gateway = split["inference_stack"]
    one, other = both(gateway_server, gateway, "/tokenize", model=TINY_LLM, prompt="Hello world")
    assert other == one
    texts = unique("split embeddings", 2)
    one, other = both(gateway_server, gateway, "/v1/embeddings", input=texts, model="all-MiniLM-L6-v2")
    np.testing.assert_allclose(
        [d["embedding"] for d in other["data"]], [d["embedding"] for d in one["data"]], atol=1e-5
    )
    assert other["usage"] == one["usage"]

    text = httpx.get(f"{gateway.url}/metrics", timeout=30).text
    types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types))
    assert "vllm:num_requests_running" in types and "infstack_embedding_texts" in " ".join(types)
    services = {line.split('service_name="')[1].split('"')[0] for line in text.splitlines()
                if line.startswith("bentoml_service_request_total{")}  # fmt: skip
    assert {"inference_stack", "embedding_cache", "classic_ml", "llm"} <= services
    assert "/v1/responses" in httpx.get(f"{gateway.url}/docs.json", timeout=30).json()["paths"]


@pytest.mark.parametrize(
    ("route", "payload"),
    [
        ("/embed", {"texts": []}),
        ("/predict_tabular", {"rows": [[0.5] * 29]}),
        ("/v1/completions", {"model": TINY_LLM, "prompt": "hi", "max_tokens": 0}),
    ],
)
def test_split_refuses_bad_input_like_the_single_process(
    gateway_server: BentoServer, split: dict[str, BentoServer], route: str, payload: dict
) -> None:
    one, other = post(gateway_server, route, **payload), post(split["inference_stack"], route, **payload)
    assert (one.status_code, other.status_code) == (400, 400)
    assert other.json() == one.json()


def test_embedding_outage_is_a_502_naming_it_while_tabular_answers(split: dict[str, BentoServer]) -> None:
    """A real outage, last in this module: the embedding-cache process is stopped. Text requests fail
    with a 502 that names the service (not an 'overloaded' 503, not a hang); tabular keeps answering,
    directly and through the gateway."""
    split["embedding_cache"].stop()
    for server in (split["classic_ml"], split["inference_stack"]):
        text = post(server, "/classify_text", texts=unique(TOPICS[0], 1))
        assert text.status_code == 502, text.text
        assert "embedding_cache" in text.json()["error"] and text.headers["retry-after"] == "1"
        assert post(server, "/predict_tabular", rows=ROWS).status_code == 200
