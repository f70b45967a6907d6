"""Settings come from INFSTACK_ variables only, and bad values are reported by variable name."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.settings import SettingsError, load_settings
from services.settings.embedding import EmbeddingSettings


def test_defaults_are_the_embedded_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.cache.backend == "disk"
    assert settings.embedding.model_id == "all-MiniLM-L6-v2"


def test_nested_variables_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFSTACK_CACHE__BACKEND", "redis")
    monkeypatch.setenv("INFSTACK_EMBEDDING__MAX_BATCH_SIZE", "16")
    settings = load_settings()
    assert settings.cache.backend == "redis"
    assert settings.embedding.max_batch_size == 16


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "INFSTACK_CACHE__BACKEND",
            "memcached",
            "INFSTACK_CACHE__BACKEND: Input should be 'disk' or 'redis'",
        ),
        ("INFSTACK_EMBEDDING__MAX_TEXTS", "0", "INFSTACK_EMBEDDING__MAX_TEXTS: Input should be greater"),
        ("INFSTACK_CACHE__BAKEND", "redis", "INFSTACK_CACHE__BAKEND: Extra inputs are not permitted"),
        # BentoML refuses max_batch_size 1 at import; settings say so first, by variable name.
        (
            "INFSTACK_CLASSIC__TABULAR_MAX_BATCH_SIZE",
            "1",
            "INFSTACK_CLASSIC__TABULAR_MAX_BATCH_SIZE: Input should be",
        ),
        ("INFSTACK_EMBEDDING__MAX_BATCH_SIZE", "0", "INFSTACK_EMBEDDING__MAX_BATCH_SIZE: Input should be"),
        (
            "INFSTACK_EMBEDDING__RUNTIME",
            "tensorrt",
            "INFSTACK_EMBEDDING__RUNTIME: Input should be 'torch' or 'onnx'",
        ),
        ("INFSTACK_CLASSIC__MAX_ROWS", "0", "INFSTACK_CLASSIC__MAX_ROWS: Input should be greater"),
        ("INFSTACK_CLASSIC__MAX_LATENCY_MS", "5", "INFSTACK_CLASSIC__MAX_LATENCY_MS: Extra inputs"),
        (
            "INFSTACK_PROCESS__GC_THRESHOLDS",
            "[0,10,10]",
            "INFSTACK_PROCESS__GC_THRESHOLDS: Value error, gen0",
        ),
        (  # a check across fields names the section; its message names the variable
            "INFSTACK_EMBEDDING__CUDA_GRAPHS",
            "true",
            "INFSTACK_EMBEDDING: Value error, INFSTACK_EMBEDDING__CUDA_GRAPHS=true needs a cuda device, not device='cpu'",
        ),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=message):
        load_settings()


@pytest.mark.parametrize(
    ("variables", "hop", "across"),
    [
        ({}, "gateway", False),  # one worker, on-disk cache: nothing to share with
        ({"INFSTACK_GATEWAY__WORKERS": "4"}, "gateway", True),
        ({"INFSTACK_GATEWAY__WORKERS": "4"}, "llm", False),  # the LLM service's own workers count there
        ({"INFSTACK_LLM__WORKERS": "2"}, "llm", True),
        ({"INFSTACK_CACHE__BACKEND": "redis"}, "llm", True),  # replicas
        (
            {"INFSTACK_GATEWAY__WORKERS": "4", "INFSTACK_LLM__COALESCE_ACROSS_PROCESSES": "false"},
            "gateway",
            False,
        ),
    ],
)
def test_coalescing_spans_processes_where_more_than_one_shares_the_cache(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], hop: str, across: bool
) -> None:
    from services.llm.backends import _coalesce_across_processes

    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert _coalesce_across_processes(load_settings(), hop) is across


@pytest.mark.parametrize(
    ("env", "workers", "text_in_flight", "tabular_in_flight"),
    [
        ({}, 1, 1, 1),  # embedded default: the embedding model on the CPU
        ({"INFSTACK_EMBEDDING__DEVICE": "cuda"}, 2, 2, 1),  # a GPU host: the measured best
        ({"INFSTACK_EMBEDDING__DEVICE": "cuda:0"}, 2, 2, 1),
        (
            {
                "INFSTACK_EMBEDDING__DEVICE": "cuda",
                "INFSTACK_CLASSIC__WORKERS": "1",
                "INFSTACK_CLASSIC__TEXT_BATCHES_IN_FLIGHT": "1",
                "INFSTACK_CLASSIC__TABULAR_BATCHES_IN_FLIGHT": "3",
            },
            1,
            1,
            3,
        ),  # explicit settings win
    ],
)
def test_classic_process_defaults_follow_where_the_embedding_model_runs(
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    workers: int,
    text_in_flight: int,
    tabular_in_flight: int,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    on_gpu = settings.embedding.on_gpu
    assert settings.classic.worker_count(on_gpu) == workers
    assert settings.classic.batches_in_flight_for("text", True, on_gpu) == text_in_flight
    assert settings.classic.batches_in_flight_for("tabular", False, on_gpu) == tabular_in_flight


def test_graphs_follow_the_device_and_true_needs_a_gpu() -> None:
    assert EmbeddingSettings(device="cuda:0").uses_cuda_graphs()
    assert not EmbeddingSettings(device="cuda:0", cuda_graphs=False).uses_cuda_graphs()
    assert not EmbeddingSettings(device="cpu").uses_cuda_graphs()
    with pytest.raises(ValidationError, match="INFSTACK_EMBEDDING__CUDA_GRAPHS=true needs a cuda device"):
        EmbeddingSettings(device="cpu", cuda_graphs=True)


def test_onnx_runs_on_the_cpu_by_default_and_only_there() -> None:
    assert EmbeddingSettings(device="cpu").uses_onnx()
    assert not EmbeddingSettings(device="cpu", runtime="torch").uses_onnx()
    assert not EmbeddingSettings(device="cuda:0").uses_onnx()  # torch, with CUDA graphs
    with pytest.raises(ValidationError, match="INFSTACK_EMBEDDING__RUNTIME=onnx runs on the cpu device"):
        EmbeddingSettings(device="cuda", runtime="onnx")


def test_onnx_threads_spin_unless_a_cpu_engine_shares_the_cores_or_the_operator_says() -> None:
    assert EmbeddingSettings().onnx_spins(beside_cpu_engine=False)
    assert not EmbeddingSettings().onnx_spins(beside_cpu_engine=True)
    assert EmbeddingSettings(onnx_spin=True).onnx_spins(beside_cpu_engine=True)
    assert not EmbeddingSettings(onnx_spin=False).onnx_spins(beside_cpu_engine=False)
