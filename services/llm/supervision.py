"""The engine's life inside the LLM service: checks before it starts, and what happens when it dies.

- ``preflight``: an engine that cannot start (a model path that is not there, a model the GPU memory
  cannot hold, a quantized checkpoint the hardware has no kernel for) stops the whole server with one message naming the setting, instead of BentoML restarting
  the worker forever behind a gateway that looks alive.
- ``EngineWatch``: readiness is the engine's own ``/health``; when an engine that was up stops answering
  (killed, crashed), the worker that owns it kills what is left of it and exits, and the supervisor starts
  the worker, and with it a new engine. Meanwhile ``/readyz`` says not ready and requests get a 503 that
  names the engine (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from pathlib import Path

import psutil

from services.llm import compat, quantization
from services.llm.engine import resolve_model, store_tag
from services.relay import Upstream, UpstreamUnavailable
from services.settings import LLMSettings

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    pass


def preflight(settings: LLMSettings, gpu_mib: int | None, capability: tuple[int, int] | None = None) -> None:
    """Raise StartupError when the engine cannot start with these settings."""
    model = settings.model
    path = Path(model).expanduser()
    if not path.is_dir() and store_tag(model) is None:
        if model.startswith(("/", ".", "~")):
            raise StartupError(
                f"INFSTACK_LLM__MODEL={model!r}: no such directory, nor a BentoML model-store tag"
            )
        from huggingface_hub import constants, try_to_load_from_cache

        if constants.HF_HUB_OFFLINE and not isinstance(try_to_load_from_cache(model, "config.json"), str):
            raise StartupError(
                f"INFSTACK_LLM__MODEL={model!r} is no local directory or model-store tag, and HF_HUB_OFFLINE=1 "
                "with nothing of it in the Hugging Face cache"
            )
    model_dir = Path(resolve_model(model))
    _check_quantization(model_dir, capability)
    if gpu_mib is not None and not compat.is_cpu_build():
        _check_memory(settings, model_dir, gpu_mib)


def _check_quantization(model_dir: Path, capability: tuple[int, int] | None) -> None:
    """A quantized checkpoint (vLLM detects the scheme from its config.json) the hardware cannot run."""
    try:
        quant = quantization.read(json.loads((model_dir / "config.json").read_text()))
    except (OSError, ValueError):
        return  # a Hub id or no config: vLLM will say
    if quant is None:
        return
    cpu_build = compat.is_cpu_build()
    cpu_kernel = compat.cpu_has_w4a16_kernel() if cpu_build else None
    if reason := quantization.unsupported(
        quant, cpu_build=cpu_build, capability=capability, cpu_w4a16_kernel=cpu_kernel
    ):
        raise StartupError(f"{model_dir.name}: {reason}")
    if quantization.weight_only_fallback(quant, capability):
        log.warning(
            "%s: FP8 weights on compute capability %s run weight-only (no FP8 compute)",
            model_dir.name,
            capability,
        )
    log.info("%s: %s checkpoint", model_dir.name, quant.describe())


def _check_memory(settings: LLMSettings, model_dir: Path, gpu_mib: int) -> None:
    from services.llm.memory import Architecture, DoesNotFit, plan

    try:
        arch = Architecture.from_config(json.loads((model_dir / "config.json").read_text()))
    except (OSError, ValueError, KeyError):
        return  # an architecture the planner does not know: vLLM will say
    try:
        plan(arch, dtype=settings.dtype, quantization=settings.quantization, kv_cache_dtype=settings.kv_cache_dtype,
             tensor_parallel_size=settings.tensor_parallel_size, max_model_len=settings.max_model_len,
             pipeline_parallel_size=settings.pipeline_parallel_size,
             gpu_memory_utilization=settings.gpu_memory_utilization, gpu_mib=gpu_mib,
             max_num_seqs=settings.max_num_seqs, max_num_batched_tokens=settings.max_num_batched_tokens)  # fmt: skip
    except DoesNotFit as exc:
        raise StartupError(f"{model_dir.name} on a {gpu_mib} MiB GPU: {exc}") from None


class EngineWatch:
    """Polls the engine's ``/health`` (every replica's); ``healthy`` is the readiness of the LLM service.

    An engine that refuses the connection or answers anything but 200 is down: after ``misses`` such
    checks in a row the worker restarts it. One that says nothing within ``timeout_s`` is only
    silent, which is what a live engine looks like when its process gets no CPU (a loaded host, a long
    step holding its event loop): readiness keeps its last answer and the engine is restarted only when
    it has been failing for ``hung_after_s``. Restarting a busy engine would drop every request in it.

    Data-parallel replicas start and stop together (services/llm/replicas.py): one that stops answering
    restarts them all, which costs the others' caches but never leaves a half-sized Bento looking whole.
    """

    def __init__(
        self,
        engines: list[Upstream],
        owns_engine: bool,
        period_s: float = 1.0,
        misses: int = 3,
        timeout_s: float = 2.0,
        hung_after_s: float = 60.0,
    ) -> None:
        self.engines = engines
        self.owns_engine = owns_engine
        self.period_s = period_s
        self.misses = misses
        self.timeout_s = timeout_s
        self.hung_after_s = hung_after_s
        self.healthy = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def check(self) -> bool | None:
        """True when every engine answers 200, False when one is down, None when one is only silent."""
        answers = await asyncio.gather(*(self._answers(engine) for engine in self.engines))
        return False if False in answers else None if None in answers else True

    async def _answers(self, engine: Upstream) -> bool | None:
        try:
            response = await asyncio.wait_for(engine.request("GET", "/health"), self.timeout_s)
            response.release()
            return response.status == 200
        except UpstreamUnavailable:
            return False
        except TimeoutError:
            return None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        was_up, refusals, failing_since, group = False, 0, None, None
        while True:
            answer = await self.check()
            if answer is not None:
                self.healthy = answer
            if answer:
                refusals, failing_since = 0, None
            else:
                refusals += answer is False
                failing_since = failing_since or loop.time()
            if answer and not was_up:
                was_up, group = True, engine_process_group()
            if (
                was_up
                and self.owns_engine
                and failing_since is not None
                and (refusals >= self.misses or loop.time() - failing_since >= self.hung_after_s)
            ):
                self._restart(group)
            await asyncio.sleep(self.period_s)

    def _restart(self, group: int | None) -> None:
        log.error("the vLLM engine stopped answering; restarting this worker and its engine")
        if group is not None:  # what is left of the engine, its reparented engine core included
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        for child in psutil.Process().children(recursive=True):
            child.kill()
        os._exit(1)  # the supervisor starts the worker again, and it a new engine


def engine_process_group() -> int | None:
    """The process group the engine leads (``setsid`` in its command), found among this worker's children."""
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "vllm.entrypoints.openai.api_server" in " ".join(child.cmdline()):
                return os.getpgid(child.pid)
    return None
