"""benchmarks/semantic_workload.py: near-duplicate traffic and the semantic cache's decisions replayed
with the service's own index (vectors made by hand: the cache's logic, not the embedding model, is tested)."""

from __future__ import annotations

import random

import numpy as np

from benchmarks.semantic_workload import (
    OTHER_PARAMS,
    SAME_PARAMS,
    build_workload,
    near_duplicate,
    normalized,
    replay,
    score,
)

BASE = "Summarize: the city council approved the annual budget before the end of the month."


def test_each_near_duplicate_differs_in_bytes_but_barely_in_content() -> None:
    rng = random.Random(1)
    for kind in SAME_PARAMS:
        changed = near_duplicate(BASE, kind, rng)
        assert changed != BASE, kind
        if kind != "edit":
            assert normalized(changed) == normalized(BASE), kind
        else:
            assert len(set(BASE.split()) ^ set(changed.split())) <= 3


def test_the_workload_sends_bases_first_then_every_kind_once_per_base() -> None:
    requests = build_workload([BASE, "Explain: a small startup tested the login page."], "m", 32, seed=0)
    assert [r.kind for r in requests[:2]] == ["base", "base"]
    later = requests[2:]
    assert sorted(r.kind for r in later) == sorted([*SAME_PARAMS, *OTHER_PARAMS] * 2)
    assert len({r.text for r in requests if r.kind in ("base", *SAME_PARAMS)}) == 2 * 5  # never an exact copy
    other = {r.kind: r.payload for r in later if r.base == 0 and r.kind in OTHER_PARAMS}
    assert other["other_max_tokens"]["max_tokens"] == 40
    assert (other["other_temperature_seed"]["temperature"], other["other_temperature_seed"]["seed"]) == (
        0.7,
        7,
    )
    assert all(r.payload["temperature"] == 0.0 for r in later if r.kind in SAME_PARAMS)


def test_replay_serves_a_near_duplicate_only_with_equal_parameters() -> None:
    requests = build_workload([BASE], "m", 32, seed=0)
    vectors = np.ones((len(requests), 4), dtype=np.float32)  # every prompt "means" the same
    decisions = replay(requests, vectors, threshold=0.95)
    by_kind = {r.kind: d for r, d in zip(requests, decisions, strict=True)}
    assert by_kind["base"].cache == "miss"
    assert all(by_kind[k].cache == "semantic-hit" and by_kind[k].source == 0 for k in SAME_PARAMS)
    assert all(by_kind[k].cache == "miss" for k in OTHER_PARAMS)  # other signature: never a hit
    result = score(requests, [d.cache for d in decisions], [d.source for d in decisions])
    assert result["near_duplicates_answered"] == 1.0 and result["wrong_params"] == 0


def test_score_counts_hits_for_other_parameters_and_from_other_bases_as_wrong() -> None:
    requests = build_workload([BASE, "Explain: a small startup tested the login page."], "m", 32, seed=0)
    caches = ["semantic-hit" if r.kind in (*OTHER_PARAMS, "case") else "miss" for r in requests]
    sources = [1 - r.base if c == "semantic-hit" else None for r, c in zip(requests, caches, strict=True)]
    result = score(requests, caches, sources)
    assert result["wrong_params"] == 4 and result["wrong_base"] == 6
    assert result["near_duplicates_answered"] == 2 / 8


def test_below_the_threshold_nothing_is_served() -> None:
    requests = build_workload([BASE], "m", 32, seed=0)
    vectors = np.eye(len(requests), 8, dtype=np.float32)  # orthogonal: nothing alike
    assert {d.cache for d in replay(requests, vectors, 0.5)} == {"miss"}
