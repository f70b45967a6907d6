"""The composed Bento under one `bentoml serve` of the gateway: LLM, EmbeddingCache and ClassicML behind it.

Clients of every kind (openai, BentoML's sync and async clients, LangChain) go through the gateway only.
Expected values come from the model files loaded in the test process (sentence-transformers, joblib,
XGBoost) or from the dependency service itself, reached over the Unix socket that BentoML gave it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import bentoml
import httpx
import joblib
import numpy as np
import openai
import pytest
import xgboost as xgb
from langchain_openai import ChatOpenAI
from sklearn.datasets import load_breast_cancer

from scripts.procs import BentoServer, process_tree
from services.classic.tabular import BOOSTER_FILE
from services.classic.text import TEXT_FILE
from services.embedding.langchain import InferenceStackEmbeddings
from services.wire import MODEL_HEADER
from tests.conftest import CHAT, TABULAR_CLASSES, TINY_LLM, check_chat_and_stream, class_probabilities

pytestmark = pytest.mark.integration

GATEWAY, DEPENDENCIES = "inference_stack", ("llm", "embedding_cache", "classic_ml")
TOPICS = [
    "Open a TCP connection to the host and port and return a socket.",
    "Return the square root of x as a decimal number.",
    "Wait until the lock is released by another thread.",
]
ROWS = load_breast_cancer().data[:5]


def unique(prefix: str, n: int) -> list[str]:
    """Texts no earlier request has sent (so the first call is a cache miss)."""
    tag = uuid.uuid4().hex[:8]
    return [f"{prefix} ({tag}-{i})" for i in range(n)]


def post(url: str, route: str, **payload: object) -> httpx.Response:
    return httpx.post(f"{url}{route}", json=payload, timeout=60)


def completion_text(url: str, prompt: str, max_tokens: int) -> str:
    reply = post(url, "/v1/completions", model=TINY_LLM, prompt=prompt, max_tokens=max_tokens, temperature=0)
    assert reply.status_code == 200, reply.text
    return reply.json()["choices"][0]["text"]


# --- the server's processes and sockets ----------------------------------------------------------------
def commands(server: BentoServer) -> dict[int, list[str]]:
    """pid -> argv of every process the server started (circusd, workers, the vLLM processes)."""
    assert server.proc is not None
    found = {}
    for pid, _ in process_tree(server.proc.pid):
        with contextlib.suppress(OSError):  # exited meanwhile
            found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return found


def worker_pid(server: BentoServer, service: str) -> int:
    """The BentoML worker that serves ``service`` (each service is its own worker process)."""
    pids = [pid for pid, argv in commands(server).items() if service in argv and "--service-name" in argv
            and argv[argv.index("--service-name") + 1] == service]  # fmt: skip
    assert len(pids) == 1, (service, pids)
    return pids[0]


def socket_inode(pid: int, fd: int | str) -> int | None:
    target = os.readlink(f"/proc/{pid}/fd/{fd}")
    return int(target[8:-1]) if target.startswith("socket:[") else None


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if (inode := socket_inode(pid, fd)) is not None:
                inodes.add(inode)
        except OSError:  # closed meanwhile
            pass
    return inodes


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_address)  # 32-bit words in host (little-endian) order
    return ipaddress.ip_address(b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4)))


def tcp_listeners() -> dict[int, tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]]:
    """socket inode -> (bound address, port) of every listening TCP socket of this host."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                host, port = fields[1].split(":")
                found[int(fields[9])] = (_address(host), int(port, 16))
    return found


def unix_listeners() -> dict[int, str]:
    """socket inode -> path of every listening Unix socket of this host."""
    found = {}
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[3], 16) & 0x10000:  # __SO_ACCEPTCON
            found[int(fields[6])] = fields[7] if len(fields) > 7 else ""
    return found


def runner_map(server: BentoServer) -> dict[str, str]:
    """Where the gateway worker was told each dependency listens (BentoML's BENTOML_RUNNER_MAP)."""
    environ = Path(f"/proc/{worker_pid(server, GATEWAY)}/environ").read_bytes().decode().split("\0")
    return json.loads(next(e for e in environ if e.startswith("BENTOML_RUNNER_MAP=")).partition("=")[2])


def outward_address() -> str | None:
    """This host's address on its default route (no packet is sent), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if ipaddress.ip_address(address).is_loopback else address


# --- fixtures ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gateway(gateway_server: BentoServer) -> str:
    return gateway_server.url


@pytest.fixture(scope="module")
def client(gateway: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gateway}/v1", api_key="unused", max_retries=0, timeout=60) as opened:
        yield opened


@pytest.fixture(scope="module")
def direct(gateway_server: BentoServer) -> Iterator[Callable[[str], httpx.Client]]:
    """An HTTP client for one dependency service itself, over its Unix socket (never exposed)."""
    sockets = runner_map(gateway_server)
    opened: list[httpx.Client] = []

    def connect(service: str) -> httpx.Client:
        path = sockets[service].removeprefix("file://")
        opened.append(
            httpx.Client(transport=httpx.HTTPTransport(uds=path), base_url="http://dep", timeout=60)
        )
        return opened[-1]

    yield connect
    for one in opened:
        one.close()


@pytest.fixture(scope="module")
def offline(classic_models: dict, reference_model):
    """Expected answers from the stored model files, loaded with their own libraries."""
    text = joblib.load(classic_models["text"].path_of(TEXT_FILE))
    booster = xgb.Booster(model_file=classic_models["tabular"].path_of(BOOSTER_FILE))

    def embed(texts: list[str]) -> np.ndarray:
        return reference_model.encode(texts, convert_to_numpy=True)

    def classify(texts: list[str]) -> np.ndarray:
        return text.predict_proba(embed(texts))

    classify.classes = [str(c) for c in text.classes_]  # type: ignore[attr-defined]  # column order

    def tabular(rows: np.ndarray) -> np.ndarray:
        p = booster.inplace_predict(rows.astype(np.float32))
        return np.column_stack([1 - p, p])

    return embed, classify, tabular


# --- OpenAI API ----------------------------------------------------------------------------------------
def test_openai_client_lists_completes_and_chats_through_the_gateway(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == [TINY_LLM]

    completion = client.completions.create(model=TINY_LLM, prompt="The cat", max_tokens=5, temperature=0)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 5
    streamed = client.completions.create(
        model=TINY_LLM, prompt="The cat", max_tokens=5, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed) == completion.choices[0].text

    check_chat_and_stream(client)


def test_response_cache_header_passes_through(gateway: str) -> None:
    payload = {"model": TINY_LLM, "prompt": unique("cache me", 1)[0], "max_tokens": 6, "temperature": 0}
    first, second = (post(gateway, "/v1/completions", **payload) for _ in range(2))
    assert (first.headers["x-infstack-cache"], second.headers["x-infstack-cache"]) == ("miss", "hit")
    assert second.json() == first.json()
    sampled = post(gateway, "/v1/completions", **{**payload, "temperature": 0.9})
    assert sampled.headers["x-infstack-cache"] == "bypass"


# --- BentoML clients -----------------------------------------------------------------------------------
def test_generate_streams_the_completion_text_over_http(gateway: str) -> None:
    prompt = unique("A typed call", 1)[0]
    with httpx.stream(
        "POST", f"{gateway}/generate", json={"prompt": prompt, "max_tokens": 8}, timeout=60
    ) as r:
        assert r.status_code == 200
        assert r.headers["transfer-encoding"] == "chunked"
        pieces = list(r.iter_text())
    assert "".join(pieces) == completion_text(gateway, prompt, 8)


def test_bentoml_clients_stream_generate_pieces(gateway: str) -> None:
    prompt = unique("A typed call", 1)[0]
    expected = completion_text(gateway, prompt, 8)
    with bentoml.SyncHTTPClient(gateway, server_ready_timeout=30) as sync:
        streamed = sync.generate(prompt=prompt, max_tokens=8)
        assert not isinstance(streamed, str), f"one string, not a stream: {streamed!r}"
        assert "".join(streamed) == expected

    async def pieces() -> list[str]:
        async with bentoml.AsyncHTTPClient(gateway, server_ready_timeout=30) as client:
            return [piece async for piece in client.generate(prompt=prompt, max_tokens=8)]

    assert "".join(asyncio.run(pieces())) == expected


def check_typed_answers(embedded: dict, classified: list, predicted: list, texts: list[str], offline) -> None:
    embed, classify, tabular = offline
    assert (embedded["model"], embedded["dimension"], embedded["cache_hits"]) == ("all-MiniLM-L6-v2", 384, 0)
    np.testing.assert_allclose(np.float32(embedded["embeddings"]), embed(texts), atol=1e-5)

    expected = classify(TOPICS)
    labels = [p["label"] for p in classified]
    assert labels == [classify.classes[i] for i in expected.argmax(axis=1)]
    assert labels == ["network", "numbers", "concurrency"]
    np.testing.assert_allclose(class_probabilities(classified, classify.classes), expected, atol=1e-4)

    expected = tabular(ROWS)
    assert [p["label"] for p in predicted] == [TABULAR_CLASSES[i] for i in expected.argmax(axis=1)]
    np.testing.assert_allclose(class_probabilities(predicted, TABULAR_CLASSES), expected, atol=1e-5)


def test_sync_client_embeds_classifies_and_predicts(gateway: str, offline, classic_models: dict) -> None:
    texts = unique("A sentence for the sync client", 3)
    with bentoml.SyncHTTPClient(gateway, server_ready_timeout=30) as sync:
        embedded = sync.embed(texts=texts)
        classified = sync.classify_text(texts=TOPICS)
        predicted = sync.predict_tabular(rows=ROWS.tolist())
        again = sync.embed(texts=texts)
    check_typed_answers(embedded, classified, predicted, texts, offline)
    for route, model in (("/classify_text", "text"), ("/predict_tabular", "tabular")):
        payload = {"texts": TOPICS} if model == "text" else {"rows": ROWS.tolist()}
        response = httpx.post(gateway + route, json=payload, timeout=60)
        assert response.headers[MODEL_HEADER] == str(classic_models[model].tag)
    assert again["cache_hits"] == 3 and again["embeddings"] == embedded["embeddings"]


def test_async_client_embeds_classifies_and_predicts(gateway: str, offline) -> None:
    texts = unique("A sentence for the async client", 3)

    async def calls() -> tuple[dict, dict, dict]:
        async with bentoml.AsyncHTTPClient(gateway, server_ready_timeout=30) as client:
            return await asyncio.gather(
                client.embed(texts=texts),
                client.classify_text(texts=TOPICS),
                client.predict_tabular(rows=ROWS.tolist()),
            )

    check_typed_answers(*asyncio.run(calls()), texts, offline)


# --- LangChain -----------------------------------------------------------------------------------------
def test_langchain_chat_openai_invokes_and_streams(gateway: str, client: openai.OpenAI) -> None:
    chat = ChatOpenAI(base_url=f"{gateway}/v1", api_key="unused", model=TINY_LLM, temperature=0, max_tokens=6)
    expected = client.chat.completions.create(model=TINY_LLM, messages=CHAT, max_tokens=6, temperature=0)
    message = chat.invoke(CHAT[0]["content"])
    assert message.content == expected.choices[0].message.content
    assert message.response_metadata["token_usage"]["completion_tokens"] == 6
    assert message.response_metadata["finish_reason"] == "length"
    assert "".join(str(chunk.content) for chunk in chat.stream(CHAT[0]["content"])) == message.content


def test_langchain_embeddings_adapter_works_on_the_gateway(gateway: str, offline) -> None:
    texts = unique("A document for LangChain", 3)
    adapter = InferenceStackEmbeddings(base_url=gateway)
    documents = adapter.embed_documents(texts)
    np.testing.assert_allclose(np.float32(documents), offline[0](texts), atol=1e-5)
    assert adapter.embed_query(texts[1]) == documents[1]
    assert asyncio.run(adapter.aembed_documents(texts)) == documents


# --- readiness and errors ------------------------------------------------------------------------------
def test_status_shows_every_dependency_ready_with_details(gateway: str, classic_models: dict) -> None:
    reply = httpx.get(f"{gateway}/status", timeout=30)
    assert reply.status_code == 200
    view = reply.json()
    assert set(view) == {"llm", "embeddings", "classic"}
    assert all(dependency["ready"] is True for dependency in view.values()), view
    assert view["embeddings"] == {"ready": True, "model": "all-MiniLM-L6-v2", "dimension": 384,
                                  "cache_backend": "disk", "cache_backend_up": True, "runtime": "onnx",
                                  "cuda_graphs": 0}  # fmt: skip
    assert view["classic"]["text"]["tag"] == str(classic_models["text"].tag)
    assert view["classic"]["tabular"]["tag"] == str(classic_models["tabular"].tag)
    assert view["classic"]["tabular"]["class_names"] == ["malignant", "benign"]
    assert view["classic"]["text"]["embedding_model"] == view["embeddings"]["model"]


TYPED_BAD = [
    ("/embed", "embedding_cache", {"texts": []}, ["texts"], "at least 1 item"),
    ("/embed", "embedding_cache", {"texts": ["ok", "x" * 201]}, ["texts", 1], "at most 200 characters"),
    ("/classify_text", "classic_ml", {"texts": ["a"] * 9}, ["texts"], "at most 8 items"),
    ("/classify_text", "classic_ml", {"texts": [""]}, ["texts", 0], "at least 1 character"),
    # Within the classic limit (300) but past the embedding service's (200), which the text model also
    # honours: before, the embedding service's 400 came back mid-batch in an off-schema list (fuzz).
    ("/classify_text", "classic_ml", {"texts": ["ok", "x" * 201]}, ["texts", 1], "at most 200 characters"),
    ("/predict_tabular", "classic_ml", {"rows": [[0.5] * 29]}, ["rows", 0], "at least 30 items"),
    ("/predict_tabular", "classic_ml", {"rows": [[0.5] * 29 + ["1.5"]]}, ["rows", 0, 29], "valid number"),
    ("/generate", "llm", {"prompt": "x", "max_tokens": 0}, ["max_tokens"], "greater than or equal to 1"),
    ("/generate", "llm", {"prompt": "x", "temperature": 3}, ["temperature"], "less than or equal to 2"),
]


@pytest.mark.parametrize(("route", "service", "payload", "loc", "needle"), TYPED_BAD)
def test_bad_typed_input_gets_the_services_own_400(
    gateway: str, direct, route: str, service: str, payload: dict, loc: list, needle: str
) -> None:
    through = post(gateway, route, **payload)
    itself = direct(service).post(route, json=payload)
    assert (through.status_code, itself.status_code) == (400, 400), through.text
    assert through.json() == itself.json()
    assert any(d["loc"] == loc and needle in d["msg"] for d in through.json()["detail"]), through.text


OPENAI_BAD = [
    ("/v1/completions", {"prompt": "hi", "max_tokens": 0}, 400, "max_tokens"),
    ("/v1/completions", {"prompt": "hi", "max_tokens": 4, "model": "no-such-model"}, 404, "model"),
    ("/v1/chat/completions", {"messages": "not a list", "max_tokens": 4}, 400, "body.messages"),
]


@pytest.mark.parametrize(("route", "payload", "status", "param"), OPENAI_BAD)
def test_bad_openai_request_gets_the_llm_services_own_error(
    gateway: str, direct, route: str, payload: dict, status: int, param: str
) -> None:
    payload = {"model": TINY_LLM, **payload}
    through = post(gateway, route, **payload)
    itself = direct("llm").post(route, json=payload)
    assert (through.status_code, itself.status_code) == (status, status), through.text
    assert through.json() == itself.json()
    assert through.json()["error"]["param"] == param


def test_engine_error_from_generate_is_passed_on_unchanged(gateway: str, direct) -> None:
    payload = {"prompt": "word " * 2000, "max_tokens": 4}  # longer than max_model_len
    through = post(gateway, "/generate", **payload)
    itself = direct("llm").post("/generate", json=payload)
    assert (through.status_code, itself.status_code) == (400, 400)
    assert "maximum context length is 1024 tokens" in itself.text
    assert through.json() == itself.json()


# --- isolation: only the gateway is reachable ----------------------------------------------------------
def test_internal_ports_are_not_reachable_from_outside(gateway_server: BentoServer) -> None:
    tcp, unix = tcp_listeners(), unix_listeners()
    processes = commands(gateway_server)
    listening = {pid: socket_inodes(pid) for pid in processes}

    def tcp_of(pid: int) -> set[tuple[str, int]]:
        return {(str(tcp[i][0]), tcp[i][1]) for i in listening[pid] if i in tcp}

    public = ("127.0.0.1", gateway_server.port)
    engine_port = int(gateway_server.env["INFSTACK_LLM__ENGINE_PORT"])
    # Every TCP listener of the whole process tree (circus control, vLLM's internals too) is loopback;
    # the engine port is bound to 127.0.0.1 only (no 0.0.0.0 or :: socket on it), by the vLLM server.
    everywhere = {tcp[i] for inodes in listening.values() for i in inodes if i in tcp}
    assert everywhere and all(address.is_loopback for address, _ in everywhere), everywhere
    assert {str(address) for address, port in everywhere if port == engine_port} == {"127.0.0.1"}
    assert not [a for a, port in tcp.values() if port == engine_port and not a.is_loopback]
    engine = [pid for pid, argv in processes.items() if "vllm.entrypoints.openai.api_server" in argv]
    assert len(engine) == 1, processes
    assert ("127.0.0.1", engine_port) in tcp_of(engine[0])

    sockets = runner_map(gateway_server)
    assert sockets[GATEWAY] == f"http://127.0.0.1:{gateway_server.port}"
    for service in DEPENDENCIES:
        pid = worker_pid(gateway_server, service)
        argv = processes[pid]
        served = socket_inode(pid, argv[argv.index("--fd") + 1])
        # It serves a Unix socket, the one the gateway was told about, and opens no TCP port of its
        # own: the one TCP listener it holds is the gateway's, which circus passes to every worker.
        assert served in unix and f"file://{unix[served]}" == sockets[service], (service, served)
        assert tcp_of(pid) == {public}, (service, tcp_of(pid))

    if (address := outward_address()) is not None:  # from the host's own network address: refused
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((address, engine_port), timeout=2).close()


# --- load: internal calls under concurrency ------------------------------------------------------------
def test_200_concurrent_requests_through_the_gateway_all_succeed(
    gateway_server: BentoServer, offline
) -> None:
    """Every request makes a service-to-service call (gateway -> embedding / classic -> embedding / LLM);
    BentoML's client failure mode (ServerDisconnectedError, `Connector is closed`) must not appear."""
    tag = uuid.uuid4().hex[:8]
    requests: list[tuple[str, dict]] = []
    for i in range(200):
        if i % 20 == 0:
            requests.append(("/v1/completions", {"model": TINY_LLM, "prompt": f"load {tag} {i}", "max_tokens": 4,
                                                 "temperature": 0}))  # fmt: skip
        elif i % 4 == 1:
            requests.append(("/classify_text", {"texts": [f"{TOPICS[i % 3]} ({tag}-{i})"]}))
        elif i % 10 == 3:
            requests.append(("/predict_tabular", {"rows": [ROWS[i % 5].tolist()]}))
        else:
            requests.append(("/embed", {"texts": [f"load test sentence {tag} number {i}"]}))
    log_before = gateway_server.log_path.stat().st_size

    async def burst() -> list[httpx.Response | BaseException]:
        limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=len(requests))
        async with httpx.AsyncClient(base_url=gateway_server.url, timeout=120, limits=limits) as client:
            calls = (client.post(route, json=payload) for route, payload in requests)
            return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 180)

    started = time.monotonic()
    replies = asyncio.run(burst())
    elapsed = time.monotonic() - started
    failed = [(route, r if isinstance(r, BaseException) else f"{r.status_code} {r.text[:200]}")
              for (route, _), r in zip(requests, replies, strict=True)
              if isinstance(r, BaseException) or r.status_code != 200]  # fmt: skip
    assert failed == [], f"{len(failed)} of 200 failed in {elapsed:.1f} s: {failed[:5]}"

    answers = {route: [r.json() for (p, _), r in zip(requests, replies, strict=True) if p == route]
               for route in {route for route, _ in requests}}  # fmt: skip
    embed, classify, tabular = offline
    sent = {route: [payload for p, payload in requests if p == route] for route in answers}
    vectors = np.float32([a["embeddings"][0] for a in answers["/embed"]])
    np.testing.assert_allclose(vectors, embed([p["texts"][0] for p in sent["/embed"]]), atol=1e-5)
    expected = classify([p["texts"][0] for p in sent["/classify_text"]])
    got = class_probabilities([a[0] for a in answers["/classify_text"]], classify.classes)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    expected = tabular(np.array([p["rows"][0] for p in sent["/predict_tabular"]]))
    got = class_probabilities([a[0] for a in answers["/predict_tabular"]], TABULAR_CLASSES)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert all(a["choices"][0]["finish_reason"] == "length" for a in answers["/v1/completions"])

    with gateway_server.log_path.open("rb") as log:
        log.seek(log_before)
        new_lines = log.read().decode(errors="replace")
    for symptom in ("ServerDisconnectedError", "Connector is closed", "ClientConnectorError", "Traceback"):
        assert symptom not in new_lines, symptom
