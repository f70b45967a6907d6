"""The soak's requests: one sender and one checker per kind of request a client of the Bento makes.

Deterministic requests (temperature 0, the same texts, rows and images) are drawn from small pools, so
they repeat: the first answer of each is remembered and every later one must equal it (a corrupted cache
entry or a mixed-up batch shows). Malformed requests must get a 4xx.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx
from sklearn.datasets import load_breast_cancer, load_digits

MODEL = "tiny-llm"
KINDS = {  # kind: share of the requests
    "chat_stream": 0.20, "completion": 0.15, "cancelled_stream": 0.05, "embedding": 0.20,
    "classify_text": 0.15, "tabular": 0.10, "digits": 0.05, "malformed": 0.10,
}  # fmt: skip
PROMPTS = [f"Question {i}: what does the standard library module number {i} do?" for i in range(40)]
TEXTS = [f"Open the file number {i} and read its lines" for i in range(60)]
ROWS = load_breast_cancer().data[:50].tolist()
IMAGES = load_digits().images[:50].tolist()
MALFORMED = [
    ("/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": -1}),
    ("/v1/chat/completions", {"model": MODEL, "messages": "not a list"}),
    ("/v1/embeddings", {"input": [[1, 2, 3]]}),
    ("/classify_text", {"texts": []}),
    ("/predict_tabular", {"rows": [[0.5] * 29]}),
    ("/classify_digits", {"images": [[[17.0] * 8] * 8]}),
    ("/generate", {"prompt": "x", "temperature": 5}),
]
_first: dict[str, Any] = {}  # request key -> its first answer


@dataclass
class Outcome:
    kind: str
    status: int
    ok: bool
    error: str
    latency_s: float
    at_s: float = 0.0


def _same_as_first(key: str, answer: Any) -> str:
    first = _first.setdefault(key, answer)
    return "" if first == answer else f"answer differs from the first one for {key[:60]!r}"


def _sse_events(body: bytes) -> list[Any]:
    events = [e.removeprefix(b"data: ").strip() for e in body.split(b"\n\n") if e.strip()]
    return [e if e == b"[DONE]" else json.loads(e) for e in events]


async def send(client: httpx.AsyncClient, kind: str, rng: random.Random, at_s: float = 0.0) -> Outcome:
    started = time.monotonic()
    try:
        status, error = await _KIND[kind](client, rng)
    except httpx.HTTPError as exc:  # no answer at all: lost
        status, error = 0, f"lost: {type(exc).__name__}: {exc}"
    return Outcome(kind, status, not error, error, time.monotonic() - started, at_s)


async def _chat_stream(client: httpx.AsyncClient, rng: random.Random) -> tuple[int, str]:
    prompt = rng.choice(PROMPTS)
    payload = {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "max_tokens": 24,
               "temperature": 0, "stream": True, "ignore_eos": True, "stream_options": {"include_usage": True}}  # fmt: skip
    response = await client.post("/v1/chat/completions", json=payload)
    if response.status_code != 200:
        return response.status_code, f"status {response.status_code}: {response.text[:200]}"
    events = _sse_events(response.content)
    if events[-1] != b"[DONE]" or events[-2].get("usage", {}).get("completion_tokens") != 24:
        return 200, "stream without [DONE] or usage"
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e.get("choices"))
    return 200, _same_as_first(f"chat:{prompt}", text)


async def _completion(client: httpx.AsyncClient, rng: random.Random) -> tuple[int, str]:
    prompt = rng.choice(PROMPTS)
    payload = {"model": MODEL, "prompt": prompt, "max_tokens": 16, "temperature": 0, "ignore_eos": True}
    response = await client.post("/v1/completions", json=payload)
    if response.status_code != 200:
        return response.status_code, f"status {response.status_code}: {response.text[:200]}"
    body = response.json()
    if body["usage"]["completion_tokens"] != 16:
        return 200, "wrong token count"
    return 200, _same_as_first(f"completion:{prompt}", body["choices"][0]["text"])


async def _cancelled_stream(client: httpx.AsyncClient, rng: random.Random) -> tuple[int, str]:
    payload = {"model": MODEL, "prompt": f"cancel me {rng.random()}", "max_tokens": 400, "temperature": 0.7,
               "stream": True, "ignore_eos": True}  # fmt: skip
    async with client.stream("POST", "/v1/completions", json=payload) as response:
        async for _chunk in response.aiter_bytes():
            break  # the client walks away after the first event
        return response.status_code, "" if response.status_code == 200 else f"status {response.status_code}"


async def _embedding(client: httpx.AsyncClient, rng: random.Random) -> tuple[int, str]:
    texts = rng.sample(TEXTS, rng.randint(1, 4))
    response = await client.post("/v1/embeddings", json={"input": texts})
    if response.status_code != 200:
        return response.status_code, f"status {response.status_code}: {response.text[:200]}"
    vectors = [d["embedding"] for d in response.json()["data"]]
    if len(vectors) != len(texts) or any(len(v) != 384 for v in vectors):
        return 200, "wrong number or size of vectors"
    # Two requests missing the same text at once each compute it, in batches of different padding: the
    # vectors agree to ~1e-6, not bit for bit. A wrong vector (another text's) differs by far more.
    for text, vector in zip(texts, vectors, strict=True):
        first = _first.setdefault(f"embed:{text}", vector)
        if max(abs(a - b) for a, b in zip(first, vector, strict=True)) > 1e-4:
            return 200, f"vector differs from the first one for {text!r}"
    return 200, ""


async def _predict(client: httpx.AsyncClient, route: str, field: str, item: Any, key: str) -> tuple[int, str]:
    response = await client.post(route, json={field: [item]})
    if response.status_code != 200:
        return response.status_code, f"status {response.status_code}: {response.text[:200]}"
    [answer] = response.json()
    if (
        abs(sum(answer["probabilities"].values()) - 1) > 1e-4
        or answer["label"] not in answer["probabilities"]
    ):
        return 200, "probabilities do not sum to 1"
    return 200, _same_as_first(key, answer["label"])


async def _classify_text(client: httpx.AsyncClient, rng: random.Random) -> tuple[int, str]:
    text = rng.choice(TEXTS)
    return await _predict(client, "/classify_text", "texts", text, f"text:{text}")


async def _tabular(client: httpx.AsyncClient, rng: random.Random) -> tuple[int, str]:
    i = rng.randrange(len(ROWS))
    return await _predict(client, "/predict_tabular", "rows", ROWS[i], f"row:{i}")


async def _digits(client: httpx.AsyncClient, rng: random.Random) -> tuple[int, str]:
    i = rng.randrange(len(IMAGES))
    return await _predict(client, "/classify_digits", "images", IMAGES[i], f"image:{i}")


async def _malformed(client: httpx.AsyncClient, rng: random.Random) -> tuple[int, str]:
    route, payload = rng.choice(MALFORMED)
    response = await client.post(route, json=payload)
    ok = 400 <= response.status_code < 500
    return response.status_code, "" if ok else f"malformed request to {route} got {response.status_code}"


_KIND = {"chat_stream": _chat_stream, "completion": _completion, "cancelled_stream": _cancelled_stream,
         "embedding": _embedding, "classify_text": _classify_text, "tabular": _tabular, "digits": _digits,
         "malformed": _malformed}  # fmt: skip
