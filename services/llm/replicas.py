"""Data-parallel engine replicas as one process: ``python -m services.llm.replicas``.

BentoML's ``__command__`` runs one command per service; with ``data_parallel_size`` > 1 that command is
this launcher, which starts one vLLM OpenAI server per replica (its own loopback port and its own slice
of the GPUs BentoML assigned, services/llm/engine.py) and lives exactly as long as all of them:

- one replica exits: the others are stopped and the launcher exits with its code, so the LLM service's
  engine watch restarts the whole set (services/llm/supervision.py);
- SIGTERM (BentoML stopping): passed to every replica, which drain their requests, then the launcher exits.

The replicas stay in the launcher's process group (the command starts with ``setsid``), so whatever is
left of them can be killed as one group.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType

from services.bentoml_adapter import assigned_gpus
from services.llm.engine import replica_commands
from services.settings import get_settings

log = logging.getLogger("services.llm.replicas")
_POLL_S = 0.5
_KILL_AFTER_S = 30.0  # BentoML itself kills the command 30 s after asking it to stop


def start(commands: list[tuple[list[str], dict[str, str]]]) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen(command, env={**os.environ, **env}) for command, env in commands]


def stop(replicas: list[subprocess.Popen[bytes]], sig: int = signal.SIGTERM) -> None:
    """Ask every replica still running to stop, then wait for them (killing what outlives the wait)."""
    for proc in replicas:
        if proc.poll() is None:
            proc.send_signal(sig)
    deadline = time.monotonic() + _KILL_AFTER_S
    for proc in replicas:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def supervise(replicas: list[subprocess.Popen[bytes]]) -> int:
    """Wait until one replica exits or a stop signal comes; stop the rest; the exit code to use."""
    stopping: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stopping:
        for index, proc in enumerate(replicas):
            if (code := proc.poll()) is not None:
                log.error("engine replica %d exited with code %d; stopping the others", index, code)
                stop(replicas)
                return code or 1
        time.sleep(_POLL_S)
    stop(replicas)
    return 0


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    commands = replica_commands(get_settings().llm, assigned_gpus())
    for index, (_, env) in enumerate(commands):
        log.info("engine replica %d: %s", index, env or "CPU")
    sys.exit(supervise(start(commands)))


if __name__ == "__main__":
    main()
