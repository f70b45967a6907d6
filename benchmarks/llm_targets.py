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
from pathlib import Path
from typing import Protocol

import httpx
import psutil

from scripts import procs
from services.llm.engine import engine_command
from services.settings import LLMSettings, env_var_name

SERVICES = {"llm": "services.llm.service:LLM", "gateway": "services.gateway.service:Gateway"}


def _role(proc: psutil.Process) -> str:
    """Which part of the serving stack a process is (vLLM renames its processes with setproctitle)."""
    text = " ".join(proc.cmdline()) or proc.name()
    for needle, role in (("EngineCore", "vllm_engine_core"), ("VLLM::Worker", "vllm_worker"),
                         ("api_server", "vllm_api_server"), ("_bentoml_impl.worker", "bento_worker"),
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

    name = "raw"

    def __init__(self, settings: LLMSettings, env: dict[str, str], log_path: Path) -> None:
        self.settings = settings.model_copy(update={"engine_port": procs.free_port()})
        self.command = engine_command(self.settings)
        self.url = f"http://127.0.0.1:{self.settings.engine_port}"
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout_s: float) -> RawEngine:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
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


class BentoTarget:
    """A ``bentoml serve`` of this project: the whole Bento (``gateway``) or the LLM service (``llm``)."""

    def __init__(
        self,
        name: str,
        settings: LLMSettings,
        env: dict[str, str],
        workdir: Path,
        bento_env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.settings = settings.model_copy(update={"engine_port": procs.free_port()})
        self.env = {
            **env,
            **(bento_env or {}),
            **settings_env(self.settings),
            "INFSTACK_CACHE__DISK_PATH": str(workdir / f"{name}-cache.sqlite3"),
            "INFSTACK_CACHE__BACKEND": "disk",
        }
        self.server = procs.BentoServer(SERVICES[name], self.env, workdir / f"{name}.log")
        self.url = self.server.url

    def start(self, ready_timeout_s: float) -> BentoTarget:
        self.server.start(ready_timeout_s=ready_timeout_s)
        return self

    def pids(self) -> list[int]:
        return [self.server.proc.pid] if self.server.proc else []

    def stop(self) -> None:
        self.server.stop()
