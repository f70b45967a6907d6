"""Opt-in semantic cache: a reworded prompt gets the cached answer; an unrelated one does not."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from scripts.procs import BentoServer
from tests.conftest import LLM_TARGET, TINY_LLM, llm_env

pytestmark = pytest.mark.integration


def ask(server: BentoServer, content: str) -> httpx.Response:
    payload = {"model": TINY_LLM, "messages": [{"role": "user", "content": content}], "max_tokens": 8,
               "temperature": 0}  # fmt: skip
    response = httpx.post(f"{server.url}/v1/chat/completions", json=payload, timeout=60)
    assert response.status_code == 200, response.text
    return response


def test_semantic_cache_answers_rewordings_only(
    bento_factory: Callable[..., BentoServer], tmp_path: Path, tiny_llm: str
) -> None:
    env = llm_env(
        tmp_path,
        INFSTACK_LLM__SEMANTIC_CACHE="true",
        INFSTACK_LLM__SEMANTIC_THRESHOLD="0.9",
        INFSTACK_EMBEDDING__MAX_TEXTS="8",
    )
    server = bento_factory(LLM_TARGET, env, "llm-semantic")
    original = ask(server, "What is the capital city of France?")
    reworded = ask(server, "What's the capital city of France?")
    unrelated = ask(server, "How do I bake sourdough bread at home?")
    assert original.headers["x-infstack-cache"] == "miss"
    assert reworded.headers["x-infstack-cache"] == "semantic-hit"
    assert reworded.json() == original.json()
    assert unrelated.headers["x-infstack-cache"] == "miss"
    assert ask(server, "What's the capital city of France?").headers["x-infstack-cache"] == "semantic-hit"
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'infstack_cache_lookups_total{cache="llm_semantic",result="hit"}' in metrics
    server.stop()
