"""The servers the LLM serving benchmark compares, built from ONE LLMSettings object.

- raw: ``services.llm.engine.engine_command(settings)`` run directly, exactly the process our service
  starts (``env -u PROMETHEUS_MULTIPROC_DIR ... python -m vllm.entrypoints.openai.api_server ...``),
  on 127.0.0.1 and a free port; ready when ``/health`` answers 200.
- gateway: the product as users run it, ``bentoml serve services.gateway.service:Gateway`` (the whole
  Bento: gateway, LLM, embedding cache, classic ML), measured at the gateway's public port.
- llm: ``bentoml serve services.llm.service:LLM`` alone (a diagnostic: one service of the Bento).

Both Bento targets get every LLMSettings field as an ``INFSTACK_LLM__*`` variable (so they rebuild the
same object), their own BENTOML_HOME and a throw-away cache file (scripts.procs.BentoServer); ready when
``/readyz`` answers 200. Only the engine's loopback port differs (it is not an engine setting).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Protocol

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from scripts import procs
from scripts.deployments import GATEWAY_TARGET, LLM_TARGET
from services.llm import compat
from services.llm.engine import engine_command
from services.settings import LLMSettings, env_var_name

SERVICES = {"llm": LLM_TARGET, "gateway": GATEWAY_TARGET}


def _role(proc: psutil.Process) -> str:
    """Which part of the serving stack a process is (vLLM renames its processes with setproctitle)."""
    text = " ".join(proc.cmdline()) or proc.name()
    for needle, role in (("EngineCore", "vllm_engine_core"), ("VLLM::Worker", "vllm_worker"),
                         ("api_server", "vllm_api_server"), ("static_batcher", "static_batcher"), ("_bentoml_impl.worker", "bento_worker"),
                         ("bentoml", "bento_supervisor"), ("circus", "bento_supervisor")):  # fmt: skip
        if needle in text:
            return role
    return "other"


def cpu_by_role(pids: list[int]) -> dict[int, tuple[str, float]]:
    """CPU seconds so far of every process under ``pids``, with its role; diff two snapshots to see
    which process a target's CPU went to (the BentoML proxy worker vs vLLM's own processes)."""
    seen: dict[int, tuple[str, float]] = {}
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    times = proc.cpu_times()
                    seen[proc.pid] = (_role(proc), times.user + times.system)
    return seen


def cpu_delta(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds per role between two snapshots."""
    out: dict[str, float] = {}
    for pid, (role, cpu) in after.items():
        out[role] = out.get(role, 0.0) + cpu - before.get(pid, (role, 0.0))[1]
    return out


class Target(Protocol):
    name: str
    url: str
    log_path: Path

    def pids(self) -> list[int]: ...

    def stop(self) -> None: ...


def settings_env(settings: LLMSettings) -> dict[str, str]:
    """INFSTACK_LLM__* for every field that has a value: the Bento's Settings() parses them back."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, list | dict):
            text = json.dumps(value)
        else:
            text = str(value)
        env[env_var_name(("llm", name))] = text
    return env


class RawEngine:
    """vLLM's OpenAI server started with our engine command, nothing in front of it."""

    def __init__(self, settings: LLMSettings, env: dict[str, str], log_path: Path, name: str = "raw") -> None:
        self.name = name  # "raw", or a --variant of it
        self.settings = settings.model_copy(update={"engine_port": procs.free_port()})
        self.command = engine_command(self.settings)
        self.url = f"http://127.0.0.1:{self.settings.engine_port}"
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout_s: float) -> RawEngine:
        with self.log_path.open("ab") as log:
            # No start_new_session: the command begins with `setsid`, which makes the engine the leader of
            # a process group of its own (in place, as long as it is not one already).
            self.proc = subprocess.Popen(
                self.command, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            procs.wait_until(lambda: httpx.get(f"{self.url}/health", timeout=2).status_code == 200,
                             ready_timeout_s, "raw vLLM", self.proc)  # fmt: skip
        except Exception:
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"raw vLLM failed to start; log:\n{tail}") from None
        return self

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc else []

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop_process_group(self.proc)
        self.proc = None


class StaticBatchTarget:
    """Raw vLLM (same settings, same engine command) behind ``benchmarks/static_batcher.py``: the static
    batching a user would otherwise build, on the very engine continuous batching is measured on.
    ``max_batch`` 0 is the same relay without batching, to tell the relay's cost from the policy's."""

    def __init__(self, name: str, settings: LLMSettings, env: dict[str, str], workdir: Path, max_batch: int,
                 max_wait_ms: float) -> None:  # fmt: skip
        self.name = name
        self.engine = RawEngine(settings, env, workdir / f"{name}-engine.log", name=f"{name}-engine")
        self.port = procs.free_port()
        self.command = [sys.executable, "-m", "benchmarks.static_batcher", "--upstream", self.engine.url,
                        "--port", str(self.port), "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms)]  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.engine.log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout_s: float) -> StaticBatchTarget:
        self.engine.start(ready_timeout_s)
        with (self.log_path.parent / f"{self.name}-batcher.log").open("ab") as log:
            self.proc = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            procs.wait_until(lambda: httpx.get(f"{self.url}/health", timeout=2).status_code == 200, 60,
                             "static batcher", self.proc)  # fmt: skip
        except Exception:
            self.stop()
            raise RuntimeError("the static batcher failed to start") from None
        return self

    def pids(self) -> list[int]:
        return [*self.engine.pids(), *([self.proc.pid] if self.proc else [])]

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop_process_group(self.proc)
        self.proc = None
        self.engine.stop()


class BentoTarget:
    """A ``bentoml serve`` of this project: the whole Bento (``gateway``) or the LLM service (``llm``)."""

    def __init__(
        self,
        name: str,
        settings: LLMSettings,
        env: dict[str, str],
        workdir: Path,
        bento_env: dict[str, str] | None = None,
        service: str | None = None,
    ) -> None:
        self.name = name  # "gateway", "llm", or a --bento-variant of the gateway
        self.settings = settings.model_copy(update={"engine_port": procs.free_port()})
        self.env = {
            **env,
            **(bento_env or {}),
            **settings_env(self.settings),
            "INFSTACK_CACHE__DISK_PATH": str(workdir / f"{name}-cache.sqlite3"),
            "INFSTACK_CACHE__BACKEND": "disk",
        }
        self.log_path = workdir / f"{name}.log"
        self.server = procs.BentoServer(SERVICES[service or name], self.env, self.log_path)
        self.url = self.server.url

    def start(self, ready_timeout_s: float) -> BentoTarget:
        self.server.start(ready_timeout_s=ready_timeout_s)
        return self

    def pids(self) -> list[int]:
        return [self.server.proc.pid] if self.server.proc else []

    def stop(self) -> None:
        self.server.stop()


class MetricsSampler:
    """Scrapes a target's ``/metrics`` every few seconds during a ``with`` block, as Prometheus would (a
    thread, so it does not disturb the client's event loop): the most requests the engine ran at once
    (through a proxy with a connection cap that stays below ``max_num_seqs``), its peak KV-cache usage,
    and the last GPU gauges. Every 5 s by default: scraping is work for the server too."""

    PEAKS = ("vllm:num_requests_running", "vllm:num_requests_waiting", *compat.KV_CACHE_USAGE_METRICS)
    GPU_PREFIX = "infstack_gpu_"

    def __init__(self, url: str, period_s: float = 5.0) -> None:
        self.url = url.rstrip("/") + "/metrics"
        self.period_s = period_s
        self.peaks: dict[str, float] = {}
        self.gpu: dict[str, float] = {}
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while True:
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    self._read(client.get(self.url).text)
                if self._stop.wait(self.period_s):
                    return

    def _read(self, text: str) -> None:
        self.scrapes += 1
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in self.PEAKS:
                    self.peaks[sample.name] = max(self.peaks.get(sample.name, 0.0), sample.value)
                elif sample.name.startswith(self.GPU_PREFIX):
                    self.gpu[f"{sample.name}{{gpu={sample.labels.get('gpu')}}}"] = sample.value

    def __enter__(self) -> MetricsSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def to_json(self) -> dict[str, object]:
        return {"scrapes": self.scrapes, "period_s": self.period_s, "peaks": self.peaks, "gpu_last": self.gpu}


ENGINE_FACTS = ("Model loading took", "Available KV cache memory", "KV cache size", "Maximum concurrency")


def engine_facts(log_path: Path) -> list[str]:
    """vLLM's own lines about memory (what the GPU memory planner is checked against)."""
    if not log_path.exists():
        return []
    return [line.strip()[-200:] for line in log_path.read_text(errors="replace").splitlines()
            if any(fact in line for fact in ENGINE_FACTS)]  # fmt: skip
