"""Reliability and security of the one Bento, caused for real against real processes.

One hardened deployment (API keys, small body and admission limits) serves the tests in order: who gets
in, what is too big or too many, a client that walks away, the engine killed mid-stream (and back), and
last a graceful stop with a stream in flight. Separate servers show an engine that cannot start and a
cache directory that cannot be opened.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest

from scripts.procs import BentoServer, metric_value, process_tree, wait_until
from tests.conftest import (
    EMBEDDING_TARGET,
    GATEWAY_TARGET,
    LLM_TARGET,
    TINY_LLM,
    embedding_env,
    gateway_env,
    llm_env,
)

pytestmark = pytest.mark.integration
KEY = "test-key-1"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def hardened(
    bento_factory: Callable[..., BentoServer], session_dir: Path, tiny_llm: str, classic_models: dict
) -> BentoServer:
    keys_file = session_dir / "api-keys"
    keys_file.write_text(f"# keys of the hardened gateway\n{KEY}\n")
    env = gateway_env(
        session_dir / "hardened-cache", classic_models,
        INFSTACK_GATEWAY__API_KEYS_FILE=str(keys_file), INFSTACK_GATEWAY__LLM_MAX_INFLIGHT="2",
        INFSTACK_GATEWAY__MAX_BODY_BYTES="65536",
    )  # fmt: skip
    return bento_factory(GATEWAY_TARGET, env, "hardened")


def stream(url: str, max_tokens: int, prompt: str = "Tell me a story") -> dict:
    payload = {"model": TINY_LLM, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.5, "stream": True,
               "ignore_eos": True}  # fmt: skip
    return {"method": "POST", "url": f"{url}/v1/completions", "json": payload, "headers": AUTH}


def running(server: BentoServer) -> float:
    return (
        metric_value(httpx.get(f"{server.url}/metrics", timeout=10).text, "vllm:num_requests_running") or 0.0
    )


def test_only_keyed_clients_get_in_and_probes_stay_open(hardened: BentoServer) -> None:
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{hardened.url}/v1", api_key="wrong", max_retries=0).models.list()
    client = openai.OpenAI(base_url=f"{hardened.url}/v1", api_key=KEY, max_retries=0)
    assert [m.id for m in client.models.list().data] == [TINY_LLM]
    typed = httpx.post(f"{hardened.url}/embed", json={"texts": ["x"]}, timeout=30)
    assert typed.status_code == 401 and typed.headers["www-authenticate"] == "Bearer"
    assert (
        httpx.post(f"{hardened.url}/embed", json={"texts": ["x"]}, headers=AUTH, timeout=30).status_code
        == 200
    )
    for open_path in ("/livez", "/readyz", "/metrics"):
        assert httpx.get(f"{hardened.url}{open_path}", timeout=30).status_code == 200, open_path


def test_a_body_over_the_limit_is_a_413(hardened: BentoServer) -> None:
    big = {"model": TINY_LLM, "prompt": "x" * 70_000, "max_tokens": 1}
    reply = httpx.post(f"{hardened.url}/v1/completions", json=big, headers=AUTH, timeout=30)
    assert reply.status_code == 413 and "max_body_bytes=65536" in reply.json()["error"]["message"]


def test_past_the_llm_limit_requests_get_a_fast_429_with_retry_after(hardened: BentoServer) -> None:
    async def four_at_once() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=120) as client:
            return await asyncio.gather(*(client.request(**stream(hardened.url, 300)) for _ in range(4)))

    started = time.monotonic()
    replies = asyncio.run(four_at_once())
    codes = sorted(r.status_code for r in replies)
    assert codes == [200, 200, 429, 429], codes
    refused = next(r for r in replies if r.status_code == 429)
    assert (
        refused.headers["retry-after"] == "1" and "llm_max_inflight=2" in refused.json()["error"]["message"]
    )
    assert time.monotonic() - started < 60


def test_a_client_that_walks_away_frees_its_engine_slot(hardened: BentoServer) -> None:
    async def start_and_leave() -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            for _ in range(2):
                async with client.stream(**stream(hardened.url, 900)) as response:
                    assert response.status_code == 200
                    async for _chunk in response.aiter_bytes():
                        break  # read the first event, then close the connection

    asyncio.run(start_and_leave())
    wait_until(lambda: running(hardened) == 0, 15, "the engine to drop abandoned requests")


def test_the_engine_killed_mid_stream_ends_it_with_an_error_and_comes_back(hardened: BentoServer) -> None:
    engine = next(pid for pid, _ in process_tree(hardened.proc.pid)  # type: ignore[union-attr]
                  if b"vllm.entrypoints.openai.api_server" in Path(f"/proc/{pid}/cmdline").read_bytes())  # fmt: skip
    group = os.getpgid(engine)  # the engine's own process group: its API server, engine core, workers
    with httpx.Client(timeout=60) as client, client.stream(**stream(hardened.url, 900)) as response:
        body = b""
        for chunk in response.iter_bytes():
            if not body:
                os.kill(engine, signal.SIGKILL)  # the API server only: its engine core is orphaned
            body += chunk
    assert body.rstrip().endswith(b'"code": 503}}')  # the stream says what happened, it is not cut silently
    assert b"the vLLM engine broke off its answer" in body
    refused = httpx.post(f"{hardened.url}/v1/completions", json={"model": TINY_LLM, "prompt": "x", "max_tokens": 2},
                         headers=AUTH, timeout=30)  # fmt: skip
    assert refused.status_code == 503 and "vLLM engine" in refused.json()["error"]["message"]
    wait_until(lambda: httpx.get(f"{hardened.url}/readyz", timeout=5).status_code == 503, 15, "not ready")
    wait_until(
        lambda: httpx.get(f"{hardened.url}/readyz", timeout=5).status_code == 200, 180, "the engine back"
    )
    again = httpx.post(f"{hardened.url}/v1/completions", json={"model": TINY_LLM, "prompt": "x", "max_tokens": 2},
                       headers=AUTH, timeout=60)  # fmt: skip
    assert again.status_code == 200
    assert "restarting this worker and its engine" in hardened.log_tail(200_000)
    assert group_members(group) == [], "the old engine's processes outlived it"


def group_members(group: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rpartition(")")[2].split()[2]) == group:
                    members.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return members


def _refused_within(url: str, deadline_s: float) -> bool:
    """Whether a new request to ``url`` fails to be answered (refused, reset or never read) within
    ``deadline_s``."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=3)
        except httpx.TransportError:
            return True
        time.sleep(0.1)
    return False


def test_a_stop_lets_the_stream_in_flight_finish_and_flushes_the_cache(hardened: BentoServer) -> None:
    """Last in this module: SIGTERM to the server while a deterministic stream is in flight."""
    payload = {**stream(hardened.url, 600, prompt="Drain me")["json"], "temperature": 0}
    chunks: list[bytes] = []
    first_chunk = threading.Event()

    def read_all() -> None:
        with httpx.Client(timeout=120) as client, client.stream("POST", f"{hardened.url}/v1/completions",
                                                                json=payload, headers=AUTH) as response:  # fmt: skip
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                first_chunk.set()

    reader = threading.Thread(target=read_all)
    reader.start()
    # In flight once its first tokens arrived (the engine's running gauge, scraped through /metrics every
    # 0.2 s, missed a ~2 s stream on a fast machine under the whole suite's load).
    assert first_chunk.wait(30), "the stream did not start"
    assert b"[DONE]" not in b"".join(chunks), "the stream ended before the stop: nothing was in flight"
    os.kill(hardened.proc.pid, signal.SIGTERM)  # type: ignore[union-attr]
    # Soon no new request is answered: refused, reset, or left unaccepted until the listening socket closes.
    # Polled, not after a fixed pause: under the whole suite's load one request 0.5 s after the stop was still
    # answered (CI of 64c8d04), and one the server takes before the stop reaches its workers rightly is.
    assert _refused_within(f"{hardened.url}/livez", deadline_s=15), "still answering 15 s after the stop"
    reader.join(120)
    hardened.proc.wait(60)  # type: ignore[union-attr]
    body = b"".join(chunks)
    assert body.rstrip().endswith(b"data: [DONE]") and b'"finish_reason":"length"' in body  # all 600 tokens
    with sqlite3.connect(
        hardened.env["INFSTACK_CACHE__DISK_PATH"]
    ) as db:  # the answer was stored on the way out
        assert db.execute("SELECT count(*) FROM kv WHERE key LIKE 'llm:%'").fetchone()[0] >= 1


# --- start-up and dependencies that are not there ----------------------------------------------------------
def test_an_engine_that_cannot_start_stops_the_server_with_one_message(
    bento_factory: Callable[..., BentoServer], session_dir: Path
) -> None:
    env = llm_env(session_dir / "bad-model-cache", INFSTACK_LLM__MODEL=str(session_dir / "no-such-model"))
    server = bento_factory(LLM_TARGET, env, "bad-model", run=False)
    with pytest.raises(RuntimeError, match="failed to start"):
        server.start(ready_timeout_s=120)
    log = server.log_path.read_text()
    assert log.count("stopping the server: INFSTACK_LLM__MODEL=") == 1
    assert "no such directory, nor a BentoML model-store tag" in log


def test_an_unopenable_cache_directory_serves_without_it(
    bento_factory: Callable[..., BentoServer], session_dir: Path
) -> None:
    blocker = session_dir / "a-file-not-a-directory"
    blocker.write_text("")
    env = embedding_env(session_dir, INFSTACK_CACHE__DISK_PATH=str(blocker / "cache.sqlite3"))
    server = bento_factory(EMBEDDING_TARGET, env, "unopenable-cache")
    replies = [
        httpx.post(f"{server.url}/embed", json={"texts": ["same text"]}, timeout=60).json() for _ in range(2)
    ]
    assert [r["cache_hits"] for r in replies] == [0, 0] and replies[0]["embeddings"] == replies[1][
        "embeddings"
    ]
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert metric_value(metrics, "infstack_cache_backend_up", cache="embedding", backend="disk") == 0
    assert server.log_tail(200_000).count("serving without it") == 1
