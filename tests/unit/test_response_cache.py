"""Which LLM requests are cached, under which key, and how entries survive the store."""

from __future__ import annotations

from pathlib import Path

from services.cache.disk import SqliteStore
from services.llm.response_cache import ResponseCache, is_deterministic, response_key, sse_events

BASE = {"model": "m", "prompt": "hi", "max_tokens": 8, "temperature": 0}


def test_only_greedy_or_seeded_requests_are_cacheable() -> None:
    assert is_deterministic(BASE)
    assert is_deterministic({**BASE, "temperature": 0.8, "seed": 1})
    assert not is_deterministic({**BASE, "temperature": 0.8})
    assert not is_deterministic({k: v for k, v in BASE.items() if k != "temperature"})  # server default
    assert response_key("/v1/completions", {**BASE, "temperature": 1.0}) is None


def test_key_depends_on_everything_that_changes_the_answer() -> None:
    key = response_key("/v1/completions", BASE)
    assert key is not None and key.startswith("llm:v1:/v1/completions:")
    assert response_key("/v1/completions", dict(reversed(BASE.items()))) == key  # field order
    assert response_key("/v1/completions", {**BASE, "user": "alice"}) == key  # not part of the answer
    for change in ({"prompt": "ho"}, {"model": "n"}, {"max_tokens": 9}, {"stream": True}, {"stop": ["x"]}):
        assert response_key("/v1/completions", {**BASE, **change}) != key, change
    assert response_key("/v1/chat/completions", BASE) != key


def test_entries_round_trip_and_damage_is_a_miss(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "r.sqlite3")
    cache = ResponseCache(store)
    cache.put("a", b'{"x":1}', stream=False)
    cache.put("b", b"data: 1\n\ndata: [DONE]\n\n", stream=True)
    assert cache.get("a") == (False, b'{"x":1}')
    assert cache.get("b") == (True, b"data: 1\n\ndata: [DONE]\n\n")
    store.mset([("c", b"?garbage")])
    assert cache.get("c") is None
    assert cache.get("missing") is None


def test_sse_body_splits_back_into_events() -> None:
    assert list(sse_events(b"data: 1\n\ndata: 2\n\ndata: [DONE]\n\n")) == [
        b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n",
    ]  # fmt: skip
