"""Semantic index: near-duplicates within one parameter signature, nothing across signatures."""

from __future__ import annotations

import numpy as np

from services.llm.semantic import SemanticIndex, prompt_text, signature


def test_prompt_text_of_completions_and_chat() -> None:
    assert prompt_text({"prompt": "hi"}) == "hi"
    chat = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}
    assert prompt_text(chat) == "system: be brief\nuser: hi"
    assert prompt_text({"prompt": [1, 2, 3]}) is None  # token ids: no text to compare
    assert prompt_text({"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}) is None


def test_signature_ignores_only_the_prompt() -> None:
    base = {"model": "m", "prompt": "a", "max_tokens": 5, "temperature": 0}
    assert signature("/v1/completions", base) == signature("/v1/completions", {**base, "prompt": "b"})
    assert signature("/v1/completions", base) != signature("/v1/completions", {**base, "max_tokens": 6})
    assert signature("/v1/completions", base) != signature("/v1/chat/completions", base)


def test_find_returns_the_closest_key_above_threshold() -> None:
    index = SemanticIndex(threshold=0.9, max_entries=3)
    index.add("s", np.array([1.0, 0.0]), "k1")
    index.add("s", np.array([0.0, 2.0]), "k2")
    found = index.find("s", np.array([0.99, 0.05]))
    assert found is not None and found[0] == "k1" and found[1] > 0.99
    assert index.find("s", np.array([1.0, 1.0])) is None  # cosine 0.71 < 0.9
    assert index.find("other", np.array([1.0, 0.0])) is None


def test_index_is_bounded_oldest_first() -> None:
    index = SemanticIndex(threshold=0.99, max_entries=2)
    for i, vector in enumerate(([1.0, 0.0], [0.0, 1.0], [-1.0, 0.0])):
        index.add("s", np.array(vector), f"k{i}")
    assert index.find("s", np.array([1.0, 0.0])) is None
    assert index.find("s", np.array([-1.0, 0.0])) == ("k2", 1.0)
