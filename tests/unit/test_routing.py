"""Prefix-affinity routing across engine replicas: sticky per prefix, bounded per replica, stable across
processes; round-robin takes turns."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter

import pytest

from services.llm.routing import EnginePool, prefix_key, rank
from services.relay import Upstream

SYSTEM = [f"You are assistant number {i}. " * 40 for i in range(16)]  # ~1 kB each


def pool(replicas: int, routing: str = "prefix-affinity", load_factor: float = 1.25) -> EnginePool:
    upstreams = [Upstream(f"engine {i}", f"http://127.0.0.1:{9000 + i}") for i in range(replicas)]
    return EnginePool(upstreams, routing, prefix_chars=512, load_factor=load_factor)  # type: ignore[arg-type]


def test_the_key_is_the_prompts_beginning_whatever_its_form() -> None:
    assert prefix_key({"prompt": "abc" * 400}, 16) == b"abcabcabcabcabca"
    assert prefix_key({"prompt": ["first prompt", "second"]}, 5) == b"first"
    ids = prefix_key({"prompt": list(range(100))}, 16)
    assert ids == b"ids:0,1,2,3"  # 16 characters ~ 4 token ids
    chat = prefix_key(
        {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "x"}]}, 64
    )
    assert chat == b"system:be brief\nuser:x\n"
    assert prefix_key({"input": "no prompt"}, 16) is None
    assert prefix_key(None, 16) is None


def test_a_prefix_sticks_to_one_replica_while_load_is_even() -> None:
    engines = pool(2)
    chosen = {}
    for system in SYSTEM:
        picks = set()
        for user in range(4):
            replica = engines.choose({"prompt": system + f"question {user}"})
            picks.add(replica.index)
            engines.release(replica)
        assert len(picks) == 1  # every question after this system prompt went to one replica
        chosen[system] = picks.pop()
    assert set(chosen.values()) == {0, 1}  # and the 16 prefixes use both


def test_the_order_is_the_same_in_every_process() -> None:
    """Rendezvous ranks come from blake2b, not Python's per-process salted hash()."""
    here = [rank(s.encode(), 4) for s in SYSTEM]
    code = "from services.llm.routing import rank; import json, sys; " \
           "print(json.dumps([rank(s.encode(), 4) for s in json.loads(sys.argv[1])]))"  # fmt: skip
    import json

    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(SYSTEM)], capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == here


def test_a_hot_prefix_spills_to_its_second_replica_at_the_bound() -> None:
    engines = pool(2, load_factor=1.25)
    hot = {"prompt": SYSTEM[0] + "same tenant"}
    held = [engines.choose(hot) for _ in range(40)]  # none released: all in flight at once
    per_replica = Counter(r.index for r in held)
    first = rank(prefix_key(hot, 512) or b"", 2)[0]
    assert per_replica[first] > per_replica[1 - first] > 0
    assert per_replica[first] <= 1.25 * 40 / 2 + 1  # never past the bound (ceil of factor x mean)
    for replica in held:
        engines.release(replica)
    assert [r.in_flight for r in engines.replicas] == [0, 0]


def test_round_robin_ignores_prefixes() -> None:
    engines = pool(3, routing="round-robin")
    picks = [engines.choose({"prompt": SYSTEM[0]}).index for _ in range(6)]
    assert picks == [0, 1, 2, 0, 1, 2]


def test_one_replica_is_always_chosen_and_nothing_is_counted_as_routing() -> None:
    engines = pool(1)
    assert {engines.choose({"prompt": s}).index for s in SYSTEM} == {0}


@pytest.mark.parametrize("fail", [False, True])
def test_a_reply_releases_its_replica_when_it_ends_or_fails(fail: bool) -> None:
    engines = pool(2)

    async def chunks() -> object:
        yield b"a"
        if fail:
            raise ConnectionError("engine went away")
        yield b"b"

    async def consume() -> None:
        replica = engines.choose({"prompt": "x"})
        assert replica.in_flight == 1
        async for _ in engines.released_after(replica, chunks()):  # type: ignore[arg-type]
            pass

    if fail:
        with pytest.raises(ConnectionError):
            asyncio.run(consume())
    else:
        asyncio.run(consume())
    assert [r.in_flight for r in engines.replicas] == [0, 0]
